"""Staff view of what 2030.5 devices send up and what the server pushes down:

    GET /api/v1/sep2/subscriptions[?lfdi=HEX]                 subscriptions + notification delivery state
    GET /api/v1/sep2/devices/{lfdi}/telemetry/latest           newest reading of every series of the device
    GET /api/v1/sep2/devices/{lfdi}/telemetry?since=&until=&measurement=&resource=&limit=
                                                               readings in [since, until), newest first
    GET /api/v1/sep2/devices/{lfdi}/log-events[?limit=]        LogEvents the device posted, newest first

Telemetry values are SI (W, var, VA, Wh, V, A, Hz, ...), already scaled by the 2030.5 power-of-ten multiplier.

Pricing (2030.5 TariffProfile / RateComponent / TimeTariffInterval / ConsumptionTariffInterval):

    GET  /api/v1/tariffs[/{ref}]                    tariffs with their rate components (ref: id or name)
    POST /api/v1/tariffs                            {name, currency?=840, price_power_of_ten?=-3, primacy?=1,
                                                     rate_code?, description?}
    POST /api/v1/tariffs/{ref}/rates                {name, uom?=72, flow_direction?=1, role_flags?=1,
                                                     power_of_ten?=0, description?}
    POST /api/v1/tariffs/{ref}/assign               {lfdi}
    POST /api/v1/tariffs/{ref}/prices               {rate? (id|name, default the first), start: ISO|"now",
                                                     duration_s, prices: [{price, start_value?}], tou_tier?,
                                                     description?, randomize_start_s?, randomize_duration_s?,
                                                     response_required?}
    GET  /api/v1/tariffs/{ref}/prices

DRLC (DemandResponseProgram / EndDeviceControl):

    GET  /api/v1/dr-programs[/{ref}]
    POST /api/v1/dr-programs                        {name, primacy?=1, description?}
    POST /api/v1/dr-programs/{ref}/assign           {lfdi}
    POST /api/v1/dr-programs/{ref}/events           {start, duration_s, device_category: "0008"|["thermostat",..],
                                                     control: {applianceLoadReduction|dutyCycle|offset|setPoint|
                                                     targetReduction}, load_shift_forward?, mandatory?,
                                                     override_duration_s?, description?, randomize_*?,
                                                     response_required?}
    GET  /api/v1/dr-programs/{ref}/events

Both:

    GET  /api/v1/influence-events/{id}              one price interval / load-control event
    POST /api/v1/influence-events/{id}/cancel       {randomized?}   (also /api/v1/prices/{id}/cancel,
                                                                     /api/v1/dr-events/{id}/cancel)
    GET  /api/v1/influence-events/{id}/responses    Responses devices posted for it

Every change is recorded by core in its transaction (``server.core.changes``), so subscribers of the TimeTariffIntervalList /
EndDeviceControlList get a durable notification.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import select

from server.admin.common import field, json_body, list_reply, reply, runtime, window
from server.admin.sep2 import parse_start
from server.core import (
    drlc,
    influence,
    logevents,
    metering,
    pricing,
    programs,
    subscriptions,
    telemetry,
)
from server.core.errors import Invalid, NotFound
from server.store.models import Sep2InfluenceEvent, Sep2InfluenceResponse, Sep2InfluenceSet

routes = web.RouteTableDef()


def _time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} must be ISO 8601 with a UTC offset") from None
    if value.tzinfo is None:
        raise Invalid(f"{name} needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return value.astimezone(dt.UTC)


def _limit(request: web.Request, default: int = 1000) -> int:
    try:
        return max(1, min(100_000, int(request.query.get("limit", str(default)))))
    except ValueError:
        raise Invalid("limit must be an integer") from None


@routes.get("/api/v1/sep2/subscriptions")
async def list_subscriptions(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device_id = None
        if "lfdi" in request.query:
            device_id = (await programs.device_by_lfdi(session, request.query["lfdi"])).id
        win = window(request)
        return list_reply(*await subscriptions.states_page(session, device_id, win.offset, win.limit))


@routes.get("/api/v1/sep2/devices/{lfdi}/telemetry/latest")
async def latest(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await programs.device_by_lfdi(session, request.match_info["lfdi"])
        return reply(await metering.latest(session, device.lfdi))


@routes.get("/api/v1/sep2/devices/{lfdi}/telemetry")
async def readings(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await programs.device_by_lfdi(session, request.match_info["lfdi"])
        return reply(
            await telemetry.query(
                session,
                source_kind="device",
                source_id=device.lfdi,
                resource=request.query.get("resource"),
                measurement=request.query.get("measurement"),
                since=_time(request, "since"),
                until=_time(request, "until"),
                limit=_limit(request),
            )
        )


@routes.get("/api/v1/sep2/devices/{lfdi}/log-events")
async def log_events(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await programs.device_by_lfdi(session, request.match_info["lfdi"])
        return reply(
            [
                logevents.as_dict(e)
                for e in await logevents.for_device(session, device.id, _limit(request, 100))
            ]
        )


# --------------------------------------------------------------------------------------------------- pricing
async def _tariff_out(session, t: Sep2InfluenceSet) -> dict:
    rates = await influence.list_sets(session, "rate", t.id)
    return {
        **influence.set_dict(t),
        "href": f"/api/v1/tariffs/{t.id}",
        "rates": [influence.set_dict(r) for r in rates],
        "devices": await influence.devices_of(session, t.id),
    }


def _new_event(body: dict, payload: dict) -> influence.NewEvent:
    return influence.NewEvent(
        start=parse_start(field(body, "start", str, required=False, default="now")),
        duration_s=field(body, "duration_s", int),
        payload=payload,
        description=field(body, "description", str, required=False, default=""),
        randomize_start_s=field(body, "randomize_start_s", int, required=False),
        randomize_duration_s=field(body, "randomize_duration_s", int, required=False),
        response_required=field(body, "response_required", int, required=False, default=0),
    )


def _event_out(e: Sep2InfluenceEvent) -> dict:
    return {**influence.event_dict(e), "href": f"/api/v1/influence-events/{e.id}"}


@routes.get("/api/v1/tariffs")
async def list_tariffs(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply([await _tariff_out(session, t) for t in await influence.list_sets(session, "tariff")])


@routes.post("/api/v1/tariffs")
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
        return reply(await _tariff_out(session, t), 201)


@routes.get("/api/v1/tariffs/{ref}")
async def get_tariff(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(
            await _tariff_out(session, await influence.get_set(session, "tariff", request.match_info["ref"]))
        )


@routes.post("/api/v1/tariffs/{ref}/rates")
async def add_rate(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        t = await influence.get_set(session, "tariff", request.match_info["ref"])
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
        return reply({**influence.set_dict(r), "tariff": t.name, "href": f"/api/v1/tariffs/{t.id}"}, 201)


async def _assign(request: web.Request, kind: str) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        s = await influence.get_set(session, kind, request.match_info["ref"])
        device = await programs.device_by_lfdi(session, field(body, "lfdi", str))
        added = await influence.assign(session, s, device)
        path = "tp" if kind == "tariff" else "drp"
        return reply(
            {
                "set_id": s.id,
                "end_device_id": device.id,
                "assigned": True,
                "new": added,
                "href": f"/edev/{device.id}/{path}/{s.id}",
            }
        )


@routes.post("/api/v1/tariffs/{ref}/assign")
async def assign_tariff(request: web.Request) -> web.Response:
    return await _assign(request, "tariff")


@routes.post("/api/v1/tariffs/{ref}/prices")
async def publish_price(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        t = await influence.get_set(session, "tariff", request.match_info["ref"])
        rates = await influence.list_sets(session, "rate", t.id)
        ref = field(body, "rate", (str, int), required=False)
        rate = next(
            (r for r in rates if ref is None or r.id == ref or r.name == ref or str(r.id) == str(ref)), None
        )
        if rate is None:
            raise NotFound("no such rate component (add one with POST /api/v1/tariffs/{ref}/rates)")
        e = await pricing.publish_price(
            session,
            rate,
            _new_event(body, {"tiers": field(body, "prices", list)}),
            tou_tier=field(body, "tou_tier", int, required=False, default=0),
        )
        return reply(_event_out(e), 201)


async def _events(request: web.Request, kind: str) -> web.Response:
    async with runtime(request).store.sessions() as session:
        s = await influence.get_set(session, kind, request.match_info["ref"])
        ids = [s.id] if kind == "drp" else [r.id for r in await influence.list_sets(session, "rate", s.id)]
        found = list(
            await session.scalars(
                select(Sep2InfluenceEvent)
                .where(Sep2InfluenceEvent.set_id.in_(ids))
                .order_by(Sep2InfluenceEvent.start, Sep2InfluenceEvent.id)
            )
        )
        return reply([_event_out(e) for e in found])


@routes.get("/api/v1/tariffs/{ref}/prices")
async def list_prices(request: web.Request) -> web.Response:
    return await _events(request, "tariff")


# ------------------------------------------------------------------------------------------------------ DRLC
@routes.get("/api/v1/dr-programs")
async def list_dr_programs(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(
            [
                {
                    **influence.set_dict(p),
                    "href": f"/api/v1/dr-programs/{p.id}",
                    "devices": await influence.devices_of(session, p.id),
                }
                for p in await influence.list_sets(session, "drp")
            ]
        )


@routes.post("/api/v1/dr-programs")
async def create_dr_program(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await influence.create_set(
            session,
            "drp",
            field(body, "name", str),
            primacy=field(body, "primacy", int, required=False, default=1),
            description=field(body, "description", str, required=False, default=""),
        )
        return reply({**influence.set_dict(p), "href": f"/api/v1/dr-programs/{p.id}"}, 201)


@routes.get("/api/v1/dr-programs/{ref}")
async def get_dr_program(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        p = await influence.get_set(session, "drp", request.match_info["ref"])
        return reply(
            {
                **influence.set_dict(p),
                "href": f"/api/v1/dr-programs/{p.id}",
                "devices": await influence.devices_of(session, p.id),
            }
        )


@routes.post("/api/v1/dr-programs/{ref}/assign")
async def assign_dr_program(request: web.Request) -> web.Response:
    return await _assign(request, "drp")


@routes.post("/api/v1/dr-programs/{ref}/events")
async def create_dr_event(request: web.Request) -> web.Response:
    body = await json_body(request)
    payload = {
        "device_category": body.get("device_category"),
        "control": body.get("control"),
        "load_shift_forward": field(body, "load_shift_forward", bool, required=False, default=False),
        "mandatory": field(body, "mandatory", bool, required=False, default=False),
        "override_duration_s": field(body, "override_duration_s", int, required=False),
    }
    async with runtime(request).store.sessions.begin() as session:
        p = await influence.get_set(session, "drp", request.match_info["ref"])
        e = await drlc.create_event(session, p, _new_event(body, payload))
        return reply(_event_out(e), 201)


@routes.get("/api/v1/dr-programs/{ref}/events")
async def list_dr_events(request: web.Request) -> web.Response:
    return await _events(request, "drp")


# ------------------------------------------------------------------------------------------------------ both
def _event_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise Invalid("event id must be an integer")
    return int(raw)


async def _cancel(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    async with runtime(request).store.sessions.begin() as session:
        e = await influence.get_event(session, _event_id(request))
        await influence.cancel_event(
            session, e, field(body, "randomized", bool, required=False, default=False)
        )
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
        return reply(_event_out(await influence.get_event(session, _event_id(request))))


@routes.get("/api/v1/influence-events/{id}/responses")
async def event_responses(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        e = await influence.get_event(session, _event_id(request))
        found = await session.scalars(
            select(Sep2InfluenceResponse)
            .where(Sep2InfluenceResponse.event_id == e.id)
            .order_by(Sep2InfluenceResponse.id)
        )
        return reply(
            [
                {
                    "id": r.id,
                    "event_id": r.event_id,
                    "end_device_id": r.end_device_id,
                    "lfdi": r.lfdi,
                    "status": r.status,
                    "created": r.created_date_time.isoformat(),
                    "received_at": r.received_at.isoformat(),
                }
                for r in found
            ]
        )
