"""2030.5 metering mirror -> telemetry: every Reading a client mirrors (a MirrorMeterReading's own Reading, or the
Readings of its MirrorReadingSets) becomes one row of the protocol-neutral telemetry store, in SI units.

Called from the MirrorUsagePoint handlers in ``server.sep2.routes`` inside their transaction, so readings that fail
a check reject the whole POST (4xx, nothing stored: neither the XML nor any telemetry row).

The ReadingType of a MirrorMeterReading is declared when the MirrorUsagePoint is created; readings posted later may
repeat it, but a ReadingType that contradicts the declared one (another uom, multiplier, kind, flow direction,
phase, qualifier) is refused: the server cannot know which one the numbers are in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import fields

from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import telemetry
from server.core.errors import Invalid
from server.core.metering import ReadingType
from server.sep2 import xml
from server.store.types import utcnow

MAX_READINGS_PER_POST = 10_000


def reading_type(el: etree._Element | None) -> ReadingType | None:
    if el is None:
        return None
    uom = xml.integer(el, "uom")
    if uom is None:
        raise Invalid("ReadingType needs a uom")
    return ReadingType(uom=uom, power_of_ten=xml.integer(el, "powerOfTenMultiplier") or 0,
                       kind=xml.integer(el, "kind"), flow_direction=xml.integer(el, "flowDirection"),
                       phase=xml.integer(el, "phase"), data_qualifier=xml.integer(el, "dataQualifier"),
                       accumulation=xml.integer(el, "accumulationBehaviour"),
                       interval_s=xml.integer(el, "intervalLength"))


def declared_types(mup_xml: str) -> dict[str, ReadingType | None]:
    """MirrorMeterReading mRID -> ReadingType, from the stored (validated) MirrorUsagePoint."""
    root = etree.fromstring(mup_xml.encode())
    return {(xml.text(m, "mRID") or "").upper(): reading_type(xml.find(m, "ReadingType"))
            for m in root.findall(xml.q("MirrorMeterReading"))}


def same_type(declared: ReadingType, posted: ReadingType) -> bool:
    """Equal where both say something (a repeat may omit optional fields, never contradict them)."""
    for f in fields(ReadingType):
        a, b = getattr(declared, f.name), getattr(posted, f.name)
        if f.name == "power_of_ten":
            if a != b:
                return False
        elif a is not None and b is not None and a != b:
            return False
    return True


def _when(el: etree._Element, path: str) -> tuple[dt.datetime | None, int | None]:
    start = xml.integer(el, f"{path}/start")
    duration = xml.integer(el, f"{path}/duration")
    return (dt.datetime.fromtimestamp(start, dt.UTC) if start is not None else None), duration


def readings_of(mmr: etree._Element, rtype: ReadingType, lfdi: str, mrid: str,
                now: dt.datetime) -> list[telemetry.Reading]:
    out: list[telemetry.Reading] = []

    def take(reading: etree._Element, default_start: dt.datetime | None, default_duration: int | None,
             where: str) -> None:
        raw = xml.integer(reading, "value")
        if raw is None:
            return  # a Reading without a value carries only quality flags: nothing to store
        start, duration = _when(reading, "timePeriod")
        ts = start or default_start or now
        duration = duration if duration is not None else default_duration
        value = rtype.si(raw)
        rtype.check(value, ts, now, where)
        out.append(telemetry.Reading(source_kind="device", source_id=lfdi, measurement=rtype.measurement,
                                     ts=ts, value=value, unit=rtype.unit, resource=mrid,
                                     reading_type=rtype.label, duration_s=float(duration) if duration else None))

    single = xml.find(mmr, "Reading")
    if single is not None:
        last = xml.integer(mmr, "lastUpdateTime")
        take(single, dt.datetime.fromtimestamp(last, dt.UTC) if last is not None else None, rtype.interval_s,
             f"MirrorMeterReading {mrid} Reading")
    for rset in mmr.findall(xml.q("MirrorReadingSet")):
        set_start, set_duration = _when(rset, "timePeriod")
        readings = rset.findall(xml.q("Reading"))
        for i, reading in enumerate(readings):
            # readings of a set without their own timePeriod are spread over the set's interval in order
            default = set_start
            if set_start is not None and len(readings) > 1 and rtype.interval_s:
                default = set_start + dt.timedelta(seconds=rtype.interval_s * i)
            take(reading, default, rtype.interval_s or (set_duration if len(readings) == 1 else None),
                 f"MirrorReadingSet {xml.text(rset, 'mRID')} Reading {i}")
    return out


async def ingest(session: AsyncSession, device_lfdi: str, mup_xml: str, posted: etree._Element) -> int:
    """Check and store the readings in ``posted`` (a MirrorUsagePoint, MirrorMeterReading or a list of them)."""
    declared = declared_types(mup_xml)
    name = xml.local_name(posted)
    mmrs = [posted] if name == "MirrorMeterReading" else posted.findall(xml.q("MirrorMeterReading"))
    now = utcnow()
    rows: list[telemetry.Reading] = []
    for mmr in mmrs:
        mrid = (xml.text(mmr, "mRID") or "").upper()
        known = declared.get(mrid)
        sent = reading_type(xml.find(mmr, "ReadingType"))
        if known is not None and sent is not None and not same_type(known, sent):
            raise Invalid(f"MirrorMeterReading {mrid}: ReadingType does not match the one declared for it")
        rtype = sent or known
        has_values = xml.find(mmr, "Reading") is not None or xml.find(mmr, "MirrorReadingSet") is not None
        if rtype is None:
            if has_values:
                raise Invalid(f"MirrorMeterReading {mrid}: readings without a ReadingType")
            continue
        rows.extend(readings_of(mmr, rtype, device_lfdi, mrid, now))
        if len(rows) > MAX_READINGS_PER_POST:
            raise Invalid(f"at most {MAX_READINGS_PER_POST} readings per POST")
    return await telemetry.add(session, rows)
