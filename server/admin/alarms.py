"""Alarms for staff: /api/v1/alarms (open by default, paged in SQL) and acknowledging one."""

from __future__ import annotations

from aiohttp import web

from server.admin.access import principal, requires
from server.admin.common import list_reply, path_id, reply, runtime, window
from server.core import alarms
from server.core.staff import ALARMS

routes = web.RouteTableDef()


@routes.get("/api/v1/alarms")
async def list_alarms(request: web.Request) -> web.Response:
    """``?state=open|unacknowledged|acknowledged|cleared|all`` (default open), ``?kind=``, ``?subject=``; newest
    first, ``offset``/``limit`` with ``X-Total-Count``."""
    win = window(request, default_limit=100)
    async with runtime(request).store.sessions() as session:
        rows, total = await alarms.page(
            session,
            state=request.query.get("state") or "open",
            kind=request.query.get("kind") or None,
            subject=request.query.get("subject") or None,
            offset=win.offset,
            limit=win.limit,
        )
    return list_reply(rows, total)


@routes.post("/api/v1/alarms/{id}/acknowledge")
@requires(ALARMS)
async def acknowledge(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        row = await alarms.acknowledge(session, path_id(request, "alarm"), principal(request).actor)
    return reply(row)
