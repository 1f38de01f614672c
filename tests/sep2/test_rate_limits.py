"""Per-client request budgets: a client flooding at 20x its budget gets 429 + Retry-After + an Error body,
while another client's requests keep succeeding at about the latency they had before the flood."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from support import LiveServer
from support.sep2 import Admin, Sep2Client

BURST = 10


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    server = LiveServer(
        tmp_path_factory.mktemp("rl") / "dso",
        extra_env={"DSO_RATELIMIT__DEVICE_RATE": "5", "DSO_RATELIMIT__DEVICE_BURST": str(BURST)},
    )
    server.init().start()
    try:
        yield server
    finally:
        server.stop()


def _timed_gets(client: Sep2Client, n: int) -> list[tuple[int, float]]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.get("/dcap")
        out.append((r.status, time.perf_counter() - start))
        time.sleep(0.25)  # within its own budget (5/s)
    return out


def test_flooding_client_is_limited_and_others_are_not(limited_server):
    flooder = Sep2Client(limited_server, limited_server.issue_device("flood"))
    calm = Sep2Client(limited_server, limited_server.issue_device("calm"))
    baseline = _timed_gets(calm, 8)
    assert all(s == 200 for s, _ in baseline)

    statuses: list[int] = []
    retry_after: list[str] = []

    def flood() -> None:
        for _ in range(BURST * 20 // 4):
            r = flooder.get("/dcap")  # check_body validates the 429's Error body
            statuses.append(r.status)
            if r.status == 429:
                retry_after.append(r.headers.get("Retry-After", ""))

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    during = _timed_gets(calm, 8)
    for t in threads:
        t.join()

    assert len(statuses) == BURST * 20
    assert statuses.count(429) > BURST * 10, statuses.count(429)
    assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)
    assert all(s == 200 for s, _ in during), during
    base = statistics.median(t for _, t in baseline)
    assert statistics.median(t for _, t in during) < base * 5 + 0.05, (baseline, during)

    seen = Admin(limited_server)("GET", "/api/v1/rate-limits")
    limited = {c["lfdi"]: c for c in seen["limited"]}
    assert flooder.lfdi in limited and calm.lfdi not in limited
    assert limited[flooder.lfdi]["rejected"] == statuses.count(429)
