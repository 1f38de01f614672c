"""2030.5 metering mirror -> telemetry: every Reading a client mirrors (a MirrorMeterReading's own Reading, or the
Readings of its MirrorReadingSets) becomes one row of the protocol-neutral telemetry store, in SI units.

Called from the MirrorUsagePoint handlers in ``server.sep2.mup`` inside their transaction, so readings that fail
a check reject the whole POST (4xx, nothing stored: neither the XML nor any telemetry row).

The ReadingType of a MirrorMeterReading is declared when the MirrorUsagePoint is created; readings posted later may
repeat it, but a ReadingType that contradicts the declared one (another uom, multiplier, kind, flow direction,
phase, qualifier) is refused: the server cannot know which one the numbers are in.

The mirrored data reads back as the Metering function set (from the telemetry store, values re-encoded with the
ReadingType's power of ten), for the client that mirrored it:

    /upt                                  UsagePointList (one UsagePoint per MirrorUsagePoint)
    /upt/{m}                              UsagePoint
    /upt/{m}/mr[/{k}]                     MeterReadingList / MeterReading (k: the k-th MirrorMeterReading)
    /upt/{m}/mr/{k}/rt                    ReadingType
    /upt/{m}/mr/{k}/rs[/1]                ReadingSetList / ReadingSet (one set: everything mirrored)
    /upt/{m}/mr/{k}/rs/1/r                ReadingList (newest first; subscribable, with or without a Condition:
                                          server.sep2.subscriptions)
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import sep2_device as devres
from server.core import telemetry
from server.core.changes import Change
from server.core.errors import Invalid, NotFound
from server.core.metering import ReadingType, from_epoch
from server.core.scope import Scope
from server.sep2 import xml
from server.sep2.common import (
    epoch,
    list_element,
    page,
    path_int,
    reply,
    runtime,
    scope_of,
    sep2_handler,
)
from server.sep2.render import RenderCtx, poll_rate, render_ctx
from server.sep2.resources import Params, page_params, subscribable
from server.store.models import Sep2Mup, Sep2Subscription, TelemetryReading
from server.store.types import utcnow

MAX_READINGS_PER_POST = 10_000


def reading_type(el: etree._Element | None) -> ReadingType | None:
    if el is None:
        return None
    uom = xml.integer(el, "uom")
    if uom is None:
        raise Invalid("ReadingType needs a uom")
    return ReadingType(
        uom=uom,
        power_of_ten=xml.integer(el, "powerOfTenMultiplier") or 0,
        kind=xml.integer(el, "kind"),
        flow_direction=xml.integer(el, "flowDirection"),
        phase=xml.integer(el, "phase"),
        data_qualifier=xml.integer(el, "dataQualifier"),
        accumulation=xml.integer(el, "accumulationBehaviour"),
        interval_s=xml.integer(el, "intervalLength"),
    )


@functools.lru_cache(maxsize=4096)
def declared_types(mup_xml: str) -> Mapping[str, ReadingType | None]:
    """MirrorMeterReading mRID -> ReadingType, from the stored (validated) MirrorUsagePoint. Kept per stored body
    (a function of the text alone): every post of readings would otherwise parse its MirrorUsagePoint again."""
    root = etree.fromstring(mup_xml.encode())
    return MappingProxyType(
        {
            (xml.text(m, "mRID") or "").upper(): reading_type(xml.find(m, "ReadingType"))
            for m in root.findall(xml.q("MirrorMeterReading"))
        }
    )


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
    return (from_epoch(start, "timePeriod start") if start is not None else None), duration


def readings_of(
    mmr: etree._Element, rtype: ReadingType, lfdi: str, mrid: str, now: dt.datetime
) -> list[telemetry.Reading]:
    out: list[telemetry.Reading] = []

    def take(
        reading: etree._Element, default_start: dt.datetime | None, default_duration: int | None, where: str
    ) -> None:
        raw = xml.integer(reading, "value")
        if raw is None:
            return  # a Reading without a value carries only quality flags: nothing to store
        start, duration = _when(reading, "timePeriod")
        ts = start or default_start or now
        duration = duration if duration is not None else default_duration
        value = rtype.si(raw)
        rtype.check(value, ts, now, where)
        out.append(
            telemetry.Reading(
                source_kind="device",
                source_id=lfdi,
                measurement=rtype.measurement,
                ts=ts,
                value=value,
                unit=rtype.unit,
                resource=mrid,
                reading_type=rtype.label,
                duration_s=float(duration) if duration else None,
            )
        )

    single = xml.find(mmr, "Reading")
    if single is not None:
        last = xml.integer(mmr, "lastUpdateTime")
        take(
            single,
            from_epoch(last, "lastUpdateTime") if last is not None else None,
            rtype.interval_s,
            f"MirrorMeterReading {mrid} Reading",
        )
    for rset in mmr.findall(xml.q("MirrorReadingSet")):
        set_start, set_duration = _when(rset, "timePeriod")
        readings = rset.findall(xml.q("Reading"))
        for i, reading in enumerate(readings):
            # readings of a set without their own timePeriod are spread over the set's interval in order
            default = set_start
            if set_start is not None and len(readings) > 1 and rtype.interval_s:
                default = set_start + dt.timedelta(seconds=rtype.interval_s * i)
            take(
                reading,
                default,
                rtype.interval_s or (set_duration if len(readings) == 1 else None),
                f"MirrorReadingSet {xml.text(rset, 'mRID')} Reading {i}",
            )
    return out


async def ingest(
    session: AsyncSession, device_lfdi: str, mup_xml: str, posted: etree._Element
) -> list[telemetry.Reading]:
    """Check and store the readings in ``posted`` (a MirrorUsagePoint, MirrorMeterReading or a list of them);
    returns what was new (recorded as a change by ``core.telemetry``: subscriptions to ReadingLists, Conditions). A
    reading already stored (a device's retry after a lost response) is stored once and is no change."""
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
    return await telemetry.add_new(session, rows)


# ----------------------------------------------------------------------------------------------- read back
routes = web.RouteTableDef()


def meter_readings(mup: Sep2Mup) -> list[etree._Element]:
    return etree.fromstring(mup.body.encode()).findall(xml.q("MirrorMeterReading"))


def render_usage_point(mup: Sep2Mup) -> etree._Element:
    root = etree.fromstring(mup.body.encode())
    href = f"/upt/{mup.id}"
    return xml.E(
        "UsagePoint",
        {"href": href},
        xml.leaf("mRID", xml.text(root, "mRID")),
        xml.leaf("description", xml.text(root, "description")),
        xml.leaf("roleFlags", xml.text(root, "roleFlags")),
        xml.leaf("serviceCategoryKind", xml.text(root, "serviceCategoryKind")),
        xml.leaf("status", xml.text(root, "status")),
        xml.leaf("deviceLFDI", mup.device_lfdi),
        xml.link("MeterReadingListLink", f"{href}/mr", len(meter_readings(mup))),
    )


def render_meter_reading(mup: Sep2Mup, k: int, mmr: etree._Element) -> etree._Element:
    href = f"/upt/{mup.id}/mr/{k}"
    return xml.E(
        "MeterReading",
        {"href": href},
        xml.leaf("mRID", xml.text(mmr, "mRID")),
        xml.leaf("description", xml.text(mmr, "description")),
        xml.link("ReadingSetListLink", f"{href}/rs", 1),
        xml.link("ReadingTypeLink", f"{href}/rt"),
    )


async def mup_in_scope(session: AsyncSession, scope: Scope, mup_id: int) -> Sep2Mup:
    mup = await devres.owned_mup(session, scope, mup_id)
    if mup is None:
        raise NotFound("no such UsagePoint")
    return mup


async def mmr_in_scope(
    session: AsyncSession, scope: Scope, mup_id: int, k: int
) -> tuple[Sep2Mup, int, etree._Element]:
    """(MirrorUsagePoint, k, MirrorMeterReading) behind ``/upt/{m}/mr/{k}``, if the caller may read it."""
    mup = await mup_in_scope(session, scope, mup_id)
    mmrs = meter_readings(mup)
    if not 1 <= k <= len(mmrs):
        raise NotFound("no such MeterReading")
    return mup, k, mmrs[k - 1]


async def _mup(request: web.Request, session: AsyncSession) -> Sep2Mup:
    return await mup_in_scope(session, scope_of(request), path_int(request, "m"))


async def _mmr(request: web.Request, session: AsyncSession) -> tuple[Sep2Mup, int, etree._Element]:
    return await mmr_in_scope(session, scope_of(request), path_int(request, "m"), path_int(request, "k"))


@routes.get("/upt")
@sep2_handler
async def get_usage_point_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        scope = scope_of(request)
        found, total = await pg.fetch(session, devres.mups_query(scope))
        rate = await poll_rate(render_ctx(request, session), "UsagePointList")
    items = [render_usage_point(m) for m in found]
    return reply(list_element("UsagePointList", "/upt", items, total, rate))


@routes.get("/upt/{m}")
@sep2_handler
async def get_usage_point(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(render_usage_point(await _mup(request, session)))


@routes.get("/upt/{m}/mr")
@sep2_handler
async def get_meter_reading_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        mup = await _mup(request, session)
    mmrs = list(enumerate(meter_readings(mup), start=1))
    items = [render_meter_reading(mup, k, m) for k, m in pg.slice(mmrs)]
    return reply(list_element("MeterReadingList", f"/upt/{mup.id}/mr", items, len(mmrs)))


@routes.get("/upt/{m}/mr/{k}")
@sep2_handler
async def get_meter_reading(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        mup, k, mmr = await _mmr(request, session)
    return reply(render_meter_reading(mup, k, mmr))


@routes.get("/upt/{m}/mr/{k}/rt")
@sep2_handler
async def get_meter_reading_type(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        mup, k, mmr = await _mmr(request, session)
    rt = xml.find(mmr, "ReadingType")
    if rt is None:
        raise NotFound("this MeterReading has no ReadingType")
    rt.set("href", f"/upt/{mup.id}/mr/{k}/rt")
    return reply(rt)


async def _series(session: AsyncSession, mup: Sep2Mup, mmr: etree._Element) -> list[ColumnElement[bool]]:
    t = TelemetryReading
    conds = [
        t.source_kind == "device",
        t.source_id == mup.device_lfdi,
        t.resource == (xml.text(mmr, "mRID") or "").upper(),
    ]
    declared = reading_type(xml.find(mmr, "ReadingType"))
    if declared is not None:
        # a MeterReading holds one quantity (its uom); naming it lets the series index (source, resource,
        # measurement, ts) hand the rows over newest first, so a page costs the same at any list length
        conds.append(t.measurement == declared.measurement)
    return conds


async def _reading_set(session: AsyncSession, mup: Sep2Mup, k: int, mmr: etree._Element) -> etree._Element:
    conds = await _series(session, mup, mmr)
    first, last, n = (
        await session.execute(
            select(func.min(TelemetryReading.ts), func.max(TelemetryReading.ts), func.count()).where(*conds)
        )
    ).one()
    href = f"/upt/{mup.id}/mr/{k}/rs/1"
    start = epoch(first) if first else 0
    duration = (epoch(last) - start) if first and last else 0
    return xml.E(
        "ReadingSet",
        {"href": href},
        xml.leaf("mRID", f"{(xml.text(mmr, 'mRID') or '')[:30]}01"[-32:].rjust(32, "0")),
        xml.leaf("description", "all mirrored readings"),
        xml.E("timePeriod", None, xml.leaf("duration", duration), xml.leaf("start", start)),
        xml.link("ReadingListLink", f"{href}/r", n),
    )


@routes.get("/upt/{m}/mr/{k}/rs")
@sep2_handler
async def get_reading_set_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with runtime(request).store.sessions() as session:
        mup, k, mmr = await _mmr(request, session)
        items = pg.slice([await _reading_set(session, mup, k, mmr)])
    return reply(list_element("ReadingSetList", f"/upt/{mup.id}/mr/{k}/rs", items, 1))


@routes.get("/upt/{m}/mr/{k}/rs/{s}")
@sep2_handler
async def get_reading_set(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        mup, k, mmr = await _mmr(request, session)
        if path_int(request, "s") != 1:
            raise NotFound("no such ReadingSet")
        return reply(await _reading_set(session, mup, k, mmr))


def reading_value(value_si: float, p10: int) -> int:
    """A stored (SI) value as the Reading.value the ReadingList shows: in the ReadingType's power of ten."""
    return round(value_si / 10.0**p10)


def power_of_ten(mmr: etree._Element) -> int:
    rtype = reading_type(xml.find(mmr, "ReadingType"))
    return rtype.power_of_ten if rtype else 0


def mmr_index(mup: Sep2Mup, mrid: str) -> tuple[int, etree._Element] | None:
    """(k, MirrorMeterReading) of the MeterReading ``/upt/{mup}/mr/{k}`` that mirrors ``mrid``; None if none."""
    for k, mmr in enumerate(meter_readings(mup), start=1):
        if (xml.text(mmr, "mRID") or "").upper() == mrid.upper():
            return k, mmr
    return None


async def render_reading_list(
    session: AsyncSession, mup: Sep2Mup, k: int, mmr: etree._Element, start: int, limit: int
) -> etree._Element:
    """``/upt/{m}/mr/{k}/rs/1/r``, newest first. Subscribable with or without a Condition (SubscribableType 3):
    the only resource here whose items carry a Reading value a Condition can test."""
    conds = await _series(session, mup, mmr)
    total = await session.scalar(select(func.count()).select_from(TelemetryReading).where(*conds)) or 0
    rows = list(
        await session.scalars(
            select(TelemetryReading)
            .where(*conds)
            # the series index's own order (ts, then reading type; the row id last), so no page sorts the series
            .order_by(
                TelemetryReading.ts.desc(), TelemetryReading.reading_type.desc(), TelemetryReading.id.desc()
            )
            .offset(start)
            .limit(limit)
        )
    )
    p10 = power_of_ten(mmr)
    href = f"/upt/{mup.id}/mr/{k}/rs/1/r"
    el = list_element("ReadingList", href, [_reading(href, r, p10) for r in rows], total)
    el.set("subscribable", str(SUBSCRIBABLE_BOTH))
    return el


SUBSCRIBABLE_BOTH = 3  # SubscribableType: conditional and non-conditional subscriptions


def _reading(list_href: str, row: TelemetryReading, p10: int) -> etree._Element:
    return xml.E(
        "Reading",
        {"href": f"{list_href}/{row.id}"},
        xml.E(
            "timePeriod",
            None,
            xml.leaf("duration", int(row.duration_s or 0)),
            xml.leaf("start", epoch(row.ts)),
        ),
        xml.leaf("value", reading_value(row.value, p10)),
    )


# built once: constructing the statement cost more than running it on every post of readings
_READING_LIST_SUBSCRIPTIONS = (
    select(Sep2Subscription, Sep2Mup)
    .join(Sep2Mup, Sep2Mup.id == Sep2Subscription.program_id)
    .where(
        Sep2Subscription.kind == "reading-list",
        Sep2Mup.device_lfdi.in_(bindparam("lfdis", expanding=True)),
    )
    .order_by(Sep2Subscription.id)
)


async def readings_triggered(
    session: AsyncSession, change: Change, now: dt.datetime
) -> list[Sep2Subscription]:
    """Subscriptions to the ReadingLists that ``change.readings`` added to, whose Condition the new values meet
    (``condition_met``: the value as the ReadingList shows it, in its ReadingType's power of ten)."""
    if not change.readings:
        return []
    values: dict[tuple[str, str], list[float]] = {}
    for source, resource, value in change.readings:
        values.setdefault((source, resource.upper()), []).append(value)
    lfdis = sorted({source for source, _ in values})
    # one query: the subscriptions to reading lists of these devices' MirrorUsagePoints, with their MUP (none in
    # the common case, so a post of readings pays one indexed lookup here)
    found = (await session.execute(_READING_LIST_SUBSCRIPTIONS, {"lfdis": lfdis})).all()
    out = []
    for sub, mup in found:
        mmrs = meter_readings(mup)
        k = sub.target_id or 0
        if not 1 <= k <= len(mmrs):
            continue
        mmr = mmrs[k - 1]
        new = values.get((mup.device_lfdi, (xml.text(mmr, "mRID") or "").upper()))
        if not new:
            continue
        p10 = power_of_ten(mmr)
        if condition_met(sub.condition, [reading_value(v, p10) for v in new]):
            out.append(sub)
    return out


def condition_met(condition: dict[str, int] | None, values: list[int]) -> bool:
    """Whether new Reading values trigger a notification: always without a Condition; with one, when a value is
    outside [lowerThreshold, upperThreshold]."""
    if not condition:
        return True
    low, high = condition["lowerThreshold"], condition["upperThreshold"]
    return any(v < low or v > high for v in values)


@subscribable(
    "reading-list",
    "/upt/{p}/mr/{t}/rs/1/r",
    # new readings reach subscribers through ``readings_triggered``; a removed MirrorUsagePoint takes its lists
    affected=lambda change: (
        Sep2Subscription.program_id.in_(change.objects["mup"]) if change.objects.get("mup") else None
    ),
    is_list=True,
    triggered=readings_triggered,
    conditional=True,
)
async def render_reading_list_resource(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """The ReadingList of MeterReading ``t`` of UsagePoint ``p`` (one ReadingSet per MeterReading)."""
    mup, k, mmr = await mmr_in_scope(ctx.session, scope, params.p or 0, params.t or 0)
    return await render_reading_list(ctx.session, mup, k, mmr, params.start, params.limit)


@routes.get("/upt/{m}/mr/{k}/rs/{s}/r")
@sep2_handler
async def get_reading_list(request: web.Request) -> web.Response:
    params = page_params(page(request), p=path_int(request, "m"), t=path_int(request, "k"))
    async with runtime(request).store.sessions() as session:
        if path_int(request, "s") != 1:
            await _mmr(request, session)  # a MeterReading the caller cannot see is 404 before its ReadingSet
            raise NotFound("no such ReadingSet")
        return reply(
            await render_reading_list_resource(render_ctx(request, session), scope_of(request), params)
        )


@routes.get("/upt/{m}/mr/{k}/rs/{s}/r/{r}")
@sep2_handler
async def get_reading(request: web.Request) -> web.Response:
    """One Reading of the list above (the hrefs its items carry); only within that MeterReading's series."""
    async with runtime(request).store.sessions() as session:
        mup, k, mmr = await _mmr(request, session)
        if path_int(request, "s") != 1:
            raise NotFound("no such ReadingSet")
        conds = await _series(session, mup, mmr)
        row = await session.scalar(
            select(TelemetryReading).where(TelemetryReading.id == path_int(request, "r"), *conds)
        )
        if row is None:
            raise NotFound("no such Reading")
        return reply(_reading(f"/upt/{mup.id}/mr/{k}/rs/1/r", row, power_of_ten(mmr)))
