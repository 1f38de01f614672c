"""2030.5 DRLC function set (thermostats, water heaters, EVSE, ...), reached through the device:

    /edev/{e}/drp                      DemandResponseProgramList
    /edev/{e}/drp/{d}                  DemandResponseProgram
    /edev/{e}/drp/{d}/edc[/{c}]        EndDeviceControlList / EndDeviceControl
    /edev/{e}/drp/{d}/actedc           ActiveEndDeviceControlList

EndDeviceControls are events with the same status/supersession/primacy rules as DER controls
(``server.core.der_controls`` through ``server.core.influence``); responses go to ``/edev/{e}/rsp``
(``server.sep2.events``).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import influence
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
from server.store.models import EndDevice, Sep2InfluenceEvent, Sep2InfluenceSet
from server.store.types import utcnow

routes = web.RouteTableDef()
MRID_DRP = 0x13


async def drp_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, drp_id: int
) -> tuple[EndDevice, Sep2InfluenceSet]:
    return await events.set_in_scope(session, scope, device_id, "drp", drp_id, "DemandResponseProgram")


async def _drp(request: web.Request, session: AsyncSession) -> tuple[EndDevice, Sep2InfluenceSet]:
    return await drp_in_scope(session, scope_of(request), path_int(request, "e"), path_int(request, "d"))


def render_drp(pen: int, device: EndDevice, p: Sep2InfluenceSet, n_active: int, n_all: int) -> etree._Element:
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


def render_edc(request, device: EndDevice, e: Sep2InfluenceEvent, ev) -> etree._Element:
    href = f"/edev/{device.id}/drp/{e.set_id}/edc/{e.id}"
    el = events.render_event(
        "EndDeviceControl",
        href,
        events.MRID_EDC,
        e,
        ev,
        render.pen(request),
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
    request,
    session: AsyncSession,
    device: EndDevice,
    p: Sep2InfluenceSet,
    now: dt.datetime,
    start: int,
    limit: int,
    active_only: bool = False,
    after: dt.datetime | None = None,
) -> etree._Element:
    # supersession is within the program; potentiallySuperseded looks across every DR program of the device
    everything = await influence.evaluated(
        session, await influence.device_sets(session, device.id, "drp"), now
    )
    found = [(e, ev) for e, ev in everything if e.set_id == p.id and (not active_only or ev.status == 1)]
    suffix = "actedc" if active_only else "edc"
    return events.event_list(
        "EndDeviceControlList",
        f"/edev/{device.id}/drp/{p.id}/{suffix}",
        found,
        lambda e, ev: render_edc(request, device, e, ev),
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
        found = await influence.device_sets(session, device.id, "drp")
        rate = await render.poll_rate(request, session, "DemandResponseProgramList")
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


@routes.get("/edev/{e}/drp/{d}/edc")
@sep2_handler
async def get_edc_list(request: web.Request) -> web.Response:
    return await events.event_list_reply(request, _drp, render_edc_list, active_only=False)


@routes.get("/edev/{e}/drp/{d}/actedc")
@sep2_handler
async def get_active_edc_list(request: web.Request) -> web.Response:
    return await events.event_list_reply(request, _drp, render_edc_list, active_only=True)


@routes.get("/edev/{e}/drp/{d}/edc/{c}")
@sep2_handler
async def get_edc(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, p = await _drp(request, session)
        found = await influence.evaluated(
            session, await influence.device_sets(session, device.id, "drp"), utcnow()
        )
    c = path_int(request, "c")
    for e, ev in found:
        if e.id == c and e.set_id == p.id:
            return reply(render_edc(request, device, e, ev))
    raise NotFound("no such EndDeviceControl")
