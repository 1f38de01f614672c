"""EiEvent: event distribution (pull via oadrRequestEvent / oadrPoll, or push) and opt responses.

VEN                                             VTN
 |-- oadrRequestEvent --------------------------->|  events targeted at this VEN, not yet expired
 |<------------------------- oadrDistributeEvent -|  eventStatus computed now; eiTarget = this VEN only
 |-- oadrCreatedEvent (optIn/optOut per event) -->|  stored per (event, VEN, modificationNumber)
 |<-------------------------------- oadrResponse -|
 |                                                |
 |        (staff: dso event create|modify|cancel -> modificationNumber++ -> one queued
 |         distribute_event per targeted VEN, delivered by the next oadrPoll or by push)
 |-- oadrPoll ----------------------------------->|
 |<------------------------- oadrDistributeEvent -|
"""

from __future__ import annotations

import uuid

from lxml import etree
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import oadr_events
from server.openadr import codec
from server.openadr.transport import Ctx, Vtn, handles, renders
from server.store.models import OadrEvent, Ven
from server.store.types import utcnow

SERVICE = "EiEvent"


def _current_value(event: OadrEvent, now) -> float:
    """The payload in force now (0 outside the active period or when cancelled)."""
    if event.cancelled or now < event.start:
        return 0.0
    elapsed = (now - event.start).total_seconds()
    for item in event.intervals:
        if elapsed < item["duration_s"]:
            return float(item["value"])
        elapsed -= item["duration_s"]
    return 0.0


def event_out(event: OadrEvent, ven: Ven, near_window_s: int) -> codec.EventOut:
    now = utcnow()
    return codec.EventOut(
        event_id=str(event.id),
        modification_number=event.modification_number,
        modification_reason=event.modification_reason,
        modification_time=event.changed_at if event.modification_number else None,
        priority=event.priority,
        market_context=event.market_context,
        created=event.created_at,
        status=oadr_events.status_at(event, now, near_window_s),
        test_event=event.test_event,
        comment=event.vtn_comment,
        start=event.start,
        duration_s=event.duration_s,
        randomization_s=event.randomization_s,
        signal_name=event.signal_name,
        signal_type=event.signal_type,
        signal_id=f"{event.id}-0",
        intervals=[(int(i["duration_s"]), float(i["value"])) for i in event.intervals],
        current_value=_current_value(event, now),
        ven_id=ven.ven_id,
        resource_ids=list(event.resource_ids or []),
        group_ids=list(event.group_ids or []),
        response_required=event.response_required,
    )


async def distribution(
    session: AsyncSession, vtn: Vtn, ven: Ven, request_id: str | None, reply_limit: int | None = None
) -> etree._Element:
    events = await oadr_events.events_for_ven(session, ven.id)
    if reply_limit:
        events = events[:reply_limit]
    near = vtn.settings.openadr.near_window_s
    return codec.distribute_event(
        request_id or uuid.uuid4().hex, vtn.settings.openadr.vtn_id, [event_out(e, ven, near) for e in events]
    )


@handles(SERVICE, "oadrRequestEvent")
async def request_event(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    limit = codec.text(ctx.message, "pyld:eiRequestEvent/pyld:replyLimit")
    return await distribution(ctx.session, ctx.vtn, ven, ctx.request_id, int(limit) if limit else None)


@handles(SERVICE, "oadrCreatedEvent")
async def created_event(ctx: Ctx) -> etree._Element:
    ven = await ctx.ven()
    for r in codec.read_created_event(ctx.message):
        await oadr_events.record_response(
            ctx.session, ven.id, r.event_id, r.modification_number, r.opt_type, r.code, r.request_id
        )
    return codec.response(200, "OK", ctx.request_id, ven.ven_id)


@renders(oadr_events.DISTRIBUTE)
async def render_distribute(session: AsyncSession, vtn: Vtn, ven: Ven, payload: dict) -> etree._Element:
    return await distribution(session, vtn, ven, None)
