"""Clearing open flexibility offers against a plan's need and dispatching what cleared.

Each cleared offer becomes one event to that VEN through ``events.create``: a ``dr`` event of the flexibility
program whose OpenADR signal is LOAD_DISPATCH of type ``delta``, one interval per step, the change of net import
asked for in W (positive: raise import, "up"; negative: lower it, "down"). The offer records its status, cleared
kW and kWh, the price paid (its own) and the event; offers not taken are marked rejected with the reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events, offers
from server.core.errors import Invalid
from server.orchestration import market
from server.store.models import FlexOffer, Ven
from server.store.types import utcnow


async def clear_and_dispatch(
    session: AsyncSession, need: market.Need, now: dt.datetime | None = None
) -> market.Clearing:
    """Clear every open offer overlapping the need's window at its price, turn each cleared offer into an event
    to its VEN and record the outcome on every offer considered (in the caller's transaction)."""
    now = now or utcnow()
    n = max(len(need.up_kw), len(need.down_kw))
    if need.step_s <= 0 or n == 0:
        raise Invalid("a need has a positive step and at least one interval")
    end = need.start + dt.timedelta(seconds=n * need.step_s)
    rows = list(
        await session.execute(
            select(FlexOffer, Ven)
            .join(Ven, Ven.id == FlexOffer.ven_pk)
            .where(FlexOffer.status == "offered", FlexOffer.start < end, FlexOffer.end_at > need.start)
            .order_by(FlexOffer.id)
            .with_for_update(of=FlexOffer)
        )
    )
    by_id = {o.id: (o, ven) for o, ven in rows}
    result = market.clear(
        [market.Offer(o.id, ven.name, o.start, o.end_at, o.up_kw, o.down_kw, o.price) for o, ven in rows],
        need,
    )
    program = await offers.flex_program(session) if result.awards else None
    for award in result.awards:
        offer, ven = by_id[award.offer_id]
        sign = 1.0 if award.direction == "up" else -1.0
        first = next(i for i, kw in enumerate(award.kw) if kw > 0)
        last = max(i for i, kw in enumerate(award.kw) if kw > 0)
        intervals = [
            {"duration_s": need.step_s, "value": sign * 1000.0 * kw} for kw in award.kw[first : last + 1]
        ]
        assert program is not None
        event = await events.create(
            session,
            program,
            events.NewEvent(
                start=need.start + dt.timedelta(seconds=first * need.step_s),
                duration_s=need.step_s * (last - first + 1),
                payload={
                    "signal": {"name": "LOAD_DISPATCH", "type": "delta", "intervals": intervals},
                    "comment": f"flexibility offer {offer.id} cleared {award.direction} at {offer.price:g}",
                },
                description=f"offer {offer.id}"[:32],
                ven_names=(ven.name,),
            ),
        )
        offer.status = "cleared"
        offer.cleared_direction = award.direction
        offer.cleared_kw = award.cleared_kw
        offer.cleared_kwh = award.cleared_kwh
        offer.cleared_price = award.price
        offer.cleared_at = now
        offer.event_id = event.id
        offer.reason = ""
    for offer_id, why in result.rejected.items():
        offer, _ = by_id[offer_id]
        offer.status = "rejected"
        offer.cleared_at = now
        offer.reason = why[:200]
    await session.flush()
    return result


def clearing_dict(c: market.Clearing) -> dict[str, Any]:
    return {
        "awards": [
            {
                "offer_id": a.offer_id,
                "ven": a.ven,
                "direction": a.direction,
                "price": a.price,
                "cleared_kw": a.cleared_kw,
                "cleared_kwh": a.cleared_kwh,
                "cost": a.cost,
                "kw": a.kw,
            }
            for a in c.awards
        ],
        "rejected": {str(k): v for k, v in c.rejected.items()},
        "unmet_up_kw": c.unmet_up_kw,
        "unmet_down_kw": c.unmet_down_kw,
        "cost": c.cost,
    }
