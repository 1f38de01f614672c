"""2030.5 DeviceCapability and Time: where a client starts (the links to every list it may read) and the server's
clock.

    /dcap                                   DeviceCapability
    /tm                                     Time
"""

from __future__ import annotations

import time

from aiohttp import web
from lxml import etree

from server.core import sep2_device as devres
from server.core import sep2_time
from server.core.scope import Scope
from server.runtime import CACHE_TOKEN
from server.sep2 import xml
from server.sep2.common import count_visible_devices, reply, runtime, scope_of, sep2_handler, sessions
from server.sep2.render import RenderCtx, poll_rate, render_ctx
from server.store.paging import count_rows

routes = web.RouteTableDef()


# ------------------------------------------------------------------------------------------- DeviceCapability
@routes.get("/dcap")
@sep2_handler
async def get_dcap(request: web.Request) -> web.Response:
    scope = scope_of(request)

    async def build() -> bytes:
        async with sessions(request)() as session:
            return xml.serialize(await render_dcap(render_ctx(request, session), scope))

    # kept per scope until a change record drops it: enrolments, MUPs and poll rates are what it shows
    body = await runtime(request).cache.representation(("dcap", scope), request[CACHE_TOKEN], build)
    return web.Response(body=body, content_type=xml.MEDIA_TYPE)


async def render_dcap(ctx: RenderCtx, scope: Scope) -> etree._Element:
    n_edev = await count_visible_devices(ctx.session, scope)
    n_mup = await count_rows(ctx.session, devres.mups_query(scope))
    rate = await poll_rate(ctx, "DeviceCapability")
    return xml.E(
        "DeviceCapability",
        {"href": "/dcap", "pollRate": rate},
        xml.link("ResponseSetListLink", "/rsps", 1),
        xml.link("TimeLink", "/tm"),
        xml.link("UsagePointListLink", "/upt", n_mup),  # mirrored data read back (server.sep2.metering)
        xml.link("EndDeviceListLink", "/edev", n_edev),
        xml.link("MirrorUsagePointListLink", "/mup", n_mup),
    )


# ------------------------------------------------------------------------------------------------------- Time
@routes.get("/tm")
@sep2_handler
async def get_time(request: web.Request) -> web.Response:
    scope_of(request)  # a client whose access staff revoked reads nothing, the clock included
    now = int(time.time())
    local = sep2_time.local_time(runtime(request).settings.sep2.time_zone, now)
    async with sessions(request)() as session:
        rate = await poll_rate(render_ctx(request, session), "Time")
    el = xml.E(
        "Time",
        {"href": "/tm", "pollRate": rate},
        xml.leaf("currentTime", now),
        xml.leaf("dstEndTime", local.dst_end),
        xml.leaf("dstOffset", local.dst_offset),
        xml.leaf("dstStartTime", local.dst_start),
        xml.leaf("localTime", local.local_time),
        xml.leaf("quality", 7),  # 7: the server's clock is NTP-disciplined ("intentionally uncoordinated")
        xml.leaf("tzOffset", local.tz_offset),
    )
    return reply(el)
