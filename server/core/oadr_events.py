"""Demand-response events as OpenADR VENs see them: creation, modification, cancellation, status, opt responses.

Rules kept here (not in the XML adapter):
- every change (modification or cancellation) increments ``modification_number``;
- ``eventStatus`` is computed from the clock at rendering time: far -> near (``near_window_s`` before the start)
  -> active -> completed, or cancelled;
- an event is distributed until its active period ends ("expiry"); a cancelled event stays visible, with status
  cancelled, until then;
- a change queues one ``distribute_event`` message per targeted, registered VEN (deduplicated: the message is
  rendered from the current events when delivered).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import vens as vens_core
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import OadrEvent, OadrEventResponse, OadrEventVen, Ven
from server.store.types import utcnow

# signalName -> default signalType (OpenADR 2.0b profile B signals)
SIGNALS: dict[str, str] = {
    "SIMPLE": "level",
    "ELECTRICITY_PRICE": "price",
    "ENERGY_PRICE": "price",
    "DEMAND_CHARGE": "price",
    "BID_PRICE": "price",
    "BID_LOAD": "setpoint",
    "BID_ENERGY": "setpoint",
    "CHARGE_STATE": "setpoint",
    "LOAD_DISPATCH": "setpoint",
    "LOAD_CONTROL": "x-loadControlCapacity",
}
SIGNAL_TYPES = {
    "delta",
    "level",
    "multiplier",
    "price",
    "priceMultiplier",
    "priceRelative",
    "setpoint",
    "x-loadControlCapacity",
    "x-loadControlLevelOffset",
    "x-loadControlPercentOffset",
    "x-loadControlSetpoint",
}
RESPONSE_REQUIRED = {"always", "never"}
OPT_TYPES = {"optIn", "optOut"}
DISTRIBUTE = "distribute_event"


def status_at(event: OadrEvent, now: dt.datetime, near_window_s: int) -> str:
    if event.cancelled:
        return "cancelled"
    if now >= event.end:
        return "completed"
    if now >= event.start:
        return "active"
    if (event.start - now).total_seconds() <= near_window_s:
        return "near"
    return "far"


@dataclass
class EventInfo:
    id: int
    event_id: str
    signal_name: str
    signal_type: str
    intervals: list[dict[str, Any]]
    start: str
    duration_s: int
    end: str
    status: str
    modification_number: int
    cancelled: bool
    priority: int
    market_context: str
    response_required: str
    randomization_s: int
    test_event: bool
    comment: str
    all_vens: bool
    vens: list[str]
    resource_ids: list[str]
    group_ids: list[str]
    created_at: str
    changed_at: str
    responses: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _intervals(
    level: float | None, duration_s: int | None, intervals: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    if intervals:
        out = []
        for item in intervals:
            try:
                d, v = int(item["duration_s"]), float(item["value"])
            except (KeyError, TypeError, ValueError):
                raise Invalid("each interval needs integer duration_s and numeric value") from None
            if d <= 0:
                raise Invalid("interval durations must be positive")
            out.append({"duration_s": d, "value": v})
        return out
    if level is None or duration_s is None:
        raise Invalid("give level and duration (or intervals)")
    if duration_s <= 0:
        raise Invalid("duration must be positive")
    return [{"duration_s": int(duration_s), "value": float(level)}]


async def _info(
    session: AsyncSession, event: OadrEvent, near_window_s: int, with_responses: bool = False
) -> EventInfo:
    names = list(
        await session.scalars(
            select(Ven.name)
            .join(OadrEventVen, OadrEventVen.ven_pk == Ven.id)
            .where(OadrEventVen.event_id == event.id)
            .order_by(Ven.name)
        )
    )
    responses: list[dict[str, Any]] = []
    if with_responses:
        rows = await session.execute(
            select(OadrEventResponse, Ven.name)
            .join(Ven, Ven.id == OadrEventResponse.ven_pk)
            .where(OadrEventResponse.event_id == event.id)
            .order_by(OadrEventResponse.id)
        )
        responses = [
            {
                "ven": name,
                "opt_type": r.opt_type,
                "modification_number": r.modification_number,
                "response_code": r.response_code,
                "received_at": r.received_at.isoformat(),
            }
            for r, name in rows.all()
        ]
    return EventInfo(
        id=event.id,
        event_id=str(event.id),
        signal_name=event.signal_name,
        signal_type=event.signal_type,
        intervals=event.intervals,
        start=event.start.isoformat(),
        duration_s=event.duration_s,
        end=event.end.isoformat(),
        status=status_at(event, utcnow(), near_window_s),
        modification_number=event.modification_number,
        cancelled=event.cancelled,
        priority=event.priority,
        market_context=event.market_context,
        response_required=event.response_required,
        randomization_s=event.randomization_s,
        test_event=event.test_event,
        comment=event.vtn_comment,
        all_vens=event.all_vens,
        vens=names,
        resource_ids=list(event.resource_ids or []),
        group_ids=list(event.group_ids or []),
        created_at=event.created_at.isoformat(),
        changed_at=event.changed_at.isoformat(),
        responses=responses,
    )


async def target_vens(session: AsyncSession, event: OadrEvent) -> list[Ven]:
    """Registered, enabled VENs the event goes to."""
    query = select(Ven).where(Ven.registration_id.is_not(None), Ven.enabled)
    if not event.all_vens:
        query = query.join(OadrEventVen, OadrEventVen.ven_pk == Ven.id).where(
            OadrEventVen.event_id == event.id
        )
    return list(await session.scalars(query))


async def distribute(session: AsyncSession, event: OadrEvent) -> list[int]:
    """Queue a distributeEvent for every targeted VEN; returns their primary keys (for push wake-ups)."""
    pks = []
    for ven in await target_vens(session, event):
        await vens_core.enqueue(session, ven.id, DISTRIBUTE, dedupe=True)
        pks.append(ven.id)
    return pks


async def create_event(
    session: AsyncSession,
    *,
    signal_name: str,
    start: dt.datetime,
    market_context: str,
    near_window_s: int,
    level: float | None = None,
    duration_s: int | None = None,
    intervals: list[dict[str, Any]] | None = None,
    signal_type: str | None = None,
    ven_names: list[str] | None = None,
    resource_ids: list[str] | None = None,
    group_ids: list[str] | None = None,
    priority: int = 0,
    response_required: str = "always",
    randomization_s: int = 0,
    test_event: bool = False,
    comment: str = "",
) -> EventInfo:
    if signal_name not in SIGNALS and not signal_name.startswith("x-"):
        raise Invalid(f"unknown signal {signal_name!r} (one of {', '.join(SIGNALS)} or x-...)")
    signal_type = signal_type or SIGNALS.get(signal_name, "level")
    if signal_type not in SIGNAL_TYPES:
        raise Invalid(f"unknown signal type {signal_type!r}")
    if response_required not in RESPONSE_REQUIRED:
        raise Invalid("response_required must be always or never")
    if start.tzinfo is None:
        raise Invalid("start must carry a time zone")
    if priority < 0 or randomization_s < 0:
        raise Invalid("priority and randomization must not be negative")
    items = _intervals(level, duration_s, intervals)
    total = sum(i["duration_s"] for i in items)
    now = utcnow()
    event = OadrEvent(
        signal_name=signal_name,
        signal_type=signal_type,
        intervals=items,
        start=start,
        duration_s=total,
        end=start + dt.timedelta(seconds=total),
        priority=priority,
        market_context=market_context,
        response_required=response_required,
        randomization_s=randomization_s,
        test_event=test_event,
        vtn_comment=comment,
        all_vens=not ven_names,
        resource_ids=resource_ids or [],
        group_ids=group_ids or [],
        created_at=now,
        changed_at=now,
    )
    session.add(event)
    targets = await vens_core.by_names(session, list(dict.fromkeys(ven_names or [])))
    await session.flush()
    for ven in targets:
        session.add(OadrEventVen(event_id=event.id, ven_pk=ven.id))
    await session.flush()
    await distribute(session, event)
    return await _info(session, event, near_window_s)


async def _get(session: AsyncSession, event_id: int) -> OadrEvent:
    event = await session.get(OadrEvent, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


async def modify_event(
    session: AsyncSession,
    event_id: int,
    near_window_s: int,
    *,
    level: float | None = None,
    intervals: list[dict[str, Any]] | None = None,
    start: dt.datetime | None = None,
    duration_s: int | None = None,
    priority: int | None = None,
    reason: str = "",
) -> EventInfo:
    event = await _get(session, event_id)
    now = utcnow()
    if event.cancelled:
        raise Conflict(f"event {event_id} is cancelled")
    if now >= event.end:
        raise Conflict(f"event {event_id} has completed")
    if intervals:
        event.intervals = _intervals(None, None, intervals)
    elif level is not None or duration_s is not None:
        items = [dict(i) for i in event.intervals]
        if level is not None:
            for item in items:
                item["value"] = float(level)
        if duration_s is not None:
            if len(items) != 1 or duration_s <= 0:
                raise Invalid("duration can only be changed on a one-interval event, and must be positive")
            items[0]["duration_s"] = int(duration_s)
        event.intervals = items
    if start is not None:
        event.start = start
    if priority is not None:
        event.priority = priority
    event.duration_s = sum(int(i["duration_s"]) for i in event.intervals)
    event.end = event.start + dt.timedelta(seconds=event.duration_s)
    event.modification_number += 1
    event.modification_reason = reason
    event.changed_at = now
    await session.flush()
    await distribute(session, event)
    return await _info(session, event, near_window_s)


async def cancel_event(session: AsyncSession, event_id: int, near_window_s: int) -> EventInfo:
    event = await _get(session, event_id)
    if not event.cancelled:
        if utcnow() >= event.end:
            raise Conflict(f"event {event_id} has completed")
        event.cancelled = True
        event.modification_number += 1
        event.modification_reason = "cancelled"
        event.changed_at = utcnow()
        await session.flush()
        await distribute(session, event)
    return await _info(session, event, near_window_s)


async def get_event(session: AsyncSession, event_id: int, near_window_s: int) -> EventInfo:
    return await _info(session, await _get(session, event_id), near_window_s, with_responses=True)


async def list_events(
    session: AsyncSession, near_window_s: int, include_expired: bool = False, limit: int = 500
) -> list[EventInfo]:
    query = select(OadrEvent).order_by(OadrEvent.id.desc()).limit(limit)
    if not include_expired:
        query = query.where(OadrEvent.end > utcnow())
    return [await _info(session, e, near_window_s, with_responses=True) for e in await session.scalars(query)]


def _visible_to(ven_pk: int):
    targeted = exists().where(OadrEventVen.event_id == OadrEvent.id, OadrEventVen.ven_pk == ven_pk)
    return or_(OadrEvent.all_vens, targeted)


async def events_for_ven(
    session: AsyncSession, ven_pk: int, now: dt.datetime | None = None
) -> list[OadrEvent]:
    """The events a VEN must hold now: targeted at it and not yet expired (cancelled ones included)."""
    now = now or utcnow()
    query = (
        select(OadrEvent)
        .where(OadrEvent.end > now, _visible_to(ven_pk))
        .order_by(OadrEvent.start, OadrEvent.id)
    )
    return list(await session.scalars(query))


async def record_response(
    session: AsyncSession,
    ven_pk: int,
    event_id: str,
    modification_number: int,
    opt_type: str,
    response_code: int,
    request_id: str = "",
) -> None:
    """Store one opt response; the event must be one the VEN was sent (else NotFound: no cross-VEN access)."""
    if opt_type not in OPT_TYPES:
        raise Invalid(f"optType must be optIn or optOut, got {opt_type!r}")
    try:
        pk = int(event_id)
    except ValueError:
        raise NotFound(f"no event {event_id}") from None
    visible = await session.scalar(select(OadrEvent.id).where(OadrEvent.id == pk, _visible_to(ven_pk)))
    if visible is None:
        raise NotFound(f"no event {event_id} for this VEN")
    session.add(
        OadrEventResponse(
            event_id=pk,
            ven_pk=ven_pk,
            modification_number=modification_number,
            opt_type=opt_type,
            response_code=response_code,
            request_id=request_id[:200],
        )
    )
    await session.flush()
