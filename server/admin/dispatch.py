"""Dispatch and plans for staff:

POST /api/v1/dispatch   one decision about a grid node, delivered over every protocol under it
POST /api/v1/plans      {node, dispatch?: bool}  export-limit plan from the node's latest load forecast
                        (``server.orchestration.plan``); with dispatch, the plan's dispatch is sent too
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, parse_time, reply, runtime
from server.core.dispatch import Dispatch, dispatch_to_node
from server.core.staff import EVENTS
from server.orchestration.plan import export_plan
from server.runtime import Runtime
from server.store.types import utcnow

routes = web.RouteTableDef()
NUMBER = (int, float)


async def send_dispatch(rt: Runtime, node: str, d: Dispatch) -> dict[str, Any]:
    async with rt.store.sessions.begin() as session:
        result = await dispatch_to_node(
            session, node, d, rt.settings.openadr.market_context, rt.settings.openadr.near_window_s
        )
    # Modbus writes were queued in the same transaction, for the dispatch's start and end (server.modbus.delivery)
    return asdict(result) | {"modbus_scheduled": result.modbus}


@routes.post("/api/v1/dispatch")
@requires(EVENTS)
async def post_dispatch(request: web.Request) -> web.Response:
    body = await json_body(request)
    d = Dispatch(
        start=parse_time(field(body, "start", str, required=False, default="now"), "start"),
        duration_s=field(body, "duration_s", int),
        export_limit_w=field(body, "export_limit_w", NUMBER, required=False),
        import_limit_w=field(body, "import_limit_w", NUMBER, required=False),
        generation_limit_w=field(body, "generation_limit_w", NUMBER, required=False),
        connect=field(body, "connect", bool, required=False),
        dr_level=field(body, "dr_level", int, required=False),
        description=field(body, "description", str, required=False, default=""),
    )
    return reply(await send_dispatch(runtime(request), field(body, "node", str), d), 201)


@routes.post("/api/v1/plans")
@requires(EVENTS)
async def post_plan(request: web.Request) -> web.Response:
    body = await json_body(request)
    rt = runtime(request)
    node = field(body, "node", str)
    plan = await export_plan(rt.store, node)
    out: dict[str, Any] = asdict(plan) | {"dispatch": None}
    d = plan.dispatch(utcnow()) if field(body, "dispatch", bool, required=False, default=False) else None
    if d is not None:
        out["dispatch"] = await send_dispatch(rt, node, d)
    return reply(out, 201)
