"""2030.5 FunctionSetAssignments: what a device is assigned. Each FunctionSetAssignments links the DER programs
assigned through it (``server.sep2.derp``) and the device's DR programs and tariffs (``server.sep2.drlc``,
``server.sep2.pricing``).

    /edev/{e}/fsa, /edev/{e}/fsa/{f}        FunctionSetAssignmentsList / FunctionSetAssignments
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import programs
from server.core.errors import NotFound
from server.sep2 import xml
from server.sep2.common import (
    MRID_FSA,
    Page,
    device_in_scope,
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
from server.store.models import EndDevice, Sep2Fsa, Sep2FsaProgram
from server.store.paging import count_rows

routes = web.RouteTableDef()


@routes.get("/edev/{e}/fsa")
@sep2_handler
async def get_fsa_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        return reply(await render_fsa_list(request, session, device, pg))


async def render_fsa_list(request: Any, session: AsyncSession, device: EndDevice, pg: Page) -> etree._Element:
    """``/edev/{e}/fsa``, one page of it (the GET and its Subscription notifications)."""
    # the FSAs of one device in id order, as server.core.programs.device_fsas lists them, paged in SQL
    query = select(Sep2Fsa).where(Sep2Fsa.end_device_id == device.id).order_by(Sep2Fsa.id)
    fsas, total = await pg.fetch(session, query)
    rate = await poll_rate(request, session, "FunctionSetAssignmentsList")
    items = [await render_fsa(request, session, device, f) for f in fsas]
    return list_element(
        "FunctionSetAssignmentsList", f"/edev/{device.id}/fsa", items, total, rate, subscribable=True
    )


async def render_fsa(request: web.Request, session: AsyncSession, device: EndDevice, fsa) -> etree._Element:
    href = f"/edev/{device.id}/fsa/{fsa.id}"
    n = await count_rows(session, select(Sep2FsaProgram.program_id).where(Sep2FsaProgram.fsa_id == fsa.id))
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
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        fsa = next(
            (f for f in await programs.device_fsas(session, device.id) if f.id == path_int(request, "f")),
            None,
        )
        if fsa is None:
            raise NotFound("no such FunctionSetAssignments")
        return reply(await render_fsa(request, session, device, fsa))
