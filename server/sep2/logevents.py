"""2030.5 LogEvent function set: a device posts its log events; the device (or its aggregator) and staff read them.

    /edev/{e}/lel          LogEventList (GET; POST a LogEvent -> 201 + Location)
    /edev/{e}/lel/{l}      LogEvent (GET)

Ordered newest first (createdDateTime descending, then the order received), as a device reviewing its log expects.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from lxml import etree

from server.core import logevents
from server.core.errors import Invalid, NotFound
from server.core.metering import from_epoch
from server.core.parties import device_in_scope
from server.sep2 import xml
from server.sep2.common import (
    epoch,
    list_element,
    page,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
)
from server.sep2.render import poll_rate, render_ctx
from server.store.models import Sep2LogEvent
from server.store.types import utcnow

routes = web.RouteTableDef()
MAX_PER_DEVICE_LIST = 100_000  # a device cannot grow its log without bound; staff prune with retention


def render(e: Sep2LogEvent) -> etree._Element:
    return xml.E(
        "LogEvent",
        {"href": f"/edev/{e.end_device_id}/lel/{e.id}"},
        xml.leaf("createdDateTime", epoch(e.created_date_time)),
        xml.leaf("details", e.details or None),
        xml.leaf("extendedData", e.extended_data),
        xml.leaf("functionSet", e.function_set),
        xml.leaf("logEventCode", e.log_event_code),
        xml.leaf("logEventID", e.log_event_id),
        xml.leaf("logEventPEN", e.log_event_pen),
        xml.leaf("profileID", e.profile_id),
    )


@routes.get("/edev/{e}/lel")
@sep2_handler
async def get_log_event_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        query = logevents.device_events_query(device.id)
        found, total = await pg.fetch(session, query, Sep2LogEvent.created_date_time)
        rate = await poll_rate(render_ctx(request, session), "LogEventList")
    items = [render(e) for e in found]
    return reply(list_element("LogEventList", f"/edev/{device.id}/lel", items, total, rate))


@routes.post("/edev/{e}/lel")
@sep2_handler
async def post_log_event(request: web.Request) -> web.Response:
    body = await read_body(request, "LogEvent")
    created = from_epoch(xml.integer(body, "createdDateTime") or 0, "createdDateTime")
    if created > utcnow() + dt.timedelta(days=1) or created.year < 2000:
        raise Invalid("createdDateTime is implausible")
    body.attrib.pop("href", None)
    async with runtime(request).store.sessions.begin() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        if await logevents.count(session, device.id) >= MAX_PER_DEVICE_LIST:
            raise Invalid("this EndDevice's LogEventList is full")
        event = await logevents.record(
            session,
            device.id,
            created=created,
            function_set=xml.integer(body, "functionSet") or 0,
            code=xml.integer(body, "logEventCode") or 0,
            event_id=xml.integer(body, "logEventID") or 0,
            pen=xml.integer(body, "logEventPEN") or 0,
            profile_id=xml.integer(body, "profileID") or 0,
            details=xml.text(body, "details") or "",
            extended_data=xml.integer(body, "extendedData"),
            body=etree.tostring(body, encoding="unicode"),
        )
        href = f"/edev/{device.id}/lel/{event.id}"
    return web.Response(status=201, headers={"Location": href})


@routes.get("/edev/{e}/lel/{l}")
@sep2_handler
async def get_log_event(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        event = await session.get(Sep2LogEvent, path_int(request, "l"))
        if event is None or event.end_device_id != device.id:
            raise NotFound("no such LogEvent")
    return reply(render(event))
