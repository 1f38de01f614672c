"""Telemetry for staff: bulk import of history (AMI/SCADA exports) and range reads: /api/v1/telemetry."""

from __future__ import annotations

import math

from aiohttp import web

from server import pki
from server.admin.access import requires
from server.admin.common import field, json_body, optional_time, parse_time, reply, runtime
from server.core import telemetry
from server.core.errors import Invalid
from server.core.staff import GRID

routes = web.RouteTableDef()
MAX_IMPORT = 200_000


@routes.post("/api/v1/telemetry")
@requires(GRID)
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
        if not (
            isinstance(row, list)
            and len(row) == 2
            and isinstance(row[1], int | float)
            and not isinstance(row[1], bool)
            and math.isfinite(row[1])
        ):
            raise Invalid(f"readings[{i}] must be [ISO time, finite number]")
        value, si_unit = telemetry.normalise(float(row[1]), unit, scale)
        ts = parse_time(row[0], f"readings[{i}]", allow_now=False)
        readings.append(
            telemetry.Reading(
                source_kind=kind, source_id=source, measurement=measurement, ts=ts, value=value, unit=si_unit
            )
        )
    async with runtime(request).store.sessions.begin() as session:
        count = await telemetry.add(session, readings)
    return reply({"stored": count, "already_stored": len(readings) - count}, 201)


@routes.get("/api/v1/telemetry")
async def read_readings(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError:
        raise Invalid("limit must be an integer") from None
    async with runtime(request).store.sessions() as session:
        rows = await telemetry.query(
            session,
            source_kind=q.get("source_kind"),
            source_id=q.get("source_id"),
            resource=q.get("resource"),
            measurement=q.get("measurement"),
            since=optional_time(q.get("since"), "since"),
            until=optional_time(q.get("until"), "until"),
            limit=limit,
        )
    return reply(rows)
