"""Clearing flexibility offers at their price against a plan's alternative cost (pure), and through the server:
offers made, cleared into events to their VENs, the clearing recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from support import dso, dso_json

from server.orchestration.market import Need, Offer, clear

T0 = dt.datetime(2026, 12, 3, 11, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def offer(i, up=0.0, down=0.0, price=0.1, start=T0, end=T0 + 4 * H, ven="v"):
    return Offer(i, ven, start, end, up, down, price)


def test_merit_order_pay_as_offered_within_the_alternative_cost():
    need = Need(T0, 3600, up_kw=(10, 30, 10, 0), up_cost=0.20)
    offers = [offer(1, up=15, price=0.15), offer(2, up=20, price=0.05), offer(3, up=50, price=0.25)]
    result = clear(offers, need)
    by_id = {a.offer_id: a for a in result.awards}
    # cheapest first: offer 2 takes 10/20/10; offer 1 the 10 kW left at 12:00; offer 3 is dearer than curtailment
    assert by_id[2].kw == [10, 20, 10, 0] and by_id[2].direction == "up"
    assert by_id[1].kw == [0, 10, 0, 0] and by_id[1].cleared_kw == 10
    assert 3 not in by_id and "above the plan's alternative" in result.rejected[3]
    assert by_id[2].cleared_kwh == pytest.approx(40.0) and by_id[2].cost == pytest.approx(40 * 0.05)
    assert result.cost == pytest.approx(40 * 0.05 + 10 * 0.15)
    assert result.unmet_up_kw == [0, 0, 0, 0]


def test_windows_directions_and_ties():
    need = Need(T0, 3600, up_kw=(5, 5), down_kw=(0, 0, 8), up_cost=1.0, down_cost=1.0)
    late = offer(1, up=10, start=T0 + 3 * H)  # covers no interval where up is needed
    both = offer(2, up=4, down=8, price=0.3)  # up first: not offered down once taken up
    down = offer(3, down=8, price=0.3)
    tie = offer(4, up=4, price=0.3)
    result = clear([late, both, down, tie], need)
    by_id = {a.offer_id: a for a in result.awards}
    assert by_id[2].direction == "up" and by_id[2].kw == [4, 4, 0]
    assert by_id[4].kw == [1, 1, 0]  # the tie goes to the earlier offer first
    assert by_id[3].direction == "down" and by_id[3].kw == [0, 0, 8]
    assert "covers no interval" in result.rejected[1]
    nothing = clear([offer(5, down=3)], Need(T0, 3600, up_kw=(2,), up_cost=1.0))
    assert nothing.awards == [] and "no flexibility in the direction" in nothing.rejected[5]
    assert nothing.unmet_up_kw == [2.0]


@pytest.fixture
def server(quiet_server):
    return quiet_server


def test_cleared_offers_become_events_to_their_vens(server):
    cfg = ["-c", server.config]
    for name in ("agg-a", "agg-b"):
        cert = server.issue_ven(name)
        dso("ven", "enroll", "--name", name, "--fingerprint", cert["fingerprint"], *cfg)
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    a = dso_json("offers", "add", "--ven", "agg-a", "--start", start.isoformat(), "--duration", "2h",
                 "--up-kw", "30", "--price", "0.08", "--json", *cfg)  # fmt: skip
    b = dso_json("offers", "add", "--ven", "agg-b", "--start", start.isoformat(), "--duration", "1h",
                 "--up-kw", "30", "--price", "0.5", "--json", *cfg)  # fmt: skip
    c = dso_json("offers", "add", "--ven", "agg-b", "--start", start.isoformat(), "--duration", "1h",
                 "--down-kw", "5", "--price", "0.01", "--json", *cfg)  # fmt: skip
    assert a["status"] == b["status"] == "offered"
    assert dso_json("offers", "withdraw", str(c["id"]), "--json", *cfg)["status"] == "withdrawn"

    out = dso_json("offers", "clear", "--start", start.isoformat(), "--step", "1h", "--up-kw", "20,40",
                   "--up-cost", "0.2", "--json", *cfg)  # fmt: skip
    [award] = out["awards"]
    assert award["offer_id"] == a["id"] and award["kw"] == [20, 30] and award["cleared_kwh"] == 50
    assert out["unmet_up_kw"] == [0, 10] and str(b["id"]) in out["rejected"]

    listed = {o["id"]: o for o in dso_json("offers", "list", "--json", *cfg)}
    cleared = listed[a["id"]]
    assert cleared["status"] == "cleared" and cleared["cleared_kw"] == 30 and cleared["cleared_price"] == 0.08
    assert listed[b["id"]]["status"] == "rejected" and "above" in listed[b["id"]]["reason"]
    assert listed[c["id"]]["status"] == "withdrawn"
    status, event = server.admin("GET", f"/api/v1/events/{cleared['event_id']}")
    assert status == 200 and event["kind"] == "dr" and event["program"] == "flexibility-market"
    signal = event["payload"]["signal"]
    assert signal["name"] == "LOAD_DISPATCH" and signal["type"] == "delta"
    assert [i["value"] for i in signal["intervals"]] == [20_000.0, 30_000.0]
    assert event["start"] == start.isoformat() and event["duration_s"] == 7200

    # a second clearing finds nothing open; bad input is a 400 that stores nothing
    again = server.admin(
        "POST", "/api/v1/offers/clear", {"start": start.isoformat(), "up_kw": [5], "up_cost": 1}
    )
    assert again == (
        200,
        {"awards": [], "rejected": {}, "unmet_up_kw": [5.0], "unmet_down_kw": [0.0], "cost": 0},
    )
    for body in (
        {"ven": "agg-a", "start": start.isoformat(), "duration_s": 60, "price": 1},  # no kW
        {"ven": "agg-a", "start": start.isoformat(), "duration_s": 60, "up_kw": -1, "price": 1},
        {"ven": "nobody", "start": start.isoformat(), "duration_s": 60, "up_kw": 1, "price": 1},
        {"ven": "agg-a", "start": "tomorrow", "duration_s": 60, "up_kw": 1, "price": 1},
    ):
        assert server.admin("POST", "/api/v1/offers", body)[0] in (400, 404), body
    assert server.admin("POST", "/api/v1/offers/clear", {"start": start.isoformat(), "up_kw": [-1]})[0] == 400
    assert server.admin("POST", f"/api/v1/offers/{a['id']}/withdraw")[0] == 409
    assert len(dso_json("offers", "list", "--json", *cfg)) == 3
