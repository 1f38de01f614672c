"""/events: the core's price and DR events as 3.x events. A BL client's event is created, changed and cancelled
through ``server.core.events`` like staff's (so 2030.5 devices and 2.0b VENs of the program get it too); an event
staff or the optimizer made shows up here. DELETE cancels (the core keeps every event); a cancelled event is gone
from 3.x. Targets are VEN names; an event aimed at nobody in a program without VEN members reaches every VEN."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events as core_events
from server.core import oadr3
from server.core import oadr3_clients as clients
from server.core.errors import Invalid
from server.openadr3 import render
from server.openadr3.auth import caller, needs
from server.openadr3.http import (
    answer,
    body,
    object_id,
    page,
    path_id,
    query_bool,
    query_id,
    query_list,
    runtime,
)
from server.store.models import Event
from server.store.types import utcnow

routes = web.RouteTableDef()


async def rendered(session: AsyncSession, found: list[Event]) -> list[dict[str, Any]]:
    targets = await oadr3.event_targets(session, [e.id for e in found])
    return [render.event(e, targets.get(e.id, [])) for e in found]


def _extra(value: dict[str, Any]) -> dict[str, Any]:
    return {k: value[k] for k in render.EVENT_EXTRA if k in value}


@routes.get("/events")
@needs(clients.READ_TARGETS)
async def search(request: web.Request) -> web.Response:
    query = oadr3.events_query(
        caller(request),
        program_id=query_id(request, "programID"),
        targets=query_list(request, "targets"),
        active=query_bool(request, "active"),
    )
    async with runtime(request).store.sessions() as session:
        out = await rendered(session, await page(request, session, query))
    return answer(request, "event", out, many=True)


@routes.post("/events")
@needs(clients.WRITE_EVENTS)
async def create(request: web.Request) -> web.Response:
    value = await body(request, "eventRequest")
    start, signal, randomize = render.signal_from(value, utcnow())
    targets = list(value.get("targets") or [])
    async with runtime(request).store.sessions() as session, session.begin():
        program = await oadr3.program_for(session, caller(request), object_id(value["programID"], "program"))
        if program.kind != "dr":
            raise Invalid("3.x events are created in DR programs; prices are published by staff on tariffs")
        await oadr3.vens_named(session, targets)  # unknown names are the body's fault (400), not a 404
        payload: dict[str, Any] = {"signal": signal, "openadr3": _extra(value)}
        if "priority" in value:
            payload["priority"] = value["priority"]
        event = await core_events.create(
            session,
            program,
            core_events.NewEvent(
                start=start,
                duration_s=sum(i["duration_s"] for i in signal["intervals"]),
                payload=payload,
                description=str(value.get("eventName") or ""),
                randomize_start_s=randomize,
                ven_names=tuple(targets),
                all_vens=await oadr3.reaches_everyone(session, program, targets),
            ),
        )
        (out,) = await rendered(session, [event])
    return answer(request, "event", out, 201)


@routes.get("/events/{eventID}")
@needs(clients.READ_TARGETS)
async def get(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        event = await oadr3.event_for(session, caller(request), path_id(request, "eventID"))
        (out,) = await rendered(session, [event])
    return answer(request, "event", out)


@routes.put("/events/{eventID}")
@needs(clients.WRITE_EVENTS)
async def update(request: web.Request) -> web.Response:
    event_id = path_id(request, "eventID")
    value = await body(request, "eventRequest")
    start, signal, _ = render.signal_from(value, utcnow())
    async with runtime(request).store.sessions() as session, session.begin():
        event = await oadr3.event_for(session, caller(request), event_id)
        if object_id(value["programID"], "program") != event.program_id:
            raise Invalid("an event cannot move to another program")
        current = (await oadr3.event_targets(session, [event.id])).get(event.id, [])
        if "targets" in value and sorted(value["targets"]) != current:
            raise Invalid("an event's targets cannot change: cancel it and create another")
        if signal["name"] != (event.payload.get("signal") or {}).get("name"):
            raise Invalid("an event's payload type cannot change")
        event.payload = {**event.payload, "openadr3": _extra(value)}
        event = await core_events.modify(
            session,
            event,
            start=start,
            intervals=signal["intervals"],
            priority=value.get("priority"),
            reason="changed by an OpenADR 3 business-logic client",
        )
        (out,) = await rendered(session, [event])
    return answer(request, "event", out)


@routes.delete("/events/{eventID}")
@needs(clients.WRITE_EVENTS)
async def delete(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        event = await oadr3.event_for(session, caller(request), path_id(request, "eventID"))
        await core_events.cancel(session, event)
        (out,) = await rendered(session, [event])
    return answer(request, "event", out)
