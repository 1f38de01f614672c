""" "Influence" dispatches, protocol-neutral: price intervals (in a rate component of a tariff) and demand-response
controls (in a DR program). Both are events in a set, assigned to devices, and both get their EventStatus,
supersession and primacy from ``server.core.der_controls`` -- one implementation of the event rules for DER
controls, prices and DRLC, not three.

Sets are ``tariff`` (with ``rate`` children) and ``drp``. Events belong to a ``rate`` or a ``drp``. The device
sees a set when staff assigned it (for a rate: when its tariff is assigned).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import changes
from server.core import der_controls as rules
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import EndDevice, Sep2InfluenceAssignment, Sep2InfluenceEvent, Sep2InfluenceSet
from server.store.types import utcnow

KINDS = ("tariff", "rate", "drp")
EVENT_PARENTS = ("rate", "drp")


def _primacy(value: int) -> int:
    if not 0 <= value <= 255:
        raise Invalid("primacy must be 0..255 (lower wins)")
    return value


async def create_set(
    session: AsyncSession,
    kind: str,
    name: str,
    *,
    primacy: int = 1,
    description: str = "",
    parent: Sep2InfluenceSet | None = None,
    attrs: dict[str, Any] | None = None,
) -> Sep2InfluenceSet:
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {KINDS}")
    if not name or len(name) > 200:
        raise Invalid("name must be 1..200 characters")
    found = await session.scalar(
        select(Sep2InfluenceSet).where(
            Sep2InfluenceSet.kind == kind,
            Sep2InfluenceSet.name == name,
            Sep2InfluenceSet.parent_id == (parent.id if parent else None),
        )
    )
    if found is not None:
        raise Conflict(f"a {kind} named {name!r} already exists")
    s = Sep2InfluenceSet(
        kind=kind,
        name=name,
        description=description[:32],
        primacy=_primacy(primacy),
        parent_id=parent.id if parent else None,
        attrs=attrs or {},
    )
    session.add(s)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a {kind} named {name!r} already exists") from None
    return s


async def get_set(session: AsyncSession, kind: str, ref: int | str) -> Sep2InfluenceSet:
    """By id or (top-level) name."""
    if isinstance(ref, int) or str(ref).isdigit():
        s = await session.get(Sep2InfluenceSet, int(ref))
        if s is not None and s.kind != kind:
            s = None
    else:
        s = await session.scalar(
            select(Sep2InfluenceSet).where(
                Sep2InfluenceSet.kind == kind,
                Sep2InfluenceSet.name == ref,
                Sep2InfluenceSet.parent_id.is_(None),
            )
        )
    if s is None:
        raise NotFound(f"no {kind} {ref!r}")
    return s


async def list_sets(session: AsyncSession, kind: str, parent_id: int | None = None) -> list[Sep2InfluenceSet]:
    q = select(Sep2InfluenceSet).where(Sep2InfluenceSet.kind == kind)
    if parent_id is not None:
        q = q.where(Sep2InfluenceSet.parent_id == parent_id)
    return list(await session.scalars(q.order_by(Sep2InfluenceSet.primacy, Sep2InfluenceSet.id)))


async def assign(session: AsyncSession, s: Sep2InfluenceSet, device: EndDevice) -> bool:
    """Make ``s`` visible to ``device``; False when it already was."""
    if await session.get(Sep2InfluenceAssignment, (s.id, device.id)) is not None:
        return False
    session.add(Sep2InfluenceAssignment(set_id=s.id, end_device_id=device.id))
    await session.flush()
    return True


async def device_sets(session: AsyncSession, device_id: int, kind: str) -> list[Sep2InfluenceSet]:
    """Top-level sets of ``kind`` (tariff, drp) assigned to the device, in primacy order."""
    assigned = select(Sep2InfluenceAssignment.set_id).where(
        Sep2InfluenceAssignment.end_device_id == device_id
    )
    return list(
        await session.scalars(
            select(Sep2InfluenceSet)
            .where(Sep2InfluenceSet.kind == kind, Sep2InfluenceSet.id.in_(assigned))
            .order_by(Sep2InfluenceSet.primacy, Sep2InfluenceSet.id)
        )
    )


async def devices_of(session: AsyncSession, set_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(Sep2InfluenceAssignment.end_device_id).where(Sep2InfluenceAssignment.set_id == set_id)
        )
    )


# ------------------------------------------------------------------------------------------------------ events
@dataclass(frozen=True)
class NewEvent:
    start: dt.datetime
    duration_s: int
    payload: dict[str, Any]
    description: str = ""
    randomize_start_s: int | None = None
    randomize_duration_s: int | None = None
    response_required: int = 0


async def create_event(session: AsyncSession, parent: Sep2InfluenceSet, new: NewEvent) -> Sep2InfluenceEvent:
    if parent.kind not in EVENT_PARENTS:
        raise Invalid("events belong to a rate component or a DR program")
    rules.check_event_header(
        new.start, new.duration_s, new.randomize_start_s, new.randomize_duration_s, new.response_required
    )
    event = Sep2InfluenceEvent(
        set_id=parent.id,
        description=new.description[:32],
        creation_time=utcnow(),
        start=new.start,
        duration_s=new.duration_s,
        payload=new.payload,
        randomize_start_s=new.randomize_start_s,
        randomize_duration_s=new.randomize_duration_s,
        response_required=new.response_required,
    )
    session.add(event)
    await session.flush()
    changes.record(session, objects={"influence": [parent.id]})
    return event


async def get_event(session: AsyncSession, event_id: int) -> Sep2InfluenceEvent:
    event = await session.get(Sep2InfluenceEvent, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


async def cancel_event(session: AsyncSession, event: Sep2InfluenceEvent, randomized: bool = False) -> bool:
    """Cancel (EventStatus 2, or 3 with randomization); False when it already was."""
    if event.cancelled_at is not None:
        return False
    event.cancelled_at = utcnow()
    event.cancel_randomized = randomized
    await session.flush()
    changes.record(session, objects={"influence": [event.set_id]})
    return True


def interval_of(e: Sep2InfluenceEvent, primacy: int) -> rules.Interval:
    return rules.Interval(
        id=e.id,
        program_id=e.set_id,
        primacy=primacy,
        creation_time=e.creation_time,
        start=e.start,
        duration_s=e.duration_s,
        cancelled=e.cancelled_at is not None,
        cancel_randomized=e.cancel_randomized,
    )


async def evaluated(
    session: AsyncSession,
    parents: list[Sep2InfluenceSet],
    now: dt.datetime,
) -> list[tuple[Sep2InfluenceEvent, rules.Evaluated]]:
    """Events of ``parents`` (the sets one device sees, of one kind) with their status at ``now``, in the order
    2030.5 lists events (start, newest creationTime first), completed ones dropped."""
    primacy = {p.id: p.primacy for p in parents}
    events = list(
        await session.scalars(select(Sep2InfluenceEvent).where(Sep2InfluenceEvent.set_id.in_(list(primacy))))
    )
    intervals = {e.id: interval_of(e, primacy[e.set_id]) for e in events}
    everything = list(intervals.values())
    out = []
    for e in sorted(events, key=lambda x: rules.list_order_key(intervals[x.id])):
        ev = rules.evaluate(intervals[e.id], everything, now)
        if not ev.completed:
            out.append((e, ev))
    return out


def event_dict(e: Sep2InfluenceEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "set_id": e.set_id,
        "description": e.description,
        "creation_time": e.creation_time.isoformat(),
        "start": e.start.isoformat(),
        "duration_s": e.duration_s,
        "randomize_start_s": e.randomize_start_s,
        "randomize_duration_s": e.randomize_duration_s,
        "response_required": e.response_required,
        "payload": e.payload,
        "cancelled_at": e.cancelled_at.isoformat() if e.cancelled_at else None,
    }


def set_dict(s: Sep2InfluenceSet) -> dict[str, Any]:
    return {
        "id": s.id,
        "kind": s.kind,
        "name": s.name,
        "description": s.description,
        "primacy": s.primacy,
        "parent_id": s.parent_id,
        "attrs": s.attrs,
        "created_at": s.created_at.isoformat(),
    }
