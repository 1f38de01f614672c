"""What the planner may move, derived from the network model and its forecast (the profiles at a chosen
quantile): every generator's curtailment, every storage unit's charge and discharge with its state of charge,
every charging point's energy by its deadline, and demand response on households and businesses.

Quantile: the profiles are the median forecast; planning at quantile q scales generation by
(1 + PV_SPREAD * z_q) and load by (1 - LOAD_SPREAD * z_q), z_q the standard normal quantile, so q = 0.9 plans
against the high-export, low-load side (a P90 export) that a DSO plans reliability against."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from server.orchestration.network.model import Network, Profiles
from server.orchestration.schedule import Schedule

PV_SPREAD = 0.15  # relative standard deviation of a day-ahead generation forecast
LOAD_SPREAD = 0.10
EV_DEFER_STEPS = 16  # a charging session may finish up to 4 h (of 15 min) after its unmanaged end
DR_FRACTION = 0.10  # share of a household's or business's load that demand response can shed
DR_KINDS = ("household", "commercial")


@dataclass
class Costs:
    """Per kWh unless said otherwise; ``price`` is the energy price at the grid exchange per interval."""

    price: np.ndarray
    curtail: float = 0.10  # lost value / compensation of generation not produced (on top of its price)
    wear: float = 0.02  # per kWh through a battery
    dr: float = (
        0.50  # incentive per kWh of load shed (above every price: shed only where the network needs it)
    )
    voltage_penalty: float = 1e6  # per pu outside the band per interval
    thermal_penalty: float = 50.0  # per kW over a rating per interval
    boundary_penalty: float = (
        5.0  # per kW an LV zone misses the share the MV network asked of it, per interval
    )


def default_price(steps: int) -> np.ndarray:
    """A day-ahead shape: cheap around solar noon, dear in the evening peak (per kWh)."""
    hours = (np.arange(steps) + 0.5) * 24 / steps
    return np.where((hours >= 10) & (hours < 16), 0.12, np.where((hours >= 17) & (hours < 21), 0.35, 0.25))


def clock_price(hours_utc: np.ndarray) -> np.ndarray:
    """``default_price``'s day by the clock: per kWh at each interval's UTC hour (midpoint)."""
    h = np.asarray(hours_utc, dtype=float) % 24
    return np.where((h >= 10) & (h < 16), 0.12, np.where((h >= 17) & (h < 21), 0.35, 0.25))


@dataclass
class Pv:
    sgen: int  # position in model.sgens
    bus: int
    avail_kw: np.ndarray


@dataclass
class Battery:
    storage: int
    bus: int
    power_kw: float
    energy_kwh: float
    soc0_kwh: float
    min_kwh: float
    efficiency: float


@dataclass
class EvSession:
    t0: int
    t1: int  # exclusive
    energy_kwh: float


@dataclass
class Ev:
    load: int
    bus: int
    power_kw: float
    sessions: list[EvSession]


@dataclass
class Dr:
    load: int
    bus: int
    max_shed_kw: np.ndarray


@dataclass
class Flex:
    """An aggregator's offer the plan may buy: in each interval the load ``load`` (zero unmanaged) may be moved
    up (more import) by at most ``up_kw[t]`` or down by at most ``down_kw[t]``, at ``price`` per kWh moved."""

    load: int  # position in model.loads
    bus: int
    up_kw: np.ndarray
    down_kw: np.ndarray
    price: float


@dataclass
class FlexSpec:
    """An offer as the caller gives it to the planner: the model's load (by id) it moves, kW per interval."""

    load_id: int
    up_kw: np.ndarray
    down_kw: np.ndarray
    price: float


@dataclass
class Fleet:
    steps: int
    step_h: float
    baseline: Schedule  # the unmanaged schedule at the planning quantile
    pv: list[Pv] = field(default_factory=list)
    batteries: list[Battery] = field(default_factory=list)
    evs: list[Ev] = field(default_factory=list)
    dr: list[Dr] = field(default_factory=list)
    flex: list[Flex] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.pv) + len(self.batteries) + len(self.evs) + len(self.dr) + len(self.flex)


def quantile_scale(quantile: float) -> tuple[float, float]:
    if not 0 < quantile < 1:
        raise ValueError("the quantile must be between 0 and 1")
    z = NormalDist().inv_cdf(quantile)
    return max(0.0, 1 + PV_SPREAD * z), max(0.0, 1 - LOAD_SPREAD * z)


def ev_sessions(kw: np.ndarray, defer: int = EV_DEFER_STEPS) -> list[EvSession]:
    """Charging sessions of an unmanaged profile: each block of charging, its energy, its window widened by
    ``defer`` intervals (windows that would overlap are merged)."""
    steps = len(kw)
    on = kw > 1e-9
    out: list[EvSession] = []
    t = 0
    while t < steps:
        if not on[t]:
            t += 1
            continue
        start = t
        while t < steps and on[t]:
            t += 1
        end = min(steps, t + defer)
        energy = float(kw[start:t].sum())
        if out and start < out[-1].t1:
            out[-1] = EvSession(out[-1].t0, max(end, out[-1].t1), out[-1].energy_kwh + energy)
        else:
            out.append(EvSession(start, end, energy))
    return out


def build_fleet(
    model: Network, profiles: Profiles, quantile: float = 0.5, offers: list[FlexSpec] | None = None
) -> Fleet:
    pv_scale, load_scale = quantile_scale(quantile)
    base = Schedule.from_profiles(model, profiles)
    base.sgen_p *= pv_scale
    base.load_p *= load_scale
    base.load_q *= load_scale
    steps, step_h = base.steps, profiles.step_s / 3600
    fleet = Fleet(steps=steps, step_h=step_h, baseline=base)
    for k, s in enumerate(model.sgens):
        fleet.pv.append(Pv(k, s.bus, np.clip(base.sgen_p[:, k], 0, None) * 1000))
    for k, st in enumerate(model.storages):
        e = st.max_e_mwh * 1000
        soc0 = st.soc_percent / 100 * e
        # the floor never above what it holds now (a battery below it is not discharged, not forced to charge)
        fleet.batteries.append(
            Battery(k, st.bus, st.sn_mva * 1000, e, soc0, min(st.min_e_mwh * 1000, soc0), st.efficiency)
        )
    for k, ld in enumerate(model.loads):
        kw = np.clip(base.load_p[:, k], 0, None) * 1000
        if ld.kind == "ev":
            sessions = [x for x in ev_sessions(kw) if x.energy_kwh > 0]
            if sessions:
                for session in sessions:
                    session.energy_kwh *= step_h
                fleet.evs.append(Ev(k, ld.bus, max(ld.p_mw * 1000, float(kw.max())), sessions))
        elif ld.kind in DR_KINDS and kw.max() > 0:
            fleet.dr.append(Dr(k, ld.bus, DR_FRACTION * kw))
    position = {ld.id: k for k, ld in enumerate(model.loads)}
    for o in offers or []:
        k = position[o.load_id]
        up = np.clip(np.asarray(o.up_kw, float)[:steps], 0, None)
        down = np.clip(np.asarray(o.down_kw, float)[:steps], 0, None)
        fleet.flex.append(Flex(k, model.loads[k].bus, up, down, float(o.price)))
    return fleet
