"""The console's pages: fleet, a device, grid, events, deliveries, alarms, and the login form. Every list is
filtered and paged in SQL (``?offset=``, a page of ``PAGE`` rows)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import select

from server.admin.access import public
from server.admin.common import path_id, runtime
from server.console.render import PREFIX, page
from server.core import alarms, events, fleetview, forecasts, grid, programs
from server.core import sep2_device as devres
from server.core.errors import Invalid, NotFound
from server.delivery import status as deliveries
from server.store.models import Aggregator, EndDevice, Program
from server.store.paging import fetch_page

routes = web.RouteTableDef()
PAGE = 50


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "0")
    if not raw.isdigit():
        raise Invalid("offset must be a whole number")
    return int(raw)


def _choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, default) or default
    if value not in allowed:
        raise Invalid(f"{name} must be one of {', '.join(allowed)}")
    return value


def pager(request: web.Request, offset: int, total: int) -> dict[str, Any]:
    """Links to the previous and next page, keeping the other filters."""

    def link(to: int) -> str:
        query = {**request.query, "offset": str(to)}
        return request.rel_url.with_query(query).path_qs

    return {
        "offset": offset,
        "total": total,
        "first": offset + 1 if total else 0,
        "last": min(offset + PAGE, total),
        "prev": link(max(offset - PAGE, 0)) if offset > 0 else None,
        "next": link(offset + PAGE) if offset + PAGE < total else None,
    }


@routes.get("/")
@public
async def root(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(PREFIX + "/fleet")


@routes.get(PREFIX)
@routes.get(PREFIX + "/")
@public
async def console_root(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(PREFIX + "/fleet")


@routes.get(PREFIX + "/login")
@public
async def login_form(request: web.Request) -> web.Response:
    return page(request, "login.html")


@routes.get(PREFIX + "/fleet")
async def fleet(request: web.Request) -> web.Response:
    rt = runtime(request)
    kind = _choice(request, "kind", fleetview.KINDS, "sep2")
    state = _choice(request, "state", fleetview.STATES, "all")
    q = request.query.get("q", "")[:100]
    offset = _offset(request)
    now = dt.datetime.now(dt.UTC)
    async with rt.store.sessions() as session:
        rows, total = await fleetview.page(session, rt.settings, now, kind, state, q, offset, PAGE)
    return page(
        request,
        "fleet.html",
        rows=rows,
        kind=kind,
        state=state,
        q=q,
        kinds=fleetview.KINDS,
        states=fleetview.STATES,
        pager=pager(request, offset, total),
        now=now,
    )


@routes.get(PREFIX + "/devices/{id}")
async def device(request: web.Request) -> web.Response:
    rt = runtime(request)
    device_id = path_id(request, "device")
    now = dt.datetime.now(dt.UTC)
    async with rt.store.sessions() as session:
        found = await session.get(EndDevice, device_id)
        if found is None:
            raise NotFound(f"no device {device_id}")
        row = await fleetview.device_row(session, rt.settings, now, found.id)
        agg = await session.get(Aggregator, found.aggregator_id) if found.aggregator_id else None
        reported = await devres.device_resources(session, found.id)
        progs = await programs.device_programs(session, found.id)
        controls = await fleetview.device_events(session, found.id)
        alarm_rows, _ = await alarms.page(session, state="open", subject=f"device:{found.lfdi}")
    for c in controls:
        c["state"] = _state(c, now)
    return page(
        request,
        "device.html",
        device=found,
        row=row,
        aggregator=agg,
        reported=reported,
        programs=progs,
        controls=controls,
        alarms=alarm_rows,
        now=now,
    )


def _state(e: dict[str, Any], now: dt.datetime) -> str:
    if e.get("cancelled_at"):
        return "cancelled"
    start = dt.datetime.fromisoformat(e["start"])
    end = start + dt.timedelta(seconds=e["duration_s"])
    if now < start:
        return "scheduled"
    return "active" if now < end else "completed"


def _summary(e: dict[str, Any]) -> str:
    payload = e.get("payload") or {}
    if e["kind"] == "der":
        return ", ".join(f"{k} {v}" for k, v in sorted(payload.get("base", {}).items()))
    if e["kind"] == "price":
        return ", ".join(str(t.get("price")) for t in payload.get("tiers", [])) or "price"
    parts = []
    if "level" in payload:
        parts.append(f"level {payload['level']}")
    if payload.get("deviceCategory"):
        parts.append(f"category {payload['deviceCategory']}")
    return ", ".join(parts) or "demand response"


@routes.get(PREFIX + "/events")
async def events_page(request: web.Request) -> web.Response:
    kind = _choice(request, "kind", ("all", "der", "price", "dr"), "all")
    include_completed = request.query.get("completed") == "1"
    offset = _offset(request)
    now = dt.datetime.now(dt.UTC)
    async with runtime(request).store.sessions() as session:
        query = events.events_query(kind=None if kind == "all" else kind, include_completed=include_completed)
        found, total = await fetch_page(session, query, offset, PAGE)
        names = {
            p.id: p
            for p in await session.scalars(
                select(Program).where(Program.id.in_({e.program_id for e in found}))
            )
        }
        rows = []
        for e in found:
            out = events.event_dict(e, names.get(e.program_id))
            out["responses"] = await events.responses_of(session, e.id)
            out["targets"] = await events.target_names(session, e.id)
            out["state"] = _state(out, now)
            out["summary"] = _summary(out)
            rows.append(out)
        choices = [p for p in await programs.list_programs(session) if p.kind in ("der", "dr")]
    return page(
        request,
        "events.html",
        rows=rows,
        kind=kind,
        completed=include_completed,
        programs=choices,
        pager=pager(request, offset, total),
    )


@routes.get(PREFIX + "/grid")
async def grid_page(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        nodes = await grid.list_nodes(session)
    children: dict[str | None, list[grid.NodeInfo]] = {}
    for n in nodes:
        children.setdefault(n.parent, []).append(n)
    chosen = request.query.get("node") or (nodes[0].name if nodes else "")
    node = next((n for n in nodes if n.name == chosen), None)
    if chosen and node is None:
        raise NotFound(f"no grid node {chosen!r}")
    forecast = None
    if node is not None:
        try:
            forecast = await forecasts.latest_forecast(runtime(request).store, node.name)
        except NotFound:
            forecast = None
    return page(request, "grid.html", children=children, node=node, forecast=forecast)


@routes.get(PREFIX + "/grid/{node}/chart")
async def grid_chart(request: web.Request) -> web.Response:
    """The chart's data: the newest load forecast (mean and its q10..q90 band), the measured load of the day
    before it, and the node's limits (kW)."""
    rt = runtime(request)
    name = request.match_info["node"]
    async with rt.store.sessions() as session:
        node = await grid.get_node(session, name)
    out: dict[str, Any] = {
        "node": name,
        "limits": {"import_kw": node.import_limit_kw, "export_kw": node.export_limit_kw},
        "forecast": [],
        "measured": [],
    }
    try:
        run = await forecasts.latest_forecast(rt.store, name)
    except NotFound:
        return web.json_response(out)
    out["forecast"] = [
        {"t": p["ts"], "mean": p["mean"] / 1000, "q10": p["q10"] / 1000, "q90": p["q90"] / 1000}
        for p in run["points"]
    ]
    issued = dt.datetime.fromisoformat(run["issued_at"])
    async with rt.store.sessions() as session:
        try:
            series = await forecasts.node_series(
                session, name, run["measurement"], run["step_s"], issued - dt.timedelta(days=1), issued
            )
        except Invalid:
            series = None
    if series is not None:
        for i, value in enumerate(series.values):
            if value == value:  # NaN: no reading in that interval
                ts = series.start + dt.timedelta(seconds=i * series.step_s)
                out["measured"].append({"t": ts.isoformat(), "kw": float(value) / 1000})
    return web.json_response(out)


@routes.get(PREFIX + "/deliveries")
async def deliveries_page(request: web.Request) -> web.Response:
    status = _choice(request, "status", ("all", "pending", "delivered", "failed", "dropped"), "all")
    offset = _offset(request)
    async with runtime(request).store.sessions() as session:
        rows, total = await deliveries.page(
            session, status=None if status == "all" else status, offset=offset, limit=PAGE
        )
        channels = await deliveries.channels(session)
    return page(
        request,
        "deliveries.html",
        rows=rows,
        channels=channels,
        status_filter=status,
        pager=pager(request, offset, total),
    )


@routes.get(PREFIX + "/alarms")
async def alarms_page(request: web.Request) -> web.Response:
    state = _choice(request, "state", alarms.STATES, "open")
    offset = _offset(request)
    async with runtime(request).store.sessions() as session:
        rows, total = await alarms.page(session, state=state, offset=offset, limit=PAGE)
    return page(
        request,
        "alarms.html",
        rows=rows,
        state=state,
        states=alarms.STATES,
        pager=pager(request, offset, total),
    )


@routes.get(PREFIX + "/alarms/badge")
async def alarm_badge(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        counts = await alarms.open_counts(session)
    return page(request, "badge.html", open=sum(counts.values()))
