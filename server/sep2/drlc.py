"""2030.5 DRLC function set (thermostats, water heaters, EVSE, ...), reached through the device:

    /edev/{e}/drp                      DemandResponseProgramList
    /edev/{e}/drp/{d}                  DemandResponseProgram
    /edev/{e}/drp/{d}/edc[/{c}]        EndDeviceControlList / EndDeviceControl
    /edev/{e}/drp/{d}/actedc           ActiveEndDeviceControlList

EndDeviceControls are events with the same status/supersession/primacy rules as DER controls
(``server.core.der_controls`` through ``server.core.events``); responses go to ``/edev/{e}/rsp``
(``server.sep2.events``).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import der_controls as rules
from server.core import events as core_events
from server.core import programs
from server.core.changes import Change
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import events, render, xml
from server.sep2.common import (
    list_element,
    mrid,
    page,
    path_int,
    reply,
    runtime,
    scope_of,
    sep2_handler,
)
from server.sep2.render import RenderCtx, render_ctx
from server.sep2.resources import Params, any_of, page_params, subscribable
from server.store.models import EndDevice, Event, Program, ProgramMember, Sep2Subscription
from server.store.types import utcnow

routes = web.RouteTableDef()
MRID_DRP = 0x13


async def drp_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, drp_id: int
) -> tuple[EndDevice, Program]:
    return await events.set_in_scope(session, scope, device_id, "dr", drp_id, "DemandResponseProgram")


async def _drp(request: web.Request, session: AsyncSession) -> tuple[EndDevice, Program]:
    return await drp_in_scope(session, scope_of(request), path_int(request, "e"), path_int(request, "d"))


def render_drp(pen: int, device: EndDevice, p: Program, n_active: int, n_all: int) -> etree._Element:
    href = f"/edev/{device.id}/drp/{p.id}"
    return xml.E(
        "DemandResponseProgram",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_DRP, p.id, pen)),
        xml.leaf("description", (p.description or p.name)[:32]),
        xml.link("ActiveEndDeviceControlListLink", f"{href}/actedc", n_active),
        xml.link("EndDeviceControlListLink", f"{href}/edc", n_all),
        xml.leaf("primacy", p.primacy),
    )


def render_edc(pen: int, device: EndDevice, e: Event, ev) -> etree._Element:
    href = f"/edev/{device.id}/drp/{e.program_id}/edc/{e.id}"
    el = events.render_event(
        "EndDeviceControl",
        href,
        events.MRID_EDC,
        e,
        ev,
        pen,
        reply_to=f"/edev/{device.id}/rsp",
    )
    p, c = e.payload, e.payload.get("control", {})
    if "applianceLoadReduction" in c:
        el.append(
            xml.E("ApplianceLoadReduction", None, xml.leaf("type", c["applianceLoadReduction"]["type"]))
        )
    el.append(xml.leaf("deviceCategory", f"{p['deviceCategory']:08X}"))
    el.append(xml.leaf("drProgramMandatory", bool(p.get("drProgramMandatory"))))
    if "dutyCycle" in c:
        el.append(xml.E("DutyCycle", None, xml.leaf("normalValue", c["dutyCycle"]["normalValue"])))
    el.append(xml.leaf("loadShiftForward", bool(p.get("loadShiftForward"))))
    if "offset" in c:
        o = c["offset"]
        el.append(
            xml.E(
                "Offset",
                None,
                xml.leaf("coolingOffset", o.get("coolingOffset")),
                xml.leaf("heatingOffset", o.get("heatingOffset")),
                xml.leaf("loadAdjustmentPercentageOffset", o.get("loadAdjustmentPercentageOffset")),
            )
        )
    xml.add(el, xml.leaf("overrideDuration", p.get("overrideDuration")))
    if "setPoint" in c:
        s = c["setPoint"]
        el.append(
            xml.E(
                "SetPoint",
                None,
                xml.leaf("coolingSetpoint", s.get("coolingSetpoint")),
                xml.leaf("heatingSetpoint", s.get("heatingSetpoint")),
            )
        )
    if "targetReduction" in c:
        t = c["targetReduction"]
        el.append(xml.E("TargetReduction", None, xml.leaf("type", t["type"]), xml.leaf("value", t["value"])))
    return el


async def render_edc_list(
    ctx: RenderCtx,
    device: EndDevice,
    p: Program,
    start: int,
    limit: int,
    active_only: bool = False,
    after: dt.datetime | None = None,
) -> etree._Element:
    # supersession is within the program; potentiallySuperseded looks across every DR program of the device
    everything = events.renderable(
        await core_events.evaluated(
            ctx.session, await programs.device_member_programs(ctx.session, device.id, "dr"), ctx.now
        )
    )
    found = [(e, ev) for e, ev in everything if e.program_id == p.id and (not active_only or ev.status == 1)]
    suffix = "actedc" if active_only else "edc"
    return events.event_list(
        "EndDeviceControlList",
        f"/edev/{device.id}/drp/{p.id}/{suffix}",
        found,
        lambda e, ev: render_edc(ctx.pen, device, e, ev),
        start,
        limit,
        active_only,
        after,
    )


@routes.get("/edev/{e}/drp")
@sep2_handler
async def get_drp_list(request: web.Request) -> web.Response:
    pg = page(request)
    now = utcnow()
    async with runtime(request).store.sessions() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        found = await programs.device_member_programs(session, device.id, "dr")
        rate = await render.poll_rate(render_ctx(request, session), "DemandResponseProgramList")
        items = [
            render_drp(render.pen(request), device, p, *await events.counts(session, p, now))
            for p in pg.slice(found)
        ]
    return reply(
        list_element(
            "DemandResponseProgramList", f"/edev/{device.id}/drp", items, len(found), rate, subscribable=True
        )
    )


@routes.get("/edev/{e}/drp/{d}")
@sep2_handler
async def get_drp(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, p = await _drp(request, session)
        n = await events.counts(session, p, utcnow())
    return reply(render_drp(render.pen(request), device, p, *n))


def _edc_list_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = []
    if change.programs:
        conds.append(Sep2Subscription.program_id.in_(change.programs))
    return any_of(conds, change, "EndDeviceControlList")


async def edc_lists_touched(
    session: AsyncSession, change: Change, now: dt.datetime
) -> list[Sep2Subscription]:
    """EndDeviceControlLists of *other* DR programs of the devices a changed DR program reaches, listing an event
    that overlaps one of the changed program (potentiallySuperseded looks across the device's DR programs)."""
    if not change.programs:
        return []
    drps = list(
        await session.scalars(select(Program.id).where(Program.id.in_(change.programs), Program.kind == "dr"))
    )
    if not drps:
        return []
    reached = select(ProgramMember.end_device_id).where(ProgramMember.program_id.in_(drps))
    subs = list(
        await session.scalars(
            select(Sep2Subscription).where(
                Sep2Subscription.kind == "edc-list",
                Sep2Subscription.subject_device_id.in_(reached),
                Sep2Subscription.program_id.not_in(drps),
            )
        )
    )
    if not subs:
        return []
    ids = set(drps) | {s.program_id for s in subs if s.program_id is not None}
    by_set: dict[int, list[rules.Interval]] = {}
    for e in await core_events.relevant(session, list(ids), now):
        by_set.setdefault(e.program_id, []).append(core_events.interval_of(e, 0))
    changed = [i for d in drps for i in by_set.get(d, [])]
    return [s for s in subs if rules.touches(changed, by_set.get(s.program_id or 0, []), now)]


@subscribable(
    "edc-list", "/edev/{e}/drp/{p}/edc", affected=_edc_list_affected, is_list=True, touched=edc_lists_touched
)
async def render_edc_list_resource(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """EndDeviceControlList of a DR program (``p``) assigned to the device."""
    device, drp = await drp_in_scope(ctx.session, scope, params.e or 0, params.p or 0)
    return await render_edc_list(ctx, device, drp, params.start, params.limit, False, params.after)


@routes.get("/edev/{e}/drp/{d}/edc")
@sep2_handler
async def get_edc_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"), p=path_int(request, "d"))
    async with runtime(request).store.sessions() as session:
        return reply(await render_edc_list_resource(render_ctx(request, session), scope_of(request), params))


@routes.get("/edev/{e}/drp/{d}/actedc")
@sep2_handler
async def get_active_edc_list(request: web.Request) -> web.Response:
    return await events.event_list_reply(request, _drp, render_edc_list, active_only=True)


@routes.get("/edev/{e}/drp/{d}/edc/{c}")
@sep2_handler
async def get_edc(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, p = await _drp(request, session)
        found = events.renderable(
            await core_events.evaluated(
                session, await programs.device_member_programs(session, device.id, "dr"), utcnow()
            )
        )
    c = path_int(request, "c")
    for e, ev in found:
        if e.id == c and e.program_id == p.id:
            return reply(render_edc(render.pen(request), device, e, ev))
    raise NotFound("no such EndDeviceControl")
