"""The scheduler's plan buys aggregators' offers where they are cheaper than its own alternative: the loop grid's
midday export overloads its transformer, the business's VEN offers to raise its import; the plan clears the offer
at its price against curtailing PV, dispatches what it bought as a LOAD_DISPATCH event to that VEN (linked to the
plan and the offer), records the clearing on the plan and on the offer, and a re-plan supersedes its own
clearing instead of piling up. Each plan is compared with the same plan run without the offer."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from test_loop import BAT, MODEL, VEN_ID, fleet, forecast, settings

from server.cli import loop_cmds
from server.core import forecasts, grid_models, offers, plans
from server.orchestration import loop
from server.store.models import Event, FlexOffer
from server.store.types import utcnow

pytest.importorskip("pandapower")
T1 = f"{MODEL}/T1"


@pytest.fixture
def store(sqlite_store):  # noqa: ANN001, ANN201 - these tests need one backend
    return sqlite_store


async def _without_battery(store) -> None:  # noqa: ANN001
    """The fleet, forecast, and the battery taken off the model: the midday export is the PV's to curtail."""
    await fleet(store)
    await forecast(store)
    async with store.sessions.begin() as session:
        await grid_models.unmap_resource(session, MODEL, "device", BAT)


async def _plan(store, now):  # noqa: ANN001, ANN202
    out = await loop.run_plan(store, settings(), MODEL, "intraday", now)
    async with store.sessions() as session:
        return await plans.get(session, out["id"])


async def _offer(store, start, steps, price):  # noqa: ANN001, ANN202
    async with store.sessions.begin() as session:
        return (await offers.create(session, "business", start, steps * 900, 10.0, 0.0, price)).id


async def test_the_plan_buys_an_offer_cheaper_than_curtailment(store) -> None:  # noqa: ANN001
    await _without_battery(store)
    now = utcnow()  # every plan of the test plans the same horizon
    without = await _plan(store, now)
    base = without.check["summary"]
    assert without.check["transformers"][T1]["before_max_pct"] > 105
    assert base["curtailed_kwh"] > 1, base
    assert without.outputs["clearing"] == [] and without.inputs["offers"] == []

    offer_id = await _offer(store, without.start, without.steps, 0.02)
    bought = await _plan(store, now)
    s = bought.check["summary"]
    [considered] = bought.inputs["offers"]
    assert considered["id"] == offer_id and considered["ven"] == VEN_ID and considered["source"] == "admin"
    [clearing] = bought.outputs["clearing"]
    assert clearing["taken"] and clearing["direction"] == "up" and clearing["price"] == 0.02
    assert max(clearing["kw"]) <= 10.0 + 1e-6 and clearing["kwh"] > 1
    assert clearing["cost"] == pytest.approx(clearing["kwh"] * 0.02, abs=1e-3)
    assert s["offers_kwh"] == pytest.approx(clearing["kwh"]) and s["offers_taken"] == 1
    # it buys the offer instead of curtailing: less curtailed, cheaper in all, no violation left
    assert s["curtailed_kwh"] < base["curtailed_kwh"] - 1, (s, base)
    assert s["cost"]["total"] < base["cost"]["total"], (s["cost"], base["cost"])
    assert s["violation_intervals_after"] <= base["violation_intervals_after"], (
        s,
        base,
        bought.check["remaining"],
    )
    print(
        f"\nwithout the offer: curtailed {base['curtailed_kwh']} kWh, cost {base['cost']}"
        f"\nwith the offer at 0.02: curtailed {s['curtailed_kwh']} kWh, bought {clearing['kwh']} kWh, "
        f"cost {s['cost']}"
    )

    # the cleared quantity is one LOAD_DISPATCH event to the VEN, linked to the plan and to the offer
    res = bought.outputs["resources"][f"offer:{offer_id}"]
    assert res["party"] == "ven" and res["id"] == VEN_ID and res["blocks"]
    async with store.sessions() as session:
        links = {pe.resource: pe.event_id for pe in await plans.links(session, bought.id)}
        event = await session.get(Event, links[f"offer:{offer_id}"])
        offer = await session.get(FlexOffer, offer_id)
        events_before = await session.scalar(select(func.count()).select_from(Event))
    assert clearing["event"] == event.id
    signal = event.payload["signal"]
    assert signal["name"] == "LOAD_DISPATCH" and signal["type"] == "delta"
    assert max(i["value"] for i in signal["intervals"]) == pytest.approx(1000 * max(clearing["kw"]), abs=10)
    assert offer.status == "cleared" and offer.plan_id == bought.id and offer.event_id == event.id
    assert offer.cleared_kwh == pytest.approx(clearing["kwh"]) and offer.cleared_price == 0.02

    # dso plan show: the offer among the inputs, what was bought in the clearing
    shown = "\n".join(loop_cmds.show_lines(plans.plan_dict(bought, full=True)))
    assert f"offer {offer_id} of {VEN_ID} at bus" in shown and "0.02 per kWh" in shown, shown
    assert f"clearing: offer {offer_id} of {VEN_ID} bought up {clearing['kwh']:g} kWh" in shown, shown
    assert f"event {event.id}" in shown and f"offer:{offer_id} (offer at bus" in shown, shown

    # a re-plan with the same inputs clears the offer again: the same event, kept, linked to the new plan
    again = await _plan(store, now)
    async with store.sessions() as session:
        links_again = {pe.resource: pe.event_id for pe in await plans.links(session, again.id)}
        offer = await session.get(FlexOffer, offer_id)
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert (await plans.get(session, bought.id)).status == "superseded"
    assert events_after == events_before, again.outputs["dispatched"]
    assert links_again[f"offer:{offer_id}"] == event.id
    assert again.outputs["dispatched"]["created"] == 0
    assert offer.status == "cleared" and offer.plan_id == again.id
    # the first clearing is not counted on as firm by the re-plan (no double counting)
    assert again.inputs["cleared_flexibility"] == []
    assert again.check["summary"]["curtailed_kwh"] == pytest.approx(s["curtailed_kwh"], abs=0.5)

    # a plan that no longer has the offer (its VEN taken off the model) cancels the event; the offer is open again
    async with store.sessions.begin() as session:
        await grid_models.unmap_resource(session, MODEL, "ven", VEN_ID)
    gone = await _plan(store, now)
    async with store.sessions() as session:
        offer = await session.get(FlexOffer, offer_id)
        event = await session.get(Event, event.id)
    assert gone.outputs["clearing"] == [] and event.cancelled_at is not None
    assert offer.status == "offered" and offer.plan_id is None and offer.event_id is None
    assert offer.reason.startswith(f"released by plan {gone.id}")


async def test_the_day_ahead_plan_buys_an_offer_for_tomorrow(store) -> None:  # noqa: ANN001
    await fleet(store)
    out = await forecasts.forecast_all(store, 48 * 3600, 900, 28)
    assert all(v.startswith("run") for v in out.values()), out
    async with store.sessions.begin() as session:
        await grid_models.unmap_resource(session, MODEL, "device", BAT)
    now = utcnow()
    without = await loop.run_plan(store, settings(), MODEL, "day_ahead", now)
    tomorrow = dt.datetime.fromisoformat(without["start"])
    offer_id = await _offer(store, tomorrow, 96, 0.02)
    plan = await loop.run_plan(store, settings(), MODEL, "day_ahead", now)
    async with store.sessions() as session:
        p = await plans.get(session, plan["id"])
        links = {pe.resource: pe.event_id for pe in await plans.links(session, p.id)}
        event = await session.get(Event, links[f"offer:{offer_id}"])
    [clearing] = p.outputs["clearing"]
    assert clearing["taken"] and event.start >= tomorrow
    assert p.check["summary"]["curtailed_kwh"] < without["summary"]["curtailed_kwh"] - 1
    print(
        f"\nday-ahead: curtailed {without['summary']['curtailed_kwh']} -> {p.check['summary']['curtailed_kwh']} "
        f"kWh, cost {without['summary']['cost']['total']} -> {p.check['summary']['cost']['total']}"
    )


async def test_an_offer_dearer_than_curtailment_is_not_bought(store) -> None:  # noqa: ANN001
    await _without_battery(store)
    now = utcnow()
    without = await _plan(store, now)
    offer_id = await _offer(store, without.start, without.steps, 5.0)
    dear = await _plan(store, now)
    [clearing] = dear.outputs["clearing"]
    assert not clearing["taken"] and clearing["kwh"] == 0
    assert "curtailing PV" in clearing["why"] and "cheaper" in clearing["why"], clearing
    assert f"offer:{offer_id}" not in dear.outputs["resources"]
    s, base = dear.check["summary"], without.check["summary"]
    assert s["curtailed_kwh"] == pytest.approx(base["curtailed_kwh"], abs=0.5), (s, base)
    assert s["cost"]["offers"] == 0
    async with store.sessions() as session:
        offer = await session.get(FlexOffer, offer_id)
    # not bought: still open for a later plan, with why
    assert offer.status == "offered" and offer.plan_id is None
    assert offer.reason.startswith(f"not bought by plan {dear.id}")
    shown = "\n".join(loop_cmds.show_lines(plans.plan_dict(dear, full=True)))
    assert f"clearing: offer {offer_id} of {VEN_ID} not bought: price 5" in shown, shown
    print(f"\noffer at 5.0: curtailed {s['curtailed_kwh']} kWh (without: {base['curtailed_kwh']} kWh)")

    # down: without its battery the evening peak overloads the transformer beyond what demand response sheds;
    # the VEN's offer to lower its import then is bought against that overload
    async with store.sessions.begin() as session:
        down_id = (await offers.create(session, "business", dear.start, dear.steps * 900, 0.0, 20.0, 0.10)).id
    down = await _plan(store, now)
    by_id = {c["offer"]: c for c in down.outputs["clearing"]}
    assert not by_id[offer_id]["taken"] and by_id[down_id]["taken"] and by_id[down_id]["direction"] == "down"
    assert min(by_id[down_id]["kw"]) < -1
    after, before = down.check["summary"], dear.check["summary"]
    assert after["violation_intervals_after"] < before["violation_intervals_after"], (after, before)
    print(
        f"down offer at 0.10: {by_id[down_id]['down_kwh']} kWh bought, violation intervals "
        f"{before['violation_intervals_after']} -> {after['violation_intervals_after']}"
    )
