"""EiOpt: VEN opt schedules (availability windows, or opt in/out qualified by an event). An optIn availability
schedule (no event) is also the VEN's flexibility offer: one per window, sized and priced by
``openadr.availability_*`` (``offers.from_availability``); cancelling the opt withdraws what is not yet bought.

VEN                                             VTN
 |-- oadrCreateOpt optID [qualifiedEventID] ----->|  stored for this VEN (event must be one it was sent)
 |<------------------------ oadrCreatedOpt optID -|
 |-- oadrCancelOpt optID ------------------------>|  only the VEN's own opts
 |<----------------------- oadrCanceledOpt optID -|
"""

from __future__ import annotations

from lxml import etree

from server.core import offers, opts
from server.openadr import codec
from server.openadr.transport import Ctx, handles

SERVICE = "EiOpt"


@handles(SERVICE, "oadrCreateOpt")
async def create_opt(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    o = codec.read_create_opt(ctx.message)
    await opts.create_opt(
        ctx.session,
        ven.id,
        opt_id=o.opt_id,
        opt_type=o.opt_type,
        opt_reason=o.opt_reason,
        market_context=o.market_context,
        event_id=o.event_id,
        modification_number=o.modification_number,
        availability=o.availability,
        targets=o.targets,
        created_at=o.created,
    )
    if o.event_id is None:
        a = ctx.settings.openadr
        if o.opt_type == "optIn":
            await offers.from_availability(
                ctx.session,
                ven.id,
                o.opt_id,
                o.availability,
                a.availability_up_kw,
                a.availability_down_kw,
                a.availability_price,
            )
        else:  # the same optID as optOut: no longer an offer
            await offers.withdraw_opt(ctx.session, ven.id, o.opt_id)
    return codec.opt_reply("oadrCreatedOpt", ctx.request_id, o.opt_id)


@handles(SERVICE, "oadrCancelOpt")
async def cancel_opt(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    opt_id = codec.text(ctx.message, "ei:optID", "") or ""
    await opts.cancel_opt(ctx.session, ven.id, opt_id)
    await offers.withdraw_opt(ctx.session, ven.id, opt_id)
    return codec.opt_reply("oadrCanceledOpt", ctx.request_id, opt_id)
