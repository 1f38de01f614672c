"""The protocol-neutral, time-indexed telemetry store: OpenADR report values and (later) 2030.5 meter readings.

Values are stored in SI base units: a multiplier (OpenADR ``siScaleCode`` such as ``k``, 2030.5 power-of-ten
multipliers) is applied on the way in, so "realPower 2 kW" and "realPower 2000 W" are the same row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import changes
from server.store.db import upsert_insert
from server.store.models import TelemetryReading
from server.store.models.telemetry import READING_KEY
from server.store.types import utcnow

# SI prefixes as OpenADR/EMIX siScaleCode spells them
SCALE = {
    "p": 1e-12,
    "n": 1e-9,
    "micro": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "d": 1e-1,
    "none": 1.0,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}
# unit spellings seen on the wire -> one canonical SI spelling
UNITS = {
    "W": "W",
    "w": "W",
    "Wh": "Wh",
    "wh": "Wh",
    "VA": "VA",
    "VAR": "var",
    "var": "var",
    "VARh": "varh",
    "VAh": "VAh",
    "varh": "varh",
    "V": "V",
    "A": "A",
    "Hz": "Hz",
    "hz": "Hz",
    "%": "%",
    "C": "degC",
    "celsius": "degC",
}


# OpenADR's names of quantities (the EMIX power itemBase a VEN's report description names) -> the store's, which
# are 2030.5's (server.core.metering.UOM): a VEN's real power is then the same series as a device's, which M&V,
# forecasts and plans read as ``realPower``; the energy and other names are the same in both already
QUANTITIES = {"powerReal": "realPower", "powerReactive": "reactivePower", "powerApparent": "apparentPower"}


def quantity(name: str) -> str:
    """The store's name of a quantity reported under ``name``."""
    return QUANTITIES.get(name, name)


@dataclass(frozen=True)
class Reading:
    source_kind: str
    source_id: str
    measurement: str
    ts: dt.datetime
    value: float
    unit: str = ""
    resource: str = ""
    reading_type: str = ""
    duration_s: float | None = None


def normalise(value: float, unit: str, scale: str = "none") -> tuple[float, str]:
    """(value in SI base unit, canonical unit). Unknown scales count as 1, unknown units pass through."""
    return value * SCALE.get(scale or "none", 1.0), UNITS.get(unit, unit)


async def add(session: AsyncSession, readings: list[Reading]) -> int:
    """Store readings; one already stored (same source, series, reading type and time) is left as it was.
    Returns how many were new."""
    return len(await add_new(session, readings))


_INSERT_NEW: dict[str, Any] = {}  # per dialect: built once, every post of readings runs it


def _insert_new(session: AsyncSession) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING the key: a Core insert, since the ORM's bulk layer costs more
    than the rows here."""
    backend = session.bind.dialect.name if session.bind is not None else ""
    stmt = _INSERT_NEW.get(backend)
    if stmt is None:
        t = TelemetryReading.__table__.c
        stmt = _INSERT_NEW[backend] = (
            upsert_insert(session, TelemetryReading.__table__)
            .on_conflict_do_nothing(index_elements=list(READING_KEY))
            .returning(t.source_kind, t.source_id, t.resource, t.measurement, t.ts, t.reading_type)
        )
    return stmt


async def add_new(session: AsyncSession, readings: list[Reading]) -> list[Reading]:
    """Store readings in multi-row INSERT .. ON CONFLICT DO NOTHING (report bursts carry many intervals;
    devices re-post after a lost response); returns the readings that were new, in the order given."""
    if not readings:
        return []
    now = utcnow()
    rows = [{**asdict(r), "received_at": now} for r in readings]
    result = await session.execute(_insert_new(session), rows)
    inserted = {tuple(row) for row in result}
    new, seen = [], set()
    for r in readings:
        key = (r.source_kind, r.source_id, r.resource, r.measurement, r.ts, r.reading_type)
        if key in inserted and key not in seen:  # a reading given twice in one call is stored (and new) once
            seen.add(key)
            new.append(r)
    # what shows these values (a 2030.5 ReadingList) changed with them; a reading stored already is no change
    changes.record(session, readings=[(r.source_id, r.resource, r.value) for r in new])
    return new


async def query(
    session: AsyncSession,
    *,
    source_kind: str | None = None,
    source_id: str | None = None,
    resource: str | None = None,
    measurement: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    q = select(TelemetryReading)
    for column, value in (
        (TelemetryReading.source_kind, source_kind),
        (TelemetryReading.source_id, source_id),
        (TelemetryReading.resource, resource),
        (TelemetryReading.measurement, measurement),
    ):
        if value is not None:
            q = q.where(column == value)
    if since is not None:
        q = q.where(TelemetryReading.ts >= since)
    if until is not None:
        q = q.where(TelemetryReading.ts < until)
    q = q.order_by(TelemetryReading.ts.desc(), TelemetryReading.id.desc()).limit(max(1, min(limit, 100_000)))
    return [
        {
            "source_kind": r.source_kind,
            "source_id": r.source_id,
            "resource": r.resource,
            "measurement": r.measurement,
            "reading_type": r.reading_type,
            "unit": r.unit,
            "ts": r.ts.isoformat(),
            "value": r.value,
            "duration_s": r.duration_s,
        }
        for r in await session.scalars(q)
    ]


async def newest_values(
    session: AsyncSession, source_kind: str, source_ids: list[str], measurement: str
) -> dict[str, float]:
    """The newest value of one measurement per source (e.g. ``ratedPower`` nameplates); sources without one are
    left out."""
    t = TelemetryReading
    newest = (
        select(t.source_id, func.max(t.ts).label("ts"))
        .where(t.source_kind == source_kind, t.source_id.in_(source_ids), t.measurement == measurement)
        .group_by(t.source_id)
        .subquery()
    )
    rows = await session.execute(
        select(t.source_id, t.value)
        .join(newest, (t.source_id == newest.c.source_id) & (t.ts == newest.c.ts))
        .where(t.source_kind == source_kind, t.measurement == measurement)
        .order_by(t.id)
    )
    return {sid: value for sid, value in rows}
