"""Subscription resources over real mutual TLS: CRUD, isolation between clients, bad input (resources the client
may not see, forbidden notification URIs, unsupported encodings) -> 4xx Error, nothing stored, and what
Subscription.limit (0 included) puts in a notification."""

from __future__ import annotations

import datetime as dt
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
    valid_notification,
    wait_until,
)

from server.sep2 import xml

server = module_server("subs")
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def test_subscription_crud_and_default_control_notifications(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp = enrolled_device(server, admin, "sub-crud", program="crud-prog")
        assert client.get(edev).root.find(xml.q("SubscriptionListLink")).get("href") == edev + "/sub"
        admin("PUT", "/api/v1/programs/crud-prog/default-control", {"base": {"opModExpLimW": 1500}})
        r = client.post(edev + "/sub", subscription_xml(derp + "/dderc", receiver.url("/d")))
        assert r.status == 201
        sub = r.location
        admin("PUT", "/api/v1/programs/crud-prog/default-control", {"base": {"opModExpLimW": 2500}})
        wait_until(lambda: len(receiver.bodies("/d")) == 1, what="DefaultDERControl notification")
        res = check_notification(receiver.bodies("/d")[0])
        assert res.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "DefaultDERControl"
        assert xml.text(res, "DERControlBase/csipaus:opModExpLimW/value") == "2500"
        # PUT moves it to the program's DERControlList; DELETE removes it
        assert client.put(sub, subscription_xml(derp + "/derc", receiver.url("/c"), limit=1)).status == 204
        assert client.get(sub).text("subscribedResource") == derp + "/derc"
        admin(
            "POST",
            "/api/v1/controls",
            {"program": "crud-prog", "start": "now", "duration_s": 600, "base": {"opModConnect": False}},
            expect=201,
        )
        wait_until(lambda: len(receiver.bodies("/c")) == 1, what="DERControlList notification")
        res = check_notification(receiver.bodies("/c")[0])
        assert res.get("all") == "1" and res.get("results") == "1"
        assert client.delete(sub).status == 204
        assert client.get(sub).status == 404
        assert client.get(edev + "/sub?l=10").root.get("all") == "0"
        rows = dso_json("subscriptions", "--lfdi", client.lfdi, "-c", server.config, "--json")
        assert rows == []
    finally:
        receiver.down()


def later(hours: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat()


def test_limit_zero_is_a_simple_change_notification(server):
    """IEEE 2030.5 Subscription.limit: "For list resources, if a limit of '0' is specified, then notifications
    SHALL contain a list resource with results='0' (equivalent to a simple change notification) ... For non-list
    resources, if a limit of '0' is specified, then notifications SHALL NOT contain a resource representation";
    a limit > 0 gives at most that many list items / the representation. Every notification is schema-valid."""
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp = enrolled_device(server, admin, "sub-zero", program="zero-prog")
        admin("PUT", "/api/v1/programs/zero-prog/default-control", {"base": {"opModExpLimW": 1500}})
        first = admin(
            "POST",
            "/api/v1/controls",
            {
                "program": "zero-prog",
                "start": later(1),
                "duration_s": 600,
                "description": "Z1",
                "base": {"opModExpLimW": 1000},
            },
            expect=201,
        )
        control = client.get(derp + "/derc?l=10").all("DERControl")[0].get("href")
        subs = {
            "/list0": (derp + "/derc", 0),
            "/list3": (derp + "/derc", 3),
            "/ctl0": (control, 0),
            "/ctl3": (control, 3),
            "/dderc0": (derp + "/dderc", 0),
        }
        hrefs = []
        for path, (res, limit) in subs.items():
            r = client.post(edev + "/sub", subscription_xml(res, receiver.url(path), limit=limit))
            assert r.status == 201, (path, r.status, r.body)
            assert client.get(r.location).text("limit") == str(limit)
            hrefs.append(r.location)
        for h in (2, 3, 4):
            admin(
                "POST",
                "/api/v1/controls",
                {
                    "program": "zero-prog",
                    "start": later(h),
                    "duration_s": 600,
                    "description": f"Z{h}",
                    "base": {"opModExpLimW": 1000},
                },
                expect=201,
            )
        admin("POST", f"/api/v1/controls/{first['id']}/cancel", {})  # Z1 still listed, now cancelled
        # the lists changed with each control; Z1 itself only when cancelled; the DefaultDERControl never. A list
        # notification without items cannot show what changed, so /list0 hears of every change to the list
        expected = {"/list0": 4, "/list3": 4, "/ctl0": 1, "/ctl3": 1, "/dderc0": 0}
        wait_until(
            lambda: all(len(receiver.bodies(p)) >= n for p, n in expected.items()), what="the notifications"
        )
        time.sleep(1.0)  # anything more would have arrived with them
        assert {p: len(receiver.bodies(p)) for p in subs} == expected

        def lists(path: str) -> list[tuple[str | None, str | None, int]]:
            out = []
            for n in receiver.bodies(path):
                res = check_notification(n)
                assert res.get(XSI_TYPE) == "DERControlList" and res.get("href") == derp + "/derc"
                assert xml.text(n, "status") == "0"
                out.append((res.get("all"), res.get("results"), len(res.findall(xml.q("DERControl")))))
            return out

        assert lists("/list0") == [("2", "0", 0), ("3", "0", 0), ("4", "0", 0), ("4", "0", 0)]
        assert lists("/list3") == [("2", "2", 2), ("3", "3", 3), ("4", "3", 3), ("4", "3", 3)]
        assert client.get(derp + "/derc?l=10").root.get("all") == "4"
        for path, res in (("/ctl0", control), ("/dderc0", derp + "/dderc")):
            for n in receiver.bodies(path):
                valid_notification(n)
                assert xml.find(n, "Resource") is None, path
                assert xml.text(n, "status") == "0" and xml.text(n, "subscribedResource") == res
                assert xml.text(n, "subscriptionURI").startswith(edev + "/sub/")
        shown = [check_notification(n) for n in receiver.bodies("/ctl3")]
        assert {r.get(XSI_TYPE) for r in shown} == {"DERControl"} and {r.get("href") for r in shown} == {
            control
        }
        assert xml.text(shown[-1], "EventStatus/currentStatus") == "2"  # cancelled
        for href in hrefs:  # the module's other tests count this server's subscriptions
            assert client.delete(href).status == 204
    finally:
        receiver.down()


def test_bad_subscriptions_are_refused_and_store_nothing(server):
    admin = Admin(server)
    mine, edev, derp = enrolled_device(server, admin, "sub-bad-1", program="bad-prog-1")
    theirs, their_edev, their_derp = enrolled_device(server, admin, "sub-bad-2", program="bad-prog-2")
    ok_uri = "http://127.0.0.1:9/n"
    cases = {
        "another device's control list": (edev, subscription_xml(their_derp + "/derc", ok_uri)),
        "another device's EndDevice": (edev, subscription_xml(their_edev, ok_uri)),
        "another device's SubscriptionList": (their_edev, subscription_xml(derp + "/derc", ok_uri)),
        "a program not assigned to me": (
            edev,
            subscription_xml(derp.rsplit("/", 1)[0] + "/999999/derc", ok_uri),
        ),
        "an unknown resource": (edev, subscription_xml("/nowhere", ok_uri)),
        "a DefaultDERControl of a program not assigned to me": (
            edev,
            subscription_xml(their_derp + "/dderc", ok_uri),
        ),
        "plain http off loopback": (edev, subscription_xml(derp + "/derc", "http://192.0.2.7/n")),
        "a non-http scheme": (edev, subscription_xml(derp + "/derc", "ftp://127.0.0.1/n")),
        "a relative notification URI": (edev, subscription_xml(derp + "/derc", "/n")),
        "an encoding other than XML": (edev, subscription_xml(derp + "/derc", ok_uri, encoding=1)),
        "a 3000-character notification URI": (edev, subscription_xml(derp + "/derc", ok_uri + "x" * 3000)),
        "a timestamp-sized resource id": (edev, subscription_xml(derp + "9" * 12 + "/derc", ok_uri)),
        "schema-invalid body": (
            edev,
            subscription_xml(derp + "/derc", ok_uri).replace("<level>", "<levels>"),
        ),
    }
    for what, (target, body) in cases.items():
        r = mine.post(target + "/sub", body)
        assert 400 <= r.status < 500 and r.text("reasonCode") is not None, (what, r.status, r.body)
    unregistered = Sep2Client(server, server.issue_device("sub-bad-unregistered"))
    assert unregistered.post(edev + "/sub", subscription_xml(derp + "/derc", ok_uri)).status in (403, 404)
    assert mine.get(edev + "/sub?l=10").root.get("all") == "0"
    assert theirs.get(their_edev + "/sub?l=10").root.get("all") == "0"
    assert admin("GET", "/api/v1/sep2/subscriptions") == []
    # another client cannot read, change or delete my subscription
    href = mine.post(edev + "/sub", subscription_xml(derp + "/derc", ok_uri)).location
    for r in (
        theirs.get(href),
        theirs.delete(href),
        theirs.put(href, subscription_xml(derp + "/derc", ok_uri)),
    ):
        assert r.status in (403, 404)
    assert mine.get(href).status == 200
