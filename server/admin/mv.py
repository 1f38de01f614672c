"""Staff API for measurement and verification of events (``server.core.mv``):

GET /api/v1/events/{id}/mv[?format=csv][&adjustment=multiplicative|additive|none][&cap=0.2][&days=10]
    [&lookback_days=45][&step_s=900]
    baseline, measured and delivered kW per resource, per grid node and for the program; ``format=csv`` is
    the settlement export (columns ``server.core.mv.CSV_COLUMNS``)
"""

from __future__ import annotations

from aiohttp import web

from server.admin.common import event_id, reply, runtime
from server.core import mv
from server.core.errors import Invalid

routes = web.RouteTableDef()


def _method(request: web.Request) -> mv.Method:
    q = request.query
    default = mv.Method()
    try:
        return mv.Method(
            days=int(q.get("days", default.days)),
            lookback_days=int(q.get("lookback_days", default.lookback_days)),
            adjustment=q.get("adjustment", default.adjustment),
            cap=float(q.get("cap", default.cap)),
            step_s=int(q.get("step_s", default.step_s)),
        ).check()
    except ValueError:
        raise Invalid("days, lookback_days and step_s must be integers, cap a number") from None


@routes.get("/api/v1/events/{id}/mv")
async def event_mv(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Invalid("format must be json or csv")
    method = _method(request)
    async with runtime(request).store.sessions() as session:
        report = await mv.event_mv(session, event_id(request), method)
    if fmt == "csv":
        return web.Response(
            text=mv.csv_text(report),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="event-{report["event_id"]}-mv.csv"'},
        )
    return reply(report)
