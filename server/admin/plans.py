"""The network model in the store and the plans made on it, for staff:

GET  /api/v1/grid/models                         newest version of every model
POST /api/v1/grid/models                         {source: "simbench:CODE"} | {name, pandapower: "<JSON>"}: import
GET  /api/v1/grid/models/{name}                  the newest version with its mappings
POST /api/v1/grid/models/{name}/mappings         {bus, kind: device|ven|modbus, id}: connect a resource at a bus
DELETE /api/v1/grid/models/{name}/mappings/{kind}/{source}
GET  /api/v1/plans/runs                          stored plans, newest first (?model=)
POST /api/v1/plans/runs                          {model}: plan now (as the scheduler does)
GET  /api/v1/plans/runs/{id}                     one plan: inputs, outputs, power-flow check, its events
POST /api/v1/plans/runs/{id}/approve             dispatch a proposed plan (orchestration.approval = operator)
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from server.admin.access import principal, requires
from server.admin.common import field, json_body, list_reply, path_id, reply, runtime, window
from server.core import grid_models, plans
from server.core.errors import Invalid
from server.core.staff import EVENTS, GRID
from server.orchestration import grid_import, loop
from server.orchestration.network.model import NetworkError

routes = web.RouteTableDef()


def _load(body: dict[str, Any]) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    source = field(body, "source", str, required=False, default="")
    name = field(body, "name", str, required=False, default="")
    text = field(body, "pandapower", str, required=False)
    try:
        if source.startswith("simbench:"):
            code = source.removeprefix("simbench:")
            model = grid_import.from_simbench(code)
            name = name or code
        elif text is not None:
            if not name:
                raise Invalid("a pandapower import needs a name")
            model = grid_import.from_pandapower_json(text, name)
            source = source or "pandapower JSON"
        else:
            raise Invalid(
                "give source 'simbench:CODE' or a pandapower JSON document (pandapower) with a name"
            )
        data, summary = grid_import.prepared(model, name)
    except NetworkError as exc:
        raise Invalid(str(exc)) from None
    return name, source, data, summary


@routes.get("/api/v1/grid/models")
async def list_models(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(await grid_models.list_models(session))


@routes.post("/api/v1/grid/models")
@requires(GRID)
async def import_model(request: web.Request) -> web.Response:
    body = await json_body(request)
    # pandapower and SimBench are CPU-heavy: off the event loop
    name, source, data, summary = await asyncio.get_running_loop().run_in_executor(None, _load, body)
    async with runtime(request).store.sessions.begin() as session:
        row = await grid_models.store_model(session, name, source, data, summary)
        return reply(grid_models.model_dict(row), 201)


@routes.get("/api/v1/grid/models/{name}")
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    async with runtime(request).store.sessions() as session:
        row = await grid_models.latest(session, name)
        mapped = await grid_models.mappings(session, name)
        out = grid_models.model_dict(row, len(mapped)) | {"mapped": mapped}
        out["buses_detail"] = [
            {
                "bus": int(b),
                "name": row.summary["bus_names"].get(b, ""),
                "kv": kv,
                "node": grid_models.zone_node(row, int(b)),
            }
            for b, kv in row.summary.get("connectable", {}).items()
        ]
        return reply(out)


@routes.post("/api/v1/grid/models/{name}/mappings")
@requires(GRID)
async def map_resource(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        out = await grid_models.map_resource(
            session,
            request.match_info["name"],
            field(body, "bus", int),
            field(body, "kind", str),
            field(body, "id", str),
        )
    return reply(out, 201)


@routes.delete("/api/v1/grid/models/{name}/mappings/{kind}/{source}")
@requires(GRID)
async def unmap_resource(request: web.Request) -> web.Response:
    m = request.match_info
    async with runtime(request).store.sessions.begin() as session:
        await grid_models.unmap_resource(session, m["name"], m["kind"], m["source"])
    return web.Response(status=204)


@routes.get("/api/v1/plans/runs")
async def list_plans(request: web.Request) -> web.Response:
    win = window(request, 100)
    async with runtime(request).store.sessions() as session:
        total, rows = await plans.page(session, request.query.get("model"), win.limit, win.offset)
        return list_reply([plans.plan_dict(p) for p in rows], total)


@routes.post("/api/v1/plans/runs")
@requires(GRID)
async def run_plan(request: web.Request) -> web.Response:
    body = await json_body(request)
    rt = runtime(request)
    model = field(body, "model", str)
    async with rt.store.sessions() as session:
        await grid_models.latest(session, model)  # 404 before a plan row exists
    try:
        out = await loop.run_plan(rt.store, rt.settings, model, "manual")
    except loop.PlanFailed as exc:
        async with rt.store.sessions() as session:
            total, rows = await plans.page(session, model, 1, 0)
        return reply({"error": exc.reason, "plan": plans.plan_dict(rows[0]) if rows else None}, 422)
    return reply(out, 201)


@routes.get("/api/v1/plans/runs/{id}")
async def get_plan(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        plan = await plans.get(session, path_id(request, "plan"))
        out = plans.plan_dict(plan, full=True)
        out["events"] = [
            {"event": pe.event_id, "resource": pe.resource, "why": pe.why}
            for pe in await plans.links(session, plan.id)
        ]
        return reply(out)


@routes.post("/api/v1/plans/runs/{id}/approve")
@requires(EVENTS)  # approving dispatches the plan's controls and events
async def approve_plan(request: web.Request) -> web.Response:
    rt = runtime(request)
    who = principal(request).actor or "staff"
    return reply(await loop.approve(rt.store, rt.settings, path_id(request, "plan"), who))
