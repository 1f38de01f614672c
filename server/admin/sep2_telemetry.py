"""Staff view of what 2030.5 devices send up and what the server pushes down:

    GET /api/v1/sep2/subscriptions[?lfdi=HEX]                 subscriptions + notification delivery state
    GET /api/v1/sep2/devices/{lfdi}/telemetry/latest           newest reading of every series of the device
    GET /api/v1/sep2/devices/{lfdi}/telemetry?since=&until=&measurement=&resource=&limit=
                                                               readings in [since, until), newest first
    GET /api/v1/sep2/devices/{lfdi}/log-events[?limit=]        LogEvents the device posted, newest first

Telemetry values are SI (W, var, VA, Wh, V, A, Hz, ...), already scaled by the 2030.5 power-of-ten multiplier.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.admin.common import list_reply, reply, runtime, window
from server.core import (
    logevents,
    metering,
    programs,
    subscriptions,
    telemetry,
)
from server.core.errors import Invalid

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
