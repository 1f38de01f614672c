#!/usr/bin/env python3
"""Control-history benchmark: what one DERControlList GET (``?l=50``) costs as a device's history grows.

    .venv/bin/python conformance/bench_control_history.py                 # SQLite, 0 / 1,000 / 10,000
    .venv/bin/python conformance/bench_control_history.py --pg            # then PostgreSQL (127.0.0.1:5432)
    .venv/bin/python conformance/bench_control_history.py --sizes 0,1000 --gets 100
    .venv/bin/python conformance/bench_control_history.py --uncached      # no kept representations

One device (its own certificate), one program assigned to it, 50 live controls (made through the admin API), then
completed controls added in bulk to the program's history (rows of the ``event`` table, kind "der", copied from a
live one and moved into the past) up to each size. At each size: ``--gets`` GETs of the DERControlList over
mutual TLS on one kept-alive connection (handshake not timed); prints the median ms per GET and the server
process's CPU per GET (utime+stime from /proc/PID/stat before and after; 1,000 GETs by default, so that the
10 ms clock tick weighs little). The server keeps the list's representation after the first GET (as it does in
service); ``--uncached`` turns that off, so that every GET is computed from the database. Each answer is checked (``all`` = 50,
``results`` = 50). Then shows that ended controls stay readable: one completed DERControl by its href answers 200,
and ``GET /api/v1/controls?program=..&offset=..`` lists the whole history (X-Total-Count = 50 + history).

Must show: the cost per GET stays within 20 % across the sizes. Loopback only; bounded by the sizes given.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "conformance"))
sys.path.insert(0, str(REPO / "tests"))

from bench_pages import PG_ADMIN_URL, Client, _pg, admin, copy_of, server_env  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from support import LiveServer  # noqa: E402

from server.sep2 import xml  # noqa: E402
from server.store import create_store  # noqa: E402
from server.store.models import Event  # noqa: E402

PAGE = 50
LIVE = 50
TOLERANCE = 0.20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def add_history(url: str, program_id: int, first: int, count: int) -> None:
    """``count`` more completed controls in the program's history, 15 minutes apart, from two days ago back."""
    store = create_store(url)
    try:
        async with store.sessions.begin() as session:
            control = await session.scalar(
                select(Event).where(Event.program_id == program_id).order_by(Event.id).limit(1)
            )
            assert control is not None, "the template control was not stored"
            rows = []
            for i in range(first, first + count):
                start = control.start - dt.timedelta(days=3, seconds=900 * i)
                rows.append(copy_of(control, start=start, end_at=start + dt.timedelta(seconds=600)))
            for i in range(0, len(rows), 5000):
                await session.execute(insert(Event), rows[i : i + 5000])
    finally:
        await store.close()


def schedule_controls(server: LiveServer, program_id: int, n: int) -> None:
    """``n`` DERControls of the program through the admin API, 15 minutes apart from tomorrow (all live)."""
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    for i in range(n):
        admin(
            server,
            "POST",
            "/api/v1/controls",
            {
                "program": program_id,
                "start": (start + dt.timedelta(seconds=900 * i)).isoformat(),
                "duration_s": 600,
                "base": {"opModExpLimW": 5000 + i},
            },
        )


def build(server: LiveServer) -> tuple[Client, str, int]:
    """The device, its program and 50 live controls; returns the device's connection, the DERControlList path
    and the program id."""
    cert = server.issue_device("device")
    admin(server, "PUT", f"/api/v1/sep2/end-devices/{cert['lfdi']}")
    program = admin(server, "POST", "/api/v1/programs", {"name": "history", "primacy": 1})
    admin(server, "POST", f"/api/v1/programs/{program['id']}/assign", {"lfdi": cert["lfdi"], "fsa": "bench"})
    schedule_controls(server, program["id"], LIVE)
    client = Client(server, cert)
    edev = client.get("/edev?l=1").find(xml.q("EndDevice")).get("href")
    fsa = client.get(f"{edev}/fsa?l=10").find(xml.q("FunctionSetAssignments"))
    derp_list = client.get(fsa.find(xml.q("DERProgramListLink")).get("href") + "?l=10")
    derp = derp_list.find(xml.q("DERProgram")).get("href")
    return client, f"{derp}/derc", program["id"]


def measure(client: Client, pid: int, path: str, gets: int) -> tuple[float, float]:
    """Median wall ms per GET and server CPU ms per GET over ``gets`` GETs (after one warm-up GET)."""
    client.get(path)
    samples = []
    cpu0 = cpu_s(pid)
    for _ in range(gets):
        t0 = time.perf_counter()
        root = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        if root.get("all") != str(LIVE) or root.get("results") != str(PAGE):
            raise RuntimeError(
                f"{path}: all={root.get('all')} results={root.get('results')}, expected {LIVE}"
            )
    return statistics.median(samples), (cpu_s(pid) - cpu0) * 1000 / gets


def audit(server: LiveServer, client: Client, derc: str, program_id: int, history: int) -> str:
    """Ended controls stay readable: one by its 2030.5 href, all of them through the admin API."""
    if history == 0:
        return "no history yet"
    request = urllib.request.Request(
        server.info["admin_url"] + f"/api/v1/controls?program={program_id}&offset=0&limit=1",
        headers={"Authorization": f"Bearer {server.info['admin_token']}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        total = int(response.headers["X-Total-Count"])
        import json

        oldest = json.loads(response.read())[0]
    if total != LIVE + history:
        raise RuntimeError(f"/api/v1/controls lists {total}, expected {LIVE + history}")
    status, data = server.admin("GET", f"/api/v1/controls?program={program_id}&offset={total - 1}&limit=1")
    assert status == 200 and len(data) == 1, (status, data)
    status, _, body = client.call("GET", f"{derc}/{oldest['id']}")
    if status != 200:
        raise RuntimeError(f"GET {derc}/{oldest['id']} (completed) -> {status}: {body[:200]!r}")
    return f"completed DERControl {derc}/{oldest['id']} -> 200; /api/v1/controls lists {total:,}"


def run(
    backend: str, url: str, sizes: list[int], gets: int, workdir: Path, kept: bool = True
) -> list[tuple[int, float, float]]:
    env = server_env()
    if not kept:  # every GET computed from the database, as the first one after a change is
        env["DSO_DATABASE__CACHE_ENTRIES"] = "0"
    server = LiveServer(workdir / backend, database_url=url, extra_env=env)
    server.init().start(timeout=60)
    out = []
    try:
        client, derc, program_id = build(server)
        assert server.proc is not None
        done = 0
        for n in sizes:
            if n > done:
                asyncio.run(add_history(server.info["database"], program_id, done, n - done))
                done = n
            ms, cpu = measure(client, server.proc.pid, f"{derc}?l={PAGE}", gets)
            out.append((n, ms, cpu))
            print(
                f"  {backend:<10} history {n:>7,}: {ms:7.2f} ms per GET, {cpu:6.2f} ms server CPU per GET;  "
                + audit(server, client, derc, program_id, n),
                flush=True,
            )
        client.close()
        return out
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0,1000,10000", help="completed controls in the history, ascending")
    ap.add_argument("--gets", type=int, default=1000, help="GETs measured per size")
    ap.add_argument(
        "--uncached",
        action="store_true",
        help="the server keeps no representation: every GET reads the database (the cost after each change)",
    )
    ap.add_argument("--pg", action="store_true", help="also run on PostgreSQL at 127.0.0.1:5432")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < 0 or sizes[-1] > 100_000 or not 10 <= args.gets <= 10_000:
        ap.error("sizes must be 0..100000 and gets 10..10000")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="dso-bench-history-") as tmp:
        for backend in ["sqlite"] + (["postgresql"] if args.pg else []):
            if backend == "sqlite":
                rows = run(backend, "", sizes, args.gets, Path(tmp), not args.uncached)
            else:
                name = f"dso_bench_history_{uuid.uuid4().hex[:8]}"
                asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
                try:
                    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
                    rows = run(backend, url, sizes, args.gets, Path(tmp), not args.uncached)
                finally:
                    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for label, col in (("wall ms", 1), ("server CPU ms", 2)):
                values = [r[col] for r in rows]
                spread = max(values) / min(values) - 1 if min(values) > 0 else float("inf")
                ok = spread <= TOLERANCE
                verdicts.append(ok)
                print(
                    f"  {backend}: {label} per GET "
                    + " / ".join(f"{v:.2f}" for v in values)
                    + f" at {'/'.join(f'{n:,}' for n in sizes)}: spread {spread:.0%} "
                    + ("(within 20 %)" if ok else "(NOT within 20 %)"),
                    flush=True,
                )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
