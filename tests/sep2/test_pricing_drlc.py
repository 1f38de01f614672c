"""Pricing and DRLC end to end: staff publish a tariff with time-varying prices and a load-control event; a 2030.5
client discovers them from its FunctionSetAssignments over mutual TLS (every body schema-checked), receives
notifications on supersession and cancellation, and posts a Response."""

from __future__ import annotations

import time

from support import dso_json, free_port
from support.sep2_live import (
    Admin,
    Receiver,
    Sep2Client,
    check_notification,
    enrolled_device,
    module_server,
    subscription_xml,
    wait_until,
)

from server.sep2 import xml

server = module_server("influence")


def link(reply, tag: str) -> str:
    el = reply.root.find(xml.q(tag))
    assert el is not None, (tag, reply.body)
    return el.get("href")


def statuses(resource, tag: str) -> dict[str, int]:
    return {
        xml.text(c, "description"): int(xml.text(c, "EventStatus/currentStatus"))
        for c in resource.findall(xml.q(tag))
    }


def test_prices_reach_the_device_with_notifications(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, _ = enrolled_device(server, admin, "price-dev", program="price-der")
        tariff = admin(
            "POST",
            "/api/v1/tariffs",
            {"name": "tou-2026", "currency": 36, "price_power_of_ten": -4, "primacy": 2, "rate_code": "TOU1"},
            expect=201,
        )
        admin("POST", "/api/v1/tariffs/tou-2026/rates", {"name": "energy-import"}, expect=201)
        # before assignment the device sees no tariff
        fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0]
        tp_href = xml.find(fsa, "TariffProfileListLink").get("href")
        assert client.get(tp_href + "?l=10").root.get("all") == "0"
        assert client.get(f"{tp_href}/{tariff['id']}").status == 404
        admin("POST", "/api/v1/tariffs/tou-2026/assign", {"lfdi": client.lfdi})
        peak = admin(
            "POST",
            "/api/v1/tariffs/tou-2026/prices",
            {
                "start": "now",
                "duration_s": 3600,
                "description": "peak",
                "response_required": 1,
                "prices": [{"price": 3500}, {"price": 4200, "start_value": 10000}],
            },
            expect=201,
        )

        tps = client.get(tp_href + "?l=10")
        assert tps.root.get("all") == "1"
        tp = tps.all("TariffProfile")[0]
        assert (
            xml.text(tp, "currency"),
            xml.text(tp, "pricePowerOfTenMultiplier"),
            xml.text(tp, "primacy"),
            xml.text(tp, "rateCode"),
        ) == ("36", "-4", "2", "TOU1")
        rcs = client.get(xml.find(tp, "RateComponentListLink").get("href") + "?l=10")
        rc = rcs.all("RateComponent")[0]
        rt = client.get(xml.find(rc, "ReadingTypeLink").get("href"))
        assert rt.text("uom") == "72" and rt.text("flowDirection") == "1"
        tti_list_href = xml.find(rc, "TimeTariffIntervalListLink").get("href")
        ttis = client.get(tti_list_href + "?l=10")
        assert ttis.root.get("all") == "1"
        tti = ttis.all("TimeTariffInterval")[0]
        assert xml.text(tti, "EventStatus/currentStatus") == "1" and xml.text(tti, "touTier") == "0"
        assert client.get(xml.find(rc, "ActiveTimeTariffIntervalListLink").get("href")).root.get("all") == "1"
        ctis = client.get(xml.find(tti, "ConsumptionTariffIntervalListLink").get("href") + "?l=10")
        assert [
            (xml.text(c, "startValue"), xml.text(c, "price")) for c in ctis.all("ConsumptionTariffInterval")
        ] == [("0", "3500"), ("10000", "4200")]

        # subscribe; a newer overlapping price supersedes the first; cancelling it restores the first
        assert client.post(edev + "/sub", subscription_xml(tti_list_href, receiver.url("/tti"))).status == 201
        critical = dso_json(
            "tariff",
            "price",
            "tou-2026",
            "--duration",
            "1800",
            "--price",
            "9900",
            "--description",
            "critical",
            "-c",
            server.config,
            "--json",
        )  # the CLI path
        dso_json("tariff", "cancel", str(critical["id"]), "-c", server.config, "--json")
        wait_until(lambda: len(receiver.bodies("/tti")) == 2, what="two price notifications")
        got = [statuses(check_notification(n), "TimeTariffInterval") for n in receiver.bodies("/tti")]
        assert got == [{"peak": 4, "critical": 1}, {"peak": 1, "critical": 2}]

        # the device answers the peak price (replyTo), staff see it
        reply_to = tti.get("replyTo")
        body = (
            f'<PriceResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{client.lfdi}</endDeviceLFDI><status>1</status>"
            f"<subject>{xml.text(tti, 'mRID')}</subject></PriceResponse>"
        )
        assert client.post(reply_to, body).status == 201
        rs = admin("GET", f"/api/v1/influence-events/{peak['id']}/responses")
        assert [(r["lfdi"], r["status"]) for r in rs] == [(client.lfdi, 1)]
        assert client.get(reply_to + "?l=10").root.get("all") == "1"
    finally:
        receiver.down()


def test_load_control_reaches_the_device(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, _ = enrolled_device(server, admin, "thermostat", program="drlc-der")
        out = dso_json(
            "drlc", "program", "--name", "summer-peak", "--primacy", "3", "-c", server.config, "--json"
        )
        assert out["kind"] == "dr"
        dso_json("drlc", "assign", "summer-peak", "--lfdi", client.lfdi, "-c", server.config, "--json")
        fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0]
        drps = client.get(xml.find(fsa, "DemandResponseProgramListLink").get("href") + "?l=10")
        assert drps.root.get("all") == "1"
        drp = drps.all("DemandResponseProgram")[0]
        assert xml.text(drp, "primacy") == "3"
        edc_href = xml.find(drp, "EndDeviceControlListLink").get("href")
        assert client.post(edev + "/sub", subscription_xml(edc_href, receiver.url("/edc"))).status == 201

        made = dso_json(
            "drlc",
            "event",
            "summer-peak",
            "--start",
            "now",
            "--duration",
            "7200",
            "--category",
            "thermostat",
            "--category",
            "evse",
            "--cooling-setpoint",
            "2600",
            "--duty-cycle",
            "50",
            "--description",
            "hot-day",
            "--response-required",
            "3",
            "-c",
            server.config,
            "--json",
        )
        edcs = client.get(edc_href + "?l=10")
        assert edcs.root.get("all") == "1"
        edc = edcs.all("EndDeviceControl")[0]
        assert xml.text(edc, "deviceCategory") == f"{(1 << 0) | (1 << 17):08X}"
        assert xml.text(edc, "SetPoint/coolingSetpoint") == "2600"
        assert xml.text(edc, "DutyCycle/normalValue") == "50"
        assert xml.text(edc, "EventStatus/currentStatus") == "1"
        assert client.get(edc.get("href")).text("mRID") == xml.text(edc, "mRID")
        assert client.get(xml.find(drp, "ActiveEndDeviceControlListLink").get("href")).root.get("all") == "1"

        body = (
            f'<DrResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{client.lfdi}</endDeviceLFDI><status>2</status>"
            f"<subject>{xml.text(edc, 'mRID')}</subject></DrResponse>"
        )
        assert client.post(edc.get("replyTo"), body).status == 201
        admin("POST", f"/api/v1/dr-events/{made['id']}/cancel", {"randomized": True})
        wait_until(lambda: len(receiver.bodies("/edc")) == 2, what="create + cancel notifications")
        got = [statuses(check_notification(n), "EndDeviceControl") for n in receiver.bodies("/edc")]
        assert got == [{"hot-day": 1}, {"hot-day": 3}]  # cancelled with randomization
        assert [r["status"] for r in admin("GET", f"/api/v1/influence-events/{made['id']}/responses")] == [2]
    finally:
        receiver.down()


def test_bad_pricing_and_drlc_input(server):
    admin = Admin(server)
    client, edev, _ = enrolled_device(server, admin, "bad-influence")
    stranger = Sep2Client(server, server.issue_device("bad-influence-2"))
    admin("PUT", f"/api/v1/sep2/end-devices/{stranger.lfdi}", {})
    admin("POST", "/api/v1/tariffs", {"name": "bad-t"}, expect=201)
    admin("POST", "/api/v1/tariffs/bad-t/rates", {"name": "r"}, expect=201)
    admin("POST", "/api/v1/tariffs/bad-t/assign", {"lfdi": client.lfdi})
    for bad in (
        [],
        [{"price": 1, "start_value": 5}],
        [{"price": 1}, {"price": 2, "start_value": 0}],
        [{"price": 2**40}],
        [{"price": "1"}],
    ):
        admin("POST", "/api/v1/tariffs/bad-t/prices", {"duration_s": 60, "prices": bad}, expect=400)
    admin("POST", "/api/v1/tariffs", {"name": "bad-cur", "currency": 1}, expect=400)
    admin("POST", "/api/v1/dr-programs", {"name": "bad-dr"}, expect=201)
    for payload in (
        {"device_category": "thermostat?", "control": {"dutyCycle": {"normalValue": 5}}},
        {"device_category": ["toaster"], "control": {"dutyCycle": {"normalValue": 5}}},
        {"device_category": "0001", "control": {}},
        {"device_category": "0001", "control": {"dutyCycle": {"normalValue": 101}}},
        {"device_category": "0001", "control": {"setPoint": {"coolingSetpoint": 20000}}},
        {"device_category": "0001", "control": {"warp": 9}},
    ):
        admin("POST", "/api/v1/dr-programs/bad-dr/events", {"duration_s": 60, **payload}, expect=400)
    assert admin("GET", "/api/v1/tariffs/bad-t/prices") == []
    assert admin("GET", "/api/v1/dr-programs/bad-dr/events") == []
    # a device that was not assigned sees nothing; a response for someone else's event is refused
    t = admin("GET", "/api/v1/tariffs")
    tid = next(x["id"] for x in t if x["name"] == "bad-t")
    sedev = admin("GET", f"/api/v1/sep2/devices/{stranger.lfdi}")["href"]
    assert stranger.get(f"{sedev}/tp/{tid}").status == 404
    assert stranger.get(f"{edev}/tp").status in (403, 404)
    price = admin(
        "POST", "/api/v1/tariffs/bad-t/prices", {"duration_s": 60, "prices": [{"price": 1}]}, expect=201
    )
    tti = client.get(f"{edev}/tp/{tid}/rc?l=1").all("RateComponent")[0]
    tti = client.get(xml.find(tti, "TimeTariffIntervalListLink").get("href") + "?l=1").all(
        "TimeTariffInterval"
    )[0]
    body = (
        f'<Response xmlns="{xml.NS}"><endDeviceLFDI>{stranger.lfdi}</endDeviceLFDI><status>1</status>'
        f"<subject>{xml.text(tti, 'mRID')}</subject></Response>"
    )
    assert stranger.post(f"{sedev}/rsp", body).status == 400
    assert client.post(f"{edev}/rsp", body).status == 400  # LFDI is not this EndDevice
    assert (
        client.post(
            f"{edev}/rsp", body.replace(stranger.lfdi, client.lfdi).replace("<status>1<", "<status>99<")
        ).status
        == 400
    )
    assert admin("GET", f"/api/v1/influence-events/{price['id']}/responses") == []
