"""One event, every protocol: a DR event and then a price, each created once through the admin API for a program
whose members are a 2030.5 device, an openleadr VEN that polls and a VEN that takes pushes, reach all three (the
device by GET and by a Subscription notification, the VENs by oadrPoll and by push), all three answer, and the
event shows the three answers side by side (``GET /api/v1/events/{id}`` and ``dso event show``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from support import LiveServer, dso, free_port
from support.openadr import FAST_ENV, PushEndpoint, SchemaWatch, admin, client, enroll, wait_for
from support.sep2 import Admin
from support.sep2_live import FAST_DELIVERY, Receiver, check_notification, enrolled_device, subscription_xml

from server.openadr import codec
from server.sep2 import xml

pytestmark = pytest.mark.asyncio


class PollingVen:
    """openleadr's VEN: remembers every event it was handed (signal name and values) and opts in."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, list[float]]] = {}

    async def on_event(self, event):
        d = event["event_descriptor"]
        signal = event["event_signals"][0]
        # openleadr hands a numeric eventID over as a number
        self.seen[str(d["event_id"])] = (
            signal["signal_name"],
            [i["signal_payload"] for i in signal["intervals"]],
        )
        return "optIn"


def edc_event_id(mrid: str) -> int:
    """The event id a 2030.5 mRID of this server carries (bytes 6..11 of the 16)."""
    return int(mrid[12:24], 16)


def pushed_ids(endpoint: PushEndpoint) -> set[str]:
    return {
        codec.text(ev, "ei:eiEvent/ei:eventDescriptor/ei:eventID")
        for service, msg in endpoint.received
        if codec.local(msg) == "oadrDistributeEvent"
        for ev in msg.findall("oadr:oadrEvent", codec.NS)
    }


async def start(tmp_path) -> LiveServer:
    server = LiveServer(tmp_path / "dso", extra_env={**FAST_ENV, **FAST_DELIVERY})
    await asyncio.to_thread(server.init)
    push_identity = await asyncio.to_thread(server.issue_ven, "vtn-push-client")
    server.extra_env.update(
        DSO_OPENADR__PUSH_CERT=push_identity["cert"], DSO_OPENADR__PUSH_KEY=push_identity["key"]
    )
    await asyncio.to_thread(server.start)
    return server


async def test_one_dr_event_and_one_price_reach_device_and_vens_and_their_answers_meet(tmp_path):
    server = await start(tmp_path)
    watch = SchemaWatch()
    receiver = Receiver(free_port()).up()
    staff = Admin(server)
    poll_ven = await asyncio.to_thread(enroll, server, "agg-poll")
    push_ven = await asyncio.to_thread(enroll, server, "agg-push", False, True)
    endpoint = PushEndpoint(server, push_ven, watch)
    await endpoint.start()
    ven = client(server, poll_ven, watch, sign=False)
    recorder = PollingVen()
    ven.add_handler("on_event", recorder.on_event)
    try:
        device, edev, _ = await asyncio.to_thread(enrolled_device, server, staff, "thermostat-1")
        await ven.run()
        await endpoint.register()

        # ---- the programs: each has the device and both VENs as members
        await admin(server, "POST", "/api/v1/dr-programs", {"name": "peak", "primacy": 2})
        await admin(server, "POST", "/api/v1/tariffs", {"name": "tou", "price_power_of_ten": -5})
        await admin(server, "POST", "/api/v1/tariffs/tou/rates", {"name": "energy"})
        for path in ("/api/v1/dr-programs/peak/assign", "/api/v1/tariffs/tou/assign"):
            for member in ({"lfdi": device.lfdi}, {"ven": "agg-poll"}, {"ven": "agg-push"}):
                status, _ = await admin(server, "POST", path, member)
                assert status == 200, (path, member)

        # the device subscribes to the two event lists it finds from its FunctionSetAssignments
        fsa = (await asyncio.to_thread(device.get, edev + "/fsa?l=10")).all("FunctionSetAssignments")[0]
        drps = await asyncio.to_thread(device.get, xml.find(fsa, "DemandResponseProgramListLink").get("href"))
        edc_href = xml.find(drps.all("DemandResponseProgram")[0], "EndDeviceControlListLink").get("href")
        tps = await asyncio.to_thread(device.get, xml.find(fsa, "TariffProfileListLink").get("href"))
        rcs = await asyncio.to_thread(
            device.get, xml.find(tps.all("TariffProfile")[0], "RateComponentListLink").get("href")
        )
        tti_href = xml.find(rcs.all("RateComponent")[0], "TimeTariffIntervalListLink").get("href")
        for href, path in ((edc_href, "/edc"), (tti_href, "/tti")):
            sub = await asyncio.to_thread(
                device.post, edev + "/sub", subscription_xml(href, receiver.url(path))
            )
            assert sub.status == 201

        # ---- one DR event, created once
        status, dr = await admin(
            server,
            "POST",
            "/api/v1/events",
            {
                "program": "peak",
                "kind": "dr",
                "start": "now",
                "duration_s": 1800,
                "device_category": ["thermostat"],
                "control": {"dutyCycle": {"normalValue": 50}},
                "level": 2,
                "response_required": 3,
                "description": "peak-1",
            },
        )
        assert status == 201, dr
        dr_id = str(dr["id"])

        # the device: GET and notification carry the same EndDeviceControl
        edcs = await asyncio.to_thread(device.get, edc_href)
        (edc,) = edcs.all("EndDeviceControl")
        assert edc_event_id(xml.text(edc, "mRID")) == dr["id"]
        assert xml.text(edc, "DutyCycle/normalValue") == "50"
        await wait_for(lambda: receiver.bodies("/edc"), 15, "EndDeviceControlList notification")
        notified = check_notification(receiver.bodies("/edc")[-1])
        assert [xml.text(e, "mRID") for e in notified.iter(xml.q("EndDeviceControl"))] == [
            xml.text(edc, "mRID")
        ]
        # the VENs: by poll (openleadr) and by push, the same event with the SIMPLE level asked for
        await wait_for(lambda: dr_id in recorder.seen, 15, "the DR event polled by openleadr")
        assert recorder.seen[dr_id] == ("SIMPLE", [2.0])
        await wait_for(lambda: dr_id in pushed_ids(endpoint), 15, "the DR event pushed")

        # the device answers (started); both VENs opted in
        answer = (
            f'<DrResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{device.lfdi}</endDeviceLFDI><status>2</status>"
            f"<subject>{xml.text(edc, 'mRID')}</subject></DrResponse>"
        )
        assert (await asyncio.to_thread(device.post, edc.get("replyTo"), answer)).status == 201

        async def three_answers(event_id: str):
            _, shown = await admin(server, "GET", f"/api/v1/events/{event_id}")
            parties = {
                (r["protocol"], r.get("ven") or r.get("lfdi"), r["status"]) for r in shown["responses"]
            }
            return parties if len(parties) >= 3 else None

        parties = await wait_for(lambda: three_answers(dr_id), 15, "three answers to the DR event")
        assert parties == {
            ("2030.5", device.lfdi, 2),
            ("openadr", "agg-poll", 5),
            ("openadr", "agg-push", 5),
        }
        shown = (await asyncio.to_thread(dso, "event", "show", dr_id, "-c", server.config)).stdout
        assert f"2030.5 device {device.lfdi}" in shown and "started" in shown
        assert "OpenADR VEN agg-poll" in shown and "OpenADR VEN agg-push" in shown and "optIn" in shown

        # ---- then a price, created once: 2030.5 TimeTariffInterval and OpenADR ELECTRICITY_PRICE
        status, price = await admin(
            server,
            "POST",
            "/api/v1/events",
            {
                "program": "tou",
                "start": "now",
                "duration_s": 3600,
                "prices": [{"price": 2500}],
                "response_required": 1,
            },
        )
        assert status == 201, price
        price_id = str(price["id"])
        ttis = await asyncio.to_thread(device.get, tti_href)
        (tti,) = ttis.all("TimeTariffInterval")
        assert edc_event_id(xml.text(tti, "mRID")) == price["id"]
        await wait_for(lambda: receiver.bodies("/tti"), 15, "TimeTariffIntervalList notification")
        notified = check_notification(receiver.bodies("/tti")[-1])
        assert [xml.text(e, "mRID") for e in notified.iter(xml.q("TimeTariffInterval"))] == [
            xml.text(tti, "mRID")
        ]
        await wait_for(lambda: price_id in recorder.seen, 15, "the price polled by openleadr")
        name, values = recorder.seen[price_id]
        # 2500 x 10^-5 currency per Wh = 25 per kWh
        assert name == "ELECTRICITY_PRICE" and values == [pytest.approx(25.0)]
        await wait_for(lambda: price_id in pushed_ids(endpoint), 15, "the price pushed")
        answer = (
            f'<PriceResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{device.lfdi}</endDeviceLFDI><status>1</status>"
            f"<subject>{xml.text(tti, 'mRID')}</subject></PriceResponse>"
        )
        assert (await asyncio.to_thread(device.post, tti.get("replyTo"), answer)).status == 201
        parties = await wait_for(lambda: three_answers(price_id), 15, "three answers to the price")
        assert parties == {
            ("2030.5", device.lfdi, 1),
            ("openadr", "agg-poll", 5),
            ("openadr", "agg-push", 5),
        }
        watch.assert_clean()
    finally:
        await ven.stop()
        await endpoint.stop()
        receiver.down()
        await asyncio.to_thread(server.stop)
