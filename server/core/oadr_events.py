"""Events as OpenADR VENs see them: the OpenADR view of a price or DR event, its status from the clock, and the
staff calls of the OpenADR admin routes (which create events like every other route: ``server.core.events``).

Rules kept here (not in the XML adapter):
- ``eventStatus`` is computed from the clock at rendering time: far -> near (``near_window_s`` before the start)
  -> active -> completed, or cancelled;
- an event is distributed until its active period ends; a cancelled event stays visible, with status
  cancelled, until then;
- ``priority`` is the event's own when staff gave one, else its program's primacy (lower wins in both);
- the market context is the program's, else the server's configured one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events, programs
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import Event, Program
from server.store.types import utcnow

SIGNALS = events.SIGNALS
SIGNAL_TYPES = events.SIGNAL_TYPES
RESPONSE_REQUIRED = {"always", "never"}
DISTRIBUTE = events.DISTRIBUTE


def status_at(event: Event, now: dt.datetime, near_window_s: int) -> str:
    if event.cancelled_at is not None:
        return "cancelled"
    if now >= event.end_at:
        return "completed"
    if now >= event.start:
        return "active"
    if (event.start - now).total_seconds() <= near_window_s:
        return "near"
    return "far"


@dataclass(frozen=True)
class Signal:
    name: str
    type: str
    intervals: list[dict[str, Any]]


def signal_of(event: Event) -> Signal:
    s = event.payload.get("signal") or {}
    intervals = s.get("intervals") or [{"duration_s": event.duration_s, "value": 0.0}]
    return Signal(s.get("name", "SIMPLE"), s.get("type", "level"), intervals)


def current_value(event: Event, now: dt.datetime) -> float:
    """The signal value in force now (0 outside the active period or when cancelled)."""
    if event.cancelled_at is not None or now < event.start:
        return 0.0
    elapsed = (now - event.start).total_seconds()
    for item in signal_of(event).intervals:
        if elapsed < item["duration_s"]:
            return float(item["value"])
        elapsed -= item["duration_s"]
    return 0.0


def priority_of(event: Event, program: Program) -> int:
    given = event.payload.get("priority")
    return int(given) if given is not None else program.primacy


def market_context_of(program: Program, default: str) -> str:
    return program.market_context or default


@dataclass
class EventInfo:
    """An event as the OpenADR admin routes show it."""

    id: int
    event_id: str
    program: str
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


async def info(
    session: AsyncSession,
    event: Event,
    near_window_s: int,
    default_market_context: str = "",
    with_responses: bool = False,
) -> EventInfo:
    program = await session.get(Program, event.program_id)
    assert program is not None
    signal = signal_of(event)
    vens = sorted(
        set(await events.target_names(session, event.id))
        | set(await programs.member_ven_names(session, program.parent_id or program.id))
    )
    return EventInfo(
        id=event.id,
        event_id=str(event.id),
        program=program.name,
        signal_name=signal.name,
        signal_type=signal.type,
        intervals=signal.intervals,
        start=event.start.isoformat(),
        duration_s=event.duration_s,
        end=event.end_at.isoformat(),
        status=status_at(event, utcnow(), near_window_s),
        modification_number=event.modification_number,
        cancelled=event.cancelled_at is not None,
        priority=priority_of(event, program),
        market_context=market_context_of(program, default_market_context),
        response_required="always" if event.response_required else "never",
        randomization_s=event.randomize_start_s or 0,
        test_event=event.test_event,
        comment=str(event.payload.get("comment", "")),
        all_vens=event.all_vens,
        vens=vens,
        resource_ids=list(event.payload.get("resource_ids") or []),
        group_ids=list(event.payload.get("group_ids") or []),
        created_at=event.creation_time.isoformat(),
        changed_at=event.changed_at.isoformat(),
        responses=await events.responses_of(session, event.id) if with_responses else [],
    )


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
    program: Program | None = None,
) -> EventInfo:
    """An OpenADR-shaped event: in ``program`` when given, else in the DR program of ``market_context``; sent to
    the named VENs, or to every registered VEN when none is named."""
    if response_required not in RESPONSE_REQUIRED:
        raise Invalid("response_required must be always or never")
    if priority < 0 or randomization_s < 0:
        raise Invalid("priority and randomization must not be negative")
    if randomization_s > 3600:
        raise Invalid("randomization must be within one hour (3600 s)")
    if not intervals:
        if level is None or duration_s is None:
            raise Invalid("give level and duration (or intervals)")
        if duration_s <= 0:
            raise Invalid("duration must be positive")
        intervals = [{"duration_s": int(duration_s), "value": float(level)}]
    signal = events.check_signal({"name": signal_name, "type": signal_type, "intervals": intervals})
    total = sum(i["duration_s"] for i in signal["intervals"])
    target = program or await programs.market_program(session, market_context)
    payload: dict[str, Any] = {
        "signal": signal,
        "comment": comment,
        "resource_ids": resource_ids or [],
        "group_ids": group_ids or [],
    }
    if priority:
        payload["priority"] = priority
    event = await events.create(
        session,
        target,
        events.NewEvent(
            start=start,
            duration_s=total,
            payload=payload,
            randomize_start_s=randomization_s or None,
            response_required=3 if response_required == "always" else 0,
            ven_names=tuple(ven_names or ()),
            all_vens=not ven_names and program is None,
            test_event=test_event,
        ),
    )
    return await info(session, event, near_window_s, market_context)


async def _get(session: AsyncSession, event_id: int) -> Event:
    event = await session.get(Event, event_id)
    if event is None or event.kind not in ("price", "dr"):
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
    default_market_context: str = "",
) -> EventInfo:
    event = await events.modify(
        session,
        await _get(session, event_id),
        start=start,
        intervals=intervals,
        level=level,
        duration_s=duration_s,
        priority=priority,
        reason=reason,
    )
    return await info(session, event, near_window_s, default_market_context)


async def cancel_event(
    session: AsyncSession, event_id: int, near_window_s: int, default_market_context: str = ""
) -> EventInfo:
    event = await _get(session, event_id)
    if event.cancelled_at is None and utcnow() >= event.end_at:
        raise Conflict(f"event {event_id} has completed")
    await events.cancel(session, event)
    return await info(session, event, near_window_s, default_market_context)


async def get_event(
    session: AsyncSession, event_id: int, near_window_s: int, default_market_context: str = ""
) -> EventInfo:
    return await info(session, await _get(session, event_id), near_window_s, default_market_context, True)


async def list_events(
    session: AsyncSession,
    near_window_s: int,
    include_expired: bool = False,
    limit: int = 500,
    default_market_context: str = "",
) -> list[EventInfo]:
    query = events.events_query(include_completed=include_expired).where(Event.kind.in_(("price", "dr")))
    found = await session.scalars(query.limit(limit))
    return [await info(session, e, near_window_s, default_market_context, True) for e in found]


async def visible_event(session: AsyncSession, ven_pk: int, event_id: str) -> Event:
    """An event the VEN was sent (else NotFound: no cross-VEN access)."""
    try:
        pk = int(event_id)
    except ValueError:
        raise NotFound(f"no event {event_id}") from None
    found = await session.scalar(
        events.events_query(include_completed=True).where(Event.id == pk, events.visible_to_ven(ven_pk))
    )
    if found is None:
        raise NotFound(f"no event {event_id} for this VEN")
    return found


async def record_response(
    session: AsyncSession,
    ven_pk: int,
    event_id: str,
    modification_number: int,
    opt_type: str,
    response_code: int,
    request_id: str = "",
) -> None:
    """Store one opt response of a VEN to an event it was sent."""
    if opt_type not in events.OPT_STATUS:
        raise Invalid(f"optType must be optIn or optOut, got {opt_type!r}")
    event = await visible_event(session, ven_pk, event_id)
    await events.record_response(
        session, event, events.VenAnswer(ven_pk, opt_type, response_code, modification_number, request_id)
    )
