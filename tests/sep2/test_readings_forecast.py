"""A feeder forecast from telemetry that arrived only through 2030.5: a device mirrors two weeks of 15-minute
site load as MirrorUsagePoint readings over mutual TLS, staff put it in a feeder, and `dso forecast` runs."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator

import pytest
from support import LiveServer, dso, dso_json
from support.sep2_live import Admin, Sep2Client, enrolled_device

from server.sep2 import xml

STEP = 900
DAYS = 14
POWER = "EF" * 15 + "01"


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    s = LiveServer(tmp_path / "dso", extra_env={"DSO_ORCHESTRATION__ENABLED": "false"}).init().start()
    try:
        yield s
    finally:
        s.stop()


def site_load_w(ts: int) -> int:
    """A household-like daily shape in W (evening peak, night trough)."""
    hour = (ts % 86400) / 3600
    return round(
        1500 + 700 * math.sin(2 * math.pi * (hour - 13) / 24) + 400 * math.exp(-((hour - 19) ** 2) / 3)
    )


def reading_type() -> str:
    # instantaneous real power (kind 37, uom 38 = W), power of ten 0, 15-minute intervals
    return (
        "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
        f"<flowDirection>1</flowDirection><intervalLength>{STEP}</intervalLength><kind>37</kind>"
        "<phase>0</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
    )


def day_set(start: int, n: int) -> str:
    readings = "".join(f"<Reading><value>{site_load_w(start + i * STEP)}</value></Reading>" for i in range(n))
    return (
        f"<MirrorReadingSet><mRID>{start:032X}</mRID><description>day</description>"
        f"<timePeriod><duration>{n * STEP}</duration><start>{start}</start></timePeriod>{readings}"
        "</MirrorReadingSet>"
    )


def test_dso_forecast_runs_on_readings_that_came_in_through_2030_5(server):
    admin = Admin(server)
    client: Sep2Client
    client, _, _ = enrolled_device(server, admin, "site-meter")
    end = int(time.time()) // STEP * STEP
    start = end - DAYS * 86400
    mup = (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{"AB" * 16}</mRID><description>site</description>'
        "<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{client.lfdi}</deviceLFDI><MirrorMeterReading><mRID>{POWER}</mRID>"
        f"<description>site load</description>{reading_type()}</MirrorMeterReading></MirrorUsagePoint>"
    )
    r = client.post("/mup", mup)
    assert r.status == 201, r.body
    href = r.location
    for day in range(DAYS):
        t0 = start + day * 86400
        body = (
            f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{POWER}</mRID>{day_set(t0, 86400 // STEP)}'
            "</MirrorMeterReading>"
        )
        assert client.post(href, body).status == 201
    cfg = ["-c", server.config]
    dso("grid", "create", "feeder-1", "--kind", "feeder", *cfg)
    dso("grid", "add", "feeder-1", "--lfdi", client.lfdi, *cfg)
    run = dso_json("forecast", "--node", "feeder-1", "--horizon", "24h", "--json", *cfg)
    assert run["history_points"] >= (DAYS - 1) * 96 and run["sources"] == 1
    assert len(run["points"]) == 96
    # the forecast follows the mirrored shape: close to the true profile on average, evening above night
    errors = [
        abs(p["mean"] - site_load_w(int(dt.datetime.fromisoformat(p["ts"]).timestamp())))
        for p in run["points"]
    ]
    assert sum(errors) / len(errors) < 150
    assert all(p["q10"] <= p["mean"] <= p["q90"] for p in run["points"])
