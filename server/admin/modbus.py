"""SunSpec Modbus devices for staff: /api/v1/modbus/devices."""

from __future__ import annotations

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, reply, runtime
from server.core import parties
from server.core.staff import ENROL, EVENTS
from server.modbus.gateway import apply_control
from server.store.models import ModbusDevice

routes = web.RouteTableDef()


def _dict(d: ModbusDevice) -> dict:
    return {
        "id": d.id,
        "name": d.name,
        "host": d.host,
        "port": d.port,
        "unit_id": d.unit_id,
        "poll_s": d.poll_s,
        "enabled": d.enabled,
        "manufacturer": d.manufacturer,
        "model": d.model,
        "serial": d.serial,
        "models": d.models,
        "last_poll_at": d.last_poll_at,
        "last_ok_at": d.last_ok_at,
        "last_error": d.last_error,
    }


@routes.get("/api/v1/modbus/devices")
async def list_devices(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply([_dict(d) for d in await parties.list_modbus_devices(session)])


@routes.post("/api/v1/modbus/devices")
@requires(ENROL)
async def add_device(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        device = await parties.enroll_modbus_device(
            session,
            field(body, "name", str),
            field(body, "host", str),
            port=field(body, "port", int, required=False, default=502),
            unit_id=field(body, "unit_id", int, required=False, default=1),
            poll_s=field(body, "poll_s", int, required=False, default=60),
        )
    return reply(_dict(device), 201)


@routes.get("/api/v1/modbus/devices/{name}")
async def get_device(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await parties.modbus_device(session, request.match_info["name"])
    return reply(_dict(device))


@routes.post("/api/v1/modbus/devices/{name}/control")
@requires(EVENTS)
async def control(request: web.Request) -> web.Response:
    body = await json_body(request)
    rt = runtime(request)
    result = await apply_control(
        rt.store,
        rt.settings.modbus,
        request.match_info["name"],
        export_limit_pct=field(body, "export_limit_pct", (int, float), required=False),
        release_limit=field(body, "release_limit", bool, required=False, default=False),
        connect=field(body, "connect", bool, required=False),
    )
    return reply(result)
