"""The backtest harness never shows a model data at or after its issue time; metrics are right."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import Forecast, LoadForecaster
from forecasting._common import QUANTILE_LEVELS
from forecasting.backtest import BacktestResult, issue_times, rolling_origin, score
from forecasting.baselines import Conformal, Persistence


class Spy:
    """Records every timestamp it is shown and checks, at each predict, that none is at/after the issue."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.latest: np.datetime64 | None = None

    def fit(self, t, y):
        self._see(t, y)
        return self

    def update(self, t, y):
        self._see(t, y)
        return self

    def _see(self, t, y):
        assert len(t) == len(y)
        if len(t):
            assert self.latest is None or t[0] > self.latest, "data shown twice or out of order"
            self.latest = t[-1]

    def predict(self, tf):
        issue = tf[0] if len(tf) > 1 else tf[0] - np.timedelta64(3600, "s") + np.timedelta64(900, "s")
        self.log.append((self.latest, tf[0], tf[-1]))
        assert self.latest < issue, f"model saw {self.latest} but the issue time is {issue}"
        assert self.latest < tf[0]
        mean = np.full(len(tf), 1.0)
        return Forecast(tf, mean, QUANTILE_LEVELS.copy(), np.tile(mean, (len(QUANTILE_LEVELS), 1)))


@pytest.mark.parametrize("mode", ["day-ahead", "hour-ahead"])
@pytest.mark.parametrize("refit", [None, 2.0])
def test_no_leakage(mode, refit, load_series):
    t, y = load_series
    log: list = []
    start = t[0] + np.timedelta64(20 * 86400, "s")
    end = t[0] + np.timedelta64(25 * 86400, "s")
    res = rolling_origin(lambda: Spy(log), t, y, start, end, mode, tz="Europe/Berlin", refit_days=refit)
    assert log, "no forecast was issued"
    step = t[1] - t[0]
    for latest, first, _last in log:
        # the newest value shown is exactly the last one before the issue time (nothing newer, nothing lost)
        gap = first - latest
        assert gap == step if mode == "day-ahead" else gap == np.timedelta64(3600, "s")
    assert np.all(res.t >= start)


def test_real_model_cannot_see_the_future(load_series):
    """A LoadForecaster in the harness gives the same forecasts as one fitted by hand on the past only."""
    t, y = load_series
    start = t[0] + np.timedelta64(28 * 86400, "s")
    end = start + np.timedelta64(86400, "s")
    res = rolling_origin(LoadForecaster, t, y, start, end, "day-ahead", None, refit_days=None)
    n = int(np.searchsorted(t, start))
    y_poisoned = y.copy()
    y_poisoned[n:] = 1e9  # anything after the issue time must not matter
    res2 = rolling_origin(LoadForecaster, t, y_poisoned, start, end, "day-ahead", None, refit_days=None)
    np.testing.assert_allclose(res.mean, res2.mean)
    direct = LoadForecaster().fit(t[:n], y[:n]).predict(t[n : n + 96]).mean
    np.testing.assert_allclose(res.mean, direct)


def test_issue_times_day_ahead_local_midnight():
    t = np.datetime64("2024-03-29T00:00", "s") + np.arange(4 * 96) * np.timedelta64(900, "s")
    it = issue_times(t, t[0], t[-1], "day-ahead", "Europe/Berlin")
    # local midnight is 23:00 UTC before the DST change (31 March) and 22:00 UTC after it
    assert [str(x) for x in it] == [
        "2024-03-29T23:00:00",
        "2024-03-30T23:00:00",
        "2024-03-31T22:00:00",
        "2024-04-01T22:00:00",
    ]
    assert len(issue_times(t, t[0], t[-1], "hour-ahead", None)) == len(t) - 1


def test_score_metrics():
    n = 1000
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, n)
    mean = np.zeros(n)
    from scipy.stats import norm

    q = norm.ppf(QUANTILE_LEVELS)[:, None] * np.ones((1, n))
    res = BacktestResult(
        t=np.zeros(n, "datetime64[s]"),
        issue=np.zeros(n, "datetime64[s]"),
        actual=actual,
        mean=mean,
        quantiles=q,
    )
    s = score(res, norm=10.0)
    assert s.nrmse == pytest.approx(10.0, rel=0.1)
    assert 75 < s.coverage80 < 85
    assert s.n == n
    # a perfect point forecast has zero pinball loss
    res2 = BacktestResult(
        t=res.t, issue=res.issue, actual=actual, mean=actual, quantiles=np.tile(actual, (11, 1))
    )
    assert score(res2, 1.0).pinball == pytest.approx(0.0)


def test_model_beats_persistence_and_is_calibrated(make_load):
    t, y = make_load(days=49)
    start = t[0] + np.timedelta64(35 * 86400, "s")
    ours = score(rolling_origin(LoadForecaster, t, y, start, t[-1], "day-ahead", None), 50.0)
    pers = score(
        rolling_origin(
            lambda: Conformal(lambda: Persistence(96), "day-ahead", None, cal_days=7),
            t,
            y,
            start,
            t[-1],
            "day-ahead",
            None,
        ),
        50.0,
    )
    assert ours.nrmse < 0.8 * pers.nrmse
    assert 65 < ours.coverage80 < 95
