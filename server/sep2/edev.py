"""2030.5 EndDevice, Registration and (CSIP-AUS) ConnectionPoint: the devices a client may reach, in-band
registration, the PIN staff enrolled, and the site's connection point identifier.

    /edev                                   EndDeviceList (GET; POST = in-band registration)
    /edev/{e}                               EndDevice (GET, DELETE)
    /edev/{e}/rg                            Registration (PIN)
    /edev/{e}/cp                            ConnectionPoint (CSIP-AUS; GET, PUT)

The EndDevice links the function sets reached through it: DER (``server.sep2.der``), FunctionSetAssignments
(``server.sep2.fsa``), LogEvents and Subscriptions.
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.core import changes
from server.core import sep2_device as devres
from server.core.changes import Change
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.parties import delete_device, device_in_scope, ensure_aggregator
from server.core.scope import Scope
from server.sep2 import editions, xml
from server.sep2.common import (
    SUBSCRIBABLE,
    Page,
    created,
    epoch,
    list_element,
    no_content,
    page,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
    sessions,
    visible_devices_page,
)
from server.sep2.render import (
    RenderCtx,
    for_storage,
    kept_reply,
    lfdi_of,
    poll_rate,
    post_rate,
    render_ctx,
    with_href,
)
from server.sep2.resources import Params, any_of, page_params, subscribable
from server.store.models import Aggregator, EndDevice, Sep2Fsa, Sep2Subscription
from server.store.paging import count_rows

routes = web.RouteTableDef()


# -------------------------------------------------------------------------------------------------- EndDevice
async def render_edev(
    session: AsyncSession, scope: Scope, device: EndDevice, post_rate_s: int, n_fsa: int | None = None
) -> etree._Element:
    """``n_fsa``: the device's FunctionSetAssignments count when the caller has it (a list page counts them for
    all its devices in one query). An aggregator subscribes through its own EndDevice (CSIP-AUS,
    ``core.parties.ensure_aggregator``): the EndDevices of its devices link no SubscriptionList for it."""
    subscribes_here = scope.aggregator_id is None or device.lfdi == scope.lfdi
    href = f"/edev/{device.id}"
    if n_fsa is None:
        n_fsa = await count_rows(session, select(Sep2Fsa.id).where(Sep2Fsa.end_device_id == device.id))
    return xml.E(
        "EndDevice",
        {"href": href, "subscribable": SUBSCRIBABLE},
        xml.link("DERListLink", f"{href}/der", 1),
        xml.leaf("deviceCategory", device.device_category or None),
        xml.leaf("lFDI", device.lfdi),
        xml.link("LogEventListLink", f"{href}/lel"),  # server.sep2.logevents
        xml.leaf("sFDI", device.sfdi),
        xml.leaf("changedTime", epoch(device.changed_at)),
        xml.leaf("enabled", device.enabled),
        xml.link("FunctionSetAssignmentsListLink", f"{href}/fsa", n_fsa),
        xml.leaf("postRate", post_rate_s),
        xml.link("RegistrationLink", f"{href}/rg") if device.pin is not None else None,
        xml.link("SubscriptionListLink", f"{href}/sub")
        if subscribes_here
        else None,  # server.sep2.subscriptions
        xml.link("csipaus:ConnectionPointLink", f"{href}/cp"),
    )


def _edev_list_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = []
    if change.devices:
        # an EndDeviceList changes for the device itself and for the aggregator it is registered under
        own = select(EndDevice.lfdi).where(EndDevice.id.in_(change.devices))
        agg = (
            select(Aggregator.lfdi)
            .join(EndDevice, EndDevice.aggregator_id == Aggregator.id)
            .where(EndDevice.id.in_(change.devices))
        )
        conds.append(or_(Sep2Subscription.owner_lfdi.in_(own), Sep2Subscription.owner_lfdi.in_(agg)))
    if change.objects.get("aggregator"):
        named = select(Aggregator.lfdi).where(Aggregator.id.in_(change.objects["aggregator"]))
        conds.append(Sep2Subscription.owner_lfdi.in_(named))
    return any_of(conds, change, "EndDeviceList", "EndDevice")


@subscribable("edev-list", "/edev", affected=_edev_list_affected, is_list=True)
async def render_edev_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    found, total = await visible_devices_page(
        ctx.session, scope, Page(params.start, params.limit, params.after)
    )
    rate = await poll_rate(ctx, "EndDeviceList")
    prate = await post_rate(ctx, "EndDevice")
    counted = await ctx.session.execute(
        select(Sep2Fsa.end_device_id, func.count())
        .where(Sep2Fsa.end_device_id.in_([d.id for d in found]))
        .group_by(Sep2Fsa.end_device_id)
    )
    fsas = {device_id: n for device_id, n in counted.all()}
    items = [await render_edev(ctx.session, scope, d, prate, fsas.get(d.id, 0)) for d in found]
    return list_element("EndDeviceList", "/edev", items, total, rate, subscribable=True)


@routes.get("/edev")
@sep2_handler
async def get_edev_list(request: web.Request) -> web.Response:
    params = page_params(page(request))
    return await kept_reply(request, lambda ctx: render_edev_list(ctx, scope_of(request), params))


def _edev_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = (
        [Sep2Subscription.subject_device_id.in_(change.devices)] if change.devices else []
    )
    return any_of(conds, change, "EndDevice")


@subscribable("edev", "/edev/{e}", affected=_edev_affected, is_list=False)
async def render_end_device(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    device = await device_in_scope(ctx.session, scope, params.e or 0)
    return await render_edev(ctx.session, scope, device, await post_rate(ctx, "EndDevice"))


@routes.post("/edev")
@sep2_handler
async def post_edev(request: web.Request) -> web.Response:
    """In-band registration: a device registers itself; an aggregator registers devices under itself."""
    settings = runtime(request).settings
    body = await read_body(request, "EndDevice")
    lfdi_text = xml.text(body, "lFDI")
    if lfdi_text is None:
        raise Invalid("EndDevice lFDI is required for registration")
    lfdi = lfdi_of(lfdi_text)
    sfdi = xml.integer(body, "sFDI")
    if sfdi != pki.sfdi_from_lfdi(lfdi):
        raise Invalid(f"sFDI {sfdi} does not match lFDI (expected {pki.sfdi_from_lfdi(lfdi)})")
    category = xml.text(body, "deviceCategory") or ""
    async with sessions(request).begin() as session:
        scope = scope_of(request)
        existing = await session.scalar(select(EndDevice).where(EndDevice.lfdi == lfdi))
        if existing is not None:
            raise Conflict(f"an EndDevice with lFDI {lfdi} is already registered")
        if settings.sep2.registration == "out-of-band":
            raise Forbidden(
                "in-band registration is closed on this server; ask the utility to enroll the device"
            )
        if lfdi != scope.lfdi and scope.aggregator_id is None:
            raise Forbidden("the lFDI does not match the client certificate")
        device = EndDevice(
            lfdi=lfdi, sfdi=sfdi, device_category=category[:16], registered_by="in-band", name=""
        )
        if lfdi != scope.lfdi and scope.aggregator_id is not None:
            device.aggregator_id = (await ensure_aggregator(session, scope.lfdi)).id
        session.add(device)
        await session.flush()
        # the registering client's scope, lists and DeviceCapability count it now (and subscribers hear of it)
        changes.record(session, devices=[device.id])
        href = f"/edev/{device.id}"
    return created(href)


@routes.get("/edev/{e}")
@sep2_handler
async def get_edev(request: web.Request) -> web.Response:
    params = Params(e=path_int(request, "e"))
    return await kept_reply(request, lambda ctx: render_end_device(ctx, scope_of(request), params))


@routes.delete("/edev/{e}")
@sep2_handler
async def delete_edev(request: web.Request) -> web.Response:
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        await delete_device(session, device.id)  # recorded as a removal, as staff's is
    return no_content()


@routes.get("/edev/{e}/rg")
@sep2_handler
async def get_registration(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        if device.pin is None:
            raise NotFound("no Registration for this EndDevice")
        rate = await poll_rate(render_ctx(request, session), "Registration")
    el = xml.E(
        "Registration",
        {"href": f"/edev/{device.id}/rg", "pollRate": rate},
        xml.leaf("dateTimeRegistered", epoch(device.created_at)),
        xml.leaf("pIN", device.pin),
    )
    return reply(el)


# ------------------------------------------------------------------------------------------- ConnectionPoint
@routes.get("/edev/{e}/cp")
@sep2_handler
async def get_cp(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        stored = await devres.get_resource(session, device.id, "cp")
        served = (
            None
            if stored is None
            else await editions.as_stored(request, session, with_href(stored.body, f"/edev/{device.id}/cp"))
        )
    if served is None:
        el = xml.E(
            "csipaus:ConnectionPoint",
            {"href": f"/edev/{device.id}/cp"},
            xml.leaf("csipaus:connectionPointId", ""),
        )
        return reply(el)
    return reply(served)


@routes.put("/edev/{e}/cp")
@sep2_handler
async def put_cp(request: web.Request) -> web.Response:
    body = await read_body(request, "ConnectionPoint")
    cp_id = xml.text(body, "csipaus:connectionPointId") or ""
    if not valid_nmi(cp_id):
        raise Invalid(
            "connectionPointId must be a National Metering Identifier (10 characters + check digit)"
        )
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        await devres.put_resource(session, device.id, "cp", for_storage(body))
    href = f"/edev/{device.id}/cp"
    # 204 as for every PUT, with a Location: some clients (cactus-client) re-read the resource from it
    return web.Response(status=204, headers={"Location": href})


def valid_nmi(nmi: str) -> bool:
    """An Australian NMI (what CSIP-AUS puts in connectionPointId): 10 characters of A-Z (not I or O) and
    digits, optionally followed by the AEMO checksum digit (Luhn-style over the character codes)."""
    nmi = nmi.upper()
    if len(nmi) not in (10, 11) or not all(
        ch.isdigit() or ("A" <= ch <= "Z" and ch not in "IO") for ch in nmi[:10]
    ):
        return False
    if len(nmi) == 10:
        return True
    total, double = 0, True
    for ch in reversed(nmi[:10]):
        value = ord(ch) * 2 if double else ord(ch)
        total += sum(int(d) for d in str(value))
        double = not double
    return nmi[10] == str((10 - total % 10) % 10)
