"""Staff API for aggregators' flexibility offers and their clearing:

GET  /api/v1/offers[?status=offered|cleared|rejected|withdrawn][&offset=&limit=]   newest first; X-Total-Count
POST /api/v1/offers               {ven, start: ISO|"now", duration_s, up_kw?, down_kw?, price}
POST /api/v1/offers/{id}/withdraw
POST /api/v1/offers/clear         {start, step_s, up_kw: [..], down_kw: [..], up_cost, down_cost}
     clears every open offer overlapping the window against that need; cleared offers become events
"""

from __future__ import annotations

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, list_reply, path_id, reply, runtime, window
from server.admin.sep2 import parse_start
from server.core import offers
from server.core.errors import Invalid
from server.core.staff import EVENTS
from server.orchestration import clearing, market
from server.store.paging import fetch_page

routes = web.RouteTableDef()
NUMBER = (int, float)


@routes.get("/api/v1/offers")
async def list_offers(request: web.Request) -> web.Response:
    query = offers.offers_query(request.query.get("status"))
    async with runtime(request).store.sessions() as session:
        win = window(request)
        found, total = await fetch_page(session, query, win.offset, win.limit)
        names = await offers.ven_names(session, found)
        return list_reply([offers.offer_dict(o, names.get(o.ven_pk, "")) for o in found], total)


@routes.post("/api/v1/offers")
@requires(EVENTS)
async def create_offer(request: web.Request) -> web.Response:
    body = await json_body(request)
    ven = field(body, "ven", str)
    start = parse_start(field(body, "start", str))
    duration = field(body, "duration_s", int)
    up = float(field(body, "up_kw", NUMBER, required=False, default=0.0))
    down = float(field(body, "down_kw", NUMBER, required=False, default=0.0))
    price = float(field(body, "price", NUMBER))
    async with runtime(request).store.sessions.begin() as session:
        offer = await offers.create(session, ven, start, duration, up, down, price)
        return reply(offers.offer_dict(offer, ven), status=201)


@routes.post("/api/v1/offers/{id}/withdraw")
@requires(EVENTS)
async def withdraw_offer(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        offer = await offers.withdraw(session, path_id(request, "offer"))
        names = await offers.ven_names(session, [offer])
        return reply(offers.offer_dict(offer, names.get(offer.ven_pk, "")))


def _kw_list(body: dict, name: str) -> tuple[float, ...]:
    values = body.get(name, [])
    if not isinstance(values, list) or not all(
        isinstance(v, NUMBER) and not isinstance(v, bool) and 0 <= v < float("inf") for v in values
    ):
        raise Invalid(f"{name} must be a list of kW values, none negative")
    if len(values) > 7 * 96 * 15:
        raise Invalid(f"{name}: too many intervals")
    return tuple(float(v) for v in values)


@routes.post("/api/v1/offers/clear")
@requires(EVENTS)
async def clear_offers(request: web.Request) -> web.Response:
    body = await json_body(request)
    step = field(body, "step_s", int, required=False, default=900)
    if not 60 <= step <= 3600:
        raise Invalid("step_s must be 60..3600")
    need = market.Need(
        start=parse_start(field(body, "start", str)),
        step_s=step,
        up_kw=_kw_list(body, "up_kw"),
        down_kw=_kw_list(body, "down_kw"),
        up_cost=float(field(body, "up_cost", NUMBER, required=False, default=0.0)),
        down_cost=float(field(body, "down_cost", NUMBER, required=False, default=0.0)),
    )
    async with runtime(request).store.sessions.begin() as session:
        result = await clearing.clear_and_dispatch(session, need)
        return reply(clearing.clearing_dict(result))
