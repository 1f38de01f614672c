"""Telemetry for staff: bulk import of history (AMI/SCADA exports) and range reads: /api/v1/telemetry."""

from __future__ import annotations

import datetime as dt
import math

from aiohttp import web

from server import pki
from server.admin.common import field, json_body, reply, runtime
from server.core import telemetry
from server.core.errors import Invalid

routes = web.RouteTableDef()
MAX_IMPORT = 200_000


def _time(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise Invalid(f"{where}: time must be an ISO 8601 string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{where}: {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise Invalid(f"{where}: time needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return parsed.astimezone(dt.UTC)


@routes.post("/api/v1/telemetry")
async def import_readings(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = field(body, "source_kind", str)
    source = field(body, "source_id", str)
    if kind == "device":  # devices are keyed by LFDI everywhere, in one spelling
        try:
            source = pki.normalise_lfdi(source)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    measurement = field(body, "measurement", str)
    unit = field(body, "unit", str, required=False, default="W")
    scale = field(body, "scale", str, required=False, default="none")
    rows = field(body, "readings", list)
    if not rows or len(rows) > MAX_IMPORT:
        raise Invalid(f"readings must hold 1..{MAX_IMPORT} [time, value] pairs")
    readings = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], int | float)
                and not isinstance(row[1], bool) and math.isfinite(row[1])):
            raise Invalid(f"readings[{i}] must be [ISO time, finite number]")
        value, si_unit = telemetry.normalise(float(row[1]), unit, scale)
        readings.append(telemetry.Reading(source_kind=kind, source_id=source, measurement=measurement,
                                          ts=_time(row[0], f"readings[{i}]"), value=value, unit=si_unit))
    async with runtime(request).store.sessions.begin() as session:
        count = await telemetry.add(session, readings)
    return reply({"stored": count}, 201)


@routes.get("/api/v1/telemetry")
async def read_readings(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError:
        raise Invalid("limit must be an integer") from None
    async with runtime(request).store.sessions() as session:
        rows = await telemetry.query(
            session, source_kind=q.get("source_kind"), source_id=q.get("source_id"),
            resource=q.get("resource"), measurement=q.get("measurement"),
            since=_time(q["since"], "since") if "since" in q else None,
            until=_time(q["until"], "until") if "until" in q else None, limit=limit)
    return reply(rows)
