"""Subscriptions and durable notifications through a real server process, on SQLite and PostgreSQL.

The must-show: the receiver first answers 503, then refuses connections; staff create, supersede and cancel
controls; the server restarts; the receiver comes back; every notification arrives exactly once per change, in
order per subscription, schema-valid, with the EventStatus each change produced."""

from __future__ import annotations

import time

from support import LiveServer, free_port
from support.sep2_live import (
    FAST_DELIVERY,
    Admin,
    Receiver,
    check_notification,
    enrolled_device,
    subscription_xml,
    wait_until,
)

from server.sep2 import xml


def statuses(resource) -> dict[str, int]:
    """{control description: EventStatus.currentStatus} of a DERControlList carried by a notification."""
    return {
        xml.text(c, "description"): int(xml.text(c, "EventStatus/currentStatus"))
        for c in resource.findall(xml.q("DERControl"))
    }


def test_notifications_survive_receiver_outage_and_server_restart(tmp_path, database_url):
    server = LiveServer(tmp_path / "dso", database_url=database_url, extra_env=FAST_DELIVERY).init().start()
    receiver = Receiver(free_port()).up()
    try:
        admin = Admin(server)
        client, edev, derp = enrolled_device(server, admin, "dev-notify", program="feeder-1")
        derc_list = derp + "/derc"
        # two subscriptions of one device, each with its own ordered stream
        r = client.post(edev + "/sub", subscription_xml(derc_list, receiver.url("/n/list"), limit=10))
        assert r.status == 201 and r.location
        list_sub = r.location
        r = client.post(edev + "/sub", subscription_xml(derp, receiver.url("/n/program")))
        assert r.status == 201
        sub = client.get(list_sub)
        assert sub.text("subscribedResource") == derc_list and sub.text("limit") == "10"
        assert client.get(edev + "/sub?l=10").root.get("all") == "2"

        # outage part 1: the receiver answers 503
        receiver.mode = "fail"
        a = admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "feeder-1",
                "start": "now",
                "duration_s": 3600,
                "description": "A",
                "base": {"opModExpLimW": 5000},
            },
            expect=201,
        )
        wait_until(lambda: receiver.failed >= 2, what="retries after 503")
        # outage part 2: connections are refused
        receiver.down()
        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "feeder-1",
                "start": "now",
                "duration_s": 3600,
                "description": "B",
                "base": {"opModExpLimW": 3000},
            },
            expect=201,
        )
        b = admin("GET", "/api/v1/controls?program=feeder-1")
        b_id = next(c["id"] for c in b if c["description"] == "B")
        admin("POST", f"/api/v1/controls/{b_id}/cancel", {})
        pending = admin("GET", "/api/v1/deliveries?status=pending&channel=sep2-notification")
        # 3 changes x the DERControlList, 2 x the DERProgram (cancelling B left it as it was), none delivered yet
        assert len(pending) == 5, pending

        server.restart()
        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "feeder-1",
                "start": "now",
                "duration_s": 60,
                "description": "C",
                "base": {"opModExpLimW": 1000},
            },
            expect=201,
        )
        receiver.mode = "ok"
        receiver.up()
        wait_until(lambda: len(receiver.received) >= 7, what="all 7 notifications")
        time.sleep(2.5)  # longer than the back-off: anything delivered twice would show up now
        assert len(receiver.received) == 7

        lists = [check_notification(n) for n in receiver.bodies("/n/list")]
        assert [statuses(r) for r in lists] == [
            {"A": 1},  # A created: active
            {"A": 4, "B": 1},  # B supersedes A (same program, newer, overlapping)
            {"A": 1, "B": 2},  # B cancelled: A applies again
            {"A": 4, "B": 2, "C": 1},  # C (after the restart) supersedes A for its minute
        ]
        for n in receiver.bodies("/n/list"):
            assert xml.text(n, "status") == "0" and xml.text(n, "subscriptionURI") == list_sub
            assert xml.text(n, "subscribedResource") == derc_list
        programs = [check_notification(n) for n in receiver.bodies("/n/program")]
        assert len(programs) == 3 and all(p.get("href") == derp for p in programs)
        assert [xml.find(p, "DERControlListLink").get("all") for p in programs] == ["1", "2", "3"]
        assert a["id"] < b_id

        # staff view: every message of both subscriptions delivered, none pending or failed
        states = admin("GET", f"/api/v1/sep2/subscriptions?lfdi={client.lfdi}")
        assert {s["resource"]: (s["delivered"], s["pending"], s["failed"]) for s in states} == {
            derc_list: (4, 0, 0),
            derp: (3, 0, 0),
        }
        assert states[0]["last"]["attempts"] >= 1
    finally:
        receiver.down()
        server.stop()
