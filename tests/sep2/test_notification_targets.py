"""Where notifications may go, against a live server: a Subscription whose notificationURI would point the server
at its own listeners, a cloud metadata service, a private or link-local address, a non-https scheme or a name that
does not resolve is refused with 400 and an Error body and nothing is stored; a private network staff allow is
accepted; and a target that became forbidden after the Subscription was made is a dead letter, never sent.

Every refused address is a literal (or a name that cannot resolve without a DNS query), refused before any
connection: the server never connects anywhere but loopback here."""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterator

import pytest
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

TRUSTED = "10.20.0.0/16"
REFUSED = "notification target refused"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    env = {**FAST_DELIVERY, "DSO_DELIVERY__ALLOW_NETWORKS": f"{TRUSTED}, fd00:20::/32"}
    s = LiveServer(tmp_path_factory.mktemp("targets") / "dso", extra_env=env).init().start()
    try:
        yield s
    finally:
        s.stop()


def admin_port(server: LiveServer) -> int:
    port = urllib.parse.urlsplit(server.info["admin_url"]).port
    assert port is not None
    return port


def control(admin: Admin, program: str, description: str) -> None:
    admin(
        "POST",
        "/api/v1/controls",
        {
            "program": program,
            "start": "now",
            "duration_s": 3600,
            "description": description,
            "base": {"opModExpLimW": 4000},
        },
        expect=201,
    )


def test_forbidden_targets_are_refused_and_store_nothing(server):
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "targets-1", program="targets-prog-1")
    derc = derp + "/derc"
    before = admin("GET", "/api/v1/sep2/subscriptions")
    forbidden = {
        "the admin listener": f"https://127.0.0.1:{admin_port(server)}/api/v1/programs",
        "the admin listener over http": f"http://127.0.0.1:{admin_port(server)}/api/v1/programs",
        "the protocol listener": f"https://127.0.0.1:{server.port}/edev",
        "the protocol listener on IPv6 loopback": f"https://[::1]:{server.port}/edev",
        "the cloud metadata service": "http://169.254.169.254/latest/meta-data",
        "the cloud metadata service over https": "https://169.254.169.254/latest/meta-data",
        "a private address": "https://10.0.0.1/n",
        "a private address outside the allowed network": "https://10.21.0.1/n",
        "an IPv4-mapped private address": "https://[::ffff:10.0.0.1]/n",
        "a unique local IPv6 address": "https://[fc00::1]/n",
        "a link-local IPv6 address": "https://[fe80::1]/n",
        "the unspecified address": "https://0.0.0.0/n",
        "a multicast address": "https://224.0.0.251/n",
        "a non-http scheme": "ftp://127.0.0.1/n",
        "plain http to an allowed network": "http://10.20.0.5/n",
        # a 64-character label cannot be encoded as a DNS name: it fails to resolve without a query leaving
        # this machine (which a made-up name would cause)
        "a name that does not resolve": "https://" + "x" * 64 + ".invalid/n",
    }
    for what, uri in forbidden.items():
        r = client.post(edev + "/sub", subscription_xml(derc, uri))
        assert r.status == 400 and r.text("reasonCode") is not None, (what, r.status, r.body)
    for encoding in (1, 2):  # only encoding 0 (application/sep+xml) is served
        r = client.post(edev + "/sub", subscription_xml(derc, "https://10.20.0.5/n", encoding=encoding))
        assert r.status == 400 and r.text("reasonCode") is not None, encoding
    assert admin("GET", "/api/v1/sep2/subscriptions") == before
    assert client.get(edev + "/sub?l=10").root.get("all") == "0"

    # a Subscription changed to a forbidden target keeps its old one
    receiver_uri = f"http://127.0.0.1:{free_port()}/n"
    r = client.post(edev + "/sub", subscription_xml(derc, receiver_uri))
    assert r.status == 201
    href = r.location
    for uri in (forbidden["the admin listener"], forbidden["a private address"]):
        r = client.put(href, subscription_xml(derc, uri))
        assert r.status == 400 and r.text("reasonCode") is not None, uri
    assert client.get(href).text("notificationURI") == receiver_uri
    assert client.delete(href).status == 204
    assert admin("GET", "/api/v1/sep2/subscriptions") == before


def test_an_allowed_network_is_accepted(server):
    admin = Admin(server)
    # no program: nothing will change under this subscription, so nothing is ever sent to the trusted address
    client, edev, _ = enrolled_device(server, admin, "targets-2")
    for uri in ("https://10.20.0.5/n", "https://10.20.255.1:8443/n", "https://[fd00:20::5]/n"):
        r = client.post(edev + "/sub", subscription_xml(edev, uri))
        assert r.status == 201, (uri, r.status, r.body)
        assert client.get(r.location).text("notificationURI") == uri
        assert client.delete(r.location).status == 204
    # the allowance covers those networks only
    r = client.post(edev + "/sub", subscription_xml(edev, "https://10.21.0.5/n"))
    assert r.status == 400


def failed_deliveries(server: LiveServer) -> list[dict]:
    _, rows = server.admin("GET", "/api/v1/deliveries?status=failed&channel=sep2-notification")
    return rows or []


def test_a_target_made_forbidden_in_the_store_is_dead_lettered_unsent(server):
    """Rows changed behind the server's back (as an older release or a restore could leave them): the check before
    each delivery refuses them. Had either been sent, its error would be the admin listener's answer (HTTP 401) or
    a connection timeout, not the refusal."""
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "targets-3", program="targets-prog-3")
    receiver = Receiver(free_port()).up()
    try:
        hrefs = {}
        for path in ("/good", "/admin", "/metadata"):
            r = client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url(path), limit=5))
            assert r.status == 201
            hrefs[path] = r.location
        rewritten = {
            "/admin": f"http://127.0.0.1:{admin_port(server)}/api/v1/programs",
            "/metadata": "https://169.254.169.254/latest/meta-data",
        }
        with sqlite3.connect(server.home / "dso.sqlite3", timeout=10) as db:
            for path, uri in rewritten.items():
                sub_id = int(hrefs[path].rsplit("/", 1)[1])
                db.execute("UPDATE sep2_subscription SET notification_uri = ? WHERE id = ?", (uri, sub_id))
        known = {row["id"] for row in failed_deliveries(server)}
        control(admin, "targets-prog-3", "rewritten")

        wait_until(lambda: receiver.bodies("/good"), what="the untouched subscription's notification")
        check_notification(receiver.bodies("/good")[0])

        def dead() -> list[dict]:
            return [row for row in failed_deliveries(server) if row["id"] not in known]

        wait_until(lambda: len(dead()) == 2, within=15, what="two dead letters")
        by_url = {row["url"]: row for row in dead()}
        assert set(by_url) == set(rewritten.values())
        admin_row = by_url[rewritten["/admin"]]
        assert admin_row["last_error"].startswith(REFUSED) and "own admin listener" in admin_row["last_error"]
        metadata_row = by_url[rewritten["/metadata"]]
        assert metadata_row["last_error"].startswith(REFUSED) and "link-local" in metadata_row["last_error"]
        for row in by_url.values():
            assert (
                row["attempts"] == 1 and row["last_status"] is None
            )  # given up at once, no answer ever came
        assert receiver.bodies("/admin") == [] and receiver.bodies("/metadata") == []
        for href in hrefs.values():
            assert client.delete(href).status == 204
    finally:
        receiver.down()


def test_a_target_the_configuration_no_longer_allows_is_dead_lettered_unsent(tmp_path):
    """Subscribed while plain http to loopback was allowed; the server restarts without that allowance; the next
    notification is a dead letter and the receiver hears nothing."""
    server = LiveServer(tmp_path / "dso", extra_env=dict(FAST_DELIVERY)).init().start()
    receiver = Receiver(free_port()).up()
    try:
        admin = Admin(server)
        client, edev, derp = enrolled_device(server, admin, "targets-4", program="targets-prog-4")
        r = client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url("/n")))
        assert r.status == 201
        control(admin, "targets-prog-4", "while allowed")
        wait_until(lambda: len(receiver.bodies("/n")) == 1, what="the notification while allowed")

        server.extra_env["DSO_DELIVERY__ALLOW_HTTP_LOOPBACK"] = "false"
        server.restart()
        control(admin, "targets-prog-4", "after the allowance went")
        wait_until(lambda: failed_deliveries(server), within=15, what="a dead letter")
        (row,) = failed_deliveries(server)
        assert row["url"] == receiver.url("/n") and row["attempts"] == 1
        assert row["last_error"].startswith(REFUSED) and "https only" in row["last_error"]
        assert len(receiver.bodies("/n")) == 1
        # and it is not tried again
        _, pending = server.admin("GET", "/api/v1/deliveries?status=pending&channel=sep2-notification")
        assert pending == []
        assert [xml.local_name(b) for b in receiver.bodies("/n")] == ["Notification"]
    finally:
        receiver.down()
        server.stop()
