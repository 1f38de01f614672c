"""VEN opt schedules (oadrCreateOpt / oadrCancelOpt): availability windows or event-qualified opt in/out.

Opts are scoped to the VEN that sent them: another VEN cannot cancel them, and an opt can only name an event the
VEN was sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events, oadr_events
from server.core.errors import Invalid, NotFound
from server.store.models import OadrOpt, Ven
from server.store.types import utcnow

OPT_TYPES = {"optIn", "optOut"}


async def create_opt(
    session: AsyncSession,
    ven_pk: int,
    *,
    opt_id: str,
    opt_type: str,
    opt_reason: str,
    market_context: str = "",
    event_id: str | None = None,
    modification_number: int | None = None,
    availability: list[dict[str, Any]] | None = None,
    targets: dict[str, list[str]] | None = None,
    created_at: dt.datetime | None = None,
) -> OadrOpt:
    if opt_type not in OPT_TYPES:
        raise Invalid(f"optType must be optIn or optOut, got {opt_type!r}")
    if event_id is not None:
        event = await oadr_events.visible_event(session, ven_pk, event_id)
        # an event-qualified opt is the VEN's answer to that event, beside its oadrCreatedEvent answers
        await events.record_response(
            session,
            event,
            events.VenAnswer(
                ven_pk,
                opt_type,
                200,
                modification_number if modification_number is not None else event.modification_number,
            ),
        )
    opt = await session.scalar(select(OadrOpt).where(OadrOpt.ven_pk == ven_pk, OadrOpt.opt_id == opt_id))
    if opt is None:
        opt = OadrOpt(ven_pk=ven_pk, opt_id=opt_id)
        session.add(opt)
    # sending the same optID again replaces the schedule (and revives a cancelled one)
    opt.opt_type, opt.opt_reason, opt.market_context = opt_type, opt_reason, market_context
    opt.event_id, opt.modification_number = event_id, modification_number
    opt.availability, opt.targets = availability or [], targets or {}
    opt.created_at, opt.cancelled_at = created_at or utcnow(), None
    await session.flush()
    return opt


async def cancel_opt(session: AsyncSession, ven_pk: int, opt_id: str) -> OadrOpt:
    opt = await session.scalar(select(OadrOpt).where(OadrOpt.ven_pk == ven_pk, OadrOpt.opt_id == opt_id))
    if opt is None:
        raise NotFound(f"no opt {opt_id} for this VEN")
    opt.cancelled_at = opt.cancelled_at or utcnow()
    await session.flush()
    return opt


async def list_opts(
    session: AsyncSession, ven_name: str | None = None, event_id: str | None = None
) -> list[dict[str, Any]]:
    q = select(OadrOpt, Ven.name).join(Ven, Ven.id == OadrOpt.ven_pk).order_by(OadrOpt.id)
    if ven_name:
        q = q.where(Ven.name == ven_name)
    if event_id:
        q = q.where(OadrOpt.event_id == event_id)
    return [
        {
            "ven": name,
            "opt_id": o.opt_id,
            "opt_type": o.opt_type,
            "opt_reason": o.opt_reason,
            "market_context": o.market_context,
            "event_id": o.event_id,
            "modification_number": o.modification_number,
            "availability": o.availability,
            "targets": o.targets,
            "created_at": o.created_at.isoformat(),
            "cancelled_at": o.cancelled_at.isoformat() if o.cancelled_at else None,
            "status": "cancelled" if o.cancelled_at else "active",
        }
        for o, name in (await session.execute(q)).all()
    ]
