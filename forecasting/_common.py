"""Shared pieces: the Forecast result, input validation, time grids and local-time helpers."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import numpy as np

MIN_STEP = np.timedelta64(5 * 60, "s")
MAX_STEP = np.timedelta64(3600, "s")
DAY_S = 86400


class ForecastWarning(UserWarning):
    """Raised (as a warning) when a model falls back to a simpler method, e.g. on a short history."""


@dataclass
class Forecast:
    """A probabilistic forecast aligned with ``t``.

    ``mean`` is the point forecast.  Quantiles are interpolated from a small stored set of levels
    (0.05..0.95); asking for a level outside that range clamps to the nearest stored level.
    """

    t: np.ndarray
    mean: np.ndarray
    levels: np.ndarray
    values: np.ndarray  # shape (len(levels), len(t)); non-decreasing along axis 0
    notes: list[str] = field(default_factory=list)

    def quantile(self, q: float) -> np.ndarray:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q!r}")
        q = float(np.clip(q, self.levels[0], self.levels[-1]))
        i = int(np.searchsorted(self.levels, q))
        if i < len(self.levels) and np.isclose(self.levels[i], q):
            return self.values[i].copy()
        lo, hi = self.levels[i - 1], self.levels[i]
        w = (q - lo) / (hi - lo)
        return (1 - w) * self.values[i - 1] + w * self.values[i]

    def __len__(self) -> int:
        return len(self.t)


QUANTILE_LEVELS = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])


def as_utc_datetime64(t: object, name: str = "t") -> np.ndarray:
    """Convert to ``datetime64[s]`` (naive = UTC); timezone-aware datetimes are converted to UTC."""
    arr = np.asarray(t)
    if arr.ndim != 1:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional")
    if arr.dtype == object:
        conv = []
        for v in arr:
            if isinstance(v, datetime) and v.tzinfo is not None:
                v = v.astimezone(UTC).replace(tzinfo=None)
            conv.append(np.datetime64(v, "s"))
        arr = np.array(conv, dtype="datetime64[s]")
    if not np.issubdtype(arr.dtype, np.datetime64):
        raise TypeError(f"{name} must be numpy datetime64 (UTC), got dtype {arr.dtype}")
    return arr.astype("datetime64[s]")


def as_float(y: object, n: int, name: str = "y") -> np.ndarray:
    arr = np.asarray(y, dtype=float).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but t has {n}")
    arr = arr.copy()
    arr[~np.isfinite(arr)] = np.nan
    return arr


def infer_step(t: np.ndarray) -> np.timedelta64:
    """The regular step of ``t`` (median spacing); must lie between 5 min and 1 h."""
    if len(t) < 2:
        raise ValueError("need at least two timestamps to infer the step")
    d = np.diff(t.astype(np.int64))
    if np.any(d <= 0):
        raise ValueError("timestamps must be strictly increasing")
    step = int(np.median(d))
    if not (MIN_STEP.astype(int) <= step <= MAX_STEP.astype(int)):
        raise ValueError(f"step of {step} s is outside the supported 5 min .. 1 h range")
    if DAY_S % step:
        raise ValueError(f"step of {step} s does not divide a day")
    return np.timedelta64(step, "s")


def to_grid(t: np.ndarray, y: np.ndarray, step: np.timedelta64) -> tuple[np.ndarray, np.ndarray]:
    """Place observations on a complete regular grid starting at ``t[0]``; holes become NaN.

    Timestamps off the grid are snapped to the nearest grid point (sensor clocks drift by seconds).
    """
    s = int(step.astype(int))
    t0 = t[0].astype(np.int64)
    idx = np.rint((t.astype(np.int64) - t0) / s).astype(np.int64)
    n = int(idx[-1]) + 1
    out = np.full(n, np.nan)
    out[idx] = y
    grid = t[0] + np.arange(n) * step
    return grid, out


def check_not_all_nan(y: np.ndarray, name: str = "y") -> None:
    if y.size == 0 or not np.any(np.isfinite(y)):
        raise ValueError(
            f"{name} contains no finite observations (all NaN or empty); cannot fit a forecaster"
        )


def clean_series(y: np.ndarray, steps_per_day: int, flat_steps: int) -> tuple[np.ndarray, list[str]]:
    """Mask spikes and flat-lined stretches (stuck sensors) as missing; returns the cleaned copy and notes.

    Spikes are judged conservatively because device loads switch hard (a charger jumps from 0.3 to 7 kW for a
    single interval) and such real peaks must survive:

    * gross errors: values beyond twenty times the series' robust scale (``max(|p0.5|, |p99.5|, R)`` with
      ``R = p99.5 - p0.5``) past its robust range, e.g. 65535 codes or unit errors;
    * isolated glitches: a single reading far (> 10 robust sigmas of the second difference, and > half the
      range) from two neighbours that agree with each other.  Multi-interval peaks are never touched; a lone
      one-interval burst is, which costs little since nobody can forecast it.

    Flat lines: runs of identical non-zero values longer than ``flat_steps`` (zero runs are legitimate for PV
    at night and for switched-off devices, so they are kept).
    """
    notes: list[str] = []
    y = y.copy()
    finite = np.isfinite(y)
    if finite.sum() < 10:
        return y, notes
    # Flat-lined sensor: identical consecutive non-zero readings.
    same = np.zeros(len(y), dtype=bool)
    same[1:] = (y[1:] == y[:-1]) & finite[1:] & (y[1:] != 0)
    if same.any():
        starts = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8)))) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate((same.astype(np.int8), [0]))) == -1) + 1
        masked = 0
        for a, b in zip(starts, ends, strict=True):
            if b - a >= flat_steps:
                y[a - 1 : b] = np.nan
                masked += int(b - a + 1)
        if masked:
            notes.append(f"masked {masked} flat-lined readings")
    finite = np.isfinite(y)
    if finite.sum() < 10:
        return y, notes
    lo, hi = np.nanquantile(y, [0.005, 0.995])
    width = hi - lo
    scale = max(width, abs(lo), abs(hi))
    spike = finite & ((y < lo - 20 * scale) | (y > hi + 20 * scale))
    if len(y) >= 3:
        prev, nxt = y[:-2], y[2:]
        mid = y[1:-1]
        dev = mid - (prev + nxt) / 2
        d2 = np.abs(dev[np.isfinite(dev)])
        sigma = 1.4826 * np.median(d2) if len(d2) else 0.0
        if sigma > 0:
            agree = np.abs(nxt - prev) < 2 * sigma
            iso = (np.abs(dev) > max(10 * sigma, 0.5 * width)) & agree
            spike[1:-1] |= iso & np.isfinite(dev)
    if spike.any():
        y[spike] = np.nan
        notes.append(f"masked {int(spike.sum())} spikes")
    return y, notes


def warn(msg: str) -> None:
    warnings.warn(msg, ForecastWarning, stacklevel=3)


class LocalClock:
    """Maps UTC instants to local wall-clock fields for a time zone (DST aware via ``zoneinfo``).

    Offsets are evaluated once per UTC hour present in the input, which is exact for every zone whose DST
    transitions fall on whole hours (all in practical use) and keeps the cost independent of the step.
    """

    def __init__(self, tz: str | tzinfo | None) -> None:
        if tz is None:
            self.tz: tzinfo | None = None
        elif isinstance(tz, str):
            self.tz = ZoneInfo(tz)
        else:
            self.tz = tz

    def offset_seconds(self, t: np.ndarray) -> np.ndarray:
        if self.tz is None or len(t) == 0:
            return np.zeros(len(t), dtype=np.int64)
        hours = t.astype("datetime64[h]").astype(np.int64)
        uniq, inv = np.unique(hours, return_inverse=True)
        offs = np.empty(len(uniq), dtype=np.int64)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        for i, h in enumerate(uniq):
            dt = (epoch + timedelta(hours=int(h))).astimezone(self.tz)
            off = dt.utcoffset()
            offs[i] = int(off.total_seconds()) if off is not None else 0
        return offs[inv]

    def local_seconds(self, t: np.ndarray) -> np.ndarray:
        """Seconds since 1970-01-01 in local wall-clock time."""
        return t.astype("datetime64[s]").astype(np.int64) + self.offset_seconds(t)

    def fields(self, t: np.ndarray, step_s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local day number, slot of day, weekday 0=Monday)."""
        loc = self.local_seconds(t)
        day = np.floor_divide(loc, DAY_S)
        slot = (loc - day * DAY_S) // step_s
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        return day, slot, weekday


def holiday_days(holidays: Iterable[date | str] | None) -> np.ndarray:
    """Local day numbers (days since 1970-01-01) of the given dates."""
    if holidays is None:
        return np.zeros(0, dtype=np.int64)
    days = [np.datetime64(h, "D").astype(np.int64) for h in holidays]
    return np.unique(np.asarray(days, dtype=np.int64))
