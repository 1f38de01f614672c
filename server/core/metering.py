"""2030.5 meter readings as protocol-neutral telemetry: ReadingType (uom, power of ten, kind, flow direction,
phase) -> SI unit and quantity name, the plausibility checks a reading must pass, and "latest per series".

Every reading a device mirrors lands in the ``telemetry`` table as source_kind ``device``, source_id the device
LFDI, resource the MirrorMeterReading mRID, measurement the quantity (realPower, voltage, ...), value in SI.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import Invalid
from server.store.models import TelemetryReading

# 2030.5 UomType -> (SI unit, quantity name, may the value be negative?)
UOM: dict[int, tuple[str, str, bool]] = {
    0: ("", "value", True),
    5: ("A", "current", True),
    6: ("K", "temperature", False),
    23: ("degC", "temperature", True),
    29: ("V", "voltage", False),
    31: ("J", "energy", True),
    33: ("Hz", "frequency", False),
    38: ("W", "realPower", True),
    42: ("m3", "volume", False),
    61: ("VA", "apparentPower", False),
    63: ("var", "reactivePower", True),
    65: ("cos", "powerFactor", True),
    67: ("V2", "voltageSquared", False),
    69: ("A2", "currentSquared", False),
    71: ("VAh", "energyApparent", True),
    72: ("Wh", "energyReal", True),
    73: ("varh", "energyReactive", True),
    106: ("Ah", "charge", True),
}
# plausibility bounds on the SI value: anything beyond is a unit/multiplier mistake, not a measurement
BOUNDS: dict[str, float] = {"voltage": 1e6, "frequency": 1e3, "powerFactor": 1.0, "temperature": 1e4}
MAX_MAGNITUDE = 1e15  # 1 PW / 1 PWh: no single device meter reads more
OLDEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FUTURE_SLACK = dt.timedelta(days=1)


@dataclass(frozen=True)
class ReadingType:
    uom: int
    power_of_ten: int = 0
    kind: int | None = None
    flow_direction: int | None = None
    phase: int | None = None
    data_qualifier: int | None = None
    accumulation: int | None = None
    interval_s: int | None = None

    @property
    def unit(self) -> str:
        return UOM.get(self.uom, (f"uom{self.uom}", "", True))[0]

    @property
    def measurement(self) -> str:
        return UOM.get(self.uom, ("", f"uom{self.uom}", True))[1]

    @property
    def label(self) -> str:
        """A compact reading-type tag for the telemetry row (qualifier/flow/phase/accumulation)."""
        parts = [
            f"q{self.data_qualifier}" if self.data_qualifier is not None else "",
            f"f{self.flow_direction}" if self.flow_direction is not None else "",
            f"p{self.phase}" if self.phase is not None else "",
            f"a{self.accumulation}" if self.accumulation is not None else "",
        ]
        return "/".join(p for p in parts if p)[:32]

    def si(self, value: int, reading_power: int | None = None) -> float:
        """The SI value of a raw reading (the Reading's own multiplier, if any, overrides the type's)."""
        exp = self.power_of_ten if reading_power is None else reading_power
        return float(value) * 10.0**exp

    def check(self, si_value: float, ts: dt.datetime, now: dt.datetime, where: str) -> None:
        if self.uom not in UOM:
            raise Invalid(f"{where}: unsupported uom {self.uom}")
        if not math.isfinite(si_value) or abs(si_value) > MAX_MAGNITUDE:
            raise Invalid(f"{where}: value {si_value} {self.unit} is not a plausible measurement")
        _, name, signed = UOM[self.uom]
        if not signed and si_value < 0:
            raise Invalid(f"{where}: {name} cannot be negative ({si_value} {self.unit})")
        bound = BOUNDS.get(name)
        if bound is not None and abs(si_value) > bound:
            raise Invalid(f"{where}: {name} {si_value} {self.unit} is outside the plausible range")
        if ts < OLDEST or ts > now + FUTURE_SLACK:
            raise Invalid(f"{where}: reading time {ts.isoformat()} is implausible")


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last instant a datetime holds


def from_epoch(value: int, what: str = "time") -> dt.datetime:
    """A 2030.5 TimeType (seconds since 1970, Int64 on the wire) as a UTC datetime; out of range -> Invalid."""
    if not 0 <= value <= MAX_EPOCH:
        raise Invalid(f"{what} {value} is outside 1970..9999")
    return dt.datetime.fromtimestamp(value, dt.UTC)


async def latest(session: AsyncSession, lfdi: str) -> list[dict[str, Any]]:
    """The newest reading of every series (resource, measurement, reading type) of one device."""
    t = TelemetryReading
    newest = (
        select(t.resource, t.measurement, t.reading_type, func.max(t.ts).label("ts"))
        .where(t.source_kind == "device", t.source_id == lfdi)
        .group_by(t.resource, t.measurement, t.reading_type)
        .subquery()
    )
    rows = await session.scalars(
        select(t)
        .join(
            newest,
            and_(
                t.resource == newest.c.resource,
                t.measurement == newest.c.measurement,
                t.reading_type == newest.c.reading_type,
                t.ts == newest.c.ts,
            ),
        )
        .where(t.source_kind == "device", t.source_id == lfdi)
        .order_by(t.resource, t.measurement, t.id.desc())
    )
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in rows:
        key = (r.resource, r.measurement, r.reading_type)
        if key in seen:  # two rows at the same newest instant: keep the last received
            continue
        seen.add(key)
        out.append(
            {
                "resource": r.resource,
                "measurement": r.measurement,
                "reading_type": r.reading_type,
                "unit": r.unit,
                "ts": r.ts.isoformat(),
                "value": r.value,
                "duration_s": r.duration_s,
            }
        )
    return out
