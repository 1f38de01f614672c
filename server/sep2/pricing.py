"""2030.5 Pricing function set, reached through the device (every request scoped by an EndDevice the caller may
reach and a tariff assigned to it):

    /edev/{e}/tp                                   TariffProfileList
    /edev/{e}/tp/{t}                               TariffProfile
    /edev/{e}/tp/{t}/rc[/{r}]                      RateComponentList / RateComponent
    /edev/{e}/tp/{t}/rc/{r}/rt                     ReadingType (what the rate prices)
    /edev/{e}/tp/{t}/rc/{r}/tti[/{i}]              TimeTariffIntervalList / TimeTariffInterval
    /edev/{e}/tp/{t}/rc/{r}/acttti                 ActiveTimeTariffIntervalList
    /edev/{e}/tp/{t}/rc/{r}/tti/{i}/cti[/{k}]      ConsumptionTariffIntervalList / ConsumptionTariffInterval
    /edev/{e}/tp/{t}/ctti                          TimeTariffIntervalList of every rate component (CSIP-AUS 1.3)

TimeTariffIntervals are events: EventStatus, supersession (a newer overlapping interval of the same rate) and
primacy come from ``server.core.der_controls`` via ``server.core.events``. FunctionSetAssignments link here.

The CSIP-AUS 1.3 pricing extension is rendered into the same representations: a TariffProfile links its combined
list (``csipaus:CombinedTimeTariffIntervalListLink``, the tariff's intervals of every rate component in one
list, each the same TimeTariffInterval its rate's list holds) and every TimeTariffInterval carries its
consumption blocks inline (``csipaus:ConsumptionTariffIntervalListSummary``) and a ``RateComponentLink`` to its
rate. Only a client speaking CSIP-AUS 1.3 receives them (``server.sep2.csipaus.for_client`` removes them for
the others, whose schemas have no place for them); the combined list itself answers every client in scope, in
the form its schema admits.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events as core_events
from server.core import programs
from server.core.changes import Change
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import events, render, xml
from server.sep2.common import (
    list_element,
    mrid,
    page,
    path_int,
    reply,
    runtime,
    scope_of,
    sep2_handler,
)
from server.sep2.render import RenderCtx, render_ctx
from server.sep2.resources import Params, any_of, page_params, subscribable
from server.store.models import EndDevice, Event, Program, ProgramMember, Sep2Subscription
from server.store.types import utcnow

routes = web.RouteTableDef()
MRID_TARIFF, MRID_RATE = 0x10, 0x11


async def tariff_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, tariff_id: int
) -> tuple[EndDevice, Program]:
    return await events.set_in_scope(session, scope, device_id, "price", tariff_id, "TariffProfile")


async def rate_in_scope(
    session: AsyncSession, scope: Scope, device_id: int, tariff_id: int, rate_id: int
) -> tuple[EndDevice, Program, Program]:
    device, tariff = await tariff_in_scope(session, scope, device_id, tariff_id)
    rate = await session.get(Program, rate_id)
    if rate is None or rate.kind != "rate" or rate.parent_id != tariff.id:
        raise NotFound("no such RateComponent")
    return device, tariff, rate


async def _rate(request: web.Request, session: AsyncSession) -> tuple[EndDevice, Program]:
    device, _, r = await rate_in_scope(
        session,
        scope_of(request),
        path_int(request, "e"),
        path_int(request, "t"),
        path_int(request, "r"),
    )
    return device, r


def render_tariff(pen: int, device: EndDevice, t: Program, n_rates: int, n_combined: int) -> etree._Element:
    href = f"/edev/{device.id}/tp/{t.id}"
    a = t.attrs
    return xml.E(
        "TariffProfile",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_TARIFF, t.id, pen)),
        xml.leaf("description", (t.description or t.name)[:32]),
        xml.leaf("currency", a.get("currency", 840)),
        xml.leaf("pricePowerOfTenMultiplier", a.get("pricePowerOfTenMultiplier", 0)),
        xml.leaf("primacy", t.primacy),
        xml.leaf("rateCode", a.get("rateCode") or None),
        xml.link("RateComponentListLink", f"{href}/rc", n_rates),
        xml.leaf("serviceCategoryKind", a.get("serviceCategoryKind", 0)),
        xml.link("csipaus-v13:CombinedTimeTariffIntervalListLink", f"{href}/ctti", n_combined),
    )


def rate_href(device: EndDevice, rate: Program) -> str:
    return f"/edev/{device.id}/tp/{rate.parent_id}/rc/{rate.id}"


def render_rate(pen: int, device: EndDevice, rate: Program, n_active: int, n_all: int) -> etree._Element:
    href = rate_href(device, rate)
    return xml.E(
        "RateComponent",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_RATE, rate.id, pen)),
        xml.leaf("description", (rate.description or rate.name)[:32]),
        xml.link("ActiveTimeTariffIntervalListLink", f"{href}/acttti", n_active),
        xml.link("ReadingTypeLink", f"{href}/rt"),
        xml.leaf("roleFlags", f"{rate.attrs.get('roleFlags', 1):04X}"),
        xml.link("TimeTariffIntervalListLink", f"{href}/tti", n_all),
    )


def render_tti(pen: int, device: EndDevice, rate: Program, e: Event, ev) -> etree._Element:
    href = f"{rate_href(device, rate)}/tti/{e.id}"
    el = events.render_event(
        "TimeTariffInterval",
        href,
        events.MRID_TTI,
        e,
        ev,
        pen,
        reply_to=f"/edev/{device.id}/rsp",
    )
    tiers = e.payload.get("tiers", [])
    el.append(xml.link("ConsumptionTariffIntervalListLink", f"{href}/cti", len(tiers)))
    el.append(xml.leaf("touTier", e.payload.get("touTier", 0)))
    # CSIP-AUS 1.3: every block inline, so a client needs no request per interval, and the rate it prices
    el.append(
        xml.E(
            "csipaus-v13:ConsumptionTariffIntervalListSummary",
            {"all": len(tiers), "results": len(tiers)},
            [render_cti(f"{href}/cti", k, t) for k, t in enumerate(tiers, start=1)],
        )
    )
    el.append(xml.link("RateComponentLink", rate_href(device, rate)))
    return el


def render_cti(href: str, k: int, tier: dict) -> etree._Element:
    return xml.E(
        "ConsumptionTariffInterval",
        {"href": f"{href}/{k}"},
        xml.leaf("consumptionBlock", k),
        xml.leaf("price", tier["price"]),
        xml.leaf("startValue", tier["startValue"]),
    )


async def rate_events(session: AsyncSession, rate: Program, now: dt.datetime, active_only: bool = False):
    found = await core_events.evaluated(session, [rate], now)
    if active_only:
        found = [(e, ev) for e, ev in found if ev.status == 1]
    return found


async def render_tti_list(
    ctx: RenderCtx,
    device: EndDevice,
    rate: Program,
    start: int,
    limit: int,
    active_only: bool = False,
    after: dt.datetime | None = None,
) -> etree._Element:
    found = await rate_events(ctx.session, rate, ctx.now, active_only)
    suffix = "acttti" if active_only else "tti"
    return events.event_list(
        "TimeTariffIntervalList",
        f"{rate_href(device, rate)}/{suffix}",
        found,
        lambda e, ev: render_tti(ctx.pen, device, rate, e, ev),
        start,
        limit,
        active_only,
        after,
    )


async def _tariff_counts(session: AsyncSession, tariff: Program, now: dt.datetime) -> tuple[int, int]:
    """How many rate components the tariff has, and how many intervals its combined list holds at ``now``."""
    rates = await programs.list_programs(session, "rate", tariff.id)
    return len(rates), len(await core_events.tariff_price_intervals(session, tariff, now, rates))


async def render_combined_list(
    ctx: RenderCtx, device: EndDevice, tariff: Program, start: int, limit: int, after: dt.datetime | None
) -> etree._Element:
    """A tariff's combined TimeTariffIntervalList (CSIP-AUS 1.3): the intervals of every rate component."""
    found = await core_events.tariff_price_intervals(ctx.session, tariff, ctx.now)
    rate_of = {e.id: rate for rate, e, _ in found}
    return events.event_list(
        "TimeTariffIntervalList",
        f"/edev/{device.id}/tp/{tariff.id}/ctti",
        [(e, ev) for _, e, ev in found],
        lambda e, ev: render_tti(ctx.pen, device, rate_of[e.id], e, ev),
        start,
        limit,
        False,
        after,
    )


# ---------------------------------------------------------------------------------------------------- routes
def _tariff_list_affected(change: Change) -> ColumnElement[bool] | None:
    """A device's TariffProfileList shows its tariffs, their rate components and (CSIP-AUS 1.3) how many price
    intervals each holds: it changes with the device's enrolments, with a tariff (an interval's change names
    its tariff as well as its rate component, ``server.core.events``; a new rate component names its tariff) and
    with the list's poll rate."""
    conds: list[ColumnElement[bool]] = []
    if change.programs:
        tariffs = select(Program.id).where(Program.id.in_(change.programs), Program.kind == "price")
        enrolled = select(ProgramMember.end_device_id).where(ProgramMember.program_id.in_(tariffs))
        conds.append(Sep2Subscription.subject_device_id.in_(enrolled))
    if change.devices:
        conds.append(Sep2Subscription.subject_device_id.in_(change.devices))
    return any_of(conds, change, "TariffProfileList")


@subscribable("tp-list", "/edev/{e}/tp", affected=_tariff_list_affected, is_list=True)
async def render_tariff_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """TariffProfileList: the tariffs the device is enrolled in."""
    device = await device_in_scope(ctx.session, scope, params.e or 0)
    found = await programs.device_member_programs(ctx.session, device.id, "price")
    rate = await render.poll_rate(ctx, "TariffProfileList")
    items = [
        render_tariff(ctx.pen, device, t, *await _tariff_counts(ctx.session, t, ctx.now))
        for t in found[params.start : params.start + params.limit]
    ]
    return list_element(
        "TariffProfileList", f"/edev/{device.id}/tp", items, len(found), rate, subscribable=True
    )


@routes.get("/edev/{e}/tp")
@sep2_handler
async def get_tariff_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"))
    async with runtime(request).store.sessions() as session:
        return reply(await render_tariff_list(render_ctx(request, session), scope_of(request), params))


@routes.get("/edev/{e}/tp/{t}")
@sep2_handler
async def get_tariff(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, t = await tariff_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "t")
        )
        n = await _tariff_counts(session, t, utcnow())
    return reply(render_tariff(render.pen(request), device, t, *n))


@routes.get("/edev/{e}/tp/{t}/rc")
@sep2_handler
async def get_rate_list(request: web.Request) -> web.Response:
    pg = page(request)
    now = utcnow()
    async with runtime(request).store.sessions() as session:
        device, t = await tariff_in_scope(
            session, scope_of(request), path_int(request, "e"), path_int(request, "t")
        )
        rates = await programs.list_programs(session, "rate", t.id)
        items = []
        for r in pg.slice(rates):
            items.append(render_rate(render.pen(request), device, r, *await events.counts(session, r, now)))
    return reply(list_element("RateComponentList", f"/edev/{device.id}/tp/{t.id}/rc", items, len(rates)))


@routes.get("/edev/{e}/tp/{t}/rc/{r}")
@sep2_handler
async def get_rate(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, r = await _rate(request, session)
        n = await events.counts(session, r, utcnow())
    return reply(render_rate(render.pen(request), device, r, *n))


@routes.get("/edev/{e}/tp/{t}/rc/{r}/rt")
@sep2_handler
async def get_reading_type(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device, r = await _rate(request, session)
    a = r.attrs
    return reply(
        xml.E(
            "ReadingType",
            {"href": f"{rate_href(device, r)}/rt"},
            xml.leaf("accumulationBehaviour", 4),  # delta data
            xml.leaf("commodity", 1),  # electricity secondary metered
            xml.leaf("flowDirection", a.get("flowDirection", 1)),
            xml.leaf("kind", 12 if a.get("uom", 72) in (72, 71, 73) else 37),  # energy / power
            xml.leaf("powerOfTenMultiplier", a.get("powerOfTenMultiplier", 0)),
            xml.leaf("uom", a.get("uom", 72)),
        )
    )


def _tti_list_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = []
    if change.programs:
        conds.append(Sep2Subscription.program_id.in_(change.programs))
    return any_of(conds, change, "TimeTariffIntervalList")


@subscribable("tti-list", "/edev/{e}/tp/{t}/rc/{p}/tti", affected=_tti_list_affected, is_list=True)
async def render_tti_list_resource(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """TimeTariffIntervalList of a rate component (``p``) of a tariff (``t``) assigned to the device."""
    device, _, rate = await rate_in_scope(ctx.session, scope, params.e or 0, params.t or 0, params.p or 0)
    return await render_tti_list(ctx, device, rate, params.start, params.limit, False, params.after)


@routes.get("/edev/{e}/tp/{t}/rc/{r}/tti")
@sep2_handler
async def get_tti_list(request: web.Request) -> web.Response:
    params = page_params(
        page(request), e=path_int(request, "e"), t=path_int(request, "t"), p=path_int(request, "r")
    )
    async with runtime(request).store.sessions() as session:
        return reply(await render_tti_list_resource(render_ctx(request, session), scope_of(request), params))


@subscribable("ctti-list", "/edev/{e}/tp/{p}/ctti", affected=_tti_list_affected, is_list=True)
async def render_combined_list_resource(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    """The combined TimeTariffIntervalList of a tariff (``p``) assigned to the device (an interval's change
    names its tariff as well as its rate component, ``server.core.events``)."""
    device, tariff = await tariff_in_scope(ctx.session, scope, params.e or 0, params.p or 0)
    return await render_combined_list(ctx, device, tariff, params.start, params.limit, params.after)


@routes.get("/edev/{e}/tp/{t}/ctti")
@sep2_handler
async def get_combined_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"), p=path_int(request, "t"))
    async with runtime(request).store.sessions() as session:
        return reply(
            await render_combined_list_resource(render_ctx(request, session), scope_of(request), params)
        )


@routes.get("/edev/{e}/tp/{t}/rc/{r}/acttti")
@sep2_handler
async def get_active_tti_list(request: web.Request) -> web.Response:
    return await events.event_list_reply(request, _rate, render_tti_list, active_only=True)


async def _tti(request: web.Request):
    async with runtime(request).store.sessions() as session:
        device, r = await _rate(request, session)
        found = await core_events.evaluated(session, [r], utcnow())
    i = path_int(request, "i")
    for e, ev in found:
        if e.id == i:
            return device, r, e, ev
    raise NotFound("no such TimeTariffInterval")


@routes.get("/edev/{e}/tp/{t}/rc/{r}/tti/{i}")
@sep2_handler
async def get_tti(request: web.Request) -> web.Response:
    device, r, e, ev = await _tti(request)
    return reply(render_tti(render.pen(request), device, r, e, ev))


@routes.get("/edev/{e}/tp/{t}/rc/{r}/tti/{i}/cti")
@sep2_handler
async def get_cti_list(request: web.Request) -> web.Response:
    pg = page(request)
    device, r, e, _ = await _tti(request)
    href = f"{rate_href(device, r)}/tti/{e.id}/cti"
    tiers = e.payload.get("tiers", [])
    items = [
        render_cti(href, k, t) for k, t in list(enumerate(tiers, start=1))[pg.start : pg.start + pg.limit]
    ]
    return reply(list_element("ConsumptionTariffIntervalList", href, items, len(tiers)))


@routes.get("/edev/{e}/tp/{t}/rc/{r}/tti/{i}/cti/{k}")
@sep2_handler
async def get_cti(request: web.Request) -> web.Response:
    device, r, e, _ = await _tti(request)
    tiers = e.payload.get("tiers", [])
    k = path_int(request, "k")
    if not 1 <= k <= len(tiers):
        raise NotFound("no such ConsumptionTariffInterval")
    return reply(render_cti(f"{rate_href(device, r)}/tti/{e.id}/cti", k, tiers[k - 1]))
