"""M&V of dispatched events through the real server: `dso mv`, `GET /api/v1/events/{id}/mv` and its CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import urllib.request

import pytest
from support import dso, dso_json

from server.core.mv import CSV_COLUMNS

STEP = 900


@pytest.fixture
def server(quiet_server):
    return quiet_server


def write_history(path, start, end, usual, during, window, gap=None):
    lines = ["time,value"]
    t = start
    while t < end:
        if t != gap:
            value = during if window[0] <= t < window[1] else usual
            lines.append(f"{t.isoformat()},{value}")
        t += dt.timedelta(seconds=STEP)
    path.write_text("\n".join(lines) + "\n")


def test_dispatched_events_report_delivered_kw(server, tmp_path):
    cfg = ["-c", server.config]
    device = server.issue_device("site-mv")
    dso("device", "enroll", "--lfdi", device["lfdi"], *cfg)
    ven_cert = server.issue_ven("vpp-mv")
    ven = dso_json(
        "ven", "enroll", "--name", "vpp-mv", "--fingerprint", ven_cert["fingerprint"], "--json", *cfg
    )
    dso("grid", "create", "tx-mv", "--kind", "transformer", *cfg)
    dso("grid", "add", "tx-mv", "--lfdi", device["lfdi"], *cfg)
    dso("grid", "add", "tx-mv", "--ven", ven["ven_id"], *cfg)

    now = dt.datetime.now(dt.UTC)
    now = dt.datetime.fromtimestamp(now.timestamp() // STEP * STEP, dt.UTC)
    start, end = now - dt.timedelta(hours=3), now - dt.timedelta(hours=1)
    history_start = now - dt.timedelta(days=40)
    # the device drew 1 kW every day and 0.6 kW in the event window; the VEN 2 kW and 1.5 kW, one reading lost
    gap = start + dt.timedelta(minutes=30)
    write_history(tmp_path / "d.csv", history_start, now, 1000, 600, (start, end))
    write_history(tmp_path / "v.csv", history_start, now, 2000, 1500, (start, end), gap=gap)
    dso("telemetry", "import", str(tmp_path / "d.csv"), "--lfdi", device["lfdi"], *cfg)
    dso("telemetry", "import", str(tmp_path / "v.csv"), "--ven", ven["ven_id"], *cfg)

    out = dso_json(
        "dispatch", "--node", "tx-mv", "--start", start.isoformat(), "--duration", "2h",
        "--import-limit-w", "700", "--json", *cfg,
    )  # fmt: skip
    [control], [oadr] = out["sep2_controls"], out["openadr_events"]

    report = dso_json("mv", str(control["id"]), "--json", *cfg)
    assert report["direction"] == "load" and report["method"] == "10-of-10 multiplicative adjustment cap 0.2"
    [res] = report["resources"]
    assert res["resource"] == f"device:{device['lfdi']}" and res["node"] == "tx-mv"
    assert len(res["days_used"]) == 10 and res["flags"] == []
    assert res["adjustment_factor"] == pytest.approx(1.0)
    assert len(res["intervals"]) == 8
    for i in res["intervals"]:
        assert (i["baseline_kw"], i["measured_kw"], i["delivered_kw"]) == pytest.approx((1.0, 0.6, 0.4))
    assert [n["node"] for n in report["nodes"]] == ["tx-mv"]
    assert report["program_total"][0]["delivered_kw"] == pytest.approx(0.4)
    human = dso("mv", str(control["id"]), *cfg).stdout
    assert "0.800 kWh" in human and "tx-mv" in human

    csv_path = tmp_path / "settle.csv"
    dso("mv", str(oadr["id"]), "--csv", str(csv_path), *cfg)
    rows = list(csv.DictReader(csv_path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    resource_rows = [r for r in rows if r["level"] == "resource"]
    assert [r["resource"] for r in resource_rows] == [f"ven:{ven['ven_id']}"] * 8
    assert {r["delivered_kw"] for r in resource_rows if r["interval_start"] != gap.isoformat()} == {"0.5"}
    [hole] = [r for r in resource_rows if r["interval_start"] == gap.isoformat()]
    assert (
        hole["measured_kw"] == ""
        and hole["delivered_kw"] == ""
        and "missing_measurement" in hole["data_quality"]
    )
    assert hole["baseline_kw"] == "2.0" and len(hole["days_used"].split()) == 10
    [program_hole] = [r for r in rows if r["level"] == "program" and r["interval_start"] == gap.isoformat()]
    assert program_hole["delivered_kw"] == "" and "delivered_missing:1/1" in program_hole["data_quality"]

    # the route's own CSV is the same settlement file
    request = urllib.request.Request(
        server.info["admin_url"] + f"/api/v1/events/{oadr['id']}/mv?format=csv",
        headers={"Authorization": f"Bearer {server.info['admin_token']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/csv")
        assert list(csv.DictReader(io.StringIO(response.read().decode()))) == rows

    # an additive adjustment on request; bad parameters are a 400 and the server stays up
    status, additive = server.admin("GET", f"/api/v1/events/{control['id']}/mv?adjustment=additive")
    assert status == 200 and additive["resources"][0]["adjustment_factor"] == pytest.approx(0.0)
    for query in ("adjustment=guess", "cap=x", "days=0", "format=xml"):
        status, body = server.admin("GET", f"/api/v1/events/{control['id']}/mv?{query}")
        assert status == 400, (query, body)
    assert server.admin("GET", "/api/v1/events/99999/mv")[0] == 404
    assert server.admin("GET", f"/api/v1/events/{control['id']}/mv")[0] == 200
