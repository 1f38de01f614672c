#!/usr/bin/env python3
"""OpenADR 3.1 benchmark: event reads by VEN tokens, and webhook notifications of one event that reaches 1,000
VENs, against a real ``dso serve`` process (SQLite, TLS, bearer tokens, the outbox's real delivery path).

    .venv/bin/python conformance/bench_openadr3.py                    # 1,000 VENs, 20 s of reads, 3 events
    .venv/bin/python conformance/bench_openadr3.py --vens 200 --read-seconds 5 --events 1
    .venv/bin/python conformance/bench_openadr3.py --no-validate      # answers not checked against the spec

1,000 VEN clients (with VENs, each subscribed to EVENT CREATE with a webhook on loopback) and their tokens are
seeded into the database before the server starts (so the seeding's argon2 hashing is not measured); the reads
are GET /events?limit=50 by rotating VEN tokens from a pool of concurrent connections; each event is created by
staff through the admin API and counted when the receiver has every VEN's notification. The server process's CPU
time (user + system, from /proc) is measured beside wall time: the machine is shared, so wall time is inflated by
other load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from server.cli.setup_cmds import init_data_dir  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.core import oadr3, oadr3_clients  # noqa: E402
from server.store import create_store  # noqa: E402
from server.store.models import Oadr3Client, Oadr3Subscription  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def seed(config: Path, vens: int, hook_url: str) -> list[str]:
    settings = load_settings(config)
    store = create_store(settings.database_url)
    tokens = []
    secret_hash = oadr3_clients._hasher.hash("bench-secret")
    async with store.sessions() as session, session.begin():
        for n in range(vens):
            client = Oadr3Client(
                name=f"bench-ven-{n}", client_id=f"oadr3-bench-{n}", secret_hash=secret_hash, role="ven"
            )
            session.add(client)
            await session.flush()
            caller = oadr3_clients.Caller(client.id, client.client_id, client.name, "ven", frozenset(), None)
            ven, _ = await oadr3.create_ven(
                session, caller, name=f"bench-ven-{n}", attributes=[], targets=[], client_id=None
            )
            session.add(
                Oadr3Subscription(
                    client_pk=client.id,
                    client_name=ven.name,
                    object_operations=[
                        {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": hook_url}
                    ],
                    targets=[],
                )
            )
            token, _ = await oadr3_clients.issue_token(
                session, client, oadr3_clients.ROLE_SCOPES["ven"], 86_400
            )
            tokens.append(token)
    await store.close()
    return tokens


def admin(info: dict, method: str, path: str, body: object) -> dict:
    request = urllib.request.Request(
        info["admin_url"] + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {info['admin_token']}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


async def reads(info: dict, tokens: list[str], seconds: float, concurrency: int, pid: int) -> None:
    ctx = ssl.create_default_context(cafile=info["ca"])
    url = info["openadr3_url"] + "/events?limit=50"
    count = errors = 0
    events_seen = 0
    deadline = 0.0

    async def worker(k: int, http: aiohttp.ClientSession) -> None:
        nonlocal count, errors, events_seen
        n = k
        while time.monotonic() < deadline:
            token = tokens[n % len(tokens)]
            n += concurrency
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                body = await response.read()
                if response.status == 200:
                    count += 1
                    events_seen += len(json.loads(body))
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(url, headers={"Authorization": f"Bearer {tokens[0]}"}) as warm:
            await warm.read()
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        deadline = wall0 + seconds
        await asyncio.gather(*(worker(k, http) for k in range(concurrency)))
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    print(
        f"event reads: {count} GET /events by {len(tokens)} VEN tokens in {wall:.1f} s wall "
        f"({count / wall:.0f}/s wall), server CPU {cpu:.1f} s -> {count / max(cpu, 1e-9):.0f} reads per CPU-second; "
        f"{events_seen / max(count, 1):.1f} events per answer, {errors} errors"
    )


async def notifications(
    info: dict, vens: int, events_n: int, pid: int, received: list[float], got_all: asyncio.Event
) -> None:
    total_cpu = total_wall = 0.0
    for k in range(events_n):
        received.clear()
        got_all.clear()
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        await asyncio.to_thread(
            admin,
            info,
            "POST",
            "/api/v1/events",
            {"program": "bench", "kind": "dr", "start": "now", "duration_s": 3600, "level": 1 + k % 3},
        )
        try:
            await asyncio.wait_for(got_all.wait(), 300)
        except TimeoutError:
            pass
        wall, cpu = time.monotonic() - wall0, cpu_seconds(pid) - cpu0
        total_cpu, total_wall = total_cpu + cpu, total_wall + wall
        print(
            f"event {k + 1}: {len(received)}/{vens} webhook notifications in {wall:.2f} s wall "
            f"({len(received) / wall:.0f}/s), server CPU {cpu:.2f} s ({len(received) / max(cpu, 1e-9):.0f} per CPU-s)"
        )
    n = vens * events_n
    print(
        f"webhooks: {n} notifications for {vens} VENs in {total_wall:.1f} s wall -> {n / total_wall:.0f}/s; "
        f"server CPU {total_cpu:.1f} s -> {n / max(total_cpu, 1e-9):.0f} per CPU-second"
    )


async def measure(info: dict, args: argparse.Namespace, tokens: list[str], hook_port: int, pid: int) -> None:
    received: list[float] = []
    got_all = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        received.append(time.monotonic())
        if len(received) >= args.vens:
            got_all.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    try:
        await notifications(info, args.vens, args.events, pid, received, got_all)
        await reads(info, tokens, args.read_seconds, args.concurrency, pid)
    finally:
        await runner.cleanup()


def wait_healthy(info: dict) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(info["admin_url"] + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--read-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument(
        "--no-validate", action="store_true", help="serve without checking answers against the specification"
    )
    args = parser.parse_args()
    hook_port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-oadr3-") as tmp:
        _, info = init_data_dir(Path(tmp), free_port(), free_port(), "127.0.0.1", None, free_port())
        config = Path(info["config"])
        t0 = time.monotonic()
        tokens = asyncio.run(seed(config, args.vens, f"http://127.0.0.1:{hook_port}/hook"))
        print(
            f"seeded {args.vens} VEN clients, VENs, subscriptions and tokens in {time.monotonic() - t0:.1f} s"
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true",
            "DSO_DELIVERY__POLL_INTERVAL_MS": "100",
            "DSO_LOGGING__LEVEL": "WARNING",
            "DSO_ORCHESTRATION__ENABLED": "false",
            "DSO_MODBUS__ENABLED": "false",
            "DSO_OPENADR3__VALIDATE_RESPONSES": "false" if args.no_validate else "true",
        }
        with open(Path(tmp) / "serve.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "-c", str(config)], stdout=log, stderr=log, env=env
            )
            try:
                wait_healthy(info)
                admin(info, "POST", "/api/v1/dr-programs", {"name": "bench", "primacy": 1})
                # every VEN is a member (staff assign them): each event reaches all of them
                for n in range(args.vens):
                    admin(info, "POST", "/api/v1/dr-programs/bench/assign", {"ven": f"bench-ven-{n}"})
                print(f"machine load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
                asyncio.run(measure(info, args, tokens, hook_port, proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
