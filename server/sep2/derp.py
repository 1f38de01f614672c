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

import datetime as dt
from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import der_controls as rules
from server.core import programs
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import xml
from server.sep2.common import (
    MRID_CONTROL,
    MRID_CURVE,
    MRID_DEFAULT,
    MRID_PROGRAM,
    Page,
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
from server.sep2.render import pen, poll_rate
from server.sep2.responses import RESPONSE_SET_ID
from server.store.models import EndDevice, Sep2Control, Sep2Program
from server.store.types import utcnow

routes = web.RouteTableDef()


async def program_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, program_id: int
) -> tuple[EndDevice, Sep2Program]:
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
    return el


# ---------------------------------------------------------------------------------------------- DERPrograms
async def render_program(
    request: web.Request, session: AsyncSession, device: EndDevice, program: Sep2Program, now: dt.datetime
) -> etree._Element:
    href = f"/edev/{device.id}/derp/{program.id}"
    intervals, _ = await programs.device_intervals(session, device.id)
    mine = [i for i in intervals if i.program_id == program.id]
    visible = [i for i in mine if not rules.evaluate(i, intervals, now).completed]
    active = [i for i in visible if rules.evaluate(i, intervals, now).status == rules.EventStatus.ACTIVE]
    return xml.E(
        "DERProgram",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_PROGRAM, program.id, pen(request))),
        xml.leaf("description", (program.description or program.name)[:32]),
        xml.link("ActiveDERControlListLink", f"{href}/actderc", len(active)),
        # always linked: clients subscribe to it before staff set one (cactus S-ALL-35..40)
        xml.link("DefaultDERControlLink", f"{href}/dderc"),
        xml.link("DERControlListLink", f"{href}/derc", len(visible)),
        xml.link("DERCurveListLink", f"{href}/dc", len(await programs.program_curves(session, program.id))),
        xml.leaf("primacy", program.primacy),
    )


@routes.get("/edev/{e}/fsa/{f}/derp")
@sep2_handler
async def get_program_list(request: web.Request) -> web.Response:
    pg = page(request)
    now = utcnow()
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        fsa_id = path_int(request, "f")
        if fsa_id not in {f.id for f in await programs.device_fsas(session, device.id)}:
            raise NotFound("no such FunctionSetAssignments")
        found = await programs.fsa_programs(session, fsa_id)
        rate = await poll_rate(request, session, "DERProgramList")
        items = [await render_program(request, session, device, p, now) for p in pg.slice(found)]
    return reply(
        list_element(
            "DERProgramList",
            f"/edev/{device.id}/fsa/{fsa_id}/derp",
            items,
            len(found),
            rate,
            subscribable=True,
        )
    )


@routes.get("/edev/{e}/derp/{p}")
@sep2_handler
async def get_program(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
        return reply(await render_program(request, session, device, program, utcnow()))


# ----------------------------------------------------------------------------------------------- DERControls
def render_control(
    request: web.Request, device: EndDevice, c: Sep2Control, ev: rules.Evaluated
) -> etree._Element:
    href = f"/edev/{device.id}/derp/{c.program_id}/derc/{c.id}"
    attrs: dict[str, Any] = {"href": href}
    if c.response_required:
        attrs["replyTo"] = f"/rsps/{RESPONSE_SET_ID}/rsp"
        attrs["responseRequired"] = f"{c.response_required:02X}"
    status_time = c.cancelled_at or c.creation_time
    return xml.E(
        "DERControl",
        attrs,
        xml.leaf("mRID", mrid(MRID_CONTROL, c.id, pen(request))),
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
        control_base(c.base, f"/edev/{device.id}/derp/{c.program_id}/dc"),
    )


async def program_controls(
    session: AsyncSession,
    device: EndDevice,
    program: Sep2Program,
    now: dt.datetime,
    active_only: bool = False,
) -> list[tuple[Sep2Control, rules.Evaluated]]:
    intervals, controls = await programs.device_intervals(session, device.id)
    out = []
    for i in sorted((i for i in intervals if i.program_id == program.id), key=rules.list_order_key):
        ev = rules.evaluate(i, intervals, now)
        if ev.completed or (active_only and ev.status != rules.EventStatus.ACTIVE):
            continue
        out.append((controls[i.id], ev))
    return out


def _after(
    pg: Page, found: list[tuple[Sep2Control, rules.Evaluated]]
) -> list[tuple[Sep2Control, rules.Evaluated]]:
    return [x for x in found if x[0].changed_at >= pg.after] if pg.after else found


async def _control_list(request: web.Request, active_only: bool) -> web.Response:
    """DERControlList (``derc``: not yet completed, honours the ``a`` after-parameter) or ActiveDERControlList
    (``actderc``: active now); both take subscriptions (server.sep2.subscriptions) and say so."""
    pg = page(request)
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
        found = await program_controls(session, device, program, utcnow(), active_only=active_only)
    if not active_only:
        found = _after(pg, found)
    return reply(control_list(request, device, program, pg.slice(found), len(found), active_only))


def control_list(
    request: web.Request,
    device: EndDevice,
    program: Sep2Program,
    shown: list[tuple[Sep2Control, rules.Evaluated]],
    total: int,
    active_only: bool,
) -> etree._Element:
    """A DERControlList (``derc``) or ActiveDERControlList (``actderc``) page, for GETs and notifications alike."""
    suffix = "actderc" if active_only else "derc"
    items = [render_control(request, device, c, ev) for c, ev in shown]
    return list_element(
        "DERControlList", f"/edev/{device.id}/derp/{program.id}/{suffix}", items, total, subscribable=True
    )


@routes.get("/edev/{e}/derp/{p}/derc")
@sep2_handler
async def get_control_list(request: web.Request) -> web.Response:
    return await _control_list(request, active_only=False)


@routes.get("/edev/{e}/derp/{p}/actderc")
@sep2_handler
async def get_active_control_list(request: web.Request) -> web.Response:
    return await _control_list(request, active_only=True)


@routes.get("/edev/{e}/derp/{p}/derc/{c}")
@sep2_handler
async def get_control(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
        intervals, controls = await programs.device_intervals(session, device.id)
        control = controls.get(path_int(request, "c"))
        if control is None or control.program_id != program.id:
            raise NotFound("no such DERControl")
        interval = next(i for i in intervals if i.id == control.id)
        return reply(render_control(request, device, control, rules.evaluate(interval, intervals, utcnow())))


@routes.get("/edev/{e}/derp/{p}/dderc")
@sep2_handler
async def get_default_control(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "p")
        )
    # without one set, an empty DefaultDERControl (no DERControlBase values: nothing to apply by default)
    return reply(render_default(request, device, program))


def render_default(request: web.Request, device: EndDevice, program: Sep2Program) -> etree._Element:
    default = program.default_control or {}
    href = f"/edev/{device.id}/derp/{program.id}/dderc"
    return xml.E(
        "DefaultDERControl",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_DEFAULT, program.id, pen(request), program.default_version)),
        xml.leaf("description", (program.description or program.name)[:32]),
        control_base(default.get("base", {}), f"/edev/{device.id}/derp/{program.id}/dc"),
        xml.leaf("setGradW", default.get("setGradW")),
    )


def render_curve(request: web.Request, href: str, c) -> etree._Element:
    return xml.E(
        "DERCurve",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_CURVE, c.id, pen(request))),
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
    items = [render_curve(request, f"{href}/{c.id}", c) for c in pg.slice(curves)]
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
    return reply(render_curve(request, request.path, curve))
