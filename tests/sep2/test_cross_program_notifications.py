"""A change in one program reaches the subscribers of *another* program's lists of the same device, through a real
server over mutual TLS.

A device sees the controls of all its programs together; an overlapping control of another program sets
EventStatus.potentiallySuperseded on the ones it overlaps (supersession, status 4, stays within a program). So
when program A gets or loses a control overlapping one of program B, B's DERControlList and ActiveDERControlList
as a GET returns them change, and a notification must carry that change (IEEE 2030.5 §8.7.3.2). A control of A
that overlaps nothing of B does not notify B's subscribers. The same for DR programs (EndDeviceControlList)."""

from __future__ import annotations

import datetime as dt
import time

from support import free_port
from support.sep2_live import (
    Admin,
    Receiver,
    check_notification,
    enrolled_device,
    module_server,
    subscription_xml,
    valid_notification,
    wait_until,
)

from server.sep2 import xml

server = module_server("cross")


def flags(resource, tag: str = "DERControl") -> dict[str, tuple[int, str]]:
    """{description: (currentStatus, potentiallySuperseded)} of a list carried by a notification."""
    return {
        xml.text(c, "description"): (
            int(xml.text(c, "EventStatus/currentStatus")),
            xml.text(c, "EventStatus/potentiallySuperseded"),
        )
        for c in resource.findall(xml.q(tag))
    }


def later(hours: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


def test_other_programs_lists_hear_of_overlapping_changes(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp_b = enrolled_device(server, admin, "cross-dev", program="cross-b", primacy=5)
        admin("POST", "/api/v1/programs", {"name": "cross-a", "primacy": 1})
        admin("POST", "/api/v1/programs/cross-a/assign", {"lfdi": client.lfdi, "fsa": "second"})
        assert client.get(edev + "/fsa?l=10").root.get("all") == "2"
        for path, res in (("/b-list", derp_b + "/derc"), ("/b-active", derp_b + "/actderc")):
            assert client.post(edev + "/sub", subscription_xml(res, receiver.url(path))).status == 201

        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-b",
                "start": "now",
                "duration_s": 3600,
                "description": "B1",
                "base": {"opModExpLimW": 5000},
            },
            expect=201,
        )
        wait_until(lambda: len(receiver.bodies("/b-active")) == 1, what="B's own change")
        # A's control overlapping B1: B1 now reads potentiallySuperseded
        a1 = admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-a",
                "start": "now",
                "duration_s": 600,
                "description": "A1",
                "base": {"opModExpLimW": 1000},
            },
            expect=201,
        )
        wait_until(
            lambda: len(receiver.bodies("/b-active")) == 2, what="B notified of A's overlapping control"
        )
        # A's control far from B1 changes nothing B's subscribers see: no notification for them
        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-a",
                "start": later(5),
                "duration_s": 600,
                "description": "A2",
                "base": {"opModExpLimW": 2000},
            },
            expect=201,
        )
        # cancelling A1: B1 is no longer potentially superseded
        admin("POST", f"/api/v1/controls/{a1['id']}/cancel", {})
        wait_until(lambda: len(receiver.bodies("/b-active")) == 3, what="B notified of A's cancellation")
        time.sleep(1.0)
        for path in ("/b-list", "/b-active"):
            got = [flags(check_notification(n)) for n in receiver.bodies(path)]
            assert got == [{"B1": (1, "false")}, {"B1": (1, "true")}, {"B1": (1, "false")}], (path, got)
        # what the device GETs now matches the last notification
        listed = client.get(derp_b + "/derc?l=10")
        assert {
            xml.text(c, "description"): xml.text(c, "EventStatus/potentiallySuperseded")
            for c in listed.all("DERControl")
        } == {"B1": "false"}
    finally:
        receiver.down()


def test_limit_zero_subscribers_hear_of_overlapping_changes(server):
    """A limit 0 notification shows no items (a list: results="0"; a DERControl: no Resource), so it cannot be
    compared with the last one: B's limit 0 subscribers are notified of every change of A while A has a control
    overlapping one of B's (``der_controls.touches``; coarser than for limit > 0, where a repeat of the last
    notification is dropped), and not of a change of A while A overlaps nothing of B."""
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp_b = enrolled_device(server, admin, "cross-zero", program="cross-zero-b", primacy=5)
        admin("POST", "/api/v1/programs", {"name": "cross-zero-a", "primacy": 1})
        admin("POST", "/api/v1/programs/cross-zero-a/assign", {"lfdi": client.lfdi, "fsa": "second"})
        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-zero-b",
                "start": "now",
                "duration_s": 3600,
                "description": "B1",
                "base": {"opModExpLimW": 5000},
            },
            expect=201,
        )
        b1 = client.get(derp_b + "/derc?l=10").all("DERControl")[0].get("href")
        for path, res in (("/z-list", derp_b + "/derc"), ("/z-ctl", b1)):
            assert (
                client.post(edev + "/sub", subscription_xml(res, receiver.url(path), limit=0)).status == 201
            )
        admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-zero-a",
                "start": later(5),
                "duration_s": 600,
                "description": "A2",
                "base": {"opModExpLimW": 2000},
            },
            expect=201,
        )
        a1 = admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "cross-zero-a",
                "start": "now",
                "duration_s": 600,
                "description": "A1",
                "base": {"opModExpLimW": 1000},
            },
            expect=201,
        )
        admin("POST", f"/api/v1/controls/{a1['id']}/cancel", {})
        wait_until(
            lambda: all(len(receiver.bodies(p)) == 2 for p in ("/z-list", "/z-ctl")),
            what="B's limit 0 subscribers notified of A1 and of its cancellation",
        )
        time.sleep(1.0)  # and not of A2 (created while nothing of A overlapped B1)
        got = [
            (r.get("all"), r.get("results"), len(r))
            for r in map(check_notification, receiver.bodies("/z-list"))
        ]
        assert got == [("1", "0", 0), ("1", "0", 0)]
        bare = [valid_notification(n) for n in receiver.bodies("/z-ctl")]
        assert len(bare) == 2 and all(
            xml.find(n, "Resource") is None and xml.text(n, "status") == "0" for n in bare
        )
    finally:
        receiver.down()


def test_other_dr_programs_hear_of_overlapping_events(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, _ = enrolled_device(server, admin, "cross-drlc", program="cross-drlc-der")
        for name, primacy in (("cross-dr-1", 1), ("cross-dr-2", 4)):
            admin("POST", "/api/v1/dr-programs", {"name": name, "primacy": primacy}, expect=201)
            admin("POST", f"/api/v1/dr-programs/{name}/assign", {"lfdi": client.lfdi})
        fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0]
        drps = client.get(xml.find(fsa, "DemandResponseProgramListLink").get("href") + "?l=10")
        by_primacy = {xml.text(d, "primacy"): d for d in drps.all("DemandResponseProgram")}
        edc_2 = xml.find(by_primacy["4"], "EndDeviceControlListLink").get("href")
        assert client.post(edev + "/sub", subscription_xml(edc_2, receiver.url("/dr2"))).status == 201

        event = {
            "start": "now",
            "duration_s": 3600,
            "device_category": ["thermostat"],
            "control": {"dutyCycle": {"normalValue": 50}},
        }
        admin("POST", "/api/v1/dr-programs/cross-dr-2/events", {**event, "description": "E2"}, expect=201)
        wait_until(lambda: len(receiver.bodies("/dr2")) == 1, what="DR program 2's own event")
        admin("POST", "/api/v1/dr-programs/cross-dr-1/events", {**event, "description": "E1"}, expect=201)
        wait_until(
            lambda: len(receiver.bodies("/dr2")) == 2, what="DR program 2 notified of program 1's event"
        )
        got = [flags(check_notification(n), "EndDeviceControl") for n in receiver.bodies("/dr2")]
        assert got == [{"E2": (1, "false")}, {"E2": (1, "true")}]
    finally:
        receiver.down()
