"""``dso demo``: the whole loop on the embedded default, in one process, bounded in time.

    data dir (dso init) -> real server (dso serve: mTLS protocol listener + admin API on loopback)
      -> staff: dev-PKI certificates, out-of-band enrolment with PINs, a feeder with an export limit
      -> fleet: N simulated rooftop-PV sites speak 2030.5 over mutual TLS (server.sim.device): enrol, report
         DERCapability/Settings/Status, mirror history (backfilled day by day) and live site power, poll controls
      -> staff: forecast the feeder, plan against its export limit and dispatch (admin API, as `dso forecast` /
         `dso plan --dispatch` do) -> devices fetch their DERControls and answer with Responses
      -> summary; then exit, or keep serving until Ctrl-C.

Staff steps go through the admin API like the CLI does (``AdminClient``, in a worker thread so the server running
on this event loop keeps answering); business rules stay in ``server/core`` and ``server/orchestration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import numpy as np
from cryptography import x509

from server import pki
from server.cli.common import AdminClient, CliError
from server.config import Settings
from server.sim.device import STEP, SimDevice, SimError
from server.sim.profiles import Site, make_fleet

log = logging.getLogger("dso.demo")
PIN_BASE = 100_000


@dataclass
class DemoOptions:
    devices: int = 20
    duration_s: float = 75.0
    history_days: int = 7
    keep_serving: bool = False
    node: str = "feeder-demo"
    export_limit_kw: float | None = None  # default: a quarter of the fleet's PV nameplate
    latitude: float = 39.74  # Denver: a sunny utility with plenty of rooftop PV
    longitude: float = -104.99
    timezone: str = "America/Denver"
    poll_rate_s: int = 5  # served to the devices: how often they poll their controls
    post_rate_s: int = 10  # and post live readings
    seed: int = 2030


@dataclass
class DemoResult:
    enrolled: int = 0
    devices_in_store: int = 0
    readings_posted: int = 0
    readings_stored: int = 0
    forecast: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    controls: list[dict[str, Any]] = field(default_factory=list)
    fetched: int = 0  # devices that fetched their control over 2030.5
    acknowledged: int = 0  # devices whose Response "received" the server stored
    started: int = 0  # ... and "started" (the control became active during the run)
    errors: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, settings: Settings, opts: DemoOptions, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.opts = opts
        self.out = out
        self.t0 = time.monotonic()
        self.admin = AdminClient(settings)
        self.admin.base, self.admin.token = (
            settings.admin_url,
            settings.admin.token,
        )  # this server, not $DSO_*
        self.pki = pki.DevPki(settings.path(settings.pki.dir))
        self.fleet: list[SimDevice] = []
        self.result = DemoResult()

    # ------------------------------------------------------------------------------------------------ helpers
    def say(self, message: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:5.1f}s] {message}")

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.admin.call, method, path, body)

    async def wait_healthy(self, server: asyncio.Task[None], within: float = 30) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if server.done():
                    server.result()  # re-raises why it stopped
                    raise CliError("the server stopped during start-up")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.settings.admin_url + "/healthz") as r:
                        healthy = r.status == 200
                    if healthy:
                        break
                await asyncio.sleep(0.1)
            else:
                raise CliError(f"the server did not become healthy within {within:.0f} s")
        # whoever answered must be this process's server, not another one on the same port
        status = await self.call("GET", "/api/v1/status")
        if status.get("pid") != os.getpid():
            raise CliError(f"another server (pid {status.get('pid')}) answers at {self.settings.admin_url}")

    def certificate(self, name: str) -> dict[str, Any]:
        """The device's dev-PKI certificate: issued once, reused when the demo runs again on the same dir."""
        cert_path, key_path = self.pki.clients / f"{name}.pem", self.pki.clients / f"{name}.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            return {
                "name": name,
                "lfdi": pki.lfdi(cert),
                "sfdi": pki.sfdi(cert),
                "cert": str(cert_path),
                "key": str(key_path),
            }
        return self.pki.issue_device(name)

    # --------------------------------------------------------------------------------------------------- steps
    async def setup_staff(self, sites: list[Site]) -> None:
        certs = await asyncio.to_thread(lambda: [self.certificate(s.name) for s in sites])
        for i, (site, cert) in enumerate(zip(sites, certs, strict=True)):
            pin = PIN_BASE + i * 10 + (10 - sum(int(c) for c in str(PIN_BASE + i * 10)) % 10) % 10
            await self.call(
                "PUT", f"/api/v1/sep2/end-devices/{cert['lfdi']}", {"pin": pin, "name": site.name}
            )
            self.fleet.append(
                SimDevice(
                    site, cert, self.settings.server_url, str(self.settings.path(self.settings.pki.ca)), pin
                )
            )
        self.say(
            f"issued {len(certs)} device certificates from the dev PKI and enrolled them out of band "
            f"(LFDI + installer PIN), e.g. {sites[0].name} = {certs[0]['lfdi']}"
        )
        o = self.opts
        limit = o.export_limit_kw
        if limit is None:
            limit = round(0.25 * sum(s.pv_w for s in sites) / 1000, 1)
        try:
            node = await self.call("GET", f"/api/v1/grid/nodes/{o.node}")
        except CliError:
            node = None
        if node is not None:
            # a second run on the same directory: the limit asked for (or a missing one) is set on the node
            wanted = o.export_limit_kw if o.export_limit_kw is not None else node["export_limit_kw"] or limit
            if node["export_limit_kw"] != wanted:
                node = await self.call("PATCH", f"/api/v1/grid/nodes/{o.node}", {"export_limit_kw": wanted})
                self.say(f"grid: feeder {o.node!r} existed; its export limit is now {wanted:g} kW")
        else:
            node = await self.call(
                "POST",
                "/api/v1/grid/nodes",
                {
                    "name": o.node,
                    "kind": "feeder",
                    "timezone": o.timezone,
                    "latitude": o.latitude,
                    "longitude": o.longitude,
                    "export_limit_kw": limit,
                },
            )
        have = {m["id"] for m in node["members"] if m["kind"] == "device"}
        for dev in self.fleet:
            if dev.lfdi not in have:
                await self.call(
                    "POST", f"/api/v1/grid/nodes/{o.node}/members", {"kind": "device", "id": dev.lfdi}
                )
        self.say(
            f"grid: feeder {o.node!r} ({o.timezone}, {o.latitude:.2f}/{o.longitude:.2f}) with export limit "
            f"{node['export_limit_kw']:g} kW and {len(self.fleet)} sites "
            f"({sum(s.pv_w for s in sites) / 1000:g} kW rooftop PV)"
        )

    async def enrol_fleet(self) -> None:
        now = int(time.time())

        async def one(dev: SimDevice) -> None:
            await dev.open()
            try:
                await dev.enrol()
                await dev.report_der(now)
                await dev.create_mup()
            except BaseException:
                await dev.close()
                raise

        outcome = await asyncio.gather(*(one(d) for d in self.fleet), return_exceptions=True)
        failed = [(d, e) for d, e in zip(self.fleet, outcome, strict=True) if isinstance(e, BaseException)]
        for dev, exc in failed:
            self.result.errors.append(f"{dev.site.name}: enrolment failed: {exc}")
        self.fleet = [d for d, e in zip(self.fleet, outcome, strict=True) if not isinstance(e, BaseException)]
        self.result.enrolled = len(self.fleet)
        if not self.fleet:
            raise CliError(f"no simulated device could enrol: {failed[0][1] if failed else '?'}")
        d = self.fleet[0]
        self.say(
            f"{len(self.fleet)} devices found their EndDevice over mutual TLS (GET /dcap, /edev, PIN checked "
            f"at {d.edev}/rg), PUT DERCapability/DERSettings/DERStatus and created a MirrorUsagePoint"
            + (f"; {len(failed)} failed" if failed else "")
        )

    async def backfill(self) -> None:
        """History through the protocol: one MirrorReadingSet per device and simulated day, day after day."""
        end = int(time.time()) // STEP * STEP
        start = end - self.opts.history_days * 86400
        zone = ZoneInfo(self.opts.timezone)

        def fleet_net_w(ts: np.ndarray) -> list[np.ndarray]:
            return [d.site.net_w_at(ts) for d in self.fleet]

        for day in range(self.opts.history_days):
            t0 = start + day * 86400
            ts = np.arange(t0, t0 + 86400, STEP).astype("datetime64[s]")
            series = await asyncio.to_thread(fleet_net_w, ts)
            await asyncio.gather(*(d.post_readings(t0, v) for d, v in zip(self.fleet, series, strict=True)))
            feeder = np.sum(series, axis=0) / 1000
            local = dt.datetime.fromtimestamp(t0, zone).strftime("%a %d %b %H:%M %Z")
            self.say(
                f"simulated day {day + 1}/{self.opts.history_days} from {local}: {len(self.fleet) * len(ts)} "
                f"readings; feeder peak import {feeder.max():.1f} kW, peak export {max(0, -feeder.min()):.1f} kW"
            )

    async def forecast(self) -> None:
        run = await self.call(
            "POST",
            "/api/v1/forecasts",
            {
                "node": self.opts.node,
                "horizon_s": 86400,
                "step_s": STEP,
                "history_days": self.opts.history_days,
            },
        )
        self.result.forecast = run
        mean = np.array([p["mean"] for p in run["points"]]) / 1000
        times = [
            dt.datetime.fromisoformat(p["ts"]).astimezone(ZoneInfo(self.opts.timezone)) for p in run["points"]
        ]
        hi, lo = int(np.argmax(mean)), int(np.argmin(mean))
        self.say(
            f"forecast {self.opts.node} (run {run['id']}, {run['model']}, {run['history_points']} intervals of "
            f"history): next 24 h net load peaks at {mean[hi]:.1f} kW import {times[hi]:%a %H:%M %Z} and "
            f"{max(0.0, -mean[lo]):.1f} kW export {times[lo]:%a %H:%M %Z}"
        )

    async def plan_and_dispatch(self) -> None:
        from server.cli.dispatch_cmds import plan_lines

        plan = await self.call("POST", "/api/v1/plans", {"node": self.opts.node, "dispatch": True})
        self.result.plan = plan
        self.result.controls = (plan.get("dispatch") or {}).get("sep2_controls", [])
        for line in plan_lines(plan, self.opts.timezone):
            self.say(line.strip() if line.startswith("  ") else line)

    async def watch_controls(self, deadline: float) -> None:
        """Until every device has fetched and acknowledged its control, or the deadline."""
        ids = {c["id"] for c in self.result.controls}
        while ids and time.monotonic() < deadline:
            await self.count_responses()
            if self.result.acknowledged >= len(ids):
                break
            await asyncio.sleep(1)
        await self.count_responses()
        if ids:
            self.say(
                f"controls: {self.result.fetched}/{len(ids)} devices fetched their DERControl "
                f"(FSA -> DERProgram -> DERControlList), {self.result.acknowledged} acknowledged it "
                f"(Response 1 received), {self.result.started} reported it started (Response 2)"
            )

    async def count_responses(self) -> None:
        acked = started = 0
        for c in self.result.controls:
            statuses = {r["status"] for r in await self.call("GET", f"/api/v1/controls/{c['id']}/responses")}
            acked += 1 in statuses
            started += 2 in statuses
        self.result.acknowledged, self.result.started = acked, started
        mine = {c["lfdi"] for c in self.result.controls}
        self.result.fetched = sum(1 for d in self.fleet if d.lfdi in mine and d.controls)

    async def tally(self) -> None:
        status = await self.call("GET", "/api/v1/status")
        self.result.devices_in_store = status["devices"]
        self.result.readings_posted = sum(d.readings_posted for d in self.fleet)  # answered 201: stored
        stored = 0
        for d in self.fleet:  # the readings the telemetry store holds for the site (what forecasts read)
            rows = await self.call(
                "GET",
                f"/api/v1/telemetry?source_kind=device&source_id={d.lfdi}&measurement=realPower&limit=100000",
            )
            stored += len(rows)
        self.result.readings_stored = stored
        self.result.errors += [f"{d.site.name}: {e}" for d in self.fleet for e in d.errors]

    def summary(self) -> str:
        r, o = self.result, self.opts
        plan = r.plan
        f_mean = np.array([p["mean"] for p in r.forecast.get("points", [])]) / 1000
        lines = [
            "",
            "OpenDSO demo summary",
            f"  server          {self.settings.server_url} (2030.5 at /dcap, mutual TLS)   admin {self.settings.admin_url}",
            f"  data dir        {self.settings.base_dir}   database {self.settings.database_url}",
            f"  devices         {r.enrolled}/{o.devices} simulated PV sites enrolled over 2030.5 "
            f"({r.devices_in_store} EndDevices in the store)",
            f"  readings        {r.readings_posted} posted as MirrorUsagePoint readings ({o.history_days} days of "
            f"history + live), {r.readings_stored} realPower readings of these sites in the telemetry store",
        ]
        if len(f_mean):
            lines.append(
                f"  forecast        run {r.forecast['id']} for {o.node}: peak import {f_mean.max():.1f} kW, "
                f"peak export {max(0.0, -f_mean.min()):.1f} kW in the next 24 h"
            )
        if plan:
            lines.append(
                f"  plan            export limit {plan['export_limit_kw']:g} kW: forecast export "
                f"{plan['peak_export_kw']:g} kW -> planned {plan['planned_peak_export_kw']:g} kW, "
                f"curtailing {plan['curtailed_kwh']:g} kWh"
            )
            if plan["window_start"]:
                zone = ZoneInfo(o.timezone)
                a = dt.datetime.fromisoformat(plan["window_start"]).astimezone(zone)
                b = dt.datetime.fromisoformat(plan["window_end"]).astimezone(zone)
                lines.append(
                    f"                  per-site export limit {plan['site_export_limit_w']:g} W, "
                    f"{a:%a %H:%M}-{b:%H:%M} {o.timezone}"
                )
        when = ""
        if r.controls:
            start = min(dt.datetime.fromisoformat(c["start"]) for c in r.controls)
            if start > dt.datetime.now(dt.UTC):
                when = f", scheduled (EventStatus 0) to start {start.astimezone(ZoneInfo(o.timezone)):%a %H:%M %Z}"
            else:
                when = f", {r.started} reported it started (Response 2)"
        lines.append(
            f"  controls        {len(r.controls)} DERControls dispatched, {r.fetched} fetched by devices, "
            f"{r.acknowledged} acknowledged (Response 1 received){when}"
        )
        if r.errors:
            lines.append(f"  errors          {len(r.errors)}, first: {r.errors[0]}")
        lines.append(f"  outcome         {'OK' if self.ok() else 'INCOMPLETE'}")
        return "\n".join(lines)

    def ok(self) -> bool:
        r = self.result
        controls_ok = r.acknowledged == len(r.controls) if r.controls else bool(r.plan)
        return r.enrolled == self.opts.devices and r.readings_stored > 0 and bool(r.forecast) and controls_ok


def next_steps(settings: Settings, opts: DemoOptions) -> str:
    """What to try after a bounded run: everything the demo made stays in its data directory."""
    cfg = settings.source or Path(settings.base_dir) / "dso.toml"
    return (
        f"\nnext: serve the demo's data directory and look around\n"
        f"  dso serve -c {cfg} &\n  export DSO_CONFIG={cfg}\n  dso device list\n"
        f"  dso forecast --node {opts.node} --latest --plot forecast.png\n  dso plan --node {opts.node}\n"
        f"or run `dso demo --keep-serving` to keep the fleet running too"
    )


async def run_demo(settings: Settings, opts: DemoOptions, out: Callable[[str], None] = print) -> Demo:
    """Start the server on this loop, run the fleet and the staff steps, print the summary; stop (or keep
    serving until SIGINT/SIGTERM with ``keep_serving``)."""
    from server.app import serve

    demo = Demo(settings, opts, out)
    deadline = demo.t0 + opts.duration_s
    stop_server, stop_fleet = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(settings, stop_server), name="dso-serve")
    live: list[asyncio.Task[None]] = []

    async def flow() -> None:
        await demo.wait_healthy(server)
        demo.say(
            f"server up: 2030.5/OpenADR on {settings.server_url} (mutual TLS), admin API on {settings.admin_url}"
        )
        sites = make_fleet(opts.devices, opts.latitude, opts.longitude, opts.timezone, opts.seed)
        await demo.setup_staff(sites)
        await demo.enrol_fleet()
        await demo.backfill()
        live.extend(
            asyncio.create_task(d.run_live(stop_fleet), name=f"sim-{d.site.name}") for d in demo.fleet
        )
        await demo.forecast()
        await demo.plan_and_dispatch()
        await demo.watch_controls(deadline)
        remaining = deadline - time.monotonic()
        if remaining > 0:
            demo.say(f"fleet keeps posting live readings and polling for {remaining:.0f} s more (--duration)")
            await asyncio.sleep(remaining)
        await demo.count_responses()
        await demo.tally()
        out(demo.summary())

    try:
        steps = asyncio.create_task(flow(), name="demo")
        interrupted = asyncio.create_task(stop_server.wait())  # SIGINT/SIGTERM (serve's handlers set it)
        await asyncio.wait({steps, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if not steps.done():
            steps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await steps
            out("\ninterrupted: stopping the fleet and the server")
        else:
            interrupted.cancel()
            steps.result()
            if opts.keep_serving:
                cfg = settings.source or Path(settings.base_dir) / "dso.toml"
                out(
                    f"\nstill serving (the fleet keeps running); Ctrl-C stops. Try:\n"
                    f"  export DSO_CONFIG={cfg}\n  dso status\n  dso device list\n"
                    f"  dso forecast --node {opts.node} --latest\n  dso plan --node {opts.node}\n"
                    f"  dso control list --lfdi {demo.fleet[0].lfdi}\n  dso readings latest {demo.fleet[0].lfdi}"
                )
                await stop_server.wait()
            else:
                out(next_steps(settings, opts))
    except (SimError, aiohttp.ClientError) as exc:
        raise CliError(f"demo failed: {exc}") from exc
    finally:
        stop_fleet.set()
        if live:
            await asyncio.gather(*live, return_exceptions=True)
        for d in demo.fleet:
            await d.close()
        stop_server.set()
        await server
    return demo
