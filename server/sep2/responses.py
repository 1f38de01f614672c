"""2030.5 Response function set for DER controls: the one ResponseSet whose ResponseList is every DERControl's
``replyTo``. Devices POST a Response / DERControlResponse naming a control sent to them; they and their
aggregator read back the responses of the devices they may reach. (Responses to price and DRLC events go to
``/edev/{e}/rsp``, ``server.sep2.events``.)

    /rsps, /rsps/1, /rsps/1/rsp[/{r}]       ResponseSetList / ResponseSet / ResponseList (POST) / Response
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from server.core import events as core_events
from server.core.errors import Invalid, NotFound
from server.core.metering import from_epoch
from server.sep2 import editions, xml
from server.sep2.common import (
    MRID_CONTROL,
    MRID_RSET,
    created,
    epoch,
    list_element,
    mrid,
    page,
    parse_control_mrid,
    path_int,
    read_body,
    reply,
    scope_of,
    sep2_handler,
    sessions,
    visible_device,
    visible_device_ids,
)
from server.sep2.render import lfdi_of, pen, poll_rate, render_ctx
from server.store.models import EndDevice, EventResponse
from server.store.types import utcnow

routes = web.RouteTableDef()
RESPONSE_SET_ID = 1


def render_response_set(request: web.Request) -> etree._Element:
    href = f"/rsps/{RESPONSE_SET_ID}"
    return xml.E(
        "ResponseSet",
        {"href": href},
        xml.leaf("mRID", mrid(MRID_RSET, RESPONSE_SET_ID, pen(request))),
        xml.leaf("description", "DER control responses"),
        xml.link("ResponseListLink", f"{href}/rsp"),
    )


@routes.get("/rsps")
@sep2_handler
async def get_response_set_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        scope_of(request)
        rate = await poll_rate(render_ctx(request, session), "ResponseSetList")
    return reply(list_element("ResponseSetList", "/rsps", pg.slice([render_response_set(request)]), 1, rate))


@routes.get("/rsps/{r}")
@sep2_handler
async def get_response_set(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    return reply(render_response_set(request))


def render_response(r, pen_: int, edition: str = xml.EDITION_2018) -> etree._Element:
    """A stored DER control response; a 2023 reader also gets the 2023 ``modesResponded`` the device sent
    (a 2018 reader never: its schema has no such element)."""
    modes = r.modes_responded if edition == xml.EDITION_2023 else None
    return xml.E(
        "DERControlResponse",
        {"href": f"/rsps/{RESPONSE_SET_ID}/rsp/{r.id}"},
        xml.leaf("createdDateTime", epoch(r.created_date_time)),
        xml.leaf("endDeviceLFDI", r.lfdi),
        xml.leaf("status", r.status),
        xml.leaf("subject", mrid(MRID_CONTROL, r.event_id, pen_)),
        None if modes is None else xml.leaf("modesResponded", f"{modes:08X}"),
    )


def _in_edition(root: etree._Element, edition: str) -> etree._Element:
    """A 2023 document says so (``schemaVer``) when it carries a 2023 element."""
    if edition == xml.EDITION_2023 and root.find(f".//{xml.q('modesResponded')}") is not None:
        root.set("schemaVer", xml.SCHEMA_VERSION[xml.EDITION_2023])
    return root


@routes.get("/rsps/{r}/rsp")
@sep2_handler
async def get_response_list(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    pg = page(request)
    async with sessions(request)() as session:
        scope = scope_of(request)
        found, total = await pg.fetch(
            session, core_events.responses_query(end_device_ids=visible_device_ids(scope), kind="der")
        )
        edition = await editions.of_request(request, session)
    items = []
    for r in found:
        el = render_response(r, pen(request), edition)
        el.tag = xml.q("Response")  # a Response inside a ResponseList; typed when it carries 2023 fields
        if el.find(xml.q("modesResponded")) is not None:
            el.set(xml.XSI_TYPE, "DERControlResponse")
        items.append(el)
    listed = list_element("ResponseList", f"/rsps/{RESPONSE_SET_ID}/rsp", items, total)
    return reply(_in_edition(listed, edition))


@routes.get("/rsps/{r}/rsp/{i}")
@sep2_handler
async def get_response(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    async with sessions(request)() as session:
        scope = scope_of(request)
        r = await session.get(EventResponse, path_int(request, "i"))
        if r is not None and r.protocol != "2030.5":
            r = None
        visible = r is not None and await session.scalar(
            visible_device_ids(scope).where(EndDevice.id == r.end_device_id)
        )
        if r is None or not visible:
            raise NotFound("no such Response")
        edition = await editions.of_request(request, session)
    return reply(_in_edition(render_response(r, pen(request), edition), edition))


def modes_responded(body: etree._Element) -> int | None:
    """IEEE 2030.5-2023 DERControlResponse modesResponded (DERControlType, hexBinary32), or None."""
    value = xml.text(body, "modesResponded")
    return None if value is None else int(value, 16)


@routes.post("/rsps/{r}/rsp")
@sep2_handler
async def post_response(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    body = await read_body(request, "Response", "DERControlResponse")
    lfdi = lfdi_of(xml.text(body, "endDeviceLFDI") or "")
    status = xml.integer(body, "status")
    if status is None:
        raise Invalid("Response status is required")
    core_events.check_status(status)
    control_id = parse_control_mrid(xml.text(body, "subject") or "", pen(request))
    if control_id is None:
        raise Invalid("subject is not the mRID of a DERControl of this server")
    created_at = xml.integer(body, "createdDateTime")
    created_dt = from_epoch(created_at, "createdDateTime") if created_at is not None else utcnow()
    async with sessions(request).begin() as session:
        scope = scope_of(request)
        device = await visible_device(session, scope, lfdi)
        if device is None:
            raise Invalid("endDeviceLFDI is not an EndDevice you may respond for")
        control = await core_events.der_event_of_device(session, device.id, control_id)
        if control is None:
            raise Invalid("subject is not a DERControl sent to this EndDevice")
        r = await core_events.record_response(
            session,
            control,
            core_events.DeviceAnswer(device.id, lfdi, status, created_dt, modes_responded(body)),
        )
        href = f"/rsps/{RESPONSE_SET_ID}/rsp/{r.id}"
    return created(href)
