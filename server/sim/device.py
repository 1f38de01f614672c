"""One simulated 2030.5 DER client: a rooftop PV inverter at a customer site speaking to the server the way a CSIP
device does, over mutual TLS with its own certificate.

* discovery and enrolment: DeviceCapability -> EndDeviceList -> its EndDevice (enrolled out of band by the
  utility; registers itself in band when the server allows it and it is not there) -> Registration PIN check;
* reports: DERCapability (nameplate), DERSettings and DERStatus under its DER;
* metering: one MirrorUsagePoint with the site's net real power (import positive, W, 15-minute intervals), history
  posted as one MirrorReadingSet per day, live readings at the server's postRate;
* controls: polls FunctionSetAssignments -> DERProgramList -> DERControlList at the server's pollRate, answers
  every control that asks for it with Responses (1 received, 2 started when it becomes active), and keeps the
  site's export within an active opModExpLimW.
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

from server.sim.profiles import Site

NS = "urn:ieee:std:2030.5:ns"
SEP = "application/sep+xml"
STEP = 900
RESPONSE_RECEIVED, RESPONSE_STARTED = 1, 2
ACTIVE = 1  # EventStatus currentStatus


def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def find_text(el: etree._Element, path: str) -> str | None:
    node = el.find("/".join(q(p) for p in path.split("/")))
    return None if node is None else node.text


def link(el: etree._Element, name: str) -> str | None:
    node = el.find(q(name))
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
    responses: set[int] = field(default_factory=set)


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
            self.base_url, connector=aiohttp.TCPConnector(ssl=ctx, limit=2),
            timeout=aiohttp.ClientTimeout(total=30), headers={"Accept": SEP})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: str | None = None) -> tuple[int, str | None, bytes]:
        assert self._session is not None, "open() first"
        headers = {"Content-Type": SEP} if body is not None else None
        self.requests += 1
        async with self._session.request(method, path, data=body.encode() if body else None,
                                         headers=headers) as r:
            raw = await r.read()
            return r.status, r.headers.get("Location"), raw

    async def get(self, path: str) -> etree._Element:
        status, _, raw = await self._call("GET", path)
        if status != 200:
            raise SimError(f"GET {path}: {status} {raw[:200]!r}")
        return etree.fromstring(raw)

    async def send(self, method: str, path: str, body: str, expect: tuple[int, ...] = (201, 204)) -> str | None:
        status, location, raw = await self._call(method, path, body)
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
            self.edev = await self.send("POST", edev_list, (
                f'<EndDevice xmlns="{NS}"><deviceCategory>{0x4000:X}</deviceCategory><lFDI>{self.lfdi}</lFDI>'
                f"<sFDI>{self.cert['sfdi']}</sFDI><changedTime>{int(time.time())}</changedTime></EndDevice>")) or ""
            self.registered_in_band = True
        edev = await self.get(self.edev)
        self.post_rate_s = int(find_text(edev, "postRate") or self.post_rate_s)
        rg = link(edev, "RegistrationLink")
        if rg:
            pin = int(find_text(await self.get(rg), "pIN") or -1)
            if pin != self.pin:
                raise SimError(f"Registration PIN {pin} does not match the installer's {self.pin}: not this server")
        self._links["FunctionSetAssignmentsListLink"] = link(edev, "FunctionSetAssignmentsListLink") or ""
        self._links["DERListLink"] = link(edev, "DERListLink") or ""

    async def _find_self(self, edev_list: str) -> str:
        lst = await self.get(f"{edev_list}?l=255")
        for el in lst.findall(q("EndDevice")):
            if (find_text(el, "lFDI") or "").upper() == self.lfdi.upper():
                return el.get("href") or ""
        return ""

    # -------------------------------------------------------------------------------------------------- reports
    async def report_der(self, now: int) -> None:
        der_list = await self.get(f"{self._links['DERListLink']}?l=1")
        der = der_list.find(q("DER"))
        if der is None:
            raise SimError("the DERList is empty")
        w, mult = _active_power(self.site.pv_w)
        await self.send("PUT", link(der, "DERCapabilityLink") or "", (
            f'<DERCapability xmlns="{NS}"><modesSupported>00500088</modesSupported>'
            f"<rtgMaxVA><multiplier>{mult}</multiplier><value>{w}</value></rtgMaxVA>"
            f"<rtgMaxW><multiplier>{mult}</multiplier><value>{w}</value></rtgMaxW>"
            "<type>4</type></DERCapability>"))  # 4 = photovoltaic system
        await self.send("PUT", link(der, "DERSettingsLink") or "", (
            f'<DERSettings xmlns="{NS}"><setGradW>27</setGradW>'
            f"<setMaxW><multiplier>{mult}</multiplier><value>{w}</value></setMaxW>"
            f"<updatedTime>{now}</updatedTime></DERSettings>"))
        await self.send("PUT", link(der, "DERStatusLink") or "", (
            f'<DERStatus xmlns="{NS}"><genConnectStatus><dateTime>{now}</dateTime><value>07</value>'
            f"</genConnectStatus><inverterStatus><dateTime>{now}</dateTime><value>4</value></inverterStatus>"
            f"<operationalModeStatus><dateTime>{now}</dateTime><value>2</value></operationalModeStatus>"
            f"<readingTime>{now}</readingTime></DERStatus>"))

    # ------------------------------------------------------------------------------------------------- metering
    async def create_mup(self) -> None:
        mups = self._links.get("MirrorUsagePointListLink") or "/mup"
        self.mup = await self.send("POST", mups, (
            f'<MirrorUsagePoint xmlns="{NS}"><mRID>{self.mup_mrid}</mRID>'
            f"<description>{self.site.name} site</description><roleFlags>49</roleFlags>"
            "<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
            f"<deviceLFDI>{self.lfdi}</deviceLFDI><MirrorMeterReading><mRID>{self.power_mrid}</mRID>"
            f"<description>site real power</description>{_reading_type()}</MirrorMeterReading>"
            "</MirrorUsagePoint>"), expect=(201, 204)) or ""
        if not self.mup:
            raise SimError("POST MirrorUsagePoint gave no Location")

    async def post_readings(self, start: int, values: np.ndarray, step: int = STEP) -> None:
        """One MirrorReadingSet of consecutive interval readings (W) starting at ``start``."""
        readings = "".join(f"<Reading><value>{int(round(v))}</value></Reading>" for v in values)
        await self.send("POST", self.mup, (
            f'<MirrorMeterReading xmlns="{NS}"><mRID>{self.power_mrid}</mRID>'
            f"<MirrorReadingSet><mRID>{start:010X}{self.lfdi[:20]}02</mRID><description>site</description>"
            f"<timePeriod><duration>{len(values) * step}</duration><start>{start}</start></timePeriod>"
            f"{readings}</MirrorReadingSet></MirrorMeterReading>"))
        self.readings_posted += len(values)

    def site_power_w(self, ts: int) -> float:
        """What the site meters now: its net power, with the inverter held to an active export limit."""
        net = float(self.site.net_w_at(np.array([ts], dtype="datetime64[s]"))[0])
        limit = self.active_export_limit(ts)
        return max(net, -limit) if limit is not None else net

    # ------------------------------------------------------------------------------------------------- controls
    def active_export_limit(self, ts: int) -> float | None:
        limits = [c.export_limit_w for c in self.controls.values()
                  if c.export_limit_w is not None and c.start <= ts < c.start + c.duration]
        return min(limits) if limits else None

    async def poll_controls(self) -> None:
        fsa_link = self._links.get("FunctionSetAssignmentsListLink")
        if not fsa_link:
            return
        fsas = await self.get(f"{fsa_link}?l=255")
        self.poll_rate_s = int(fsas.get("pollRate") or self.poll_rate_s)
        for fsa in fsas.findall(q("FunctionSetAssignments")):
            derp_link = link(fsa, "DERProgramListLink")
            if not derp_link:
                continue
            for program in (await self.get(f"{derp_link}?l=255")).findall(q("DERProgram")):
                derc_link = link(program, "DERControlListLink")
                if derc_link:
                    for control in (await self.get(f"{derc_link}?l=255")).findall(q("DERControl")):
                        await self._see(control)

    async def _see(self, el: etree._Element) -> None:
        mrid = find_text(el, "mRID") or ""
        seen = self.controls.get(mrid)
        if seen is None:
            limit = el.find(f"{q('DERControlBase')}/{q('opModExpLimW')}")
            export = None
            if limit is not None:
                export = float(find_text(limit, "value") or 0) * 10.0 ** int(find_text(limit, "multiplier") or 0)
            seen = SeenControl(mrid, el.get("href") or "", int(find_text(el, "interval/start") or 0),
                               int(find_text(el, "interval/duration") or 0), export, el.get("replyTo"))
            self.controls[mrid] = seen
        required = int(el.get("responseRequired") or "0", 16)
        if not seen.reply_to or not required:
            return
        await self._respond(seen, RESPONSE_RECEIVED)
        if int(find_text(el, "EventStatus/currentStatus") or -1) == ACTIVE:
            await self._respond(seen, RESPONSE_STARTED)

    async def _respond(self, control: SeenControl, status: int) -> None:
        if status in control.responses or not control.reply_to:
            return
        await self.send("POST", control.reply_to, (
            f'<Response xmlns="{NS}"><createdDateTime>{int(time.time())}</createdDateTime>'
            f"<endDeviceLFDI>{self.lfdi}</endDeviceLFDI><status>{status}</status>"
            f"<subject>{control.mrid}</subject></Response>"))
        control.responses.add(status)

    # ----------------------------------------------------------------------------------------------------- live
    async def run_live(self, stop: asyncio.Event, post_every_s: float | None = None,
                       poll_every_s: float | None = None) -> None:
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


def _active_power(w: float) -> tuple[int, int]:
    """W as a 2030.5 ActivePower (Int16 value, power-of-ten multiplier)."""
    mult = 0
    while abs(w) >= 32768:
        w /= 10
        mult += 1
    return int(round(w)), mult


def _reading_type() -> str:
    # instantaneous real power (kind 37, uom 38 = W), forward flow (import positive), 15-minute intervals
    return ("<ReadingType><accumulationBehaviour>12</accumulationBehaviour><dataQualifier>2</dataQualifier>"
            f"<flowDirection>1</flowDirection><intervalLength>{STEP}</intervalLength><kind>37</kind>"
            "<phase>0</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>")


def utc(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")
