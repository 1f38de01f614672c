"""Both editions: a 2023 device's bodies are accepted and stored as sent; a 2018 client reading them receives
their 2018 form (every body validated against the 2018 schema only, by ``check_body``), a 2023 reader as stored."""

from __future__ import annotations

import time

from lxml import etree

from server.sep2 import xml

DERSTATUS_2023 = (
    '<DERStatus xmlns="urn:ieee:std:2030.5:ns" schemaVer="2.2"><connectStatus><dateTime>1700000000</dateTime>'
    "<value>03</value></connectStatus><readingTime>1700000000</readingTime></DERStatus>"
)


def test_2023_body_stored_and_served_per_edition(new_client, admin):
    device = new_client()
    edev = device.register()
    r = device.put(f"{edev}/der/1/ders", DERSTATUS_2023)
    assert r.status == 204, r.headers
    # the device itself asks for the 2018 level: it must never see a 2023-only element
    raw = device.server.request(
        device.ctx, "GET", f"{edev}/der/1/ders", None, {"Accept": "application/sep+xml; level=-S1"}
    )
    root = etree.fromstring(raw[2])
    assert xml.schema(strict=True).validate(root), xml.schema(strict=True).error_log.last_error
    assert root.find(xml.q("connectStatus")) is None and root.get("schemaVer") is None
    assert xml.text(root, "genConnectStatus/value") == "03"
    # without a level it wrote 2023, so it reads the body as it sent it (valid 2023)
    raw = device.server.request(
        device.ctx, "GET", f"{edev}/der/1/ders", None, {"Accept": "application/sep+xml"}
    )
    root = etree.fromstring(raw[2])
    assert root.get("schemaVer") == "2.2" and xml.text(root, "connectStatus/value") == "03"
    assert xml.schema(edition=xml.EDITION_2023).validate(root)
    view = admin("GET", f"/api/v1/sep2/devices/{device.lfdi}")
    assert view["status"]["edition"] == "2023"
    assert view["status"]["connect_status"] == {"field": "connectStatus", "value": "03", "bits": 3}


def test_2023_only_element_in_a_2018_body_is_refused(new_client):
    device = new_client()
    edev = device.register()
    bad = DERSTATUS_2023.replace("<readingTime>", "<bogus/><readingTime>")
    assert device.put(f"{edev}/der/1/ders", bad).status == 400


def test_modes_responded_reaches_2023_readers_only(new_client, admin):
    device = new_client()
    edev = device.register()
    name = f"modes-{device.lfdi[:6]}"
    admin("POST", "/api/v1/programs", {"name": name, "primacy": 7})
    admin("POST", f"/api/v1/programs/{name}/assign", {"lfdi": device.lfdi})
    made = admin(
        "POST",
        "/api/v1/controls",
        {"program": name, "start": "now", "duration_s": 600, "base": {"opModExpLimW": 1000}},
        expect=201,
    )
    fsa = device.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0].get("href")
    derp = device.get(fsa + "/derp?l=10").all("DERProgram")[0].get("href")
    derc = device.get(derp + "/derc?l=10").all("DERControl")[0]
    body = (
        f'<DERControlResponse xmlns="{xml.NS}" schemaVer="2.2"><createdDateTime>{int(time.time())}'
        f"</createdDateTime><endDeviceLFDI>{device.lfdi}</endDeviceLFDI><status>1</status>"
        f"<subject>{xml.text(derc, 'mRID')}</subject><modesResponded>00000400</modesResponded>"
        "</DERControlResponse>"
    )
    posted = device.post(derc.get("replyTo"), body)
    assert posted.status == 201, posted.headers
    assert admin("GET", f"/api/v1/controls/{made['id']}/responses")[0]["modes_responded"] == "00000400"

    def read(path: str, level: str) -> etree._Element:
        accept = {"Accept": f"application/sep+xml; level={level}"}
        return etree.fromstring(device.server.request(device.ctx, "GET", path, None, accept)[2])

    for path in (derc.get("replyTo") + "?l=10", posted.location):
        new = read(path, "S2")
        assert new.get("schemaVer") == "2.2"
        assert xml.schema(edition=xml.EDITION_2023).validate(new), xml.schema(edition="2023").error_log
        assert [e.text for e in new.iter(xml.q("modesResponded"))] == ["00000400"]
        old = read(path, "-S1")
        assert xml.schema(strict=True).validate(old), xml.schema(strict=True).error_log.last_error
        assert old.get("schemaVer") is None and old.find(f".//{xml.q('modesResponded')}") is None
