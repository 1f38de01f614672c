#!/usr/bin/env python3
"""Telemetry store benchmark: ingest rate and range-read rate on SQLite and PostgreSQL (bounded in time).

    .venv/bin/python conformance/bench_telemetry.py                       # 1,000,000 rows, both backends
    .venv/bin/python conformance/bench_telemetry.py --rows 200000 --backends sqlite
    .venv/bin/python conformance/bench_telemetry.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres

The data set is what 2030.5 metering mirrors produce: ``--devices`` devices, each with a 5-minute realPower series,
inserted through ``server.core.telemetry.add`` (the path MirrorUsagePoint readings take) in batches of
``--batch`` rows, one transaction per batch. Range reads are what the forecaster asks: one device's series over a
random one-day window (288 rows), through ``server.core.telemetry.query``. Each backend stops inserting when
``--budget-s`` is spent and reports the rows it actually wrote. SQLite uses a temporary file; PostgreSQL a
temporary database that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.core import telemetry  # noqa: E402
from server.store import create_store  # noqa: E402
from server.store.migrate import upgrade  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=5)


def lfdi(i: int) -> str:
    return f"{i:040X}"


async def run_backend(url: str, rows: int, devices: int, batch: int, budget_s: float, reads: int) -> dict:
    store = create_store(url)
    await upgrade(store)
    per_device = max(1, rows // devices)
    written = 0
    started = time.perf_counter()
    try:
        # time-major order: each batch holds consecutive instants of many devices, as live ingest does
        buffer: list[telemetry.Reading] = []
        for k in range(per_device):
            ts = T0 + STEP * k
            for d in range(devices):
                buffer.append(
                    telemetry.Reading(
                        source_kind="device",
                        source_id=lfdi(d),
                        measurement="realPower",
                        ts=ts,
                        value=1000.0 + (d * 7 + k) % 500,
                        unit="W",
                        resource=f"{d:032X}",
                        reading_type="q2/f1/p0/a12",
                        duration_s=300.0,
                    )
                )
                if len(buffer) >= batch:
                    async with store.sessions.begin() as session:
                        written += await telemetry.add(session, buffer)
                    buffer = []
            if time.perf_counter() - started > budget_s:
                break
        if buffer:
            async with store.sessions.begin() as session:
                written += await telemetry.add(session, buffer)
        insert_s = time.perf_counter() - started
        span = max(1, written // devices)
        rng = random.Random(7)
        got = 0
        started = time.perf_counter()
        async with store.sessions() as session:
            for _ in range(reads):
                d = rng.randrange(devices)
                first = rng.randrange(max(1, span - 288))
                since = T0 + STEP * first
                rows_ = await telemetry.query(
                    session,
                    source_kind="device",
                    source_id=lfdi(d),
                    measurement="realPower",
                    since=since,
                    until=since + dt.timedelta(days=1),
                    limit=10_000,
                )
                got += len(rows_)
        read_s = time.perf_counter() - started
    finally:
        await store.close()
    return {
        "rows": written,
        "insert_s": insert_s,
        "insert_rate": written / insert_s,
        "reads": reads,
        "read_s": read_s,
        "reads_per_s": reads / read_s,
        "read_rows_per_s": got / read_s,
        "rows_per_read": got / max(1, reads),
    }


async def pg(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=500)
    ap.add_argument("--budget-s", type=float, default=120.0, help="insert time limit per backend")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
                results[backend] = await run_backend(
                    url, args.rows, args.devices, args.batch, args.budget_s, args.reads
                )
        elif backend == "postgresql":
            name = f"dso_bench_{uuid.uuid4().hex[:8]}"
            try:
                await pg(args.pg_url, f'CREATE DATABASE "{name}"')
            except Exception as exc:  # noqa: BLE001 - report and go on with the other backend
                print(f"postgresql: skipped ({type(exc).__name__}: {exc})")
                continue
            try:
                url = args.pg_url.rsplit("/", 1)[0] + "/" + name
                results[backend] = await run_backend(
                    url, args.rows, args.devices, args.batch, args.budget_s, args.reads
                )
            finally:
                await pg(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"unknown backend {backend}")
            return 2
        r = results[backend]
        print(
            f"{backend:10} insert {r['rows']:>9,} rows in {r['insert_s']:6.1f} s = {r['insert_rate']:>9,.0f} rows/s"
            f" | range reads: {r['reads']} x 1-day window ({r['rows_per_read']:.0f} rows) in {r['read_s']:5.2f} s"
            f" = {r['reads_per_s']:,.0f} reads/s, {r['read_rows_per_s']:,.0f} rows/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
