"""``dso demo``: the product on the embedded default, in one process, bounded in time, on a SimBench LV grid.

    data dir (dso init) -> real server (dso serve: mTLS protocol listener + admin API on loopback)
      -> staff: import the SimBench grid (as `dso grid import simbench:CODE`), dev-PKI certificates,
         out-of-band enrolment with PINs, one simulated site per customer bus mapped to the grid (`dso grid map`)
      -> fleet: farm roofs with PV, some with a battery, speak 2030.5 over mutual TLS (server.sim.device):
         enrol, report DERCapability/Settings/Status, mirror a week of metered history;
         an aggregator's VEN with several EV chargers speaks OpenADR 2.0b (server.sim.ven) and registers
      -> staff: forecast the transformer's zone, plan the next UTC day against the grid's limits by AC power flow
         and dispatch (as the scheduler's day-ahead turn does); the aggregator's flexibility offer is cleared
         against the curtailment the plan needs and becomes an OpenADR event
      -> the devices fetch their DERControls, the VEN its events; then the simulated day is played interval by
         interval: every inverter, battery and charger does physically what its controls say, and posts what its
         meter measured
      -> judge: AC power flow of the unmanaged day (what the sites would do without controls) against the day the
         fleet's telemetry shows; curtailment, flexibility bought, M&V of the events against their baselines
      -> summary (text, or one JSON object with --json); then exit, or keep serving until Ctrl-C.

The simulated day is always the same sunny June day (``server.sim.profiles``), so the story does not depend on
the date or the hour the demo runs. Progress goes to stderr, the summary to stdout. Staff steps go through the
admin API like the CLI does (``AdminClient``, in a worker thread so the server running on this event loop keeps
answering); business rules stay in ``server/core`` and ``server/orchestration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np
from cryptography import x509

from server import pki
from server.cli.common import AdminClient, CliError
from server.config import Settings
from server.sim.device import GONE, STEP, Day, SimDevice, SimError
from server.sim.grid import Verdict, judge, load_buses
from server.sim.profiles import Site, interval_mid, make_evs, make_fleet, solar_shape
from server.sim.ven import EvDay, SimVen

log = logging.getLogger("dso.demo")
PIN_BASE = 100_000
STEPS = 86_400 // STEP
VEN_NAME = "aggregator-ev"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class DemoOptions:
    grid: str = "1-LV-rural1--0-sw"  # a SimBench LV grid (shipped with the simbench package: no download)
    devices: int = 0  # sites: 0 = one per customer bus of the grid
    evs: int = 4
    history_days: int = 7
    keep_serving: bool = False
    offer_price: float = 0.06  # the aggregator's price per kWh of up-flexibility
    curtail_cost: float = 0.10  # what a kWh of curtailment costs the DSO (the alternative the offer beats)
    play_s: float = 20.0  # wall time the simulated day takes to play
    poll_rate_s: int = 5  # served to the devices: how often they poll their controls
    post_rate_s: int = 10  # and post live readings
    seed: int = 2030


@dataclass
class DemoResult:
    enrolled: int = 0
    readings_posted: int = 0
    grid: dict[str, Any] = field(default_factory=dict)
    forecast: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    first_plan: dict[str, Any] = field(default_factory=dict)  # before the market (when there was a re-plan)
    controls: list[int] = field(default_factory=list)  # event ids of the plan's DERControls
    ven_events: list[int] = field(default_factory=list)
    fetched: int = 0
    acknowledged: int = 0
    clearing: dict[str, Any] = field(default_factory=dict)
    offers: list[dict[str, Any]] = field(default_factory=list)
    days: dict[str, Day] = field(default_factory=dict)  # LFDI -> what the site did
    ev_day: EvDay | None = None
    unmanaged: Verdict | None = None
    managed: Verdict | None = None
    mv: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, settings: Settings, opts: DemoOptions, out: Callable[[str], None] = _stderr) -> None:
        self.settings = settings
        self.opts = opts
        self.out = out
        self.t0 = time.monotonic()
        # plans and grid imports answer when done, which on a loaded machine takes longer than a CLI call may
        self.admin = AdminClient(settings, timeout=300)
        self.admin.base, self.admin.token = (
            settings.admin_url,
            settings.admin.token,
        )  # this server, not $DSO_*
        self.pki = pki.DevPki(settings.path(settings.pki.dir))
        self.fleet: list[SimDevice] = []
        self.ven: SimVen | None = None
        self.model: Any = None  # the grid (server.orchestration.network.model.Network)
        self.zone_node = ""
        self.result = DemoResult()
        # the simulated day: the 24 hours the plan covers, from the next interval on (set by the plan)
        self.day0 = (int(time.time()) // STEP + 1) * STEP
        self.steps = STEPS

    # ------------------------------------------------------------------------------------------------ helpers
    def say(self, message: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:5.1f}s] {message}")

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.admin.call, method, path, body)

    def at(self, ts: int) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M")

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

    def certificate(self, name: str, ven: bool = False) -> dict[str, Any]:
        """The dev-PKI certificate: issued once, reused when the demo runs again on the same dir."""
        cert_path, key_path = self.pki.clients / f"{name}.pem", self.pki.clients / f"{name}.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            return {
                "name": name,
                "lfdi": pki.lfdi(cert),
                "sfdi": pki.sfdi(cert),
                "fingerprint": pki.openadr_fingerprint(cert),
                "cert": str(cert_path),
                "key": str(key_path),
            }
        return self.pki.issue_ven(name) if ven else self.pki.issue_device(name)

    # --------------------------------------------------------------------------------------------------- steps
    async def import_grid(self) -> list[Site]:
        from server.orchestration import grid_import

        code = self.opts.grid
        try:
            model = await self.call("GET", f"/api/v1/grid/models/{quote(code, safe='')}")
        except CliError:
            model = await self.call("POST", "/api/v1/grid/models", {"source": f"simbench:{code}"})
        self.model = await asyncio.to_thread(grid_import.from_simbench, code)
        summary = grid_import.summary(self.model, model["name"])  # as the server made it on import
        lv = [z for z in summary["zones"].values() if z.get("trafo") is not None]
        if len(lv) != 1:
            raise CliError(f"{code}: the demo wants an LV grid with one transformer, found {len(lv)}")
        self.zone_node = lv[0]["node"]
        buses = load_buses(self.model)
        if self.opts.devices:
            buses = buses[: self.opts.devices]
        sites = make_fleet(buses, self.opts.seed)
        kva = lv[0]["rating_kva"]
        self.result.grid = {
            "code": code,
            "buses": len(self.model.buses),
            "lines": len(self.model.lines),
            "transformer_kva": kva,
            "zone_node": self.zone_node,
            "voltage_band_pu": [self.model.buses[0].v_min_pu, self.model.buses[0].v_max_pu],
        }
        self.say(
            f"grid: SimBench {code} imported (`dso grid import simbench:{code}`): {len(self.model.buses)} buses, "
            f"{len(self.model.lines)} lines, one {kva:g} kVA MV/LV transformer, voltage band "
            f"{self.model.buses[0].v_min_pu:g}-{self.model.buses[0].v_max_pu:g} pu"
        )
        return sites

    async def setup_fleet(self, sites: list[Site]) -> None:
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
        pv = sum(s.pv_w for s in sites) / 1000
        batteries = [s for s in sites if s.battery_w > 0]
        self.say(
            f"fleet: {len(sites)} sites, one per customer bus: {pv:g} kW of rooftop PV, {len(batteries)} with a "
            f"{batteries[0].battery_w / 1000 if batteries else 0:g} kW / "
            f"{batteries[0].battery_wh / 1000 if batteries else 0:g} kWh battery; certificates from the dev PKI, "
            f"enrolled out of band (LFDI + installer PIN)"
        )
        evs = make_evs(self.opts.evs, self.opts.seed)
        cert = await asyncio.to_thread(self.certificate, VEN_NAME, True)
        vens = await self.call("GET", "/api/v1/vens")
        if not any(v["name"] == VEN_NAME for v in vens):
            await self.call("POST", "/api/v1/vens", {"name": VEN_NAME, "fingerprint": cert["fingerprint"]})
        self.ven = SimVen(
            VEN_NAME,
            cert,
            self.settings.server_url,
            str(self.settings.path(self.settings.pki.ca)),
            evs,
            bus=sites[-1].bus,
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
            f"2030.5: {len(self.fleet)} devices found their EndDevice over mutual TLS (GET /dcap, /edev, PIN "
            f"checked at {d.edev}/rg), PUT DERCapability (PV, PV+storage)/DERSettings/DERStatus (state of charge) "
            f"and created a MirrorUsagePoint" + (f"; {len(failed)} failed" if failed else "")
        )
        assert self.ven is not None
        await self.ven.open()
        await self.ven.register()
        if self.ven.evs:
            await self.ven.register_reports()
        ev_kwh = sum(e.energy_wh for e in self.ven.evs) / 1000
        self.say(
            f"OpenADR 2.0b: VEN {VEN_NAME!r} registered over mutual TLS (venID {self.ven.ven_id}): an aggregator "
            f"of {len(self.ven.evs)} EV chargers ({sum(e.charger_w for e in self.ven.evs) / 1000:g} kW) at a "
            f"depot, cars needing {ev_kwh:g} kWh by {self.ven.evs[0].deadline_h:02.0f}:00 UTC; it offered a "
            f"TELEMETRY_USAGE report (oadrRegisterReport, one rID per charger) and accepted the VTN's request "
            f"{self.ven.report_request_id}"
        )

    async def map_fleet(self) -> None:
        code = quote(self.opts.grid, safe="")
        assert self.ven is not None
        for dev in self.fleet:
            await self.call(
                "POST",
                f"/api/v1/grid/models/{code}/mappings",
                {"bus": dev.site.bus, "kind": "device", "id": dev.lfdi},
            )
        await self.call(
            "POST",
            f"/api/v1/grid/models/{code}/mappings",
            {"bus": self.ven.bus, "kind": "ven", "id": self.ven.ven_id},
        )
        self.say(
            f"grid: {len(self.fleet)} devices and the VEN mapped to their buses (`dso grid map`); they are "
            f"members of {self.zone_node!r}"
        )

    async def backfill(self) -> None:
        """A week of metered history: the sites over 2030.5 (one MirrorReadingSet per device and day), the
        aggregator's chargers over OpenADR (oadrUpdateReport, one rID each); every past day the same sunny day,
        unmanaged."""
        assert self.ven is not None
        end = int(time.time()) // STEP * STEP  # the interval under way is not metered yet
        first = end - 86_400 * self.opts.history_days
        for t0 in range(first, end, 86_400):
            mid = interval_mid(t0, STEPS)
            await asyncio.gather(*(d.post_readings(t0, d.site.net_w_at(mid)) for d in self.fleet))
            await self.ven.update_report(t0, self.ven.unmanaged(t0, STEPS))
        self.result.readings_posted = sum(d.readings_posted for d in self.fleet)
        feeder = np.sum([d.site.net_w_at(mid) for d in self.fleet], axis=0) / 1000
        self.say(
            f"history: {self.opts.history_days} days, {self.result.readings_posted} readings posted as "
            f"MirrorUsagePoint readings (one MirrorReadingSet per device and day); a day of it: peak export "
            f"{-feeder.min():.0f} kW at the transformer ({self.result.grid['transformer_kva']:g} kVA), peak "
            f"import {feeder.max():.0f} kW"
        )

    async def forecast(self) -> None:
        run = await self.call(
            "POST",
            "/api/v1/forecasts",
            {
                "node": self.zone_node,
                "horizon_s": 86_400 + 2 * STEP,  # from the interval under way: covers the plans' 24 h
                "step_s": STEP,
                "history_days": self.opts.history_days,
            },
        )
        mean = np.array([p["mean"] for p in run["points"]]) / 1000
        self.result.forecast = {
            "run": run["id"],
            "model": run["model"],
            "peak_export_kw": round(float(max(0.0, -mean.min())), 1),
            "peak_import_kw": round(float(mean.max()), 1),
        }
        self.say(
            f"forecast {self.zone_node} (run {run['id']}, {run['model']}, {run['history_points']} intervals of "
            f"history): next 24 h peak export {-mean.min():.0f} kW, peak import {mean.max():.0f} kW"
        )

    async def plan_and_dispatch(self, again: bool = False) -> None:
        """Plan now (what the scheduler's turn does) and dispatch; ``again``: the re-plan after the market, which
        counts on the flexibility bought and reconciles with the plan in force."""
        code = quote(self.opts.grid, safe="")
        if again:
            self.result.first_plan = {k: v for k, v in self.result.plan.items() if k != "outputs"}
        try:
            plan = await self.call("POST", "/api/v1/plans/runs", {"model": self.opts.grid})
        except CliError as exc:
            raise CliError(f"the plan failed: {exc}") from None
        full = await self.call("GET", f"/api/v1/plans/runs/{plan['id']}")
        self.day0 = int(dt.datetime.fromisoformat(plan["start"]).timestamp())
        self.steps = int(plan["steps"])
        s = full["check"]["summary"]
        t: dict[str, Any] = next(iter(full["check"]["transformers"].values()), {})
        dispatched = (full.get("outputs") or {}).get("dispatched") or {}
        events = full.get("events") or []
        self.result.controls = sorted({e["event"] for e in events if e["resource"].startswith("device:")})
        self.result.ven_events = sorted({e["event"] for e in events if e["resource"].startswith("ven:")})
        self.result.plan = {
            "id": plan["id"],
            "status": plan["status"],
            "violation_intervals_before": s["violation_intervals_before"],
            "violation_intervals_after": s["violation_intervals_after"],
            "curtailed_kwh": s["curtailed_kwh"],
            "battery_kwh": s["battery_kwh"],
            "shed_kwh": s["shed_kwh"],
            "transformer_before_max_pct": t.get("before_max_pct"),
            "transformer_after_max_pct": t.get("after_max_pct"),
            "power_flows": full["check"]["power_flows"],
            "seconds": s["seconds"],
            "dispatched": dispatched,
            "cleared_flexibility_counted": (full.get("inputs") or {}).get("cleared_flexibility", []),
            "outputs": full["outputs"],
        }
        if again:
            bought = sum(c["kwh"] for c in self.result.plan["cleared_flexibility_counted"])
            first = self.result.first_plan
            self.say(
                f"re-plan {plan['id']} counting on the {bought:g} kWh bought: curtail {s['curtailed_kwh']:g} kWh "
                f"instead of {first['curtailed_kwh']:g} kWh, forecast violations {s['violation_intervals_after']} "
                f"planned (transformer up to {t.get('after_max_pct')} %); dispatch reconciled with plan "
                f"{first['id']}: {dispatched.get('created', 0)} created, {dispatched.get('kept', 0)} kept, "
                f"{dispatched.get('cancelled', 0)} cancelled, {len(self.result.controls)} DERControls in force"
            )
            return
        self.say(
            f"plan {plan['id']} of {self.opts.grid} for the next {self.steps * STEP / 3600:g} h from "
            f"{dt.datetime.fromtimestamp(self.day0, dt.UTC):%a %H:%M} UTC ({full['check']['power_flows']} AC "
            f"power flows, {s['seconds']:g} s): forecast "
            f"violations in {s['violation_intervals_before']} intervals (transformer up to "
            f"{t.get('before_max_pct')} %) -> {s['violation_intervals_after']} planned "
            f"({t.get('after_max_pct')} %); curtail {s['curtailed_kwh']:g} kWh, batteries move "
            f"{s['battery_kwh']:g} kWh"
        )
        self.say(
            f"dispatch: {len(self.result.controls)} DERControls (opModExpLimW envelopes, opModTargetW setpoints) "
            f"in the plan's 2030.5 programs, {len(self.result.ven_events)} OpenADR event(s); "
            f"{dispatched.get('created', 0)} created, {dispatched.get('kept', 0)} kept "
            f"(`dso plan show {plan['id']}` says why each exists; GET /api/v1/grid/models/{code})"
        )

    async def offer_and_clear(self) -> bool:
        """The aggregator offers to raise its depot's import around noon (charge the cars on the sun); the
        DSO clears it against the curtailment its plan needs, at the cost of that curtailment."""
        assert self.ven is not None
        o = self.opts
        outputs = self.result.plan["outputs"]
        n = self.steps
        shape = solar_shape(interval_mid(self.day0, n))
        need = np.zeros(n)
        for res in outputs["resources"].values():
            if res["kind"] == "pv":
                planned = np.array(res["planned_kw"], float)[:n]
                need[: len(planned)] += (res["rated_kw"] * shape[: len(planned)] - planned).clip(0)
        if not self.ven.evs or need.sum() <= 0:
            self.say("market: nothing to buy (the plan curtails nothing, or the aggregator has no cars)")
            return False
        # the aggregator's window: the cars are plugged in around noon (09:30-13:30 UTC); of the two such
        # windows near the plan's 24 h, the one where the plan curtails most
        starts = self.day0 + np.arange(n) * STEP
        hours = 4.0
        best = max(
            (day * 86_400 + 34_200 for day in range(self.day0 // 86_400 - 1, self.day0 // 86_400 + 2)),
            key=lambda w: need[(starts >= w) & (starts < w + hours * 3600)].sum(),
        )
        a, b = max(best, self.day0), min(best + int(hours * 3600), self.day0 + n * STEP)
        # what the cars can take on top of their baseline there: the plan counts on the bought raise as import
        # it gets, whatever the hour the day starts at
        up_kw = self.ven.raise_kw(a, b)
        if up_kw <= 0:
            self.say(f"market: {VEN_NAME} can raise its import by nothing {self.at(a)}-{self.at(b)} UTC")
            return False
        offer = await self.call(
            "POST",
            "/api/v1/offers",
            {
                "ven": VEN_NAME,
                "start": dt.datetime.fromtimestamp(a, dt.UTC).isoformat(),
                "duration_s": int(b - a),
                "up_kw": up_kw,
                "price": o.offer_price,
            },
        )
        self.result.offers = [offer]
        self.say(
            f"market: {VEN_NAME} offers {up_kw:g} kW up (raise import: charge the cars on the sun) "
            f"{self.at(a)}-{self.at(b)} UTC at {o.offer_price:g}/kWh"
        )
        clearing = await self.call(
            "POST",
            "/api/v1/offers/clear",
            {
                "start": dt.datetime.fromtimestamp(self.day0, dt.UTC).isoformat(),
                "step_s": STEP,
                "up_kw": [round(float(x), 3) for x in need],
                "up_cost": o.curtail_cost,
            },
        )
        self.result.clearing = clearing
        kwh = sum(a["cleared_kwh"] for a in clearing["awards"])
        self.say(
            f"market: cleared against the plan's curtailment need ({need.sum() * STEP / 3600:.0f} kWh, "
            f"{o.curtail_cost:g}/kWh): {len(clearing['awards'])} award(s), {kwh:g} kWh bought for "
            f"{clearing['cost']:.2f}; the award is a LOAD_DISPATCH event to the VEN"
        )
        return bool(clearing["awards"])

    async def deliver(self) -> None:
        """Every device polls its controls (FSA -> DERProgram -> DERControlList) and acknowledges them; the
        VEN polls its events and opts in."""
        assert self.ven is not None
        await asyncio.gather(*(d.poll_controls() for d in self.fleet))
        changed = await self.ven.poll()
        await self.count_responses()
        live = [c for d in self.fleet for c in d.controls.values() if c.status not in GONE]
        gone = sum(len(d.controls) for d in self.fleet) - len(live)
        self.say(
            f"delivery: {self.result.fetched}/{len(self.fleet)} devices fetched their DERControls over 2030.5 "
            f"(FSA -> DERProgram -> DERControlList): {len(live)} in force "
            f"({sum(1 for c in live if c.target_w is not None)} battery setpoints)"
            + (f", {gone} of the first plan superseded or cancelled" if gone else "")
            + f"; {self.result.acknowledged}/{len(self.result.controls)} of the plan's acknowledged (Response 1 "
            f"received); the VEN polled {changed} event(s) and opted in (oadrCreatedEvent)"
        )

    async def count_responses(self) -> None:
        acked = 0
        for event_id in self.result.controls:
            statuses = {r["status"] for r in await self.call("GET", f"/api/v1/controls/{event_id}/responses")}
            acked += 1 in statuses
        self.result.acknowledged = acked
        self.result.fetched = sum(1 for d in self.fleet if d.controls)

    async def play(self) -> None:
        """The simulated day, interval by interval, two hours at a time: each device and the aggregator do what
        their controls say and post what their meters measured (the devices keep polling their controls)."""
        assert self.ven is not None
        days: dict[str, list[Day]] = {d.lfdi: [] for d in self.fleet}
        chunk = 8  # two hours
        pause = self.opts.play_s / (self.steps / chunk)
        ev_day = self.ven.play(self.day0, self.steps)  # the aggregator schedules its cars for the day
        self.result.ev_day = ev_day
        for k in range(0, self.steps, chunk):
            t0 = self.day0 + k * STEP
            chunk = min(chunk, self.steps - k)
            if k and k % (4 * chunk) == 0:
                await asyncio.gather(*(d.poll_controls() for d in self.fleet))
            parts = [d.play(t0, chunk) for d in self.fleet]
            for d, part in zip(self.fleet, parts, strict=True):
                days[d.lfdi].append(part)
            await asyncio.gather(
                *(d.post_readings(t0, p.net_w) for d, p in zip(self.fleet, parts, strict=True))
            )
            await self.ven.update_report(t0, {n: w[k : k + chunk] for n, w in ev_day.per_ev_w.items()})
            avail = sum(p.pv_avail_w.sum() for p in parts) / chunk / 1000
            made = sum(p.pv_w.sum() for p in parts) / chunk / 1000
            net = (sum(p.net_w for p in parts) + ev_day.net_w[k : k + chunk]) / 1000
            flow = (
                f"{-net.min():5.1f} kW peak export" if net.min() < 0 else f"{net.max():5.1f} kW peak import"
            )
            self.say(
                f"day {self.at(t0)}-{self.at(t0 + chunk * STEP)} UTC: PV {made:5.1f} of {avail:5.1f} kW available, "
                f"batteries {sum(p.battery_w.sum() for p in parts) / chunk / 1000:+5.1f} kW (discharge +), EV "
                f"chargers {ev_day.net_w[k : k + chunk].mean() / 1000:4.1f} kW; at the transformer {flow}"
            )
            await asyncio.sleep(pause)
        for lfdi, parts in days.items():
            self.result.days[lfdi] = Day(
                self.day0,
                *(
                    np.concatenate([getattr(p, f) for p in parts])
                    for f in Day.__dataclass_fields__
                    if f != "start"
                ),
            )
        self.result.readings_posted = sum(d.readings_posted for d in self.fleet)

    async def measured(self) -> dict[int, np.ndarray]:
        """The played day as the server's telemetry store holds it, per bus (W per interval)."""
        assert self.ven is not None
        n = self.steps
        since = dt.datetime.fromtimestamp(self.day0, dt.UTC).isoformat()
        until = dt.datetime.fromtimestamp(self.day0 + n * STEP, dt.UTC).isoformat()
        out: dict[int, np.ndarray] = {}

        async def series(kind: str, sid: str) -> np.ndarray:
            """The source's readings per interval, its resources (a VEN's chargers) added up."""
            rows = await self.call(
                "GET",
                f"/api/v1/telemetry?source_kind={kind}&source_id={sid}&measurement=realPower"
                f"&since={quote(since)}&until={quote(until)}&limit=100000",
            )
            per: dict[str, np.ndarray] = {}
            for r in rows:
                i = int((dt.datetime.fromisoformat(r["ts"]).timestamp() - self.day0) // STEP)
                if 0 <= i < n:
                    per.setdefault(r.get("resource") or "", np.full(n, np.nan))[i] = r["value"]
            values = np.sum(list(per.values()), axis=0) if per else np.full(n, np.nan)
            if np.isnan(values).any():
                raise CliError(f"telemetry of {kind} {sid} misses {int(np.isnan(values).sum())} intervals")
            return values

        for d in self.fleet:
            out[d.site.bus] = out.get(d.site.bus, np.zeros(n)) + await series("device", d.lfdi)
        if self.ven.evs:
            out[self.ven.bus] = out.get(self.ven.bus, np.zeros(n)) + await series("ven", self.ven.ven_id)
        return out

    async def judge(self) -> None:
        assert self.ven is not None
        n = self.steps
        mid = interval_mid(self.day0, n)
        load = {d.site.bus: d.site.load_w_at(mid) for d in self.fleet}
        unmanaged = {d.site.bus: d.site.net_w_at(mid) for d in self.fleet}
        ev = np.sum([np.zeros(n), *self.ven.unmanaged(self.day0, n).values()], axis=0)
        unmanaged[self.ven.bus] = unmanaged.get(self.ven.bus, np.zeros(n)) + ev
        load_ev = {**load, self.ven.bus: load.get(self.ven.bus, 0) + ev}
        managed = await self.measured()
        played = self.result.ev_day.net_w if self.result.ev_day is not None else ev
        load_managed = {**load, self.ven.bus: load.get(self.ven.bus, 0) + played}
        a = await asyncio.to_thread(judge, self.model, unmanaged, load_ev)
        b = await asyncio.to_thread(judge, self.model, managed, load_managed)
        self.result.unmanaged, self.result.managed = a, b
        self.say(
            f"power flow (pandapower, {2 * n} runs): unmanaged day {a.intervals} intervals with violations "
            f"(transformer up to {a.trafo_max_pct:.0f} %, voltage up to {a.vm_max_pu:.3f} pu); the day the fleet's "
            f"telemetry shows {b.intervals} (transformer up to {b.trafo_max_pct:.0f} %, voltage up to "
            f"{b.vm_max_pu:.3f} pu)"
        )

    async def measure_events(self) -> None:
        """M&V (10-of-10 baseline, same-day adjustment) of the aggregator's cleared event and of every site's
        export-limit event in force at the unmanaged day's worst interval."""
        assert self.result.unmanaged is not None
        out: dict[str, Any] = {}
        offer_events = [a for a in self.result.clearing.get("awards", [])]
        if offer_events:
            offers = await self.call("GET", "/api/v1/offers?status=cleared")
            ids = [o["event_id"] for o in offers if o["id"] in {a["offer_id"] for a in offer_events}]
            for event_id in ids[:1]:
                mv = await self.call("GET", f"/api/v1/events/{event_id}/mv")
                total = [i for i in mv["program_total"] if i["delivered_kw"] is not None]
                out["ven_event"] = {
                    "event": event_id,
                    "method": mv["method"],
                    "intervals": len(total),
                    # delivered is measured - baseline where M&V reads the event as raising import
                    # ("generation": a positive delta), baseline - measured where it lowers it ("load")
                    "import_raised_kwh": round(
                        (1 if mv["direction"] == "generation" else -1)
                        * sum(i["delivered_kw"] for i in total)
                        * STEP
                        / 3600,
                        2,
                    ),
                }
        worst = self.result.unmanaged.interval_list
        if worst:
            peak = self.day0 + worst[len(worst) // 2] * STEP
            plan_events = await self.call("GET", f"/api/v1/plans/runs/{self.result.plan['id']}")
            held, measured, n = 0.0, 0, 0
            for pe in plan_events.get("events") or []:
                if not pe["resource"].startswith("device:") or pe["resource"].endswith(":storage"):
                    continue
                event = await self.call("GET", f"/api/v1/events/{pe['event']}")
                start = dt.datetime.fromisoformat(event["start"]).timestamp()
                end = start + event.get("duration_s", 0)
                if not start <= peak < end:
                    continue
                mv = await self.call("GET", f"/api/v1/events/{pe['event']}/mv")
                n += 1
                for i in mv["program_total"]:
                    if (
                        dt.datetime.fromisoformat(i["start"]).timestamp() == peak
                        and i["delivered_kw"] is not None
                    ):
                        held += i["delivered_kw"]
                        measured += 1
            out["export_limits_at_peak"] = {
                "at": dt.datetime.fromtimestamp(peak, dt.UTC).isoformat(),
                "events": n,
                "measured": measured,
                "export_held_back_kw": round(held, 2),
            }
        self.result.mv = out
        parts = []
        if "export_limits_at_peak" in out:
            x = out["export_limits_at_peak"]
            parts.append(
                f"{x['measured']} export-limit events at {self.at(int(peak))} UTC held back "
                f"{x['export_held_back_kw']:g} kW against their baselines"
            )
        if "ven_event" in out:
            parts.append(f"the aggregator raised its import by {out['ven_event']['import_raised_kwh']:g} kWh")
        self.say("M&V (`dso mv EVENT`, 10-of-10 baseline): " + ("; ".join(parts) or "no events to measure"))

    # ------------------------------------------------------------------------------------------------ summary
    def figures(self) -> dict[str, Any]:
        r = self.result
        days = list(r.days.values())
        curtailed = sum(d.curtailed_wh for d in days) / 1000
        h = STEP / 3600
        charged = sum(float((-d.battery_w).clip(0).sum()) for d in days) * h / 1000
        discharged = sum(float(d.battery_w.clip(0).sum()) for d in days) * h / 1000
        ev = r.ev_day
        evs = self.ven.evs if self.ven else []
        cleared_kwh = sum(a["cleared_kwh"] for a in r.clearing.get("awards", []))
        plan = {k: v for k, v in r.plan.items() if k != "outputs"}
        if r.first_plan:
            plan["before_market"] = r.first_plan
        return {
            "grid": r.grid,
            "day_start": dt.datetime.fromtimestamp(self.day0, dt.UTC).isoformat(),
            "day_hours": self.steps * STEP / 3600,
            "sites": len(self.fleet),
            "enrolled": r.enrolled,
            "pv_kw": sum(d.site.pv_w for d in self.fleet) / 1000,
            "batteries": sum(1 for d in self.fleet if d.site.battery_w > 0),
            "evs": len(evs),
            "ven": self.ven.ven_id if self.ven else None,
            "forecast": r.forecast,
            "plan": plan,
            "controls_dispatched": len(r.controls),
            "controls_fetched_by": r.fetched,
            "controls_acknowledged": r.acknowledged,
            "ven_events": len(r.ven_events) + len(r.clearing.get("awards", [])),
            "violations_unmanaged": r.unmanaged.intervals if r.unmanaged else None,
            "violations_managed": r.managed.intervals if r.managed else None,
            "unmanaged": r.unmanaged.to_dict() if r.unmanaged else None,
            "managed": r.managed.to_dict() if r.managed else None,
            "curtailed_kwh": round(curtailed, 2),
            "pv_available_kwh": round(sum(float(d.pv_avail_w.sum()) for d in days) * h / 1000, 1),
            "battery_charged_kwh": round(charged, 2),
            "battery_discharged_kwh": round(discharged, 2),
            # the cars whose deadline falls in the simulated 24 h: energy needed, lacking at the deadline
            "ev_energy_needed_kwh": round(ev.needed_wh / 1000, 1) if ev else 0.0,
            "ev_energy_short_kwh": round(ev.short_wh / 1000, 2) if ev else 0.0,
            "ev_full_by_deadline": f"{ev.full}/{ev.due}" if ev else "0/0",
            "ev_charged_kwh": round(float(ev.net_w.sum()) * h / 1000, 1) if ev else 0.0,
            "flexibility": {
                "offers": len(r.offers),
                "awards": len(r.clearing.get("awards", [])),
                "bought_kwh": round(cleared_kwh, 2),
                "cost": round(r.clearing.get("cost", 0.0), 2),
                "unmet_up_kw_max": round(max(r.clearing.get("unmet_up_kw") or [0.0]), 2),
            },
            "flexibility_bought_kwh": round(cleared_kwh, 2),
            "mv": r.mv,
            "readings_posted": r.readings_posted,
            "ven_values_reported": self.ven.reported if self.ven else 0,
            "errors": r.errors[:5],
            "seconds": round(time.monotonic() - self.t0, 1),
            "outcome": "OK" if self.ok() else "INCOMPLETE",
        }

    def summary(self) -> str:
        f = self.figures()
        g, p, fl = f["grid"], f["plan"], f["flexibility"]
        u, m = f["unmanaged"] or {}, f["managed"] or {}
        lines = [
            "",
            "OpenDSO demo summary",
            f"  server          {self.settings.server_url} (2030.5 at /dcap, OpenADR 2.0b, mutual TLS)   "
            f"admin {self.settings.admin_url}",
            f"  data dir        {self.settings.base_dir}   database {self.settings.database_url}",
            f"  grid            SimBench {g['code']}: {g['buses']} buses, {g['transformer_kva']:g} kVA transformer",
            f"  fleet           {f['enrolled']}/{f['sites']} sites over 2030.5 ({f['pv_kw']:g} kW PV, "
            f"{f['batteries']} batteries), VEN {f['ven']} with {f['evs']} EV chargers over OpenADR 2.0b",
            f"  day             {f['day_hours']:g} h from {f['day_start'][:16].replace('T', ' ')} UTC, played in "
            f"{self.opts.play_s:g} s: a sunny June day whatever the date",
            f"  plan            {p.get('id')}: forecast violations {p.get('violation_intervals_before')} -> "
            f"{p.get('violation_intervals_after')} intervals, curtailing {p.get('curtailed_kwh'):g} kWh"
            + (
                f" (plan {p['before_market']['id']} before the market: {p['before_market']['curtailed_kwh']:g} kWh)"
                if p.get("before_market")
                else ""
            ),
            f"  controls        {f['controls_dispatched']} DERControls dispatched, {f['controls_acknowledged']} "
            f"acknowledged; {f['ven_events']} OpenADR event(s) to the VEN",
            f"  violations      unmanaged {f['violations_unmanaged']} intervals (transformer {u.get('trafo_max_pct')} %, "
            f"{u.get('vm_max_pu')} pu) -> managed {f['violations_managed']} (transformer {m.get('trafo_max_pct')} %, "
            f"{m.get('vm_max_pu')} pu), by AC power flow on the fleet's telemetry",
            f"  curtailment     {f['curtailed_kwh']:g} kWh of {f['pv_available_kwh']:g} kWh PV; batteries charged "
            f"{f['battery_charged_kwh']:g} kWh, discharged {f['battery_discharged_kwh']:g} kWh",
            f"  EV charging     {f['ev_charged_kwh']:g} kWh charged; {f['ev_full_by_deadline']} cars charged by their "
            f"deadline ({f['ev_energy_short_kwh']:g} kWh short of {f['ev_energy_needed_kwh']:g} kWh)",
            f"  flexibility     {fl['bought_kwh']:g} kWh bought from {fl['awards']} offer(s) for {fl['cost']:.2f} "
            f"(pay as offered)",
        ]
        mv = f["mv"]
        if mv:
            x = mv.get("export_limits_at_peak") or {}
            v = mv.get("ven_event") or {}
            lines.append(
                f"  M&V             export held back at {x.get('at', '?')[11:16]} UTC: "
                f"{x.get('export_held_back_kw', 0):g} kW ({x.get('measured', 0)} sites); aggregator import raised "
                f"{v.get('import_raised_kwh', 0):g} kWh (event {v.get('event', '-')})"
            )
        if f["errors"]:
            lines.append(f"  errors          {len(self.result.errors)}, first: {f['errors'][0]}")
        lines.append(f"  wall time       {f['seconds']:g} s")
        lines.append(f"  outcome         {f['outcome']}")
        return "\n".join(lines)

    def ok(self) -> bool:
        r = self.result
        return (
            r.enrolled == len(self.fleet) > 0
            and bool(r.controls)
            and r.acknowledged == len(r.controls)
            and r.unmanaged is not None
            and r.managed is not None
            and r.managed.intervals < r.unmanaged.intervals
        )


def next_steps(settings: Settings, opts: DemoOptions) -> str:
    """What to try after a bounded run: everything the demo made stays in its data directory."""
    cfg = settings.source or Path(settings.base_dir) / "dso.toml"
    return (
        f"\nnext: serve the demo's data directory and look around\n"
        f"  dso serve -c {cfg} &\n  export DSO_CONFIG={cfg}\n  dso device list\n"
        f"  dso grid list\n  dso plan list\n  dso plan show 1\n  dso offers list\n  dso mv EVENT\n"
        f"or run `dso demo --keep-serving` to keep the server running too"
    )


async def run_demo(
    settings: Settings, opts: DemoOptions, as_json: bool = False, out: Callable[[str], None] = print
) -> Demo:
    """Start the server on this loop, run the fleet and the staff steps, print the summary (stdout; progress on
    stderr); stop (or keep serving until SIGINT/SIGTERM with ``keep_serving``)."""
    import json

    from server.app import serve

    demo = Demo(settings, opts)
    stop_server = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop_server), name="dso-serve")

    async def flow() -> None:
        await demo.wait_healthy(server)
        demo.say(
            f"server up: 2030.5/OpenADR on {settings.server_url} (mutual TLS), admin API on {settings.admin_url}"
        )
        sites = await demo.import_grid()
        await demo.setup_fleet(sites)
        await demo.enrol_fleet()
        await demo.map_fleet()
        await demo.backfill()
        await demo.forecast()
        await demo.plan_and_dispatch()
        if await demo.offer_and_clear():
            await demo.plan_and_dispatch(again=True)
        await demo.deliver()
        await demo.play()
        await demo.judge()
        await demo.measure_events()
        if as_json:
            out(json.dumps(demo.figures()))
        else:
            out(demo.summary())

    try:
        steps = asyncio.create_task(flow(), name="demo")
        interrupted = asyncio.create_task(stop_server.wait())  # SIGINT/SIGTERM (serve's handlers set it)
        await asyncio.wait({steps, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if not steps.done():
            steps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await steps
            demo.out("\ninterrupted: stopping the fleet and the server")
        else:
            interrupted.cancel()
            steps.result()
            if opts.keep_serving:
                cfg = settings.source or Path(settings.base_dir) / "dso.toml"
                demo.out(
                    f"\nstill serving; Ctrl-C stops. Try:\n  export DSO_CONFIG={cfg}\n  dso status\n"
                    f"  dso device list\n  dso plan list\n  dso control list --lfdi {demo.fleet[0].lfdi}"
                )
                await stop_server.wait()
            elif not as_json:
                demo.out(next_steps(settings, opts))
    except (SimError, aiohttp.ClientError) as exc:
        raise CliError(f"demo failed: {exc}") from exc
    finally:
        for d in demo.fleet:
            await d.close()
        if demo.ven is not None:
            await demo.ven.close()
        stop_server.set()
        await server
    return demo
