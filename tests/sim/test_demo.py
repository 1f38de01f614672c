"""`dso demo` end to end: the real command runs its server, a simulated 2030.5 fleet of PV and batteries and an
OpenADR aggregator of EV chargers on a SimBench LV grid, plays one simulated day and judges it by AC power flow;
`--json` prints the summary as one JSON object. Afterwards the data directory is served again and the admin API
must show what the demo claims. Then the pieces on their own: the story does not depend on the date or hour it
runs, the inverters, batteries and chargers follow their controls physically, the aggregator delivers the raise it
offers whatever the hour the demo starts, and the export plan's arithmetic."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pytest
from support import REPO, LiveServer, free_port

from server.orchestration.plan import PlanInputs, solve
from server.sep2 import xml
from server.sim.device import STEP, SeenControl, SimDevice
from server.sim.profiles import Site, interval_mid, make_evs, make_fleet
from server.sim.ven import SimVen, VenEvent

GRID = "1-LV-rural1--0-sw"
KEYS = {
    "violations_unmanaged",
    "violations_managed",
    "curtailed_kwh",
    "flexibility",
    "flexibility_bought_kwh",
    "mv",
    "plan",
    "controls_dispatched",
    "controls_acknowledged",
    "ev_full_by_deadline",
    "battery_charged_kwh",
    "outcome",
}


def test_dso_demo_json_shows_fewer_violations_managed_than_unmanaged(tmp_path):
    pytest.importorskip("pandapower")
    home = tmp_path / "demo"
    # the default week of history: fewer days can hold no day of the event's type (an event on a Saturday after
    # three weekdays of history has no baseline for M&V)
    args = [sys.executable, "-m", "server", "demo", "--dir", str(home), "--json"]
    args += ["--play-seconds", "2", "--port", str(free_port()), "--admin-port", str(free_port())]
    # the timeout only stops a hung demo; how long it takes is the benchmarks' business, not a test's
    proc = subprocess.run(args, capture_output=True, text=True, timeout=560, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout is exactly one JSON object: progress and banners go to stderr
    assert proc.stdout.strip().startswith("{") and proc.stdout.strip().endswith("}")
    assert KEYS <= set(summary), sorted(KEYS - set(summary))
    # progress while it runs, on stderr: each step, and the simulated day two hours at a time
    assert "plan 1 of" in proc.stderr and proc.stderr.count(" UTC: PV ") == 12, proc.stderr[-3000:]
    assert summary["outcome"] == "OK", summary

    # the story: the unmanaged day breaks the grid's limits by power flow, the day the fleet did breaks fewer
    assert summary["violations_unmanaged"] > 0
    assert summary["violations_managed"] < summary["violations_unmanaged"], summary
    assert summary["unmanaged"]["trafo_max_pct"] > 100
    assert summary["curtailed_kwh"] > 0 and summary["battery_charged_kwh"] > 0
    assert summary["controls_dispatched"] > 0
    assert summary["controls_acknowledged"] == summary["controls_dispatched"]
    assert summary["flexibility"]["awards"] == 1 and summary["flexibility_bought_kwh"] > 0
    # the re-plan counts on the flexibility bought and curtails less than the plan before the market
    assert summary["plan"]["id"] == 2 and summary["plan"]["before_market"]["id"] == 1
    assert summary["plan"]["curtailed_kwh"] < summary["plan"]["before_market"]["curtailed_kwh"]
    assert "re-plan 2 counting on" in proc.stderr
    full, due = summary["ev_full_by_deadline"].split("/")
    assert full == due and int(due) >= 1 and summary["ev_energy_short_kwh"] == 0
    assert summary["mv"]["ven_event"]["import_raised_kwh"] > 0
    assert summary["mv"]["export_limits_at_peak"]["export_held_back_kw"] > 0
    assert summary["enrolled"] == summary["sites"] == 13 and summary["grid"]["code"] == GRID

    server = LiveServer(home).init().start()  # the demo's data directory, served again
    try:

        def admin(path: str):
            status, body = server.admin("GET", path)
            assert status == 200, (path, status, body)
            return body

        assert len(admin("/api/v1/devices")) == 13
        model = admin(f"/api/v1/grid/models/{GRID}")
        assert model["name"] == GRID and model["mappings"] == 14  # 13 devices and the VEN
        first, plan = admin("/api/v1/plans/runs/1"), admin("/api/v1/plans/runs/2")
        assert first["status"] == "superseded" and plan["status"] == "active"
        assert plan["check"]["summary"]["violation_intervals_after"] == 0
        assert [c["ven"] for c in plan["inputs"]["cleared_flexibility"]] == [summary["ven"]]
        offers = admin("/api/v1/offers")
        assert [o["status"] for o in offers] == ["cleared"]
        vens = admin("/api/v1/vens")
        assert [v["name"] for v in vens] == ["aggregator-ev"]
        # the aggregator's chargers reported over OpenADR (oadrUpdateReport), each under its own rID
        rows = admin(
            f"/api/v1/telemetry?source_kind=ven&source_id={summary['ven']}&measurement=realPower&limit=100000"
        )
        assert {r["resource"] for r in rows} == {"ev-01", "ev-02", "ev-03", "ev-04"}
        assert len(rows) == summary["ven_values_reported"]
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ the story by construction
def _at(day: str, hour: float) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() + hour * 3600)


@pytest.mark.parametrize("hour", [0.0, 7.5, 12.25, 19.0])
def test_the_simulated_day_is_the_same_in_june_and_december_at_any_hour(hour):
    """The fleet's unmanaged day, the aggregator's cars and hence the unmanaged violations depend neither on the
    date (tried on 2026-12-01 the old demo forecast a winter day that needed nothing) nor on the hour."""
    sites = make_fleet([0, 1, 2], seed=2030)
    june, december = _at("2026-06-21", hour), _at("2026-12-01", hour)
    for site in sites:
        a, b = site.net_w_at(interval_mid(june, 96)), site.net_w_at(interval_mid(december, 96))
        assert np.allclose(a, b)
        assert a.min() < -0.5 * site.pv_w  # a sunny day: more than half the nameplate exported at noon
    ven = SimVen("agg", {}, "https://127.0.0.1:1", "", make_evs(4), bus=0)
    for start in (june, december):
        day = ven.play(start, 96)
        assert day.due == 4 and day.full == 4 and day.short_wh == 0
        if hour in (0.0, 19.0):  # every session of the 24 h lies inside them: all its energy is charged there
            assert np.isclose(day.net_w.sum() * STEP / 3600, day.needed_wh)


def test_the_unmanaged_day_violates_the_grid_whatever_the_date():
    pytest.importorskip("pandapower")
    from server.orchestration import grid_import
    from server.sim.grid import judge, load_buses

    model = grid_import.from_simbench(GRID)
    sites = make_fleet(load_buses(model))
    verdicts = []
    for start in (_at("2026-06-21", 0), _at("2026-12-01", 6.5)):
        mid = interval_mid(start, 96)
        verdicts.append(judge(model, {s.bus: s.net_w_at(mid) for s in sites}))
    assert verdicts[0].intervals == verdicts[1].intervals > 8
    assert verdicts[0].trafo_max_pct > 110


# ---------------------------------------------------------------------------------------------- the physics
def _device(site: Site) -> SimDevice:
    return SimDevice(site=site, cert={"lfdi": "AB" * 20}, base_url="https://127.0.0.1:1", ca="", pin=1)


def test_inverter_holds_the_export_limit_and_the_battery_its_setpoint_within_its_charge():
    site = Site("s", 0, pv_w=20_000, load_scale=1.0, seed=1, battery_w=5_000, battery_wh=10_000)
    dev = _device(site)
    start = _at("2026-12-01", 0)
    noon = start + 10 * 3600
    dev.controls["lim"] = SeenControl("lim", "", noon, 4 * 3600, 6_000.0, None)
    dev.controls["chg"] = SeenControl("chg", "", noon, 4 * 3600, None, None, target_w=-5_000.0)
    dev.controls["dis"] = SeenControl("dis", "", start + 17 * 3600, 4 * 3600, None, None, target_w=5_000.0)
    day = dev.play(start, 96)
    limited = day.limited
    assert limited.sum() == 16 and (day.net_w[limited] >= -6_000 - 1e-6).all()
    assert day.curtailed_wh > 0 and (day.pv_w <= day.pv_avail_w + 1e-9).all()
    assert day.net_w[~limited].min() < -10_000  # without a limit the site exports what the sun gives
    # charging stops when full, discharging when empty; the state of charge stays within the battery
    assert (day.soc_wh >= -1e-6).all() and (day.soc_wh <= site.battery_wh + 1e-6).all()
    assert day.soc_wh[14 * 4 - 1] == pytest.approx(site.battery_wh)
    assert day.soc_wh[-1] == pytest.approx(0.0, abs=1e-6)
    assert (day.battery_w[: 10 * 4] == 0).all()  # idle without a setpoint
    # a cancelled control is not followed
    dev.soc_wh = 5_000.0
    dev.controls["lim"].status = 2
    again = dev.play(start, 96)
    assert not again.limited.any() and again.curtailed_wh == 0


def test_the_aggregator_raises_its_import_in_the_cleared_hours_on_top_of_what_the_cars_need():
    evs = make_evs(3)
    ven = SimVen("agg", {}, "https://127.0.0.1:1", "", evs, bus=0)
    start = _at("2026-12-01", 0)
    window = (start + 10 * 3600, 3 * 3600)  # 10:00-13:00: raise the import by 20 kW
    ven.events["e1"] = VenEvent("e1", 0, "LOAD_DISPATCH", [(*window, 20_000.0)], "far")
    day = ven.play(start, 96)
    hours = np.arange(96) / 4
    asked = (hours >= 10) & (hours < 13)
    assert np.allclose(day.net_w[asked], 20_000)
    assert day.unmanaged_w[asked].sum() == 0  # unmanaged, the cars were full by mid-morning
    # outside the event the cars charge as they would unmanaged: the baseline the plan counts on
    assert np.allclose(day.net_w[~asked], day.unmanaged_w[~asked])
    assert day.full == day.due == 3 and day.short_wh == 0
    extra = 20_000 * 3
    assert np.isclose(day.net_w.sum() * STEP / 3600, sum(e.energy_wh for e in evs) + extra)
    late = (hours >= evs[0].deadline_h) | (hours < min(e.arrive_h for e in evs))
    assert (day.net_w[late] == 0).all()  # only while plugged in
    # a cut is made up outside the event, before the deadline
    ven.events["e1"] = VenEvent("e1", 0, "LOAD_DISPATCH", [(start + 7 * 3600, 3600, -20_000.0)], "far")
    cut = ven.play(start, 96)
    at7 = (hours >= 7) & (hours < 8)
    assert np.allclose(cut.net_w[at7], cut.unmanaged_w[at7] - 20_000)
    assert cut.full == cut.due == 3 and np.isclose(cut.net_w.sum(), cut.unmanaged_w.sum())


@pytest.mark.parametrize("hour", [8.0, 9.0, 17.5])
def test_the_raise_the_aggregator_offers_is_what_it_delivers_whatever_the_hour_the_demo_starts(hour):
    """The demo's day starts at the interval after the hour it runs; the aggregator offers a raise around noon
    and the plan counts on the raise bought on top of the forecast. Started at 09:00 the aggregator once offered
    25 kW from its cars' whole daily need although they had charged most of it since 06:45, and delivered what it
    could by charging less in the morning: 17 violation intervals unmanaged, 10 managed, where the plan forecast
    0. What it offers must be what it does, over the whole day, at any start."""
    day0 = (_at("2026-12-03", hour) // STEP + 1) * STEP
    window = day0 // 86_400 * 86_400 + 34_200  # 09:30-13:30 UTC, today's or, when it has passed, tomorrow's
    if window + 4 * 3600 <= day0:
        window += 86_400
    a, b = max(window, day0), window + 4 * 3600
    ven = SimVen("agg", {}, "https://127.0.0.1:1", "", make_evs(4), bus=0)
    up_kw = ven.raise_kw(a, b)
    assert up_kw >= 20
    ven.events["award"] = VenEvent("award", 0, "LOAD_DISPATCH", [(a, b - a, up_kw * 1000)], "far")
    day = ven.play(day0, 96)
    bought = day.asked_w
    assert bought.sum() * STEP / 3600 == pytest.approx(up_kw * 1000 * (b - a) / 3600)  # Wh
    assert np.allclose(day.net_w, day.unmanaged_w + bought), (day.net_w - day.unmanaged_w - bought) / 1000
    assert day.full == day.due >= 1 and day.short_wh == 0
    # a little more than that it could not hold
    ven.events["award"] = VenEvent("award", 0, "LOAD_DISPATCH", [(a, b - a, up_kw * 1000 + 200)], "far")
    more = ven.play(day0, 96)
    assert not np.allclose(more.net_w, more.unmanaged_w + more.asked_w)


# ------------------------------------------------------------------------------------------ carried over
def test_export_plan_curtails_only_above_the_limit_and_shares_the_limit_per_site():
    t0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    times = [t0 + dt.timedelta(minutes=15 * i) for i in range(96)]
    hours = np.arange(96) / 4
    base = 20 - 60 * np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)  # kW: exports up to 40 kW at noon
    inputs = PlanInputs(
        node="f",
        latitude=None,
        longitude=None,
        export_limit_kw=30,
        forecast_id=1,
        step_s=900,
        times=times,
        base_kw=base,
        sites=["A", "B", "C"],
        rated_kw={"A": 30, "B": 30, "C": 30},
    )
    plan = solve(inputs)
    assert (
        plan.feasible and abs(plan.peak_export_kw - 40) < 0.1 and abs(plan.planned_peak_export_kw - 30) < 1e-3
    )
    over = np.clip(-base - 30, 0, None)
    assert abs(plan.curtailed_kwh - over.sum() / 4) < 1e-3
    first, last = np.flatnonzero(over > 1e-3)[[0, -1]]
    assert plan.window_start == times[first].isoformat()
    assert plan.window_end == (times[last] + dt.timedelta(minutes=15)).isoformat()
    assert plan.site_export_limit_w == 10_000
    d = plan.dispatch(t0)
    assert d is not None and d.export_limit_w == 10_000 and d.duration_s == (last + 1 - first) * 900

    relaxed = solve(PlanInputs(**{**inputs.__dict__, "export_limit_kw": 50}))
    assert relaxed.curtailed_kwh == 0 and relaxed.window_start is None and relaxed.dispatch(t0) is None


def test_simulated_device_reads_the_controls_the_server_renders():
    """The server puts opModExpLimW in the CSIP-AUS namespace and opModTargetW in 2030.5's; the simulated
    device must find both there."""
    device = _device(make_fleet([0])[0])
    control = xml.E(
        "DERControl",
        {"href": "/edev/1/derp/1/derc/7"},
        xml.leaf("mRID", "C0" * 16),
        xml.E("interval", None, xml.leaf("duration", 900), xml.leaf("start", 1_700_000_000)),
        xml.E(
            "DERControlBase",
            None,
            xml.E("csipaus:opModExpLimW", None, xml.leaf("multiplier", 1), xml.leaf("value", 167)),
            xml.E("opModTargetW", None, xml.leaf("multiplier", 0), xml.leaf("value", -2500)),
        ),
    )
    asyncio.run(device._see(control))
    seen = device.controls["C0" * 16]
    assert seen.export_limit_w == 1670 and (seen.start, seen.duration) == (1_700_000_000, 900)
    assert seen.target_w == -2500
