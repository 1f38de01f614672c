"""Outbound delivery status for staff: /api/v1/deliveries (every channel: 2030.5 notifications, OpenADR messages
for VENs; pending, delivered, failed = dead letters, dropped), counts per channel, and requeueing a dead letter."""

from __future__ import annotations

from aiohttp import web

from server.admin.access import requires
from server.admin.common import list_reply, path_id, reply, runtime, window
from server.core.errors import Invalid
from server.core.staff import SETTINGS
from server.delivery import status

routes = web.RouteTableDef()


def _int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer") from None


@routes.get("/api/v1/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first, paged like every admin list (``offset``/``limit``, ``X-Total-Count``); ``before`` = the last id
    of the previous page (also in ``X-Next-Before``) pages stably while messages arrive."""
    win = window(request, default_limit=100)
    async with runtime(request).store.sessions() as session:
        rows, total = await status.page(
            session,
            status=request.query.get("status") or None,
            channel=request.query.get("channel") or None,
            key=request.query.get("key") or None,
            before=_int(request, "before", None),
            offset=win.offset,
            limit=win.limit,
        )
    response = list_reply(rows, total)
    if len(rows) == win.limit:
        response.headers["X-Next-Before"] = str(rows[-1]["id"])
    return response


@routes.get("/api/v1/deliveries/channels")
async def channel_counts(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(await status.channels(session))


@routes.post("/api/v1/deliveries/{id}/requeue")
@requires(SETTINGS)
async def requeue(request: web.Request) -> web.Response:
    message_id = path_id(request, "delivery")
    async with runtime(request).store.sessions.begin() as session:
        row = await status.requeue(session, message_id)
    worker = runtime(request).outbox
    if worker is not None:
        worker.wake()
    return reply(row)
