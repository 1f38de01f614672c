"""Alarms: raising, refreshing, clearing and acknowledging the conditions staff must see.

Anything that notices a condition (the scheduler, the delivery workers, the communication watch, the planner)
calls ``raise_alarm`` in its own transaction; raising a condition that is already open on the same subject only
refreshes it (message, last seen, count), so a condition noticed every minute is one alarm, not thousands.
``clear`` closes it when the condition is gone; an operator acknowledges it (``acknowledge``), which records who.
The row stays: alarms are history, never deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

# the kinds and states live where the CLI can import them without the store; raisers name them through here
from server.choices import ALARM_KINDS, ALARM_STATES
from server.choices import COMMS_LOST as COMMS_LOST
from server.choices import DELIVERY_FAILING as DELIVERY_FAILING
from server.choices import FORECAST_FAILED as FORECAST_FAILED
from server.choices import LIMIT_VIOLATION as LIMIT_VIOLATION
from server.choices import PLAN_FAILED as PLAN_FAILED
from server.choices import SCHEDULER as SCHEDULER
from server.core.errors import Invalid, NotFound
from server.store.models import Alarm
from server.store.paging import fetch_page

KINDS, STATES = ALARM_KINDS, ALARM_STATES
SEVERITIES = ("warning", "critical")


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


async def _open(session: AsyncSession, kind: str, subject: str) -> Alarm | None:
    return await session.scalar(
        select(Alarm)
        .where(Alarm.kind == kind, Alarm.subject == subject, Alarm.cleared_at.is_(None))
        .order_by(Alarm.id.desc())
        .limit(1)
    )


async def raise_alarm(
    session: AsyncSession,
    kind: str,
    subject: str,
    message: str,
    severity: str = "warning",
    now: dt.datetime | None = None,
) -> Alarm:
    """Open the alarm, or refresh the open one of the same kind and subject. A refresh that escalates the
    severity keeps the higher one; a refreshed alarm that was acknowledged stays acknowledged."""
    if kind not in KINDS:
        raise Invalid(f"unknown alarm kind {kind!r} (known: {', '.join(KINDS)})")
    if severity not in SEVERITIES:
        raise Invalid(f"severity must be one of {', '.join(SEVERITIES)}")
    at = _now(now)
    alarm = await _open(session, kind, subject)
    if alarm is None:
        alarm = Alarm(
            kind=kind,
            subject=subject[:200],
            severity=severity,
            message=message,
            raised_at=at,
            last_seen_at=at,
            occurrences=1,
            acknowledged_by="",
        )
        session.add(alarm)
    else:
        alarm.message = message
        alarm.last_seen_at = at
        alarm.occurrences += 1
        if severity == "critical":
            alarm.severity = "critical"
    await session.flush()
    return alarm


async def open_subjects(session: AsyncSession, kind: str, prefix: str = "") -> set[str]:
    """The subjects of this kind with an open alarm (those starting with ``prefix``)."""
    query = select(Alarm.subject).where(Alarm.kind == kind, Alarm.cleared_at.is_(None))
    if prefix:
        query = query.where(Alarm.subject.startswith(prefix, autoescape=True))
    return set(await session.scalars(query))


async def raise_many(
    session: AsyncSession,
    kind: str,
    found: dict[str, str],
    severity: str = "warning",
    now: dt.datetime | None = None,
) -> int:
    """``raise_alarm`` for many subjects at once (subject -> message): open ones are left as they are (a watch
    that sees the same condition every minute need not refresh thousands of rows), new ones are opened in one
    INSERT. Returns how many were opened."""
    if not found:
        return 0
    if kind not in KINDS:
        raise Invalid(f"unknown alarm kind {kind!r} (known: {', '.join(KINDS)})")
    at = _now(now)
    already = await open_subjects(session, kind)
    new = [
        Alarm(
            kind=kind,
            subject=subject[:200],
            severity=severity,
            message=message,
            raised_at=at,
            last_seen_at=at,
            occurrences=1,
            acknowledged_by="",
        )
        for subject, message in sorted(found.items())
        if subject[:200] not in already
    ]
    session.add_all(new)
    await session.flush()
    return len(new)


async def clear_many(
    session: AsyncSession, kind: str, subjects: set[str], now: dt.datetime | None = None
) -> int:
    """``clear`` for many subjects in one UPDATE; returns how many were open."""
    at, wanted, cleared = _now(now), sorted(subjects), 0
    for i in range(0, len(wanted), 1000):  # within every backend's limit of bound parameters
        result = await session.execute(
            update(Alarm)
            .where(Alarm.kind == kind, Alarm.subject.in_(wanted[i : i + 1000]), Alarm.cleared_at.is_(None))
            .values(cleared_at=at)
            .execution_options(synchronize_session=False)
        )
        cleared += int(getattr(result, "rowcount", 0) or 0)
    return cleared


async def clear(session: AsyncSession, kind: str, subject: str, now: dt.datetime | None = None) -> bool:
    """Close the open alarm of this kind on this subject; False when none was open."""
    alarm = await _open(session, kind, subject)
    if alarm is None:
        return False
    alarm.cleared_at = _now(now)
    await session.flush()
    return True


async def acknowledge(
    session: AsyncSession, alarm_id: int, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    alarm = await session.get(Alarm, alarm_id)
    if alarm is None:
        raise NotFound(f"no alarm {alarm_id}")
    if alarm.acknowledged_at is None:
        alarm.acknowledged_at = _now(now)
        alarm.acknowledged_by = actor[:64]
        await session.flush()
    return alarm_dict(alarm)


def _filtered(state: str, kind: str | None, subject: str | None) -> Select[Alarm]:
    if state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}")
    query = select(Alarm)
    if state == "open":
        query = query.where(Alarm.cleared_at.is_(None))
    elif state == "unacknowledged":
        query = query.where(Alarm.cleared_at.is_(None), Alarm.acknowledged_at.is_(None))
    elif state == "acknowledged":
        query = query.where(Alarm.acknowledged_at.is_not(None))
    elif state == "cleared":
        query = query.where(Alarm.cleared_at.is_not(None))
    if kind:
        if kind not in KINDS:
            raise Invalid(f"unknown alarm kind {kind!r} (known: {', '.join(KINDS)})")
        query = query.where(Alarm.kind == kind)
    if subject:
        query = query.where(Alarm.subject == subject)
    return query


async def page(
    session: AsyncSession,
    state: str = "open",
    kind: str | None = None,
    subject: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, paged in SQL."""
    query = _filtered(state, kind, subject).order_by(Alarm.id.desc())
    rows, total = await fetch_page(session, query, offset, limit)
    return [alarm_dict(a) for a in rows], total


async def open_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """(kind, severity) -> open alarms, every kind and severity present (zeros included) for monitoring."""
    counts = {(k, s): 0 for k in KINDS for s in SEVERITIES}
    rows = await session.execute(
        select(Alarm.kind, Alarm.severity, func.count())
        .where(Alarm.cleared_at.is_(None))
        .group_by(Alarm.kind, Alarm.severity)
    )
    for kind, severity, n in rows:
        counts[(kind, severity)] = n
    return counts


def alarm_dict(alarm: Alarm) -> dict[str, Any]:
    return {
        "id": alarm.id,
        "kind": alarm.kind,
        "subject": alarm.subject,
        "severity": alarm.severity,
        "message": alarm.message,
        "raised_at": alarm.raised_at.isoformat(),
        "last_seen_at": alarm.last_seen_at.isoformat(),
        "occurrences": alarm.occurrences,
        "cleared_at": alarm.cleared_at.isoformat() if alarm.cleared_at else None,
        "acknowledged_at": alarm.acknowledged_at.isoformat() if alarm.acknowledged_at else None,
        "acknowledged_by": alarm.acknowledged_by or None,
    }
