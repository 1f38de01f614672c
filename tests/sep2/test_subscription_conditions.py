"""Subscriptions with a Condition (IEEE 2030.5 Subscription/Condition) through a real server over mutual TLS.

A ReadingList is the one resource that takes a Condition (it says ``subscribable="3"``): mirrored readings notify
an unconditional subscriber every time, a conditional one only when a new Reading value (in the ReadingType's
power of ten, as the ReadingList shows it) falls outside [lowerThreshold, upperThreshold]. Conditions on other
resources, reserved attribute identifiers and inverted thresholds are refused with 400 and an Error body."""

from __future__ import annotations

import time

from support import free_port
from support.sep2_live import (
    Admin,
    Receiver,
    check_notification,
    enrolled_device,
    module_server,
    subscription_xml,
    wait_until,
)

from server.sep2 import xml

server = module_server("conditions")
NOW = int(time.time()) // 300 * 300 - 3600
POWER = "EE" * 15 + "01"


def mup_xml(lfdi: str, mrid: str, mmr: str) -> str:
    rtype = (
        "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
        "<flowDirection>1</flowDirection><intervalLength>300</intervalLength><kind>37</kind><phase>0</phase>"
        "<powerOfTenMultiplier>3</powerOfTenMultiplier><uom>38</uom></ReadingType>"
    )
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{mrid}</mRID><description>site</description>'
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mmr}</mRID><description>P</description>"
        f"{rtype}</MirrorMeterReading></MirrorUsagePoint>"
    )


def reading_xml(mmr: str, *values: int, start: int = NOW) -> str:
    readings = "".join(
        f"<Reading><timePeriod><duration>300</duration><start>{start + i * 300}</start></timePeriod>"
        f"<value>{v}</value></Reading>"
        for i, v in enumerate(values)
    )
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{mmr}</mRID><MirrorReadingSet><mRID>{"AB" * 16}</mRID>'
        f"<description>set</description><timePeriod><duration>{300 * len(values)}</duration>"
        f"<start>{start}</start></timePeriod>{readings}</MirrorReadingSet></MirrorMeterReading>"
    )


def conditional(resource: str, uri: str, low: int, high: int, attribute: int = 0, limit: int = 10) -> str:
    cond = (
        f"<Condition><attributeIdentifier>{attribute}</attributeIdentifier><lowerThreshold>{low}"
        f"</lowerThreshold><upperThreshold>{high}</upperThreshold></Condition>"
    )
    return subscription_xml(resource, uri, limit=limit).replace("<encoding>", cond + "<encoding>", 1)


def values(root) -> list[str]:
    return [xml.text(r, "value") for r in check_notification(root).findall(xml.q("Reading"))]


def test_condition_decides_which_readings_notify(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, _ = enrolled_device(server, admin, "cond-meter")
        mup = client.post("/mup", mup_xml(client.lfdi, "C0DE01", POWER)).location
        upt = client.get("/upt?l=1").all("UsagePoint")[0].get("href")
        rlist = client.get(client.get(f"{upt}/mr/1/rs/1").root.find(xml.q("ReadingListLink")).get("href"))
        assert rlist.root.get("subscribable") == "3"
        href = rlist.root.get("href")
        r = client.post(edev + "/sub", subscription_xml(href, receiver.url("/all"), limit=2))
        assert r.status == 201
        r = client.post(edev + "/sub", conditional(href, receiver.url("/cond"), 2, 8))
        assert r.status == 201
        sub = client.get(r.location)
        assert [
            sub.text(f"Condition/{k}") for k in ("attributeIdentifier", "lowerThreshold", "upperThreshold")
        ] == ["0", "2", "8"]

        # in band (2..8 kW, thresholds inclusive): the unconditional subscriber hears of it, the conditional not
        assert client.post(mup, reading_xml(POWER, 2, 5, 8)).status == 201
        wait_until(lambda: len(receiver.bodies("/all")) == 1, what="unconditional notification")
        # one value above the band: both; the notification carries the ReadingList as a GET (newest first)
        assert client.post(mup, reading_xml(POWER, 6, 9, start=NOW + 900)).status == 201
        wait_until(lambda: len(receiver.bodies("/cond")) == 1, what="conditional notification (above)")
        # below the band (negative: export): both again
        assert client.post(mup, reading_xml(POWER, -3, start=NOW + 1500)).status == 201
        wait_until(lambda: len(receiver.bodies("/cond")) == 2, what="conditional notification (below)")
        wait_until(lambda: len(receiver.bodies("/all")) == 3, what="three unconditional notifications")
        time.sleep(1.0)  # anything queued for the in-band readings would have arrived before the later ones
        assert len(receiver.bodies("/cond")) == 2
        assert [values(n) for n in receiver.bodies("/all")] == [["8", "5"], ["9", "6"], ["-3", "9"]]
        conds = [check_notification(n) for n in receiver.bodies("/cond")]
        assert [c.get("all") for c in conds] == ["5", "6"]
        assert [values(n)[:2] for n in receiver.bodies("/cond")] == [["9", "6"], ["-3", "9"]]
        assert all(c.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "ReadingList" for c in conds)
    finally:
        receiver.down()


def test_invalid_conditions_are_refused(server):
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "cond-bad", program="cond-prog")
    client.post("/mup", mup_xml(client.lfdi, "C0DE02", "EE" * 15 + "02"))
    upt = client.get("/upt?l=1").all("UsagePoint")[0].get("href")
    readings = f"{upt}/mr/1/rs/1/r"
    ok_uri = "http://127.0.0.1:9/n"
    cases = {
        "a reserved attributeIdentifier": conditional(readings, ok_uri, 0, 10, attribute=1),
        "lowerThreshold above upperThreshold": conditional(readings, ok_uri, 10, 0),
        "a Condition on a DERControlList": conditional(derp + "/derc", ok_uri, 0, 10),
        "a Condition on an EndDevice": conditional(edev, ok_uri, 0, 10),
        "a threshold beyond Int48": conditional(
            readings, ok_uri, 0, 2**47 + 1
        ),  # the schema bounds Int48 to ±2^47
        "a ReadingList that is not mine": conditional("/upt/999999/mr/1/rs/1/r", ok_uri, 0, 10),
    }
    for what, body in cases.items():
        r = client.post(edev + "/sub", body)
        assert 400 <= r.status < 500 and r.text("reasonCode") is not None, (what, r.status, r.body)
    for what in (
        "a reserved attributeIdentifier",
        "lowerThreshold above upperThreshold",
        "a Condition on a DERControlList",
    ):
        assert client.post(edev + "/sub", cases[what]).status == 400, what
    assert client.get(edev + "/sub?l=10").root.get("all") == "0"
    # the same subscription without the Condition is fine, and so is an equal lower and upper threshold
    assert client.post(edev + "/sub", subscription_xml(derp + "/derc", ok_uri)).status == 201
    assert client.post(edev + "/sub", conditional(readings, ok_uri, 5, 5)).status == 201
