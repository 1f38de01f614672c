"""VEN reports: the metadata a VEN offers (oadrRegisterReport), the reports the VTN requests, and report values
landing in the shared telemetry store.

Which offered reports are requested is configuration (``openadr.report_names``), and so is the cadence
(``report_granularity_s``, ``report_back_duration_s``), clamped into the sampling range the VEN offered so a
conforming VEN never has to refuse it. Report requests and descriptions are scoped to their VEN.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import telemetry
from server.core import vens as vens_core
from server.core.errors import Invalid, NotFound
from server.store.models import OadrReportDescription, OadrReportRequest, Ven
from server.store.types import utcnow

CREATE_REPORT = "create_report"
CANCEL_REPORT = "cancel_report"


@dataclass
class Description:
    r_id: str
    resource_id: str = ""
    report_type: str = ""
    reading_type: str = ""
    measurement: str = ""
    unit: str = ""
    scale: str = "none"
    min_period_s: float | None = None
    max_period_s: float | None = None


@dataclass
class OfferedReport:
    specifier_id: str
    report_name: str
    descriptions: list[Description] = field(default_factory=list)


@dataclass
class Value:
    r_id: str
    ts: dt.datetime
    value: float
    duration_s: float | None = None


@dataclass
class ReportData:
    report_request_id: str
    specifier_id: str
    report_name: str
    values: list[Value] = field(default_factory=list)


def base_name(report_name: str) -> str:
    return report_name.removeprefix("METADATA_")


async def register_offered(session: AsyncSession, ven_pk: int, offered: list[OfferedReport]) -> None:
    """Replace the VEN's metadata for each offered report specifier."""
    for report in offered:
        existing = {
            d.r_id: d
            for d in await session.scalars(
                select(OadrReportDescription).where(
                    OadrReportDescription.ven_pk == ven_pk,
                    OadrReportDescription.report_specifier_id == report.specifier_id,
                )
            )
        }
        for desc in report.descriptions:
            row = existing.pop(desc.r_id, None) or OadrReportDescription(
                ven_pk=ven_pk, report_specifier_id=report.specifier_id, r_id=desc.r_id
            )
            row.report_name = base_name(report.report_name)
            for attr in (
                "resource_id",
                "report_type",
                "reading_type",
                "measurement",
                "unit",
                "scale",
                "min_period_s",
                "max_period_s",
            ):
                setattr(row, attr, getattr(desc, attr))
            row.registered_at = utcnow()
            session.add(row)
        for stale in existing.values():
            await session.delete(stale)
    await session.flush()


def _clamp(wanted: float, descs: list[Description]) -> int:
    lows = [d.min_period_s for d in descs if d.min_period_s is not None]
    highs = [d.max_period_s for d in descs if d.max_period_s is not None]
    value = max([wanted, *lows]) if lows else wanted
    if highs:
        value = min(value, min(highs))
    return max(int(round(value)), 1)


async def choose_requests(
    session: AsyncSession,
    ven_pk: int,
    offered: list[OfferedReport],
    names: list[str],
    granularity_s: int,
    back_duration_s: int,
) -> list[OadrReportRequest]:
    """Report requests for the offered reports whose names configuration asks for; a re-registration of the
    same report supersedes earlier requests for it."""
    wanted = {n.upper() for n in names}
    made: list[OadrReportRequest] = []
    for report in offered:
        name = base_name(report.report_name)
        if name.upper() not in wanted or not report.descriptions:
            continue
        superseded = await session.scalars(
            select(OadrReportRequest).where(
                OadrReportRequest.ven_pk == ven_pk,
                OadrReportRequest.report_specifier_id == report.specifier_id,
                OadrReportRequest.status != "cancelled",
            )
        )
        for old in superseded:
            # the VEN keeps running the old request unless told: without this, values would arrive twice
            old.status, old.changed_at = "cancelled", utcnow()
            await vens_core.enqueue(
                session, ven_pk, CANCEL_REPORT, {"report_request_id": old.report_request_id}
            )
        granularity = _clamp(granularity_s, report.descriptions)
        request = OadrReportRequest(
            ven_pk=ven_pk,
            report_request_id="RR-" + secrets.token_hex(6).upper(),
            report_specifier_id=report.specifier_id,
            report_name=name,
            r_ids=[d.r_id for d in report.descriptions],
            granularity_s=granularity,
            report_back_duration_s=max(back_duration_s, granularity),
        )
        session.add(request)
        made.append(request)
    await session.flush()
    return made


async def reading_types(session: AsyncSession, ven_pk: int, specifier_id: str) -> dict[str, str]:
    rows = await session.scalars(
        select(OadrReportDescription).where(
            OadrReportDescription.ven_pk == ven_pk, OadrReportDescription.report_specifier_id == specifier_id
        )
    )
    return {d.r_id: d.reading_type for d in rows}


async def _request(session: AsyncSession, ven_pk: int, report_request_id: str) -> OadrReportRequest:
    req = await session.scalar(
        select(OadrReportRequest).where(
            OadrReportRequest.ven_pk == ven_pk, OadrReportRequest.report_request_id == report_request_id
        )
    )
    if req is None:
        raise NotFound(f"no report request {report_request_id} for this VEN")
    return req


async def mark_created(session: AsyncSession, ven_pk: int, report_request_ids: list[str]) -> None:
    for rrid in report_request_ids:
        try:
            req = await _request(session, ven_pk, rrid)
        except NotFound:
            continue  # a VEN may list requests we have already superseded; nothing to do
        if req.status == "requested":
            req.status, req.changed_at = "active", utcnow()
    await session.flush()


async def forget_requests(session: AsyncSession, ven_pk: int) -> None:
    """A new registration: whatever the VEN was asked before is gone on its side too."""
    await session.execute(
        update(OadrReportRequest)
        .where(OadrReportRequest.ven_pk == ven_pk, OadrReportRequest.status != "cancelled")
        .values(status="cancelled", changed_at=utcnow())
    )


async def mark_cancelled(session: AsyncSession, ven_pk: int, report_request_id: str) -> None:
    req = await _request(session, ven_pk, report_request_id)
    req.status, req.changed_at = "cancelled", utcnow()
    await session.flush()


# OpenADR (EMIX power) quantity names -> the telemetry store's (the names 2030.5 readings land under), so a VEN's
# real power is read by forecasts and M&V like a device's
QUANTITIES = {"powerReal": "realPower", "powerReactive": "reactivePower", "powerApparent": "apparentPower"}


async def store_update(session: AsyncSession, ven: Ven, reports: list[ReportData]) -> int:
    """Land oadrUpdateReport values in telemetry; returns how many values were stored."""
    readings: list[telemetry.Reading] = []
    for data in reports:
        req = await _request(session, ven.id, data.report_request_id)
        descs = {
            d.r_id: d
            for d in await session.scalars(
                select(OadrReportDescription).where(
                    OadrReportDescription.ven_pk == ven.id,
                    OadrReportDescription.report_specifier_id
                    == (data.specifier_id or req.report_specifier_id),
                )
            )
        }
        for v in data.values:
            desc = descs.get(v.r_id)
            if desc is None:
                raise Invalid(f"rID {v.r_id} was not registered in report {data.specifier_id}")
            value, unit = telemetry.normalise(v.value, desc.unit, desc.scale)
            readings.append(
                telemetry.Reading(
                    source_kind="ven",
                    source_id=ven.ven_id,
                    resource=desc.resource_id,
                    measurement=QUANTITIES.get(desc.measurement, desc.measurement) or req.report_name,
                    reading_type=desc.reading_type,
                    unit=unit,
                    ts=v.ts,
                    value=value,
                    duration_s=v.duration_s,
                )
            )
        req.last_update_at = utcnow()
        if req.status == "requested":
            req.status = "active"
    return await telemetry.add(session, readings)


async def request_report(
    session: AsyncSession, ven_name: str, specifier_id: str, granularity_s: int, back_duration_s: int
) -> dict[str, Any]:
    """Staff ask a VEN for a report it registered (granularity 0 = one-shot); delivered by poll or push."""
    ven = await vens_core.by_name(session, ven_name)
    descs = list(
        await session.scalars(
            select(OadrReportDescription).where(
                OadrReportDescription.ven_pk == ven.id,
                OadrReportDescription.report_specifier_id == specifier_id,
            )
        )
    )
    if not descs:
        raise NotFound(f"VEN {ven_name} registered no report {specifier_id}")
    req = OadrReportRequest(
        ven_pk=ven.id,
        report_request_id="RR-" + secrets.token_hex(6).upper(),
        report_specifier_id=specifier_id,
        report_name=descs[0].report_name,
        r_ids=[d.r_id for d in descs],
        granularity_s=granularity_s,
        report_back_duration_s=back_duration_s,
    )
    session.add(req)
    await session.flush()
    await vens_core.enqueue(session, ven.id, CREATE_REPORT, {"report_request_id": req.report_request_id})
    return _request_dict(req, ven.name)


async def request_cancel(session: AsyncSession, ven_name: str, report_request_id: str) -> dict[str, Any]:
    ven = await vens_core.by_name(session, ven_name)
    req = await _request(session, ven.id, report_request_id)
    await vens_core.enqueue(session, ven.id, CANCEL_REPORT, {"report_request_id": report_request_id})
    return _request_dict(req, ven.name)


async def get_request(session: AsyncSession, ven_pk: int, report_request_id: str) -> OadrReportRequest:
    return await _request(session, ven_pk, report_request_id)


def _request_dict(r: OadrReportRequest, ven_name: str) -> dict[str, Any]:
    return {
        "ven": ven_name,
        "report_request_id": r.report_request_id,
        "report_specifier_id": r.report_specifier_id,
        "report_name": r.report_name,
        "r_ids": r.r_ids,
        "granularity_s": r.granularity_s,
        "report_back_duration_s": r.report_back_duration_s,
        "status": r.status,
        "created_at": r.created_at.isoformat(),
        "last_update_at": r.last_update_at.isoformat() if r.last_update_at else None,
    }


async def list_reports(session: AsyncSession, ven_name: str | None = None) -> dict[str, Any]:
    dq = select(OadrReportDescription, Ven.name).join(Ven, Ven.id == OadrReportDescription.ven_pk)
    rq = select(OadrReportRequest, Ven.name).join(Ven, Ven.id == OadrReportRequest.ven_pk)
    if ven_name:
        dq, rq = dq.where(Ven.name == ven_name), rq.where(Ven.name == ven_name)
    descriptions = [
        {
            "ven": name,
            "report_specifier_id": d.report_specifier_id,
            "report_name": d.report_name,
            "r_id": d.r_id,
            "resource_id": d.resource_id,
            "measurement": d.measurement,
            "unit": d.unit,
            "scale": d.scale,
            "reading_type": d.reading_type,
            "min_period_s": d.min_period_s,
            "max_period_s": d.max_period_s,
        }
        for d, name in (await session.execute(dq.order_by(OadrReportDescription.id))).all()
    ]
    requests = [
        _request_dict(r, name) for r, name in (await session.execute(rq.order_by(OadrReportRequest.id))).all()
    ]
    return {"offered": descriptions, "requests": requests}
