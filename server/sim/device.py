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

from server.core.der_controls import encode_power
from server.sep2 import xml
from server.sim.profiles import Site

SEP = "application/sep+xml"
MAX_BODY = 4 << 20  # bytes of one server answer the simulator accepts
STEP = 900
RESPONSE_RECEIVED, RESPONSE_STARTED = 1, 2
ACTIVE = 1  # EventStatus currentStatus


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
        w, mult = encode_power(self.site.pv_w)  # a 2030.5 ActivePower: Int16 value, power of ten

        def power(tag: str) -> etree._Element:
            return xml.E(tag, None, xml.leaf("multiplier", mult), xml.leaf("value", w))

        def status(tag: str, value: str) -> etree._Element:
            return xml.E(tag, None, xml.leaf("dateTime", now), xml.leaf("value", value))

        await self.send(
            "PUT",
            link(der, "DERCapabilityLink") or "",
            xml.E(
                "DERCapability",
                None,
                xml.leaf("modesSupported", "00500088"),
                power("rtgMaxVA"),
                power("rtgMaxW"),
                xml.leaf("type", 4),
            ),
        )  # 4 = photovoltaic system
        await self.send(
            "PUT",
            link(der, "DERSettingsLink") or "",
            xml.E(
                "DERSettings", None, xml.leaf("setGradW", 27), power("setMaxW"), xml.leaf("updatedTime", now)
            ),
        )
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
                        _reading_type(),
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
    def active_export_limit(self, ts: int) -> float | None:
        limits = [
            c.export_limit_w
            for c in self.controls.values()
            if c.export_limit_w is not None and c.start <= ts < c.start + c.duration
        ]
        return min(limits) if limits else None

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
            seen = SeenControl(
                mrid,
                el.get("href") or "",
                int(xml.text(el, "interval/start") or 0),
                int(xml.text(el, "interval/duration") or 0),
                export,
                el.get("replyTo"),
            )
            self.controls[mrid] = seen
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


def _reading_type() -> etree._Element:
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
