"""2030.5 FunctionSetAssignments: what a device is assigned. Each FunctionSetAssignments links the DER programs
assigned through it (``server.sep2.derp``) and the device's DR programs and tariffs (``server.sep2.drlc``,
``server.sep2.pricing``).

    /edev/{e}/fsa, /edev/{e}/fsa/{f}        FunctionSetAssignmentsList / FunctionSetAssignments
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import programs
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.sep2 import xml
from server.sep2.common import (
    MRID_FSA,
    list_element,
    mrid,
    page,
    path_int,
    reply,
    scope_of,
    sep2_handler,
    sessions,
)
from server.sep2.render import pen, poll_rate
from server.store.models import EndDevice

routes = web.RouteTableDef()


@routes.get("/edev/{e}/fsa")
@sep2_handler
async def get_fsa_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        fsas = await programs.device_fsas(session, device.id)
        rate = await poll_rate(request, session, "FunctionSetAssignmentsList")
        items = [await render_fsa(request, session, device, f) for f in pg.slice(fsas)]
    return reply(
        list_element(
            "FunctionSetAssignmentsList", f"/edev/{device.id}/fsa", items, len(fsas), rate, subscribable=True
        )
    )


async def render_fsa(request: web.Request, session: AsyncSession, device: EndDevice, fsa) -> etree._Element:
    href = f"/edev/{device.id}/fsa/{fsa.id}"
    n = len(await programs.fsa_programs(session, fsa.id))
    return xml.E(
        "FunctionSetAssignments",
        {"href": href},
        # pricing and DRLC are per device (server.sep2.drlc / server.sep2.pricing)
        xml.link("DemandResponseProgramListLink", f"/edev/{device.id}/drp"),
        xml.link("DERProgramListLink", f"{href}/derp", n),
        xml.link("TariffProfileListLink", f"/edev/{device.id}/tp"),
        xml.link("TimeLink", "/tm"),
        xml.leaf("mRID", mrid(MRID_FSA, fsa.id, pen(request))),
        xml.leaf("description", fsa.title[:32]),
    )


@routes.get("/edev/{e}/fsa/{f}")
@sep2_handler
async def get_fsa(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        fsa = next(
            (f for f in await programs.device_fsas(session, device.id) if f.id == path_int(request, "f")),
            None,
        )
        if fsa is None:
            raise NotFound("no such FunctionSetAssignments")
        return reply(await render_fsa(request, session, device, fsa))
