"""Representations kept between requests (DeviceCapability and the lists of the poll cycle, with the scope behind
them) change the moment a change record says so -- an aggregator enrolled, a device registered under it, a
MirrorUsagePoint created or deleted, a control created or cancelled in the program or in another program of the
device, a default control set -- and the moment the clock changes them (a control starting, then ending)."""

from __future__ import annotations

import datetime as dt

from support.sep2 import Sep2Client
from support.sep2_live import Admin, enrolled_device, module_server, wait_until

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


def counts(client: Sep2Client, derp: str) -> dict[str, str | None]:
    """The poll cycle's view of one program, each read twice (the second read is a kept one)."""
    out: dict[str, str | None] = {}
    for _ in range(2):
        program = client.get(derp)
        assert program.status == 200
        out = {
            "derc": client.get(derp + "/derc?l=50").root.get("all"),
            "actderc": client.get(derp + "/actderc?l=10").root.get("all"),
            "derp.derc": program.root.find(xml.q("DERControlListLink")).get("all"),
            "derp.actderc": program.root.find(xml.q("ActiveDERControlListLink")).get("all"),
        }
    return out


def control(admin: Admin, program: str, start: str = "now", duration_s: int = 600) -> dict:
    body = {"program": program, "start": start, "duration_s": duration_s, "base": {"opModExpLimW": 1000}}
    return admin("POST", "/api/v1/controls", body, expect=201)


def test_kept_control_lists_follow_controls_of_every_program_the_device_sees(server):
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "cache-lists", program="cache-a", primacy=1)
    assert derp is not None
    assert counts(client, derp) == {"derc": "0", "actderc": "0", "derp.derc": "0", "derp.actderc": "0"}

    made = control(admin, "cache-a")
    assert counts(client, derp) == {"derc": "1", "actderc": "1", "derp.derc": "1", "derp.actderc": "1"}

    # a second program of the same device: its control flips potentiallySuperseded on the first program's
    admin("POST", "/api/v1/programs", {"name": "cache-b", "primacy": 2})
    admin("POST", "/api/v1/programs/cache-b/assign", {"lfdi": client.lfdi})
    flag = lambda: xml.text(  # noqa: E731
        client.get(derp + "/derc?l=50").root, "DERControl/EventStatus/potentiallySuperseded"
    )
    assert flag() == flag() == "false"
    control(admin, "cache-b")
    assert flag() == "true"

    admin("POST", f"/api/v1/controls/{made['id']}/cancel", {})
    listed = client.get(derp + "/derc?l=50").root
    assert xml.text(listed, "DERControl/EventStatus/currentStatus") == "2"  # cancelled, shown at once

    limit = lambda: xml.text(  # noqa: E731
        client.get(derp + "/dderc").root, "DERControlBase/csipaus:opModExpLimW/value"
    )
    assert limit() is None and limit() is None  # none set; read twice: kept
    admin("PUT", "/api/v1/programs/cache-a/default-control", {"base": {"opModExpLimW": 4321}})
    assert limit() == "4321"


def test_kept_control_lists_follow_the_clock(server):
    """A control starting in a moment is listed scheduled, then active, then no more, with no change record."""
    admin = Admin(server)
    client, _edev, derp = enrolled_device(server, admin, "cache-clock", program="cache-clock")
    assert derp is not None
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
    control(admin, "cache-clock", start=start.isoformat(), duration_s=3)
    assert counts(client, derp) == {"derc": "1", "actderc": "0", "derp.derc": "1", "derp.actderc": "0"}
    active = {"derc": "1", "actderc": "1", "derp.derc": "1", "derp.actderc": "1"}
    wait_until(
        lambda: counts(client, derp) == active, within=10, what="the control listed active at its start"
    )
    ended = {"derc": "0", "actderc": "0", "derp.derc": "0", "derp.actderc": "0"}
    wait_until(
        lambda: counts(client, derp) == ended, within=10, what="the control gone from the lists at its end"
    )
