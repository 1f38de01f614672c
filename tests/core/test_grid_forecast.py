"""Grid nodes, telemetry import and node forecasts through the real server and `dso`; the aggregation rules;
the scheduler's forecast job and its leader lock."""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pytest
from support import LiveServer, dso, dso_json

from server.config import OrchestrationSettings
from server.core.forecasts import aggregate
from server.orchestration.scheduler import Scheduler
from server.store import create_store
from server.store.migrate import upgrade

STEP = 900


def load_csv(path, start: dt.datetime, days: int, base_w: float, phase: float = 0.0) -> None:
    """A daily-shaped load (W) every 15 minutes, with a weekend dip, as an AMI export would give it."""
    lines = ["time,value"]
    for i in range(days * 96):
        ts = start + dt.timedelta(seconds=i * STEP)
        hour = ts.hour + ts.minute / 60
        weekend = 0.8 if ts.weekday() >= 5 else 1.0
        value = base_w * weekend * (1 + 0.4 * math.sin(2 * math.pi * (hour - 8 + phase) / 24))
        lines.append(f"{ts.isoformat()},{value:.1f}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def server(quiet_server):
    """Scheduler off: runs here come only from the commands under test."""
    return quiet_server


@pytest.fixture
def scheduled_server(tmp_path):
    s = LiveServer(tmp_path / "dso", extra_env={"DSO_ORCHESTRATION__FORECAST_INTERVAL_S": "2"}).init().start()
    yield s
    s.stop()


def test_forecast_a_feeder_from_imported_telemetry(server, tmp_path):
    cfg = ["-c", server.config]
    a, b = server.issue_device("meter-a"), server.issue_device("meter-b")
    dso("grid", "create", "feeder-1", "--kind", "feeder", "--timezone", "America/Denver", *cfg)
    dso("grid", "create", "tx-7", "--kind", "transformer", "--parent", "feeder-1", *cfg)
    dso("grid", "add", "feeder-1", "--lfdi", a["lfdi"], *cfg)
    dso("grid", "add", "tx-7", "--lfdi", b["lfdi"], *cfg)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = now - dt.timedelta(days=14)
    load_csv(tmp_path / "a.csv", start, 14, 2000.0)
    load_csv(tmp_path / "b.csv", start, 14, 1000.0, phase=3)
    assert dso_json("telemetry", "import", str(tmp_path / "a.csv"), "--lfdi", a["lfdi"], *cfg, "--json") == {
        "stored": 14 * 96,
        "already_stored": 0,
    }
    dso("telemetry", "import", str(tmp_path / "b.csv"), "--lfdi", b["lfdi"], "--scale", "none", *cfg)

    run = dso_json("forecast", "--node", "feeder-1", "--horizon", "24h", "--json", *cfg)
    assert run["node"] == "feeder-1" and run["model"] == "LoadForecaster" and run["unit"] == "W"
    assert run["sources"] == 2  # the transformer's meter counts in the feeder
    points = run["points"]
    assert len(points) == 96
    first = dt.datetime.fromisoformat(points[0]["ts"])
    assert dt.timedelta(0) < first - now <= dt.timedelta(minutes=15) or first > now - dt.timedelta(minutes=15)
    means = np.array([p["mean"] for p in points])
    # the node is the sum of both meters: between 0.6 and 1.4 of 3 kW, shaped like the history
    assert 1500 < means.min() and means.max() < 4500 and means.max() - means.min() > 600
    assert all(p["q10"] <= p["mean"] <= p["q90"] for p in points)
    latest = dso_json(
        "forecast", "--node", "feeder-1", "--latest", "--json", *cfg, "--plot", str(tmp_path / "f.png")
    )
    assert latest["id"] == run["id"] and latest["points"] == points
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scheduler_forecasts_every_node_with_members(scheduled_server, tmp_path):
    server = scheduled_server
    cfg = ["-c", server.config]
    meter = server.issue_device("meter")
    dso("grid", "create", "feeder-2", *cfg)
    dso("grid", "create", "empty-feeder", *cfg)
    dso("grid", "add", "feeder-2", "--lfdi", meter["lfdi"], *cfg)
    load_csv(tmp_path / "m.csv", dt.datetime.now(dt.UTC) - dt.timedelta(days=7), 7, 500.0)
    dso("telemetry", "import", str(tmp_path / "m.csv"), "--lfdi", meter["lfdi"], *cfg)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = server.admin("GET", "/api/v1/forecasts/feeder-2")
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200 and len(body["points"]) == 96, body
    assert server.admin("GET", "/api/v1/forecasts/empty-feeder")[0] == 404
    assert "forecast job" in server.log()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["grid", "create", "x", "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["grid", "add", "nope", "--lfdi", "AB" * 20], "no grid node"),
        (["forecast", "--node", "nope"], "no grid node"),
    ],
)
def test_grid_and_forecast_errors_are_one_line(server, args, needle):
    proc = dso(*args, "-c", server.config, check=False)
    assert proc.returncode == 1 and needle in proc.stderr and proc.stderr.count("\n") == 1


def test_forecast_of_a_node_without_data_says_so(server):
    cfg = ["-c", server.config]
    dso("grid", "create", "quiet", *cfg)
    proc = dso("forecast", "--node", "quiet", *cfg, check=False)
    assert proc.returncode == 1 and "no members" in proc.stderr
    dso("grid", "add", "quiet", "--ven", "VEN-1", *cfg)
    proc = dso("forecast", "--node", "quiet", *cfg, check=False)
    assert proc.returncode == 1 and "not enough realPower telemetry" in proc.stderr


def test_telemetry_import_rejects_bad_rows_and_stores_nothing(server):
    lfdi = "AB" * 20
    for readings in (
        [["2026-01-01T00:00:00", 1.0]],
        [["yesterday", 1.0]],
        [["2026-01-01T00:00:00Z", "x"]],
        [["2026-01-01T00:00:00Z", 1.0], ["2026-01-01T00:15:00Z", float("nan")]],
    ):
        status, body = server.admin(
            "POST",
            "/api/v1/telemetry",
            {"source_kind": "device", "source_id": lfdi, "measurement": "realPower", "readings": readings},
        )
        assert status == 400, body
    assert server.admin("GET", f"/api/v1/telemetry?source_id={lfdi}")[1] == []


def test_aggregate_sums_sources_and_marks_gaps_inside_a_span_unknown():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def at(i: int) -> dt.datetime:
        return start + dt.timedelta(seconds=i * STEP)

    rows = [("device", "A", at(i), 100.0) for i in range(8) if i != 3]  # A misses interval 3
    rows += [("device", "B", at(i), 10.0) for i in range(4, 8)]  # B appears at interval 4
    rows += [("device", "B", at(5) + dt.timedelta(seconds=60), 30.0)]  # two samples: the mean counts
    rows += [("device", "A", at(8), 100.0)]  # A is one interval ahead of B at the end
    values, used = aggregate(rows, start, STEP, 12)
    assert used == 2
    assert np.isnan(values[3])
    assert values.tolist()[:3] == [100.0, 100.0, 100.0]  # B absent before its first report
    assert values[4] == 110.0 and values[5] == 120.0 and values[7] == 110.0
    assert np.isnan(values[8:]).all()  # B has not reached interval 8 yet: not a drop, just not known yet


def test_aggregate_leaves_time_before_any_report_unknown():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [("ven", "V", start + dt.timedelta(seconds=i * STEP), 5.0) for i in range(4, 6)]
    values, _ = aggregate(rows, start, STEP, 6)
    assert np.isnan(values[:4]).all() and values[4:].tolist() == [5.0, 5.0]


async def test_only_one_scheduler_leads_on_postgresql(pg_database):
    store = create_store(pg_database)
    await upgrade(store)
    settings = OrchestrationSettings()
    first, second = Scheduler(store, settings), Scheduler(store, settings)
    try:
        assert await first._try_lead() is True
        assert await second._try_lead() is False
        await first.stop()  # the leader goes away: its lock is released with its connection
        assert await second._try_lead() is True
    finally:
        await second.stop()
        await store.close()


async def test_a_ven_reporting_per_resource_is_the_sum_of_its_resources(tmp_path):
    """A VEN's chargers each report their own rID: the node's series adds them (a device's meter readings are
    one series, as before)."""
    from server.core import forecasts, grid, parties, telemetry

    store = create_store(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    await upgrade(store)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        async with store.sessions.begin() as session:
            await parties.enroll_ven(session, "depot", "AA:BB:CC:DD:EE:FF:00:11:22:33", ven_id="V1")
            await grid.create_node(session, "feeder", "feeder")
            await grid.add_member(session, "feeder", "ven", "V1")
            await telemetry.add(
                session,
                [
                    telemetry.Reading(
                        "ven", "V1", "realPower", start + dt.timedelta(seconds=i * STEP), w, "W", resource=r
                    )
                    for i in range(4)
                    for r, w in (("ev-1", 11_000.0), ("ev-2", 7_000.0))
                ],
            )
        async with store.sessions() as session:
            series = await forecasts.node_series(
                session, "feeder", "realPower", STEP, start, start + dt.timedelta(seconds=4 * STEP)
            )
        assert series.values.tolist() == [18_000.0] * 4
    finally:
        await store.close()
