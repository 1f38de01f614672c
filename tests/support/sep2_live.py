"""Live-server helpers of the 2030.5 tests: a webhook receiver that can fail and vanish, a live server per test
module, waits, Subscription bodies, and a device enrolled with a program."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from server.sep2 import xml
from support import LiveServer
from support.sep2 import SEP, Admin, Sep2Client, edev_xml  # noqa: F401 - re-exported for the tests

FAST_DELIVERY = {
    "DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true",
    "DSO_DELIVERY__INITIAL_BACKOFF_S": "1",
    "DSO_DELIVERY__MAX_BACKOFF_S": "2",
    "DSO_DELIVERY__POLL_INTERVAL_MS": "100",
    "DSO_DELIVERY__TIMEOUT_S": "3",
    "DSO_SEP2__PEN": "12345",
    # these tests read every resource around every change; request budgets have their own test
    "DSO_RATELIMIT__DEVICE_RATE": "10000",
    "DSO_RATELIMIT__DEVICE_BURST": "100000",
    "DSO_RATELIMIT__AGGREGATOR_RATE": "10000",
    "DSO_RATELIMIT__AGGREGATOR_BURST": "100000",
}


def module_server(name: str):
    """A module-scoped ``server`` fixture: one live server with fast notification delivery (``FAST_DELIVERY``)
    for the tests of a module, e.g. ``server = module_server("subs")``; ``name`` names its temporary folder."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory) -> Iterator[LiveServer]:
        s = LiveServer(tmp_path_factory.mktemp(name) / "dso", extra_env=FAST_DELIVERY).init().start()
        try:
            yield s
        finally:
            s.stop()

    return server


class Receiver:
    """A plain-HTTP notification receiver on loopback. ``mode``: "ok" records and answers 200, "fail" answers
    503 (and counts it); ``down()`` closes the socket so connections are refused; ``up()`` reopens the port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "ok"
        self.received: list[tuple[str, bytes]] = []
        self.failed = 0
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None

    def up(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if outer.mode == "fail":
                        outer.failed += 1
                        code = 503
                    else:
                        outer.received.append((self.path, body))
                        code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[etree._Element]:
        with self.lock:
            return [etree.fromstring(b) for p, b in self.received if p == path]


def wait_until(predicate, within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        time.sleep(0.1)


def valid_notification(root: etree._Element, storage: bool = False) -> etree._Element:
    """A received Notification must be schema-valid 2030.5 (strict; for a CSIP-AUS 1.3 storage subscriber,
    ``storage``, against the storage schema); returns it."""
    schema = xml.schema(strict=True, storage=storage)
    assert schema.validate(root), f"schema-invalid notification: {schema.error_log.last_error}"
    assert xml.local_name(root) == "Notification"
    return root


def check_notification(root: etree._Element, storage: bool = False) -> etree._Element:
    """A received Notification must be schema-valid 2030.5 and carry a resource; returns its Resource element."""
    resource = xml.find(valid_notification(root, storage), "Resource")
    assert resource is not None
    return resource


def subscription_xml(resource: str, uri: str, limit: int = 10, encoding: int = 0) -> str:
    return (
        f'<Subscription xmlns="{xml.NS}"><subscribedResource>{resource}</subscribedResource>'
        f"<encoding>{encoding}</encoding><level>+S1</level><limit>{limit}</limit>"
        f"<notificationURI>{uri}</notificationURI></Subscription>"
    )


def enrolled_device(
    server, admin: Admin, name: str, program: str | None = None, primacy: int = 5
) -> tuple[Sep2Client, str, str | None]:
    """A device enrolled by staff (optionally with a program assigned); returns (client, edev href, derp href)."""
    client = Sep2Client(server, server.issue_device(name))
    made = admin("PUT", f"/api/v1/sep2/end-devices/{client.lfdi}", {"pin": 111115})
    edev = made["href"]
    derp = None
    if program:
        admin("POST", "/api/v1/programs", {"name": program, "primacy": primacy})
        admin("POST", f"/api/v1/programs/{program}/assign", {"lfdi": client.lfdi})
        fsa = client.get(edev + "/fsa?l=10").all("FunctionSetAssignments")[0].get("href")
        derp = client.get(fsa + "/derp?l=10").all("DERProgram")[0].get("href")
    return client, edev, derp
