"""Staff API for tariffs and demand-response programs: their members (2030.5 devices and OpenADR VENs) and the
price and load-control events published in them. Events are created by ``server.core.events.create`` like every
other event; these routes are the shapes the CLI has always used (``/api/v1/events`` is the one family).

Pricing (2030.5 TariffProfile / RateComponent / TimeTariffInterval; OpenADR ELECTRICITY_PRICE):

    GET  /api/v1/tariffs[/{ref}]                    tariffs with their rate components (ref: id or name)
    POST /api/v1/tariffs                            {name, currency?=840, price_power_of_ten?=-3, primacy?=1,
                                                     rate_code?, description?, market_context?}
    POST /api/v1/tariffs/{ref}/rates                {name, uom?=72, flow_direction?=1, role_flags?=1,
                                                     power_of_ten?=0, description?}
    POST /api/v1/tariffs/{ref}/assign               {lfdi} | {ven}   enrol a device or a VEN
    POST /api/v1/tariffs/{ref}/prices               {rate? (id|name, default the first), start: ISO|"now",
                                                     duration_s, prices: [{price, start_value?}], tou_tier?,
                                                     description?, randomize_start_s?, randomize_duration_s?,
                                                     response_required?}
    GET  /api/v1/tariffs/{ref}/prices

Demand response (2030.5 DemandResponseProgram / EndDeviceControl; OpenADR events of the program's VENs):

    GET  /api/v1/dr-programs[/{ref}]
    POST /api/v1/dr-programs                        {name, primacy?=1, description?, market_context?}
    POST /api/v1/dr-programs/{ref}/assign           {lfdi} | {ven}   enrol a device or a VEN
    POST /api/v1/dr-programs/{ref}/events           {start, duration_s, device_category: "0008"|["thermostat",..],
                                                     control: {applianceLoadReduction|dutyCycle|offset|setPoint|
                                                     targetReduction}, level? (OpenADR SIMPLE 0..3, default 1),
                                                     load_shift_forward?, mandatory?, override_duration_s?,
                                                     description?, randomize_*?, response_required?}
    GET  /api/v1/dr-programs/{ref}/events

Both:

    GET  /api/v1/influence-events/{id}              one price interval / load-control event
    POST /api/v1/influence-events/{id}/cancel       {randomized?}   (also /api/v1/prices/{id}/cancel,
                                                                     /api/v1/dr-events/{id}/cancel)
    GET  /api/v1/influence-events/{id}/responses    what devices and VENs answered
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.access import requires
from server.admin.common import event_id, field, json_body, reply, runtime
from server.admin.sep2 import parse_start
from server.core import events, pricing, programs, vens
from server.core.errors import Invalid, NotFound
from server.core.staff import EVENTS, PROGRAMS
from server.store.models import Event, Program

routes = web.RouteTableDef()


async def program_out(session: AsyncSession, p: Program, href: str) -> dict[str, Any]:
    return {
        **programs.program_dict(p),
        "href": href,
        "devices": await programs.member_device_ids(session, p.id),
        "vens": await programs.member_ven_names(session, p.id),
    }


async def _tariff_out(session: AsyncSession, t: Program) -> dict[str, Any]:
    rates = await programs.list_programs(session, "rate", t.id)
    return {
        **await program_out(session, t, f"/api/v1/tariffs/{t.id}"),
        "rates": [programs.program_dict(r) for r in rates],
    }


def new_event(body: dict[str, Any], payload: dict[str, Any]) -> events.NewEvent:
    return events.NewEvent(
        start=parse_start(field(body, "start", str, required=False, default="now")),
        duration_s=field(body, "duration_s", int),
        payload=payload,
        description=field(body, "description", str, required=False, default=""),
        randomize_start_s=field(body, "randomize_start_s", int, required=False),
        randomize_duration_s=field(body, "randomize_duration_s", int, required=False),
        response_required=field(body, "response_required", int, required=False),
    )


def _event_out(e: Event) -> dict[str, Any]:
    return {**events.influence_dict(e), "href": f"/api/v1/influence-events/{e.id}"}


# --------------------------------------------------------------------------------------------------- pricing
@routes.get("/api/v1/tariffs")
async def list_tariffs(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply([await _tariff_out(session, t) for t in await programs.list_programs(session, "price")])


@routes.post("/api/v1/tariffs")
@requires(PROGRAMS)
async def create_tariff(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        t = await pricing.create_tariff(
            session,
            field(body, "name", str),
            currency=field(body, "currency", int, required=False, default=840),
            price_power_of_ten=field(body, "price_power_of_ten", int, required=False, default=-3),
            primacy=field(body, "primacy", int, required=False, default=1),
            rate_code=field(body, "rate_code", str, required=False, default=""),
            description=field(body, "description", str, required=False, default=""),
        )
        t.market_context = field(body, "market_context", str, required=False, default="")
        return reply(await _tariff_out(session, t), 201)


@routes.get("/api/v1/tariffs/{ref}")
async def get_tariff(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(
            await _tariff_out(
                session, await programs.get_program(session, request.match_info["ref"], "price")
            )
        )


@routes.post("/api/v1/tariffs/{ref}/rates")
@requires(PROGRAMS)
async def add_rate(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        t = await programs.get_program(session, request.match_info["ref"], "price")
        r = await pricing.add_rate(
            session,
            t,
            field(body, "name", str),
            uom=field(body, "uom", int, required=False, default=72),
            flow_direction=field(body, "flow_direction", int, required=False, default=1),
            role_flags=field(body, "role_flags", int, required=False, default=1),
            power_of_ten=field(body, "power_of_ten", int, required=False, default=0),
            description=field(body, "description", str, required=False, default=""),
        )
        return reply({**programs.program_dict(r), "tariff": t.name, "href": f"/api/v1/tariffs/{t.id}"}, 201)


async def enrol(request: web.Request, kind: str) -> web.Response:
    """Enrol a 2030.5 device ({lfdi}) or an OpenADR VEN ({ven}: its name) in the program."""
    body = await json_body(request)
    lfdi = field(body, "lfdi", str, required=False)
    ven_name = field(body, "ven", str, required=False)
    if (lfdi is None) == (ven_name is None):
        raise Invalid("give exactly one of 'lfdi' and 'ven'")
    async with runtime(request).store.sessions.begin() as session:
        s = await programs.get_program(session, request.match_info["ref"], kind)
        if lfdi is not None:
            device = await programs.device_by_lfdi(session, lfdi)
            added = await programs.add_member(session, s, device=device)
            path = {"price": "tp", "dr": "drp", "der": "derp"}[kind]
            return reply(
                {
                    "set_id": s.id,
                    "end_device_id": device.id,
                    "assigned": True,
                    "new": added,
                    "href": f"/edev/{device.id}/{path}/{s.id}",
                }
            )
        ven = await vens.by_name(session, ven_name or "")
        added = await programs.add_member(session, s, ven=ven)
        return reply({"set_id": s.id, "ven": ven.name, "assigned": True, "new": added})


@routes.post("/api/v1/tariffs/{ref}/assign")
@requires(PROGRAMS)
async def assign_tariff(request: web.Request) -> web.Response:
    return await enrol(request, "price")


@routes.post("/api/v1/tariffs/{ref}/prices")
@requires(EVENTS)
async def publish_price(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        t = await programs.get_program(session, request.match_info["ref"], "price")
        rates = await programs.list_programs(session, "rate", t.id)
        ref = field(body, "rate", (str, int), required=False)
        rate = next(
            (r for r in rates if ref is None or r.id == ref or r.name == ref or str(r.id) == str(ref)), None
        )
        if rate is None:
            raise NotFound("no such rate component (add one with POST /api/v1/tariffs/{ref}/rates)")
        payload = {
            "tiers": field(body, "prices", list),
            "tou_tier": field(body, "tou_tier", int, required=False, default=0),
        }
        e = await events.create(session, rate, new_event(body, payload))
        return reply(_event_out(e), 201)


async def _events(request: web.Request, kind: str) -> web.Response:
    async with runtime(request).store.sessions() as session:
        s = await programs.get_program(session, request.match_info["ref"], kind)
        query = events.events_query(program_id=s.id, include_completed=True).order_by(None)
        found = await session.scalars(query.order_by(Event.start, Event.id))
        return reply([_event_out(e) for e in found])


@routes.get("/api/v1/tariffs/{ref}/prices")
async def list_prices(request: web.Request) -> web.Response:
    return await _events(request, "price")


# ------------------------------------------------------------------------------------------------------ DRLC
@routes.get("/api/v1/dr-programs")
async def list_dr_programs(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(
            [
                await program_out(session, p, f"/api/v1/dr-programs/{p.id}")
                for p in await programs.list_programs(session, "dr")
            ]
        )


@routes.post("/api/v1/dr-programs")
@requires(PROGRAMS)
async def create_dr_program(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.create(
            session,
            "dr",
            field(body, "name", str),
            primacy=field(body, "primacy", int, required=False, default=1),
            description=field(body, "description", str, required=False, default=""),
            market_context=field(body, "market_context", str, required=False, default=""),
        )
        return reply(await program_out(session, p, f"/api/v1/dr-programs/{p.id}"), 201)


@routes.get("/api/v1/dr-programs/{ref}")
async def get_dr_program(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        p = await programs.get_program(session, request.match_info["ref"], "dr")
        return reply(await program_out(session, p, f"/api/v1/dr-programs/{p.id}"))


@routes.post("/api/v1/dr-programs/{ref}/assign")
@requires(PROGRAMS)
async def assign_dr_program(request: web.Request) -> web.Response:
    return await enrol(request, "dr")


def dr_payload(body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "device_category": body.get("device_category"),
        "control": body.get("control"),
        "load_shift_forward": field(body, "load_shift_forward", bool, required=False, default=False),
        "mandatory": field(body, "mandatory", bool, required=False, default=False),
        "override_duration_s": field(body, "override_duration_s", int, required=False),
    }
    if "level" in body:
        payload["level"] = field(body, "level", int)
    return payload


@routes.post("/api/v1/dr-programs/{ref}/events")
@requires(EVENTS)
async def create_dr_event(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"], "dr")
        e = await events.create(session, p, new_event(body, dr_payload(body)))
        return reply(_event_out(e), 201)


@routes.get("/api/v1/dr-programs/{ref}/events")
async def list_dr_events(request: web.Request) -> web.Response:
    return await _events(request, "dr")


# ------------------------------------------------------------------------------------------------------ both


async def _influence_event(session: AsyncSession, event_id: int) -> Event:
    e = await session.get(Event, event_id)
    if e is None or e.kind not in ("price", "dr"):
        raise NotFound(f"no event {event_id}")
    return e


@requires(EVENTS)
async def _cancel(request: web.Request) -> web.Response:
    body = await json_body(request) if request.body_exists else {}
    async with runtime(request).store.sessions.begin() as session:
        e = await _influence_event(session, event_id(request))
        await events.cancel(session, e, field(body, "randomized", bool, required=False, default=False))
        return reply(_event_out(e))


for _path in (
    "/api/v1/influence-events/{id}/cancel",
    "/api/v1/prices/{id}/cancel",
    "/api/v1/dr-events/{id}/cancel",
):
    routes.post(_path)(_cancel)


@routes.get("/api/v1/influence-events/{id}")
async def get_event(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(_event_out(await _influence_event(session, event_id(request))))


@routes.get("/api/v1/influence-events/{id}/responses")
async def event_responses(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        e = await _influence_event(session, event_id(request))
        return reply(await events.responses_of(session, e.id))
