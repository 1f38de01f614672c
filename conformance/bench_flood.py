#!/usr/bin/env python3
"""Flood benchmark: one 2030.5 client sends 20x its request budget while other clients poll within theirs, against a
live ``dso serve`` over real mutual TLS on loopback.

    .venv/bin/python conformance/bench_flood.py                    # 10 s baseline, 10 s flood, 5 calm clients
    .venv/bin/python conformance/bench_flood.py --seconds 30 --calm 10 --check

Prints, for the calm clients, the latency percentiles (p50/p95/p99) before and during the flood; for the flooder,
how many answers were 429 and the Retry-After values; the server's resident memory (start, peak, end) and the CPU
time the server process used in each phase (the wall time on a shared machine is inflated by the others' load, the
CPU time is not). ``--check`` exits 1 unless every calm request succeeded, the flooder got 429s with Retry-After and
the calm p99 during the flood is under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
P99_LIMIT_S = 0.050


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dso(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"dso {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def context(ca: str, cert: dict) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert["cert"], cert["key"])
    return ctx


async def calm_client(
    url: str, ctx: ssl.SSLContext, rate: float, until: float, out: list[tuple[int, float]]
) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=1)) as session:
        async with session.get(
            url + "/dcap"
        ) as resp:  # the TLS handshake, not counted: the client keeps alive
            await resp.read()
        while time.monotonic() < until:
            began = time.perf_counter()
            async with session.get(url + "/dcap") as resp:
                await resp.read()
                out.append((resp.status, time.perf_counter() - began))
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))


async def flooder(
    url: str, ctx: ssl.SSLContext, rate: float, until: float, statuses: list[int], retry_after: list[str]
) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=16)) as session:

        async def one() -> None:
            async with session.get(url + "/dcap") as resp:
                await resp.read()
                statuses.append(resp.status)
                if resp.status == 429:
                    retry_after.append(resp.headers.get("Retry-After", ""))

        pending: set[asyncio.Task] = set()
        start = time.monotonic()
        sent = 0
        while time.monotonic() < until:
            # a steady rate, ignoring Retry-After (as a misbehaving client would)
            due = int((time.monotonic() - start) * rate) + 1
            while sent < due:
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending, return_exceptions=True)


async def phase(
    url: str, ca: str, certs: list[dict], args: argparse.Namespace, pid: int, flood: bool
) -> dict[str, object]:
    until = time.monotonic() + args.seconds
    calm: list[tuple[int, float]] = []
    statuses: list[int] = []
    retry_after: list[str] = []
    peak = rss_kib(pid)
    cpu0, wall0 = cpu_s(pid), time.perf_counter()

    async def sample() -> None:
        nonlocal peak
        while time.monotonic() < until:
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.2)

    tasks = [calm_client(url, context(ca, c), args.calm_rate, until, calm) for c in certs[1:]]
    if flood:
        rate = args.factor * args.device_rate
        tasks.append(flooder(url, context(ca, certs[0]), rate, until, statuses, retry_after))
    await asyncio.gather(sample(), *tasks)
    latencies = [t for s, t in calm if s == 200]
    return {
        "calm_requests": len(calm),
        "calm_failed": sum(1 for s, _ in calm if s != 200),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "flood_requests": len(statuses),
        "flood_429": statuses.count(429),
        "flood_200": statuses.count(200),
        "retry_after": sorted(set(retry_after)),
        "rss_peak_mib": peak / 1024,
        "rss_end_mib": rss_kib(pid) / 1024,
        "server_cpu_s": cpu_s(pid) - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase (default 10)")
    ap.add_argument("--calm", type=int, default=5, help="clients polling within their budget (default 5)")
    ap.add_argument("--calm-rate", type=float, default=2.0, help="requests per second of each calm client")
    ap.add_argument("--device-rate", type=int, default=5, help="ratelimit.device_rate of the server")
    ap.add_argument("--device-burst", type=int, default=10, help="ratelimit.device_burst of the server")
    ap.add_argument(
        "--factor", type=float, default=20.0, help="the flooder's rate over its budget (default 20)"
    )
    ap.add_argument("--check", action="store_true", help="exit 1 unless the must-show figures hold")
    args = ap.parse_args()
    if args.calm_rate > args.device_rate:
        ap.error("--calm-rate must be within the device budget")

    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DSO_RATELIMIT__DEVICE_RATE": str(args.device_rate),
        "DSO_RATELIMIT__DEVICE_BURST": str(args.device_burst),
        "DSO_LOGGING__LEVEL": "WARNING",
    }
    info = json.loads(
        dso(
            "init",
            str(work / "dso"),
            "--port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
            "--json",
            env=env,
        )
    )
    names = ["flood"] + [f"calm{n}" for n in range(args.calm)]
    certs = [json.loads(dso("certs", "device", n, "--json", "-c", info["config"], env=env)) for n in names]
    log = open(work / "serve.log", "ab")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "-c", info["config"]],
        stdout=log,
        stderr=log,
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(info["admin_url"] + "/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"server did not start; see {work / 'serve.log'}") from None
                time.sleep(0.2)
        url = info["dcap_url"].rsplit("/dcap", 1)[0]
        rss_start = rss_kib(server.pid) / 1024
        base = asyncio.run(phase(url, info["ca"], certs, args, server.pid, flood=False))
        flood = asyncio.run(phase(url, info["ca"], certs, args, server.pid, flood=True))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    budget = f"{args.device_rate}/s burst {args.device_burst}"
    print(
        f"flood benchmark: {args.calm} calm clients at {args.calm_rate:g}/s, one flooder at "
        f"{args.factor:g}x its budget ({budget}), {args.seconds:g} s per phase, os.getloadavg {os.getloadavg()}"
    )
    print(
        f"\n{'phase':10} {'calm req':>8} {'failed':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'flood req':>9} {'429':>6} {'200':>5} {'srv CPU s':>9} {'wall s':>6} {'RSS peak MiB':>12}"
    )
    for name, r in (("baseline", base), ("flood", flood)):
        print(
            f"{name:10} {r['calm_requests']:>8} {r['calm_failed']:>6} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
            f"{r['p99_ms']:7.1f} {r['flood_requests']:>9} {r['flood_429']:>6} {r['flood_200']:>5} "
            f"{r['server_cpu_s']:9.2f} {r['wall_s']:6.1f} {r['rss_peak_mib']:12.1f}"
        )
    print(f"\nRetry-After values: {flood['retry_after']}")
    print(
        f"server RSS: start {rss_start:.1f} MiB, end {flood['rss_end_mib']:.1f} MiB, peak {flood['rss_peak_mib']:.1f} MiB"
    )
    held = (
        flood["calm_failed"] == 0
        and base["calm_failed"] == 0
        and int(str(flood["flood_429"])) > 0
        and all(v.isdigit() and int(v) >= 1 for v in flood["retry_after"])
        and float(str(flood["p99_ms"])) < P99_LIMIT_S * 1000
    )
    verdict = "hold" if held else "do NOT hold"
    print(
        "\nmust-show (every calm request served, 429 + Retry-After for the flooder, calm p99 during the flood "
        f"< {P99_LIMIT_S * 1000:.0f} ms): {verdict}"
    )
    return 0 if held or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
