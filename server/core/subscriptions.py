"""Subscriptions as staff see them: each one with the delivery state of its notifications (pending, delivered,
failed, last error), read from the durable outbox. Protocol-neutral reads; the 2030.5 adapter owns the wire."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import scope
from server.store.models import DeliveryMessage, Sep2Subscription
from server.store.paging import fetch_page

_KEY_PREFIX = "sep2-sub:"


def order_key(subscription_id: int) -> str:
    """The outbox order key of one subscription: its notifications go out strictly in order."""
    return f"{_KEY_PREFIX}{subscription_id}"


async def revoked_recipients(session: AsyncSession, messages: list[tuple[int, str]]) -> set[int]:
    """The queued notifications (outbox id, order key) whose subscriber staff revoked since they were queued:
    the outbox gives them up instead of delivering them."""
    sub_of = {
        msg_id: int(key[len(_KEY_PREFIX) :])
        for msg_id, key in messages
        if key.startswith(_KEY_PREFIX) and key[len(_KEY_PREFIX) :].isdigit()
    }
    if not sub_of:
        return set()
    owner = dict(
        (
            await session.execute(
                select(Sep2Subscription.id, Sep2Subscription.owner_lfdi).where(
                    Sep2Subscription.id.in_(set(sub_of.values()))
                )
            )
        ).all()
    )
    revoked = await scope.revoked_among(session, set(owner.values()))
    return {msg_id for msg_id, sub_id in sub_of.items() if owner.get(sub_id) in revoked}


def _subscriptions_query(device_id: int | None) -> Select[Sep2Subscription]:
    query = select(Sep2Subscription).order_by(Sep2Subscription.id)
    if device_id is not None:
        query = query.where(Sep2Subscription.end_device_id == device_id)
    return query


async def states(session: AsyncSession, device_id: int | None = None) -> list[dict[str, Any]]:
    return await _states(session, list(await session.scalars(_subscriptions_query(device_id))))


async def states_page(
    session: AsyncSession, device_id: int | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of ``states`` and the number of subscriptions."""
    subs, total = await fetch_page(session, _subscriptions_query(device_id), offset, limit)
    return await _states(session, subs), total


async def _states(session: AsyncSession, subs: list[Sep2Subscription]) -> list[dict[str, Any]]:
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
