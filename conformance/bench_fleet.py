#!/usr/bin/env python3
"""Fleet benchmark: N devices, each with its own certificate, polling one ``dso serve`` over mutual TLS.

    .venv/bin/python conformance/bench_fleet.py                       # SQLite: dcap, derc-50, poll cycle
    .venv/bin/python conformance/bench_fleet.py --pg                  # then PostgreSQL (127.0.0.1:5432)
    .venv/bin/python conformance/bench_fleet.py --devices 32 --seconds 20 --modes cycle
    .venv/bin/python conformance/bench_fleet.py --pg-only --processes 1,2 --rounds 3 --modes cycle  # scale-out

Set-up: a fresh ``dso init`` and ``dso serve`` on loopback; N device certificates from the dev PKI (``server.pki``),
each enrolled, in one DER program with 50 live controls, each with its own MirrorUsagePoint. Every device keeps
one kept-alive TLS connection (the handshake is not timed) and runs closed-loop for ``--seconds`` (and at most
``--max-requests`` requests in all):

* ``dcap``: ``GET /dcap`` again and again;
* ``derc``: ``GET`` its DERControlList ``?l=50``;
* ``post``: MirrorMeterReading posts only (one reading each);
* ``cycle``: the poll cycle dcap -> edev list -> edev -> fsa -> derp -> derc -> actderc, plus
  ``--posts-per-cycle`` MirrorMeterReading posts to its MirrorUsagePoint (pollRate / postRate of the server's
  defaults: one).

Printed per mode: requests/s (cycles/s for ``cycle``), p50/p99 latency per request (and per cycle), errors (any
answer but 200/201), the server process's CPU per request (utime+stime from /proc/PID/stat before and after),
and the load generator's own CPU share of one core: while that share is well below 100 % the generator is
waiting for the server, not the other way round (``--client-procs`` spreads the devices over more generator
processes). ``devices held`` is cycles/s x 900 s: how many devices polling at a 900 s pollRate one process
serves. The generator is a minimal HTTP/1.1 client on asyncio streams (request bytes prepared once, responses
read by Content-Length) so that it costs far less per request than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "conformance"))
sys.path.insert(0, str(REPO / "tests"))

from bench_control_history import CLK_TCK, cpu_s, schedule_controls  # noqa: E402
from bench_pages import PG_ADMIN_URL, Client, _pg, admin, mup_xml, server_env  # noqa: E402
from support import LiveServer  # noqa: E402

from server.pki import DevPki  # noqa: E402
from server.sep2 import xml  # noqa: E402

LIVE = 50
MODES = ("dcap", "derc", "cycle", "post")


@dataclass
class Device:
    cert: str
    key: str
    lfdi: str
    cycle: list[str] = field(default_factory=list)  # the GET paths of one poll cycle
    mup: str = ""
    mmr: str = ""


def mmr_of(i: int) -> str:
    """Device ``i``'s MirrorMeterReading mRID (unique server-wide)."""
    return f"{i + 1:030X}01"


def reading_post(mup: str, mmr: str, when: int) -> tuple[str, bytes]:
    body = (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{mmr}</mRID><Reading>'
        f"<timePeriod><duration>300</duration><start>{when}</start></timePeriod><value>1234</value>"
        "</Reading></MirrorMeterReading>"
    )
    return mup, body.encode()


def setup(server: LiveServer, n: int) -> list[Device]:
    """N enrolled devices in one program with 50 live controls, each with a MUP; their poll-cycle paths."""
    pki = DevPki(Path(server.config).parent / "pki")
    program = admin(server, "POST", "/api/v1/programs", {"name": "fleet", "primacy": 1})
    devices = []
    for i in range(n):
        out = pki.issue_device(f"fleet-{i}")
        lfdi = str(out["lfdi"])
        admin(server, "PUT", f"/api/v1/sep2/end-devices/{lfdi}")
        admin(server, "POST", f"/api/v1/programs/{program['id']}/assign", {"lfdi": lfdi, "fsa": "fleet"})
        devices.append(Device(str(out["cert"]), str(out["key"]), lfdi, mmr=mmr_of(i)))
    schedule_controls(server, program["id"], LIVE)
    for d in devices:
        c = Client(server, {"cert": d.cert, "key": d.key})
        edev = c.get("/edev?l=1").find(xml.q("EndDevice")).get("href")
        fsa_list = f"{edev}/fsa?l=10"
        fsa = c.get(fsa_list).find(xml.q("FunctionSetAssignments")).get("href")
        derp_list = c.get(fsa).find(xml.q("DERProgramListLink")).get("href") + "?l=10"
        derp = c.get(derp_list).find(xml.q("DERProgram")).get("href")
        d.cycle = [
            "/dcap",
            "/edev?l=1",
            edev,
            fsa_list,
            derp_list,
            f"{derp}/derc?l={LIVE}",
            f"{derp}/actderc?l=10",
        ]
        status, headers, body = c.call("POST", "/mup", mup_xml(d.lfdi).replace("BE" * 15 + "01", d.mmr))
        assert status == 201, body
        d.mup = headers["Location"]
        assert c.get(f"{derp}/derc?l={LIVE}").get("all") == str(LIVE)
        c.close()
    return devices


# ------------------------------------------------------------------------------------------- load generator
class Conn:
    """One device's kept-alive HTTP/1.1 connection, as cheap per request as asyncio streams allow."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def get_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {xml.MEDIA_TYPE}\r\n\r\n".encode()


def post_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {xml.MEDIA_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Tally:
    requests: int = 0
    cycles: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # "METHOD path-kind -> status": count
    latencies: list[float] = field(default_factory=list)
    cycle_latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0


async def run_devices(
    port: int, ca: str, devices: list[Device], mode: str, seconds: float, budget: int, posts: int
) -> Tally:
    tally = Tally()
    conns = []
    for d in devices:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(d.cert, d.key)
        conns.append(Conn(*await asyncio.open_connection("127.0.0.1", port, ssl=ctx)))
    when = [int(time.time()) // 300 * 300 - 120 * 86400]  # in the past: readings of the future are refused
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + seconds

    async def device(d: Device, conn: Conn) -> None:
        if mode == "dcap":
            plan = [get_bytes("/dcap")]
        elif mode == "derc":
            plan = [get_bytes(d.cycle[5])]
        elif mode == "post":
            plan = []
        else:
            plan = [get_bytes(p) for p in d.cycle]
        while time.perf_counter() < deadline and tally.requests < budget:
            c0 = time.perf_counter()
            steps = list(plan)
            if mode in ("cycle", "post"):
                for _ in range(max(posts, 1) if mode == "post" else posts):
                    when[0] += 300  # every reading a new interval: each post stores one reading
                    steps.append(post_bytes(*reading_post(d.mup, d.mmr, when[0])))
            for raw in steps:
                r0 = time.perf_counter()
                try:
                    status = await conn.call(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    tally.errors += 1
                    return
                tally.latencies.append(time.perf_counter() - r0)
                tally.requests += 1
                if status not in (200, 201):
                    tally.errors += 1
                    kind = f"{raw.split(b' ', 1)[0].decode()} {steps.index(raw)} -> {status}"
                    tally.error_kinds[kind] = tally.error_kinds.get(kind, 0) + 1
            tally.cycles += 1
            tally.cycle_latencies.append(time.perf_counter() - c0)

    await asyncio.gather(*(device(d, c) for d, c in zip(devices, conns, strict=True)))
    tally.wall_s, tally.cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    for c in conns:
        c.writer.close()
    return tally


def _child(args: tuple, out: multiprocessing.Queue) -> None:
    t = asyncio.run(run_devices(*args))
    out.put(t.__dict__)


def load(
    server: LiveServer, devices: list[Device], mode: str, seconds: float, budget: int, posts: int, procs: int
) -> Tally:
    """Run the devices in ``procs`` generator processes (forked) and add their tallies up."""
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()
    parts = [devices[i::procs] for i in range(procs)]
    children = [
        ctx.Process(
            target=_child, args=((server.port, server.ca, p, mode, seconds, budget // procs, posts), out)
        )
        for p in parts
        if p
    ]
    for c in children:
        c.start()
    results = [out.get(timeout=seconds + 120) for _ in children]
    for c in children:
        c.join()
    total = Tally()
    for r in results:
        total.requests += r["requests"]
        total.cycles += r["cycles"]
        total.errors += r["errors"]
        for kind, count in r["error_kinds"].items():
            total.error_kinds[kind] = total.error_kinds.get(kind, 0) + count
        total.latencies += r["latencies"]
        total.cycle_latencies += r["cycle_latencies"]
        total.cpu_s += r["cpu_s"]
        total.wall_s = max(total.wall_s, r["wall_s"])
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def database_cpu_s() -> float:
    """CPU seconds so far of the local PostgreSQL server: its live processes, plus the backends that have exited
    (a connection closed meanwhile), whose time the postmaster took over when it reaped them (0 without one)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own = int(fields[11]) + int(fields[12])
            parent = int(fields[1])
            reaped = int(fields[13]) + int(fields[14]) if parent == 1 or _comm(parent) != "postgres" else 0
            total += (own + reaped) / CLK_TCK
        except OSError:  # gone meanwhile
            continue
    return total


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_busy_s() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy so far, all cores, and the seconds a hypervisor ran something
    else while this machine's cores wanted to run (steal: on a shared host the cores this machine did not get).
    /proc/stat: busy is all but idle, iowait and steal."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # guest time is counted in user already
    steal = ticks[7]
    return (sum(ticks) - ticks[3] - ticks[4] - steal) / CLK_TCK, steal / CLK_TCK


def measure(
    server: LiveServer, pids: list[int], devices: list[Device], mode: str, args: argparse.Namespace
) -> dict:
    # a short warm-up (caches, connection pool) that is not counted
    load(server, devices, mode, 1.0, 10_000, args.posts_per_cycle, args.client_procs)
    s0 = [cpu_s(pid) for pid in pids]
    db0, (busy0, steal0) = database_cpu_s(), machine_busy_s()
    t = load(server, devices, mode, args.seconds, args.max_requests, args.posts_per_cycle, args.client_procs)
    busy1, steal1 = machine_busy_s()
    db_cpu, busy, steal = database_cpu_s() - db0, busy1 - busy0, steal1 - steal0
    per_process = [cpu_s(pid) - c0 for pid, c0 in zip(pids, s0, strict=True)]
    server_cpu = sum(per_process)
    rate = t.requests / t.wall_s
    row = {
        "mode": mode,
        "req_s": rate,
        "cycles_s": t.cycles / t.wall_s if mode == "cycle" else None,
        "p50_ms": pct(t.latencies, 0.50),
        "p99_ms": pct(t.latencies, 0.99),
        "cycle_p50_ms": pct(t.cycle_latencies, 0.50) if mode == "cycle" else None,
        "cycle_p99_ms": pct(t.cycle_latencies, 0.99) if mode == "cycle" else None,
        "errors": t.errors,
        "error_kinds": t.error_kinds,
        "requests": t.requests,
        "server_cpu_ms_per_req": server_cpu * 1000 / max(t.requests, 1),
        "server_cpu_share": server_cpu / t.wall_s,
        "server_cpu_share_per_process": [c / t.wall_s for c in per_process],
        "generator_cpu_share": t.cpu_s / t.wall_s,
        # what else the cores did: PostgreSQL's share, and the whole machine's busy cores (of os.cpu_count())
        "database_cpu_share": db_cpu / t.wall_s,
        "machine_busy_cores": busy / t.wall_s,
        "stolen_cores": steal / t.wall_s,
        "processes": len(pids),
        "load_average": os.getloadavg(),
    }
    return row


def show(backend: str, row: dict, n: int) -> None:
    mode = row["mode"]
    head = f"  {backend:<10} {mode:<6} {row['req_s']:8.0f} req/s"
    if mode == "cycle":
        head += (
            f" = {row['cycles_s']:6.1f} cycles/s (cycle p50 {row['cycle_p50_ms']:.1f} / p99 "
            f"{row['cycle_p99_ms']:.1f} ms; devices held at 900 s: {row['cycles_s'] * 900:,.0f})"
        )
    print(
        head
        + f"; per request p50 {row['p50_ms']:.2f} / p99 {row['p99_ms']:.2f} ms; errors {row['errors']} {row['error_kinds'] or ''};"
        f" server CPU {row['server_cpu_ms_per_req']:.3f} ms/req ({row['server_cpu_share']:.0%} of a core);"
        f" generator {row['generator_cpu_share']:.0%} of a core; PostgreSQL {row['database_cpu_share']:.0%};"
        f" machine {row['machine_busy_cores']:.2f} of {os.cpu_count()} cores busy, {row['stolen_cores']:.2f} stolen; {n} devices; {row['processes']} server"
        f" process(es) ({' + '.join(f'{c:.0%}' for c in row['server_cpu_share_per_process'])});"
        f" load average {row['load_average'][0]:.1f}",
        flush=True,
    )


def more_processes(server: LiveServer, n: int, running: int = 1) -> list[subprocess.Popen[bytes]]:
    """``n`` more ``dso serve`` processes of the same configuration (SO_REUSEPORT on the same ports), beside the
    ``running`` ones (numbered after them: process k logs to serve-k.log)."""
    procs = []
    # the same listeners as the first (its loopback host too: a process bound to 0.0.0.0 would be a group of
    # its own beside one bound to 127.0.0.1, and the kernel gives loopback connections to the more specific one)
    env = server.serve_env()
    for i in range(n):
        log_path = server.home / f"serve-{running + i + 1}.log"
        start = log_path.stat().st_size if log_path.exists() else 0  # a restarted process appends to its log
        with open(log_path, "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "-c", server.config],
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=REPO,
                )
            )
        deadline = time.monotonic() + 60
        while b"admin listener bound" not in log_path.read_bytes()[start:]:
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server process {running + i + 1} did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    return procs


def run(backend: str, url: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    env = server_env()
    if backend == "postgresql":
        env["DSO_SERVER__REUSE_PORT"] = "true"
    server = LiveServer(workdir / backend, database_url=url, extra_env=env)
    server.init().start(timeout=60)
    extra: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        devices = setup(server, args.devices)
        print(f"  {backend}: {len(devices)} devices set up in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        counts = [1] if backend == "sqlite" else [int(n) for n in args.processes.split(",")] * args.rounds
        for n in counts:
            while len(extra) < n - 1:
                extra += more_processes(server, 1, running=1 + len(extra))
            while len(extra) > n - 1:
                stop_processes([extra.pop()])
            assert server.proc is not None
            pids = [server.proc.pid] + [p.pid for p in extra[: n - 1]]
            for mode in args.modes.split(","):
                row = measure(server, pids, devices, mode, args)
                row["backend"] = backend
                show(backend, row, len(devices))
                rows.append(row)
        return rows
    finally:
        stop_processes(extra)
        server.stop()


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=16, help="distinct device certificates (connections)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per mode")
    ap.add_argument("--max-requests", type=int, default=200_000, help="at most this many requests per mode")
    ap.add_argument("--modes", default=",".join(MODES), help="of: " + ", ".join(MODES))
    ap.add_argument("--posts-per-cycle", type=int, default=1, help="MirrorMeterReading posts per poll cycle")
    ap.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--pg", action="store_true", help="also run on PostgreSQL at 127.0.0.1:5432")
    ap.add_argument("--pg-only", action="store_true", help="only PostgreSQL")
    ap.add_argument(
        "--processes",
        default="1",
        help="PostgreSQL: server processes on one port (SO_REUSEPORT), e.g. 1,2 measures one, then two",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="PostgreSQL: measure the --processes sequence this many times, alternating (on a shared host the"
        " cores a machine gets vary from minute to minute: each round gives its own ratio)",
    )
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if (
        not 1 <= args.devices <= 2000
        or not 1 <= args.seconds <= 600
        or not 1 <= args.client_procs <= 8
        or not 1 <= args.rounds <= 10
    ):
        ap.error("devices 1..2000, seconds 1..600, client-procs 1..8, rounds 1..10")
    if any(m not in MODES for m in args.modes.split(",")):
        ap.error(f"modes are {', '.join(MODES)}")
    backends = ["postgresql"] if args.pg_only else ["sqlite"] + (["postgresql"] if args.pg else [])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dso-bench-fleet-") as tmp:
        for backend in backends:
            if backend == "sqlite":
                rows += run(backend, "", args, Path(tmp))
                continue
            name = f"dso_bench_fleet_{uuid.uuid4().hex[:8]}"
            asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
            try:
                rows += run(backend, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", args, Path(tmp))
            finally:
                asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        "\n| backend | processes | request | rate | p50 / p99 ms | server CPU per request | errors |"
        " generator CPU | PostgreSQL CPU | cores busy | cores stolen | load average |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rate = f"{r['req_s']:.0f} req/s"
        lat = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"
        if r["mode"] == "cycle":
            rate = f"{r['cycles_s']:.1f} cycles/s ({r['req_s']:.0f} req/s)"
            lat += f" (cycle {r['cycle_p50_ms']:.1f} / {r['cycle_p99_ms']:.1f})"
        print(
            f"| {r['backend']} | {r['processes']} | {r['mode']} | {rate} | {lat} |"
            f" {r['server_cpu_ms_per_req']:.3f} ms | {r['errors']} | {r['generator_cpu_share']:.0%} |"
            f" {r['database_cpu_share']:.0%} | {r['machine_busy_cores']:.2f} of {os.cpu_count()} |"
            f" {r['stolen_cores']:.2f} |"
            f" {r['load_average'][0]:.1f} |"
        )
    for line in scale_out_ratios(rows):
        print(line)
    print(json.dumps(rows))
    return 0


def scale_out_ratios(rows: list[dict]) -> list[str]:
    """Each several-process row's rate over the one-process row of its mode measured just before it."""
    lines, single = [], {}
    for r in rows:
        if r["backend"] != "postgresql":
            continue
        if r["processes"] == 1:
            single[r["mode"]] = r
        elif r["mode"] in single:
            one = single[r["mode"]]
            lines.append(
                f"scale-out {r['mode']}: {r['processes']} processes / 1 = {r['req_s'] / one['req_s']:.2f}x"
                f" (cores stolen {one['stolen_cores']:.2f} with one, {r['stolen_cores']:.2f} with"
                f" {r['processes']})"
            )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
