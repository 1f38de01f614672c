"""2030.5 function sets against a real server over real mTLS. Every body is schema-checked by ``Sep2Client``."""

from __future__ import annotations

import time

from support import LiveServer
from support.sep2 import Sep2Client, edev_xml

from server.sep2 import xml


def discover(c: Sep2Client, href: str) -> dict[str, str]:
    """Walk EndDevice -> FSA -> DERProgram -> lists; return the hrefs found."""
    edev = c.get(href)
    assert edev.status == 200
    out = {"edev": href}
    fsa_list = c.get(href + "/fsa?l=10")
    fsas = fsa_list.all("FunctionSetAssignments")
    if fsas:
        out["fsa"] = fsas[0].get("href")
        derps = c.get(out["fsa"] + "/derp?l=10").all("DERProgram")
        if derps:
            out["derp"] = derps[0].get("href")
    return out


def test_dcap_time_and_unregistered_view(new_client):
    c = new_client()
    dcap = c.get("/dcap")
    assert dcap.status == 200 and dcap.root.get("pollRate") == "60"
    assert xml.find(dcap.root, "EndDeviceListLink").get("all") == "0"
    tm = c.get("/tm")
    assert abs(int(tm.text("currentTime")) - time.time()) < 5
    edevs = c.get("/edev?l=10")
    assert edevs.root.get("all") == "0" and edevs.root.get("results") == "0"
    assert c.get("/mup").root.get("all") == "0"


def test_in_band_registration_and_discovery(new_client, admin):
    c = new_client()
    href = c.register()
    edev = c.get(href)
    assert edev.text("lFDI") == c.lfdi and int(edev.text("sFDI")) == c.sfdi
    # duplicate registration is refused and stores nothing new
    dup = c.post("/edev", edev_xml(c.lfdi, c.sfdi))
    assert dup.status == 409
    assert c.get("/edev?l=10").root.get("all") == "1"
    # staff assign a program and create a control; the device finds it
    admin("POST", "/api/v1/programs", {"name": f"p-{c.lfdi[:6]}", "primacy": 3})
    admin("POST", f"/api/v1/programs/p-{c.lfdi[:6]}/assign", {"lfdi": c.lfdi})
    made = admin(
        "POST",
        "/api/v1/controls",
        {
            "program": f"p-{c.lfdi[:6]}",
            "start": "now",
            "duration_s": 300,
            "base": {"opModExpLimW": 50000, "opModConnect": True},
        },
        expect=201,
    )
    found = discover(c, href)
    derp = c.get(found["derp"])
    assert derp.text("primacy") == "3"
    dercs = c.get(found["derp"] + "/derc?l=10")
    assert dercs.root.get("all") == "1"
    derc = dercs.all("DERControl")[0]
    assert xml.text(derc, "EventStatus/currentStatus") == "1"
    lim = xml.find(derc, "DERControlBase/csipaus:opModExpLimW")
    assert (xml.text(lim, "value"), xml.text(lim, "multiplier")) == ("5000", "1")
    assert derc.get("replyTo") == "/rsps/1/rsp" and derc.get("responseRequired") == "03"
    active = c.get(found["derp"] + "/actderc?l=10").root
    assert active.get("all") == "1"
    # both lists take subscriptions and say so (SubscribableType 1)
    assert dercs.root.get("subscribable") == "1" and active.get("subscribable") == "1"
    # the device responds; staff see it
    mrid = xml.text(derc, "mRID")
    body = (
        f'<DERControlResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
        f"<endDeviceLFDI>{c.lfdi}</endDeviceLFDI><status>1</status><subject>{mrid}</subject>"
        f"</DERControlResponse>"
    )
    r = c.post(derc.get("replyTo"), body)
    assert r.status == 201 and r.location
    assert c.get(r.location).text("status") == "1"
    seen = admin("GET", f"/api/v1/controls/{made['id']}/responses")
    assert [x["status"] for x in seen] == [1]
    # cancelled controls stay visible with status 2
    admin("POST", f"/api/v1/controls/{made['id']}/cancel", {})
    derc = c.get(found["derp"] + "/derc?l=10").all("DERControl")[0]
    assert xml.text(derc, "EventStatus/currentStatus") == "2"
    # a device can remove its own registration
    assert c.delete(href).status == 204
    assert c.get(href).status == 404


def test_der_resources_put_get_and_incomplete_settings(new_client):
    c = new_client()
    href = c.register()
    cap = (
        f'<DERCapability xmlns="{xml.NS}" xmlns:csipaus="{xml.CSIPAUS_NS}"><modesSupported>0F</modesSupported>'
        "<rtgMaxW><multiplier>0</multiplier><value>5000</value></rtgMaxW><type>4</type>"
        "<csipaus:doeModesSupported>0F</csipaus:doeModesSupported></DERCapability>"
    )
    assert c.put(href + "/der/1/dercap", cap).status == 204
    assert c.put(href + "/der/1/dercap", cap).status == 204
    got = c.get(href + "/der/1/dercap")
    assert got.text("rtgMaxW/value") == "5000" and got.root.get("href") == href + "/der/1/dercap"
    # DERSettings without the mandatory setMaxW/updatedTime: 400 + Error, nothing stored
    bad = f'<DERSettings xmlns="{xml.NS}"><setGradW>27</setGradW></DERSettings>'
    r = c.put(href + "/der/1/derg", bad)
    assert r.status == 400 and r.text("reasonCode") == "0"
    assert c.get(href + "/der/1/derg").status == 404
    avail = (
        f'<DERAvailability xmlns="{xml.NS}"><availabilityDuration>3600</availabilityDuration>'
        "<readingTime>1700000000</readingTime></DERAvailability>"
    )
    assert c.put(href + "/der/1/dera", avail).status == 204
    assert c.get(href + "/der/1/dera").text("availabilityDuration") == "3600"
    cp = f'<csipaus:ConnectionPoint xmlns:csipaus="{xml.CSIPAUS_NS}"><csipaus:connectionPointId>4102000000'
    assert c.put(href + "/cp", cp + "2</csipaus:connectionPointId></csipaus:ConnectionPoint>").status == 204
    assert c.get(href + "/cp").text("csipaus:connectionPointId") == "41020000002"


def test_access_control_between_devices_and_aggregator(new_client, admin):
    a, b = new_client(), new_client()
    ha = a.register()
    b.register()
    assert b.get(ha).status in (403, 404)
    assert b.get(ha + "/der/1/ders").status in (403, 404)
    assert b.get(ha + "/fsa").status in (403, 404)
    # b cannot register an EndDevice under another LFDI (LFDI must match its certificate)
    other = new_client()
    r = b.post("/edev", edev_xml(other.lfdi, other.sfdi))
    assert r.status == 403
    # an aggregator sees exactly the devices registered under it, and its own EndDevice (CSIP-AUS)
    agg = new_client(aggregator=True)
    admin("PUT", f"/api/v1/sep2/aggregators/{agg.lfdi}")
    loc = agg.post("/edev", edev_xml(other.lfdi, other.sfdi)).location
    assert loc
    listing = agg.get("/edev?l=10")
    assert sorted(xml.text(e, "lFDI") or "" for e in listing.all("EndDevice")) == sorted(
        [other.lfdi, agg.lfdi]
    )
    assert agg.get(ha).status in (403, 404)
    # staff revoke the aggregator's access
    admin("PUT", f"/api/v1/sep2/access/{agg.lfdi}", {"granted": False})
    assert agg.get(loc).status == 403
    admin("PUT", f"/api/v1/sep2/access/{agg.lfdi}", {"granted": True})
    assert agg.get(loc).status == 200


def test_paging_all_results_and_stable_order(new_client, admin):
    agg = new_client(aggregator=True)
    admin("PUT", f"/api/v1/sep2/aggregators/{agg.lfdi}")
    for _ in range(5):
        d = new_client()
        assert agg.post("/edev", edev_xml(d.lfdi, d.sfdi)).status == 201
    whole = agg.get("/edev?s=0&l=100")  # the five and the aggregator's own EndDevice
    assert whole.root.get("all") == "6" and whole.root.get("results") == "6"
    order = [xml.text(e, "sFDI") for e in whole.all("EndDevice")]
    assert order == sorted(order, key=int)
    pages = [agg.get(f"/edev?s={s}&l=2") for s in (0, 2, 4, 6)]
    assert [p.root.get("results") for p in pages] == ["2", "2", "2", "0"]
    assert all(p.root.get("all") == "6" for p in pages)
    assert [xml.text(e, "sFDI") for p in pages for e in p.all("EndDevice")] == order
    assert agg.get("/edev").root.get("results") == "1"  # l defaults to 1
    for bad in ("s=-1", "l=abc", "a=x", "s=99999999999"):
        r = agg.get(f"/edev?{bad}")
        assert r.status == 400 and r.text("reasonCode") == "1"


def test_bad_input_gets_error_bodies_and_stores_nothing(new_client, sep2_server: LiveServer):
    c = new_client()
    cases = [
        ("<EndDevice", "application/sep+xml"),  # malformed
        (f'<EndDevice xmlns="{xml.NS}"><bogus/></EndDevice>', "application/sep+xml"),  # schema-invalid
        (
            f'<!DOCTYPE x [<!ENTITY a "aaaa">]><EndDevice xmlns="{xml.NS}"><sFDI>&a;</sFDI></EndDevice>',
            "application/sep+xml",
        ),  # entity declaration
        (edev_xml("ZZZZZZZZZZZZZZZZ", 1), "application/sep+xml"),  # string LFDI
        (edev_xml(c.lfdi, c.sfdi + 1), "application/sep+xml"),  # SFDI does not match the LFDI
        (edev_xml(c.lfdi, c.sfdi), "application/json"),  # wrong content type
        (f'<Time xmlns="{xml.NS}"/>', "application/sep+xml"),  # wrong resource
    ]
    for body, ctype in cases:
        r = c.post("/edev", body, content_type=ctype)
        assert 400 <= r.status < 500, (body, r.status)
        assert r.root is not None and xml.local_name(r.root) == "Error"
    big = edev_xml(c.lfdi, c.sfdi).replace("<changedTime>", "<changedTime>" + " " * 2_000_000)
    r = c.post("/edev", big)
    assert r.status == 413
    assert c.get("/edev?l=10").root.get("all") == "0"
    assert c.get("/edev/999999").status == 404
    assert c.get("/edev/abc").status == 404


def test_invalid_responses_are_rejected(new_client, admin):
    c = new_client()
    c.register()
    made = admin(
        "POST",
        "/api/v1/controls",
        {"lfdi": c.lfdi, "start": "now", "duration_s": 60, "base": {"opModImpLimW": 1000}},
        expect=201,
    )
    edev = c.get("/edev?l=1").all("EndDevice")[0].get("href")
    derp = discover(c, edev)["derp"]
    mrid = xml.text(c.get(derp + "/derc?l=5").all("DERControl")[0], "mRID")

    def resp(lfdi: str, status: int, subject: str, created: int = 1700000000) -> str:
        return (
            f'<DERControlResponse xmlns="{xml.NS}"><createdDateTime>{created}</createdDateTime>'
            f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status><subject>{subject}</subject>"
            f"</DERControlResponse>"
        )

    # the last one's time is schema-valid (Int64) but no calendar holds it: 400, not 500
    for body in (
        resp(c.lfdi, 1, "FFFFFFFF"),
        resp("0F423F", 1, mrid),
        resp(c.lfdi, 15, mrid),
        resp(c.lfdi, 1, mrid, created=2**62),
    ):
        r = c.post("/rsps/1/rsp", body)
        assert 400 <= r.status < 500 and r.root is not None
    assert admin("GET", f"/api/v1/controls/{made['id']}/responses") == []
    assert c.post("/rsps/1/rsp", resp(c.lfdi, 2, mrid)).status == 201


def test_connection_point_requires_an_nmi(new_client):
    c = new_client()
    href = c.register()
    body = (
        f'<csipaus:ConnectionPoint xmlns:csipaus="{xml.CSIPAUS_NS}"><csipaus:connectionPointId>{{}}'
        "</csipaus:connectionPointId></csipaus:ConnectionPoint>"
    )
    r = c.put(href + "/cp", body.format("NOTAVALIDID"))
    assert r.status == 400 and r.text("reasonCode") == "1"
    r = c.put(href + "/cp", body.format("41020000026"))
    assert r.status == 204 and r.location == href + "/cp"


def test_mirror_usage_points_are_owned_and_mrids_unique(new_client):
    a, b = new_client(), new_client()
    a.register()
    b.register()

    def mup(lfdi: str, mrid: str, mmr: str) -> str:
        return (
            f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>{mrid}</mRID><roleFlags>49</roleFlags>'
            f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
            f"<MirrorMeterReading><mRID>{mmr}</mRID><ReadingType><dataQualifier>2</dataQualifier>"
            "<flowDirection>1</flowDirection><kind>37</kind><powerOfTenMultiplier>0</powerOfTenMultiplier>"
            "<uom>38</uom></ReadingType></MirrorMeterReading></MirrorUsagePoint>"
        )

    r = a.post("/mup", mup(a.lfdi, "AA01", "AA0100000000000000000000000000A1"))
    assert r.status == 201 and r.location
    assert a.post("/mup", mup(a.lfdi, "AA01", "AA0100000000000000000000000000A1")).status == 204  # same mRID
    assert b.post("/mup", mup(b.lfdi, "BB01", "AA0100000000000000000000000000A1")).status == 409  # taken MMR
    assert (
        b.post("/mup", mup(a.lfdi, "BB02", "BB0100000000000000000000000000B1")).status == 403
    )  # not b's LFDI
    assert a.get("/mup?l=10").root.get("all") == "1"
    assert b.get("/mup?l=10").root.get("all") == "0"
    assert b.get(r.location).status == 404
    readings = (
        f'<MirrorMeterReadingList xmlns="{xml.NS}"><MirrorMeterReading>'
        "<mRID>AA0100000000000000000000000000A1</mRID><Reading><timePeriod><duration>60</duration>"
        "<start>1700000000</start></timePeriod><value>1234</value></Reading></MirrorMeterReading>"
        "</MirrorMeterReadingList>"
    )
    assert a.post(r.location, readings).status == 201
    assert a.post(r.location, readings.replace("A1</mRID>", "FF</mRID>")).status == 400


def test_unknown_hrefs_and_methods_get_error_bodies(new_client):
    c = new_client()
    href = c.register()
    for path in (
        "/edev/1/nothing",
        href + "/der/2",
        href + "/der/1/bogus",
        "/mup/x/y",
        "/rsps/2",
        "/rsps/1/rsp/99",
        href + "/derp/999",
        href + "/fsa/999/derp",
    ):
        r = c.get(path)
        assert r.status in (403, 404), path
        assert r.root is not None and r.text("reasonCode") is not None
    for method, path in (
        ("POST", "/dcap"),
        ("PUT", "/edev"),
        ("DELETE", "/tm"),
        ("POST", href + "/der/1/ders"),
    ):
        r = c.request(method, path, b"" if method != "DELETE" else None)
        assert r.status == 405, (method, path, r.status)
        assert r.root is not None and r.headers.get("Allow")


def test_every_der_control_base_field_renders_schema_valid(new_client, admin):
    c = new_client()
    href = c.register()
    name = f"all-{c.lfdi[:6]}"
    admin("POST", "/api/v1/programs", {"name": name, "primacy": 5})
    admin("POST", f"/api/v1/programs/{name}/assign", {"lfdi": c.lfdi})
    curve = admin(
        "POST",
        f"/api/v1/programs/{name}/curves",
        {"curve_type": 11, "points": [[9000, 3000], [11000, -3000]], "y_ref_type": 2, "x_multiplier": -2},
    )
    base = {
        "opModConnect": True,
        "opModEnergize": False,
        "opModFixedW": -2500,
        "opModMaxLimW": 8000,
        "opModTargetVar": 1200,
        "opModTargetW": 150000,
        "rampTms": 300,
        "opModImpLimW": 0.5,
        "opModExpLimW": 1_000_000,
        "opModGenLimW": 32768,
        "opModLoadLimW": 7000,
    }
    for mode in (
        "opModFreqWatt",
        "opModHFRTMayTrip",
        "opModHVRTMustTrip",
        "opModLVRTMomentaryCessation",
        "opModVoltVar",
        "opModVoltWatt",
        "opModWattPF",
        "opModWattVar",
    ):
        base[mode] = curve["id"]
    admin(
        "POST",
        "/api/v1/controls",
        {
            "program": name,
            "start": "now",
            "duration_s": 60,
            "base": base,
            "randomize_start_s": 30,
            "randomize_duration_s": -10,
        },
        expect=201,
    )
    admin("PUT", f"/api/v1/programs/{name}/default-control", {"base": base, "setGradW": 50})
    derp = discover(c, href)["derp"]
    derc = c.get(derp + "/derc?l=5").all("DERControl")[0]  # Sep2Client has schema-checked it (strict)
    got = xml.find(derc, "DERControlBase")
    assert xml.text(got, "csipaus:opModExpLimW/value") == "10000"
    assert xml.text(got, "csipaus:opModExpLimW/multiplier") == "2"
    assert xml.text(got, "csipaus:opModImpLimW/value") == "5"
    assert xml.text(derc, "randomizeStart") == "30"
    dderc = c.get(derp + "/dderc")
    assert dderc.text("setGradW") == "50"
    for bad in ({"opModMaxLimW": -1}, {"opModFreqDroop": 1}, {"opModVoltVar": 999}, {}):
        status, _ = c.server.admin(
            "POST", "/api/v1/controls", {"program": name, "start": "now", "duration_s": 60, "base": bad}
        )
        assert status == 400, bad
