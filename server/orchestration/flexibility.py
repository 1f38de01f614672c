"""What the plan may count on, from what each mapped resource said of itself, with documented defaults where it
said nothing (the snapshot lists every default it used):

* a 2030.5 device: DERCapability ``type`` (DERType: 4 PV, 80 storage, 83 PV and storage), ``rtgMaxW``,
  ``rtgMaxWh``, ``rtgMaxChargeRateW``/``rtgMaxDischargeRateW``; DERSettings ``setMaxW``/``setMaxWh`` (a
  setting below the rating wins); DERStatus ``stateOfChargeStatus``; for storage its DERAvailability
  (``statWAvail`` and ``reservePercent`` cap its power; ``availabilityDuration`` seconds at that power is what it
  may discharge from now, its state-of-charge floor; ``maxChargeDuration`` seconds at ``reserveChargePercent`` of
  its charge rate what it may charge, its ceiling) and CSIP-AUS DERSettings ``setMinWh`` (a floor); ``_availability``;
* a SunSpec Modbus inverter: its nameplate (``WRtg``, stored as ``ratedPower``) -- PV;
* a 2030.5 EV charger (DERType 81 electric vehicle, 82 EVSE): its charge rate (``rtgMaxChargeRateW``, else
  ``rtgMaxW``) and the energy it needs (``rtgMaxWh`` less the DERStatus ``stateOfChargeStatus``); unmanaged it
  charges at its rate from now until it has that energy, and the plan may move its charging within that
  window widened by ``resources.EV_DEFER_STEPS`` intervals;
* a 2030.5 device that reported no DER but a DeviceCategory of a controllable load (thermostat, heaters, water
  heater, pool pump, smart appliance, load control switch): demand response of the load at its connection point
  (``DEFAULT_DEVICE_SHARE`` of it), controlled by 2030.5 DRLC EndDeviceControls;
* an OpenADR VEN: demand response of the load at its connection point (``DEFAULT_VEN_SHARE`` of it);
* a resource that answered one of the plan's controls "cannot comply" (2030.5 Response status 4, 8, 12..14,
  252..254) or opted out of one (OpenADR), within ``noncompliance_hold_s``, is not counted on: its PV is
  forecast as it will run, its battery as idle, the VEN's load as firm.

Defaults (docs/planning.md): PV without a DERCapability 5 kW; storage without an energy rating 2 h at its
power rating, without a state of charge 50 %, without a DERAvailability all of its energy and power available
(floor 0 %, ceiling 100 %); an EV charger without an energy rating needs 2 h at its rate, without
a state of charge 50 % of its rating; a VEN or a DRLC device sheds 10 % of its connection point's load.

Flexibility already bought by a manual clearing is firm: a cleared offer of a mapped VEN (its LOAD_DISPATCH event,
not cancelled) changes the VEN's connection point's net import by what the event asks, and the plan counts on it
(``cleared``). Offers a plan may buy (``open_offers``): those of mapped VENs still open whose window overlaps its
horizon, and those an earlier plan cleared (the new plan clears them again: a re-plan supersedes its
predecessor's clearing, keeping, modifying or cancelling the events it made)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import sep2_device, telemetry
from server.store.models import EndDevice, Event, EventResponse, FlexOffer, ModbusDevice, PlanEvent, Ven

NS = "{urn:ieee:std:2030.5:ns}"
CSIPAUS_STORAGE_NS = "https://csipaus.org/ns/v1.3-beta/storage"
DEFAULT_PV_KW = 5.0
DEFAULT_STORAGE_HOURS = 2.0
DEFAULT_SOC_PERCENT = 50.0
DEFAULT_VEN_SHARE = 0.10
DEFAULT_DEVICE_SHARE = 0.10
DEFAULT_EV_HOURS = 2.0
PV_TYPES, STORAGE_TYPES, BOTH_TYPES, EV_TYPES = {4}, {80}, {83}, {81, 82}
# DeviceCategoryType bits of loads 2030.5 DRLC controls (thermostat, strip and baseboard heaters, water heater,
# pool pump, smart appliance, load control switch)
DR_CATEGORY_BITS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 13)
# 2030.5 ResponseType values that say the control was not (or will not be) followed
WONT_COMPLY = {4, 8, 12, 13, 14, 252, 253, 254}


@dataclass
class Resource:
    kind: str  # pv | battery | ev | dr
    party: str  # device | modbus | ven
    id: str  # LFDI, Modbus name, venID
    bus: int
    power_kw: float = 0.0
    energy_kwh: float = 0.0
    soc_percent: float = 0.0
    min_soc_percent: float = 0.0  # battery: the plan never takes it below (its reserve, what it can deliver)
    max_soc_percent: float = 100.0  # battery: nor above (what it can still take)
    share: float = 0.0  # dr: share of the connection point's load
    category: int = 0  # dr of a 2030.5 device: its DeviceCategoryType bits
    counted: bool = True
    defaults: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)  # what the resource reported that this is built from
    why_not: str = ""

    @property
    def key(self) -> str:
        """How the plan names it: ``device:LFDI`` (``device:LFDI:storage`` for its battery, ``:ev`` for its
        charging, ``:dr`` for its load control), ``ven:VENID``, ``modbus:NAME``."""
        suffix = {"battery": ":storage", "ev": ":ev"}.get(self.kind, "")
        if self.kind == "dr" and self.party == "device":
            suffix = ":dr"
        return f"{self.party}:{self.id}{suffix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(root: etree._Element, name: str) -> float | None:
    """``value`` x 10^``multiplier`` of the element ``name`` (a 2030.5 name, or one in Clark notation)."""
    node = root.find(name if name.startswith("{") else f"{NS}{name}")
    if node is None:
        return None
    v = node.findtext(f"{NS}value")
    if v is None:
        return None
    return float(v) * 10.0 ** int(node.findtext(f"{NS}multiplier") or 0)


def _int(root: etree._Element, name: str) -> int | None:
    text = root.findtext(f"{NS}{name}")
    return int(text) if text is not None and text.strip().lstrip("-").isdigit() else None


def _parse(body: str | None) -> etree._Element | None:
    return None if body is None else etree.fromstring(body.encode())  # stored, schema-checked XML


def _soc(status: etree._Element | None) -> float | None:
    if status is None:
        return None
    node = status.find(f"{NS}stateOfChargeStatus")
    if node is None or node.findtext(f"{NS}value") is None:
        return None
    return int(node.findtext(f"{NS}value") or 0) / 100  # PerCent: hundredths of a percent


def ev_resource(lfdi: str, bus: int, cap: etree._Element | None, status: etree._Element | None) -> Resource:
    """An EV charger: its charge rate and the energy it still needs."""
    said: list[str] = [f"DERCapability type {_int(cap, 'type')}"] if cap is not None else []
    defaults: list[str] = []
    rate_w = None
    for name in ("rtgMaxChargeRateW", "rtgMaxW"):
        rate_w = _value(cap, name) if cap is not None else None
        if rate_w is not None:
            said.append(f"DERCapability {name} {rate_w:g} W")
            break
    if rate_w is None:
        rate_w = DEFAULT_PV_KW * 1000
        defaults.append(f"no charge rating: {DEFAULT_PV_KW:g} kW")
    wh = _value(cap, "rtgMaxWh") if cap is not None else None
    soc = _soc(status)
    if wh is None:
        need_wh = rate_w * DEFAULT_EV_HOURS
        defaults.append(f"no rtgMaxWh: needs {DEFAULT_EV_HOURS:g} h at {rate_w:g} W")
    else:
        said.append(f"energy rating {wh:g} Wh")
        if soc is None:
            soc = DEFAULT_SOC_PERCENT
            defaults.append(f"no DERStatus stateOfChargeStatus: {DEFAULT_SOC_PERCENT:g} %")
        else:
            said.append(f"DERStatus stateOfChargeStatus {soc:g} %")
        need_wh = wh * max(0.0, 100.0 - soc) / 100
    return Resource(
        "ev",
        "device",
        lfdi,
        bus,
        power_kw=rate_w / 1000,
        energy_kwh=need_wh / 1000,
        soc_percent=soc or 0.0,
        said=said,
        defaults=defaults,
    )


def device_resources(lfdi: str, bus: int, res: dict[str, str], category: str = "") -> list[Resource]:
    """The PV, storage, EV charging or load control of one 2030.5 device from its stored DER resources and
    its DeviceCategory (hex bits)."""
    cap, settings, status = (_parse(res.get(k)) for k in ("dercap", "derg", "ders"))
    der_type = _int(cap, "type") if cap is not None else None
    bits = int(category, 16) if category and all(c in "0123456789abcdefABCDEF" for c in category) else 0
    if cap is None and settings is None and bits & DR_CATEGORY_BITS:
        return [
            Resource(
                "dr",
                "device",
                lfdi,
                bus,
                share=DEFAULT_DEVICE_SHARE,
                category=bits & DR_CATEGORY_BITS,
                said=[f"DeviceCategory {category}"],
                defaults=[f"demand response {DEFAULT_DEVICE_SHARE:.0%} of the connection point's load"],
            )
        ]
    if der_type in EV_TYPES:
        return [ev_resource(lfdi, bus, cap, status)]
    said: list[str] = []
    defaults: list[str] = []
    rated_w = _value(cap, "rtgMaxW") if cap is not None else None
    if rated_w is not None:
        said.append(f"DERCapability rtgMaxW {rated_w:g} W")
    set_w = _value(settings, "setMaxW") if settings is not None else None
    if set_w is not None and (rated_w is None or set_w < rated_w):
        said.append(f"DERSettings setMaxW {set_w:g} W")
        rated_w = set_w
    if der_type is not None:
        said.append(f"DERCapability type {der_type}")
    if rated_w is None:
        rated_w = DEFAULT_PV_KW * 1000
        defaults.append(f"no DERCapability rtgMaxW: {DEFAULT_PV_KW:g} kW")
    out: list[Resource] = []
    storage = der_type in STORAGE_TYPES or der_type in BOTH_TYPES
    if der_type is None or der_type in PV_TYPES or der_type in BOTH_TYPES or not storage:
        if der_type is None:
            defaults.append("no DERCapability type: taken as PV")
        out.append(Resource("pv", "device", lfdi, bus, power_kw=rated_w / 1000, said=said, defaults=defaults))
    if storage:
        b_said, b_def = list(said), [d for d in defaults if "type" not in d]
        power_w = rated_w
        for name in ("rtgMaxDischargeRateW", "rtgMaxChargeRateW"):
            v = _value(cap, name) if cap is not None else None
            if v is not None:
                b_said.append(f"DERCapability {name} {v:g} W")
                power_w = min(power_w, v)
        wh = _value(cap, "rtgMaxWh") if cap is not None else None
        set_wh = _value(settings, "setMaxWh") if settings is not None else None
        if set_wh is not None and (wh is None or set_wh < wh):
            wh = set_wh
        if wh is None:
            wh = power_w * DEFAULT_STORAGE_HOURS
            b_def.append(f"no rtgMaxWh: {DEFAULT_STORAGE_HOURS:g} h at {power_w:g} W")
        else:
            b_said.append(f"energy rating {wh:g} Wh")
        soc = _soc(status)
        if soc is None:
            soc = DEFAULT_SOC_PERCENT
            b_def.append(f"no DERStatus stateOfChargeStatus: {DEFAULT_SOC_PERCENT:g} %")
        else:
            b_said.append(f"DERStatus stateOfChargeStatus {soc:g} %")
        battery = Resource(
            "battery",
            "device",
            lfdi,
            bus,
            power_kw=power_w / 1000,
            energy_kwh=wh / 1000,
            soc_percent=soc,
            said=b_said,
            defaults=b_def,
        )
        _availability(battery, cap, settings, _parse(res.get("dera")), rated_w)
        out.append(battery)
    return out


def _availability(
    r: Resource,
    cap: etree._Element | None,
    settings: etree._Element | None,
    avail: etree._Element | None,
    rated_w: float,
) -> None:
    """Bound a battery by the energy it keeps (CSIP-AUS DERSettings ``setMinWh``) and by what its
    DERAvailability says it has in reserve now: ``statWAvail``, and ``reservePercent`` of ``setMaxW`` (hundredths
    of a percent), cap the power the plan counts on; ``availabilityDuration`` seconds at that power is the most
    it may discharge from now (its state-of-charge floor), ``maxChargeDuration`` seconds at ``reserveChargePercent``
    of its charge rate (``setMaxChargeRateW``, else ``rtgMaxChargeRateW``, else its power) the most it may charge
    (its ceiling). ``statVarAvail`` is listed, not used: the plan dispatches no reactive power of storage."""
    power_w, wh = r.power_kw * 1000, r.energy_kwh * 1000
    soc_wh = wh * r.soc_percent / 100
    floor_wh, ceiling_wh = 0.0, wh
    keep = _value(settings, f"{{{CSIPAUS_STORAGE_NS}}}setMinWh") if settings is not None else None
    if keep is not None:
        floor_wh = keep
        r.said.append(f"DERSettings setMinWh {keep:g} Wh")
    if avail is None:
        r.defaults.append("no DERAvailability: all of its energy and power available")
    else:
        for name in ("statWAvail", "statVarAvail"):
            v = _value(avail, name)
            if v is None:
                continue
            r.said.append(f"DERAvailability {name} {v:g} {'W' if name == 'statWAvail' else 'var'}")
            if name == "statWAvail":
                power_w = min(power_w, max(0.0, v))
        reserve = _int(avail, "reservePercent")
        if reserve is not None:
            r.said.append(f"DERAvailability reservePercent {reserve / 100:g} %")
            power_w = min(power_w, rated_w * reserve / 10_000)
        seconds = _int(avail, "availabilityDuration")
        if seconds is not None:
            r.said.append(f"DERAvailability availabilityDuration {seconds} s at {power_w:g} W")
            floor_wh = max(floor_wh, soc_wh - power_w * seconds / 3600)
        charge_w = r.power_kw * 1000
        for source, name in ((settings, "setMaxChargeRateW"), (cap, "rtgMaxChargeRateW")):
            v = _value(source, name) if source is not None else None
            if v is not None:
                charge_w = v
                break
        reserve = _int(avail, "reserveChargePercent")
        if reserve is not None:
            r.said.append(f"DERAvailability reserveChargePercent {reserve / 100:g} %")
            charge_w = charge_w * reserve / 10_000
        seconds = _int(avail, "maxChargeDuration")
        if seconds is not None:
            r.said.append(f"DERAvailability maxChargeDuration {seconds} s at {charge_w:g} W")
            ceiling_wh = min(ceiling_wh, soc_wh + charge_w * seconds / 3600)
    if wh > 0:
        # never above what it holds now: a battery below its floor is not discharged, not made to charge
        r.min_soc_percent = min(r.soc_percent, 100 * floor_wh / wh)
        r.max_soc_percent = max(r.soc_percent, 100 * ceiling_wh / wh)
    r.power_kw = power_w / 1000


async def _refusals(session: AsyncSession, since: dt.datetime) -> tuple[dict[str, str], dict[str, str]]:
    """Devices (LFDI) and VENs (venID) that would not follow one of the plan's events recently, with why."""
    rows = (
        await session.execute(
            select(EventResponse, Event.id)
            .join(Event, Event.id == EventResponse.event_id)
            .where(
                EventResponse.received_at >= since,
                Event.id.in_(select(PlanEvent.event_id)),
            )
            .order_by(EventResponse.received_at)
        )
    ).all()
    devices: dict[str, str] = {}
    vens: dict[int, str] = {}
    for r, event_id in rows:
        if r.protocol == "2030.5" and r.lfdi:
            if r.status in WONT_COMPLY:
                devices[r.lfdi] = (
                    f"answered status {r.status} to event {event_id} at {r.received_at.isoformat()}"
                )
            else:
                devices.pop(r.lfdi, None)
        elif r.ven_pk is not None:
            if r.opt_type == "optOut":
                vens[r.ven_pk] = f"opted out of event {event_id} at {r.received_at.isoformat()}"
            else:
                vens.pop(r.ven_pk, None)
    names = {}
    if vens:
        names = {v.id: v.ven_id for v in await session.scalars(select(Ven).where(Ven.id.in_(list(vens))))}
    return devices, {names[k]: why for k, why in vens.items() if k in names}


async def snapshot(
    session: AsyncSession, mapped: list[dict[str, Any]], now: dt.datetime, hold_s: int
) -> list[Resource]:
    """Every mapped resource's flexibility now."""
    refused_dev, refused_ven = await _refusals(session, now - dt.timedelta(seconds=hold_s))
    out: list[Resource] = []
    lfdis = [m["id"] for m in mapped if m["kind"] == "device"]
    devices = {d.lfdi: d for d in await session.scalars(select(EndDevice).where(EndDevice.lfdi.in_(lfdis)))}
    modbus_names = [m["id"] for m in mapped if m["kind"] == "modbus"]
    rated = (
        await telemetry.newest_values(session, "modbus", modbus_names, "ratedPower") if modbus_names else {}
    )
    known_modbus = set(
        await session.scalars(select(ModbusDevice.name).where(ModbusDevice.name.in_(modbus_names)))
    )
    ven_ids = [m["id"] for m in mapped if m["kind"] == "ven"]
    known_vens = set(await session.scalars(select(Ven.ven_id).where(Ven.ven_id.in_(ven_ids))))
    for m in mapped:
        kind, sid, bus = m["kind"], m["id"], int(m["bus"])
        if kind == "device":
            device = devices.get(sid)
            if device is None:
                continue  # mapped but not (or no longer) enrolled
            items = device_resources(
                sid, bus, await sep2_device.device_resources(session, device.id), device.device_category
            )
            if sid in refused_dev:
                for r in items:
                    r.counted, r.why_not = False, refused_dev[sid]
            out += items
        elif kind == "modbus":
            if sid not in known_modbus:
                continue
            value = rated.get(sid)
            r = Resource("pv", "modbus", sid, bus)
            if value:
                r.power_kw = float(value) / 1000
                r.said.append(f"SunSpec WRtg {float(value):g} W")
            else:
                r.power_kw = DEFAULT_PV_KW
                r.defaults.append(f"no SunSpec nameplate yet: {DEFAULT_PV_KW:g} kW")
            out.append(r)
        elif kind == "ven":
            if sid not in known_vens:
                continue
            r = Resource(
                "dr",
                "ven",
                sid,
                bus,
                share=DEFAULT_VEN_SHARE,
                defaults=[f"demand response {DEFAULT_VEN_SHARE:.0%} of the connection point's load"],
            )
            if sid in refused_ven:
                r.counted, r.why_not = False, refused_ven[sid]
            out.append(r)
    return out


async def open_offers(
    session: AsyncSession, mapped: list[dict[str, Any]], start: dt.datetime, end: dt.datetime
) -> list[tuple[FlexOffer, str, int]]:
    """(offer, venID, bus) of every offer a plan of ``[start, end)`` may buy: of a mapped VEN, open or cleared
    by a plan, its window overlapping the horizon; oldest first."""
    bus_of = {m["id"]: int(m["bus"]) for m in mapped if m["kind"] == "ven"}
    if not bus_of:
        return []
    rows = await session.execute(
        select(FlexOffer, Ven.ven_id)
        .join(Ven, Ven.id == FlexOffer.ven_pk)
        .where(
            Ven.ven_id.in_(list(bus_of)),
            (FlexOffer.status == "offered")
            | ((FlexOffer.status == "cleared") & FlexOffer.plan_id.is_not(None)),
            FlexOffer.start < end,
            FlexOffer.end_at > start,
        )
        .order_by(FlexOffer.id)
    )
    return [(o, ven_id, bus_of[ven_id]) for o, ven_id in rows]


@dataclass
class Cleared:
    """A cleared offer the plan counts on: its event's change of net import at the VEN's bus, kW per plan
    interval (positive: more import)."""

    offer: int
    event: int
    ven: str
    bus: int
    kw: list[float]
    step_s: int = 900

    def to_dict(self) -> dict[str, Any]:
        return {
            "offer": self.offer,
            "event": self.event,
            "ven": self.ven,
            "bus": self.bus,
            "kwh": round(sum(self.kw) * self.step_s / 3600, 3),
        }


async def cleared(
    session: AsyncSession, mapped: list[dict[str, Any]], start: dt.datetime, step_s: int, steps: int
) -> list[Cleared]:
    """The cleared offers of the mapped VENs whose events overlap the plan's horizon, as load at their bus."""
    bus_of = {m["id"]: int(m["bus"]) for m in mapped if m["kind"] == "ven"}
    if not bus_of:
        return []
    end = start + dt.timedelta(seconds=step_s * steps)
    rows = await session.execute(
        select(FlexOffer, Ven.ven_id, Event)
        .join(Ven, Ven.id == FlexOffer.ven_pk)
        .join(Event, Event.id == FlexOffer.event_id)
        .where(
            FlexOffer.status == "cleared",
            FlexOffer.plan_id.is_(None),  # what a plan cleared, the next plan clears again (``open_offers``)
            Ven.ven_id.in_(list(bus_of)),
            Event.cancelled_at.is_(None),
            Event.start < end,
            Event.end_at > start,
        )
        .order_by(FlexOffer.id)
    )
    t0 = start.timestamp()
    out = []
    for offer, ven_id, event in rows:
        kw = [0.0] * steps
        cursor = event.start.timestamp()
        for interval in (event.payload.get("signal") or {}).get("intervals") or []:
            a, b = cursor, cursor + float(interval.get("duration_s", 0))
            cursor = b
            value_kw = float(interval.get("value", 0.0)) / 1000
            first, last = max(0, int((a - t0) // step_s)), min(steps - 1, int((b - t0 - 1e-9) // step_s))
            for k in range(first, last + 1):  # the share of each plan interval the event interval covers
                lo, hi = max(a, t0 + k * step_s), min(b, t0 + (k + 1) * step_s)
                if hi > lo:
                    kw[k] += value_kw * (hi - lo) / step_s
        out.append(Cleared(offer.id, event.id, ven_id, bus_of[ven_id], kw, step_s))
    return out
