"""Staff commands against the real server: grid nodes changed and removed, PIN check digits, controls with
units and a start in the past, human output without Python reprs or raw XML, forecast times in the node's
zone."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from support import dso, dso_json
from support.sep2 import Sep2Client

from server.sep2 import xml


@pytest.fixture(scope="module")
def server(shared_server):
    return shared_server


def cli(server, *args: str, check: bool = True):
    return dso(*args, "-c", server.config, check=check)


def one_line_error(proc) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_version():
    proc = dso("--version")
    assert proc.stdout.strip() == "dso (OpenDSO) 0.1.0"


def test_grid_nodes_are_changed_and_removed(server):
    cli(server, "grid", "create", "feeder-u")
    cli(server, "grid", "create", "tx-u", "--kind", "transformer", "--parent", "feeder-u")
    # no export limit: nothing to plan against, and now something to set it with
    out = cli(
        server, "grid", "update", "feeder-u", "--export-limit-kw", "12.5", "--timezone", "America/Denver"
    )
    assert "export limit 12.5 kW" in out.stdout and "America/Denver" in out.stdout
    node = server.admin("GET", "/api/v1/grid/nodes/feeder-u")[1]
    assert (node["export_limit_kw"], node["timezone"], node["import_limit_kw"]) == (
        12.5,
        "America/Denver",
        None,
    )
    node = dso_json("grid", "update", "feeder-u", "--clear", "export-limit-kw", "--json", "-c", server.config)
    assert node["export_limit_kw"] is None and node["timezone"] == "America/Denver"
    # refusals: a node cannot sit below itself, names stay unique, unknown fields are named, bad zones refused
    for body, status, needle in [
        ({"parent": "tx-u"}, 400, "cannot be its parent"),
        ({"parent": "feeder-u"}, 400, "cannot be its parent"),
        ({"name": "tx-u"}, 409, "exists"),
        ({"colour": "red"}, 400, "colour"),
        ({"timezone": "Mars/Olympus"}, 400, "time zone"),
        ({"export_limit_kw": -1}, 400, "non-negative"),
        ({"name": None}, 400, "cannot be cleared"),
    ]:
        got, answer = server.admin("PATCH", "/api/v1/grid/nodes/feeder-u", body)
        assert got == status and needle in answer["error"], (body, answer)
    assert one_line_error(cli(server, "grid", "update", "feeder-u", check=False)).count("nothing to change")
    # a node with nodes below it stays; the leaf goes, then the parent
    assert "tx-u" in one_line_error(cli(server, "grid", "delete", "feeder-u", check=False))
    assert cli(server, "grid", "delete", "tx-u").stdout.strip() == "deleted grid node tx-u"
    assert server.admin("GET", "/api/v1/grid/nodes/tx-u")[0] == 404
    cli(server, "grid", "update", "feeder-u", "--name", "feeder-v")
    assert server.admin("DELETE", "/api/v1/grid/nodes/feeder-v")[0] == 204
    assert server.admin("DELETE", "/api/v1/grid/nodes/feeder-v")[0] == 404


def test_pin_check_digit(server):
    cert = server.issue_device("pin-dev")
    err = one_line_error(
        cli(server, "device", "enroll", "--lfdi", cert["lfdi"], "--pin", "123456", check=False)
    )
    assert "check digit" in err and "should be 5" in err
    status, body = server.admin("PUT", f"/api/v1/sep2/end-devices/{cert['lfdi']}", {"pin": 111111})
    assert status == 400 and "check digit" in body["error"]
    assert cert["lfdi"] not in {d["lfdi"] for d in server.admin("GET", "/api/v1/devices")[1]}
    cli(server, "device", "enroll", "--lfdi", cert["lfdi"], "--pin", "123455")


def _iso(seconds_from_now: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)).isoformat()


def test_controls_take_units_and_say_when_they_start_in_the_past(server):
    cert = server.issue_device("ctl-dev")
    cli(server, "device", "enroll", "--lfdi", cert["lfdi"], "--pin", "111115")
    base = ["control", "create", "--lfdi", cert["lfdi"], "--exp-lim-w", "1000", "--connect", "1"]
    made = dso_json(*base, "--start", "now", "--duration", "1h", "--json", "-c", server.config)
    assert made["duration_s"] == 3600 and made["warnings"] == []
    human = cli(server, *base, "--start", "now", "--duration", "90m").stdout
    assert "opModExpLimW=1000 W" in human and "opModConnect=on" in human and "{" not in human
    assert "{" not in cli(server, "control", "list", "--lfdi", cert["lfdi"]).stdout
    # started ten minutes ago, runs an hour: created, and said so
    late = cli(server, *base, "--start", _iso(-600), "--duration", "1h")
    assert "warning: the control started" in late.stderr and "created control" in late.stdout
    # over before it was made: refused, unless asked for
    err = one_line_error(cli(server, *base, "--start", _iso(-7200), "--duration", "1h", check=False))
    assert "ended" in err and "--allow-past" in err
    forced = cli(server, *base, "--start", _iso(-7200), "--duration", "1h", "--allow-past")
    assert "warning: the control ended" in forced.stderr


def test_sep2_show_prints_values_not_xml(server):
    client = Sep2Client(server, server.issue_device("show-dev"))
    edev = client.register()
    now = int(time.time())
    status = (
        f'<DERStatus xmlns="{xml.NS}"><genConnectStatus><dateTime>{now}</dateTime><value>07</value>'
        f"</genConnectStatus><readingTime>{now}</readingTime></DERStatus>"
    )
    assert client.put(edev + "/der/1/ders", status).status == 204
    out = cli(server, "sep2", "show", client.lfdi).stdout
    assert f"ders: genConnectStatus/dateTime={now}, genConnectStatus/value=07, readingTime={now}" in out
    assert "<" not in out


def test_forecast_times_are_in_the_nodes_zone_and_labelled(server, tmp_path):
    cert = server.issue_device("tz-dev")
    cli(server, "grid", "create", "feeder-tz", "--timezone", "America/Denver")
    cli(server, "grid", "add", "feeder-tz", "--lfdi", cert["lfdi"])
    end = int(time.time()) // 900 * 900
    csv = tmp_path / "history.csv"
    rows = [
        # a day shape with some interval-to-interval variation: a perfectly flat series reads as a stuck meter
        f"{dt.datetime.fromtimestamp(t, dt.UTC).isoformat()},{1000 + 500 * ((t // 3600) % 24 > 12) + (t // 900) % 7}"
        for t in range(end - 3 * 86400, end, 900)
    ]
    csv.write_text("time,value\n" + "\n".join(rows) + "\n")
    out = cli(server, "telemetry", "import", str(csv), "--lfdi", cert["lfdi"]).stdout
    assert out.strip() == f"stored {len(rows)} readings"
    # a re-import stores nothing twice
    again = json.loads(cli(server, "telemetry", "import", str(csv), "--lfdi", cert["lfdi"], "--json").stdout)
    assert again == {"stored": 0, "already_stored": len(rows)}
    png = tmp_path / "f.png"
    table = cli(server, "forecast", "--node", "feeder-tz", "--horizon", "2h", "--plot", str(png)).stdout
    lines = table.splitlines()
    assert "times in America/Denver" in lines[0] and lines[0].split(" issued ")[1][17:20] in ("MST", "MDT")
    points = [line for line in lines[1:] if line.startswith("  20")]
    assert len(points) == 8 and all(line.split()[2] in ("MST", "MDT") for line in points)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_forecast_plot_axis_in_the_nodes_zone():
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from server.cli.grid_cmds import figure

    t0 = dt.datetime(2026, 12, 2, 19, 0, tzinfo=dt.UTC)  # 12:00 in Denver
    run = {
        "target": "load",
        "node": "f",
        "timezone": "America/Denver",
        "issued_at": t0.isoformat(),
        "points": [
            {"ts": (t0 + dt.timedelta(hours=h)).isoformat(), "mean": 1.0, "q10": 0.0, "q90": 2.0}
            for h in range(4)
        ],
    }
    fig = figure(run)
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "time (America/Denver)"
        assert ax.xaxis.get_major_formatter()(mdates.date2num(t0)) == "Wed 12:00"
        assert "12:00 MST" in ax.get_title()
    finally:
        plt.close(fig)
