"""/reports: a VEN's reports on events that reach it. Each numeric payload value becomes a telemetry reading of
the VEN (series: the resource's name; measurement: the payload type; unit from the payload descriptor), the same
store 2.0b oadrUpdateReport and 2030.5 readings feed; the report also counts as the VEN's answer to the event.
A VEN client sees only its own reports; a BL client reads all (and writes none: the scope is the VEN's).
DEMAND (power) is stored as the store's ``realPower`` in W, the series 2030.5 devices and 2.0b VENs feed, so
M&V, forecasts and plans read a 3.x VEN's power like theirs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import oadr3
from server.core import oadr3_clients as clients
from server.core.errors import Invalid
from server.openadr3 import render
from server.openadr3.auth import caller, needs
from server.openadr3.http import (
    answer,
    body,
    object_id,
    page,
    path_id,
    query_id,
    query_str,
    runtime,
    seconds,
    timestamp,
)
from server.store.models import Oadr3Report
from server.store.types import utcnow

routes = web.RouteTableDef()
MAX_VALUES = 10_000
# DEMAND is power (kW unless its descriptor names another power unit): the store keeps it as realPower in W
POWER_SCALE = {"KW": 1e3, "W": 1.0, "MW": 1e6}


def quantity(payload_type: str, units: str) -> tuple[str, str, float]:
    """(the store's measurement, unit, scale) of a payload type reported in ``units``."""
    scale = POWER_SCALE.get(units.upper() or "KW")
    if payload_type == "DEMAND" and scale is not None:
        return "realPower", "W", scale
    return payload_type[:64], units[:16], 1.0


async def rendered(session: AsyncSession, found: list[Oadr3Report]) -> list[dict[str, Any]]:
    ids = await oadr3.client_ids(session, list({r.client_pk for r in found}))
    return [render.report(r, ids.get(r.client_pk, "")) for r in found]


def values_of(value: dict[str, Any], now: dt.datetime) -> list[oadr3.ReportValue]:
    """The numeric values of a report, each with its time: the interval's own period, else its resource's."""
    descriptors = {d["payloadType"]: d for d in value.get("payloadDescriptors") or [] if isinstance(d, dict)}
    out: list[oadr3.ReportValue] = []
    for r, resource in enumerate(value["resources"]):
        default = resource.get("intervalPeriod") or {}
        for n, interval in enumerate(resource["intervals"]):
            period = interval.get("intervalPeriod") or default
            where = f"resources/{r}/intervals/{n}"
            if "start" not in period:
                raise Invalid(f"{where}: no intervalPeriod.start (nor has the resource)")
            ts = timestamp(period["start"], f"{where}/intervalPeriod/start", now)
            length = (
                seconds(period["duration"], f"{where}/intervalPeriod/duration")
                if "duration" in period
                else None
            )
            for payload in interval["payloads"]:
                desc = descriptors.get(payload["type"], {})
                measurement, unit, scale = quantity(payload["type"], str(desc.get("units") or ""))
                for v in payload["values"]:
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        continue  # strings and points are kept in the report, not in telemetry
                    out.append(
                        oadr3.ReportValue(
                            resource=resource["resourceName"],
                            measurement=measurement,
                            ts=ts,
                            duration_s=length,
                            value=float(v) * scale,
                            unit=unit,
                            reading_type=str(desc.get("readingType") or "")[:32],
                        )
                    )
    if len(out) > MAX_VALUES:
        raise Invalid(f"a report carries at most {MAX_VALUES} values")
    return out


@routes.get("/reports")
@needs(clients.READ_VEN_OBJECTS)
async def search(request: web.Request) -> web.Response:
    query = oadr3.reports_query(
        caller(request),
        program_id=query_id(request, "programID"),
        event_id=query_id(request, "eventID"),
        client_name=query_str(request, "clientName"),
    )
    async with runtime(request).store.sessions() as session:
        out = await rendered(session, await page(request, session, query))
    return answer(request, "report", out, many=True)


async def _save(request: web.Request, report_id: int | None) -> web.Response:
    who = caller(request)
    value = await body(request, "reportRequest")
    values = values_of(value, utcnow())
    async with runtime(request).store.sessions() as session, session.begin():
        current = await oadr3.report_for(session, who, report_id) if report_id is not None else None
        saved = await oadr3.save_report(
            session,
            who,
            current,
            event_id=object_id(value["eventID"], "event"),
            client_name=value["clientName"],
            report_name=value.get("reportName"),
            payload_descriptors=value.get("payloadDescriptors"),
            resources=value["resources"],
            values=values,
        )
        (out,) = await rendered(session, [saved])
    return answer(request, "report", out, 201 if report_id is None else 200)


@routes.post("/reports")
@needs(clients.WRITE_REPORTS)
async def create(request: web.Request) -> web.Response:
    return await _save(request, None)


@routes.get("/reports/{reportID}")
@needs(clients.READ_VEN_OBJECTS)
async def get(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        found = await oadr3.report_for(session, caller(request), path_id(request, "reportID"))
        (out,) = await rendered(session, [found])
    return answer(request, "report", out)


@routes.put("/reports/{reportID}")
@needs(clients.WRITE_REPORTS)
async def update(request: web.Request) -> web.Response:
    return await _save(request, path_id(request, "reportID"))


@routes.delete("/reports/{reportID}")
@needs(clients.WRITE_REPORTS)
async def delete(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        found = await oadr3.report_for(session, caller(request), path_id(request, "reportID"))
        (out,) = await rendered(session, [found])
        await oadr3.delete_report(session, found)
    return answer(request, "report", out)
