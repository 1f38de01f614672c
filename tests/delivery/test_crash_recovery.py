"""A server killed with SIGKILL while a slow subscriber holds a notification: the restarted server releases the
dead process's claims at start-up (its process id is gone; the lease of 300 s and the staleness of 120 s set here
would hold them far longer) and the held notifications arrive within seconds, in order; what the receiver acknowledged before the kill is not sent again.
On SQLite and PostgreSQL, through real server processes."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any

from lxml import etree
from support import LiveServer, free_port
from support.sep2_live import (
    FAST_DELIVERY,
    Admin,
    check_notification,
    enrolled_device,
    subscription_xml,
    wait_until,
)

CONTROLS = 5


class SlowReceiver:
    """A notification receiver that takes ``delay`` seconds before it answers 200. Records (arrival time, the
    number of controls the notified DERControlList holds) per POST, and which of them it answered."""

    def __init__(self, port: int, delay: float) -> None:
        self.port = port
        self.delay = delay
        self.arrived: list[tuple[float, int]] = []
        self.answered: list[int] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                resource = check_notification(etree.fromstring(body))
                n = int(resource.get("all"))
                with outer.lock:
                    outer.arrived.append((time.monotonic(), n))
                time.sleep(outer.delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    return
                with outer.lock:
                    outer.answered.append(n)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def counts(self) -> list[int]:
        with self.lock:
            return [n for _, n in self.arrived]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_held_notifications_are_released_after_a_kill(tmp_path, database_url):
    env = {
        **FAST_DELIVERY,
        "DSO_ORCHESTRATION__ENABLED": "false",
        "DSO_DELIVERY__TIMEOUT_S": "20",
        "DSO_DELIVERY__HEARTBEAT_S": "1",
        "DSO_DELIVERY__LEASE_S": "300",
        "DSO_DELIVERY__STALE_AFTER_S": "120",
    }
    server = LiveServer(tmp_path / "dso", database_url=database_url, extra_env=env).init().start(timeout=120)
    receiver = SlowReceiver(free_port(), delay=3.0)
    try:
        admin = Admin(server)
        client, edev, derp = enrolled_device(server, admin, "dev-crash", program="feeder-crash")
        r = client.post(edev + "/sub", subscription_xml(derp + "/derc", receiver.url("/n"), limit=10))
        assert r.status == 201
        for i in range(CONTROLS):
            body = {
                "program": "feeder-crash",
                "start": "now",
                "duration_s": 3600 + i,
                "description": f"C{i}",
                "base": {"opModExpLimW": 1000 + i},
            }
            admin("POST", "/api/v1/controls", body)
        # the first notification was answered after 3 s; the second is being held by the slow receiver
        wait_until(lambda: len(receiver.counts()) >= 2, 20, "second notification in flight")
        assert receiver.counts() == [1, 2]
        server.proc.kill()  # SIGKILL: no shutdown code runs, the claim on notification 2 stays in the database
        server.proc.wait()
        server.proc = None
        time.sleep(receiver.delay + 0.5)  # the receiver answers into a dead connection
        assert receiver.answered == [1, 2]  # it did answer 2, but nobody was there to record it
        receiver.delay = 0.2

        server.start(timeout=120)  # a loaded machine starts slowly; the clock below starts once it is up
        restarted = time.monotonic()
        wait_until(lambda: receiver.counts()[-1:] == [CONTROLS], 15, "every notification after the restart")
        took = receiver.arrived[-1][0] - restarted
        counts = receiver.counts()
        # in order; 1 (answered and recorded) once; 2 (answered, not recorded) at most twice; 3..5 once each
        assert [n for i, n in enumerate(counts) if i == 0 or counts[i - 1] != n] == list(
            range(1, CONTROLS + 1)
        )
        assert counts.count(1) == 1 and counts.count(2) in (1, 2)
        assert all(counts.count(n) == 1 for n in range(3, CONTROLS + 1)), counts
        # far below the lease and the staleness: the start-up sweep released the claim
        assert took < 10, f"held notifications arrived {took:.1f} s after the restart"
        wait_until(
            lambda: not admin("GET", "/api/v1/deliveries?status=pending&channel=sep2-notification"),
            10,
            "no notification pending",
        )
        delivered = admin("GET", "/api/v1/deliveries?status=delivered&channel=sep2-notification")
        assert len(delivered) == CONTROLS
        log = server.log()
        assert "released 1 claimed message(s) of 1 dead delivery process(es)" in log
        assert "database is locked" not in log and "Traceback" not in log
        backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
        print(f"\n[{backend}] held notifications delivered {took:.2f} s after the restart")
    finally:
        receiver.close()
        server.stop()
