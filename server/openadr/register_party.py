"""EiRegisterParty: query, create (new and re-registration) and cancel registrations; VTN-requested re-registration.

VEN                                             VTN
 |-- oadrQueryRegistration ---------------------->|  (no venID needed)
 |<------------- oadrCreatedPartyRegistration ----|  vtnID, profiles 2.0b/simpleHttp, poll frequency
 |-- oadrCreatePartyRegistration [regID] -------->|  cert fingerprint -> enrolled VEN (or self-register)
 |<---- oadrCreatedPartyRegistration 200 ---------|  venID + registrationID (same regID when renewing)
 |                                                |  a new registration queues the VTN's oadrRegisterReport
 |-- oadrCancelPartyRegistration regID ---------->|
 |<------------ oadrCanceledPartyRegistration ----|
 |                                                |
 |            (staff: dso ven reregister / cancel-registration -> queued, delivered by poll or push)
 |<---- oadrRequestReregistration ----------------|
 |-- oadrResponse ------------------------------->|  -> oadrResponse
 |-- oadrCreatePartyRegistration regID ---------->|  (as above)
 |<---- oadrCancelPartyRegistration --------------|
 |-- oadrCanceledPartyRegistration 200 ---------->|  registration cleared -> oadrResponse
"""

from __future__ import annotations

import uuid

from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import parties, reports
from server.core import vens as vens_core
from server.delivery.targets import Refused, TargetPolicy, check_target
from server.openadr import codec
from server.openadr.transport import (
    INVALID_DATA,
    NOT_REGISTERED_OR_AUTHORIZED,
    Ctx,
    OadrError,
    handles,
    renders,
)
from server.store.models import Ven

SERVICE = "EiRegisterParty"
REGISTER_REPORT = vens_core.REGISTER_REPORT
REQUEST_REREGISTRATION = vens_core.REQUEST_REREGISTRATION
CANCEL_REGISTRATION = vens_core.CANCEL_REGISTRATION


@handles(SERVICE, "oadrQueryRegistration")
async def query_registration(ctx: Ctx) -> etree._Element:
    # only the caller's own identifiers are ever echoed (by its TLS fingerprint)
    ven = await vens_core.by_fingerprint(ctx.session, ctx.identity.fingerprint)
    s = ctx.settings.openadr
    return codec.created_party_registration(
        ctx.request_id,
        s.vtn_id,
        s.poll_freq_s,
        ven_id=ven.ven_id if ven and ven.registration_id else None,
        registration_id=ven.registration_id if ven else None,
    )


async def _self_register(ctx: Ctx, ven_name: str) -> Ven:
    fingerprint = ctx.identity.fingerprint
    name = ven_name.strip() or f"ven-{fingerprint.replace(':', '')}"
    return await parties.enroll_self_registered_ven(ctx.session, name, fingerprint)


@handles(SERVICE, "oadrCreatePartyRegistration")
async def create_party_registration(ctx: Ctx) -> etree._Element:
    reg = codec.read_create_party_registration(ctx.message)
    s = ctx.settings.openadr
    if reg.profile != "2.0b" or reg.transport != "simpleHttp":
        raise OadrError(
            INVALID_DATA, f"only profile 2.0b over simpleHttp is supported, not {reg.profile}/{reg.transport}"
        )
    known = await vens_core.by_fingerprint(ctx.session, ctx.identity.fingerprint)
    if known is None and not reg.ven_id:
        if not s.self_register:
            raise OadrError(
                NOT_REGISTERED_OR_AUTHORIZED,
                f"certificate {ctx.identity.fingerprint} is not enrolled "
                "with this VTN (ask the operator to enroll it)",
            )
        await _self_register(ctx, reg.ven_name)
    ven = await ctx.ven(require_registration=False)
    if not reg.http_pull and not reg.transport_address:
        raise OadrError(INVALID_DATA, "push (oadrHttpPullModel false) needs an oadrTransportAddress")
    if not reg.http_pull:
        # the server will POST there: never to its own listeners, link-local or private ranges staff did not allow
        try:
            await check_target(reg.transport_address, TargetPolicy.of(ctx.settings))
        except Refused as exc:
            raise OadrError(INVALID_DATA, f"oadrTransportAddress refused: {exc}") from None
    new = await vens_core.register(
        ctx.session,
        ven,
        reg.registration_id,
        transport_address=reg.transport_address,
        http_pull=reg.http_pull,
        report_only=reg.report_only,
        xml_signature=reg.xml_signature,
        profile=reg.profile,
    )
    if new:
        await reports.forget_requests(ctx.session, ven.id)
        await vens_core.enqueue(ctx.session, ven.id, REGISTER_REPORT, dedupe=True)
    return codec.created_party_registration(
        ctx.request_id, s.vtn_id, s.poll_freq_s, ven_id=ven.ven_id, registration_id=ven.registration_id
    )


@handles(SERVICE, "oadrCancelPartyRegistration")
async def cancel_party_registration(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    registration_id = codec.text(ctx.message, "ei:registrationID")
    if registration_id != ven.registration_id:
        raise vens_core.UnknownVen(f"registrationID {registration_id} is not this VEN's registration")
    await vens_core.cancel_registration(ctx.session, ven)
    return codec.canceled_party_registration(ctx.request_id, registration_id, ven.ven_id)


@handles(SERVICE, "oadrCanceledPartyRegistration")
async def canceled_party_registration(ctx: Ctx) -> etree._Element:
    """The VEN confirms a cancellation the VTN asked for."""
    ven = await ctx.ven(require_registration=False)
    code = codec.text(ctx.message, "ei:eiResponse/ei:responseCode", "0")
    registration_id = codec.text(ctx.message, "ei:registrationID")
    if code == "200" and ven.registration_id and registration_id in (None, ven.registration_id):
        await vens_core.cancel_registration(ctx.session, ven)
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


@handles(SERVICE, "oadrResponse")
async def response(ctx: Ctx) -> etree._Element:
    """Acknowledgement of oadrRequestReregistration (or any VTN-initiated message)."""
    ven = await ctx.ven(require_registration=False)
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


# ---------------------------------------------------------------------------------------------- VTN -> VEN
@renders(REGISTER_REPORT)
async def render_register_report(session: AsyncSession, ctx_vtn, ven: Ven, payload: dict) -> etree._Element:
    return codec.register_report(uuid.uuid4().hex, ven.ven_id)


@renders(REQUEST_REREGISTRATION)
async def render_reregistration(session: AsyncSession, ctx_vtn, ven: Ven, payload: dict) -> etree._Element:
    return codec.request_reregistration(ven.ven_id)


@renders(CANCEL_REGISTRATION)
async def render_cancel(session: AsyncSession, ctx_vtn, ven: Ven, payload: dict) -> etree._Element | None:
    if not ven.registration_id:
        return None
    return codec.cancel_party_registration(uuid.uuid4().hex, ven.registration_id, ven.ven_id)
