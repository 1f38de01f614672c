"""From what the server knows to what the grid planner plans: the stored network model, each zone's forecast
(the net load of its grid node) and the flexibility the mapped resources said they have -> the planning model
and its profiles; and from the plan back to per-resource schedules (envelopes, setpoints, load dispatch), each
block with the reason it exists.

The planning model keeps the imported topology and loads and replaces the model's own generators and storage by
the resources that can be counted on (and adds flexibility already bought, a cleared offer, as load at its VEN's
bus): an uncontrolled rooftop system is part of its zone's measured net load,
so its forecast carries it. A zone's forecast net load plus the counted PV's expected output (nameplate times
the clear-sky shape at the feeder's coordinates) is the zone's gross load, shared over its loads in proportion
to their rating. A zone nobody is mapped in has no forecast: its loads are taken at their rating (a default the
plan lists). A 2030.5 EV charger is a charging point of its own at its bus, on top of the zone's forecast: its
unmanaged profile charges at its rate from the horizon's start until it has the energy it needs.

Pure computation: ``solve`` runs in an executor."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from server.orchestration.flexibility import Resource
from server.orchestration.network.model import Load, Network, Profiles, Sgen, Storage
from server.orchestration.resources import FlexSpec

ROUND_W = 10.0  # setpoints and limits are sent in steps of this many watts (equal neighbours merge)
MIN_BATTERY_W = 50.0
MIN_SHED_KW = 0.05
MIN_OFFER_KW = 0.05  # less of an offer in an interval is not bought (solver noise)


class MissingForecast(Exception):
    """A zone with mapped resources has no usable forecast over the horizon."""


@dataclass
class ZoneForecast:
    node: str
    run_id: int
    issued_at: str
    points: dict[str, float]  # ISO interval start -> mean W


@dataclass
class OfferInput:
    """An open offer of a VEN mapped in the model: over ``[start, end)`` its connection point's net import may
    be raised by up to ``up_kw`` or lowered by up to ``down_kw``, at ``price`` per kWh."""

    id: int
    ven: str  # venID
    bus: int
    start: dt.datetime
    end: dt.datetime
    up_kw: float
    down_kw: float
    price: float

    def available(self, times: list[dt.datetime], step_s: int) -> np.ndarray:
        """(steps,) True in the plan's intervals the offer's window covers whole."""
        step = dt.timedelta(seconds=step_s)
        return np.array([self.start <= t and t + step <= self.end for t in times], dtype=bool)


@dataclass
class LoopInputs:
    model: dict[str, Any]  # Network.to_dict()
    summary: dict[str, Any]
    start: dt.datetime
    step_s: int
    steps: int
    forecasts: dict[str, ZoneForecast]  # zone id (str) -> forecast of its node
    resources: list[Resource]
    latitude: float | None
    longitude: float | None
    quantile: float = 0.5
    policy: str = "equal"
    iterations: int = 4
    time_limit_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    # flexibility already bought (cleared offers): bus -> change of net import, kW per interval (+: more import)
    firm_kw: dict[int, list[float]] = field(default_factory=dict)
    # energy price per kWh at the grid exchange per interval: the objective's, and published with the plan
    price: list[float] | None = None
    offers: list[OfferInput] = field(default_factory=list)

    def times(self) -> list[dt.datetime]:
        return [self.start + dt.timedelta(seconds=self.step_s * k) for k in range(self.steps)]


def pv_shape(inputs: LoopInputs) -> tuple[np.ndarray, str | None]:
    """Fraction of nameplate per interval (midpoints): clear sky at the feeder, else a 06-18 UTC sine."""
    mid = np.array([int(t.timestamp()) + inputs.step_s // 2 for t in inputs.times()], dtype="datetime64[s]")
    if inputs.latitude is None or inputs.longitude is None:
        hours = (mid.astype("datetime64[s]").astype(np.int64) % 86400) / 3600
        return (
            np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None),
            "the feeder node has no coordinates: PV expected on a 06:00-18:00 UTC sine",
        )
    from forecasting.solar import clear_sky, sun_position

    ghi, _, _ = clear_sky(sun_position(mid, inputs.latitude, inputs.longitude))
    return np.clip(ghi / 1000.0, 0.0, 1.0), None


@dataclass
class Built:
    network: Network
    profiles: Profiles
    pv: list[Resource]  # sgen k of the network is pv[k]
    batteries: list[Resource]
    dr: list[Resource]
    defaults: list[str]
    zone_of_bus: dict[int, int]
    evs: list[Resource] = field(default_factory=list)
    ev_load: dict[str, int] = field(default_factory=dict)  # EV resource key -> its load's id
    offers: list[tuple[OfferInput, int]] = field(
        default_factory=list
    )  # each open offer and the load it moves
    flex: list[FlexSpec] = field(default_factory=list)  # the same, as the planner takes them


def ev_profile_kw(power_kw: float, energy_kwh: float, steps: int, step_h: float) -> np.ndarray:
    """Unmanaged charging: at the rate from the first interval until the energy is in."""
    out = np.zeros(steps)
    left = energy_kwh
    for t in range(steps):
        if left <= 1e-9:
            break
        out[t] = min(power_kw, left / step_h)
        left -= out[t] * step_h
    return out


def storage(k: int, r: Resource) -> Storage:
    """A battery as the planner's storage: its state of charge kept within ``[min_soc_percent,
    max_soc_percent]`` of its energy rating (the ceiling as the storage's capacity, its state of charge rescaled,
    so the energy it holds now is unchanged)."""
    soc_kwh = r.energy_kwh * r.soc_percent / 100
    ceiling_kwh = max(r.energy_kwh * r.max_soc_percent / 100, soc_kwh, 1e-6)  # a model's storage holds > 0
    return Storage(
        k,
        r.key,
        r.bus,
        sn_mva=r.power_kw / 1000,
        max_e_mwh=ceiling_kwh / 1000,
        soc_percent=100 * soc_kwh / ceiling_kwh,
        min_e_mwh=min(r.energy_kwh * r.min_soc_percent / 100, soc_kwh) / 1000,
    )


def build(inputs: LoopInputs) -> Built:
    base = Network.from_dict(inputs.model)
    counted = [r for r in inputs.resources if r.counted]
    pv = [r for r in counted if r.kind == "pv"]
    batteries = [r for r in counted if r.kind == "battery"]
    dr = [r for r in counted if r.kind == "dr"]
    evs = [r for r in counted if r.kind == "ev" and r.energy_kwh > 0]
    dr_buses = {r.bus for r in dr}
    defaults: list[str] = []
    zone_of_bus = {int(b): int(z) for b, z in inputs.summary["bus_zone"].items()}
    loads = [
        Load(x.id, x.name, x.bus, x.p_mw, x.q_mvar, kind="household" if x.bus in dr_buses else "other")
        for x in base.loads
    ]
    # a VEN at a bus without a load of the model: its resources are the load there (sized by its forecast)
    next_id = max((x.id for x in loads), default=-1) + 1
    for bus in sorted(dr_buses - {x.bus for x in loads}):
        loads.append(Load(next_id, f"load at bus {bus}", bus, 0.001, 0.0, kind="household"))
        next_id += 1
    sgens = [Sgen(k, r.key, r.bus, r.power_kw / 1000, r.power_kw / 1000) for k, r in enumerate(pv)]
    storages = [storage(k, r) for k, r in enumerate(batteries)]
    network = replace(base, loads=loads, sgens=sgens, storages=storages)
    shape, note = pv_shape(inputs)
    if note and pv:
        defaults.append(note)
    keys = [t.isoformat() for t in inputs.times()]
    mapped_zones = {zone_of_bus[r.bus] for r in inputs.resources}
    load_p: dict[int, np.ndarray] = {}
    load_q: dict[int, np.ndarray] = {}
    for zone in sorted({zone_of_bus[x.bus] for x in loads} | mapped_zones):
        members = [x for x in loads if zone_of_bus[x.bus] == zone]
        fc = inputs.forecasts.get(str(zone))
        node = inputs.summary["zones"][str(zone)]["node"]
        if fc is None:
            if zone in mapped_zones:
                raise MissingForecast(f"no forecast of {node} (resources are mapped in it)")
            for x in members:
                load_p[x.id] = np.full(inputs.steps, x.p_mw)
                load_q[x.id] = np.full(inputs.steps, x.q_mvar)
            if members:
                defaults.append(f"{node}: nothing mapped, no forecast: its loads at their rated power")
            continue
        missing = [k for k in keys if k not in fc.points]
        if missing:
            raise MissingForecast(
                f"the forecast of {node} (run {fc.run_id}, issued {fc.issued_at}) does not cover "
                f"{len(missing)} of the plan's {len(keys)} intervals (first {missing[0]})"
            )
        net_kw = np.array([fc.points[k] for k in keys]) / 1000
        pv_kw = sum((r.power_kw * shape for r in pv if zone_of_bus[r.bus] == zone), np.zeros(inputs.steps))
        gross_kw = net_kw + pv_kw
        if not members:
            trafo = inputs.summary["zones"][str(zone)]["trafo"]
            lv = next((t.lv_bus for t in base.trafos if t.id == trafo), base.slack.bus)
            x = Load(next_id, f"{node} net load", lv, 0.001, 0.0, kind="other")
            next_id += 1
            loads.append(x)
            members = [x]
        rated = np.array([max(x.p_mw, 0.0) for x in members])
        share = rated / rated.sum() if rated.sum() > 0 else np.full(len(members), 1 / len(members))
        for x, w in zip(members, share, strict=True):
            load_p[x.id] = gross_kw * w / 1000
            ratio = x.q_mvar / x.p_mw if x.p_mw else 0.0
            load_q[x.id] = load_p[x.id] * ratio
    # flexibility already bought is load the plan counts on at the VEN's bus (never shed: kind "other")
    for bus, kw in sorted(inputs.firm_kw.items()):
        x = Load(next_id, f"cleared flexibility at bus {bus}", bus, 0.0, 0.0, kind="other")
        next_id += 1
        loads.append(x)
        load_p[x.id] = np.asarray(kw[: inputs.steps], float) / 1000
        load_q[x.id] = np.zeros(inputs.steps)
    ev_load: dict[str, int] = {}
    for r in evs:
        x = Load(next_id, r.key, r.bus, r.power_kw / 1000, 0.0, kind="ev")
        next_id += 1
        loads.append(x)
        ev_load[r.key] = x.id
        load_p[x.id] = ev_profile_kw(r.power_kw, r.energy_kwh, inputs.steps, inputs.step_s / 3600) / 1000
        load_q[x.id] = np.zeros(inputs.steps)
    # an open offer is a load of its own at the VEN's bus, nothing unmanaged, that the plan may move within it
    times = inputs.times()
    offers: list[tuple[OfferInput, int]] = []
    flex: list[FlexSpec] = []
    for o in inputs.offers:
        x = Load(next_id, f"offer {o.id}", o.bus, 0.0, 0.0, kind="other")
        next_id += 1
        loads.append(x)
        load_p[x.id] = np.zeros(inputs.steps)
        load_q[x.id] = np.zeros(inputs.steps)
        window = o.available(times, inputs.step_s)
        offers.append((o, x.id))
        flex.append(FlexSpec(x.id, o.up_kw * window, o.down_kw * window, o.price))
    for x in loads:
        load_p.setdefault(x.id, np.full(inputs.steps, x.p_mw))
        load_q.setdefault(x.id, np.full(inputs.steps, x.q_mvar))
    profiles = Profiles(
        start=inputs.start.isoformat(),
        step_s=inputs.step_s,
        load_p=load_p,
        load_q=load_q,
        sgen_p={k: r.power_kw / 1000 * shape for k, r in enumerate(pv)},
        storage_p={k: np.zeros(inputs.steps) for k in range(len(batteries))},
    )
    return Built(network, profiles, pv, batteries, dr, defaults, zone_of_bus, evs, ev_load, offers, flex)
