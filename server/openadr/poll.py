"""OadrPoll: the pull end of the VEN's ordered message stream in the delivery outbox.

    VEN                                             VTN
     |-- oadrPoll venID ----------------------------->|  oldest queued message for this VEN, marked delivered in
     |                                                |  the same transaction (one message per poll)
     |<-- oadrDistributeEvent | oadrRegisterReport | oadrCreateReport | oadrCancelReport |
     |    oadrRequestReregistration | oadrCancelPartyRegistration ---------------------------|
     |   ... or, when nothing is queued:              |
     |<-------------------------------- oadrResponse -|
     |-- (the VEN answers on the matching service) -->|

Queue rows hold a kind and arguments; the XML is rendered at delivery (current eventStatus, fresh signature). A
head that the push channel is sending right now is not handed out (the poll answers oadrResponse meanwhile).
"""

from __future__ import annotations

import logging

from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core import vens as vens_core
from server.openadr import codec
from server.openadr.transport import RENDERERS, Ctx, Vtn, handles
from server.store.models import Ven

SERVICE = "OadrPoll"
log = logging.getLogger("dso.openadr")


async def next_message(session: AsyncSession, vtn: Vtn, ven: Ven) -> etree._Element | None:
    """Take queued items until one renders (items whose subject vanished are dropped)."""
    while True:
        item = await vens_core.take_next(session, ven.id)
        if item is None:
            return None
        renderer = RENDERERS.get(item.kind)
        if renderer is None:
            log.warning("dropping queued message of unknown kind %s for VEN %s", item.kind, ven.ven_id)
            await delivery.mark_dropped(session, item.id, f"unknown OpenADR message kind {item.kind}")
            continue
        msg = await renderer(session, vtn, ven, item.payload)
        if msg is not None:
            return msg
        await delivery.mark_dropped(session, item.id, "nothing left to say (its subject is gone)")


@handles(SERVICE, "oadrPoll")
async def poll(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    msg = await next_message(ctx.session, ctx.vtn, ven)
    if msg is not None:
        return msg
    # nothing to hand out; if that is because the head is being pushed, the poll cache must not learn "idle"
    ctx.not_idle = await delivery.pending_count(ctx.session, vens_core.mailbox_key(ven.id)) > 0
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)
