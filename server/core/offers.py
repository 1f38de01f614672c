"""Flexibility offers of aggregators: made (by staff for a VEN through the admin API, or by the VEN itself with an
OpenADR 2.0b optIn availability schedule: ``from_availability``), withdrawn, cleared.

Clearing is ``server.orchestration.market.clear`` (pure); ``server.orchestration.clearing`` applies its result
to these rows and turns cleared offers into events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.choices import OFFER_STATUSES
from server.core import programs
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import FlexOffer, Program, Ven

FLEX_PROGRAM = "flexibility-market"  # the dr program cleared offers' events belong to (made on first use)
MAX_WINDOW_S = 7 * 86_400


async def create(
    session: AsyncSession,
    ven_name: str,
    start: dt.datetime,
    duration_s: int,
    up_kw: float,
    down_kw: float,
    price: float,
) -> FlexOffer:
    if start.tzinfo is None:
        raise Invalid("start must carry a time zone")
    if not 0 < duration_s <= MAX_WINDOW_S:
        raise Invalid("duration must be 1 s to 7 days")
    for name, value in (("up_kw", up_kw), ("down_kw", down_kw), ("price", price)):
        if not value >= 0 or value == float("inf"):
            raise Invalid(f"{name} must be a finite number, not negative")
    if up_kw == 0 and down_kw == 0:
        raise Invalid("an offer needs up_kw or down_kw")
    ven = await session.scalar(select(Ven).where(Ven.name == ven_name))
    if ven is None:
        raise NotFound(f"no VEN {ven_name!r}")
    offer = FlexOffer(
        ven_pk=ven.id,
        start=start,
        end_at=start + dt.timedelta(seconds=duration_s),
        up_kw=up_kw,
        down_kw=down_kw,
        price=price,
        status="offered",
    )
    session.add(offer)
    await session.flush()
    return offer


async def get(session: AsyncSession, offer_id: int) -> FlexOffer:
    offer = await session.get(FlexOffer, offer_id)
    if offer is None:
        raise NotFound(f"no offer {offer_id}")
    return offer


async def withdraw(session: AsyncSession, offer_id: int) -> FlexOffer:
    offer = await get(session, offer_id)
    if offer.status != "offered":
        raise Conflict(f"offer {offer_id} is {offer.status}; only an open offer can be withdrawn")
    offer.status = "withdrawn"
    await session.flush()
    return offer


async def from_availability(
    session: AsyncSession,
    ven_pk: int,
    opt_id: str,
    availability: list[dict[str, Any]],
    up_kw: float,
    down_kw: float,
    price: float,
) -> list[FlexOffer]:
    """An OpenADR optIn availability schedule (``oadrCreateOpt`` with no event): one open offer of the VEN per
    window, of ``up_kw`` / ``down_kw`` at ``price`` (``openadr.availability_*``: 2.0b carries neither). Sending
    the same optID again replaces the opt's offers not yet bought; windows already over, empty or longer than
    7 days are left out."""
    await withdraw_opt(session, ven_pk, opt_id)
    if up_kw <= 0 and down_kw <= 0:
        return []
    now = dt.datetime.now(dt.UTC)
    out = []
    for window in availability:
        if not window.get("start") or not window.get("duration_s"):
            continue
        start = dt.datetime.fromisoformat(window["start"])
        duration = int(window["duration_s"])
        end = start + dt.timedelta(seconds=duration)
        if start.tzinfo is None or not 0 < duration <= MAX_WINDOW_S or end <= now:
            continue
        offer = FlexOffer(
            ven_pk=ven_pk,
            start=start,
            end_at=end,
            up_kw=up_kw,
            down_kw=down_kw,
            price=price,
            status="offered",
            opt_id=opt_id[:64],
        )
        session.add(offer)
        out.append(offer)
    await session.flush()
    return out


async def withdraw_opt(session: AsyncSession, ven_pk: int, opt_id: str) -> int:
    """The open offers an opt of the VEN made are withdrawn (the opt was cancelled or replaced); offers already
    bought stay bought. Returns how many."""
    found = list(
        await session.scalars(
            select(FlexOffer).where(
                FlexOffer.ven_pk == ven_pk, FlexOffer.opt_id == opt_id[:64], FlexOffer.status == "offered"
            )
        )
    )
    for o in found:
        o.status = "withdrawn"
        o.reason = f"OpenADR opt {opt_id} cancelled or replaced"[:200]
    await session.flush()
    return len(found)


def offers_query(status: str | None = None) -> Select[FlexOffer]:
    """Offers for staff, newest first."""
    if status is not None and status not in OFFER_STATUSES:
        raise Invalid(f"status must be one of {', '.join(OFFER_STATUSES)}")
    query = select(FlexOffer).order_by(FlexOffer.id.desc())
    return query if status is None else query.where(FlexOffer.status == status)


async def ven_names(session: AsyncSession, found: list[FlexOffer]) -> dict[int, str]:
    pks = {o.ven_pk for o in found}
    if not pks:
        return {}
    return dict((await session.execute(select(Ven.id, Ven.name).where(Ven.id.in_(pks)))).tuples().all())


def offer_dict(o: FlexOffer, ven_name: str) -> dict[str, Any]:
    return {
        "id": o.id,
        "ven": ven_name,
        "start": o.start.isoformat(),
        "end": o.end_at.isoformat(),
        "up_kw": o.up_kw,
        "down_kw": o.down_kw,
        "price": o.price,
        "status": o.status,
        "cleared_direction": o.cleared_direction or None,
        "cleared_kw": o.cleared_kw,
        "cleared_kwh": o.cleared_kwh,
        "cleared_price": o.cleared_price,
        "cleared_at": o.cleared_at.isoformat() if o.cleared_at else None,
        "event_id": o.event_id,
        "reason": o.reason,
        "plan_id": o.plan_id,
        "opt_id": o.opt_id,
    }


async def flex_program(session: AsyncSession) -> Program:
    found = await session.scalar(
        select(Program).where(Program.kind == "dr", Program.name == FLEX_PROGRAM, Program.parent_ref == 0)
    )
    return found or await programs.create(
        session, "dr", FLEX_PROGRAM, description="cleared flexibility offers"[:32]
    )
