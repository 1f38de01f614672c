"""A client whose 2030.5 access staff revoked gets no GET, no PUT/POST and no notification -- neither one made
after the revocation nor one queued before it and still waiting for delivery; restoring access restores all three."""

from __future__ import annotations

import time

from support import free_port
from support.sep2_live import (
    Admin,
    Receiver,
    check_notification,
    enrolled_device,
    module_server,
    subscription_xml,
    wait_until,
)

from server.sep2 import xml

server = module_server("revocation")


def control(admin: Admin, program: str, watts: int) -> dict:
    return admin(
        "POST",
        "/api/v1/controls",
        {"program": program, "start": "now", "duration_s": 600, "base": {"opModExpLimW": watts}},
        expect=201,
    )


def response_xml(lfdi: str, subject: str) -> str:
    return (
        f'<Response xmlns="{xml.NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
        f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>1</status><subject>{subject}</subject></Response>"
    )


def test_revoked_client_gets_no_get_no_write_and_no_notification(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp = enrolled_device(server, admin, "revoked-dev", program="revoke-prog")
        other, other_edev, other_derp = enrolled_device(server, admin, "still-granted", program="keep-prog")
        assert client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url("/r"))).status == 201
        assert (
            other.post(other_edev + "/sub", subscription_xml(other_derp + "/derc", receiver.url("/o"))).status
            == 201
        )
        control(admin, "revoke-prog", 1000)
        wait_until(lambda: len(receiver.bodies("/r")) == 1, what="notification before the revocation")
        mrid = xml.text(check_notification(receiver.bodies("/r")[0]), "DERControl/mRID")

        # read twice so the scope and DeviceCapability are kept (server.core.readcache): the revocation below
        # must drop them at once
        for _ in range(2):
            assert client.get("/dcap").status == 200
        admin("PUT", f"/api/v1/sep2/access/{client.lfdi}", {"granted": False})
        # no GET of anything it reached before (nor of the start of discovery)
        for path in (
            "/dcap",
            "/tm",
            "/edev",
            edev,
            edev + "/fsa",
            derp,
            derp + "/derc",
            edev + "/sub",
            "/mup",
        ):
            reply = client.get(path)
            assert reply.status == 403, (path, reply.status)
            assert xml.local_name(reply.root) == "Error"
        # no PUT/POST: a response, a subscription, a DER status, a registration
        assert client.post("/rsps/1/rsp", response_xml(client.lfdi, mrid or "")).status == 403
        assert client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url("/x"))).status == 403
        ders = f'<DERStatus xmlns="{xml.NS}"><readingTime>{int(time.time())}</readingTime></DERStatus>'
        assert client.put(edev + "/der/1/ders", ders).status == 403
        # no notification of a change made after the revocation (another client still hears of its own)
        control(admin, "revoke-prog", 2000)
        control(admin, "keep-prog", 3000)
        wait_until(lambda: len(receiver.bodies("/o")) == 1, what="the granted client's notifications")
        time.sleep(1.0)  # the revoked subscriber's notification would have been queued with the same change
        assert len(receiver.bodies("/r")) == 1
    finally:
        receiver.down()


def test_notification_queued_before_revocation_is_not_delivered_after_it(server):
    admin = Admin(server)
    receiver = Receiver(free_port()).up()
    try:
        client, edev, derp = enrolled_device(server, admin, "queued-dev", program="queued-prog")
        assert client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url("/q"))).status == 201
        receiver.mode = "fail"  # the subscriber's endpoint is down: the notification waits in the outbox
        control(admin, "queued-prog", 1500)
        wait_until(lambda: receiver.failed >= 1, what="a failed first delivery attempt")
        admin("PUT", f"/api/v1/sep2/access/{client.lfdi}", {"granted": False})
        receiver.mode = "ok"
        failed = lambda: [  # noqa: E731
            d
            for d in admin("GET", "/api/v1/deliveries?status=failed&channel=sep2-notification")
            if "revoked" in (d.get("last_error") or "")
        ]
        wait_until(lambda: len(failed()) == 1, what="the queued notification given up on")
        time.sleep(1.0)
        assert receiver.bodies("/q") == []
        assert admin("GET", "/api/v1/deliveries?status=pending&channel=sep2-notification") == []

        # access restored: GETs answer again and the next change is notified (the withheld one stays withheld)
        admin("PUT", f"/api/v1/sep2/access/{client.lfdi}", {"granted": True})
        assert client.get(derp + "/derc").status == 200
        control(admin, "queued-prog", 2500)
        wait_until(lambda: len(receiver.bodies("/q")) == 1, what="a notification after access was restored")
        res = check_notification(receiver.bodies("/q")[0])
        assert res.get("all") == "2"
    finally:
        receiver.down()


def test_revocation_drops_kept_lists_at_once(server):
    """Every list of the poll cycle, read twice so it is kept, is refused at the next request after the
    revocation; restored access serves it again."""
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "kept-lists-dev", program="kept-lists-prog")
    control(admin, "kept-lists-prog", 1200)
    fsa_list = edev + "/fsa?l=10"
    fsa = client.get(fsa_list).all("FunctionSetAssignments")[0].get("href")
    paths = ["/dcap", "/edev?l=1", edev, fsa_list, fsa + "/derp?l=10", derp, derp + "/derc?l=50"]
    paths += [derp + "/actderc?l=10", derp + "/dderc"]
    for path in paths * 2:
        assert client.get(path).status == 200, path
    admin("PUT", f"/api/v1/sep2/access/{client.lfdi}", {"granted": False})
    for path in paths:
        reply = client.get(path)
        assert reply.status == 403, (path, reply.status)
        assert xml.local_name(reply.root) == "Error"
    admin("PUT", f"/api/v1/sep2/access/{client.lfdi}", {"granted": True})
    assert client.get(derp + "/derc?l=50").root.get("all") == "1"
