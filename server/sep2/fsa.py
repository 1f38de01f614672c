"""2030.5 FunctionSetAssignments: what a device is assigned. Each FunctionSetAssignments links the DER programs
assigned through it (``server.sep2.derp``) and the device's DR programs and tariffs (``server.sep2.drlc``,
``server.sep2.pricing``).

    /edev/{e}/fsa, /edev/{e}/fsa/{f}        FunctionSetAssignmentsList / FunctionSetAssignments
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree
from sqlalchemy import ColumnElement, select

from server.core import programs
from server.core.changes import Change
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.core.scope import Scope
from server.sep2 import xml
from server.sep2.common import (
    MRID_FSA,
    Page,
    list_element,
    mrid,
    page,
    path_int,
    reply,
    scope_of,
    sep2_handler,
    sessions,
)
from server.sep2.render import RenderCtx, kept_reply, poll_rate, render_ctx
from server.sep2.resources import Params, any_of, page_params, subscribable
from server.store.models import EndDevice, Sep2Fsa, Sep2FsaProgram, Sep2Subscription
from server.store.paging import count_rows

routes = web.RouteTableDef()


def _fsa_list_affected(change: Change) -> ColumnElement[bool] | None:
    conds: list[ColumnElement[bool]] = (
        [Sep2Subscription.subject_device_id.in_(change.devices)] if change.devices else []
    )
    return any_of(conds, change, "FunctionSetAssignmentsList", "FunctionSetAssignments")


@subscribable("fsa-list", "/edev/{e}/fsa", affected=_fsa_list_affected, is_list=True)
async def render_fsa_list(ctx: RenderCtx, scope: Scope, params: Params) -> etree._Element:
    device = await device_in_scope(ctx.session, scope, params.e or 0)
    # the FSAs of one device in id order, as server.core.programs.device_fsas lists them, paged in SQL
    query = select(Sep2Fsa).where(Sep2Fsa.end_device_id == device.id).order_by(Sep2Fsa.id)
    fsas, total = await Page(params.start, params.limit, params.after).fetch(ctx.session, query)
    rate = await poll_rate(ctx, "FunctionSetAssignmentsList")
    items = [await render_fsa(ctx, device, f) for f in fsas]
    return list_element(
        "FunctionSetAssignmentsList", f"/edev/{device.id}/fsa", items, total, rate, subscribable=True
    )


@routes.get("/edev/{e}/fsa")
@sep2_handler
async def get_fsa_list(request: web.Request) -> web.Response:
    params = page_params(page(request), e=path_int(request, "e"))
    return await kept_reply(request, lambda ctx: render_fsa_list(ctx, scope_of(request), params))


async def render_fsa(ctx: RenderCtx, device: EndDevice, fsa) -> etree._Element:
    href = f"/edev/{device.id}/fsa/{fsa.id}"
    n = await count_rows(
        ctx.session, select(Sep2FsaProgram.program_id).where(Sep2FsaProgram.fsa_id == fsa.id)
    )
    return xml.E(
        "FunctionSetAssignments",
        {"href": href},
        # pricing and DRLC are per device (server.sep2.drlc / server.sep2.pricing)
        xml.link("DemandResponseProgramListLink", f"/edev/{device.id}/drp"),
        xml.link("DERProgramListLink", f"{href}/derp", n),
        xml.link("TariffProfileListLink", f"/edev/{device.id}/tp"),
        xml.link("TimeLink", "/tm"),
        xml.leaf("mRID", mrid(MRID_FSA, fsa.id, ctx.pen)),
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
        return reply(await render_fsa(render_ctx(request, session), device, fsa))
