"""Every control form a plan reaches resources in, through the one core call, on the loop's small grid (a 50 kVA
transformer overloaded by midday export and the evening peak) planned for the next UTC day, so that the
evening peak falls in a known place whatever time the test runs:

* the business's 2030.5 battery device carries its site's import envelope (opModImpLimW) in ``plan:LFDI``,
  one DERControl per run of equal limits, beside its setpoint in ``plan:LFDI:storage``;
* a 2030.5 EV charger gets its planned charging as opModImpLimW in ``plan:LFDI:ev``;
* a 2030.5 thermostat gets DRLC EndDeviceControls (targetReduction in W) in the DR program ``plan:LFDI:dr``;
* the plan's price series becomes TimeTariffIntervals of a tariff with the OpenADR ELECTRICITY_PRICE signal;
* a re-plan with the same inputs keeps every event, and one that no longer needs the charger cancels its."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from sqlalchemy import select
from support import loop_grid

from server.config import Settings
from server.core import events, forecasts, grid_models, parties, plans, programs, sep2_device, telemetry
from server.orchestration import grid_import, loop
from server.orchestration.plan_solve import base_blocks
from server.orchestration.resources import EV_DEFER_STEPS
from server.sep2 import csipaus as sep2_csipaus
from server.sep2 import drlc as sep2_drlc
from server.sep2 import pricing as sep2_pricing
from server.sep2 import xml as sep2_xml
from server.store.models import EndDevice, Event, Program, ProgramMember, Ven
from server.store.types import utcnow

pytest.importorskip("pandapower")
MODEL = "formsfeeder"
TARIFF = "plan-prices"


def lfdi(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40].upper()


PV0, PV1, BAT, EV, TSTAT = (lfdi(n) for n in ("pv0", "pv1", "battery", "charger", "thermostat"))
VEN_ID = "ven-business"
EV_W, EV_WH = 7_000.0, 40_000.0


def settings(**orchestration: object) -> Settings:
    s = Settings()
    s.orchestration = dataclasses.replace(s.orchestration, **orchestration)
    return s


def ev_dercap(rated_w: float, wh: float) -> str:
    p = loop_grid.power
    return (
        f'<DERCapability xmlns="{loop_grid.NS}"><modesSupported>00500040</modesSupported>'
        f"{p('rtgMaxChargeRateW', rated_w)}{p('rtgMaxW', rated_w)}{p('rtgMaxWh', wh)}<type>82</type>"
        "</DERCapability>"
    )


async def fleet(store, battery: bool = True) -> None:  # noqa: ANN001
    now = utcnow()
    data, summary = grid_import.prepared(
        grid_import.from_pandapower_json(loop_grid.grid_json(), MODEL), MODEL
    )
    sites = [
        (PV0, "house 0", {"dercap": loop_grid.dercap_xml(4, loop_grid.PV_W)}, True),
        (PV1, "house 1", {"dercap": loop_grid.dercap_xml(4, loop_grid.PV_W)}, True),
        (EV, "house 0", {"dercap": ev_dercap(EV_W, EV_WH), "ders": loop_grid.ders_xml(50)}, False),
        (TSTAT, "house 1", {}, False),
    ]
    if battery:
        body = {
            "dercap": loop_grid.dercap_xml(80, loop_grid.BATTERY_W, loop_grid.BATTERY_WH),
            "ders": loop_grid.ders_xml(50),
        }
        sites.append((BAT, "business", body, True))
    async with store.sessions.begin() as session:
        await grid_models.store_model(session, MODEL, "test", data, summary)
        for lf, site, body, metered in sites:
            info = await parties.enroll_device(session, lf)
            for kind, xml in body.items():
                await sep2_device.put_resource(session, info.id, kind, xml)
            await grid_models.map_resource(session, MODEL, loop_grid.BUS[site], "device", lf)
            if metered:  # the site's meter: the charger and the thermostat are behind it
                await telemetry.add(
                    session,
                    [
                        telemetry.Reading("device", lf, "realPower", dt.datetime.fromisoformat(t), v, "W")
                        for t, v in loop_grid.history(site, now)
                    ],
                )
        device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == TSTAT))
        device.device_category = "00000001"  # a thermostat
        await parties.enroll_ven(session, "business", "AA:BB:CC:DD:EE:FF:00:11:22:33", ven_id=VEN_ID)
        await grid_models.map_resource(session, MODEL, loop_grid.BUS["business"], "ven", VEN_ID)
    out = await forecasts.forecast_all(store, 48 * 3600, 900, 28)
    assert all(v.startswith("run") for v in out.values()), out


@pytest.fixture
def store(sqlite_store):  # noqa: ANN001, ANN201 - these tests need one backend
    return sqlite_store


async def linked(store, plan_id: int) -> dict[str, list[Event]]:  # noqa: ANN001
    out: dict[str, list[Event]] = {}
    async with store.sessions() as session:
        for pe in await plans.links(session, plan_id):
            assert "block" in pe.why or "blocks" in pe.why, (
                pe.resource,
                pe.why,
            )  # the link carries its reason
            event = await session.get(Event, pe.event_id)
            assert event is not None
            out.setdefault(pe.resource, []).append(event)
    for items in out.values():
        items.sort(key=lambda e: e.start)
    return out


async def program_of(store, event: Event) -> Program:  # noqa: ANN001
    async with store.sessions() as session:
        program = await session.get(Program, event.program_id)
        assert program is not None
        return program


def merged(blocks: list[dict]) -> None:
    """Consecutive blocks never say the same thing (equal neighbours are one control)."""
    for a, b in zip(blocks, blocks[1:], strict=False):
        assert not (a["t1"] == b["t0"] and a.get("base", a["value_w"]) == b.get("base", b["value_w"])), (a, b)


async def test_every_form_reaches_its_resource_and_a_replan_keeps_them(store) -> None:
    await fleet(store)
    s = settings(price_tariff=TARIFF)
    now = utcnow()
    first = await loop.run_plan(store, s, MODEL, "day_ahead", now)
    assert first["status"] == "active", first
    async with store.sessions() as session:
        plan = await plans.get(session, first["id"])
        outputs, check = plan.outputs, plan.check
    res = outputs["resources"]
    made = await linked(store, first["id"])
    assert check["summary"]["violation_intervals_after"] == 0, check["summary"]
    # every site importing its import envelope at once keeps every limit (AC power flow)
    assert check["summary"]["import_envelope_violation_intervals"] == 0, check["import_envelopes"]

    # 1. the business's import envelope on its battery device, merged where equal, beside its setpoint
    site = res[f"device:{BAT}"]
    assert site["kind"] == "site" and site["blocks"], site
    merged(site["blocks"])
    assert all(b["base"].keys() == {"opModImpLimW"} for b in site["blocks"]), site["blocks"]
    for b in site["blocks"]:
        why = b["why"]
        assert 0 < why["site_import_envelope_kw"] < why["site_could_import_kw"], why
        hours = {(b["t0"] + k) * 0.25 for k in range(b["t1"] - b["t0"])}
        assert all(14 <= h < 24 for h in hours), (b, "the import binds at the evening peak only")
    controls = made[f"device:{BAT}"]
    assert len(controls) == len(site["blocks"])
    assert (await program_of(store, controls[0])).name == f"plan:{BAT}"
    for e, b in zip(controls, site["blocks"], strict=True):
        assert e.kind == "der" and e.payload["base"] == {"opModImpLimW": b["value_w"]}
        assert e.duration_s == (b["t1"] - b["t0"]) * 900
    assert (await program_of(store, made[f"device:{BAT}:storage"][0])).name == f"plan:{BAT}:storage"

    # 2. the charger: its planned charging as an import limit in its own program, the energy it needs in
    # its window, 0 (wait) once it is in
    ev = res[f"device:{EV}:ev"]
    assert ev["kind"] == "ev" and ev["energy_kwh"] == pytest.approx(EV_WH * 0.5 / 1000)
    assert sum(ev["planned_w"]) * 0.25 / 1000 == pytest.approx(20.0, rel=0.01)
    assert all(b["field"] == "opModImpLimW" and 0 <= b["value_w"] <= EV_W for b in ev["blocks"])
    # the window: from the start (it charges on arrival, unmanaged) to its unmanaged end plus the deferral,
    # every interval of it under a limit: the planned power, 0 where it waits
    unmanaged_steps = int(20_000 / EV_W / 0.25) + 1
    assert ev["blocks"][0]["t0"] == 0 and ev["blocks"][-1]["t1"] == unmanaged_steps + EV_DEFER_STEPS
    assert all(a["t1"] == b["t0"] for a, b in zip(ev["blocks"], ev["blocks"][1:], strict=False))
    assert any(b["value_w"] == 0 and b["why"]["action"] == "wait" for b in ev["blocks"])
    energy = sum(b["value_w"] * (b["t1"] - b["t0"]) * 0.25 for b in ev["blocks"]) / 1000
    assert energy == pytest.approx(20.0, abs=0.1)
    merged(ev["blocks"])
    ev_events = made[f"device:{EV}:ev"]
    assert (await program_of(store, ev_events[0])).name == f"plan:{EV}:ev"
    assert [e.payload["base"] for e in ev_events] == [{"opModImpLimW": b["value_w"]} for b in ev["blocks"]]
    # the charger carries no site envelope of its own: one import limit per device and moment
    assert f"device:{EV}" not in res

    # 3. the thermostat: DRLC events (EndDeviceControl) in its DR program, the reduction in W
    dr = res[f"device:{TSTAT}:dr"]
    assert dr["kind"] == "dr" and dr["blocks"], dr
    dr_events = made[f"device:{TSTAT}:dr"]
    program = await program_of(store, dr_events[0])
    assert program.kind == "dr" and program.name == f"plan:{TSTAT}:dr"
    assert program.primacy == s.orchestration.plan_primacy  # staff DR programs (primacy 1) win
    for e, b in zip(dr_events, dr["blocks"], strict=True):
        assert e.kind == "dr" and e.payload["deviceCategory"] == 1
        assert e.payload["control"] == {"targetReduction": {"type": 2, "value": round(b["value_w"])}}
        assert b["value_w"] > 0
    async with store.sessions() as session:
        tstat = await session.scalar(select(EndDevice).where(EndDevice.lfdi == TSTAT))
        member = await session.scalar(
            select(ProgramMember).where(
                ProgramMember.program_id == program.id, ProgramMember.end_device_id == tstat.id
            )
        )
    assert member is not None
    # as the thermostat reads it: a schema-valid EndDeviceControl with the reduction in W
    async with store.sessions() as session:
        listed = await events.evaluated(session, [program], dr_events[0].start)
        e, ev_status = next((x, y) for x, y in listed if x.id == dr_events[0].id)
        edc = sep2_drlc.render_edc(0, tstat, e, ev_status)
    assert sep2_xml.schema().validate(edc), sep2_xml.schema().error_log.last_error
    assert sep2_xml.text(edc, "TargetReduction/type") == "2"
    assert sep2_xml.text(edc, "TargetReduction/value") == str(round(dr["blocks"][0]["value_w"]))
    assert sep2_xml.text(edc, "deviceCategory") == "00000001"

    # 4. the price the plan held against: TimeTariffIntervals of the tariff, with the OpenADR price signal
    price = outputs["price"]
    assert price["tariff"] == TARIFF and len(price["per_kwh"]) == 96
    tti = made[f"price:{TARIFF}"]
    # by the UTC clock 00-10 0.25, 10-16 0.12, 16-17 0.25, 17-21 0.35, 21-24 0.25: one interval per run
    assert [e.payload["tiers"][0]["price"] for e in tti] == [250, 120, 250, 350, 250]
    assert [e.duration_s // 3600 for e in tti] == [10, 6, 1, 4, 3]
    async with store.sessions() as session:
        rate = await session.get(Program, tti[0].program_id)
        tariff = await session.get(Program, rate.parent_id)
        ven = await session.scalar(select(Ven).where(Ven.ven_id == VEN_ID))
        reached = await events.events_for_ven(session, ven.id, tti[0].start)
    assert rate.kind == "rate" and tariff.kind == "price" and tariff.name == TARIFF
    for e in tti:
        value = e.payload["tiers"][0]["price"] / 1000
        assert e.payload["signal"]["name"] == "ELECTRICITY_PRICE"
        assert e.payload["signal"]["intervals"][0]["value"] == pytest.approx(value)
    assert {e.id for e in tti} <= {e.id for e in reached}
    # as a 2030.5 device of the plan reads it: a schema-valid TimeTariffInterval, enrolled through its FSA
    async with store.sessions() as session:
        pv0 = await session.scalar(select(EndDevice).where(EndDevice.lfdi == PV0))
        assert tariff.id in [p.id for p in await programs.device_member_programs(session, pv0.id, "price")]
        listed = await events.evaluated(session, [rate], tti[0].start)
        e, ev_status = next((x, y) for x, y in listed if x.id == tti[0].id)
        # as a CSIP-AUS 1.2 client receives it (the server's form carries the 1.3 pricing extension too)
        el = sep2_csipaus.for_client(sep2_pricing.render_tti(0, pv0, rate, e, ev_status), sep2_csipaus.V12)
    assert sep2_xml.schema().validate(el), sep2_xml.schema().error_log.last_error

    # a re-plan of the same inputs keeps every event of every form
    second = await loop.run_plan(store, s, MODEL, "day_ahead", now)
    async with store.sessions() as session:
        dispatched = (await plans.get(session, second["id"])).outputs["dispatched"]
    assert dispatched["created"] == 0 and dispatched["cancelled"] == 0, dispatched
    kept = await linked(store, second["id"])
    assert {k: [e.id for e in v] for k, v in kept.items()} == {k: [e.id for e in v] for k, v in made.items()}


async def test_a_replan_cancels_what_it_no_longer_needs(store) -> None:
    await fleet(store)
    now = utcnow()
    first = await loop.run_plan(store, settings(price_tariff=TARIFF), MODEL, "day_ahead", now)
    made = await linked(store, first["id"])
    assert made[f"device:{EV}:ev"] and made[f"price:{TARIFF}"]
    # the car is full; prices are no longer published
    async with store.sessions.begin() as session:
        device = await programs.device_by_lfdi(session, EV)
        await sep2_device.put_resource(session, device.id, "ders", loop_grid.ders_xml(100))
    second = await loop.run_plan(store, settings(), MODEL, "day_ahead", now)
    async with store.sessions() as session:
        plan = await plans.get(session, second["id"])
        assert f"device:{EV}:ev" not in plan.outputs["resources"]
        assert "price" not in plan.outputs
        for e in made[f"device:{EV}:ev"] + made[f"price:{TARIFF}"]:
            assert (await session.get(Event, e.id)).cancelled_at is not None, e.id
        # the rest is re-planned (another objective): every event of the old plan is kept, cancelled, or (a
        # DERControl) superseded by a newer one of its program that overlaps it
        new = [await session.get(Event, pe.event_id) for pe in await plans.links(session, second["id"])]
        for items in made.values():
            for e in items:
                fresh = await session.get(Event, e.id)
                superseded = e.kind == "der" and any(
                    n.program_id == e.program_id and n.id > e.id and n.start < e.end_at and e.start < n.end_at
                    for n in new
                )
                assert fresh.cancelled_at is not None or fresh in new or superseded, (e.id, e.payload)
    again = await linked(store, second["id"])
    assert again[f"device:{TSTAT}:dr"] and again[f"device:{BAT}"]
    assert all(e.cancelled_at is None for items in again.values() for e in items)


def test_base_blocks_merge_equal_limit_pairs() -> None:
    import numpy as np

    exp = np.array([5000, 5004, 5000, 0, 0, 0, 3000, 3000.0])
    exp_on = np.array([1, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
    imp = np.array([0, 0, 0, 0, 2000, 2001, 2000, 2000.0])
    imp_on = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    got = base_blocks({"opModExpLimW": (exp, exp_on), "opModImpLimW": (imp, imp_on)})
    assert got == [
        (0, 3, {"opModExpLimW": 5000.0}),
        (4, 6, {"opModImpLimW": 2000.0}),
        (6, 8, {"opModExpLimW": 3000.0, "opModImpLimW": 2000.0}),
    ]
