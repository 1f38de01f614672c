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
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events, oadr_events
from server.openadr import codec
from server.openadr.transport import Ctx, Vtn, handles, renders
from server.store.models import Event, Program, Ven
from server.store.types import utcnow

SERVICE = "EiEvent"


def event_out(event: Event, program: Program, ven: Ven, settings: Any) -> codec.EventOut:
    now = utcnow()
    signal = oadr_events.signal_of(event)
    return codec.EventOut(
        event_id=str(event.id),
        modification_number=event.modification_number,
        modification_reason=event.modification_reason,
        modification_time=event.changed_at if event.modification_number else None,
        priority=oadr_events.priority_of(event, program),
        market_context=oadr_events.market_context_of(program, settings.openadr.market_context),
        created=event.creation_time,
        status=oadr_events.status_at(event, now, settings.openadr.near_window_s),
        test_event=event.test_event,
        comment=str(event.payload.get("comment", "")),
        start=event.start,
        duration_s=event.duration_s,
        randomization_s=event.randomize_start_s or 0,
        signal_name=signal.name,
        signal_type=signal.type,
        signal_id=f"{event.id}-0",
        intervals=[(int(i["duration_s"]), float(i["value"])) for i in signal.intervals],
        current_value=oadr_events.current_value(event, now),
        ven_id=ven.ven_id,
        resource_ids=list(event.payload.get("resource_ids") or []),
        group_ids=list(event.payload.get("group_ids") or []),
        response_required="always" if event.response_required else "never",
    )


async def distribution(
    session: AsyncSession, vtn: Vtn, ven: Ven, request_id: str | None, reply_limit: int | None = None
) -> etree._Element:
    found = await events.events_for_ven(session, ven.id)
    if reply_limit:
        found = found[:reply_limit]
    program_ids = {e.program_id for e in found}
    by_id = {p.id: p for p in await session.scalars(select(Program).where(Program.id.in_(program_ids)))}
    return codec.distribute_event(
        request_id or uuid.uuid4().hex,
        vtn.settings.openadr.vtn_id,
        [event_out(e, by_id[e.program_id], ven, vtn.settings) for e in found],
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


@renders(events.DISTRIBUTE)
async def render_distribute(session: AsyncSession, vtn: Vtn, ven: Ven, payload: dict) -> etree._Element:
    return await distribution(session, vtn, ven, None)
