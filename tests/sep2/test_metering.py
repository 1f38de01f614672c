"""Metering mirror into telemetry, and LogEvents, through a real server over mutual TLS (bodies schema-checked).

Readings land in the telemetry store in SI units keyed by the device LFDI; bad readings (impossible values,
mismatched ReadingTypes), a MirrorUsagePoint for someone else's device and readings into someone else's
MirrorUsagePoint are refused with a 4xx Error and store nothing."""

from __future__ import annotations

import time

import pytest
from support import LiveServer, dso_json
from support.sep2_live import Admin, Sep2Client, enrolled_device, module_server

from server.sep2 import xml

NOW = int(time.time()) // 300 * 300 - 3600
POWER, VOLTS = "AB" * 15 + "01", "AB" * 15 + "02"


server = module_server("metering")


def rtype(uom: int, p10: int, interval: int | None = 300) -> str:
    inter = f"<intervalLength>{interval}</intervalLength>" if interval else ""
    return (
        f"<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
        f"<flowDirection>1</flowDirection>{inter}<kind>37</kind><phase>0</phase>"
        f"<powerOfTenMultiplier>{p10}</powerOfTenMultiplier><uom>{uom}</uom></ReadingType>"
    )


def mup_xml(lfdi: str, mrid: str = "C0FFEE01", sets: str = "") -> str:
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{mrid}</mRID><description>site</description>'
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{POWER}</mRID><description>P</description>{sets}{rtype(38, 3)}"
        f"</MirrorMeterReading>"
        f"<MirrorMeterReading><mRID>{VOLTS}</mRID><description>V</description>{rtype(29, -1)}"
        f"</MirrorMeterReading></MirrorUsagePoint>"
    )


def reading(value: int, start: int, duration: int = 300) -> str:
    return (
        f"<Reading><timePeriod><duration>{duration}</duration><start>{start}</start></timePeriod>"
        f"<value>{value}</value></Reading>"
    )


def mmr_xml(mrid: str, value: int, start: int, type_xml: str = "") -> str:
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{mrid}</mRID>{reading(value, start)}{type_xml}'
        f"</MirrorMeterReading>"
    )


def series(admin: Admin, lfdi: str, **query: str) -> list[dict]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return admin("GET", f"/api/v1/sep2/devices/{lfdi}/telemetry?limit=1000&{qs}")


def test_readings_land_in_telemetry_in_si(server):
    admin = Admin(server)
    client, edev, _ = enrolled_device(server, admin, "meter-1")
    # the MUP itself carries a MirrorReadingSet of three 5-minute kW readings
    rset = (
        f"<MirrorReadingSet><mRID>{'CD' * 16}</mRID><description>set</description>"
        f"<timePeriod><duration>900</duration><start>{NOW}</start></timePeriod>"
        f"<Reading><value>5</value></Reading><Reading><value>-2</value></Reading>"
        f"<Reading><value>7</value></Reading></MirrorReadingSet>"
    )
    r = client.post("/mup", mup_xml(client.lfdi, sets=rset))
    assert r.status == 201 and r.location
    href = r.location
    # a duplicate POST (same mRID) answers with the existing MirrorUsagePoint
    dup = client.post("/mup", mup_xml(client.lfdi))
    assert dup.status in (201, 204) and dup.location == href
    assert client.get("/mup?l=10").root.get("all") == "1"
    got = client.get(href)
    assert got.text("deviceLFDI") == client.lfdi and got.text("postRate") is not None
    # single readings, as a list, later
    ns = f' xmlns="{xml.NS}"'
    inner = mmr_xml(VOLTS, 2301, NOW + 900).replace(ns, "") + mmr_xml(POWER, 4, NOW + 900).replace(ns, "")
    body = f'<MirrorMeterReadingList xmlns="{xml.NS}" all="2" results="2">{inner}</MirrorMeterReadingList>'
    assert client.post(href, body).status == 201

    power = series(admin, client.lfdi, measurement="realPower")
    assert [(p["value"], p["unit"]) for p in reversed(power)] == [
        (5000.0, "W"),
        (-2000.0, "W"),
        (7000.0, "W"),
        (4000.0, "W"),
    ]  # 10^3 applied, oldest first
    assert [p["ts"][:19] for p in reversed(power)] == [
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW + k * 300)) for k in (0, 1, 2, 3)
    ]
    assert [p["duration_s"] for p in power] == [300.0] * 4
    assert {p["resource"] for p in power} == {POWER}
    volts = series(admin, client.lfdi, measurement="voltage")
    assert len(volts) == 1 and volts[0]["value"] == pytest.approx(230.1) and volts[0]["unit"] == "V"
    # range read: only the set's second and third readings
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 300))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 900))
    assert [p["value"] for p in series(admin, client.lfdi, since=start, until=until)] == [7000.0, -2000.0]
    latest = {
        x["measurement"]: x["value"]
        for x in admin("GET", f"/api/v1/sep2/devices/{client.lfdi}/telemetry/latest")
    }
    assert latest == {"realPower": 4000.0, "voltage": pytest.approx(230.1)}
    # read back as the Metering function set: UsagePoint -> MeterReading -> ReadingSet -> Readings (raw values
    # in the ReadingType's power of ten, newest first)
    upt_link = client.get("/dcap").root.find(xml.q("UsagePointListLink")).get("href")
    upts = client.get(upt_link + "?l=10")
    assert upts.root.get("all") == "1"
    mr_list = client.get(xml.find(upts.all("UsagePoint")[0], "MeterReadingListLink").get("href") + "?l=10")
    mr = {xml.text(m, "mRID"): m for m in mr_list.all("MeterReading")}[POWER]
    assert client.get(xml.find(mr, "ReadingTypeLink").get("href")).text("powerOfTenMultiplier") == "3"
    rset = client.get(xml.find(mr, "ReadingSetListLink").get("href") + "?l=1").all("ReadingSet")[0]
    rlist = client.get(xml.find(rset, "ReadingListLink").get("href") + "?l=10")
    assert rlist.root.get("all") == "4"
    assert [xml.text(r, "value") for r in rlist.all("Reading")] == ["4", "7", "-2", "5"]
    # each item's href answers with that Reading, and only within its own series
    newest = rlist.all("Reading")[0]
    one = client.get(newest.get("href"))
    assert one.status == 200 and one.root.tag == xml.q("Reading") and one.text("value") == "4"
    assert xml.text(xml.find(one.root, "timePeriod"), "start") == str(NOW + 900)
    volts_mr = {xml.text(m, "mRID"): m for m in mr_list.all("MeterReading")}[VOLTS]
    volts_rs = client.get(xml.find(volts_mr, "ReadingSetListLink").get("href") + "?l=1").all("ReadingSet")[0]
    volts_href = xml.find(volts_rs, "ReadingListLink").get("href")
    reading_id = newest.get("href").rsplit("/", 1)[1]
    assert client.get(f"{volts_href}/{reading_id}").status == 404  # a power reading is not a voltage reading
    assert client.get(newest.get("href") + "0000").status == 404
    stranger = Sep2Client(server, server.issue_device("reading-stranger"))
    assert stranger.get(newest.get("href")).status == 404
    assert other_cannot_read(server, upt_link)
    # the CLI shows the same
    out = dso_json("readings", "latest", client.lfdi, "-c", server.config, "--json")
    assert {x["measurement"] for x in out} == {"realPower", "voltage"}
    out = dso_json(
        "readings", "range", client.lfdi, "--measurement", "realPower", "-c", server.config, "--json"
    )
    assert len(out) == 4


def test_bad_readings_are_refused_and_store_nothing(server):
    admin = Admin(server)
    client, _, _ = enrolled_device(server, admin, "meter-2")
    other, _, _ = enrolled_device(server, admin, "meter-3")
    mups = {"a": ("DD" * 15 + "01", "DD" * 15 + "02")}
    body = mup_xml(client.lfdi, mrid="D00D").replace(POWER, mups["a"][0]).replace(VOLTS, mups["a"][1])
    href = client.post("/mup", body).location
    assert href
    p, v = mups["a"]
    before = len(series(admin, client.lfdi))
    cases = {
        "mismatched ReadingType (uom)": mmr_xml(p, 1, NOW, rtype(29, 3)),
        "mismatched ReadingType (multiplier)": mmr_xml(p, 1, NOW, rtype(38, 0)),
        "negative voltage": mmr_xml(v, -2301, NOW),
        "a reading 20 years ahead": mmr_xml(p, 1, NOW + 20 * 365 * 86400),
        "a reading before 2000": mmr_xml(p, 1, 100),
        "a reading beyond year 9999": mmr_xml(p, 1, 2**62),
        "not a MirrorMeterReading of this MUP": mmr_xml("EE" * 16, 1, NOW, rtype(38, 0)),
        "schema-invalid value (not Int48)": mmr_xml(p, 1, NOW).replace("<value>1<", "<value>1e3<"),
    }
    for what, bad in cases.items():
        r = client.post(href, bad)
        assert 400 <= r.status < 500 and r.text("reasonCode") is not None, (what, r.status, r.body)
    # impossible magnitudes in a new MUP are refused with the MUP itself
    huge = mup_xml(
        client.lfdi,
        mrid="D00E",
        sets=f"<MirrorReadingSet><mRID>{'CE' * 16}</mRID>"
        f"<timePeriod><duration>300</duration><start>{NOW}</start></timePeriod>"
        f"<Reading><value>140737488355327</value></Reading></MirrorReadingSet>",
    )
    huge = huge.replace(POWER, "DE" * 16).replace(VOLTS, "DF" * 16)
    r = client.post("/mup", huge)
    assert r.status == 400
    # a MUP for a device the client does not own, readings into someone else's MUP
    r = client.post(
        "/mup", mup_xml(other.lfdi, mrid="D00F").replace(POWER, "E1" * 16).replace(VOLTS, "E2" * 16)
    )
    assert r.status == 403
    assert other.post(href, mmr_xml(p, 1, NOW)).status == 404
    # nothing of the above was stored
    assert len(series(admin, client.lfdi)) == before
    assert len(series(admin, other.lfdi)) == 0
    assert client.get("/mup?l=10").root.get("all") == "1"
    assert [m["readings"] for m in admin("GET", f"/api/v1/sep2/mups?owner={client.lfdi}")] == [0]


def test_log_events(server):
    admin = Admin(server)
    client, edev, _ = enrolled_device(server, admin, "logger")
    other = Sep2Client(server, server.issue_device("stranger"))
    lel = client.get(edev).root.find(xml.q("LogEventListLink")).get("href")

    def event(code: int, when: int, details: str = "") -> str:
        d = f"<details>{details}</details>" if details else ""
        return (
            f'<LogEvent xmlns="{xml.NS}"><createdDateTime>{when}</createdDateTime>{d}'
            f"<functionSet>14</functionSet><logEventCode>{code}</logEventCode><logEventID>7</logEventID>"
            f"<logEventPEN>12345</logEventPEN><profileID>2</profileID></LogEvent>"
        )

    r1 = client.post(lel, event(1, NOW, "over voltage"))
    r2 = client.post(lel, event(2, NOW + 60))
    assert r1.status == r2.status == 201
    listed = client.get(lel + "?l=10")
    assert listed.root.get("all") == "2"
    assert [xml.text(e, "logEventCode") for e in listed.all("LogEvent")] == ["2", "1"]  # newest first
    assert client.get(r1.location).text("details") == "over voltage"
    # bad input: implausible time, wrong root, someone else's list
    assert client.post(lel, event(3, NOW + 10 * 365 * 86400)).status == 400
    assert client.post(lel, event(3, 2**62)).status == 400
    assert client.post(lel, event(3, NOW).replace("LogEvent", "LogEvents")).status == 400
    assert other.post(lel, event(3, NOW)).status in (403, 404)
    assert other.get(r1.location).status in (403, 404)
    staff = admin("GET", f"/api/v1/sep2/devices/{client.lfdi}/log-events")
    assert [e["log_event_code"] for e in staff] == [2, 1] and staff[1]["details"] == "over voltage"
    out = dso_json("logevents", client.lfdi, "-c", server.config, "--json")
    assert len(out) == 2


def other_cannot_read(server: LiveServer, upt_link: str) -> bool:
    stranger = Sep2Client(server, server.issue_device("upt-stranger"))
    return (
        stranger.get(upt_link + "?l=10").root.get("all") == "0"
        and stranger.get(upt_link + "/1").status == 404
    )
