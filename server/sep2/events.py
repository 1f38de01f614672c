"""What TimeTariffInterval and EndDeviceControl share on the wire: the RandomizableEvent fields in schema order
(mRID, description, creationTime, EventStatus, interval, randomizeDuration, randomizeStart) and the
replyTo/responseRequired attributes; how a tariff or DR program is found for a device and how the lists of
their events (TimeTariffIntervalList, EndDeviceControlList and their Active… lists) are paged and answered; plus
the Responses devices post back for them:

    /edev/{e}/rsp          ResponseList of the device's pricing/DRLC responses (GET; POST a Response,
                           DrResponse or PriceResponse whose subject is a TimeTariffInterval/EndDeviceControl mRID)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from aiohttp import web
from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import der_controls as rules
from server.core import events as core_events
from server.core import programs
from server.core.errors import Invalid, NotFound
from server.core.metering import from_epoch
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import render, xml
from server.sep2.common import (
    created,
    epoch,
    list_element,
    mrid,
    page,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
    sessions,
)
from server.sep2.render import RenderCtx, render_ctx
from server.store.models import EndDevice, Event, EventResponse, Program
from server.store.types import utcnow

routes = web.RouteTableDef()
MRID_TTI, MRID_EDC = 0x12, 0x14
RESPONSE_STATUSES = set(range(0, 15)) | {252, 253, 254}  # 2030.5 Response status codes (incl. DRLC 3..10)


def render_event(
    tag: str, href: str, kind: int, e: Event, ev: rules.Evaluated, pen: int, reply_to: str
) -> etree._Element:
    attrs: dict = {"href": href}
    if e.response_required:
        attrs["replyTo"] = reply_to
        attrs["responseRequired"] = f"{e.response_required:02X}"
    return xml.E(
        tag,
        attrs,
        xml.leaf("mRID", mrid(kind, e.id, pen)),
        xml.leaf("description", e.description or None),
        xml.leaf("creationTime", epoch(e.creation_time)),
        xml.E(
            "EventStatus",
            None,
            xml.leaf("currentStatus", int(ev.status)),
            xml.leaf("dateTime", epoch(e.cancelled_at or e.creation_time)),
            xml.leaf("potentiallySuperseded", ev.potentially_superseded),
        ),
        xml.E("interval", None, xml.leaf("duration", e.duration_s), xml.leaf("start", epoch(e.start))),
        xml.leaf("randomizeDuration", e.randomize_duration_s),
        xml.leaf("randomizeStart", e.randomize_start_s),
    )


Evaluated = list[tuple[Event, rules.Evaluated]]
# (render context, device, set, start, limit, active_only, after) -> the event list element
ListRenderer = Callable[
    [RenderCtx, EndDevice, Program, int, int, bool, dt.datetime | None],
    Awaitable[etree._Element],
]
SetFinder = Callable[[web.Request, AsyncSession], Awaitable[tuple[EndDevice, Program]]]


async def set_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, kind: str, set_id: int, what: str
) -> tuple[EndDevice, Program]:
    """The tariff or DR program (a program of ``kind``) ``set_id`` if an EndDevice the caller may reach is enrolled
    in it; otherwise 404 naming it as ``what``."""
    device = await device_in_scope(session, scope, device_id)
    for s in await programs.device_member_programs(session, device.id, kind):
        if s.id == set_id:
            return device, s
    raise NotFound(f"no {what} {set_id} for EndDevice {device_id}")


async def counts(session: AsyncSession, s: Program, now: dt.datetime) -> tuple[int, int]:
    """How many of the set's events are active, and how many its event list holds."""
    found = renderable(await core_events.evaluated(session, [s], now))
    return sum(1 for _, ev in found if ev.status == 1), len(found)


def event_list(
    tag: str,
    href: str,
    found: Evaluated,
    render_one: Callable[[Event, rules.Evaluated], etree._Element],
    start: int,
    limit: int,
    active_only: bool,
    after: dt.datetime | None,
) -> etree._Element:
    """One page of an event list; the Active… lists are not subscribable."""
    if after:
        found = [x for x in found if x[0].changed_at >= after]
    items = [render_one(e, ev) for e, ev in found[start : start + limit]]
    return list_element(tag, href, items, len(found), subscribable=not active_only)


async def event_list_reply(
    request: web.Request, find: SetFinder, render_list: ListRenderer, active_only: bool
) -> web.Response:
    """GET of an event list (or its Active… list) of the set ``find`` resolves from the request's path."""
    pg = page(request)
    async with sessions(request)() as session:
        device, s = await find(request, session)
        el = await render_list(
            render_ctx(request, session), device, s, pg.start, pg.limit, active_only, pg.after
        )
    return reply(el)


def parse_event_mrid(value: str, pen: int) -> int | None:
    """The id of a TimeTariffInterval/EndDeviceControl of this server named by ``value``, else None."""
    value = value.strip().upper()
    if len(value) != 32 or not value.endswith(f"{pen % 10**8:08d}"):
        return None
    try:
        kind, ident = int(value[:4], 16), int(value[12:24], 16)
    except ValueError:
        return None
    return ident if kind in (MRID_TTI, MRID_EDC) else None


def renderable(found: Evaluated) -> Evaluated:
    """The events 2030.5 can show: a DR event needs a load control (an event staff gave only an OpenADR signal
    reaches VENs alone)."""
    return [(e, ev) for e, ev in found if e.kind != "dr" or "control" in e.payload]


def render_response(r: EventResponse, pen: int, kind: int) -> etree._Element:
    return xml.E(
        "Response",
        {"href": f"/edev/{r.end_device_id}/rsp/{r.id}"},
        xml.leaf("createdDateTime", epoch(r.created_date_time)),
        xml.leaf("endDeviceLFDI", r.lfdi),
        xml.leaf("status", r.status),
        xml.leaf("subject", mrid(kind, r.event_id, pen)),
    )


async def _kind_of(session: AsyncSession, event_id: int) -> int:
    e = await session.get(Event, event_id)
    return MRID_EDC if e is not None and e.kind == "dr" else MRID_TTI


@routes.get("/edev/{e}/rsp")
@sep2_handler
async def get_responses(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        query = core_events.responses_query(end_device_ids=[device.id]).where(
            EventResponse.event_id.in_(select(Event.id).where(Event.kind.in_(("price", "dr"))))
        )
        found, total = await pg.fetch(session, query)
        items = [render_response(r, render.pen(request), await _kind_of(session, r.event_id)) for r in found]
    return reply(list_element("ResponseList", f"/edev/{device.id}/rsp", items, total))


@routes.post("/edev/{e}/rsp")
@sep2_handler
async def post_response(request: web.Request) -> web.Response:
    body = await read_body(request, "Response", "DrResponse", "PriceResponse")
    lfdi = render.lfdi_of(xml.text(body, "endDeviceLFDI") or "")
    status = xml.integer(body, "status")
    if status is None or status not in RESPONSE_STATUSES:
        raise Invalid("Response status is required and must be a 2030.5 response status code")
    event_id = parse_event_mrid(xml.text(body, "subject") or "", render.pen(request))
    if event_id is None:
        raise Invalid("subject is not the mRID of a TimeTariffInterval or EndDeviceControl of this server")
    created_at = xml.integer(body, "createdDateTime")
    created_dt = from_epoch(created_at, "createdDateTime") if created_at is not None else utcnow()
    async with runtime(request).store.sessions.begin() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        if lfdi != device.lfdi:
            raise Invalid("endDeviceLFDI is not this EndDevice")
        event = await session.get(Event, event_id)
        visible = set()
        for kind in ("price", "dr"):
            for s in await programs.device_member_programs(session, device.id, kind):
                visible.add(s.id)
                visible.update(r.id for r in await programs.list_programs(session, "rate", s.id))
        if event is None or event.program_id not in visible:
            raise Invalid("subject is not an event sent to this EndDevice")
        r = await core_events.record_response(
            session, event, core_events.DeviceAnswer(device.id, lfdi, status, created_dt)
        )
        href = f"/edev/{device.id}/rsp/{r.id}"
    return created(href)
