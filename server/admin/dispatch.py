"""POST /api/v1/dispatch: one decision about a grid node, delivered over every protocol under it."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from server.admin.common import field, json_body, parse_time, reply, runtime
from server.core import notify
from server.core.dispatch import Dispatch, dispatch_to_node
from server.core.errors import Invalid
from server.modbus.gateway import apply_control
from server.store.types import utcnow

routes = web.RouteTableDef()
NUMBER = (int, float)


@routes.post("/api/v1/dispatch")
async def post_dispatch(request: web.Request) -> web.Response:
    body = await json_body(request)
    rt = runtime(request)
    d = Dispatch(start=parse_time(field(body, "start", str, required=False, default="now"), "start"),
                 duration_s=field(body, "duration_s", int),
                 export_limit_w=field(body, "export_limit_w", NUMBER, required=False),
                 import_limit_w=field(body, "import_limit_w", NUMBER, required=False),
                 generation_limit_w=field(body, "generation_limit_w", NUMBER, required=False),
                 connect=field(body, "connect", bool, required=False),
                 dr_level=field(body, "dr_level", int, required=False),
                 description=field(body, "description", str, required=False, default=""))
    async with rt.store.sessions.begin() as session:
        result = await dispatch_to_node(session, field(body, "node", str), d, rt.settings.openadr.market_context,
                                        rt.settings.openadr.near_window_s)
        # subscribers of the device programs hear of the new controls (and of a first program assignment)
        await notify.changed(session, rt, programs=result.changed_programs, devices=result.changed_devices)
    # Modbus devices have no schedule of their own: a dispatch that starts now is written now, after the
    # transaction committed (device I/O never runs inside one)
    applied = []
    if d.start <= utcnow():
        for item in result.modbus:
            try:
                applied.append(await apply_control(rt.store, rt.settings.modbus, item["name"],
                                                   export_limit_pct=item["export_limit_pct"],
                                                   connect=item["connect"]))
            except Invalid as exc:
                result.skipped.append(f"modbus {item['name']}: {exc}")
    return reply(asdict(result) | {"modbus_applied": applied}, 201)
