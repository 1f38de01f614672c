"""2030.5 Metering Mirror: the MirrorUsagePoints a client creates and the MirrorMeterReadings it posts to them.
Readings go to the telemetry store through ``server.sep2.metering`` in the same transaction (a reading that fails
a check refuses the whole POST); the mirrored data reads back as the Metering function set there (``/upt``).

    /mup, /mup/{m}                          MirrorUsagePointList (GET, POST) / MirrorUsagePoint (GET, POST
                                            MirrorMeterReading[List], DELETE)
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import sep2_device as devres
from server.core.errors import Forbidden, Invalid, NotFound
from server.core.scope import Scope
from server.sep2 import editions, metering, xml
from server.sep2.common import (
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
    visible_device,
)
from server.sep2.render import for_storage, lfdi_of, poll_rate, post_rate, render_ctx, with_href
from server.store.models import Sep2Mup

routes = web.RouteTableDef()


def render_mup(
    mup: Sep2Mup, post_rate_s: int, edition: str, strict: bool, top: bool = True
) -> etree._Element:
    root = xml.for_edition(with_href(mup.body, f"/mup/{mup.id}"), edition, strict)
    if not top:
        root.attrib.pop("schemaVer", None)  # declared by a document's top-level element only
    rate = root.find(xml.q("postRate"))
    if rate is None:
        root.append(xml.leaf("postRate", post_rate_s))
    return root


@routes.get("/mup")
@sep2_handler
async def get_mup_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        scope = scope_of(request)
        found, total = await pg.fetch(session, devres.mups_query(scope), Sep2Mup.changed_at)
        rate = await poll_rate(render_ctx(request, session), "MirrorUsagePointList")
        prate = await post_rate(render_ctx(request, session), "MirrorUsagePoint")
        edition = await editions.of_request(request, session)
    items = [render_mup(m, prate, edition, _strict(request), top=False) for m in found]
    return reply(list_element("MirrorUsagePointList", "/mup", items, total, rate))


@routes.post("/mup")
@sep2_handler
async def post_mup(request: web.Request) -> web.Response:
    body = await read_body(request, "MirrorUsagePoint")
    device_lfdi = lfdi_of(xml.text(body, "deviceLFDI") or "")
    mup_mrid = (xml.text(body, "mRID") or "").upper()
    mmrs = [(xml.text(m, "mRID") or "").upper() for m in body.findall(xml.q("MirrorMeterReading"))]
    async with sessions(request).begin() as session:
        scope = scope_of(request)
        if await visible_device(session, scope, device_lfdi) is None:
            raise Forbidden("deviceLFDI is not an EndDevice you may mirror")
        mup, is_new = await devres.upsert_mup(
            session, scope.lfdi, device_lfdi, mup_mrid, for_storage(body), mmrs
        )
        await metering.ingest(session, device_lfdi, mup.body, body)  # readings -> telemetry
        href = f"/mup/{mup.id}"
    return web.Response(status=201 if is_new else 204, headers={"Location": href})


async def mup_in_scope(session: AsyncSession, scope: Scope, mup_id: int) -> Sep2Mup:
    mup = await devres.owned_mup(session, scope, mup_id)
    if mup is None:
        raise NotFound("no such MirrorUsagePoint")
    return mup


@routes.get("/mup/{m}")
@sep2_handler
async def get_mup(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        mup = await mup_in_scope(session, scope_of(request), path_int(request, "m"))
        prate = await post_rate(render_ctx(request, session), "MirrorUsagePoint")
        edition = await editions.of_request(request, session)
    return reply(render_mup(mup, prate, edition, _strict(request)))


def _strict(request: web.Request) -> bool:
    return runtime(request).settings.sep2.profile == "csip-aus"


@routes.post("/mup/{m}")
@sep2_handler
async def post_readings(request: web.Request) -> web.Response:
    body = await read_body(request, "MirrorMeterReading", "MirrorMeterReadingList")
    readings = (
        [body] if xml.local_name(body) == "MirrorMeterReading" else body.findall(xml.q("MirrorMeterReading"))
    )
    async with sessions(request).begin() as session:
        mup = await mup_in_scope(session, scope_of(request), path_int(request, "m"))
        known = metering.declared_types(mup.body)  # the mRIDs stored with it, parsed once per stored body
        for r in readings:
            if (xml.text(r, "mRID") or "").upper() not in known:
                raise Invalid(
                    f"MirrorMeterReading {xml.text(r, 'mRID')} is not part of this MirrorUsagePoint"
                )
        stored = await metering.ingest(
            session, mup.device_lfdi, mup.body, body
        )  # readings -> telemetry, checked
        values = any(
            xml.find(r, "Reading") is not None or xml.find(r, "MirrorReadingSet") is not None
            for r in readings
        )
        if stored or not values:
            # a retry whose readings are all stored already leaves no second copy of the post either
            await devres.add_readings(session, mup, etree.tostring(body, encoding="unicode"), len(readings))
    return web.Response(status=201, headers={"Location": f"/mup/{mup.id}"})


@routes.delete("/mup/{m}")
@sep2_handler
async def delete_mup(request: web.Request) -> web.Response:
    async with sessions(request).begin() as session:
        mup = await mup_in_scope(session, scope_of(request), path_int(request, "m"))
        await devres.delete_mup(session, mup)
    return no_content()
