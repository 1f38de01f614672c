"""Gaps, spikes, flat-lined sensors, short histories, bad input: degrade gracefully, fail clearly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecasting import ForecastWarning, LoadForecaster, PVForecaster


def _next_day(t: np.ndarray) -> np.ndarray:
    return t[-1] + (t[1] - t[0]) * np.arange(1, 97)


@pytest.mark.parametrize("model", [lambda: LoadForecaster(), lambda: PVForecaster(39.7, -105.2)])
def test_all_nan_raises_clear_value_error(model, load_series):
    t, y = load_series
    with pytest.raises(ValueError, match="no finite observations"):
        model().fit(t, np.full(len(t), np.nan))
    with pytest.raises(ValueError):
        model().fit(t[:0], y[:0])


def test_bad_inputs(load_series):
    t, y = load_series
    with pytest.raises(ValueError):
        LoadForecaster().fit(t, y[:-1])
    with pytest.raises(TypeError):
        LoadForecaster().fit(np.arange(len(t)), y)
    with pytest.raises(ValueError):
        LoadForecaster().fit(t[::-1], y)
    with pytest.raises(ValueError):  # 1 s step is outside 5 min .. 1 h
        LoadForecaster().fit(t[0] + np.arange(100).astype("timedelta64[s]"), y[:100])
    with pytest.raises(RuntimeError):
        LoadForecaster().predict(t[:1])


def test_gaps_are_tolerated(load_series):
    t, y = load_series
    rng = np.random.default_rng(1)
    y = y.copy()
    y[rng.random(len(y)) < 0.1] = np.nan
    y[1000:1200] = np.nan  # two days missing
    keep = np.ones(len(t), dtype=bool)
    keep[2000:2050] = False  # and some rows not sent at all
    m = LoadForecaster().fit(t[keep], y[keep])
    fc = m.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.quantile(0.9)))
    ref = LoadForecaster().fit(*load_series).predict(_next_day(t)).mean
    assert np.sqrt(np.mean((fc.mean - ref) ** 2)) < 0.1 * np.mean(ref)


def test_spikes_are_masked(load_series):
    t, y = load_series
    ref = LoadForecaster().fit(t, y).predict(_next_day(t)).mean
    y = y.copy()
    y[[500, 1500, 2500, len(y) - 97, len(y) - 1]] = 50 * np.nanmax(y)
    y[3000] = -40 * np.nanmax(y)
    m = LoadForecaster().fit(t, y)
    fc = m.predict(_next_day(t)).mean
    assert any("spike" in n for n in m.notes)
    assert np.max(np.abs(fc - ref)) < 0.1 * np.mean(ref)


def test_flat_lined_sensor_is_masked(load_series):
    t, y = load_series
    y = y.copy()
    y[-300:-100] = y[-300]  # stuck for two days
    m = LoadForecaster().fit(t, y)
    assert any("flat-lined" in n for n in m.notes)
    assert np.all(np.isfinite(m.predict(_next_day(t)).mean))


def test_pv_flat_line_and_spikes(pv_series):
    t, y, lat, lon = pv_series
    y = y.copy()
    y[500:700] = 1234.5  # stuck sensor
    y[900] = 1e6  # impossible spike
    p = PVForecaster(lat, lon, capacity_w=3000).fit(t, y)
    assert np.isnan(p.y[550]) and np.isnan(p.y[900])
    fc = p.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean)) and fc.mean.max() <= 3000


def test_short_history_falls_back_and_says_so(make_load):
    t, y = make_load(days=3)
    with pytest.warns(ForecastWarning, match="short history"):
        m = LoadForecaster().fit(t, y)
    assert m.mode == "daily-profile"
    fc = m.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean))
    assert any("short history" in n for n in fc.notes)
    # the daily shape is kept
    assert np.corrcoef(fc.mean, y[-96:])[0, 1] > 0.8

    with pytest.warns(ForecastWarning, match="very short history"):
        m = LoadForecaster().fit(t[:20], y[:20])
    assert m.mode == "level"
    assert np.all(np.isfinite(m.predict(_next_day(t[:20])).mean))


def test_short_history_upgrades_after_updates(make_load):
    t, y = make_load(days=20)
    S = 96
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        m = LoadForecaster().fit(t[: 5 * S], y[: 5 * S])
    assert m.mode == "daily-profile"
    m.update(t[5 * S :], y[5 * S :])
    assert m.mode == "full"


def test_pv_short_history(make_pv):
    t, y, lat, lon = make_pv(days=3)
    with pytest.warns(ForecastWarning, match="short history"):
        p = PVForecaster(lat, lon).fit(t, y)
    fc = p.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean)) and fc.mean.max() > 0
    assert np.all(fc.quantile(0.1) <= fc.quantile(0.9))


def test_pv_single_day_and_nan_heavy(make_pv):
    t, y, lat, lon = make_pv(days=2)
    y = y.copy()
    y[::2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        p = PVForecaster(lat, lon).fit(t, y)
    assert np.all(np.isfinite(p.predict(_next_day(t)).mean))


def test_local_time_zone_with_dst(make_load):
    # Across the European spring DST change (2024-03-31) with local-time day types.
    t, y = make_load(days=30, start=np.datetime64("2024-03-10T00:00", "s"))
    m = LoadForecaster(tz="Europe/Berlin", holidays=["2024-04-01"]).fit(t, y)
    fc = m.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean))


def test_timezone_aware_datetimes_accepted(load_series):
    from datetime import UTC, datetime, timedelta

    t, y = load_series
    t_obj = [datetime(2024, 3, 4, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(len(t))]
    m = LoadForecaster().fit(np.array(t_obj, dtype=object), y)
    assert np.all(np.isfinite(m.predict(_next_day(t)).mean))


def test_pv_short_history_upgrades_after_updates(make_pv):
    t, y, lat, lon = make_pv(days=25)
    S = 96
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        p = PVForecaster(lat, lon).fit(t[: 4 * S], y[: 4 * S])
    assert p.mode != "full"
    for d in range(4, 25):
        p.update(t[d * S : (d + 1) * S], y[d * S : (d + 1) * S])
    assert p.mode == "full"
    assert np.all(np.isfinite(p.predict(_next_day(t)).mean))


def test_real_device_peaks_survive_cleaning():
    """A charger running 0.3 -> 7 kW for an hour at a time is real load, not a spike."""
    from forecasting._common import clean_series

    rng = np.random.default_rng(3)
    y = 0.3 + rng.normal(0, 0.02, 96 * 14)
    for day in range(0, 14, 3):
        y[day * 96 + 72 : day * 96 + 76] = 7.0 + rng.normal(0, 0.05, 4)
    y[500] = 900.0  # and one glitch
    clean, notes = clean_series(y, 96, flat_steps=16)
    assert np.isnan(clean[500])
    assert np.isfinite(np.delete(clean, 500)).all(), notes


def test_a_time_of_day_cleaned_away_on_every_day_borrows_its_neighbours_model():
    """Nights flat-lined on every day (a stuck meter, cleaned away as such) leave those times of day without a
    single observation; the full model must still fit (it raised 'Singular matrix') and forecast them."""
    S, days = 96, 30
    t = np.datetime64("2026-11-01T00:00") + np.arange(S * days) * np.timedelta64(15, "m")
    h = (np.arange(S * days) % S) / 4
    rng = np.random.default_rng(1)
    y = np.where(h >= 5, 5 + 3 * np.sin((h - 5) / 19 * np.pi) + rng.normal(0, 0.2, S * days), 2.0)
    m = LoadForecaster().fit(t, y)
    assert m.mode == "full"
    fc = m.predict(_next_day(t))
    assert np.all(np.isfinite(fc.mean))
    day = (np.arange(S) / 4) >= 6
    truth = 5 + 3 * np.sin((np.arange(S)[day] / 4 - 5) / 19 * np.pi)
    assert np.sqrt(np.mean((fc.mean[day] - truth) ** 2)) < 0.5


def test_a_short_history_warning_counts_usable_days():
    S = 96
    t = np.datetime64("2026-11-01T00:00") + np.arange(S * 20) * np.timedelta64(15, "m")
    y = np.where((np.arange(S * 20) % S) < 60, 3.0 + 0.1 * np.sin(np.arange(S * 20)), 1.0)
    with pytest.warns(ForecastWarning, match=r"days of usable observations in 20\.0 < 15"):
        LoadForecaster().fit(t, y)
