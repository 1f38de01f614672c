"""The core's objects as 3.x JSON (the only place they are rendered: GETs, POST/PUT/DELETE answers and webhook
notifications all call these), and the 3.x event shapes turned into the core's signal.

An event's 3.x intervals are its OpenADR signal's: one payload per interval, one numeric value per payload. The
payload type is the signal's name as 3.x spells it: SIMPLE, PRICE for ELECTRICITY_PRICE, and a 3.x type
the 2.0b signal list lacks travels as ``x-<TYPE>`` (so a 2.0b VEN is given it as a private signal).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.core import events as core_events
from server.core import oadr_events
from server.core.errors import Invalid
from server.openadr3.http import iso_duration, rfc3339, seconds, timestamp
from server.store.models import Event, Oadr3Report, Oadr3Resource, Oadr3Subscription, Oadr3Ven, Program, Ven

TO_SIGNAL = {"SIMPLE": "SIMPLE", "PRICE": "ELECTRICITY_PRICE"}
FROM_SIGNAL = {v: k for k, v in TO_SIGNAL.items()}


def _meta(object_id: int, kind: str, created: dt.datetime, changed: dt.datetime) -> dict[str, Any]:
    return {
        "id": str(object_id),
        "createdDateTime": rfc3339(created),
        "modificationDateTime": rfc3339(changed),
        "objectType": kind,
    }


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


# ------------------------------------------------------------------------------------------------------ programs
def program(p: Program, targets: list[str]) -> dict[str, Any]:
    extra = (p.attrs or {}).get("openadr3") or {}
    out = _meta(p.id, "PROGRAM", p.created_at, p.changed_at)
    out["programName"] = p.name
    for key in ("intervalPeriod", "programDescriptions", "payloadDescriptors", "attributes"):
        _put(out, key, extra.get(key))
    out["targets"] = targets or None
    return out


PROGRAM_EXTRA = ("intervalPeriod", "programDescriptions", "payloadDescriptors", "attributes")


# -------------------------------------------------------------------------------------------------------- events
def payload_type(signal_name: str) -> str:
    if signal_name in FROM_SIGNAL:
        return FROM_SIGNAL[signal_name]
    return signal_name[2:] if signal_name.startswith("x-") else signal_name


def signal_name(kind: str) -> str:
    if kind in TO_SIGNAL:
        return TO_SIGNAL[kind]
    return kind if kind in core_events.SIGNALS else f"x-{kind}"


def event(e: Event, targets: list[str]) -> dict[str, Any]:
    extra = e.payload.get("openadr3") or {}
    signal = oadr_events.signal_of(e)
    out = _meta(e.id, "EVENT", e.creation_time, e.changed_at)
    out["programID"] = str(e.program_id)
    _put(out, "eventName", extra.get("eventName") or e.description or None)
    if e.payload.get("priority") is not None:
        out["priority"] = int(e.payload["priority"])
    out["targets"] = targets or None
    _put(out, "reportDescriptors", extra.get("reportDescriptors"))
    _put(out, "payloadDescriptors", extra.get("payloadDescriptors"))
    period: dict[str, Any] = {"start": rfc3339(e.start), "duration": iso_duration(e.duration_s)}
    if e.randomize_start_s:
        period["randomizeStart"] = iso_duration(abs(e.randomize_start_s))
    out["intervalPeriod"] = period
    kind = payload_type(signal.name)
    intervals, start = [], e.start
    for n, item in enumerate(signal.intervals):
        length = int(item["duration_s"])
        intervals.append(
            {
                "id": n,
                "intervalPeriod": {"start": rfc3339(start), "duration": iso_duration(length)},
                "payloads": [{"type": kind, "values": [item["value"]]}],
            }
        )
        start += dt.timedelta(seconds=length)
    out["intervals"] = intervals
    return out


EVENT_EXTRA = ("eventName", "reportDescriptors", "payloadDescriptors", "duration")


def signal_from(body: dict[str, Any], now: dt.datetime) -> tuple[dt.datetime, dict[str, Any], int | None]:
    """(start, core signal, randomizeStart in s) of a 3.x event body; Invalid when the core cannot carry it."""
    period = body.get("intervalPeriod") or {}
    intervals = body.get("intervals") or []
    if not intervals:
        raise Invalid("an event needs intervals")
    if len(intervals) > 1000:
        raise Invalid("at most 1000 intervals")
    start: dt.datetime | None = None
    cursor: dt.datetime | None = None
    kinds: set[str] = set()
    items = []
    for n, interval in enumerate(intervals):
        own = interval.get("intervalPeriod") or {}
        begin_text = own.get("start") or (period.get("start") if n == 0 else None)
        begin = timestamp(begin_text, f"intervals/{n}/intervalPeriod/start", now) if begin_text else cursor
        if begin is None:
            raise Invalid("give the event's intervalPeriod.start or the first interval's")
        if cursor is not None and begin != cursor:
            raise Invalid(f"intervals/{n} does not start where the one before ends")
        length_text = own.get("duration") or period.get("duration")
        if not length_text:
            raise Invalid(f"intervals/{n} has no duration (nor has the event's intervalPeriod)")
        length = seconds(length_text, f"intervals/{n}/intervalPeriod/duration")
        if length <= 0:
            raise Invalid(f"intervals/{n}: the duration must be positive")
        payloads = interval["payloads"]
        if len(payloads) != 1 or len(payloads[0]["values"]) != 1:
            raise Invalid(f"intervals/{n}: this VTN carries one payload with one value per interval")
        value = payloads[0]["values"][0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"intervals/{n}: the payload value must be a number")
        kinds.add(payloads[0]["type"])
        items.append({"duration_s": length, "value": float(value)})
        start = start or begin
        cursor = begin + dt.timedelta(seconds=length)
    if len(kinds) != 1:
        raise Invalid("every interval of an event carries the same payload type")
    assert start is not None
    randomize = period.get("randomizeStart")
    signal = {"name": signal_name(kinds.pop()), "type": None, "intervals": items}
    return start, signal, seconds(randomize, "intervalPeriod/randomizeStart") if randomize else None


# ---------------------------------------------------------------------------------------------------------- VENs
def ven(v: Ven, state: Oadr3Ven, client_id: str) -> dict[str, Any]:
    out = _meta(v.id, "VEN", v.created_at, state.changed_at)
    out["clientID"] = client_id
    out["venName"] = v.name
    out["targets"] = state.targets or None
    out["attributes"] = state.attributes or None
    return out


def resource(r: Oadr3Resource, client_id: str) -> dict[str, Any]:
    out = _meta(r.id, "RESOURCE", r.created_at, r.changed_at)
    out["clientID"] = client_id
    out["resourceName"] = r.name
    out["venID"] = str(r.ven_pk)
    out["targets"] = r.targets or None
    out["attributes"] = r.attributes or None
    return out


def subscription(s: Oadr3Subscription, client_id: str) -> dict[str, Any]:
    out = _meta(s.id, "SUBSCRIPTION", s.created_at, s.changed_at)
    out["clientID"] = client_id
    out["clientName"] = s.client_name
    if s.program_id is not None:
        out["programID"] = str(s.program_id)
    out["objectOperations"] = s.object_operations
    out["targets"] = s.targets or None
    return out


def report(r: Oadr3Report, client_id: str) -> dict[str, Any]:
    out = _meta(r.id, "REPORT", r.created_at, r.changed_at)
    out["clientID"] = client_id
    out["eventID"] = str(r.event_id)
    out["clientName"] = r.client_name
    _put(out, "reportName", r.report_name)
    _put(out, "payloadDescriptors", r.payload_descriptors)
    out["resources"] = r.resources
    return out
