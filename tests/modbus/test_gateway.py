"""The SunSpec Modbus gateway against a simulated inverter on loopback, through the real server and `dso`."""

from __future__ import annotations

import time

import pytest
from support import LiveServer, dso, dso_json
from support.sunspec_sim import SunSpecSimulator

from server.modbus import sunspec


@pytest.fixture
def server(quiet_server):
    return quiet_server


def wait_for_telemetry(server: LiveServer, name: str, measurement: str, within: float = 20) -> list[dict]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        _, rows = server.admin(
            "GET", f"/api/v1/telemetry?source_kind=modbus&source_id={name}&measurement={measurement}"
        )
        if rows:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"no {measurement} telemetry from {name}:\n{server.log()[-3000:]}")


def test_gateway_polls_sunspec_telemetry_into_the_store(server):
    cfg = ["-c", server.config]
    with SunSpecSimulator() as sim:
        dso("modbus", "add", "inv-1", "--host", "127.0.0.1", "--port", str(sim.port), "--poll", "1", *cfg)
        power = wait_for_telemetry(server, "inv-1", "realPower")
        assert power[0]["value"] == 4321.0 and power[0]["unit"] == "W"
        values = {
            m: wait_for_telemetry(server, "inv-1", m)[0]["value"]
            for m in ("frequency", "reactivePower", "energyReal", "voltage", "powerFactor", "ratedPower")
        }
        assert values == {
            "frequency": pytest.approx(50.02),
            "reactivePower": -150.0,
            "energyReal": 1_234_567.0,
            "voltage": pytest.approx(230.5),
            "powerFactor": pytest.approx(0.98),
            "ratedPower": 5000.0,
        }
        device = dso_json("modbus", "list", "--json", *cfg)[0]
        assert (device["manufacturer"], device["model"], device["serial"]) == (
            "OpenDSO Sim",
            "INV-5K",
            "SN-0042",
        )
        assert device["models"] == "1,103,120,123" and device["last_error"] == ""


def test_export_limit_and_disconnect_are_written_to_model_123(server):
    cfg = ["-c", server.config]
    with SunSpecSimulator() as sim:
        dso("modbus", "add", "inv-2", "--host", "127.0.0.1", "--port", str(sim.port), "--poll", "3600", *cfg)
        out = dso_json("modbus", "control", "inv-2", "--export-limit-pct", "50", "--json", *cfg)
        base = sim.address_of(123)
        # WMaxLimPct_SF is -1 in the device: 50 % is written as 500, then the limit is enabled
        assert sim.registers[base + sunspec.WMAXLIMPCT] == 500
        assert sim.registers[base + sunspec.WMAXLIM_ENA] == 1
        assert out["writes"] == [
            {"offset": sunspec.WMAXLIMPCT, "value": 500},
            {"offset": sunspec.WMAXLIM_ENA, "value": 1},
        ]
        dso("modbus", "control", "inv-2", "--connect", "0", *cfg)
        assert sim.registers[base + sunspec.CONN] == 0
        dso("modbus", "control", "inv-2", "--release-limit", *cfg)
        assert sim.registers[base + sunspec.WMAXLIM_ENA] == 0


def test_unreachable_or_non_sunspec_devices_are_reported_not_fatal(server):
    cfg = ["-c", server.config]
    with SunSpecSimulator(registers={40000: 0x1234, 40001: 0x5678}) as sim:
        dso(
            "modbus",
            "add",
            "not-sunspec",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim.port),
            "--poll",
            "1",
            *cfg,
        )
        dso("modbus", "add", "gone", "--host", "127.0.0.1", "--port", "1", "--poll", "1", *cfg)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            devices = {d["name"]: d for d in dso_json("modbus", "list", "--json", *cfg)}
            if all(d["last_error"] for d in devices.values()):
                break
            time.sleep(0.3)
        assert "no SunSpec marker" in devices["not-sunspec"]["last_error"]
        assert devices["gone"]["last_error"]
        proc = dso("modbus", "control", "gone", "--connect", "1", *cfg, check=False)
        assert proc.returncode == 1 and "gone" in proc.stderr
    assert server.admin("GET", "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--export-limit-pct", "150"], "0..100"),
        ([], "nothing to apply"),
    ],
)
def test_bad_control_requests(server, args, needle):
    with SunSpecSimulator() as sim:
        dso(
            "modbus",
            "add",
            "inv-3",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim.port),
            "--poll",
            "3600",
            "-c",
            server.config,
        )
        proc = dso("modbus", "control", "inv-3", *args, "-c", server.config, check=False)
        assert proc.returncode == 1 and needle in proc.stderr
        assert sim.writes == []


def test_decoders_handle_not_implemented_points():
    # "not implemented": 0xFFFF for unsigned points, 0x8000 for signed points and scale factors
    data = [0xFFFF] * 50
    for signed_point in (12, 16, 18, 20):
        data[signed_point] = 0x8000
    for sf in (4, 11, 13, 15, 17, 19, 21, 24):
        data[sf] = 0x8000
    assert sunspec.decode_inverter(data) == {}
    data[12], data[13] = 100, 0x8000  # a value whose scale factor is missing is still unknown
    assert "realPower" not in sunspec.decode_inverter(data)
    assert sunspec.scale(0xFFCE, 0, signed=True) == -50.0
    assert sunspec.encode_export_limit(42.5, 0xFFFE) == [(sunspec.WMAXLIMPCT, 4250), (sunspec.WMAXLIM_ENA, 1)]
