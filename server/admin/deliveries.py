"""Outbound delivery status for staff: /api/v1/deliveries (pending, delivered, failed; last error)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from server.admin.common import list_reply, runtime, window
from server.core.errors import Invalid
from server.store.models import OutboxMessage
from server.store.paging import fetch_page

routes = web.RouteTableDef()
STATUSES = ("pending", "delivered", "failed")


@routes.get("/api/v1/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    status = request.query.get("status")
    if status:
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        query = query.where(OutboxMessage.status == status)
    for name, column in (("channel", OutboxMessage.channel), ("key", OutboxMessage.order_key)):
        if request.query.get(name):
            query = query.where(column == request.query[name])
    win = window(request, default_limit=100)
    async with runtime(request).store.sessions() as session:
        rows, total = await fetch_page(session, query, win.offset, win.limit)
    return list_reply(
        [
            {
                "id": m.id,
                "channel": m.channel,
                "key": m.order_key,
                "url": m.url,
                "status": m.status,
                "attempts": m.attempts,
                "created_at": m.created_at.isoformat(),
                "next_attempt_at": m.next_attempt_at.isoformat(),
                "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None,
                "last_status": m.last_status,
                "last_error": m.last_error,
            }
            for m in rows
        ],
        total,
    )
