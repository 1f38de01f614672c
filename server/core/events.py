"""Events of programs, once for every protocol: the one call that creates, modifies and cancels them, the reads
the adapters render from, and the responses every protocol brings back.

An event belongs to a program and takes its kind from it: a ``der`` program's events are DER controls (payload
``{"base": DERControlBase}``), a rate component's are prices (``{"touTier", "tiers"}``), a ``dr`` program's are
load-control events (``{"deviceCategory", "control", ...}``). Price and DR events also carry the OpenADR signal
their VENs receive (``payload["signal"]``): given, or derived from the 2030.5 payload. Status, supersession and
primacy come from ``server.core.der_controls`` for all of them. A change records the program it touched
(``server.core.changes``) and queues a distributeEvent for every OpenADR VEN the event reaches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import changes, drlc, pricing, programs
from server.core import der_controls as rules
from server.core import vens as vens_core
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import (
    EndDevice,
    Event,
    EventResponse,
    EventTarget,
    Program,
    ProgramMember,
    Sep2Curve,
    Ven,
)
from server.store.types import utcnow

EVENT_KIND = {"der": "der", "rate": "price", "dr": "dr"}  # program kind -> kind of its events
DEFAULT_RESPONSE_REQUIRED = {"der": 3, "price": 0, "dr": 0}
DISTRIBUTE = "distribute_event"  # the VEN mailbox message that carries every event the VEN holds

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


@dataclass(frozen=True)
class NewEvent:
    """What staff or the optimizer ask for. ``payload`` is the kind's own (see the module docstring) plus,
    for price and DR events, an optional ``signal`` ({"name", "type", "intervals": [{"duration_s", "value"}]})
    or ``level`` (the OpenADR SIMPLE level of a DR event, 0..3, default 1)."""

    start: dt.datetime
    duration_s: int
    payload: dict[str, Any]
    description: str = ""
    randomize_start_s: int | None = None
    randomize_duration_s: int | None = None
    response_required: int | None = None  # None: the kind's default
    ven_names: tuple[str, ...] = ()  # OpenADR VENs aimed at beyond the program's members
    all_vens: bool = False  # every registered VEN
    test_event: bool = False


# --------------------------------------------------------------------------------------------------- payloads
async def _check_curves(session: AsyncSession, program: Program, base: dict[str, Any]) -> None:
    """Curve modes reference DERCurves of the same program by id."""
    wanted = {name: base[name] for name in rules.CURVE_FIELDS if name in base}
    if wanted:
        have = set(await session.scalars(select(Sep2Curve.id).where(Sep2Curve.program_id == program.id)))
        for name, curve_id in wanted.items():
            if curve_id not in have:
                raise Invalid(f"{name}: program {program.name!r} has no curve {curve_id}")


def check_signal(signal: object) -> dict[str, Any]:
    if not isinstance(signal, dict):
        raise Invalid("signal must be an object {name, type, intervals}")
    name = signal.get("name")
    if not isinstance(name, str) or (name not in SIGNALS and not name.startswith("x-")):
        raise Invalid(f"unknown signal {name!r} (one of {', '.join(SIGNALS)} or x-...)")
    kind = signal.get("type") or SIGNALS.get(name, "level")
    if kind not in SIGNAL_TYPES:
        raise Invalid(f"unknown signal type {kind!r}")
    return {"name": name, "type": kind, "intervals": check_intervals(signal.get("intervals"))}


def check_intervals(intervals: object) -> list[dict[str, Any]]:
    if not isinstance(intervals, list) or not intervals:
        raise Invalid("a signal needs intervals [{duration_s, value}, ...]")
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


def price_signal(
    program: Program, tiers: list[dict[str, int]], tariff: Program | None, duration_s: int
) -> dict:
    """The OpenADR ELECTRICITY_PRICE a price event carries: the first block's price in currency units, per kWh
    when the rate component prices watt-hours."""
    tariff_attrs = tariff.attrs if tariff is not None else {}
    price = tiers[0]["price"] * 10.0 ** int(tariff_attrs.get("pricePowerOfTenMultiplier", 0))
    if program.attrs.get("uom", 72) == 72:
        price *= 1000.0 / 10.0 ** int(program.attrs.get("powerOfTenMultiplier", 0))
    return {
        "name": "ELECTRICITY_PRICE",
        "type": "price",
        "intervals": [{"duration_s": duration_s, "value": price}],
    }


def event_kind(program: Program) -> str:
    """The kind of the events ``program`` holds; a tariff's prices go to its rate components."""
    kind = EVENT_KIND.get(program.kind)
    if kind is None:
        raise Invalid(
            "prices are published on a rate component of the tariff"
            if program.kind == "price"
            else f"a {program.kind} program holds no events"
        )
    return kind


async def check_payload(session: AsyncSession, program: Program, new: NewEvent) -> dict[str, Any]:
    kind = event_kind(program)
    p = dict(new.payload)
    if kind == "der":
        base = rules.check_base(p.get("base") or {})
        if not base:
            raise Invalid("a control needs at least one DERControlBase value")
        await _check_curves(session, program, base)
        return {"base": base}
    if kind == "price":
        tou = p.get("tou_tier", p.get("touTier", 0))
        if isinstance(tou, bool) or not isinstance(tou, int) or not 0 <= tou <= 6:
            raise Invalid("tou_tier must be 0..6")
        tiers = pricing.check_tiers(p.get("tiers"))
        tariff = await session.get(Program, program.parent_id) if program.parent_id else None
        signal = (
            check_signal(p["signal"])
            if "signal" in p
            else price_signal(program, tiers, tariff, new.duration_s)
        )
        return {"touTier": tou, "tiers": tiers, "signal": signal}
    # dr
    out: dict[str, Any] = {}
    if p.get("control") is not None or p.get("device_category") is not None:
        out.update(drlc.dr_payload(p))
    if "signal" in p:
        out["signal"] = check_signal(p["signal"])
    else:
        level = p.get("level", 1)
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
            raise Invalid("level (the OpenADR SIMPLE level) must be 0..3")
        out["signal"] = {
            "name": "SIMPLE",
            "type": "level",
            "intervals": [{"duration_s": new.duration_s, "value": float(level)}],
        }
    for key in ("priority", "comment", "resource_ids", "group_ids"):
        if key in p:
            out[key] = p[key]
    return out


# ---------------------------------------------------------------------------------------------- create/change
async def create(session: AsyncSession, program: Program, new: NewEvent) -> Event:
    """The one way an event comes to exist (staff, the optimizer and every adapter's admin route call it)."""
    kind = event_kind(program)
    response_required = (
        DEFAULT_RESPONSE_REQUIRED[kind] if new.response_required is None else new.response_required
    )
    rules.check_event_header(
        new.start, new.duration_s, new.randomize_start_s, new.randomize_duration_s, response_required
    )
    payload = await check_payload(session, program, new)
    signal = payload.get("signal")
    duration_s = new.duration_s
    if signal is not None and "signal" in new.payload:
        # a signal given with its own intervals sets the event's length
        duration_s = sum(i["duration_s"] for i in signal["intervals"])
    targets = await vens_core.by_names(session, list(dict.fromkeys(new.ven_names)))
    now = utcnow()
    event = Event(
        program_id=program.id,
        kind=kind,
        description=new.description[:32],
        creation_time=now,
        changed_at=now,
        start=new.start,
        duration_s=duration_s,
        end_at=new.start + dt.timedelta(seconds=duration_s),
        randomize_start_s=new.randomize_start_s,
        randomize_duration_s=new.randomize_duration_s,
        response_required=response_required,
        all_vens=new.all_vens,
        test_event=new.test_event,
        payload=payload,
    )
    session.add(event)
    await session.flush()
    for ven in targets:
        session.add(EventTarget(event_id=event.id, ven_pk=ven.id))
    await session.flush()
    await _announce(session, event)
    return event


async def cancel(session: AsyncSession, event: Event, randomized: bool = False) -> bool:
    """Cancel (EventStatus 2, or 3 with randomization); False when it already was."""
    if event.cancelled_at is not None:
        return False
    now = utcnow()
    event.cancelled_at = now
    event.cancel_randomized = randomized
    event.modification_number += 1
    event.modification_reason = "cancelled"
    event.changed_at = now
    await session.flush()
    await _announce(session, event)
    return True


async def modify(
    session: AsyncSession,
    event: Event,
    *,
    start: dt.datetime | None = None,
    intervals: list[dict[str, Any]] | None = None,
    level: float | None = None,
    duration_s: int | None = None,
    priority: int | None = None,
    reason: str = "",
) -> Event:
    """Change a live event's OpenADR signal, start or length (its modificationNumber counts the change)."""
    now = utcnow()
    if event.cancelled_at is not None:
        raise Conflict(f"event {event.id} is cancelled")
    if now >= event.end_at:
        raise Conflict(f"event {event.id} has completed")
    payload = dict(event.payload)
    signal = dict(payload.get("signal") or {})
    if intervals:
        if not signal:
            raise Invalid("this event carries no OpenADR signal to change")
        signal["intervals"] = check_intervals(intervals)
    elif level is not None or duration_s is not None:
        items = [dict(i) for i in signal.get("intervals", [])] or [
            {"duration_s": event.duration_s, "value": 0.0}
        ]
        if level is not None:
            for item in items:
                item["value"] = float(level)
        if duration_s is not None:
            if len(items) != 1 or duration_s <= 0:
                raise Invalid("duration can only be changed on a one-interval event, and must be positive")
            items[0]["duration_s"] = int(duration_s)
        if signal:
            signal["intervals"] = items
    if signal:
        payload["signal"] = signal
        event.duration_s = sum(int(i["duration_s"]) for i in signal["intervals"])
    elif duration_s is not None:
        event.duration_s = duration_s
    if priority is not None:
        if priority < 0:
            raise Invalid("priority must not be negative")
        payload["priority"] = priority
    if start is not None:
        if start.tzinfo is None:
            raise Invalid("start must carry a time zone")
        event.start = start
    event.payload = payload
    event.end_at = event.start + dt.timedelta(seconds=event.duration_s)
    event.modification_number += 1
    event.modification_reason = reason[:200]
    event.changed_at = now
    await session.flush()
    await _announce(session, event)
    return event


async def _announce(session: AsyncSession, event: Event) -> None:
    program = await session.get(Program, event.program_id)
    touched = [event.program_id] + ([program.parent_id] if program and program.parent_id else [])
    changes.record(session, programs=touched, objects={"event": [event.id]})
    if event.kind in ("price", "dr"):
        reached = await target_vens(session, event)
        for ven in reached:
            await vens_core.enqueue(session, ven.id, DISTRIBUTE, dedupe=True)
        if reached:
            changes.wake_after_commit(session)


# ------------------------------------------------------------------------------------------------------- reads
async def get(session: AsyncSession, event_id: int) -> Event:
    event = await session.get(Event, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


def interval_of(e: Event, primacy: int) -> rules.Interval:
    return rules.Interval(
        id=e.id,
        program_id=e.program_id,
        primacy=primacy,
        creation_time=e.creation_time,
        start=e.start,
        duration_s=e.duration_s,
        cancelled=e.cancelled_at is not None,
        cancel_randomized=e.cancel_randomized,
    )


async def relevant(session: AsyncSession, program_ids: list[int], now: dt.datetime) -> list[Event]:
    """The events of these programs that can matter at ``now``: those not completed, and the completed ones that
    overlap one of them (a newer event supersedes an older one it overlaps even after it ended). Completed
    history older than every live event is never loaded, so a device's lists cost what it sees, not its past."""
    if not program_ids:
        return []
    of_programs = Event.program_id.in_(program_ids)
    live = list(await session.scalars(select(Event).where(of_programs, Event.end_at > now)))
    if not live:
        return []
    earliest = min(e.start for e in live)
    ended = await session.scalars(
        select(Event).where(
            of_programs, Event.end_at <= now, Event.end_at > earliest, Event.cancelled_at.is_(None)
        )
    )
    return live + list(ended)


async def device_der_intervals(
    session: AsyncSession, device_id: int, now: dt.datetime
) -> list[rules.Interval]:
    """The DER controls a device sees (every program of its FSAs) that can matter at ``now``, as Intervals."""
    found = {p.id: p for p in await programs.device_programs(session, device_id)}
    return [interval_of(e, found[e.program_id].primacy) for e in await relevant(session, list(found), now)]


async def der_event_of_device(session: AsyncSession, device_id: int, event_id: int) -> Event | None:
    """A DER control of a program the device sees (completed ones too: a device reports completion after)."""
    mine = [p.id for p in await programs.device_programs(session, device_id)]
    event = await session.get(Event, event_id)
    return event if event is not None and event.kind == "der" and event.program_id in mine else None


async def evaluated(
    session: AsyncSession, programs: list[Program], now: dt.datetime
) -> list[tuple[Event, rules.Evaluated]]:
    """Events of ``programs`` (the programs one device sees) with their status at ``now``, in the order 2030.5
    lists events (start, then newest creationTime first), completed ones dropped."""
    primacy = {p.id: p.primacy for p in programs}
    found = await relevant(session, list(primacy), now)
    intervals = {e.id: interval_of(e, primacy[e.program_id]) for e in found}
    everything = list(intervals.values())
    out = []
    for e in sorted(found, key=lambda x: rules.list_order_key(intervals[x.id])):
        ev = rules.evaluate(intervals[e.id], everything, now)
        if not ev.completed:
            out.append((e, ev))
    return out


async def tariff_price_intervals(
    session: AsyncSession, tariff: Program, now: dt.datetime, rates: list[Program] | None = None
) -> list[tuple[Program, Event, rules.Evaluated]]:
    """Every price interval of a tariff's rate components a device sees at ``now``, with its rate component: each
    evaluated among those of its own rate component (exactly as that rate's interval list shows it), together in
    the order 2030.5 lists events (what CSIP-AUS 1.3 serves as a tariff's combined list). ``rates``: the tariff's
    rate components when the caller has them already."""
    if rates is None:
        rates = await programs.list_programs(session, "rate", tariff.id)
    found = [(rate, e, ev) for rate in rates for e, ev in await evaluated(session, [rate], now)]
    return sorted(found, key=lambda x: rules.list_order_key(interval_of(x[1], x[0].primacy)))


def events_query(
    *, program_id: int | None = None, kind: str | None = None, include_completed: bool = False
) -> Select[Event]:
    """Events for staff, newest first."""
    query = select(Event).order_by(Event.id.desc())
    if program_id is not None:
        query = query.where(or_(Event.program_id == program_id, Event.program_id.in_(_children(program_id))))
    if kind is not None:
        query = query.where(Event.kind == kind)
    if not include_completed:
        query = query.where(Event.end_at > utcnow())
    return query


def _children(program_id: int) -> Select[int]:
    return select(Program.id).where(Program.parent_id == program_id)


async def count(session: AsyncSession, kind: str | None = None) -> int:
    query = select(func.count()).select_from(Event)
    if kind is not None:
        query = query.where(Event.kind == kind)
    return int(await session.scalar(query) or 0)


def event_dict(e: Event, program: Program | None = None) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "program_id": e.program_id,
        "program": program.name if program else None,
        "description": e.description,
        "creation_time": e.creation_time.isoformat(),
        "start": e.start.isoformat(),
        "duration_s": e.duration_s,
        "end": e.end_at.isoformat(),
        "randomize_start_s": e.randomize_start_s,
        "randomize_duration_s": e.randomize_duration_s,
        "response_required": e.response_required,
        "payload": e.payload,
        "modification_number": e.modification_number,
        "cancelled_at": e.cancelled_at.isoformat() if e.cancelled_at else None,
        "all_vens": e.all_vens,
    }


def control_dict(e: Event, program: Program | None = None) -> dict[str, Any]:
    """A DER control as the controls routes have always shown it (its DERControlBase at the top level)."""
    return {
        "id": e.id,
        "program_id": e.program_id,
        "program": program.name if program else None,
        "description": e.description,
        "creation_time": e.creation_time.isoformat(),
        "start": e.start.isoformat(),
        "duration_s": e.duration_s,
        "base": e.payload.get("base", {}),
        "randomize_start_s": e.randomize_start_s,
        "randomize_duration_s": e.randomize_duration_s,
        "response_required": e.response_required,
        "cancelled_at": e.cancelled_at.isoformat() if e.cancelled_at else None,
    }


def influence_dict(e: Event) -> dict[str, Any]:
    """A price or DR event as the tariff and DR-program routes have always shown it."""
    payload = {k: v for k, v in e.payload.items() if k != "signal"}
    return {
        "id": e.id,
        "set_id": e.program_id,
        "description": e.description,
        "creation_time": e.creation_time.isoformat(),
        "start": e.start.isoformat(),
        "duration_s": e.duration_s,
        "randomize_start_s": e.randomize_start_s,
        "randomize_duration_s": e.randomize_duration_s,
        "response_required": e.response_required,
        "payload": payload,
        "cancelled_at": e.cancelled_at.isoformat() if e.cancelled_at else None,
    }


# ---------------------------------------------------------------------------------------------- OpenADR reach
def ven_programs(ven_pk: int) -> Select[int]:
    """Programs a VEN is a member of, and the rate components of those that are tariffs."""
    member = select(ProgramMember.program_id).where(ProgramMember.ven_pk == ven_pk)
    return select(Program.id).where(or_(Program.id.in_(member), Program.parent_id.in_(member)))


def visible_to_ven(ven_pk: int) -> ColumnElement[bool]:
    """An event reaches a VEN when it is a price or DR event of a program the VEN is a member of, was aimed at
    it by name, or was sent to every VEN."""
    targeted = exists().where(EventTarget.event_id == Event.id, EventTarget.ven_pk == ven_pk)
    return Event.kind.in_(("price", "dr")) & or_(
        Event.all_vens, targeted, Event.program_id.in_(ven_programs(ven_pk))
    )


async def target_vens(session: AsyncSession, event: Event) -> list[Ven]:
    """Registered, enabled VENs the event goes to."""
    query = select(Ven).where(Ven.registration_id.is_not(None), Ven.enabled)
    if not event.all_vens:
        program = await session.get(Program, event.program_id)
        programs = [event.program_id] + ([program.parent_id] if program and program.parent_id else [])
        members = select(ProgramMember.ven_pk).where(
            ProgramMember.program_id.in_(programs), ProgramMember.ven_pk.is_not(None)
        )
        named = select(EventTarget.ven_pk).where(EventTarget.event_id == event.id)
        query = query.where(or_(Ven.id.in_(members), Ven.id.in_(named)))
    return list(await session.scalars(query.order_by(Ven.id)))


async def events_for_ven(session: AsyncSession, ven_pk: int, now: dt.datetime | None = None) -> list[Event]:
    """The events a VEN must hold now: reaching it and not yet ended (cancelled ones included)."""
    now = now or utcnow()
    query = select(Event).where(Event.end_at > now, visible_to_ven(ven_pk)).order_by(Event.start, Event.id)
    return list(await session.scalars(query))


async def target_names(session: AsyncSession, event_id: int) -> list[str]:
    return list(
        await session.scalars(
            select(Ven.name)
            .join(EventTarget, EventTarget.ven_pk == Ven.id)
            .where(EventTarget.event_id == event_id)
            .order_by(Ven.name)
        )
    )


# -------------------------------------------------------------------------------------------------- responses
# 2030.5 ResponseType values (Table 27); reserved values are refused
VALID_STATUSES = set(range(0, 15)) | {252, 253, 254}
OPT_STATUS = {"optIn": 5, "optOut": 4}


def check_status(status: int) -> int:
    if status not in VALID_STATUSES:
        raise Invalid(f"response status {status} is reserved")
    return status


@dataclass(frozen=True)
class DeviceAnswer:
    """A 2030.5 device's Response (status a ResponseType)."""

    end_device_id: int | None
    lfdi: str
    status: int
    created: dt.datetime
    modes_responded: int | None = None  # 2030.5-2023: the DERControlType modes the device acted on


@dataclass(frozen=True)
class VenAnswer:
    """An OpenADR VEN's eventResponse in oadrCreatedEvent."""

    ven_pk: int
    opt_type: str
    response_code: int
    modification_number: int
    request_id: str = ""


@dataclass(frozen=True)
class ReportAnswer:
    """An OpenADR 3 VEN's report on an event (3.x has no opt responses: a report says the VEN received it)."""

    ven_pk: int
    report_id: int
    status: int = 1  # ResponseType 1: event received


async def record_response(
    session: AsyncSession, event: Event, answer: DeviceAnswer | VenAnswer | ReportAnswer
) -> EventResponse:
    if isinstance(answer, ReportAnswer):
        row = EventResponse(
            event_id=event.id,
            protocol="openadr3",
            ven_pk=answer.ven_pk,
            status=check_status(answer.status),
            request_id=f"report:{answer.report_id}",
            created_date_time=utcnow(),
        )
    elif isinstance(answer, DeviceAnswer):
        row = EventResponse(
            event_id=event.id,
            protocol="2030.5",
            end_device_id=answer.end_device_id,
            lfdi=answer.lfdi,
            status=check_status(answer.status),
            created_date_time=answer.created,
            modes_responded=answer.modes_responded,
        )
    else:
        if answer.opt_type not in OPT_STATUS:
            raise Invalid(f"optType must be optIn or optOut, got {answer.opt_type!r}")
        row = EventResponse(
            event_id=event.id,
            protocol="openadr",
            ven_pk=answer.ven_pk,
            status=OPT_STATUS[answer.opt_type],
            opt_type=answer.opt_type,
            response_code=answer.response_code,
            modification_number=answer.modification_number,
            request_id=answer.request_id[:200],
            created_date_time=utcnow(),
        )
    session.add(row)
    await session.flush()
    return row


def responses_query(
    *,
    event_id: int | None = None,
    end_device_ids: list[int] | Select[Any] | None = None,
    kind: str | None = None,
) -> Select[EventResponse]:
    """Responses, oldest first; of one event, of these EndDevices, or to events of one kind."""
    query = select(EventResponse).order_by(EventResponse.received_at, EventResponse.id)
    if event_id is not None:
        query = query.where(EventResponse.event_id == event_id)
    if end_device_ids is not None:
        query = query.where(EventResponse.end_device_id.in_(end_device_ids))
    if kind is not None:
        query = query.where(EventResponse.event_id.in_(select(Event.id).where(Event.kind == kind)))
    return query


@dataclass
class PartyNames:
    devices: dict[int, str] = field(default_factory=dict)
    vens: dict[int, str] = field(default_factory=dict)


async def party_names(session: AsyncSession, responses: list[EventResponse]) -> PartyNames:
    names = PartyNames()
    device_ids = {r.end_device_id for r in responses if r.end_device_id is not None}
    ven_ids = {r.ven_pk for r in responses if r.ven_pk is not None}
    if device_ids:
        rows = await session.execute(select(EndDevice.id, EndDevice.lfdi).where(EndDevice.id.in_(device_ids)))
        names.devices = {i: lfdi for i, lfdi in rows.all()}
    if ven_ids:
        rows = await session.execute(select(Ven.id, Ven.name).where(Ven.id.in_(ven_ids)))
        names.vens = {i: name for i, name in rows.all()}
    return names


def response_dict(r: EventResponse, names: PartyNames | None = None) -> dict[str, Any]:
    names = names or PartyNames()
    party = (
        {"party": "ven", "ven": names.vens.get(r.ven_pk or 0), "ven_pk": r.ven_pk}
        if r.protocol in ("openadr", "openadr3")
        else {"party": "end_device", "end_device_id": r.end_device_id, "lfdi": r.lfdi}
    )
    return {
        "id": r.id,
        "event_id": r.event_id,
        "protocol": r.protocol,
        **party,
        "status": r.status,
        "opt_type": r.opt_type,
        "response_code": r.response_code,
        "modification_number": r.modification_number,
        "created": r.created_date_time.isoformat(),
        "received_at": r.received_at.isoformat(),
    }


async def responses_of(session: AsyncSession, event_id: int) -> list[dict[str, Any]]:
    found = list(await session.scalars(responses_query(event_id=event_id)))
    names = await party_names(session, found)
    return [response_dict(r, names) for r in found]
