"""2030.5 DER programs and their controls, reached through the device (every request is scoped by an EndDevice the
caller may reach and a program assigned to it):

    /edev/{e}/fsa/{f}/derp                  DERProgramList (the programs of that FunctionSetAssignments)
    /edev/{e}/derp/{p}                      DERProgram
    /edev/{e}/derp/{p}/derc[/{c}]           DERControlList / DERControl
    /edev/{e}/derp/{p}/actderc              ActiveDERControlList
    /edev/{e}/derp/{p}/dderc                DefaultDERControl
    /edev/{e}/derp/{p}/dc[/{c}]             DERCurveList / DERCurve

EventStatus, supersession and primacy come from ``server.core.der_controls``; devices answer a DERControl at
``/rsps/1/rsp`` (``server.sep2.responses``).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import der_controls as rules
from server.core import events, programs
from server.core.changes import Change
from server.core.errors import DomainError, Forbidden, NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import xml
from server.sep2.common import (
    MRID_CONTROL,
    MRID_CURVE,
    MRID_DEFAULT,
    MRID_PROGRAM,
    SUBSCRIBABLE,
    epoch,
    list_element,
    mrid,
    page,
    path_int,
    reply,
    scope_of,
    sep2_handler,
    sessions,
)
from server.sep2.render import RenderCtx, kept_reply, pen, poll_rate, render_ctx
from server.sep2.resources import Params, any_of, page_params, subscribable
from server.sep2.responses import RESPONSE_SET_ID
from server.store.models import EndDevice, Event, Program, Sep2Fsa, Sep2FsaProgram, Sep2Subscription

routes = web.RouteTableDef()


async def program_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, program_id: int
) -> tuple[EndDevice, Program]:
    device = await device_in_scope(session, scope, device_id)
    for program in await programs.device_programs(session, device.id):
        if program.id == program_id:
            return device, program
    raise NotFound(f"no DERProgram {program_id} for EndDevice {device_id}")


def active_power(tag: str, watts: float) -> etree._Element:
    value, mult = rules.encode_power(watts)
    return xml.E(tag, None, xml.leaf("multiplier", mult), xml.leaf("value", value))


def control_base(base: dict[str, Any], curve_href: str) -> etree._Element:
    """DERControlBase children in schema order; the CSIP-AUS limits come last (csipaus-core redefines it)."""
    el = xml.E("DERControlBase")
    for name in ("opModConnect", "opModEnergize", "opModFixedW"):
        if name in base:
            el.append(xml.leaf(name, base[name]))
    for name in rules.CURVE_FIELDS[:11]:  # opModFreqWatt .. opModLVRTMustTrip
        if name in base:
            el.append(xml.E(name, {"href": f"{curve_href}/{base[name]}"}))
    if "opModMaxLimW" in base:
        el.append(xml.leaf("opModMaxLimW", base["opModMaxLimW"]))
    if "opModTargetVar" in base:
        value, mult = rules.encode_power(base["opModTargetVar"])
        el.append(xml.E("opModTargetVar", None, xml.leaf("multiplier", mult), xml.leaf("value", value)))
    if "opModTargetW" in base:
        el.append(active_power("opModTargetW", base["opModTargetW"]))
    for name in rules.CURVE_FIELDS[11:]:  # opModVoltVar .. opModWattVar
        if name in base:
            el.append(xml.E(name, {"href": f"{curve_href}/{base[name]}"}))
    if "rampTms" in base:
        el.append(xml.leaf("rampTms", base["rampTms"]))
    for name in ("opModImpLimW", "opModExpLimW", "opModGenLimW", "opModLoadLimW"):
        if name in base:
            el.append(active_power("csipaus:" + name, base[name]))
    if "opModStorageTargetW" in base:
        # CSIP-AUS 1.3 storage only: a 1.2 client never sees it (server.sep2.csipaus)
        el.append(active_power("csipaus-storage:opModStorageTargetW", base["opModStorageTargetW"]))
    return el


# ---------------------------------------------------------------------------------------------- DERPrograms
async def render_program(ctx: RenderCtx, device: EndDevice, program: Program) -> etree._Element:
    href = f"/edev/{device.id}/derp/{program.id}"
    seen = await programs.device_programs(ctx.session, device.id)
    primacy = {p.id: p.primacy for p in seen}
    intervals = [
        events.interval_of(e, primacy[e.program_id])
        for e in await events.relevant(ctx.session, list(primacy), ctx.now)
    ]
    # its counts follow the events of every program the device sees (supersession) and the clock
    ctx.deps.read_programs(primacy)
    ctx.deps.read_intervals(((i.start, i.end) for i in intervals), ctx.now)
    mine = [i for i in intervals if i.program_id == program.id]
    visible = [i for i in mine if not rules.evaluate(i, intervals, ctx.now).completed]
    active = [i for i in visible if rules.evaluate(i, intervals, ctx.now).status == rules.EventStatus.ACTIVE]
    n_curves = len(await programs.program_curves(ctx.session, program.id))
    return xml.E(
        "DERProgram",
        {"href": href, "subscribable": SUBSCRIBABLE},
        xml.leaf("mRID", mrid(MRID_PROGRAM, program.id, ctx.pen)),
        xml.leaf("description", (program.description or program.name)[:32]),
        xml.link("ActiveDERControlListLink", f"{href}/actderc", len(active)),
        # always linked: clients subscribe to it before staff set one (cactus S-ALL-35..40)
        xml.link("DefaultDERControlLink", f"{href}/dderc"),
        xml.link("DERControlListLink", f"{href}/derc", len(visible)),
        xml.link("DERCurveListLink", f"{href}/dc", n_curves),
        xml.leaf("primacy", program.primacy),
    )


def _program_affected(change: Change, *types: str) -> ColumnElement[bool] | None:
    """Subscriptions to a resource of a changed program (or showing a resource type staff changed)."""
    conds: list[ColumnElement[bool]] = (
        [Sep2Subscription.program_id.in_(change.programs)] if change.programs else []
    )
    return any_of(conds, change, *types)


def _program_list_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = []
    if change.programs:
        fsa_ids = select(Sep2FsaProgram.fsa_id).where(Sep2FsaProgram.program_id.in_(change.programs))
        conds.append(Sep2Subscription.target_id.in_(fsa_ids))
    if change.devices:
        conds.append(Sep2Subscription.subject_device_id.in_(change.devices))
    return any_of(conds, change, "DERProgramList", "DERProgram")


@subscribable("derp-list", "/edev/{e}/fsa/{t}/derp", affected=_program_list_affected, is_list=True)
async def render_program_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    device = await device_in_scope(ctx.session, scope, params.e or 0)
    fsa_id = params.t or 0
    if fsa_id not in {f.id for f in await programs.device_fsas(ctx.session, device.id)}:
        raise NotFound("no such FunctionSetAssignments")
    found = await programs.fsa_programs(ctx.session, fsa_id)
    rate = await poll_rate(ctx, "DERProgramList")
    items = [await render_program(ctx, device, p) for p in found[params.start : params.start + params.limit]]
    href = f"/edev/{device.id}/fsa/{fsa_id}/derp"
    return list_element("DERProgramList", href, items, len(found), rate, subscribable=True)


@routes.get("/edev/{e}/fsa/{f}/derp")
@sep2_handler
async def get_program_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"), t=path_int(request, "f"))
    return await kept_reply(request, lambda ctx: render_program_list(ctx, scope_of(request), params))


@subscribable(
    "derp", "/edev/{e}/derp/{p}", affected=lambda c: _program_affected(c, "DERProgram"), is_list=False
)
async def render_der_program(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    device, program = await program_in_scope(ctx.session, scope, params.e or 0, params.p or 0)
    return await render_program(ctx, device, program)


@routes.get("/edev/{e}/derp/{p}")
@sep2_handler
async def get_program(request: web.Request) -> web.Response:
    params = Params(e=path_int(request, "e"), p=path_int(request, "p"))
    return await kept_reply(request, lambda ctx: render_der_program(ctx, scope_of(request), params))


# ----------------------------------------------------------------------------------------------- DERControls
def render_control(ctx: RenderCtx, device: EndDevice, c: Event, ev: rules.Evaluated) -> etree._Element:
    href = f"/edev/{device.id}/derp/{c.program_id}/derc/{c.id}"
    attrs: dict[str, Any] = {"href": href, "subscribable": SUBSCRIBABLE}
    if c.response_required:
        attrs["replyTo"] = f"/rsps/{RESPONSE_SET_ID}/rsp"
        attrs["responseRequired"] = f"{c.response_required:02X}"
    status_time = c.cancelled_at or c.creation_time
    return xml.E(
        "DERControl",
        attrs,
        xml.leaf("mRID", mrid(MRID_CONTROL, c.id, ctx.pen)),
        xml.leaf("description", c.description or None),
        xml.leaf("creationTime", epoch(c.creation_time)),
        xml.E(
            "EventStatus",
            None,
            xml.leaf("currentStatus", int(ev.status)),
            xml.leaf("dateTime", epoch(status_time)),
            xml.leaf("potentiallySuperseded", ev.potentially_superseded),
        ),
        xml.E("interval", None, xml.leaf("duration", c.duration_s), xml.leaf("start", epoch(c.start))),
        xml.leaf("randomizeDuration", c.randomize_duration_s),
        xml.leaf("randomizeStart", c.randomize_start_s),
        control_base(c.payload.get("base", {}), f"/edev/{device.id}/derp/{c.program_id}/dc"),
    )


class RenderedControls:
    """DERControls rendered once per render of many devices' lists (a notification fan-out): the same control
    with the same status reads the same for every device but for the hrefs under its ``/edev/{id}/``, so a later
    device gets a copy of the first one's element with those hrefs moved to its own (copying is about a tenth
    of building). Lives for one ``render_control_resources`` call: every copy is made before any list is
    serialized or translated for a client."""

    def __init__(self, ctx: RenderCtx) -> None:
        self.ctx = ctx
        self._first: dict[tuple[int, rules.Evaluated], tuple[int, etree._Element]] = {}

    def element(self, device: EndDevice, c: Event, ev: rules.Evaluated) -> etree._Element:
        key = (c.id, ev)
        made = self._first.get(key)
        if made is None:
            el = render_control(self.ctx, device, c, ev)
            self._first[key] = (device.id, el)
            return el
        first_device, first = made
        el = copy.deepcopy(first)
        el.tail = None
        if first_device != device.id:
            old, new = f"/edev/{first_device}/", f"/edev/{device.id}/"
            for node in el.iter():
                href = node.get("href")
                if href is not None and href.startswith(old):
                    node.set("href", new + href[len(old) :])
        return el


def control_list(
    controls: RenderedControls,
    device: EndDevice,
    program_id: int,
    shown: list[tuple[Event, rules.Evaluated]],
    total: int,
    active_only: bool,
) -> etree._Element:
    """A DERControlList (``derc``) or ActiveDERControlList (``actderc``) page."""
    suffix = "actderc" if active_only else "derc"
    items = [controls.element(device, c, ev) for c, ev in shown]
    return list_element(
        "DERControlList", f"/edev/{device.id}/derp/{program_id}/{suffix}", items, total, subscribable=True
    )


IN_CHUNK = 5000  # ids per IN (...) list: well below SQLite's and asyncpg's bound-parameter limits


async def _in_chunks(session: AsyncSession, make, ids: set[int]) -> list:
    out: list = []
    items = list(ids)
    for i in range(0, len(items), IN_CHUNK):
        out.extend((await session.execute(make(items[i : i + IN_CHUNK]))).all())
    return out


async def render_control_resources(
    ctx: RenderCtx, kind: str, wants: list[tuple[Scope, Params]]
) -> list[etree._Element | DomainError]:
    """DERControlLists (``derc-list``), ActiveDERControlLists (``actderc``) or DERControls (``derc``) as each
    scope sees them: what their GETs serve, and what notifications carry -- a handful of queries for any number
    of them (fan-out of one control to thousands of devices stays within seconds).

    Visibility as everywhere: the device reached by the scope (``Scope.may_see_device``), the program assigned to
    it; statuses from ``der_controls.evaluate`` over every control the device sees, one evaluation shared by all
    devices with the same programs."""
    session = ctx.session
    device_ids = {p.e for _, p in wants if p.e is not None}
    devices = {
        d.id: d
        for (d,) in await _in_chunks(
            session, lambda ids: select(EndDevice).where(EndDevice.id.in_(ids)), device_ids
        )
    }
    assigned: dict[int, set[int]] = {}
    for dev_id, prog_id in await _in_chunks(
        session,
        lambda ids: (
            select(Sep2Fsa.end_device_id, Sep2FsaProgram.program_id)
            .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
            .where(Sep2Fsa.end_device_id.in_(ids))
        ),
        device_ids,
    ):
        assigned.setdefault(dev_id, set()).add(prog_id)
    all_programs = {p for ps in assigned.values() for p in ps}
    prog_rows = {
        p.id: p
        for (p,) in await _in_chunks(
            session, lambda ids: select(Program).where(Program.id.in_(ids)), all_programs
        )
    }
    controls = await events.relevant(session, list(all_programs), ctx.now)
    if kind == "derc":
        # a DERControl stays readable by its href after it completed
        wanted = {p.t for _, p in wants if p.t is not None} - {c.id for c in controls}
        if wanted:
            controls += [
                c
                for (c,) in await _in_chunks(
                    session,
                    lambda ids: select(Event).where(Event.id.in_(ids), Event.program_id.in_(all_programs)),
                    wanted,
                )
            ]
    by_id = {c.id: c for c in controls}
    rendered = RenderedControls(ctx)
    evaluated: dict[frozenset[int], list[tuple[Event, rules.Interval, rules.Evaluated]]] = {}
    out: list[etree._Element | DomainError] = []
    for scope, params in wants:
        device = devices.get(params.e or 0)
        if device is None or not device.enabled:
            out.append(NotFound(f"no EndDevice {params.e}"))
            continue
        if scope.revoked or not scope.may_see_device(device):
            out.append(Forbidden(f"EndDevice {device.id} is not yours"))
            continue
        progs = assigned.get(device.id, set())
        if params.p not in progs:
            out.append(NotFound(f"no DERProgram {params.p} for EndDevice {device.id}"))
            continue
        key = frozenset(progs)
        ctx.deps.read_programs(key)
        if key not in evaluated:
            intervals = [
                events.interval_of(c, prog_rows[c.program_id].primacy)
                for c in controls
                if c.program_id in key
            ]
            evaluated[key] = [
                (by_id[i.id], i, rules.evaluate(i, intervals, ctx.now))
                for i in sorted(intervals, key=rules.list_order_key)
            ]
        ctx.deps.read_intervals(((i.start, i.end) for _, i, _ in evaluated[key]), ctx.now)
        mine = [(c, ev) for c, i, ev in evaluated[key] if i.program_id == params.p]
        if kind == "derc":
            found = [(c, ev) for c, ev in mine if c.id == params.t]
            out.append(rendered.element(device, *found[0]) if found else NotFound("no such DERControl"))
            continue
        mine = [(c, ev) for c, ev in mine if not ev.completed]
        active_only = kind == "actderc"
        if active_only:
            mine = [(c, ev) for c, ev in mine if ev.status == rules.EventStatus.ACTIVE]
        elif params.after:
            mine = [(c, ev) for c, ev in mine if c.changed_at >= params.after]
        shown = mine[params.start : params.start + params.limit]
        out.append(control_list(rendered, device, params.p or 0, shown, len(mine), active_only))
    return out


async def _render_one(ctx: RenderCtx, kind: str, scope: Scope, params: Params) -> etree._Element:
    (result,) = await render_control_resources(ctx, kind, [(scope, params)])
    if isinstance(result, DomainError):
        raise result
    return result


async def controls_touched(session: AsyncSession, change: Change, now: dt.datetime) -> list[Sep2Subscription]:
    """Subscriptions to the control lists / controls of *other* programs of the devices a changed program reaches.

    A device sees the events of all its programs together: a control created or cancelled in program A flips the
    potentiallySuperseded flag of overlapping controls of program B (``der_controls.evaluate``), so B's
    DERControlList / ActiveDERControlList / DERControl as a GET returns them changed. Candidates are the
    subscriptions on another program of such a device that lists an event overlapping an event of a changed
    program (``der_controls.touches``)."""
    if not change.programs:
        return []
    reached = (
        select(Sep2Fsa.end_device_id)
        .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
        .where(Sep2FsaProgram.program_id.in_(change.programs))
    )
    subs = list(
        await session.scalars(
            select(Sep2Subscription).where(
                Sep2Subscription.kind.in_(CONTROL_KINDS),
                Sep2Subscription.subject_device_id.in_(reached),
                Sep2Subscription.program_id.not_in(change.programs),
            )
        )
    )
    if not subs:
        return []
    ids = set(change.programs) | {s.program_id for s in subs if s.program_id is not None}
    by_program: dict[int, list[rules.Interval]] = {}
    for c in await events.relevant(session, list(ids), now):
        by_program.setdefault(c.program_id, []).append(events.interval_of(c, 0))
    changed = [i for p in change.programs for i in by_program.get(p, [])]
    return [s for s in subs if rules.touches(changed, by_program.get(s.program_id or 0, []), now)]


CONTROL_KINDS = ("derc-list", "actderc", "derc")


def _many(kind: str):
    async def render_many(
        ctx: RenderCtx, wants: list[tuple[Scope, Params]]
    ) -> list[etree._Element | DomainError]:
        return await render_control_resources(ctx, kind, wants)

    return render_many


@subscribable(
    "derc-list",
    "/edev/{e}/derp/{p}/derc",
    affected=lambda c: _program_affected(c, "DERControlList", "DERControl"),
    is_list=True,
    render_many=_many("derc-list"),
    touched=controls_touched,
)
async def render_control_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """DERControlList: the program's controls not yet completed (honours the ``a`` after-parameter)."""
    return await _render_one(ctx, "derc-list", scope, params)


@subscribable(
    "actderc",
    "/edev/{e}/derp/{p}/actderc",
    affected=lambda c: _program_affected(c, "DERControlList", "DERControl"),
    is_list=True,
    render_many=_many("actderc"),
    touched=controls_touched,
)
async def render_active_control_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """ActiveDERControlList: the program's controls active now."""
    return await _render_one(ctx, "actderc", scope, params)


@subscribable(
    "derc",
    "/edev/{e}/derp/{p}/derc/{t}",
    affected=lambda c: _program_affected(c, "DERControl"),
    is_list=False,
    render_many=_many("derc"),
    touched=controls_touched,
)
async def render_der_control(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    return await _render_one(ctx, "derc", scope, params)


@routes.get("/edev/{e}/derp/{p}/derc")
@sep2_handler
async def get_control_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"), p=path_int(request, "p"))
    return await kept_reply(request, lambda ctx: render_control_list(ctx, scope_of(request), params))


@routes.get("/edev/{e}/derp/{p}/actderc")
@sep2_handler
async def get_active_control_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"), p=path_int(request, "p"))
    return await kept_reply(request, lambda ctx: render_active_control_list(ctx, scope_of(request), params))


@routes.get("/edev/{e}/derp/{p}/derc/{c}")
@sep2_handler
async def get_control(request: web.Request) -> web.Response:
    params = Params(e=path_int(request, "e"), p=path_int(request, "p"), t=path_int(request, "c"))
    async with sessions(request)() as session:
        return reply(await render_der_control(render_ctx(request, session), scope_of(request), params))


@subscribable(
    "dderc",
    "/edev/{e}/derp/{p}/dderc",
    affected=lambda c: _program_affected(c, "DefaultDERControl"),
    is_list=False,
)
async def render_default_control(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    device, program = await program_in_scope(ctx.session, scope, params.e or 0, params.p or 0)
    ctx.deps.read_programs([program.id])
    # without one set, an empty DefaultDERControl (no DERControlBase values: nothing to apply by default)
    return render_default(ctx, device, program)


@routes.get("/edev/{e}/derp/{p}/dderc")
@sep2_handler
async def get_default_control(request: web.Request) -> web.Response:
    params = Params(e=path_int(request, "e"), p=path_int(request, "p"))
    return await kept_reply(request, lambda ctx: render_default_control(ctx, scope_of(request), params))


def render_default(ctx: RenderCtx, device: EndDevice, program: Program) -> etree._Element:
    default = program.default_control or {}
    href = f"/edev/{device.id}/derp/{program.id}/dderc"
    return xml.E(
        "DefaultDERControl",
        {"href": href, "subscribable": SUBSCRIBABLE},
        xml.leaf("mRID", mrid(MRID_DEFAULT, program.id, ctx.pen, program.default_version)),
        xml.leaf("description", (program.description or program.name)[:32]),
        control_base(default.get("base", {}), f"/edev/{device.id}/derp/{program.id}/dc"),
        xml.leaf("setGradW", default.get("setGradW")),
    )


def render_curve(pen: int, href: str, c) -> etree._Element:
    return xml.E(
        "DERCurve",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_CURVE, c.id, pen)),
        xml.leaf("description", c.description or None),
        xml.leaf("creationTime", epoch(c.creation_time)),
        [xml.E("CurveData", None, xml.leaf("xvalue", x), xml.leaf("yvalue", y)) for x, y in c.points],
        xml.leaf("curveType", c.curve_type),
        xml.leaf("xMultiplier", c.x_multiplier),
        xml.leaf("yMultiplier", c.y_multiplier),
        xml.leaf("yRefType", c.y_ref_type),
    )


@routes.get("/edev/{e}/derp/{p}/dc")
@sep2_handler
async def get_curve_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
        curves = await programs.program_curves(session, program.id)
    href = f"/edev/{device.id}/derp/{program.id}/dc"
    items = [render_curve(pen(request), f"{href}/{c.id}", c) for c in pg.slice(curves)]
    return reply(list_element("DERCurveList", href, items, len(curves)))


@routes.get("/edev/{e}/derp/{p}/dc/{c}")
@sep2_handler
async def get_curve(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
        curve = next(
            (c for c in await programs.program_curves(session, program.id) if c.id == path_int(request, "c")),
            None,
        )
    if curve is None:
        raise NotFound("no such DERCurve")
    return reply(render_curve(pen(request), request.path, curve))
