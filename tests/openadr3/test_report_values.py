"""A 3.x report's numeric values become telemetry readings: DEMAND (power) in the store's realPower series, in W,
whatever power unit its descriptor names; other payload types keep their own name and unit."""

from __future__ import annotations

import datetime as dt

import pytest

from server.core.errors import Invalid
from server.openadr3.reports import values_of

NOW = dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC)


def report(payloads, descriptors=None):
    return {
        "payloadDescriptors": descriptors or [],
        "resources": [
            {
                "resourceName": "battery-1",
                "intervalPeriod": {"start": "2026-07-01T11:00:00Z", "duration": "PT15M"},
                "intervals": [{"id": 0, "payloads": payloads}],
            }
        ],
    }


@pytest.mark.parametrize(("units", "watts"), [(None, 2500.0), ("KW", 2500.0), ("W", 2.5), ("MW", 2.5e6)])
def test_demand_is_real_power_in_watts(units, watts):
    desc = [
        {
            "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
            "payloadType": "DEMAND",
            **({"units": units} if units else {}),
        }
    ]
    [v] = values_of(report([{"type": "DEMAND", "values": [2.5]}], desc), NOW)
    assert (v.measurement, v.unit, v.value) == ("realPower", "W", watts)
    assert v.ts == dt.datetime(2026, 7, 1, 11, tzinfo=dt.UTC) and v.duration_s == 900


def test_other_payload_types_keep_their_name_and_unit():
    desc = [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "KWH"}]
    got = values_of(report([{"type": "USAGE", "values": [1.5, "n/a"]}], desc), NOW)
    assert [(v.measurement, v.unit, v.value) for v in got] == [("USAGE", "KWH", 1.5)]


def test_demand_in_a_unit_that_is_not_power_is_kept_as_reported():
    desc = [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DEMAND", "units": "KWH"}]
    [v] = values_of(report([{"type": "DEMAND", "values": [3.0]}], desc), NOW)
    assert (v.measurement, v.unit, v.value) == ("DEMAND", "KWH", 3.0)


def test_an_interval_without_a_start_is_refused():
    bad = report([{"type": "DEMAND", "values": [1.0]}])
    del bad["resources"][0]["intervalPeriod"]
    with pytest.raises(Invalid, match="intervalPeriod.start"):
        values_of(bad, NOW)
