"""A device's retries store nothing twice, on SQLite and PostgreSQL: a re-posted MirrorMeterReading and a
re-posted MirrorReadingSet leave one telemetry row per reading; a burst of concurrent first PUTs of a DER
resource all get a 2xx and the last write wins."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import LiveServer
from support.sep2 import SEP, Admin, Sep2Client

from server.sep2 import xml

NOW = int(time.time()) // 300 * 300 - 7200
POWER = "AB" * 15 + "11"


@pytest.fixture
def server(tmp_path, database_url):
    s = LiveServer(tmp_path / "dso", database_url=database_url).init().start()
    try:
        yield s
    finally:
        s.stop()


def _mup(lfdi: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>C0FFEE11</mRID><description>site</description>'
        f"<roleFlags>49</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{POWER}</mRID><description>P</description>"
        f"<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
        f"<flowDirection>1</flowDirection><intervalLength>300</intervalLength><kind>37</kind><phase>0</phase>"
        f"<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
        f"</MirrorMeterReading></MirrorUsagePoint>"
    )


def _single(value: int, start: int) -> str:
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{POWER}</mRID><Reading><timePeriod><duration>300'
        f"</duration><start>{start}</start></timePeriod><value>{value}</value></Reading></MirrorMeterReading>"
    )


def _set(values: list[int], start: int) -> str:
    readings = "".join(f"<Reading><value>{v}</value></Reading>" for v in values)
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{POWER}</mRID><MirrorReadingSet><mRID>{"CD" * 16}</mRID>'
        f"<description>day</description><timePeriod><duration>{300 * len(values)}</duration>"
        f"<start>{start}</start></timePeriod>{readings}</MirrorReadingSet></MirrorMeterReading>"
    )


def test_a_reposted_reading_and_reading_set_are_stored_once(server):
    admin = Admin(server)
    client = Sep2Client(server, server.issue_device("meter"))
    admin("PUT", f"/api/v1/sep2/end-devices/{client.lfdi}", {"pin": 111115})
    href = client.post("/mup", _mup(client.lfdi)).location
    assert href

    def rows() -> list[tuple[str, float]]:
        got = admin("GET", f"/api/v1/sep2/devices/{client.lfdi}/telemetry?limit=1000&measurement=realPower")
        return sorted((r["ts"][:19], r["value"]) for r in got)

    single = _single(1500, NOW)
    for _ in range(3):  # the first POST and two retries after "lost" responses
        assert client.post(href, single).status == 201
    assert rows() == [(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW)), 1500.0)]

    day = _set([10, 20, 30], NOW + 300)
    for _ in range(2):
        assert client.post(href, day).status == 201
    expected = [
        (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW + k * 300)), v)
        for k, v in ((0, 1500.0), (1, 10.0), (2, 20.0), (3, 30.0))
    ]
    assert rows() == expected
    # what the device reads back shows each reading once too
    upt = client.get("/upt?l=1").all("UsagePoint")[0].get("href")
    assert client.get(f"{upt}/mr/1/rs/1/r?l=100").root.get("all") == "4"
    # a new reading next to the stored ones is still stored
    assert client.post(href, _single(99, NOW + 1200)).status == 201
    assert len(rows()) == 5
    # and the MirrorUsagePoint counts the three posts that brought something, not the retries
    assert [m["readings"] for m in admin("GET", f"/api/v1/sep2/mups?owner={client.lfdi}")] == [3]


DER_BODIES = {
    "ders": lambda i: (
        f'<DERStatus xmlns="{xml.NS}"><genConnectStatus><dateTime>{NOW}</dateTime><value>07</value>'
        f"</genConnectStatus><readingTime>{NOW + i}</readingTime></DERStatus>"
    ),
    "derg": lambda i: (
        f'<DERSettings xmlns="{xml.NS}"><setGradW>27</setGradW><setMaxW><multiplier>0</multiplier>'
        f"<value>{1000 + i}</value></setMaxW><updatedTime>{NOW}</updatedTime></DERSettings>"
    ),
    "dercap": lambda i: (
        f'<DERCapability xmlns="{xml.NS}" xmlns:csipaus="{xml.CSIPAUS_NS}"><modesSupported>00500088'
        f"</modesSupported><rtgMaxW><multiplier>0</multiplier><value>{2000 + i}</value></rtgMaxW>"
        "<type>4</type>"
        "<csipaus:doeModesSupported>0F</csipaus:doeModesSupported></DERCapability>"
    ),
    "dera": lambda i: (
        f'<DERAvailability xmlns="{xml.NS}"><availabilityDuration>{3600 + i}</availabilityDuration>'
        f"<readingTime>{NOW}</readingTime></DERAvailability>"
    ),
}
FIELD = {
    "ders": "readingTime",
    "derg": "setMaxW/value",
    "dercap": "rtgMaxW/value",
    "dera": "availabilityDuration",
}
OFFSET = {"ders": NOW, "derg": 1000, "dercap": 2000, "dera": 3600}
BURST = 50


def test_concurrent_first_puts_of_der_resources_all_succeed(server):
    client = Sep2Client(server, server.issue_device("bursty"))
    edev = client.register()
    for kind, body in DER_BODIES.items():
        path = f"{edev}/der/1/{kind}"

        def put(i: int, path: str = path, body=body) -> int:
            status, _, _ = server.request(client.ctx, "PUT", path, body(i).encode(), {"Content-Type": SEP})
            return status

        with ThreadPoolExecutor(BURST) as pool:
            statuses = list(pool.map(put, range(BURST)))
        assert sorted(set(statuses)) == [204], f"{kind}: {statuses}"
        stored = int(client.get(path).text(FIELD[kind]) or "-1") - OFFSET[kind]
        assert 0 <= stored < BURST  # one of the bodies sent, whole
