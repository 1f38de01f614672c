"""The outbox table's operations for producers and for receivers that fetch: enqueue in the caller's transaction,
discard a key's pending messages, and take a key's head (the poll exit)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.choices import DELIVERED, DELIVERY_STATUSES, DROPPED, PENDING
from server.choices import FAILED as FAILED
from server.config import DeliverySettings
from server.store.models import DeliveryMessage
from server.store.types import utcnow

STATUSES = DELIVERY_STATUSES
# Session.info flag: this transaction queued messages; the running worker wakes when it commits
ENQUEUED = "delivery.enqueued"


def enqueue(
    session: AsyncSession,
    channel: str,
    order_key: str,
    *,
    kind: str = "",
    url: str = "",
    body: bytes | None = None,
    content_type: str = "",
    payload: dict[str, Any] | None = None,
    not_before: dt.datetime | None = None,
) -> DeliveryMessage:
    """Add a message in the caller's transaction; it becomes deliverable when that transaction commits (or at
    ``not_before``, for a message that must not leave earlier: a device write due when a dispatch starts).

    A message carries either its ``body`` (rendered now) or a ``kind`` and ``payload`` that its channel renders
    at delivery (so what goes out is current: an OpenADR event's status, a fresh signature)."""
    message = DeliveryMessage(
        channel=channel,
        order_key=order_key,
        kind=kind,
        url=url,
        body=body,
        content_type=content_type,
        payload=payload,
        status=PENDING,
        attempts=0,
        next_attempt_at=max(not_before, utcnow()) if not_before is not None else utcnow(),
        last_error="",
    )
    session.add(message)
    session.info[ENQUEUED] = True
    return message


def unclaimed(now: dt.datetime) -> ColumnElement[bool]:
    """No live claim on the message (never claimed, released, or its lease lapsed)."""
    return or_(DeliveryMessage.lease_until.is_(None), DeliveryMessage.lease_until < now)


def is_head() -> ColumnElement[bool]:
    """No older pending message of the same key: the one a key's strict order lets go out next."""
    older = aliased(DeliveryMessage)
    return ~exists().where(
        and_(
            older.order_key == DeliveryMessage.order_key,
            older.status == PENDING,
            older.id < DeliveryMessage.id,
        )
    )


async def has_unclaimed(session: AsyncSession, order_key: str, kind: str) -> bool:
    """Is a message of this kind waiting for the key and not yet being sent? (A producer whose message is
    rendered at delivery needs only one such copy: it will carry the latest state.)"""
    found = await session.scalar(
        select(DeliveryMessage.id)
        .where(
            DeliveryMessage.order_key == order_key,
            DeliveryMessage.status == PENDING,
            DeliveryMessage.kind == kind,
            unclaimed(utcnow()),
        )
        .limit(1)
    )
    return found is not None


async def discard(session: AsyncSession, order_key: str) -> None:
    """Drop every pending message of a key (its receiver is gone or starts afresh)."""
    await session.execute(
        delete(DeliveryMessage)
        .where(DeliveryMessage.order_key == order_key, DeliveryMessage.status == PENDING)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Taken:
    id: int
    kind: str
    payload: dict[str, Any]
    body: bytes | None


async def take_head(session: AsyncSession, order_key: str) -> Taken | None:
    """Hand the key's oldest pending message to a receiver that fetched it, marking it delivered in the caller's
    transaction (it is handed out again only if that transaction rolls back).

    Only the head goes, and only while nobody is sending it: when the head is claimed by a sender (a push in
    flight) the answer is None and order is kept. One conditional UPDATE decides who got it, so two fetches (or a
    fetch and a sender) racing for one row cannot both have it -- also on SQLite, which has no row locks."""
    now = utcnow()
    head = (
        select(DeliveryMessage.id)
        .where(DeliveryMessage.order_key == order_key, DeliveryMessage.status == PENDING)
        .order_by(DeliveryMessage.id)
        .limit(1)
    )
    # no SKIP LOCKED here: skipping a head that another fetch is taking would hand out the one behind it; the
    # UPDATE below waits for that fetch's commit instead and then finds the row taken
    for _ in range(10):
        row_id = await session.scalar(head)
        if row_id is None:
            return None
        row = (
            await session.execute(
                update(DeliveryMessage)
                .where(DeliveryMessage.id == row_id, DeliveryMessage.status == PENDING, unclaimed(now))
                .values(
                    status=DELIVERED,
                    delivered_at=now,
                    via="poll",
                    attempts=DeliveryMessage.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(DeliveryMessage.kind, DeliveryMessage.payload, DeliveryMessage.body)
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is not None:
            return Taken(row_id, row.kind, dict(row.payload or {}), row.body)
        still_pending = await session.scalar(
            select(DeliveryMessage.id).where(DeliveryMessage.id == row_id, DeliveryMessage.status == PENDING)
        )
        if still_pending is not None:
            return None  # claimed by a sender right now: it goes out that way
    return None


async def mark_dropped(session: AsyncSession, message_id: int, reason: str) -> None:
    """A taken message turned out to have nothing left to say (its subject is gone)."""
    await session.execute(
        update(DeliveryMessage)
        .where(DeliveryMessage.id == message_id)
        .values(status=DROPPED, last_error=reason[:500])
        .execution_options(synchronize_session=False)
    )


async def pending_counts(session: AsyncSession, order_keys: list[str]) -> dict[str, int]:
    rows = await session.execute(
        select(DeliveryMessage.order_key, func.count())
        .where(DeliveryMessage.order_key.in_(order_keys), DeliveryMessage.status == PENDING)
        .group_by(DeliveryMessage.order_key)
    )
    return {key: int(n) for key, n in rows.all()}


async def pending_count(session: AsyncSession, order_key: str) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(DeliveryMessage)
            .where(DeliveryMessage.order_key == order_key, DeliveryMessage.status == PENDING)
        )
        or 0
    )


async def prune(session: AsyncSession, older_than: dt.datetime) -> int:
    """Forget delivered and dropped messages created before ``older_than``, except the newest delivered one of each
    key (a subscription compares its next notification with the last one it received)."""
    newest = (
        select(func.max(DeliveryMessage.id))
        .where(DeliveryMessage.status == DELIVERED)
        .group_by(DeliveryMessage.order_key)
    )
    result = await session.execute(
        delete(DeliveryMessage)
        .where(
            DeliveryMessage.status.in_((DELIVERED, DROPPED)),
            DeliveryMessage.created_at < older_than,
            DeliveryMessage.id.not_in(newest),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backoff(attempts: int, settings: DeliverySettings) -> dt.timedelta:
    """Delay before attempt ``attempts + 1``: doubling from ``initial_backoff_s`` up to ``max_backoff_s``."""
    seconds = min(settings.max_backoff_s, settings.initial_backoff_s * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=seconds)
