"""Both editions: a 2023 device's bodies are accepted and stored as sent; a 2018 client reading them receives
their 2018 form (every body validated against the 2018 schema only, by ``check_body``), a 2023 reader as stored."""

from __future__ import annotations

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
