"""One simulated 2030.5 DER client: a rooftop PV inverter (with a battery behind the same meter at some sites)
speaking to the server the way a CSIP device does, over mutual TLS with its own certificate.

* discovery and enrolment: DeviceCapability -> EndDeviceList -> its EndDevice (enrolled out of band by the
  utility; registers itself in band when the server allows it and it is not there) -> Registration PIN check;
* reports: DERCapability (nameplate; DERType 4 PV or 83 PV and storage with the battery's power and energy
  ratings), DERSettings and DERStatus (with the battery's state of charge) under its DER;
* metering: one MirrorUsagePoint with the site's net real power (import positive, W, 15-minute intervals), history
  posted as one MirrorReadingSet per day, live readings at the server's postRate;
* controls: polls FunctionSetAssignments -> DERProgramList -> DERControlList at the server's pollRate, answers
  every control that asks for it with Responses (1 received, 2 started when it becomes active);
* physics (``play``): over simulated intervals the inverter keeps the site's export within an active
  opModExpLimW (curtailing PV), and the battery follows an active opModTargetW (discharge positive) within its
  power rating and state of charge; without a setpoint the battery is idle (backup reserve).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from lxml import etree

from server.core.der_controls import encode_power
from server.sep2 import xml
from server.sim.profiles import Site, interval_mid

SEP = "application/sep+xml"
MAX_BODY = 4 << 20  # bytes of one server answer the simulator accepts
STEP = 900
RESPONSE_RECEIVED, RESPONSE_STARTED = 1, 2
ACTIVE = 1  # EventStatus currentStatus
GONE = {2, 3, 4}  # cancelled, cancelled with randomization, superseded: no longer to be followed
BATTERY_EFFICIENCY = 0.95  # one way
SOC0 = 0.5  # state of charge at the start of the simulated day


def link(el: etree._Element, name: str) -> str | None:
    node = xml.find(el, name)
    return None if node is None else node.get("href")


class SimError(Exception):
    pass


@dataclass
class SeenControl:
    mrid: str
    href: str
    start: int
    duration: int
    export_limit_w: float | None
    reply_to: str | None
    target_w: float | None = None  # opModTargetW: battery discharge positive
    status: int = 0
    responses: set[int] = field(default_factory=set)


@dataclass
class Day:
    """What a site did over simulated intervals (W per interval, and the battery's energy at each end)."""

    start: int
    net_w: np.ndarray
    load_w: np.ndarray
    pv_avail_w: np.ndarray
    pv_w: np.ndarray
    battery_w: np.ndarray  # discharge positive
    soc_wh: np.ndarray
    limited: np.ndarray  # bool: an export limit was active

    @property
    def curtailed_wh(self) -> float:
        return float((self.pv_avail_w - self.pv_w).clip(0).sum() * STEP / 3600)


@dataclass
class SimDevice:
    site: Site
    cert: dict  # from DevPki.issue_device: cert, key, lfdi, sfdi
    base_url: str
    ca: str
    pin: int
    allow_in_band: bool = True
    edev: str = ""
    poll_rate_s: int = 300
    post_rate_s: int = 300
    mup: str = ""
    readings_posted: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    controls: dict[str, SeenControl] = field(default_factory=dict)
    registered_in_band: bool = False
    soc_wh: float = -1.0  # the battery's energy now (-1: not started)
    _session: aiohttp.ClientSession | None = None
    _links: dict[str, str] = field(default_factory=dict)

    @property
    def lfdi(self) -> str:
        return self.cert["lfdi"]

    # mRIDs are global: the device's own LFDI keeps them apart from every other device's
    @property
    def mup_mrid(self) -> str:
        return self.lfdi[:30] + "5E"

    @property
    def power_mrid(self) -> str:  # the site's real power MirrorMeterReading
        return self.lfdi[:30] + "01"

    # ------------------------------------------------------------------------------------------------ transport
    async def open(self) -> None:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert["cert"], self.cert["key"])
        self._session = aiohttp.ClientSession(
            self.base_url,
            connector=aiohttp.TCPConnector(ssl=ctx, limit=2),
            timeout=aiohttp.ClientTimeout(total=30),
            headers={"Accept": SEP},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str | None, bytes]:
        assert self._session is not None, "open() first"
        headers = {"Content-Type": SEP} if body is not None else None
        self.requests += 1
        async with self._session.request(method, path, data=body, headers=headers) as r:
            raw = await r.read()
            return r.status, r.headers.get("Location"), raw

    async def get(self, path: str) -> etree._Element:
        status, _, raw = await self._call("GET", path)
        if status != 200:
            raise SimError(f"GET {path}: {status} {raw[:200]!r}")
        return xml.parse(raw, max_bytes=MAX_BODY)  # hardened and schema-checked, as the server reads devices

    async def send(
        self, method: str, path: str, body: etree._Element, expect: tuple[int, ...] = (201, 204)
    ) -> str | None:
        status, location, raw = await self._call(method, path, xml.serialize(body))
        if status not in expect:
            raise SimError(f"{method} {path}: {status} {raw[:300]!r}")
        return location

    # ------------------------------------------------------------------------------------------------ enrolment
    async def enrol(self) -> None:
        dcap = await self.get("/dcap")
        for name in ("EndDeviceListLink", "MirrorUsagePointListLink", "TimeLink", "ResponseSetListLink"):
            href = link(dcap, name)
            if href:
                self._links[name] = href
        edev_list = self._links.get("EndDeviceListLink")
        if not edev_list:
            raise SimError("DeviceCapability has no EndDeviceListLink")
        self.edev = await self._find_self(edev_list)
        if not self.edev:
            if not self.allow_in_band:
                raise SimError("not enrolled, and in-band registration is off for this device")
            self.edev = (
                await self.send(
                    "POST",
                    edev_list,
                    xml.E(
                        "EndDevice",
                        None,
                        xml.leaf("deviceCategory", f"{0x4000:X}"),
                        xml.leaf("lFDI", self.lfdi),
                        xml.leaf("sFDI", self.cert["sfdi"]),
                        xml.leaf("changedTime", int(time.time())),
                    ),
                )
                or ""
            )
            self.registered_in_band = True
        edev = await self.get(self.edev)
        self.post_rate_s = int(xml.text(edev, "postRate") or self.post_rate_s)
        rg = link(edev, "RegistrationLink")
        if rg:
            pin = int(xml.text(await self.get(rg), "pIN") or -1)
            if pin != self.pin:
                raise SimError(
                    f"Registration PIN {pin} does not match the installer's {self.pin}: not this server"
                )
        self._links["FunctionSetAssignmentsListLink"] = link(edev, "FunctionSetAssignmentsListLink") or ""
        self._links["DERListLink"] = link(edev, "DERListLink") or ""

    async def _find_self(self, edev_list: str) -> str:
        lst = await self.get(f"{edev_list}?l=255")
        for el in lst.findall(xml.q("EndDevice")):
            if (xml.text(el, "lFDI") or "").upper() == self.lfdi.upper():
                return el.get("href") or ""
        return ""

    # -------------------------------------------------------------------------------------------------- reports
    async def report_der(self, now: int) -> None:
        der_list = await self.get(f"{self._links['DERListLink']}?l=1")
        der = xml.find(der_list, "DER")
        if der is None:
            raise SimError("the DERList is empty")
        site = self.site

        def power(tag: str, watts: float) -> etree._Element:
            w, mult = encode_power(watts)  # a 2030.5 ActivePower: Int16 value, power of ten
            return xml.E(tag, None, xml.leaf("multiplier", mult), xml.leaf("value", w))

        def status(tag: str, value: str) -> etree._Element:
            return xml.E(tag, None, xml.leaf("dateTime", now), xml.leaf("value", value))

        storage = site.battery_w > 0
        rates = [power("rtgMaxChargeRateW", site.battery_w), power("rtgMaxDischargeRateW", site.battery_w)]
        await self.send(
            "PUT",
            link(der, "DERCapabilityLink") or "",
            xml.E(
                "DERCapability",
                None,
                xml.leaf("modesSupported", "00500088"),
                rates if storage else [],
                power("rtgMaxVA", site.pv_w),
                power("rtgMaxW", site.pv_w),
                [power("rtgMaxWh", site.battery_wh)] if storage else [],
                xml.leaf("type", site.der_type),
            ),
        )
        await self.send(
            "PUT",
            link(der, "DERSettingsLink") or "",
            xml.E(
                "DERSettings",
                None,
                xml.leaf("setGradW", 27),
                power("setMaxW", site.pv_w),
                xml.leaf("updatedTime", now),
            ),
        )
        soc = []
        if storage:
            if self.soc_wh < 0:
                self.soc_wh = SOC0 * site.battery_wh
            pct = int(round(10_000 * self.soc_wh / site.battery_wh))  # PerCent: hundredths of a percent
            soc = [xml.E("stateOfChargeStatus", None, xml.leaf("dateTime", now), xml.leaf("value", pct))]
        await self.send(
            "PUT",
            link(der, "DERStatusLink") or "",
            xml.E(
                "DERStatus",
                None,
                status("genConnectStatus", "07"),
                status("inverterStatus", "4"),
                status("operationalModeStatus", "2"),
                xml.leaf("readingTime", now),
                soc,
            ),
        )

    # ------------------------------------------------------------------------------------------------- metering
    async def create_mup(self) -> None:
        mups = self._links.get("MirrorUsagePointListLink") or "/mup"
        self.mup = (
            await self.send(
                "POST",
                mups,
                xml.E(
                    "MirrorUsagePoint",
                    None,
                    xml.leaf("mRID", self.mup_mrid),
                    xml.leaf("description", f"{self.site.name} site"),
                    xml.leaf("roleFlags", 49),
                    xml.leaf("serviceCategoryKind", 0),
                    xml.leaf("status", 1),
                    xml.leaf("deviceLFDI", self.lfdi),
                    xml.E(
                        "MirrorMeterReading",
                        None,
                        xml.leaf("mRID", self.power_mrid),
                        xml.leaf("description", "site real power"),
                        reading_type(),
                    ),
                ),
                expect=(201, 204),
            )
            or ""
        )
        if not self.mup:
            raise SimError("POST MirrorUsagePoint gave no Location")

    async def post_readings(self, start: int, values: np.ndarray, step: int = STEP) -> None:
        """One MirrorReadingSet of consecutive interval readings (W) starting at ``start``."""
        readings = [xml.E("Reading", None, xml.leaf("value", int(round(v)))) for v in values]
        await self.send(
            "POST",
            self.mup,
            xml.E(
                "MirrorMeterReading",
                None,
                xml.leaf("mRID", self.power_mrid),
                xml.E(
                    "MirrorReadingSet",
                    None,
                    xml.leaf("mRID", f"{start:010X}{self.lfdi[:20]}02"),
                    xml.leaf("description", "site"),
                    xml.E(
                        "timePeriod", None, xml.leaf("duration", len(values) * step), xml.leaf("start", start)
                    ),
                    readings,
                ),
            ),
        )
        self.readings_posted += len(values)

    def site_power_w(self, ts: int) -> float:
        """What the site meters now: its net power, with the inverter held to an active export limit."""
        net = float(self.site.net_w_at(np.array([ts], dtype="datetime64[s]"))[0])
        limit = self.active_export_limit(ts)
        return max(net, -limit) if limit is not None else net

    # ------------------------------------------------------------------------------------------------- controls
    def _active(self, ts: int) -> list[SeenControl]:
        return [
            c for c in self.controls.values() if c.status not in GONE and c.start <= ts < c.start + c.duration
        ]

    def active_export_limit(self, ts: int) -> float | None:
        limits = [c.export_limit_w for c in self._active(ts) if c.export_limit_w is not None]
        return min(limits) if limits else None

    def active_target(self, ts: int) -> float | None:
        """The battery setpoint in force (the newest control's, when several are)."""
        found = sorted((c.start, c.target_w) for c in self._active(ts) if c.target_w is not None)
        return found[-1][1] if found else None

    def play(self, start: int, steps: int) -> Day:
        """The site over ``steps`` simulated intervals from ``start``: PV and load as the weather and the
        household make them, the inverter and battery as the controls in force at each interval's middle say.
        The battery's state of charge carries over from one call to the next."""
        site, h = self.site, STEP / 3600
        mid = interval_mid(start, steps)
        load, avail = site.load_w_at(mid), site.pv_w_at(mid)
        pv, bat, soc, limited = np.zeros(steps), np.zeros(steps), np.zeros(steps), np.zeros(steps, bool)
        if self.soc_wh < 0:
            self.soc_wh = SOC0 * site.battery_wh
        for i, ts in enumerate(mid.astype(np.int64)):
            target = self.active_target(int(ts)) if site.battery_w > 0 else None
            p = 0.0
            if target is not None:
                p = float(np.clip(target, -site.battery_w, site.battery_w))
                if p > 0:  # discharge: what is stored, less losses
                    p = min(p, self.soc_wh * BATTERY_EFFICIENCY / h)
                else:  # charge: the room left
                    p = -min(-p, (site.battery_wh - self.soc_wh) / BATTERY_EFFICIENCY / h)
                self.soc_wh -= (p / BATTERY_EFFICIENCY if p > 0 else p * BATTERY_EFFICIENCY) * h
            limit = self.active_export_limit(int(ts))
            out = float(avail[i])
            if limit is not None:  # the site's export held to the limit: PV curtailed as needed
                out = float(np.clip(load[i] - p + limit, 0.0, avail[i]))
                limited[i] = True
            pv[i], bat[i], soc[i] = out, p, self.soc_wh
        return Day(start, load - pv - bat, load, avail, pv, bat, soc, limited)

    async def poll_controls(self) -> None:
        fsa_link = self._links.get("FunctionSetAssignmentsListLink")
        if not fsa_link:
            return
        fsas = await self.get(f"{fsa_link}?l=255")
        self.poll_rate_s = int(fsas.get("pollRate") or self.poll_rate_s)
        for fsa in fsas.findall(xml.q("FunctionSetAssignments")):
            derp_link = link(fsa, "DERProgramListLink")
            if not derp_link:
                continue
            for program in (await self.get(f"{derp_link}?l=255")).findall(xml.q("DERProgram")):
                derc_link = link(program, "DERControlListLink")
                if derc_link:
                    for control in (await self.get(f"{derc_link}?l=255")).findall(xml.q("DERControl")):
                        await self._see(control)

    async def _see(self, el: etree._Element) -> None:
        mrid = xml.text(el, "mRID") or ""
        seen = self.controls.get(mrid)
        if seen is None:
            limit = xml.find(el, "DERControlBase/csipaus:opModExpLimW")  # a CSIP-AUS element
            export = None
            if limit is not None:
                export = float(xml.text(limit, "value") or 0) * 10.0 ** int(
                    xml.text(limit, "multiplier") or 0
                )
            target = xml.find(el, "DERControlBase/opModTargetW")
            seen = SeenControl(
                mrid,
                el.get("href") or "",
                int(xml.text(el, "interval/start") or 0),
                int(xml.text(el, "interval/duration") or 0),
                export,
                el.get("replyTo"),
                None
                if target is None
                else float(xml.text(target, "value") or 0) * 10.0 ** int(xml.text(target, "multiplier") or 0),
            )
            self.controls[mrid] = seen
        seen.status = int(xml.text(el, "EventStatus/currentStatus") or 0)
        required = int(el.get("responseRequired") or "0", 16)
        if not seen.reply_to or not required:
            return
        await self._respond(seen, RESPONSE_RECEIVED)
        if int(xml.text(el, "EventStatus/currentStatus") or -1) == ACTIVE:
            await self._respond(seen, RESPONSE_STARTED)

    async def _respond(self, control: SeenControl, status: int) -> None:
        if status in control.responses or not control.reply_to:
            return
        await self.send(
            "POST",
            control.reply_to,
            xml.E(
                "Response",
                None,
                xml.leaf("createdDateTime", int(time.time())),
                xml.leaf("endDeviceLFDI", self.lfdi),
                xml.leaf("status", status),
                xml.leaf("subject", control.mrid),
            ),
        )
        control.responses.add(status)

    # ----------------------------------------------------------------------------------------------------- live
    async def run_live(
        self, stop: asyncio.Event, post_every_s: float | None = None, poll_every_s: float | None = None
    ) -> None:
        """Post live readings and poll controls until ``stop`` (the server's rates unless overridden)."""
        next_post = next_poll = 0.0
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_poll:
                    await self.poll_controls()
                    next_poll = now + (poll_every_s or self.poll_rate_s)
                if now >= next_post:
                    ts = int(time.time())
                    await self.post_readings(ts // 60 * 60, np.array([self.site_power_w(ts)]), step=60)
                    next_post = now + (post_every_s or self.post_rate_s)
            except (TimeoutError, SimError, aiohttp.ClientError) as exc:
                self.errors.append(str(exc))
                if len(self.errors) > 20:
                    raise
            wait = max(0.05, min(next_poll, next_post) - time.monotonic())
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass


def reading_type() -> etree._Element:
    # instantaneous real power (kind 37, uom 38 = W), forward flow (import positive), 15-minute intervals
    return xml.E(
        "ReadingType",
        None,
        xml.leaf("accumulationBehaviour", 12),
        xml.leaf("dataQualifier", 2),
        xml.leaf("flowDirection", 1),
        xml.leaf("intervalLength", STEP),
        xml.leaf("kind", 37),
        xml.leaf("phase", 0),
        xml.leaf("powerOfTenMultiplier", 0),
        xml.leaf("uom", 38),
    )


def utc(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")
