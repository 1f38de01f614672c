"""Synthetic but physically plausible site profiles: rooftop PV from the clear-sky model at the site times a
per-day clearness and passing clouds, a household load with morning and evening peaks, and the net power a site
meter sees at the connection point (import positive, export negative).

Deterministic for a given seed, so a demo run and its test can be reproduced.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from forecasting.solar import clear_sky, sun_position

DERATE = 0.85  # inverter, soiling, temperature and orientation losses against the horizontal clear sky


@dataclass(frozen=True)
class Site:
    name: str
    latitude: float
    longitude: float
    timezone: str
    pv_w: float  # inverter nameplate (DERCapability rtgMaxW)
    load_scale: float  # household size: 1 = a typical home (~10 kWh/day)
    seed: int

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def clearness(self, day: int) -> float:
        """Shared weather of a day (0.35 overcast .. 1 clear); ``day`` counts days since 1970 in UTC."""
        rng = np.random.default_rng([zlib.crc32(f"{self.latitude:.0f}{self.longitude:.0f}".encode()), day])
        return float(np.clip(1.0 - rng.gamma(1.2, 0.12), 0.35, 1.0))

    def pv_w_at(self, ts: np.ndarray) -> np.ndarray:
        """AC output in W at the instants ``ts`` (datetime64[s])."""
        ghi, _, _ = clear_sky(sun_position(ts, self.latitude, self.longitude))
        secs = ts.astype("datetime64[s]").astype(np.int64)
        days = secs // 86400
        out = np.empty(len(ts))
        for i, (g, s, d) in enumerate(zip(ghi, secs, days, strict=True)):
            k = self.clearness(int(d))
            rng = self._rng(1, int(s) // 300)
            # passing clouds: the cloudier the day, the deeper and more frequent the dips
            dip = (1 - k) * rng.uniform(0, 1.2) if rng.random() < 0.3 + (1 - k) else 0.0
            out[i] = self.pv_w * DERATE * g / 1000.0 * max(0.0, k - dip)
        return np.clip(out, 0.0, self.pv_w)

    def load_w_at(self, ts: np.ndarray) -> np.ndarray:
        zone = ZoneInfo(self.timezone)
        out = np.empty(len(ts))
        for i, s in enumerate(ts.astype("datetime64[s]").astype(np.int64)):
            local = dt.datetime.fromtimestamp(int(s), zone)
            h = local.hour + local.minute / 60
            weekend = local.weekday() >= 5
            shape = (
                250
                + 120 * np.exp(-((h - 3.5) ** 2) / 8)  # fridge, standby, night heating
                + 700 * np.exp(-((h - 7.5) ** 2) / (2.5 if weekend else 1.2))
                + 250 * (weekend and 10 <= h <= 16)
                + 1100 * np.exp(-((h - 19.0) ** 2) / 4.5)
            )
            noise = self._rng(2, int(s) // 900).normal(1.0, 0.12)
            out[i] = self.load_scale * shape * max(noise, 0.3)
        return out

    def net_w_at(self, ts: np.ndarray) -> np.ndarray:
        return self.load_w_at(ts) - self.pv_w_at(ts)


def make_fleet(n: int, latitude: float, longitude: float, timezone: str, seed: int = 2030) -> list[Site]:
    rng = np.random.default_rng(seed)
    return [
        Site(
            name=f"pv-{i + 1:03d}",
            latitude=latitude + rng.uniform(-0.02, 0.02),
            longitude=longitude + rng.uniform(-0.02, 0.02),
            timezone=timezone,
            pv_w=float(rng.choice([3800, 5000, 6000, 7600, 9600])),
            load_scale=float(rng.uniform(0.6, 1.6)),
            seed=seed * 1000 + i,
        )
        for i in range(n)
    ]
