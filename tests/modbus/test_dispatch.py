"""One dispatch to a grid node reaches a 2030.5 device (DERControl), an OpenADR VEN (event) and a SunSpec
Modbus inverter (model 123 write) under it, through the real server and `dso`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from support import LiveServer, dso, dso_json
from support.sunspec_sim import SunSpecSimulator

from server.modbus import sunspec


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One server for the module, scheduled jobs off: every test adds what it dispatches to, and checks what its
    own dispatch stored and wrote."""
    home = tmp_path_factory.mktemp("dispatch") / "dso"
    s = LiveServer(home, extra_env={"DSO_ORCHESTRATION__ENABLED": "false"}).init().start()
    try:
        yield s
    finally:
        s.stop()


def add_inverter(server: LiveServer, sim: SunSpecSimulator, name: str, node: str) -> None:
    """A polled Modbus inverter (once its first reading is in) as the member of the grid node ``node``."""
    cfg = ["-c", server.config]
    dso("modbus", "add", name, "--host", "127.0.0.1", "--port", str(sim.port), "--poll", "1", *cfg)
    deadline = time.monotonic() + 20
    while not server.admin("GET", f"/api/v1/telemetry?source_id={name}&measurement=ratedPower")[1]:
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.3)
    dso("grid", "create", node, *cfg)
    dso("grid", "add", node, "--modbus", name, *cfg)


@pytest.fixture(scope="module")
def fleet(server):
    """A feeder holding one enrolled 2030.5 device, one enrolled VEN and one polled Modbus inverter."""
    cfg = ["-c", server.config]
    device = server.issue_device("site-1")
    dso("device", "enroll", "--lfdi", device["lfdi"], *cfg)
    ven_cert = server.issue_ven("vpp-1")
    ven = dso_json(
        "ven", "enroll", "--name", "vpp-1", "--fingerprint", ven_cert["fingerprint"], "--json", *cfg
    )
    with SunSpecSimulator() as sim:
        add_inverter(server, sim, "inv-1", "feeder-9")
        dso("grid", "add", "feeder-9", "--lfdi", device["lfdi"], *cfg)
        dso("grid", "add", "feeder-9", "--ven", ven["ven_id"], *cfg)
        yield {"device": device, "ven": ven, "sim": sim, "cfg": cfg}


@pytest.fixture
def idle_inverter(server, fleet):
    """An inverter of its own, on a node of its own (feeder-9's inverter may hold an earlier test's limit)."""
    with SunSpecSimulator() as sim:
        add_inverter(server, sim, "inv-2", "feeder-10")
        yield sim


def ids(rows: list[dict]) -> list[int]:
    return [r["id"] for r in rows]


def test_an_export_limit_reaches_every_protocol(server, fleet):
    cfg = fleet["cfg"]
    lfdi = fleet["device"]["lfdi"]
    controls_before = ids(dso_json("control", "list", "--lfdi", lfdi, "--json", *cfg))
    events_before = ids(dso_json("event", "list", "--json", *cfg))
    out = dso_json(
        "dispatch", "--node", "feeder-9", "--duration", "1h", "--export-limit-w", "2500", "--json", *cfg
    )
    assert out["skipped"] == []
    [control] = out["sep2_controls"]
    assert control["lfdi"] == fleet["device"]["lfdi"] and control["base"] == {"opModExpLimW": 2500}
    listed = dso_json("control", "list", "--lfdi", lfdi, "--json", *cfg)
    assert [i for i in ids(listed) if i not in controls_before] == [control["id"]]
    [event] = out["openadr_events"]
    assert event["signal_name"] == "LOAD_DISPATCH" and event["intervals"][0]["value"] == -2500
    events = dso_json("event", "list", "--json", *cfg)
    assert [i for i in ids(events) if i not in events_before] == [event["id"]]
    # the inverter is rated 5000 W: 2500 W is 50 %, written as 500 with its scale factor of -1, at once (the
    # dispatch starts now) through the delivery outbox
    assert [(m["name"], m["export_limit_pct"]) for m in out["modbus_scheduled"]] == [("inv-1", 50.0)]
    sim = fleet["sim"]
    base = sim.address_of(123)
    wait_for(lambda: sim.registers[base + sunspec.WMAXLIM_ENA] == 1, "the limit written")
    assert sim.registers[base + sunspec.WMAXLIMPCT] == 500


def wait_for(predicate, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_dispatch_scheduled_for_later_reaches_the_inverter_when_it_starts_and_is_released_when_it_ends(
    server, fleet, idle_inverter
):
    sim = idle_inverter
    base = sim.address_of(123)
    # far enough ahead that the CLI has answered before it starts, even on a loaded machine
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=12)
    out = dso_json(
        "dispatch", "--node", "feeder-10", "--start", start.isoformat(), "--duration", "4",
        "--export-limit-w", "1000", "--json", *fleet["cfg"],
    )  # fmt: skip
    assert [(m["name"], m["export_limit_pct"]) for m in out["modbus_scheduled"]] == [("inv-2", 20.0)]
    assert dt.datetime.now(dt.UTC) < start, "the dispatch command answered only after the start it was given"
    # nothing is written before the dispatch starts
    assert sim.registers[base + sunspec.WMAXLIM_ENA] == 0
    wait_for(lambda: sim.registers[base + sunspec.WMAXLIM_ENA] == 1, "the limit written at the start")
    assert dt.datetime.now(dt.UTC) >= start - dt.timedelta(milliseconds=50)
    assert sim.registers[base + sunspec.WMAXLIMPCT] == 200  # 20 % with the scale factor -1
    wait_for(lambda: sim.registers[base + sunspec.WMAXLIM_ENA] == 0, "the limit released at the end")
    assert dt.datetime.now(dt.UTC) >= start + dt.timedelta(seconds=4) - dt.timedelta(milliseconds=50)
    # both writes went out through the outbox's modbus channel
    rows = dso_json("deliveries", "list", "--channel", "modbus", "--json", *fleet["cfg"])
    mine = [m for m in rows if m["key"].startswith("modbus:inv-2:")]
    assert sorted(m["kind"] for m in mine if m["status"] == "delivered") == ["apply", "release"]


def test_a_demand_response_level_goes_to_vens_only(server, fleet):
    out = dso_json(
        "dispatch", "--node", "feeder-9", "--duration", "30m", "--dr-level", "2", "--json", *fleet["cfg"]
    )
    assert out["sep2_controls"] == [] and out["modbus_scheduled"] == []
    [event] = out["openadr_events"]
    assert event["signal_name"] == "SIMPLE" and event["intervals"][0]["value"] == 2
    assert any("device" in s for s in out["skipped"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--duration", "1h"], "needs a limit"),
        (["--duration", "1h", "--export-limit-w", "-5"], "must not be negative"),
        (["--duration", "1h", "--export-limit-w", "5", "--start", "tomorrow"], "ISO 8601"),
    ],
)
def test_bad_dispatches_are_refused_and_store_nothing(server, fleet, args, needle):
    cfg = fleet["cfg"]
    controls, events = dso_json("control", "list", "--json", *cfg), dso_json("event", "list", "--json", *cfg)
    proc = dso("dispatch", "--node", "feeder-9", *args, *cfg, check=False)
    assert proc.returncode == 1 and needle in proc.stderr
    assert dso_json("control", "list", "--json", *cfg) == controls
    assert dso_json("event", "list", "--json", *cfg) == events
