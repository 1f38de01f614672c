"""Synthetic but physically plausible sites for ``dso demo``, on one fixed simulated day whatever the date:

* rooftop PV of a sunny June day in central Europe (where SimBench's grids are), as a 06:00-18:00 UTC sine
  (the shape the planner expects when its grid node has no coordinates) with a little deterministic haze, so a
  run in December tells the same story as one in June;
* a household or farm load with morning and evening peaks (UTC hours; every simulated day the same);
* behind-the-meter batteries (idle, in backup reserve, unless dispatched);
* EV chargers behind an aggregator: cars plugged in at a depot in the morning that must be full by a deadline,
  charging at full power on arrival when nobody manages them.

The net power a site meter sees at its connection point is import positive, export negative (W).
Deterministic for a given seed, so a demo run and its test can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP = 900
DERATE = 0.92  # inverter and temperature losses on a clear day


def utc_hours(ts: np.ndarray) -> np.ndarray:
    """Hour of the UTC day (0..24) of the instants ``ts`` (datetime64[s] or epoch seconds)."""
    secs = np.asarray(ts).astype("datetime64[s]").astype(np.int64)
    return (secs % 86400) / 3600.0


def solar_shape(ts: np.ndarray) -> np.ndarray:
    """Fraction of nameplate on the simulated sunny day at the instants ``ts``: a 06:00-18:00 UTC sine."""
    return np.clip(np.sin(np.pi * (utc_hours(ts) - 6.0) / 12.0), 0.0, None)


def interval_mid(start: int, steps: int, step: int = STEP) -> np.ndarray:
    """Midpoints (datetime64[s]) of ``steps`` intervals from ``start`` (epoch seconds)."""
    return (start + step // 2 + np.arange(steps) * step).astype("datetime64[s]")


@dataclass(frozen=True)
class Site:
    name: str
    bus: int  # bus of the grid model its connection point is on
    pv_w: float  # inverter nameplate (DERCapability rtgMaxW)
    load_scale: float  # 1 = a typical home (~10 kWh/day)
    seed: int
    battery_w: float = 0.0  # 0: no battery
    battery_wh: float = 0.0

    @property
    def der_type(self) -> int:
        """2030.5 DERType: 4 photovoltaic, 83 combined PV and storage."""
        return 83 if self.battery_w > 0 else 4

    def pv_w_at(self, ts: np.ndarray) -> np.ndarray:
        """Available AC output in W at the instants ``ts``."""
        h = utc_hours(ts)
        haze = 1.0 - 0.04 * np.abs(np.sin(self.seed * 0.7 + h * 1.3))  # a little, the same every day
        return np.clip(self.pv_w * DERATE * solar_shape(ts) * haze, 0.0, self.pv_w)

    def load_w_at(self, ts: np.ndarray) -> np.ndarray:
        h = utc_hours(ts)
        shape = (
            250
            + 120 * np.exp(-((h - 2.5) ** 2) / 8)  # fridge, standby, night heating
            + 700 * np.exp(-((h - 6.0) ** 2) / 1.2)
            + 200 * ((h >= 9) & (h <= 15))
            + 1100 * np.exp(-((h - 18.0) ** 2) / 4.5)
        )
        rng = np.random.default_rng(self.seed)
        wobble = 1.0 + 0.08 * np.sin(h * rng.uniform(1.5, 3.0) + rng.uniform(0, 6.28))
        return self.load_scale * shape * wobble

    def net_w_at(self, ts: np.ndarray) -> np.ndarray:
        """The unmanaged site: PV at full output, the battery idle."""
        return self.load_w_at(ts) - self.pv_w_at(ts)


@dataclass(frozen=True)
class Ev:
    """One car on one charger behind the aggregator: plugged in at ``arrive_h``, charged with the ``energy_wh``
    its next trips need by ``deadline_h`` (UTC); its battery has ``room_wh`` more, which it takes only when the
    aggregator is paid to raise its import (charging on the sun)."""

    name: str
    charger_w: float
    energy_wh: float
    arrive_h: float
    deadline_h: float
    room_wh: float = 0.0

    def day_profile(self, step: int = STEP) -> np.ndarray:
        """Unmanaged charging over one UTC day (W per interval from 00:00): full power from arrival until the
        car has its energy."""
        n = 86_400 // step
        start_h = np.arange(n) * step / 3600
        out = np.zeros(n)
        left = self.energy_wh
        for i in range(n):
            if self.arrive_h <= start_h[i] < self.deadline_h and left > 0:
                out[i] = min(self.charger_w, left * 3600 / step)
                left -= out[i] * step / 3600
        return out

    def unmanaged_w(self, ts: np.ndarray, step: int = STEP) -> np.ndarray:
        """Unmanaged charging in the intervals whose middles are ``ts``."""
        return self.day_profile(step)[(utc_hours(ts) * 3600 // step).astype(int)]


def make_fleet(buses: list[int], seed: int = 2030, battery_every: int = 3) -> list[Site]:
    """One site per bus: farm roofs with generous PV, every ``battery_every``-th site with a battery."""
    rng = np.random.default_rng(seed)
    out = []
    for i, bus in enumerate(buses):
        battery = i % battery_every == 1
        out.append(
            Site(
                name=f"site-{i + 1:03d}",
                bus=bus,
                pv_w=float(rng.choice([15_000, 18_000, 20_000, 22_000, 25_000])),
                load_scale=float(rng.uniform(0.8, 2.0)),
                seed=seed * 1000 + i,
                battery_w=5_000.0 if battery else 0.0,
                battery_wh=13_500.0 if battery else 0.0,
            )
        )
    return out


EV_BATTERY_WH = 60_000.0


def make_evs(n: int, seed: int = 2030) -> list[Ev]:
    """The aggregator's cars: plugged in around 07:00 UTC at the depot, needing 18-30 kWh of their 60 kWh
    batteries by 16:00 UTC."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for i in range(n):
        need = float(rng.choice([18_000, 22_000, 26_000, 30_000]))
        out.append(
            Ev(
                name=f"ev-{i + 1:02d}",
                charger_w=11_000.0,
                energy_wh=need,
                arrive_h=float(6.75 + 0.25 * (i % 3)),
                deadline_h=16.0,
                room_wh=EV_BATTERY_WH - need,
            )
        )
    return out
