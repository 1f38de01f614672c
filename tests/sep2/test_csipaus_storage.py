"""CSIP-AUS 1.3 beta storage extension over real mutual TLS: a storage device reports its capability, settings,
status and stored-energy readings in the storage namespace and receives a storage target with an export limit,
while a CSIP-AUS 1.2 device of the same program keeps receiving its export limit in the 1.2 namespace and never
an element its schema lacks. Every body each client receives is validated against that client's own CSIP-AUS
schema (``Sep2Client(storage=...)``)."""

from __future__ import annotations

import time

from support import free_port
from support.sep2 import Sep2Client
from support.sep2_live import Receiver, check_notification, subscription_xml, wait_until

from server.sep2 import xml

STO = xml.CSIPAUS_STORAGE_NS


def power(tag: str, value: int, mult: int = 0) -> str:
    return f"<{tag}><multiplier>{mult}</multiplier><value>{value}</value></{tag}>"


def capability(ns: str = STO) -> str:
    return (
        f'<DERCapability xmlns="{xml.NS}" xmlns:aus="{ns}"><modesSupported>00000001</modesSupported>'
        f"{power('rtgMaxChargeRateW', 5000)}{power('rtgMaxDischargeRateW', 5000)}"
        f"{power('rtgMaxW', 5000)}{power('rtgMaxWh', 10, 3)}<type>83</type>"
        "<aus:doeModesSupported>01</aus:doeModesSupported><aus:vppModesSupported>01</aus:vppModesSupported>"
        "</DERCapability>"
    )


def settings() -> str:
    return (
        f'<DERSettings xmlns="{xml.NS}" xmlns:aus="{STO}"><modesEnabled>00000001</modesEnabled>'
        f"<setGradW>1000</setGradW>{power('setMaxChargeRateW', 4000)}{power('setMaxDischargeRateW', 4500)}"
        f"{power('setMaxW', 5000)}{power('setMaxWh', 9500)}<updatedTime>{int(time.time())}</updatedTime>"
        "<aus:doeModesEnabled>01</aus:doeModesEnabled><aus:vppModesEnabled>01</aus:vppModesEnabled>"
        f"{power('aus:setMinWh', 500)}</DERSettings>"
    )


def stored_energy_mup(lfdi: str, mrid: str) -> str:
    reading_type = (
        "<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>0</dataQualifier>"
        "<flowDirection>0</flowDirection><kind>12</kind><phase>0</phase>"
        "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>72</uom></ReadingType>"
    )
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{"A1" * 16}</mRID><description>battery</description>'
        f"<roleFlags>03</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mrid}</mRID>"
        f"<description>stored energy</description>{reading_type}</MirrorMeterReading></MirrorUsagePoint>"
    )


def mmr(mrid: str, value: int, start: int) -> str:
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{mrid}</mRID><Reading><timePeriod><duration>0</duration>'
        f"<start>{start}</start></timePeriod><value>{value}</value></Reading></MirrorMeterReading>"
    )


def latest(admin, lfdi: str) -> dict[str, float]:
    rows = admin("GET", f"/api/v1/telemetry?source_kind=device&source_id={lfdi}&limit=1000")
    out: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r["ts"]):
        out[row["measurement"]] = row["value"]
    return out


def test_storage_device_reports_and_receives_a_storage_target(sep2_server, admin):
    battery = Sep2Client(sep2_server, sep2_server.issue_device("battery"), storage=True)
    plain = Sep2Client(sep2_server, sep2_server.issue_device("plain"))  # a CSIP-AUS 1.2 device
    href = battery.register()
    plain_href = plain.register()

    # capability, settings and status, in the storage namespace
    assert battery.put(href + "/der/1/dercap", capability()).status == 204
    assert battery.put(href + "/der/1/derg", settings()).status == 204
    status = (
        f'<DERStatus xmlns="{xml.NS}"><readingTime>{int(time.time())}</readingTime>'
        f"<stateOfChargeStatus><dateTime>{int(time.time())}</dateTime><value>4250</value>"
        "</stateOfChargeStatus></DERStatus>"
    )
    assert battery.put(href + "/der/1/ders", status).status == 204
    cap = battery.get(href + "/der/1/dercap")  # validated against the storage schema
    assert cap.text("csipaus-storage:vppModesSupported") == "01"
    assert cap.text("csipaus-storage:doeModesSupported") == "01"
    derg = battery.get(href + "/der/1/derg")
    assert xml.text(derg.root, "csipaus-storage:setMinWh/value") == "500"

    # stored-energy readings from a device MirrorUsagePoint
    mrid = "B2" * 16
    mup = battery.post("/mup", stored_energy_mup(battery.lfdi, mrid))
    assert mup.status == 201 and mup.location
    now = int(time.time()) - 60
    for n, value in enumerate((5000, 5250, 5500)):
        assert battery.post(mup.location, mmr(mrid, value, now + n)).status in (201, 204)

    figures = latest(admin, battery.lfdi)
    assert figures["storageCapacity"] == 10000.0  # rtgMaxWh 10 x 10^3
    assert figures["storageMaxEnergy"] == 9500.0 and figures["storageMinEnergy"] == 500.0
    assert figures["storageMaxChargeRate"] == 4000.0  # the setting, reported after the rating
    assert figures["vppModesSupported"] == 1.0 and figures["vppModesEnabled"] == 1.0
    assert figures["stateOfCharge"] == 42.5
    assert figures["energyReal"] == 5500.0

    # a storage target with an export limit, on a program both devices follow
    name = f"sto-{battery.lfdi[:6]}"
    admin("POST", "/api/v1/programs", {"name": name, "primacy": 4})
    for lfdi in (battery.lfdi, plain.lfdi):
        admin("POST", f"/api/v1/programs/{name}/assign", {"lfdi": lfdi})
    made = admin(
        "POST",
        "/api/v1/controls",
        {
            "program": name,
            "start": "now",
            "duration_s": 600,
            "base": {"opModStorageTargetW": 2500, "opModExpLimW": 10000},
        },
        expect=201,
    )

    def control(client: Sep2Client, edev: str):
        fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0].get("href")
        derp = client.get(fsa + "/derp?l=10").all("DERProgram")[0].get("href")
        return client.get(derp + "/derc?l=10").all("DERControl")[0]

    derc = control(battery, href)
    assert xml.text(derc, "DERControlBase/csipaus-storage:opModStorageTargetW/value") == "2500"
    assert xml.text(derc, "DERControlBase/csipaus-storage:opModExpLimW/value") == "10000"
    assert xml.find(derc, "DERControlBase/csipaus:opModExpLimW") is None

    seen_by_plain = control(plain, plain_href)  # validated against the 1.2 schema
    assert xml.text(seen_by_plain, "DERControlBase/csipaus:opModExpLimW/value") == "10000"
    assert xml.find(seen_by_plain, "DERControlBase/csipaus-storage:opModStorageTargetW") is None
    assert xml.find(seen_by_plain, "DERControlBase/csipaus:opModStorageTargetW") is None

    # the storage device acknowledges it; staff see the response
    body = (
        f'<DERControlResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
        f"<endDeviceLFDI>{battery.lfdi}</endDeviceLFDI><status>1</status>"
        f"<subject>{xml.text(derc, 'mRID')}</subject></DERControlResponse>"
    )
    assert battery.post(derc.get("replyTo"), body).status == 201
    assert [r["status"] for r in admin("GET", f"/api/v1/controls/{made['id']}/responses")] == [1]


def test_mixed_or_misplaced_storage_elements_are_refused(sep2_server, admin):
    battery = Sep2Client(sep2_server, sep2_server.issue_device("battery-bad"), storage=True)
    href = battery.register()
    assert battery.put(href + "/der/1/dercap", capability()).status == 204
    # a storage-only element in the 1.2 namespace is not CSIP-AUS 1.2
    r = battery.put(href + "/der/1/dercap", capability(xml.CSIPAUS_NS))
    assert r.status == 400 and r.text("reasonCode") == "0"
    # both namespaces in one body: neither schema admits it
    mixed = capability().replace(
        "<aus:doeModesSupported>01</aus:doeModesSupported>",
        f'<x:doeModesSupported xmlns:x="{xml.CSIPAUS_NS}">01</x:doeModesSupported>',
    )
    r = battery.put(href + "/der/1/dercap", mixed)
    assert r.status == 400 and "mixed" in r.headers.get("X-Error-Detail", "")
    # nothing half-stored: the first capability is still there, as sent
    assert battery.get(href + "/der/1/dercap").text("csipaus-storage:vppModesSupported") == "01"
    assert latest(admin, battery.lfdi)["storageCapacity"] == 10000.0


def test_notifications_reach_each_subscriber_in_its_own_namespace(sep2_server, admin):
    battery = Sep2Client(sep2_server, sep2_server.issue_device("battery-sub"), storage=True)
    plain = Sep2Client(sep2_server, sep2_server.issue_device("plain-sub"))
    name = f"sto-sub-{battery.lfdi[:6]}"
    admin("POST", "/api/v1/programs", {"name": name, "primacy": 6})
    receiver = Receiver(free_port()).up()
    try:
        for client, path in ((battery, "/battery"), (plain, "/plain")):
            edev = client.register()
            if client.storage:
                assert client.put(edev + "/der/1/dercap", capability()).status == 204
            admin("POST", f"/api/v1/programs/{name}/assign", {"lfdi": client.lfdi})
            fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0].get("href")
            derp = client.get(fsa + "/derp?l=10").all("DERProgram")[0].get("href")
            sub = client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url(path), limit=5))
            assert sub.status == 201
        admin(
            "POST",
            "/api/v1/controls",
            {"program": name, "start": "now", "duration_s": 600, "base": {"opModStorageTargetW": -3000}},
            expect=201,
        )
        wait_until(
            lambda: receiver.bodies("/battery") and receiver.bodies("/plain"), what="both notifications"
        )
        stored = check_notification(receiver.bodies("/battery")[-1], storage=True)
        target = "DERControl/DERControlBase/csipaus-storage:opModStorageTargetW"
        assert xml.text(stored, target + "/value") == "-3000"
        shown = check_notification(receiver.bodies("/plain")[-1])  # the 1.2 schema: no storage element
        assert xml.find(shown, "DERControl/DERControlBase") is not None
        assert xml.find(shown, target) is None
    finally:
        receiver.down()
