"""The loop on a running server: a small grid whose forecast overloads its transformer, two rooftop PV
inverters and a battery enrolled over IEEE 2030.5 and an OpenADR VEN, all mapped to the grid by staff; the
scheduler (not staff) forecasts from the sites' metered history and plans; the devices fetch their envelopes
and setpoints as DERControls over mutual TLS and the VEN polls its LOAD_DISPATCH event; the stored plan shows
the overload removed by AC power flow, and ``dso plan show`` / ``dso event show`` say why a device got its limit.

What the fleet then delivers (measurement and verification against a baseline) is read from telemetry by the
M&V part of the loop; this test leaves it at the plan's events, which is where M&V starts from (each event links
to its plan and resource: ``GET /api/v1/events/{id}`` -> ``plans``)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from lxml import etree
from support import LiveServer, dso, dso_json, loop_grid
from support.openadr import FAST_ENV, RawVen, SchemaWatch
from support.sep2 import Sep2Client

from server.openadr import codec
from server.sep2 import xml

pytest.importorskip("pandapower")
MODEL = "loopfeeder"


@pytest.fixture
def server(tmp_path):
    env = {
        **FAST_ENV,
        # the loop every 4 s instead of 15 min; no day-ahead job in the test
        "DSO_ORCHESTRATION__REPLAN_INTERVAL_S": "4",
        "DSO_ORCHESTRATION__DAY_AHEAD_AT": "",
    }
    s = LiveServer(tmp_path / "dso", extra_env=env).init().start()
    try:
        yield s
    finally:
        s.stop()


def device(server: LiveServer, name: str, dercap: str, ders: str | None = None) -> Sep2Client:
    client = Sep2Client(server, server.issue_device(name))
    status, made = server.admin("PUT", f"/api/v1/sep2/end-devices/{client.lfdi}", {"pin": 111115})
    assert status in (200, 201), made
    client.edev = made["href"]  # type: ignore[attr-defined]
    # what the device says of itself, over its own TLS connection
    assert client.put(made["href"] + "/der/1/dercap", dercap).status == 204
    if ders:
        assert client.put(made["href"] + "/der/1/ders", ders).status == 204
    return client


def controls(client: Sep2Client) -> list[dict]:
    """Every DERControl the device can see, through FunctionSetAssignments -> DERPrograms -> DERControls."""
    out = []
    fsa = client.get(client.edev + "/fsa?l=10").all("FunctionSetAssignments")  # type: ignore[attr-defined]
    for f in fsa:
        for derp in client.get(f.get("href") + "/derp?l=10").all("DERProgram"):
            for c in client.get(derp.get("href") + "/derc?l=200").all("DERControl"):
                base = c.find(xml.q("DERControlBase"))
                fields = {etree.QName(x).localname: xml.text(x, "value") for x in base}
                out.append({"href": c.get("href"), "primacy": xml.text(derp, "primacy"), **fields})
    return out


def wait(predicate, within: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def test_the_scheduler_plans_and_every_protocol_receives_the_plan(server, tmp_path):
    cfg = ["-c", server.config]
    feeder = tmp_path / "loopfeeder.json"
    feeder.write_text(loop_grid.grid_json())
    out = dso_json("grid", "import", str(feeder), "--json", *cfg)
    assert out["version"] == 1 and f"{MODEL}/T1" in out["zones"].values()
    # the imported transformer is a grid node like any other, with its rating as its limits
    node = dso_json("grid", "list", "--json", *cfg)
    t1 = next(n for n in node if n["name"] == f"{MODEL}/T1")
    assert t1["kind"] == "transformer" and t1["export_limit_kw"] == loop_grid.TRAFO_KVA

    # bad input is refused with the reason, nothing stored
    status, err = server.admin("POST", "/api/v1/grid/models", {"name": "broken", "pandapower": "{not json"})
    assert status == 400 and "pandapower" in err["error"], err
    status, err = server.admin(
        "POST", f"/api/v1/grid/models/{MODEL}/mappings", {"bus": 999, "kind": "ven", "id": "x"}
    )
    assert status == 400 and "999" in err["error"], err
    _, models = server.admin("GET", "/api/v1/grid/models")
    assert [m["name"] for m in models] == [MODEL]

    pv0 = device(server, "pv-0", loop_grid.dercap_xml(4, loop_grid.PV_W))
    pv1 = device(server, "pv-1", loop_grid.dercap_xml(4, loop_grid.PV_W))
    bat = device(
        server,
        "battery",
        loop_grid.dercap_xml(80, loop_grid.BATTERY_W, loop_grid.BATTERY_WH),
        loop_grid.ders_xml(50),
    )
    watch = SchemaWatch()
    ven = RawVen(server, "business", watch)
    ven.register()
    now = dt.datetime.now(dt.UTC)
    for client, site in ((pv0, "house 0"), (pv1, "house 1"), (bat, "business")):
        status, _ = server.admin(
            "POST",
            "/api/v1/telemetry",
            {
                "source_kind": "device",
                "source_id": client.lfdi,
                "measurement": "realPower",
                "readings": loop_grid.history(site, now),
            },
        )
        assert status == 201
        dso("grid", "map", MODEL, "--bus", str(loop_grid.BUS[site]), "--lfdi", client.lfdi, *cfg)
    dso("grid", "map", MODEL, "--bus", str(loop_grid.BUS["business"]), "--ven", ven.ven["ven_id"], *cfg)
    ready = dt.datetime.now(dt.UTC)

    def planned() -> dict | None:
        _, found = server.admin("GET", f"/api/v1/plans/runs?model={MODEL}")
        for p in found:
            if p["status"] == "active" and dt.datetime.fromisoformat(p["created_at"]) > ready:
                return p
        return None

    plan = wait(planned, 240, "the scheduler's first plan after the fleet was mapped")
    assert plan["trigger"] == "intraday"  # made by the scheduler, not by staff
    _, full = server.admin("GET", f"/api/v1/plans/runs/{plan['id']}")
    t = full["check"]["transformers"][f"{MODEL}/T1"]
    assert t["before_max_pct"] > 105 and t["after_max_pct"] <= 100.5, t
    assert full["check"]["summary"]["violation_intervals_before"] > 0
    assert full["check"]["summary"]["violation_intervals_after"] == 0
    assert full["inputs"]["grid_model"]["version"] == 1
    assert f"{MODEL}/T1" in full["inputs"]["forecasts"]
    counted = {(r["id"], r["kind"]) for r in full["inputs"]["flexibility"] if r["counted"]}
    assert {(pv0.lfdi, "pv"), (pv1.lfdi, "pv"), (bat.lfdi, "battery"), (ven.ven["ven_id"], "dr")} <= counted

    # the devices fetch what the plan gives them, over their own TLS connections
    limits = [c for c in controls(pv0) if "opModExpLimW" in c]
    assert limits and all(c["primacy"] == "50" for c in limits), limits
    assert any(c["opModExpLimW"] for c in limits)
    setpoints = [c for c in controls(bat) if "opModTargetW" in c]
    assert any(int(c["opModTargetW"]) < 0 for c in setpoints) and any(
        int(c["opModTargetW"]) > 0 for c in setpoints
    )

    # the VEN polls its LOAD_DISPATCH event
    def distributed():  # noqa: ANN202
        kind, answer = ven.poll()
        return answer if kind == "oadrDistributeEvent" else None

    ven_key = f"ven:{ven.ven['ven_id']}"
    assert full["outputs"]["resources"][ven_key]["blocks"], full["outputs"]["resources"][ven_key]
    ven_events = [pe["event"] for pe in full["events"] if pe["resource"] == ven_key]
    assert ven_events, full["outputs"]["dispatched"]
    _, shown_ven_event = server.admin("GET", f"/api/v1/events/{ven_events[0]}")
    answer = wait(distributed, 30, f"oadrDistributeEvent of {shown_ven_event}")
    root = etree.fromstring(answer)
    assert codec.text(root, ".//ei:signalName") == "LOAD_DISPATCH"
    watch.assert_clean()

    # why did this inverter get its limit: from the event, and from the plan at that interval
    first = next(b for b in full["outputs"]["resources"][f"device:{pv0.lfdi}"]["blocks"])
    events = [pe for pe in full["events"] if pe["resource"] == f"device:{pv0.lfdi}"]
    shown = dso("event", "show", str(events[0]["event"]), *cfg).stdout
    assert f"plan {plan['id']} of {MODEL}" in shown and f"{MODEL}/T1" in shown, shown
    at = first["start"]
    why = dso("plan", "show", str(plan["id"]), "--lfdi", pv0.lfdi, "--at", at, *cfg).stdout
    assert f"opModExpLimW {first['value_w']:g} W" in why and "unmanaged" in why, why

    # the next turns re-plan on fresh forecasts without piling up events
    def replanned() -> dict | None:
        _, found = server.admin("GET", f"/api/v1/plans/runs?model={MODEL}")
        newer = [p for p in found if p["id"] > plan["id"] and p["status"] == "active"]
        return newer[0] if newer else None

    second = wait(replanned, 240, "a re-plan")
    _, again = server.admin("GET", f"/api/v1/plans/runs/{second['id']}")
    assert again["outputs"]["dispatched"]["kept"] > 0, again["outputs"]["dispatched"]
    assert again["outputs"]["dispatched"]["created"] <= 4, again["outputs"]["dispatched"]
    # only a proposed plan can be approved; an unknown one is not found
    assert server.admin("POST", f"/api/v1/plans/runs/{second['id']}/approve", {})[0] == 409
    assert server.admin("POST", "/api/v1/plans/runs/999999/approve", {})[0] == 404
    assert server.proc is not None and server.proc.poll() is None
