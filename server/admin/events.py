"""Staff API for events of every kind -- the one route family (staff and the optimizer create through
``server.core.events.create``; the controls, tariff and DR-program routes are the older shapes of the same call):

    GET  /api/v1/events[?program=REF][&kind=der|price|dr][&all=1][&offset=&limit=]   newest first; X-Total-Count
    POST /api/v1/events            {program: id|name, kind?, start: ISO|"now", duration_s, description?,
                                    randomize_start_s?, randomize_duration_s?, response_required?,
                                    der:   base: {...DERControlBase}
                                    price: prices: [{price, start_value?}], tou_tier?, rate? (of a tariff)
                                    dr:    device_category, control: {...}, level? (OpenADR SIMPLE 0..3), ...
                                    price/dr: signal? {name, type?, intervals}, vens? [names], all_vens?}
    GET  /api/v1/events/{id}       the event, its program and every response (2030.5 and OpenADR) side by side
    POST /api/v1/events/{id}/cancel {randomized?}
    GET  /api/v1/events/{id}/responses
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.access import requires
from server.admin.common import event_id, field, json_body, list_reply, reply, runtime, window
from server.admin.sep2 import parse_start
from server.admin.tariffs_dr import dr_payload
from server.core import events, plans, programs
from server.core.errors import Invalid, NotFound
from server.core.staff import EVENTS
from server.store.models import Event, Program
from server.store.paging import fetch_page

routes = web.RouteTableDef()


async def event_out(session: AsyncSession, e: Event, with_responses: bool = False) -> dict[str, Any]:
    program = await session.get(Program, e.program_id)
    out = {**events.event_dict(e, program), "href": f"/api/v1/events/{e.id}"}
    if with_responses:
        out["responses"] = await events.responses_of(session, e.id)
        # provenance: the plans that created or kept it, and why
        out["plans"] = await plans.of_event(session, e.id)
    return out


async def _target(session: AsyncSession, body: dict[str, Any]) -> Program:
    """The program an event goes to; for a tariff, the rate component named (or its first)."""
    program = await programs.get_program(
        session, field(body, "program", (str, int)), field(body, "kind", str, required=False)
    )
    if program.kind != "price":
        return program
    rates = await programs.list_programs(session, "rate", program.id)
    ref = field(body, "rate", (str, int), required=False)
    rate = next((r for r in rates if ref is None or str(r.id) == str(ref) or r.name == ref), None)
    if rate is None:
        raise NotFound(f"tariff {program.name!r} has no such rate component")
    return rate


def _payload(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    if kind == "der":
        return {"base": field(body, "base", dict)}
    out: dict[str, Any]
    if kind == "rate":
        out = {
            "tiers": field(body, "prices", list),
            "tou_tier": field(body, "tou_tier", int, required=False, default=0),
        }
    elif kind == "dr":
        given = body.get("control") is not None or body.get("device_category") is not None
        out = dr_payload(body) if given else ({"level": field(body, "level", int)} if "level" in body else {})
    else:
        raise Invalid(f"a {kind} program holds no events")
    if "signal" in body:
        out["signal"] = field(body, "signal", dict)
    return out


@routes.post("/api/v1/events")
@requires(EVENTS)
async def create_event(request: web.Request) -> web.Response:
    body = await json_body(request)
    vens = field(body, "vens", list, required=False, default=[])
    if not all(isinstance(v, str) for v in vens):
        raise Invalid("vens must be a list of VEN names")
    async with runtime(request).store.sessions.begin() as session:
        program = await _target(session, body)
        new = events.NewEvent(
            start=parse_start(field(body, "start", str, required=False, default="now")),
            duration_s=field(body, "duration_s", int),
            payload=_payload(program.kind, body),
            description=field(body, "description", str, required=False, default=""),
            randomize_start_s=field(body, "randomize_start_s", int, required=False),
            randomize_duration_s=field(body, "randomize_duration_s", int, required=False),
            response_required=field(body, "response_required", int, required=False),
            ven_names=tuple(vens),
            all_vens=field(body, "all_vens", bool, required=False, default=False),
        )
        e = await events.create(session, program, new)
        return reply(await event_out(session, e), 201)


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind is not None and kind not in ("der", "price", "dr"):
        raise Invalid("kind must be der, price or dr")
    async with runtime(request).store.sessions() as session:
        program_id = None
        if "program" in request.query:
            program_id = (await programs.get_program(session, request.query["program"], None)).id
        query = events.events_query(
            program_id=program_id, kind=kind, include_completed=request.query.get("all") in ("1", "true")
        )
        win = window(request)
        found, total = await fetch_page(session, query, win.offset, win.limit)
        return list_reply([await event_out(session, e) for e in found], total)


@routes.get("/api/v1/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(
            await event_out(session, await events.get(session, event_id(request)), with_responses=True)
        )


@routes.post("/api/v1/events/{id}/cancel")
@requires(EVENTS)
async def cancel_event(request: web.Request) -> web.Response:
    body = await json_body(request) if request.body_exists else {}
    async with runtime(request).store.sessions.begin() as session:
        e = await events.get(session, event_id(request))
        await events.cancel(session, e, field(body, "randomized", bool, required=False, default=False))
        return reply(await event_out(session, e))


@routes.get("/api/v1/events/{id}/responses")
async def event_responses(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        e = await events.get(session, event_id(request))
        return reply(await events.responses_of(session, e.id))
