"""Per-client request budgets under a flood: a client sending 20x its budget gets 429 + Retry-After + an Error
body, the other clients' requests keep succeeding, and the server's memory stays bounded (its resident set across
a flood, and the per-client state whatever the number of clients). The latency figures (calm clients' p99 during a
flood) are measured by ``conformance/bench_flood.py``, not asserted here."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support import LiveServer
from support.sep2 import Admin, Sep2Client

from server.config import RateLimitSettings
from server.sep2.ratelimit import RateLimiter

RATE, BURST = 5, 10
FLOOD = BURST * 20  # requests the flooder sends at once: 20x what its bucket holds
RSS_GROWTH_LIMIT_KIB = 32 * 1024


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    server = LiveServer(
        tmp_path_factory.mktemp("rl") / "dso",
        extra_env={"DSO_RATELIMIT__DEVICE_RATE": str(RATE), "DSO_RATELIMIT__DEVICE_BURST": str(BURST)},
    )
    server.init().start()
    try:
        yield server
    finally:
        server.stop()


def rss_kib(server: LiveServer) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(client: Sep2Client, n: int, threads: int = 4) -> tuple[list[int], list[str]]:
    """``n`` GETs as fast as ``threads`` connections allow, ignoring Retry-After."""
    statuses: list[int] = []
    retry_after: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(n // threads):
            r = client.get("/dcap")  # check_body validates the 429's Error body
            with lock:
                statuses.append(r.status)
                if r.status == 429:
                    retry_after.append(r.headers.get("Retry-After", ""))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return statuses, retry_after


def test_flooding_client_is_limited_others_are_served_memory_bounded(limited_server):
    flooder = Sep2Client(limited_server, limited_server.issue_device("flood"))
    calm = [Sep2Client(limited_server, limited_server.issue_device(f"calm{n}")) for n in range(3)]
    for c in calm:
        assert c.get("/dcap").status == 200

    flood(flooder, FLOOD)  # warms the server (schemas, caches, connections) before memory is measured
    before = rss_kib(limited_server)
    calm_statuses: list[int] = []
    stop = threading.Event()

    def poll(c: Sep2Client) -> None:
        while not stop.is_set():
            calm_statuses.append(c.get("/dcap").status)
            stop.wait(1 / RATE)  # within its own budget

    pollers = [threading.Thread(target=poll, args=(c,)) for c in calm]
    for p in pollers:
        p.start()
    try:
        statuses, retry_after = flood(flooder, FLOOD)
    finally:
        stop.set()
        for p in pollers:
            p.join(30)
    after = rss_kib(limited_server)

    assert len(statuses) == FLOOD
    # the bucket holds BURST and refills at RATE: far fewer than half of the flood can be served
    assert statuses.count(429) > FLOOD // 2, statuses.count(429)
    assert set(statuses) <= {200, 429}
    assert len(retry_after) == statuses.count(429)
    assert all(v.isdigit() and int(v) >= 1 for v in retry_after), set(retry_after)
    assert calm_statuses and set(calm_statuses) == {200}, calm_statuses
    assert after - before < RSS_GROWTH_LIMIT_KIB, (before, after)

    seen = Admin(limited_server)("GET", "/api/v1/rate-limits")
    limited = {c["lfdi"]: c for c in seen["limited"]}
    assert flooder.lfdi in limited and not any(c.lfdi in limited for c in calm)
    assert limited[flooder.lfdi]["rejected"] >= statuses.count(429)
    # the server is still up and serves the flooder again once its bucket refilled
    assert limited_server.proc is not None and limited_server.proc.poll() is None


def test_per_client_state_is_bounded_whatever_the_number_of_clients():
    limiter = RateLimiter(RateLimitSettings(device_rate=RATE, device_burst=BURST, max_clients=100))
    for n in range(10_000):
        limiter.take(f"{n:040X}", "device", now=1000.0)
    assert len(limiter.buckets) == 100
    # a client dropped from memory starts again with a full bucket (never wrongly refused)
    assert limiter.take(f"{0:040X}", "device", now=1000.0) == 0.0
    # a flooding client among them is still limited
    waits = [limiter.take("F" * 40, "device", now=1000.0) for _ in range(BURST * 20)]
    assert sum(1 for w in waits if w > 0) == BURST * 20 - BURST
    assert len(limiter.buckets) == 100
