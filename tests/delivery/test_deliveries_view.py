"""`dso deliveries` through a real server: every channel in one view (a 2030.5 notification waiting for an
unreachable subscriber, OpenADR messages a polling VEN fetched), pages that continue with --before, dead letters
requeued, bad filters refused with 400."""

from __future__ import annotations

import http.server
import threading
from typing import Any

from support import dso_json, free_port
from support.openadr import RawVen, SchemaWatch
from support.sep2_live import Admin, enrolled_device, module_server, subscription_xml, wait_until

server = module_server("deliveries")


def deliveries(server, *args: str):
    return dso_json("deliveries", *args, "-c", server.config, "--json")


def test_every_channel_in_one_paged_view(server):
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "dev-view", program="feeder-view")
    nobody = f"http://127.0.0.1:{free_port()}/n"  # refused: the notifications stay pending
    assert client.post(edev + "/sub", subscription_xml(derp + "/derc", nobody)).status == 201
    for i in range(3):
        admin(
            "POST",
            "/api/v1/controls",
            {"program": "feeder-view", "start": "now", "duration_s": 60 + i, "base": {"opModExpLimW": 100}},
        )
    watch = SchemaWatch()
    ven = RawVen(server, "ven-view", watch)
    ven.register()
    kinds = []
    while (kind := ven.poll()[0]) != "oadrResponse":
        kinds.append(kind)
    assert kinds == ["oadrRegisterReport"]  # one message per poll, then nothing

    channels = {c["channel"]: c for c in deliveries(server, "channels")}
    assert channels["openadr"]["delivered"] == 1 and channels["openadr"]["pending"] == 0
    assert channels["sep2-notification"]["pending"] == 3 and channels["sep2-notification"]["delivered"] == 0
    assert channels["sep2-notification"]["oldest_pending_s"] >= 0

    first = deliveries(server, "list", "--limit", "2")
    assert len(first) == 2
    rest = deliveries(server, "list", "--limit", "2", "--before", str(first[-1]["id"]))
    ids = [r["id"] for r in first + rest]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    polled = deliveries(server, "list", "--channel", "openadr")
    assert [(r["kind"], r["status"], r["via"]) for r in polled] == [("register_report", "delivered", "poll")]
    wait_until(
        lambda: deliveries(server, "list", "--status", "pending")[-1]["attempts"] >= 1, 20, "the oldest tried"
    )
    pending = deliveries(server, "list", "--status", "pending")
    # per-subscription order: only the oldest is being retried, the two behind it were never sent
    assert [r["attempts"] for r in pending[:-1]] == [0, 0] and pending[-1]["last_error"]
    watch.assert_clean()


class Answering:
    """A receiver on loopback answering every POST with ``status``; counts what it got."""

    def __init__(self) -> None:
        self.status = 404
        self.got = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.got += 1
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dead_letter_is_requeued_and_bad_filters_are_refused(server):
    admin = Admin(server)
    client, edev, derp = enrolled_device(server, admin, "dev-dead", program="feeder-dead")
    receiver = Answering()
    try:
        r = client.post(
            edev + "/sub", subscription_xml(derp + "/derc", f"http://127.0.0.1:{receiver.port}/n")
        )
        assert r.status == 201
        key = "sep2-sub:" + r.location.rsplit("/", 1)[1]
        admin(
            "POST",
            "/api/v1/controls",
            {"program": "feeder-dead", "start": "now", "duration_s": 60, "base": {"opModExpLimW": 100}},
        )
        wait_until(
            lambda: deliveries(server, "list", "--key", key, "--status", "failed"), 20, "a dead letter"
        )
        dead = deliveries(server, "list", "--key", key)[0]
        assert dead["status"] == "failed" and dead["last_status"] == 404 and receiver.got == 1
        receiver.status = 200  # the subscriber was fixed
        status, body = server.admin("POST", f"/api/v1/deliveries/{dead['id']}/requeue")
        assert status == 200 and body["status"] == "pending" and body["attempts"] == 0
        wait_until(
            lambda: deliveries(server, "list", "--key", key)[0]["status"] == "delivered", 20, "requeued"
        )
        status, _ = server.admin("POST", f"/api/v1/deliveries/{dead['id']}/requeue")
        assert status == 409  # only dead letters are requeued
    finally:
        receiver.close()
    status, _ = server.admin("POST", "/api/v1/deliveries/999999/requeue")
    assert status == 404
    for query in ("status=lost", "before=x", "limit=0", "limit=5000"):
        status, body = server.admin("GET", f"/api/v1/deliveries?{query}")
        assert status == 400, query
