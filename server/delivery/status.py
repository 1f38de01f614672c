"""What staff see of the outbox: pages of messages (newest first, keyset-paged in SQL), counts per channel and
status, and the requeueing of a dead letter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import Conflict, Invalid, NotFound
from server.delivery.outbox import FAILED, PENDING, STATUSES
from server.store.models import DeliveryMessage
from server.store.paging import count_rows
from server.store.types import utcnow

MAX_PAGE = 1000


def as_dict(m: DeliveryMessage) -> dict[str, Any]:
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    return {
        "id": m.id,
        "channel": m.channel,
        "key": m.order_key,
        "kind": m.kind,
        "url": m.url,
        "status": m.status,
        "attempts": m.attempts,
        "created_at": iso(m.created_at),
        "next_attempt_at": iso(m.next_attempt_at),
        "delivered_at": iso(m.delivered_at),
        "via": m.via,
        "claimed_by": m.lease_owner,
        "last_status": m.last_status,
        "last_error": m.last_error,
    }


def _filtered(status: str | None, channel: str | None, key: str | None) -> Select[DeliveryMessage]:
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}")
    query = select(DeliveryMessage)
    if status:
        query = query.where(DeliveryMessage.status == status)
    if channel:
        query = query.where(DeliveryMessage.channel == channel)
    if key:
        query = query.where(DeliveryMessage.order_key == key)
    return query


async def page(
    session: AsyncSession,
    *,
    status: str | None = None,
    channel: str | None = None,
    key: str | None = None,
    before: int | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, and how many messages the filter matches (``before`` not counted). Page on with
    ``offset``, or with ``before`` = the last id of the previous page (which stays stable while messages
    arrive)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1..{MAX_PAGE}")
    query = _filtered(status, channel, key)
    total = await count_rows(session, query)
    if before is not None:
        query = query.where(DeliveryMessage.id < before)
    query = query.order_by(DeliveryMessage.id.desc()).offset(offset).limit(limit)
    return [as_dict(m) for m in await session.scalars(query)], total


async def channels(session: AsyncSession) -> list[dict[str, Any]]:
    """One row per channel: messages per status, and the oldest pending message's age in seconds."""
    rows = await session.execute(
        select(
            DeliveryMessage.channel,
            DeliveryMessage.status,
            func.count(),
            func.min(DeliveryMessage.created_at),
        ).group_by(DeliveryMessage.channel, DeliveryMessage.status)
    )
    out: dict[str, dict[str, Any]] = {}
    now = utcnow()
    for channel, status, count, oldest in rows.all():
        entry = out.setdefault(
            channel, {"channel": channel, **{s: 0 for s in STATUSES}, "oldest_pending_s": None}
        )
        entry[status] = int(count)
        if status == PENDING and oldest is not None:
            if not isinstance(oldest, dt.datetime):  # an aggregate bypasses the column type on SQLite
                oldest = dt.datetime.fromisoformat(str(oldest))
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=dt.UTC)
            entry["oldest_pending_s"] = round((now - oldest).total_seconds(), 1)
    return [out[c] for c in sorted(out)]


async def requeue(session: AsyncSession, message_id: int) -> dict[str, Any]:
    """Give a dead letter a fresh set of attempts (after its receiver was fixed)."""
    message = await session.get(DeliveryMessage, message_id)
    if message is None:
        raise NotFound(f"no delivery {message_id}")
    if message.status != FAILED:
        raise Conflict(f"delivery {message_id} is {message.status}, only failed ones are requeued")
    await session.execute(
        update(DeliveryMessage)
        .where(DeliveryMessage.id == message_id)
        .values(status=PENDING, attempts=0, next_attempt_at=utcnow(), last_error="")
        .execution_options(synchronize_session=False)
    )
    await session.refresh(message)
    return as_dict(message)
