"""Grid nodes and their forecasts for staff: /api/v1/grid/nodes, /api/v1/forecasts."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, reply, runtime
from server.core import forecasts, grid
from server.core.staff import GRID

routes = web.RouteTableDef()
NUMBER = (int, float)


@routes.get("/api/v1/grid/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply([asdict(n) for n in await grid.list_nodes(session)])


@routes.post("/api/v1/grid/nodes")
@requires(GRID)
async def create_node(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        node = await grid.create_node(
            session,
            name=field(body, "name", str),
            kind=field(body, "kind", str),
            parent=field(body, "parent", str, required=False),
            timezone=field(body, "timezone", str, required=False, default="UTC"),
            latitude=field(body, "latitude", NUMBER, required=False),
            longitude=field(body, "longitude", NUMBER, required=False),
            import_limit_kw=field(body, "import_limit_kw", NUMBER, required=False),
            export_limit_kw=field(body, "export_limit_kw", NUMBER, required=False),
        )
    return reply(asdict(node), 201)


@routes.get("/api/v1/grid/nodes/{name}")
async def get_node(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(asdict(await grid.get_node(session, request.match_info["name"])))


@routes.patch("/api/v1/grid/nodes/{name}")
@requires(GRID)
async def update_node(request: web.Request) -> web.Response:
    body = await json_body(request)
    changes = {}
    for name, kind in (
        ("name", str),
        ("kind", str),
        ("parent", str),
        ("timezone", str),
        ("latitude", NUMBER),
        ("longitude", NUMBER),
        ("import_limit_kw", NUMBER),
        ("export_limit_kw", NUMBER),
    ):
        if name in body:  # present with null: clear it
            changes[name] = field(body, name, kind, required=False)
    unknown = set(body) - set(grid.UPDATABLE)
    if unknown:
        changes.update({k: body[k] for k in unknown})  # named in the core's refusal
    async with runtime(request).store.sessions.begin() as session:
        node = await grid.update_node(session, request.match_info["name"], changes)
    return reply(asdict(node))


@routes.delete("/api/v1/grid/nodes/{name}")
@requires(GRID)
async def delete_node(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        await grid.delete_node(session, request.match_info["name"])
    return web.Response(status=204)


@routes.post("/api/v1/grid/nodes/{name}/members")
@requires(GRID)
async def add_member(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        node = await grid.add_member(
            session, request.match_info["name"], field(body, "kind", str), field(body, "id", str)
        )
    return reply(asdict(node), 201)


@routes.delete("/api/v1/grid/nodes/{name}/members/{kind}/{id}")
@requires(GRID)
async def remove_member(request: web.Request) -> web.Response:
    m = request.match_info
    async with runtime(request).store.sessions.begin() as session:
        return reply(asdict(await grid.remove_member(session, m["name"], m["kind"], m["id"])))


@routes.post("/api/v1/forecasts")
@requires(GRID)
async def run_forecast(request: web.Request) -> web.Response:
    body = await json_body(request)
    rt = runtime(request)
    o = rt.settings.orchestration
    run = await forecasts.run_forecast(
        rt.store,
        field(body, "node", str),
        horizon_s=field(body, "horizon_s", int, required=False, default=o.forecast_horizon_s),
        step_s=field(body, "step_s", int, required=False, default=o.forecast_step_s),
        history_days=field(body, "history_days", int, required=False, default=o.forecast_history_days),
        target=field(body, "target", str, required=False, default="load"),
        measurement=field(body, "measurement", str, required=False, default="realPower"),
    )
    return reply(run, 201)


@routes.get("/api/v1/forecasts/{node}")
async def latest_forecast(request: web.Request) -> web.Response:
    target = request.query.get("target", "load")
    return reply(await forecasts.latest_forecast(runtime(request).store, request.match_info["node"], target))
