"""DER control events, protocol-neutral: event status from time, supersession within a program, primacy across
programs, randomization, cancellation, and the power-of-ten encoding 2030.5 uses for watts.

The rules (IEEE 2030.5-2018 §10.10 / 12.1.3, CSIP §5.2):

* EventStatus ``0`` scheduled (start in the future), ``1`` active (now within [start, start+duration)),
  ``2`` cancelled, ``3`` cancelled with randomization, ``4`` superseded.
* Within one program, an event is superseded by an overlapping event created later (creationTime; the higher id
  breaks ties). Superseded and cancelled events stay visible with their status until their interval ends; events
  are never silently deleted.
* Across programs the device applies the lower primacy value; the server flags an event ``potentiallySuperseded``
  when an event of another program assigned to the same device overlaps it.
* Events whose interval has ended are "completed" and drop out of the lists the device polls.

Nothing here knows about XML or HTTP, so the DRLC/OpenADR adapters can reuse it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from server.core.errors import Invalid


class EventStatus(IntEnum):
    SCHEDULED = 0
    ACTIVE = 1
    CANCELLED = 2
    CANCELLED_RANDOM = 3
    SUPERSEDED = 4


# DERControlBase fields staff may set; the value kinds decide how each is checked and rendered.
# opModStorageTargetW: the CSIP-AUS 1.3 storage target (aggregate output of the storage, W; negative charges)
WATT_FIELDS = (
    "opModExpLimW",
    "opModImpLimW",
    "opModGenLimW",
    "opModLoadLimW",
    "opModTargetW",
    "opModStorageTargetW",
)
BOOL_FIELDS = ("opModConnect", "opModEnergize")
PERCENT_FIELDS = ("opModFixedW", "opModMaxLimW")  # hundredths of a percent (opModMaxLimW: of setMaxW)
INT_FIELDS = ("rampTms",)
VAR_FIELDS = ("opModTargetVar",)
CURVE_FIELDS = (
    "opModFreqWatt",
    "opModHFRTMayTrip",
    "opModHFRTMustTrip",
    "opModHVRTMayTrip",
    "opModHVRTMomentaryCessation",
    "opModHVRTMustTrip",
    "opModLFRTMayTrip",
    "opModLFRTMustTrip",
    "opModLVRTMayTrip",
    "opModLVRTMomentaryCessation",
    "opModLVRTMustTrip",
    "opModVoltVar",
    "opModVoltWatt",
    "opModWattPF",
    "opModWattVar",
)
BASE_FIELDS = WATT_FIELDS + BOOL_FIELDS + PERCENT_FIELDS + INT_FIELDS + VAR_FIELDS + CURVE_FIELDS


def check_event_header(
    start: dt.datetime,
    duration_s: int,
    randomize_start_s: int | None,
    randomize_duration_s: int | None,
    response_required: int,
) -> None:
    """The fields every 2030.5 event shares (DERControl, TimeTariffInterval, EndDeviceControl), checked once."""
    if start.tzinfo is None:
        raise Invalid("start must carry a time zone")
    if not 0 < duration_s <= 2**32 - 1:
        raise Invalid("duration must be 1..4294967295 seconds")
    # randomizeStart/Duration are OneHourRangeType: -3600..3600 s
    for name, value in (("randomizeStart", randomize_start_s), ("randomizeDuration", randomize_duration_s)):
        if value is not None and not -3600 <= value <= 3600:
            raise Invalid(f"{name} must be within one hour (-3600..3600 s)")
    if not 0 <= response_required <= 255:
        raise Invalid("responseRequired must be 0..255")


def check_base(base: dict[str, Any]) -> dict[str, Any]:
    """Validate a DERControlBase dict (values in W, %·100, s·100, curve ids) and return a clean copy."""
    clean: dict[str, Any] = {}
    for key, value in base.items():
        if value is None:
            continue
        if key not in BASE_FIELDS:
            raise Invalid(f"unknown DERControlBase field {key!r}")
        if key in BOOL_FIELDS:
            if not isinstance(value, bool):
                raise Invalid(f"{key} must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{key} must be a number")
        elif key in WATT_FIELDS + VAR_FIELDS:
            if not math.isfinite(value) or abs(value) > 32767 * 10**9:
                raise Invalid(f"{key} out of range")
            encode_power(value)  # raises when it cannot be represented
        elif key in PERCENT_FIELDS:
            # opModFixedW is a SignedPerCent, opModMaxLimW a PerCent (unsigned)
            low = 0 if key == "opModMaxLimW" else -10000
            if not low <= value <= 10000 or value != int(value):
                raise Invalid(f"{key} is hundredths of a percent: an integer in {low}..10000")
            value = int(value)
        elif key in INT_FIELDS + CURVE_FIELDS:
            if value != int(value) or not 0 <= value <= 65535:
                raise Invalid(f"{key} must be an integer 0..65535")
            value = int(value)
        clean[key] = value
    return clean


def encode_power(watts: float) -> tuple[int, int]:
    """(value, multiplier) with value an Int16 and value * 10**multiplier == watts when that is possible.

    Fractions are kept down to milliwatts (multiplier -3). A value that is exact at no multiplier that fits Int16
    (e.g. 32768 W) is rounded at the finest multiplier that fits (3277 x 10^1)."""
    for mult in range(-3, 10):
        scaled = watts / 10**mult if mult >= 0 else watts * 10**-mult
        rounded = round(scaled)
        if abs(scaled - rounded) < 1e-9 * max(1.0, abs(scaled)) and -32768 <= rounded <= 32767:
            # prefer the largest value (smallest multiplier) that represents it exactly
            if mult < 0 and rounded % 10 == 0:
                continue
            return int(rounded), mult
    # not exact at any precision that fits: round at the finest multiplier that fits Int16
    for mult in range(0, 10):
        rounded = round(watts / 10**mult)
        if -32768 <= rounded <= 32767:
            return int(rounded), mult
    raise Invalid(f"{watts} W cannot be represented as an Int16 value with a power-of-ten multiplier")


def decode_power(value: int, multiplier: int) -> float:
    return value * 10.0**multiplier


@dataclass(frozen=True)
class Interval:
    id: int
    program_id: int
    primacy: int
    creation_time: dt.datetime
    start: dt.datetime
    duration_s: int
    cancelled: bool
    cancel_randomized: bool = False
    # computed once: the event rules compare every event with every other one the device sees
    end: dt.datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "end", self.start + dt.timedelta(seconds=self.duration_s))

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def newer_than(self, other: Interval) -> bool:
        return (self.creation_time, self.id) > (other.creation_time, other.id)


@dataclass(frozen=True)
class Evaluated:
    status: EventStatus
    potentially_superseded: bool
    completed: bool


def evaluate(event: Interval, others: list[Interval], now: dt.datetime) -> Evaluated:
    """Status of ``event`` at ``now`` given the other events the same device sees (any program)."""
    completed = now >= event.end
    if event.cancelled:
        status = EventStatus.CANCELLED_RANDOM if event.cancel_randomized else EventStatus.CANCELLED
        return Evaluated(status, False, completed)
    live = [o for o in others if o.id != event.id and not o.cancelled and o.overlaps(event)]
    if any(o.program_id == event.program_id and o.newer_than(event) for o in live):
        return Evaluated(EventStatus.SUPERSEDED, False, completed)
    potentially = any(o.program_id != event.program_id for o in live)
    status = EventStatus.ACTIVE if event.start <= now < event.end else EventStatus.SCHEDULED
    return Evaluated(status, potentially, completed)


def touches(changed: list[Interval], others: list[Interval], now: dt.datetime) -> bool:
    """Whether a change among ``changed`` (events of one program: created, cancelled) can alter how ``others``
    (events of another program of the same device) are shown: ``evaluate`` flags an event potentiallySuperseded
    from overlapping live events of *other* programs, so an event still listed (not completed) whose interval
    overlaps a changed one may now read differently. Supersession (status 4) stays within a program."""
    return any(not evaluate(o, [], now).completed and o.overlaps(c) for o in others for c in changed)


def winner(events: list[Interval], now: dt.datetime) -> Interval | None:
    """The event a device should apply at ``now``: active, not superseded, lowest primacy, then newest."""
    active = [e for e in events if evaluate(e, events, now).status == EventStatus.ACTIVE]
    if not active:
        return None
    return min(active, key=lambda e: (e.primacy, -e.creation_time.timestamp(), -e.id))


def list_order_key(e: Interval) -> tuple:
    """DERControlList order: start time ascending, then creationTime descending (newest first), then id."""
    return (e.start, -e.creation_time.timestamp(), -e.id)
