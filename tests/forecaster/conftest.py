"""Synthetic series for the forecasting tests (no bench extra needed, all fast)."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.solar import clear_sky, plane_of_array, sun_position

START = np.datetime64("2024-03-04T00:00", "s")  # a Monday


def make_load(days: int = 35, step_min: int = 15, seed: int = 0, start: np.datetime64 = START):
    """Feeder-like load: daily double peak, weekend dip, slow trend and noise (kW)."""
    rng = np.random.default_rng(seed)
    step = np.timedelta64(step_min * 60, "s")
    n = days * 86400 // (step_min * 60)
    t = start + np.arange(n) * step
    hours = (t - t.astype("datetime64[D]")).astype(float) / 3600
    weekday = (t.astype("datetime64[D]").astype(np.int64) + 3) % 7
    daily = 1.0 + 0.4 * np.exp(-((hours - 8) ** 2) / 4) + 0.7 * np.exp(-((hours - 19) ** 2) / 6)
    weekend = np.where(weekday >= 5, 0.8, 1.0)
    trend = 1.0 + 0.1 * np.arange(n) / n
    y = 50 * daily * weekend * trend + rng.normal(0, 2.0, n)
    return t, y


def make_pv(days: int = 30, step_min: int = 15, seed: int = 0, tilt: float = 30, azimuth: float = 200):
    """PV power at Golden, CO from the in-package clear-sky model with random daily cloudiness (W)."""
    rng = np.random.default_rng(seed)
    lat, lon = 39.74, -105.18
    step = np.timedelta64(step_min * 60, "s")
    n = days * 86400 // (step_min * 60)
    t = np.datetime64("2024-05-01T00:00", "s") + np.arange(n) * step
    sun = sun_position(t, lat, lon)
    ghi, dni, dhi = clear_sky(sun, 1800)
    poa = plane_of_array(sun, dni, dhi, ghi, tilt, azimuth)
    day = (t - t[0]).astype(np.int64) // 86400
    clear = rng.random(days) < 0.5
    k_day = np.where(clear, 1.0, rng.uniform(0.2, 0.9, days))[day]
    noise = np.where(clear[day], 0.0, rng.normal(0, 0.15, n))
    y = np.clip(3.0 * poa * np.clip(k_day + noise, 0, 1.2), 0, 3000)
    y[sun.zenith > 90] = 0.0
    return t, y, lat, lon


@pytest.fixture
def load_series():
    return make_load()


@pytest.fixture
def pv_series():
    return make_pv()


@pytest.fixture(name="make_load")
def _make_load_fixture():
    return make_load


@pytest.fixture(name="make_pv")
def _make_pv_fixture():
    return make_pv
