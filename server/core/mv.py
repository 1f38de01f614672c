"""Measurement and verification: what an event delivered, per resource, per grid node and per program.

For every resource an event reached (a 2030.5 device, an OpenADR VEN or one of its resources, a Modbus asset
given by the caller) the baseline is the 10-of-10 customer baseline with a same-day adjustment
(``docs/mv.md`` describes the method and its choices exactly):

* the 10 most recent similar days before the event day (weekday with weekday, weekend with weekend, in the
  resource's local time zone) within ``lookback_days`` that had no event reaching the resource and full data in
  the event window and the adjustment window;
* per interval, the mean of those days' values at the same local clock time;
* a same-day adjustment from the adjustment window (the hours before the event, the last hour excluded):
  multiplicative (the ratio of measured to baseline, within ``1 ± cap``) or additive (the difference, within
  ``± cap`` times the window's mean baseline).

Telemetry ``realPower`` is net import in W (export is negative). Delivered response is ``baseline - measured`` for
a load reduction and ``measured - baseline`` for a generation (export) reduction, so both read positive when the
resource did what it was asked. A value that is not there is ``None`` with a flag, never zero.

The baseline arithmetic (``interval_means``, ``compute``) is pure; ``event_mv`` reads the store.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.choices import MV_ADJUSTMENTS
from server.core import events, programs
from server.core.errors import Invalid
from server.store.db import LONG_READ
from server.store.models import (
    EndDevice,
    Event,
    EventTarget,
    GridNode,
    GridNodeMember,
    Program,
    ProgramMember,
    TelemetryReading,
    Ven,
)

ADJUSTMENTS = MV_ADJUSTMENTS
DIRECTIONS = ("load", "generation")
# the columns of the settlement CSV, in order; never reordered or renamed, only added to at the end
CSV_COLUMNS = (
    "event_id",
    "program",
    "level",
    "resource",
    "node",
    "interval_start",
    "interval_end",
    "baseline_kw",
    "measured_kw",
    "delivered_kw",
    "method",
    "days_used",
    "adjustment_factor",
    "data_quality",
)
# DERControlBase fields that limit what a site exports or generates: their events are generation reductions
GENERATION_MODES = ("opModExpLimW", "opModGenLimW", "opModMaxLimW")


@dataclass(frozen=True)
class Method:
    """How the baseline is built. The defaults are the ones ``docs/mv.md`` documents."""

    days: int = 10
    lookback_days: int = 45
    adjustment: str = "multiplicative"
    cap: float = 0.2  # multiplicative: factor in [1 - cap, 1 + cap]; additive: |offset| <= cap * window mean
    adjustment_hours: float = 3.0  # length of the adjustment window ...
    adjustment_gap_hours: float = 1.0  # ... which ends this long before the event starts
    step_s: int = 900

    def check(self) -> Method:
        if self.adjustment not in ADJUSTMENTS:
            raise Invalid(f"adjustment must be one of {', '.join(ADJUSTMENTS)}")
        if not 1 <= self.days <= 30:
            raise Invalid("days must be 1..30")
        if not self.days <= self.lookback_days <= 366:
            raise Invalid("lookback_days must be at least days and at most 366")
        if not 0 <= self.cap <= 1:
            raise Invalid("cap must be 0..1")
        if not 0 < self.adjustment_hours <= 12 or not 0 <= self.adjustment_gap_hours <= 12:
            raise Invalid("adjustment window must be 0..12 hours long and end 0..12 hours before the event")
        if not 60 <= self.step_s <= 3600 or 86_400 % self.step_s:
            raise Invalid("step must be 1 to 60 minutes and divide a day")
        return self

    def label(self) -> str:
        adj = (
            "no adjustment" if self.adjustment == "none" else f"{self.adjustment} adjustment cap {self.cap:g}"
        )
        return f"{self.days}-of-{self.days} {adj}"


@dataclass
class Interval:
    start: dt.datetime
    end: dt.datetime
    baseline_w: float | None
    measured_w: float | None
    delivered_w: float | None
    flags: list[str] = field(default_factory=list)


@dataclass
class ResourceResult:
    """The M&V of one resource for one event window."""

    resource: str  # "device:LFDI", "ven:VENID", "ven:VENID/RESOURCE", "modbus:NAME"
    node: str | None
    days_used: list[dt.date]
    adjustment_factor: (
        float | None
    )  # multiplicative: the factor; additive: the offset in W; None: none applied
    intervals: list[Interval]
    flags: list[str] = field(default_factory=list)


def is_weekend(day: dt.date) -> bool:
    return day.weekday() >= 5


def interval_means(samples: Iterable[tuple[dt.datetime, float]], step_s: int) -> dict[dt.datetime, float]:
    """Readings (UTC instants, W) -> the mean per interval, keyed by the interval's UTC start. Non-finite
    values are dropped (they are not measurements)."""
    sums: dict[int, list[float]] = {}
    for ts, value in samples:
        if value is None or not math.isfinite(value):
            continue
        key = int(ts.timestamp()) // step_s * step_s
        acc = sums.setdefault(key, [0.0, 0.0])
        acc[0] += value
        acc[1] += 1
    return {dt.datetime.fromtimestamp(k, dt.UTC): s / n for k, (s, n) in sums.items()}


def _slots(start: dt.datetime, end: dt.datetime, step_s: int) -> list[dt.datetime]:
    first = int(start.timestamp()) // step_s * step_s
    out, t = [], first
    while t < end.timestamp():
        out.append(dt.datetime.fromtimestamp(t, dt.UTC))
        t += step_s
    return out


def _on_day(instant: dt.datetime, day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The instant at the same local clock time as ``instant`` on ``day`` (DST keeps the wall clock)."""
    local = instant.astimezone(tz)
    shifted = dt.datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=tz)
    return shifted.astimezone(dt.UTC)


def compute(
    series: Mapping[dt.datetime, float],
    start: dt.datetime,
    end: dt.datetime,
    *,
    tz: str = "UTC",
    excluded_days: Iterable[dt.date] = (),
    direction: str = "load",
    method: Method = Method(),
) -> tuple[list[dt.date], float | None, list[Interval], list[str]]:
    """The baseline, measurement and delivered response of one resource for ``[start, end)``.

    ``series`` maps interval starts (UTC, aligned to ``method.step_s``) to mean net import in W; ``excluded_days``
    are the local dates on which some event reached the resource. Returns (days used, adjustment factor or
    offset, intervals, resource flags)."""
    if direction not in DIRECTIONS:
        raise Invalid(f"direction must be one of {', '.join(DIRECTIONS)}")
    zone = ZoneInfo(tz)
    step = method.step_s
    slots = _slots(start, end, step)
    adj_end = start - dt.timedelta(hours=method.adjustment_gap_hours)
    adj_slots = (
        _slots(adj_end - dt.timedelta(hours=method.adjustment_hours), adj_end, step)
        if method.adjustment != "none"
        else []
    )
    event_day = start.astimezone(zone).date()
    excluded = set(excluded_days) | {event_day}
    flags: list[str] = []

    def aligned(instant: dt.datetime, day: dt.date) -> dt.datetime:
        return dt.datetime.fromtimestamp(int(_on_day(instant, day, zone).timestamp()) // step * step, dt.UTC)

    # the most recent similar days first; a day that lacks any needed interval is not a similar day
    days: list[dt.date] = []
    skipped_missing = 0
    for back in range(1, method.lookback_days + 1):
        day = event_day - dt.timedelta(days=back)
        if is_weekend(day) != is_weekend(event_day) or day in excluded:
            continue
        present = [aligned(s, day) in series for s in (*adj_slots, *slots)]
        if all(present):
            days.append(day)
            if len(days) == method.days:
                break
        elif any(present):  # a day with no data at all (before the history starts) is simply not there
            skipped_missing += 1
    if skipped_missing:
        flags.append(f"days_skipped_missing_data:{skipped_missing}")
    if not days:
        flags.append("no_baseline_days")
    elif len(days) < method.days:
        flags.append(f"fewer_days:{len(days)}")

    def raw_baseline(slot: dt.datetime) -> float | None:
        if not days:
            return None
        return sum(series[aligned(slot, d)] for d in days) / len(days)

    factor: float | None = None
    if method.adjustment != "none" and days:
        measured_adj = [series.get(s) for s in adj_slots]
        base_adj = [raw_baseline(s) for s in adj_slots]
        if any(v is None for v in measured_adj):
            flags.append("adjustment_window_missing_data")
        else:
            m = sum(v for v in measured_adj if v is not None) / len(adj_slots)
            b = sum(v for v in base_adj if v is not None) / len(adj_slots)
            if method.adjustment == "multiplicative":
                if b == 0:
                    flags.append("adjustment_undefined_zero_baseline")
                else:
                    # both negative (an exporting site) gives a positive ratio too; opposite signs are capped
                    raw = m / b
                    factor = min(max(raw, 1 - method.cap), 1 + method.cap)
                    if factor != raw:
                        flags.append(f"adjustment_capped:{raw:.4f}")
            else:
                raw = m - b
                limit = method.cap * abs(b)
                factor = min(max(raw, -limit), limit)
                if factor != raw:
                    flags.append(f"adjustment_capped:{raw:.4f}")

    sign = 1.0 if direction == "load" else -1.0
    intervals: list[Interval] = []
    for slot in slots:
        i_flags: list[str] = []
        base = raw_baseline(slot)
        if base is not None and factor is not None:
            base = base * factor if method.adjustment == "multiplicative" else base + factor
        if base is None:
            i_flags.append("no_baseline")
        measured = series.get(slot)
        if measured is None:
            i_flags.append("missing_measurement")
        delivered = sign * (base - measured) if base is not None and measured is not None else None
        intervals.append(
            Interval(
                start=max(slot, start),
                end=min(slot + dt.timedelta(seconds=step), end),
                baseline_w=base,
                measured_w=measured,
                delivered_w=delivered,
                flags=i_flags,
            )
        )
    return days, factor, intervals, flags


def aggregate(results: list[ResourceResult]) -> list[Interval]:
    """Sum resources interval by interval. An interval where any resource lacks a value has no total (``None``)
    and says how many were missing: a total of the others would understate the response."""
    if not results:
        return []
    out = []
    n = len(results)
    for i, first in enumerate(results[0].intervals):
        column = [r.intervals[i] for r in results]
        flags = []
        sums: dict[str, float | None] = {}
        for name in ("baseline_w", "measured_w", "delivered_w"):
            values = [getattr(iv, name) for iv in column]
            missing = sum(v is None for v in values)
            sums[name] = None if missing else sum(v for v in values if v is not None)
            if missing:
                flags.append(f"{name.removesuffix('_w')}_missing:{missing}/{n}")
        out.append(
            Interval(
                first.start, first.end, sums["baseline_w"], sums["measured_w"], sums["delivered_w"], flags
            )
        )
    return out


def direction_of(event: Event) -> str:
    """Whether an event asks for less load or less generation (export)."""
    if event.kind == "der":
        base = event.payload.get("base") or {}
        if any(name in base for name in GENERATION_MODES):
            return "generation"
        return "load"
    signal = event.payload.get("signal") or {}
    if signal.get("name") != "LOAD_DISPATCH":
        return "load"
    values = [float(i.get("value", 0)) for i in signal.get("intervals") or []]
    if signal.get("type") == "delta":
        # a change of net import (the plan's and the flexibility offers' form): lowering it is a load reduction;
        # raising it (taking up export) reads positive as measured - baseline, as a generation reduction does
        return "generation" if any(v > 0 for v in values) and not any(v < 0 for v in values) else "load"
    if any(v < 0 for v in values):
        return "generation"  # a negative LOAD_DISPATCH setpoint is an export limit (server.core.dispatch)
    return "load"


# ------------------------------------------------------------------------------------------------ store reads
@dataclass(frozen=True)
class Resource:
    source_kind: str  # device | ven | modbus
    source_id: str
    resource: str | None = None  # a VEN's resourceID; None: the whole source (every resource of a VEN summed)

    @property
    def label(self) -> str:
        tail = f"/{self.resource}" if self.resource else ""
        return f"{self.source_kind}:{self.source_id}{tail}"


async def _series(
    session: AsyncSession, r: Resource, since: dt.datetime, until: dt.datetime, step_s: int, measurement: str
) -> dict[dt.datetime, float]:
    t = TelemetryReading
    q = select(t.resource, t.ts, t.value).where(
        t.source_kind == r.source_kind,
        t.source_id == r.source_id,
        t.measurement == measurement,
        t.ts >= since,
        t.ts < until,
    )
    if r.resource is not None:
        q = q.where(t.resource == r.resource)
    rows = list(await session.execute(q.execution_options(**LONG_READ)))
    by_resource: dict[str, list[tuple[dt.datetime, float]]] = {}
    for res, ts, value in rows:
        by_resource.setdefault(res, []).append((ts, value))
    if len(by_resource) <= 1:
        return interval_means(next(iter(by_resource.values()), []), step_s)
    # a VEN measured per resource: its total is known only where every resource reported
    means = [interval_means(samples, step_s) for samples in by_resource.values()]
    common = set(means[0]).intersection(*means[1:])
    return {k: sum(m[k] for m in means) for k in common}


async def _reached(session: AsyncSession, event: Event) -> list[Resource]:
    """The resources an event reached: 2030.5 devices seeing its program, and its OpenADR VENs (each resource
    it reports separately, or the VEN as a whole)."""
    out: list[Resource] = []
    device_ids: list[int] = []
    if event.kind == "der":
        device_ids = await programs.program_device_ids(session, event.program_id)
    else:
        program = await session.get(Program, event.program_id)
        ids = [event.program_id] + ([program.parent_id] if program and program.parent_id else [])
        for pid in ids:
            device_ids += await programs.member_device_ids(session, pid)
    if device_ids:
        lfdis = await session.scalars(
            select(EndDevice.lfdi).where(EndDevice.id.in_(device_ids)).order_by(EndDevice.lfdi)
        )
        out += [Resource("device", lfdi) for lfdi in lfdis]
    for ven in await _aimed_vens(session, event):
        names = list(
            await session.scalars(
                select(TelemetryReading.resource)
                .where(TelemetryReading.source_kind == "ven", TelemetryReading.source_id == ven.ven_id)
                .distinct()
            )
        )
        wanted = set(event.payload.get("resource_ids") or [])
        names = sorted(n for n in names if n and (not wanted or n in wanted))
        out += [Resource("ven", ven.ven_id, n) for n in names] or [Resource("ven", ven.ven_id)]
    return out


async def _aimed_vens(session: AsyncSession, event: Event) -> list[Ven]:
    """The VENs an event was aimed at (program members, named targets, or all): registered or not, since what
    they were asked to do is what is measured."""
    if event.kind not in ("price", "dr"):
        return []
    query = select(Ven).where(Ven.enabled)
    if not event.all_vens:
        program = await session.get(Program, event.program_id)
        ids = [event.program_id] + ([program.parent_id] if program and program.parent_id else [])
        members = select(ProgramMember.ven_pk).where(
            ProgramMember.program_id.in_(ids), ProgramMember.ven_pk.is_not(None)
        )
        named = select(EventTarget.ven_pk).where(EventTarget.event_id == event.id)
        query = query.where(or_(Ven.id.in_(members), Ven.id.in_(named)))
    return list(await session.scalars(query.order_by(Ven.id)))


async def _event_days(
    session: AsyncSession, r: Resource, since: dt.datetime, until: dt.datetime, zone: ZoneInfo
) -> set[dt.date]:
    """Local dates on which an event (any program, not cancelled) reached the resource."""
    program_ids: list[int] = []
    ven_filter = None
    if r.source_kind == "device":
        device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == r.source_id))
        if device is not None:
            program_ids = [p.id for p in await programs.device_programs(session, device.id)]
            for kind in ("price", "dr"):
                for p in await programs.device_member_programs(session, device.id, kind):
                    program_ids.append(p.id)
    elif r.source_kind == "ven":
        ven = await session.scalar(select(Ven).where(Ven.ven_id == r.source_id))
        if ven is not None:
            ven_filter = events.visible_to_ven(ven.id)
    conditions: list[ColumnElement[bool]] = []
    if program_ids:
        conditions.append(Event.program_id.in_(program_ids))
    if ven_filter is not None:
        conditions.append(ven_filter)
    if not conditions:
        return set()
    found = await session.execute(
        select(Event.start, Event.end_at).where(
            or_(*conditions), Event.cancelled_at.is_(None), Event.end_at > since, Event.start < until
        )
    )
    days: set[dt.date] = set()
    for start, end in found:
        day, last = start.astimezone(zone).date(), (end - dt.timedelta(seconds=1)).astimezone(zone).date()
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    return days


async def _nodes(session: AsyncSession, resources: list[Resource]) -> dict[tuple[str, str], GridNode]:
    rows = await session.execute(
        select(GridNodeMember.source_kind, GridNodeMember.source_id, GridNode).join(
            GridNode, GridNode.id == GridNodeMember.node_id
        )
    )
    wanted = {(r.source_kind, r.source_id) for r in resources}
    return {(kind, sid): node for kind, sid, node in rows if (kind, sid) in wanted}


async def measure(
    session: AsyncSession,
    resources: list[Resource],
    start: dt.datetime,
    end: dt.datetime,
    *,
    direction: str = "load",
    method: Method = Method(),
    measurement: str = "realPower",
) -> list[ResourceResult]:
    """M&V of the given resources over ``[start, end)`` (an event's, or a Modbus write's window)."""
    method.check()
    nodes = await _nodes(session, resources)
    since = start - dt.timedelta(days=method.lookback_days + 1)
    out = []
    for r in resources:
        node = nodes.get((r.source_kind, r.source_id))
        tz = node.timezone if node is not None else "UTC"
        series = await _series(session, r, since, end, method.step_s, measurement)
        excluded = await _event_days(session, r, since, start, ZoneInfo(tz))
        days, factor, intervals, flags = compute(
            series, start, end, tz=tz, excluded_days=excluded, direction=direction, method=method
        )
        out.append(ResourceResult(r.label, node.name if node else None, days, factor, intervals, flags))
    return out


async def event_mv(session: AsyncSession, event_id: int, method: Method = Method()) -> dict[str, Any]:
    """The M&V report of one event: every resource it reached, totals per grid node and for the program."""
    event = await events.get(session, event_id)
    program = await session.get(Program, event.program_id)
    direction = direction_of(event)
    resources = await _reached(session, event)
    results = await measure(session, resources, event.start, event.end_at, direction=direction, method=method)
    by_node: dict[str, list[ResourceResult]] = {}
    for r in results:
        by_node.setdefault(r.node or "", []).append(r)
    return {
        "event_id": event.id,
        "program": program.name if program else None,
        "kind": event.kind,
        "direction": direction,
        "start": event.start.isoformat(),
        "end": event.end_at.isoformat(),
        "cancelled": event.cancelled_at is not None,
        "method": method.label(),
        "unit": "kW",
        "resources": [_resource_dict(r) for r in results],
        "nodes": [
            {
                "node": name or None,
                "resources": len(rs),
                "intervals": [_interval_dict(i) for i in aggregate(rs)],
            }
            for name, rs in sorted(by_node.items())
        ],
        "program_total": [_interval_dict(i) for i in aggregate(results)],
    }


def _kw(w: float | None) -> float | None:
    return None if w is None else round(w / 1000.0, 4)


def _interval_dict(i: Interval) -> dict[str, Any]:
    return {
        "start": i.start.isoformat(),
        "end": i.end.isoformat(),
        "baseline_kw": _kw(i.baseline_w),
        "measured_kw": _kw(i.measured_w),
        "delivered_kw": _kw(i.delivered_w),
        "flags": i.flags,
    }


def _resource_dict(r: ResourceResult) -> dict[str, Any]:
    return {
        "resource": r.resource,
        "node": r.node,
        "days_used": [d.isoformat() for d in r.days_used],
        "adjustment_factor": r.adjustment_factor,
        "flags": r.flags,
        "intervals": [_interval_dict(i) for i in r.intervals],
    }


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The settlement rows of a report (``CSV_COLUMNS``): one per resource and interval, then the node and
    program totals (``level`` says which)."""
    rows: list[dict[str, Any]] = []

    def add(level: str, resource: str, node: str | None, i: dict, days: str, factor: Any, flags: list[str]):
        rows.append(
            {
                "event_id": report["event_id"],
                "program": report["program"] or "",
                "level": level,
                "resource": resource,
                "node": node or "",
                "interval_start": i["start"],
                "interval_end": i["end"],
                "baseline_kw": "" if i["baseline_kw"] is None else i["baseline_kw"],
                "measured_kw": "" if i["measured_kw"] is None else i["measured_kw"],
                "delivered_kw": "" if i["delivered_kw"] is None else i["delivered_kw"],
                "method": report["method"],
                "days_used": days,
                "adjustment_factor": "" if factor is None else round(factor, 6),
                "data_quality": ";".join(flags + i["flags"]) or "ok",
            }
        )

    for r in report["resources"]:
        days = " ".join(r["days_used"])
        for i in r["intervals"]:
            add("resource", r["resource"], r["node"], i, days, r["adjustment_factor"], r["flags"])
    for n in report["nodes"]:
        for i in n["intervals"]:
            add("node", "", n["node"], i, "", None, [])
    for i in report["program_total"]:
        add("program", "", None, i, "", None, [])
    return rows


def csv_text(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buf.getvalue()
