"""EiReport: report registration both ways, report requests, report values into telemetry, cancellation.

VEN                                             VTN
 |-- oadrRegisterReport (METADATA_*) ------------>|  offered rIDs stored (unit, scale, sampling range)
 |<-- oadrRegisteredReport (oadrReportRequest*) --|  requests for the report names in configuration
 |-- oadrCreatedReport (pending requestIDs) ----->|  requests -> active
 |<-------------------------------- oadrResponse -|
 |-- oadrUpdateReport (intervals) --------------->|  values -> telemetry (SI units)
 |<--------------------------- oadrUpdatedReport -|
 |                                                |
 |<--------------- oadrRegisterReport (queued) ---|  the VTN's own metadata (it offers none)
 |-- oadrRegisteredReport ----------------------->|  -> oadrResponse
 |<------ oadrCreateReport / oadrCancelReport ----|  (staff, queued: one-shot or periodic / stop)
 |-- oadrCreatedReport / oadrCanceledReport ----->|  -> oadrResponse
"""

from __future__ import annotations

import uuid

from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import reports
from server.openadr import codec
from server.openadr.transport import Ctx, Vtn, handles, renders
from server.store.models import Ven
from server.store.types import utcnow

SERVICE = "EiReport"


@handles(SERVICE, "oadrRegisterReport")
async def register_report(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    offered = codec.read_register_report(ctx.message)
    await reports.register_offered(ctx.session, ven.id, offered)
    s = ctx.settings.openadr
    made = await reports.choose_requests(
        ctx.session, ven.id, offered, s.report_names, s.report_granularity_s, s.report_back_duration_s
    )
    requests = []
    for r in made:
        types = await reports.reading_types(ctx.session, ven.id, r.report_specifier_id)
        requests.append(
            (
                r.report_request_id,
                r.report_specifier_id,
                r.granularity_s,
                r.report_back_duration_s,
                [(rid, types.get(rid, "")) for rid in r.r_ids],
            )
        )
    return codec.registered_report(ctx.request_id, ven.ven_id, requests)


@handles(SERVICE, "oadrRegisteredReport")
async def registered_report(ctx: Ctx) -> etree._Element:
    # the VTN offers no reports, so whatever the VEN requests there is nothing to schedule
    ven = await ctx.ven()
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


@handles(SERVICE, "oadrCreatedReport")
async def created_report(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    pending = codec.texts(ctx.message, "oadr:oadrPendingReports/ei:reportRequestID")
    await reports.mark_created(ctx.session, ven.id, pending)
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


@handles(SERVICE, "oadrUpdateReport")
async def update_report(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    await reports.store_update(ctx.session, ven, codec.read_update_report(ctx.message))
    return codec.updated_report(ctx.request_id, ven.ven_id)


@handles(SERVICE, "oadrCreateReport")
async def create_report(ctx: Ctx) -> etree._Element:
    # a VEN asking for VTN reports: this VTN registered none, so nothing becomes pending
    ven = await ctx.ven()
    return codec.pending_reports_reply("oadrCreatedReport", ctx.request_id, ven.ven_id, [])


@handles(SERVICE, "oadrCancelReport")
async def cancel_report(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    return codec.pending_reports_reply("oadrCanceledReport", ctx.request_id, ven.ven_id, [])


@handles(SERVICE, "oadrCanceledReport")
async def canceled_report(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


# ---------------------------------------------------------------------------------------------- VTN -> VEN
@renders(reports.CREATE_REPORT)
async def render_create(session: AsyncSession, vtn: Vtn, ven: Ven, payload: dict) -> etree._Element:
    r = await reports.get_request(session, ven.id, payload["report_request_id"])
    types = await reports.reading_types(session, ven.id, r.report_specifier_id)
    return codec.create_report(
        uuid.uuid4().hex,
        ven.ven_id,
        r.report_request_id,
        r.report_specifier_id,
        r.granularity_s,
        r.report_back_duration_s,
        [(rid, types.get(rid, "")) for rid in r.r_ids],
    )


@renders(reports.CANCEL_REPORT)
async def render_cancel(session: AsyncSession, vtn: Vtn, ven: Ven, payload: dict) -> etree._Element:
    r = await reports.get_request(session, ven.id, payload["report_request_id"])
    # cancelled once it is on its way: oadrCanceledReport does not say which request it answers
    r.status, r.changed_at = "cancelled", utcnow()
    return codec.cancel_report(uuid.uuid4().hex, ven.ven_id, r.report_request_id)
