#!/usr/bin/env python3
"""List paging benchmark: milliseconds per 2030.5 list page (l=50) at 1k, 10k and 100k rows.

    .venv/bin/python conformance/bench_pages.py                  # SQLite
    .venv/bin/python conformance/bench_pages.py --pg             # SQLite, then PostgreSQL (127.0.0.1:5432)
    .venv/bin/python conformance/bench_pages.py --sizes 1000,10000 --repeat 3

Lists measured, each holding N rows:

* EndDeviceList ``/edev`` of an aggregator with N EndDevices registered under it;
* the ReadingList ``/upt/{m}/mr/1/rs/1/r`` of one MirrorUsagePoint with N mirrored readings;
* the DERControlList ``/edev/{e}/derp/{p}/derc`` of one device's program with N DERControls in its history:
  ``LIVE`` of them still scheduled (what the list shows), the others completed (a month of 15-minute envelopes
  is ~2,900 controls per device; the list a device polls must not cost its past).

Per size: a fresh data directory (``dso init``) and a real ``dso serve`` on loopback; the first device, reading and
control are made through the protocol and the admin API, the other N-1 rows are bulk copies of them inserted into
the server's store. Pages are fetched over mutual TLS with the aggregator's certificate on one kept-alive
connection (the handshake is not timed): the median of ``--repeat`` GETs at the first page, the middle and the last
page. Each answer is checked (``all`` = N, ``results`` = 50). Loopback only; bounded by the sizes given.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from lxml import etree  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from support import LiveServer  # noqa: E402

from server import pki  # noqa: E402
from server.sep2 import xml  # noqa: E402
from server.store import create_store  # noqa: E402
from server.store.models import Aggregator, EndDevice, Event, TelemetryReading  # noqa: E402

PAGE = 50
LIVE = 200  # scheduled DERControls of the measured program; the other rows are its history
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MMR = "BE" * 15 + "01"


class Client:
    """One kept-alive mutual-TLS connection to the server's 2030.5 listener."""

    def __init__(self, server: LiveServer, cert: dict) -> None:
        self.ctx = server.client_context(cert["cert"], cert["key"])
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=self.ctx, timeout=300)

    def call(self, method: str, path: str, body: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": xml.MEDIA_TYPE}
        if body is not None:
            headers["Content-Type"] = xml.MEDIA_TYPE
        self.conn.request(method, path, body=body.encode() if body else None, headers=headers)
        response = self.conn.getresponse()
        return response.status, dict(response.headers), response.read()

    def get(self, path: str) -> etree._Element:
        status, _, body = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
        return etree.fromstring(body)

    def close(self) -> None:
        self.conn.close()


def server_env() -> dict[str, str]:
    """The benchmarked server's settings: no scheduler; the per-client request budgets stay on (their cost is
    part of every request) but far above what a closed-loop device asks for (each polls many times a second,
    where a real one polls every pollRate)."""
    return {
        "DSO_ORCHESTRATION__ENABLED": "false",
        "DSO_RATELIMIT__DEVICE_RATE": "100000",
        "DSO_RATELIMIT__DEVICE_BURST": "100000",
    }


def admin(server: LiveServer, method: str, path: str, body: object = None) -> dict:
    status, data = server.admin(method, path, body)
    if status >= 400:
        raise RuntimeError(f"admin {method} {path} -> {status}: {data}")
    return data


def mup_xml(lfdi: str) -> str:
    return (
        f'<MirrorUsagePoint xmlns="{xml.NS}"><mRID>BE01</mRID><roleFlags>49</roleFlags>'
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"<MirrorMeterReading><mRID>{MMR}</mRID><ReadingType><dataQualifier>2</dataQualifier>"
        "<flowDirection>1</flowDirection><intervalLength>300</intervalLength><kind>37</kind>"
        "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
        "</MirrorMeterReading></MirrorUsagePoint>"
    )


def reading_xml(when: int) -> str:
    return (
        f'<MirrorMeterReading xmlns="{xml.NS}"><mRID>{MMR}</mRID><Reading>'
        f"<timePeriod><duration>300</duration><start>{when}</start></timePeriod><value>1234</value>"
        "</Reading></MirrorMeterReading>"
    )


def edev_xml(lfdi: str, sfdi: int) -> str:
    return (
        f'<EndDevice xmlns="{xml.NS}"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>'
        "<changedTime>1700000000</changedTime></EndDevice>"
    )


def copy_of(row: object, **changes: object) -> dict:
    table = type(row).__table__  # type: ignore[attr-defined]
    values = {c.key: getattr(row, c.key) for c in table.columns if c.key != "id"}
    return {**values, **changes}


async def bulk_rows(url: str, agg_lfdi: str, device_lfdi: str, program_id: int, n: int) -> None:
    """N-1 more of each row kind, copied from the one the protocol and the admin API made."""
    store = create_store(url)
    try:
        async with store.sessions.begin() as session:
            agg_id = await session.scalar(select(Aggregator.id).where(Aggregator.lfdi == agg_lfdi))
            template = await session.scalar(select(EndDevice).where(EndDevice.lfdi == device_lfdi))
            lfdis = [uuid.uuid4().hex.upper() + f"{i:08X}" for i in range(n - 1)]
            rows = [
                copy_of(template, lfdi=lfdi, sfdi=pki.sfdi_from_lfdi(lfdi), aggregator_id=agg_id)
                for lfdi in lfdis
            ]
            for i in range(0, len(rows), 5000):
                await session.execute(insert(EndDevice), rows[i : i + 5000])

            reading = await session.scalar(
                select(TelemetryReading).where(TelemetryReading.source_id == device_lfdi)
            )
            assert reading is not None, "the template reading was not stored"
            rows = [copy_of(reading, ts=reading.ts - dt.timedelta(seconds=300 * i)) for i in range(1, n)]
            for i in range(0, len(rows), 5000):
                await session.execute(insert(TelemetryReading), rows[i : i + 5000])

            control = await session.scalar(select(Event).where(Event.program_id == program_id))
            assert control is not None, "the template control was not stored"

            def shifted(seconds: int) -> dict:
                start = control.start + dt.timedelta(seconds=seconds)
                return copy_of(control, start=start, end_at=start + dt.timedelta(seconds=control.duration_s))

            live = [shifted(900 * i) for i in range(1, LIVE)]
            # history: completed controls back from two days before now, 15 minutes apart
            past = [shifted(-3 * 86400 - 900 * i) for i in range(n - LIVE)]
            rows = live + past
            for i in range(0, len(rows), 5000):
                await session.execute(insert(Event), rows[i : i + 5000])
    finally:
        await store.close()


def build(server: LiveServer, url: str, n: int) -> tuple[Client, dict[str, tuple[str, int]]]:
    """Enrol the aggregator and its first device, a program with one control, a MUP with one reading; then bulk
    copies up to N rows each. Returns the aggregator's connection and the three list paths."""
    agg_cert = server.issue_device("aggregator", aggregator=True)
    dev_cert = server.issue_device("device")
    admin(server, "PUT", f"/api/v1/sep2/aggregators/{agg_cert['lfdi']}")
    client = Client(server, agg_cert)
    status, headers, body = client.call("POST", "/edev", edev_xml(dev_cert["lfdi"], int(dev_cert["sfdi"])))
    assert status == 201, body
    edev = headers["Location"]
    program = admin(server, "POST", "/api/v1/programs", {"name": "bench", "primacy": 1})
    admin(
        server, "POST", f"/api/v1/programs/{program['id']}/assign", {"lfdi": dev_cert["lfdi"], "fsa": "bench"}
    )
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    admin(
        server,
        "POST",
        "/api/v1/controls",
        {
            "program": program["id"],
            "start": start.isoformat(),
            "duration_s": 600,
            "base": {"opModExpLimW": 5000},
        },
    )
    status, headers, body = client.call("POST", "/mup", mup_xml(dev_cert["lfdi"]))
    assert status == 201, body
    mup = headers["Location"]
    status, _, body = client.call("POST", mup, reading_xml(int(time.time()) // 300 * 300))
    assert status == 201, body
    # the program's href, looked up while it has one control (a DERProgramList evaluates all of them)
    fsa = client.get(f"{edev}/fsa?l=10").find(xml.q("FunctionSetAssignments"))
    derp_list = client.get(fsa.find(xml.q("DERProgramListLink")).get("href") + "?l=10")
    derp = derp_list.find(xml.q("DERProgram")).get("href")
    asyncio.run(bulk_rows(url, agg_cert["lfdi"], dev_cert["lfdi"], program["id"], n))
    upt = mup.replace("/mup/", "/upt/")
    return client, {
        "EndDeviceList": ("/edev", n),
        "ReadingList (one MUP)": (f"{upt}/mr/1/rs/1/r", n),
        "DERControlList": (f"{derp}/derc", LIVE),
    }


SLOW_MS = 3000.0  # a page slower than this is timed once (keeps the run bounded when a list does not scale)


def time_page(client: Client, path: str, n: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat + 1):  # the first GET warms caches and is not counted, unless it is slow
        t0 = time.perf_counter()
        root = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        if root.get("all") != str(n) or root.get("results") != str(PAGE):
            raise RuntimeError(
                f"{path}: all={root.get('all')} results={root.get('results')}, expected {n}/{PAGE}"
            )
        if samples[0] > SLOW_MS:
            return samples[0]
    return statistics.median(samples[1:])


SKIP_AFTER_MS = 2000.0  # a list this slow at one size is not measured at the larger ones (bounded run time)


def run_size(
    backend: str, url: str, n: int, repeat: int, workdir: Path, skip: dict[str, str]
) -> list[tuple[str, int, float]]:
    server = LiveServer(workdir / f"{backend}-{n}", database_url=url, extra_env=server_env())
    server.init().start(timeout=60)
    try:
        t0 = time.perf_counter()
        client, lists = build(server, server.info["database"], n)
        print(f"  {backend} {n:>7,} rows per list: built in {time.perf_counter() - t0:.1f} s", flush=True)
        out = []
        try:
            for name, (path, shown) in lists.items():
                if name in skip:
                    print(f"    {name:<22} not measured: {skip[name]}", flush=True)
                    continue
                for offset in (0, shown // 2, shown - PAGE):
                    ms = time_page(client, f"{path}?s={offset}&l={PAGE}", shown, repeat)
                    out.append((name, offset, ms))
                    print(f"    {name:<22} s={offset:<7} {ms:9.1f} ms", flush=True)
                slowest = max(ms for list_name, _, ms in out if list_name == name)
                if slowest > SKIP_AFTER_MS:
                    skip[name] = f"{slowest / 1000:.1f} s per page at {n:,} rows already"
        finally:
            client.close()
        return out
    finally:
        server.stop()


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="rows per list, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="GETs per page (median reported)")
    ap.add_argument("--pg", action="store_true", help="also run on PostgreSQL at 127.0.0.1:5432")
    args = ap.parse_args()
    # a SIGTERM unwinds like Ctrl-C, so every server this run started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 2 * PAGE or s > 200_000 for s in sizes):
        ap.error(f"sizes must be {2 * PAGE}..200000")
    results: dict[tuple[str, int], list[tuple[str, int, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dso-bench-pages-") as tmp:
        for backend in ["sqlite"] + (["postgresql"] if args.pg else []):
            skip: dict[str, str] = {}
            for n in sizes:
                if backend == "sqlite":
                    results[backend, n] = run_size(backend, "", n, args.repeat, Path(tmp), skip)
                    continue
                name = f"dso_bench_pages_{uuid.uuid4().hex[:8]}"
                asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
                try:
                    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
                    results[backend, n] = run_size(backend, url, n, args.repeat, Path(tmp), skip)
                finally:
                    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"\nms per page (l={PAGE}; median of {args.repeat}; first / middle / last page)")
    lists = sorted({name for rows in results.values() for name, _, _ in rows}, key=str)
    for backend in ["sqlite", "postgresql"]:
        for name in lists:
            cells = []
            for n in sizes:
                rows = [ms for list_name, _, ms in results.get((backend, n), []) if list_name == name]
                if rows:
                    cells.append(f"{n:>7,}: " + " / ".join(f"{ms:.1f}" for ms in rows))
            if cells:
                print(f"  {backend:<10} {name:<22} " + "   ".join(cells))
    print(json.dumps({f"{b}-{n}": rows for (b, n), rows in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
