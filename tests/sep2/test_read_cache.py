"""A DeviceCapability (and the scope behind it) kept between requests changes the moment a change record says so:
an aggregator enrolled, a device registered under it, a MirrorUsagePoint created or deleted."""

from __future__ import annotations

from support.sep2 import Sep2Client
from support.sep2_live import Admin, module_server

from server.sep2 import xml

server = module_server("read-cache")


def links(client: Sep2Client) -> dict[str, str | None]:
    reply = client.get("/dcap")
    assert reply.status == 200
    return {xml.local_name(el): el.get("all") for el in reply.root if el.get("all") is not None}


def mup_xml(lfdi: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>CA01</mRID><roleFlags>49</roleFlags>'
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{'CA' * 15}01</mRID><ReadingType><dataQualifier>2</dataQualifier>"
        "<flowDirection>1</flowDirection><intervalLength>300</intervalLength><kind>37</kind>"
        "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
        "</MirrorMeterReading></MirrorUsagePoint>"
    )


def test_kept_device_capability_follows_enrolment_and_mirror_usage_points(server):
    admin = Admin(server)
    agg = Sep2Client(server, server.issue_device("cache-agg", aggregator=True))
    dev = server.issue_device("cache-dev")
    assert links(agg) == links(agg)  # read twice: kept
    assert links(agg)["EndDeviceListLink"] == "0"

    admin("PUT", f"/api/v1/sep2/aggregators/{agg.lfdi}")
    admin("PUT", f"/api/v1/sep2/end-devices/{dev['lfdi']}", {"aggregator": agg.lfdi})
    assert links(agg)["EndDeviceListLink"] == "2"  # the device and the aggregator's own EndDevice

    made = agg.post("/mup", mup_xml(dev["lfdi"]))
    assert made.status == 201, made.status
    assert links(agg)["MirrorUsagePointListLink"] == "1"
    assert agg.delete(made.location or "").status == 204
    assert links(agg)["MirrorUsagePointListLink"] == "0"

    admin("DELETE", f"/api/v1/sep2/end-devices/{dev['lfdi']}")
    assert links(agg)["EndDeviceListLink"] == "1"  # its own
