"""`dso demo` end to end: the real command runs its server and a small simulated 2030.5 fleet; afterwards the data
directory is served again and the admin API must show what the demo claims: devices enrolled, readings stored,
a forecast for the feeder, one control per device that its device fetched and acknowledged over 2030.5.
Plus the export plan's arithmetic on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import numpy as np
from support import REPO, LiveServer, free_port

from server.orchestration.plan import PlanInputs, solve
from server.sep2 import xml
from server.sim.device import SimDevice
from server.sim.profiles import make_fleet

DEVICES = 3


def test_dso_demo_runs_the_loop_against_the_real_server(tmp_path):
    home = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "demo",
            "--dir",
            str(home),
            "--devices",
            str(DEVICES),
            "--history-days",
            "3",
            "--duration",
            "20",
            "--port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "OpenDSO demo summary" in out and "outcome         OK" in out, out
    assert f"{DEVICES}/{DEVICES} simulated PV sites enrolled" in out, out
    assert "next: serve the demo's data directory" in out and f"dso serve -c {home / 'dso.toml'}" in out

    # a second run on the same directory: the export limit asked for is set on the existing feeder, and the
    # history it posts again is not stored twice
    again = subprocess.run(
        [sys.executable, "-m", "server", "demo", "--dir", str(home), "--devices", str(DEVICES)]
        + ["--history-days", "3", "--duration", "10", "--export-limit-kw", "7.5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert "export limit is now 7.5 kW" in again.stdout, again.stdout + again.stderr
    assert "Traceback" not in again.stderr, again.stderr

    server = LiveServer(home).init().start()  # the demo's data directory, served again
    try:

        def admin(path: str):
            status, body = server.admin("GET", path)
            assert status == 200, (path, status, body)
            return body

        devices = admin("/api/v1/devices")
        lfdis = {d["lfdi"] for d in devices}
        assert len(lfdis) == DEVICES
        node = admin("/api/v1/grid/nodes/feeder-demo")
        assert {m["id"] for m in node["members"]} == lfdis and node["export_limit_kw"] == 7.5
        for lfdi in lfdis:
            rows = admin(
                f"/api/v1/telemetry?source_kind=device&source_id={lfdi}&measurement=realPower&limit=100000"
            )
            assert len(rows) >= 3 * 96 - 1  # three days of 15-minute history, plus live readings
            assert len(rows) == len({r["ts"] for r in rows}) < 2 * 3 * 96  # two runs, each reading once
            assert {r["resource"] for r in rows} == {lfdi[:30] + "01"}  # the device's own MirrorMeterReading
            rated = admin(f"/api/v1/telemetry?source_kind=device&source_id={lfdi}&measurement=ratedPower")
            assert rated and rated[0]["value"] in {3800, 5000, 6000, 7600, 9600}  # from its DERCapability
        run = admin("/api/v1/forecasts/feeder-demo")
        assert len(run["points"]) == 96
        assert min(p["mean"] for p in run["points"]) < 0  # rooftop PV: the feeder exports around noon
        controls = admin("/api/v1/controls")
        assert len(controls) == DEVICES
        for c in controls:
            assert c["base"]["opModExpLimW"] > 0
            responses = admin(f"/api/v1/controls/{c['id']}/responses")
            assert 1 in {r["status"] for r in responses}, c  # fetched over 2030.5 and acknowledged
            assert {r["lfdi"] for r in responses} <= lfdis
    finally:
        server.stop()


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


def test_simulated_sites_are_plausible():
    site = make_fleet(1, 39.74, -104.99, "America/Denver")[0]
    ts = np.datetime64("2026-06-21T00:00:00") + np.arange(96) * np.timedelta64(900, "s")
    pv, load = site.pv_w_at(ts), site.load_w_at(ts)
    local_hours = (np.arange(96) / 4 - 6) % 24  # Denver is UTC-6 in June
    assert pv.max() <= site.pv_w and pv[(local_hours < 4) | (local_hours > 21)].max() == 0
    assert pv[(local_hours > 11) & (local_hours < 14)].mean() > 0.3 * site.pv_w
    assert 100 < load.min() and load.max() < 5000


def test_simulated_device_reads_the_csip_aus_export_limit_the_server_renders():
    """The server puts opModExpLimW in the CSIP-AUS namespace; the simulated device must find it there."""
    site = make_fleet(1, 39.74, -105.18, "America/Denver", seed=1)[0]
    device = SimDevice(site=site, cert={"lfdi": "AB" * 20}, base_url="https://127.0.0.1:1", ca="", pin=1)
    control = xml.E(
        "DERControl",
        {"href": "/edev/1/derp/1/derc/7"},
        xml.leaf("mRID", "C0" * 16),
        xml.E("interval", None, xml.leaf("duration", 900), xml.leaf("start", 1_700_000_000)),
        xml.E(
            "DERControlBase",
            None,
            xml.E("csipaus:opModExpLimW", None, xml.leaf("multiplier", 1), xml.leaf("value", 167)),
        ),
    )
    asyncio.run(device._see(control))
    seen = device.controls["C0" * 16]
    assert seen.export_limit_w == 1670 and (seen.start, seen.duration) == (1_700_000_000, 900)
