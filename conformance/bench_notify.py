#!/usr/bin/env python3
"""Notification fan-out benchmark: one DER control for a program assigned to N devices, each subscribed to its
DERControlList, delivered to a webhook on loopback.

    .venv/bin/python conformance/bench_notify.py                      # 10,000 subscribers, SQLite
    .venv/bin/python conformance/bench_notify.py --subscribers 2000 --backend postgresql

Prints the time to render and queue every notification (in the control's transaction, as the admin API does) and
the time until the receiver has all of them (the outbox worker's real delivery path: claims, POSTs, records).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from server import pki  # noqa: E402
from server.config import DeliverySettings, Settings  # noqa: E402
from server.core import changes, events, programs  # noqa: E402
from server.delivery.channels import Channel, post_stored_body  # noqa: E402
from server.delivery.worker import DeliveryWorker  # noqa: E402
from server.sep2 import delivery as sep2_delivery  # noqa: E402
from server.sep2 import subscriptions  # noqa: E402,F401 - registers the 2030.5 notification listener
from server.store import create_store  # noqa: E402
from server.store.migrate import upgrade  # noqa: E402
from server.store.models import (  # noqa: E402
    DeliveryMessage,
    EndDevice,
    Sep2Fsa,
    Sep2FsaProgram,
    Sep2Subscription,
)
from server.store.types import utcnow  # noqa: E402


async def run(url: str, n: int, port: int) -> None:
    store = create_store(url)
    await upgrade(store)
    received = 0
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        if received >= n:
            done.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/n/{i}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()

    t0 = time.perf_counter()
    async with store.sessions.begin() as session:
        program = await programs.create_program(session, "fanout", 1)
        now = utcnow()
        await session.execute(
            insert(EndDevice),
            [
                {
                    "lfdi": f"{i:040X}",
                    "sfdi": pki.sfdi_from_lfdi(f"{i:040X}"),
                    "name": "",
                    "device_category": "",
                    "registered_by": "bench",
                    "enabled": True,
                    "created_at": now,
                    "changed_at": now,
                }
                for i in range(1, n + 1)
            ],
        )
        ids = list(await session.scalars(select(EndDevice.id).order_by(EndDevice.id)))
        await session.execute(
            insert(Sep2Fsa), [{"end_device_id": d, "title": "default", "created_at": now} for d in ids]
        )
        fsas = list(await session.execute(select(Sep2Fsa.id, Sep2Fsa.end_device_id)))
        await session.execute(
            insert(Sep2FsaProgram), [{"fsa_id": f, "program_id": program.id} for f, _ in fsas]
        )
        await session.execute(
            insert(Sep2Subscription),
            [
                {
                    "end_device_id": d,
                    "owner_lfdi": f"{d:040X}",
                    "resource": f"/edev/{d}/derp/{program.id}/derc",
                    "kind": "derc-list",
                    "program_id": program.id,
                    "target_id": None,
                    "subject_device_id": d,
                    "notification_uri": f"http://127.0.0.1:{port}/n/{d}",
                    "limit": 10,
                    "level": "+S1",
                    "encoding": 0,
                    "condition": None,
                    "created_at": now,
                    "changed_at": now,
                    "notifications": 0,
                }
                for d in ids
            ],
        )
    print(f"setup: {n} devices, FSAs, subscriptions in {time.perf_counter() - t0:.1f} s", flush=True)

    settings = Settings()
    settings.delivery = DeliverySettings(allow_http_loopback=True, poll_interval_ms=50, timeout_s=10)
    worker = DeliveryWorker(store, settings.delivery)
    # plain http on loopback: no TLS client set-up needed
    worker.add_channel(Channel(sep2_delivery.CHANNEL, post_stored_body))
    await worker.start()
    changes.attach(store.sessions, settings, worker.wake)  # as the server does when it opens its runtime
    try:
        t0 = time.perf_counter()
        async with store.sessions.begin() as session:
            program = await programs.get_program(session, "fanout")
            await events.create(
                session,
                program,
                events.NewEvent(start=utcnow(), duration_s=3600, payload={"base": {"opModExpLimW": 5000}}),
            )
        # the control's commit rendered and queued the notifications (core's change record)
        t_queue = time.perf_counter() - t0
        async with store.sessions() as session:
            queued = await session.scalar(select(func.count()).select_from(DeliveryMessage))
        print(
            f"rendered and queued {queued} notifications in the control's transaction: {t_queue:.2f} s",
            flush=True,
        )
        await asyncio.wait_for(done.wait(), 600)
        total = time.perf_counter() - t0
        print(
            f"all {received} delivered to the loopback webhook: {total:.2f} s after the control was created "
            f"({received / total:,.0f} notifications/s)",
            flush=True,
        )
    finally:
        await worker.stop()
        await runner.cleanup()
        await store.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    port = args.port or __import__("socket").create_server(("127.0.0.1", 0)).getsockname()[1]
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            await run(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", args.subscribers, port)
        return 0
    import asyncpg

    name = f"dso_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(args.pg_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await run(args.pg_url.rsplit("/", 1)[0] + "/" + name, args.subscribers, port)
    finally:
        conn = await asyncpg.connect(args.pg_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
