"""The forecasting public API, kept exactly: other code and outside evaluations call it."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import Forecast, LoadForecaster, PVForecaster


def _future(t: np.ndarray, n: int) -> np.ndarray:
    step = t[1] - t[0]
    return t[-1] + step * np.arange(1, n + 1)


def test_load_fit_update_predict_contract(load_series):
    t, y = load_series
    m = LoadForecaster().fit(t[:-96], y[:-96])
    assert isinstance(m, LoadForecaster)
    m2 = m.update(t[-96:], y[-96:])
    assert m2 is m
    tf = _future(t, 192)
    fc = m.predict(tf)
    assert isinstance(fc, Forecast)
    assert fc.mean.shape == (192,)
    lo, hi = fc.quantile(0.1), fc.quantile(0.9)
    assert lo.shape == hi.shape == (192,)
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(lo <= fc.quantile(0.5) + 1e-9) and np.all(fc.quantile(0.5) <= hi + 1e-9)
    assert np.all(lo <= fc.mean) and np.all(fc.mean <= hi)


@pytest.mark.parametrize("step_min", [5, 15, 30, 60])
def test_load_steps_and_horizons(step_min, make_load):
    t, y = make_load(days=22, step_min=step_min)
    m = LoadForecaster().fit(t, y)
    per_h = 60 // step_min
    for n in (1, per_h, 48 * per_h):
        fc = m.predict(_future(t, n))
        assert fc.mean.shape == (n,)
        assert np.all(np.isfinite(fc.mean))


def test_load_accuracy_on_synthetic(load_series):
    t, y = load_series
    m = LoadForecaster().fit(t[:-96], y[:-96])
    fc = m.predict(t[-96:])
    err = np.sqrt(np.mean((fc.mean - y[-96:]) ** 2)) / np.mean(y[-96:])
    assert err < 0.08  # noise alone is ~3.5 %


def test_quantiles_are_monotone_in_level(load_series):
    t, y = load_series
    fc = LoadForecaster().fit(t, y).predict(_future(t, 96))
    levels = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    qs = np.stack([fc.quantile(q) for q in levels])
    assert np.all(np.diff(qs, axis=0) >= -1e-9)
    with pytest.raises(ValueError):
        fc.quantile(1.5)


def test_update_is_cheap_and_does_not_refit(load_series, monkeypatch):
    t, y = load_series
    m = LoadForecaster().fit(t[:-96], y[:-96])

    def boom(*a, **k):
        raise AssertionError("update() must not refit from scratch")

    monkeypatch.setattr(m, "_fit_full", boom)
    monkeypatch.setattr(m, "_refit", boom)
    m.update(t[-96:-48], y[-96:-48])
    m.update(t[-48:], y[-48:])
    fc = m.predict(_future(t, 4))
    assert np.all(np.isfinite(fc.mean))


def test_update_moves_the_issue_time(load_series):
    t, y = load_series
    m = LoadForecaster().fit(t[:-8], y[:-8])
    with pytest.raises(ValueError):
        m.update(t[:4], y[:4])  # already seen
    m.update(t[-8:], y[-8:])
    with pytest.raises(ValueError):
        m.predict(t[-4:])  # no longer in the future


def test_predict_requires_future_times(load_series):
    t, y = load_series
    m = LoadForecaster().fit(t, y)
    with pytest.raises(ValueError):
        m.predict(t[-10:])


def test_pv_contract(pv_series):
    t, y, lat, lon = pv_series
    p = PVForecaster(lat, lon, capacity_w=None).fit(t[:-96], y[:-96])
    assert isinstance(p, PVForecaster)
    p = p.update(t[-96:-90], y[-96:-90])
    tf = t[-90:]
    fc = p.predict(tf)
    assert fc.mean.shape == (90,)
    lo, hi = fc.quantile(0.1), fc.quantile(0.9)
    assert np.all(lo <= fc.mean + 1e-9) and np.all(fc.mean <= hi + 1e-9)
    assert np.all(lo >= 0) and np.all(hi <= p.pmax + 1e-6)
    night = fc.mean == 0
    assert night.any() and (~night).any()


def test_pv_learns_orientation(pv_series):
    t, y, lat, lon = pv_series
    p = PVForecaster(lat, lon).fit(t, y)
    assert abs(p.tilt - 30) <= 10
    assert abs(p.azimuth - 200) <= 20


def test_pv_day_ahead_beats_persistence(pv_series):
    t, y, lat, lon = pv_series
    S = 96
    p = PVForecaster(lat, lon).fit(t[: 20 * S], y[: 20 * S])
    err_model, err_pers = [], []
    for d in range(20, 30):
        fc = p.predict(t[d * S : (d + 1) * S])
        err_model.append(fc.mean - y[d * S : (d + 1) * S])
        err_pers.append(y[(d - 1) * S : d * S] - y[d * S : (d + 1) * S])
        p.update(t[d * S : (d + 1) * S], y[d * S : (d + 1) * S])
    rmse = np.sqrt(np.mean(np.square(err_model)))
    assert rmse < np.sqrt(np.mean(np.square(err_pers)))


def test_pv_weather_input(pv_series):
    t, y, lat, lon = pv_series
    n = len(t) - 96
    p = PVForecaster(lat, lon).fit(t[:n], y[:n])
    tf = t[n:]
    sunny = p.predict(tf, weather={"cloud_cover": np.zeros(len(tf))}).mean
    cloudy = p.predict(tf, weather={"cloud_cover": np.full(len(tf), 100.0)}).mean
    assert sunny.sum() > 1.5 * cloudy.sum()
    ghi = p.predict(tf, weather=np.full(len(tf), 50.0)).mean  # a dark day in W/m2
    assert ghi.sum() < sunny.sum()
    with pytest.raises(ValueError):
        p.predict(tf, weather=np.zeros(3))


def test_pv_given_orientation_and_capacity(pv_series):
    t, y, lat, lon = pv_series
    p = PVForecaster(lat, lon, capacity_w=3000, tilt=30, azimuth=200).fit(t, y)
    assert p.tilt == 30 and p.azimuth == 200
    assert np.all(p.predict(t[-1] + np.timedelta64(900, "s") * np.arange(1, 97)).mean <= 3000 + 1e-6)


def test_pv_step_sizes(make_pv):
    for step_min in (5, 60):
        t, y, lat, lon = make_pv(days=15, step_min=step_min)
        p = PVForecaster(lat, lon).fit(t, y)
        fc = p.predict(t[-1] + (t[1] - t[0]) * np.arange(1, 48 * 60 // step_min + 1))
        assert np.all(np.isfinite(fc.mean)) and fc.mean.max() > 0
