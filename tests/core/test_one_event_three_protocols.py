"""One DR event, created once by staff, reaches a 2030.5 DRLC device (EndDeviceControl), an OpenADR 2.0b VEN
(openleadr, by oadrPoll) and an OpenADR 3.1 VEN (ElaadNL's openadr3-client: in its event list and by webhook);
the device answers with a DrResponse, the 2.0b VEN opts in, the 3.1 VEN reports, and staff see the three answers
side by side (``GET /api/v1/events/{id}`` and ``dso event show``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from support import LiveServer, dso
from support.openadr import FAST_ENV, SchemaWatch, admin, client, enroll, wait_for
from support.openadr3 import WebhookReceiver, make_client, run_peer, spec_errors
from support.sep2 import Admin
from support.sep2_live import FAST_DELIVERY, enrolled_device

from server.sep2 import xml

pytestmark = pytest.mark.asyncio


async def test_a_staff_dr_event_reaches_sep2_openadr2_and_openadr3_and_their_answers_meet(tmp_path):
    server = LiveServer(tmp_path / "dso", extra_env={**FAST_ENV, **FAST_DELIVERY})
    await asyncio.to_thread(server.init)
    await asyncio.to_thread(server.start)
    watch = SchemaWatch()
    receiver = WebhookReceiver()
    staff = Admin(server)
    legacy = await asyncio.to_thread(enroll, server, "agg-2b")
    ven2 = client(server, legacy, watch, sign=False)
    seen_2b: dict[str, list[float]] = {}

    async def on_event(event):
        signal = event["event_signals"][0]
        seen_2b[str(event["event_descriptor"]["event_id"])] = [
            i["signal_payload"] for i in signal["intervals"]
        ]
        return "optIn"

    ven2.add_handler("on_event", on_event)
    try:
        device, edev, _ = await asyncio.to_thread(enrolled_device, server, staff, "water-heater-1")
        await ven2.run()
        # the 3.1 VEN: a client staff made, its VEN registered by itself, subscribed to events
        ven3 = await asyncio.to_thread(make_client, server, "site-3", "ven")
        cfg3 = {"client_id": ven3["client_id"], "client_secret": ven3["client_secret"], "ven_name": "site-3"}
        await asyncio.to_thread(
            run_peer,
            server,
            "ven-register",
            {**cfg3, "resource": "heater", "callback": receiver.url("/v3"), "bearer": "b3"},
        )

        await admin(server, "POST", "/api/v1/dr-programs", {"name": "peak", "primacy": 2})
        for member in ({"lfdi": device.lfdi}, {"ven": "agg-2b"}, {"ven": "site-3"}):
            status, answer = await admin(server, "POST", "/api/v1/dr-programs/peak/assign", member)
            assert status == 200, (member, answer)

        # ---- one DR event, created once by staff
        status, dr = await admin(
            server,
            "POST",
            "/api/v1/events",
            {
                "program": "peak",
                "kind": "dr",
                "start": "now",
                "duration_s": 1800,
                "device_category": ["water-heater"],
                "control": {"dutyCycle": {"normalValue": 40}},
                "level": 2,
                "response_required": 3,
            },
        )
        assert status == 201, dr
        event_id = str(dr["id"])

        # 2030.5: the device's EndDeviceControl list holds it
        fsa = (await asyncio.to_thread(device.get, edev + "/fsa?l=10")).all("FunctionSetAssignments")[0]
        drps = await asyncio.to_thread(device.get, xml.find(fsa, "DemandResponseProgramListLink").get("href"))
        edc_href = xml.find(drps.all("DemandResponseProgram")[0], "EndDeviceControlListLink").get("href")
        (edc,) = (await asyncio.to_thread(device.get, edc_href)).all("EndDeviceControl")
        assert xml.text(edc, "DutyCycle/normalValue") == "40"
        # 2.0b: openleadr polled it (SIMPLE level 2)
        await wait_for(lambda: event_id in seen_2b, 20, "the event polled by openleadr")
        assert seen_2b[event_id] == [2.0]
        # 3.1: in the VEN's event list (SIMPLE 2), and announced to its webhook
        listed = await asyncio.to_thread(run_peer, server, "ven-events", cfg3)
        assert [(e["id"], e["intervals"][0]["payloads"][0]["values"]) for e in listed] == [(event_id, [2.0])]
        await wait_for(lambda: receiver.notes("/v3") or None, 20, "the 3.1 webhook")
        auth, note = receiver.notes("/v3")[0]
        assert auth == "Bearer b3" and note["operation"] == "CREATE" and note["object"]["id"] == event_id
        assert spec_errors("notification", note) == []

        # ---- the three answers: DrResponse, oadrCreatedEvent optIn, a 3.1 report
        answer = (
            f'<DrResponse xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{device.lfdi}</endDeviceLFDI><status>2</status>"
            f"<subject>{xml.text(edc, 'mRID')}</subject></DrResponse>"
        )
        assert (await asyncio.to_thread(device.post, edc.get("replyTo"), answer)).status == 201
        start = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        await asyncio.to_thread(
            run_peer,
            server,
            "ven-report",
            {**cfg3, "event_id": event_id, "resource": "heater", "start": start, "values": [0.8]},
        )

        async def answers():
            _, shown = await admin(server, "GET", f"/api/v1/events/{event_id}")
            found = {(r["protocol"], r.get("ven") or r.get("lfdi"), r["status"]) for r in shown["responses"]}
            return found if len(found) >= 3 else None

        found = await wait_for(answers, 20, "three answers")
        assert found == {("2030.5", device.lfdi, 2), ("openadr", "agg-2b", 5), ("openadr3", "site-3", 1)}
        shown = (await asyncio.to_thread(dso, "event", "show", event_id, "-c", server.config)).stdout
        assert f"2030.5 device {device.lfdi}" in shown and "OpenADR VEN agg-2b" in shown
        assert "OpenADR 3 VEN site-3" in shown and "report received" in shown
        watch.assert_clean()
    finally:
        await ven2.stop()
        receiver.close()
        await asyncio.to_thread(server.stop)
