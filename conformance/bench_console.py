#!/usr/bin/env python3
"""Console page benchmark: milliseconds and server CPU per operator-console page on a fleet of N 2030.5 devices.

    .venv/bin/python conformance/bench_console.py                 # SQLite, N = 10,000
    .venv/bin/python conformance/bench_console.py --pg            # SQLite, then PostgreSQL (127.0.0.1:5432)
    .venv/bin/python conformance/bench_console.py --devices 1000 --repeat 5

A fresh data directory (``dso init``) and a real ``dso serve`` on loopback; N EndDevices (half heard within their
window, half not), each with a FunctionSetAssignments holding one DER program with a control in force, are bulk
inserted into its store. Each page is fetched ``--repeat`` times over one kept-alive HTTP connection with the
bootstrap credential; printed: the median wall time and the server process's CPU time per request (read from
/proc, so the load other processes put on the machine inflates only the wall time). Every answer is checked
(status 200, the page holds 50 rows). Loopback only; bounded by the sizes given.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sqlalchemy import insert  # noqa: E402
from support import LiveServer  # noqa: E402

from server import pki  # noqa: E402
from server.store import create_store  # noqa: E402
from server.store.models import EndDevice, Event, Program, Sep2Fsa, Sep2FsaProgram  # noqa: E402

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def fill(url: str, n: int) -> None:
    store = create_store(url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with store.sessions.begin() as session:
            program = Program(kind="der", name="bench-feeder", primacy=1, attrs={})
            session.add(program)
            await session.flush()
            session.add(
                Event(
                    program_id=program.id,
                    kind="der",
                    start=now - dt.timedelta(minutes=5),
                    duration_s=7200,
                    end_at=now + dt.timedelta(seconds=7195),
                    payload={"base": {"opModExpLimW": 5000}},
                )
            )
            rows = []
            for i in range(n):
                lfdi = f"{i + 1:040X}"
                heard = now - dt.timedelta(seconds=30 if i % 2 else 86_400)
                rows.append(
                    {
                        "lfdi": lfdi,
                        "sfdi": pki.sfdi_from_lfdi(lfdi),
                        "name": f"dev-{i:05d}",
                        "enabled": True,
                        "registered_by": "out-of-band",
                        "device_category": "",
                        "created_at": now,
                        "changed_at": now,
                        "last_contact_at": heard,
                    }
                )
            for start in range(0, n, 2000):
                await session.execute(insert(EndDevice), rows[start : start + 2000])
            ids = [
                r
                for (r,) in (
                    await session.execute(EndDevice.__table__.select().with_only_columns(EndDevice.id))
                )
            ]
            fsas = [{"end_device_id": i, "title": "bench", "created_at": now} for i in ids]
            for start in range(0, n, 2000):
                await session.execute(insert(Sep2Fsa), fsas[start : start + 2000])
            fsa_ids = [
                r
                for (r,) in (await session.execute(Sep2Fsa.__table__.select().with_only_columns(Sep2Fsa.id)))
            ]
            links = [{"fsa_id": f, "program_id": program.id} for f in fsa_ids]
            for start in range(0, n, 2000):
                await session.execute(insert(Sep2FsaProgram), links[start : start + 2000])
    finally:
        await store.close()


def measure(server: LiveServer, n: int, repeat: int) -> None:
    host, port = server.info["admin_url"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    auth = {"Authorization": f"Bearer {server.info['admin_token']}"}
    last = (n - 1) // 50 * 50
    pages = [
        ("fleet, first page", "/console/fleet"),
        ("fleet, last page", f"/console/fleet?offset={last}"),
        ("fleet, online only", "/console/fleet?state=online"),
        ("fleet, offline, last page", f"/console/fleet?state=offline&offset={(n // 2 - 1) // 50 * 50}"),
        ("fleet, search by name", "/console/fleet?q=dev-0777"),
        ("events", "/console/events"),
        ("alarms", "/console/alarms"),
        ("metrics", "/metrics"),
    ]
    assert server.proc is not None
    for label, path in pages:
        walls = []
        before = cpu_s(server.proc.pid)
        for _ in range(repeat):
            t = time.perf_counter()
            conn.request("GET", path, headers=auth)
            answer = conn.getresponse()
            body = answer.read()
            walls.append(time.perf_counter() - t)
            assert answer.status == 200, (path, answer.status, body[:200])
            if path.startswith("/console/fleet") and "q=" not in path:
                rows = body.count(b'<tr class="online">') + body.count(b'<tr class="offline">')
                assert rows == 50, (path, rows)
        cpu = (cpu_s(server.proc.pid) - before) / repeat
        print(f"  {label:30s} {statistics.median(walls) * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms server CPU")
    conn.close()


def run(backend: str, url: str, n: int, repeat: int, home: Path) -> None:
    server = LiveServer(home, database_url=url, extra_env={"DSO_ORCHESTRATION__ENABLED": "false"}).init()
    server.start()
    try:
        db_url = url or f"sqlite+aiosqlite:///{Path(server.config).parent / 'dso.sqlite3'}"
        t = time.perf_counter()
        asyncio.run(fill(db_url, n))
        print(f"{backend}: {n} devices inserted in {time.perf_counter() - t:.1f} s")
        measure(server, n, repeat)
    finally:
        server.stop()


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--pg", action="store_true", help="also on PostgreSQL at 127.0.0.1:5432")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", "", args.devices, args.repeat, Path(tmp) / "sqlite")
        if args.pg:
            name = f"dso_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
            try:
                url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
                run("postgresql", url, args.devices, args.repeat, Path(tmp) / "pg")
            finally:
                asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
