"""Clearing open flexibility offers against a plan's need and dispatching what cleared; and recording on the
offers what a scheduled plan bought of them (``hold_plan_offers``, ``record_plan_clearing``).

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

from server.core import events, offers, plans
from server.core.errors import Invalid
from server.orchestration import market
from server.store.models import FlexOffer, Plan, Ven
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


def _open_to_plans(o: FlexOffer | None) -> bool:
    """An offer a plan may (still) buy: open, or cleared by an earlier plan (which the new one supersedes)."""
    return o is not None and (o.status == "offered" or (o.status == "cleared" and o.plan_id is not None))


async def _plan_offers(session: AsyncSession, entries: list[dict[str, Any]]) -> dict[int, FlexOffer]:
    ids = [int(c["offer"]) for c in entries]
    if not ids:
        return {}
    found = await session.scalars(select(FlexOffer).where(FlexOffer.id.in_(ids)).with_for_update())
    return {o.id: o for o in found}


async def hold_plan_offers(session: AsyncSession, plan: Plan) -> None:
    """Before a plan is dispatched: an offer it bought that is no longer open (withdrawn, or cleared by hand since
    the plan was made) is not dispatched; the plan's clearing says so."""
    entries = list((plan.outputs or {}).get("clearing") or [])
    found = await _plan_offers(session, [c for c in entries if c["taken"]])
    resources = dict(plan.outputs.get("resources") or {})
    changed = False
    for i, c in enumerate(entries):
        o = found.get(int(c["offer"]))
        if not c["taken"] or _open_to_plans(o):
            continue
        status = o.status if o is not None else "deleted"
        entries[i] = c | {"taken": False, "why": f"offer {status} before the plan was dispatched"}
        resources.pop(f"offer:{c['offer']}", None)
        changed = True
    if changed:
        plan.outputs = plan.outputs | {"resources": resources, "clearing": entries}
        await session.flush()


async def record_plan_clearing(session: AsyncSession, plan: Plan, now: dt.datetime | None = None) -> None:
    """After a plan was dispatched: every offer it bought is ``cleared`` by it (kW, kWh, price, its event, the
    plan); every other offer open to plans, one it considered or one an earlier plan of its model had cleared,
    is open again (a released offer's event was cancelled with the resource the plan no longer has)."""
    now = now or utcnow()
    entries = [dict(c) for c in (plan.outputs or {}).get("clearing") or []]
    found = await _plan_offers(session, entries)
    linked = {pe.resource: pe.event_id for pe in await plans.links(session, plan.id)}
    for c in entries:
        o = found.get(int(c["offer"]))
        if not _open_to_plans(o):
            continue
        assert o is not None
        event_id = linked.get(f"offer:{o.id}")
        if c["taken"] and event_id is not None:
            o.status = "cleared"
            o.plan_id = plan.id
            o.event_id = event_id
            o.cleared_direction = c["direction"]
            o.cleared_kw = max((abs(v) for v in c["kw"]), default=0.0)
            o.cleared_kwh = c["kwh"]
            o.cleared_price = o.price
            o.cleared_at = now
            o.reason = f"cleared by plan {plan.id}"
            c["event"] = event_id
            continue
        why = c["why"] or "nothing of it left to dispatch"
        released = o.plan_id is not None
        _reopen(o, (f"released by plan {plan.id}: " if released else f"not bought by plan {plan.id}: ") + why)
        if c["taken"]:
            c["taken"], c["why"] = False, why
    # offers an earlier plan of the model bought that this one did not consider (the VEN unmapped, the window
    # now outside the horizon): that plan's events for them were cancelled with it, so they are open again
    taken = {int(c["offer"]) for c in entries if c["taken"]}
    stale = await session.scalars(
        select(FlexOffer)
        .join(Plan, Plan.id == FlexOffer.plan_id)
        .where(
            FlexOffer.status == "cleared",
            Plan.model_name == plan.model_name,
            Plan.id != plan.id,
            FlexOffer.id.not_in(taken or {0}),
        )
        .with_for_update(of=FlexOffer)
    )
    for o in stale:
        _reopen(o, f"released by plan {plan.id}: not one of its offers")
    plan.outputs = plan.outputs | {"clearing": entries}
    await session.flush()


def _reopen(o: FlexOffer, reason: str) -> None:
    o.status, o.plan_id, o.event_id = "offered", None, None
    o.cleared_direction, o.cleared_kw, o.cleared_kwh, o.cleared_price = "", 0.0, 0.0, None
    o.reason = reason[:200]
