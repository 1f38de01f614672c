"""Subscriptions as staff see them: each one with the delivery state of its notifications (pending, delivered,
failed, last error), read from the durable outbox. Protocol-neutral reads; the 2030.5 adapter owns the wire."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import DeliveryMessage, Sep2Subscription


def order_key(subscription_id: int) -> str:
    """The outbox order key of one subscription: its notifications go out strictly in order."""
    return f"sep2-sub:{subscription_id}"


async def states(session: AsyncSession, device_id: int | None = None) -> list[dict[str, Any]]:
    query = select(Sep2Subscription).order_by(Sep2Subscription.id)
    if device_id is not None:
        query = query.where(Sep2Subscription.end_device_id == device_id)
    subs = list(await session.scalars(query))
    if not subs:
        return []
    keys = [order_key(s.id) for s in subs]
    counts: dict[tuple[str, str], int] = {
        (k, st): n
        for k, st, n in (
            await session.execute(
                select(DeliveryMessage.order_key, DeliveryMessage.status, func.count())
                .where(DeliveryMessage.order_key.in_(keys))
                .group_by(DeliveryMessage.order_key, DeliveryMessage.status)
            )
        ).all()
    }
    last_ids = (
        select(func.max(DeliveryMessage.id))
        .where(DeliveryMessage.order_key.in_(keys))
        .group_by(DeliveryMessage.order_key)
    )
    last = {
        m.order_key: m
        for m in await session.scalars(select(DeliveryMessage).where(DeliveryMessage.id.in_(last_ids)))
    }
    out = []
    for sub in subs:
        key = order_key(sub.id)
        m = last.get(key)
        out.append(
            {
                "id": sub.id,
                "href": f"/edev/{sub.end_device_id}/sub/{sub.id}",
                "end_device_id": sub.end_device_id,
                "owner_lfdi": sub.owner_lfdi,
                "resource": sub.resource,
                "kind": sub.kind,
                "notification_uri": sub.notification_uri,
                "limit": sub.limit,
                "created_at": sub.created_at.isoformat(),
                "notifications": sub.notifications,
                "pending": counts.get((key, "pending"), 0),
                "delivered": counts.get((key, "delivered"), 0),
                "failed": counts.get((key, "failed"), 0),
                "last": None
                if m is None
                else {
                    "id": m.id,
                    "status": m.status,
                    "attempts": m.attempts,
                    "last_status": m.last_status,
                    "last_error": m.last_error,
                    "created_at": m.created_at.isoformat(),
                    "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None,
                },
            }
        )
    return out
