"""Device enrolment for staff: /api/v1/devices."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, list_reply, path_id, reply, runtime, window
from server.core import parties
from server.core.staff import ENROL

routes = web.RouteTableDef()


def _device_id(request: web.Request) -> int:
    return path_id(request, "device")


@routes.get("/api/v1/devices")
async def list_devices(request: web.Request) -> web.Response:
    win = window(request)
    async with runtime(request).store.sessions() as session:
        found, total = await parties.devices_page(
            session, request.query.get("aggregator"), win.offset, win.limit
        )
    return list_reply([asdict(d) for d in found], total)


@routes.post("/api/v1/devices")
@requires(ENROL)
async def enroll(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        device = await parties.enroll_device(
            session,
            lfdi=field(body, "lfdi", str),
            sfdi=field(body, "sfdi", int, required=False),
            pin=field(body, "pin", int, required=False),
            aggregator_lfdi=field(body, "aggregator", str, required=False),
            name=field(body, "name", str, required=False, default=""),
        )
    return reply(asdict(device), 201)


@routes.get("/api/v1/devices/{id}")
async def get(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(asdict(await parties.get_device(session, _device_id(request))))


@routes.delete("/api/v1/devices/{id}")
@requires(ENROL)
async def delete(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        await parties.delete_device(session, _device_id(request))
    return web.Response(status=204)
