"""The numpy gradient-boosted trees behind the short-lead PV forecast."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecasting import PVForecaster
from forecasting.backtest import rolling_origin
from forecasting.trees import BoostedTrees


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 4))
    # A threshold and an interaction: what a linear model cannot express.
    y = np.where(X[:, 0] > 0.5, 1.0, -1.0) + X[:, 1] * (X[:, 2] > 0) + 0.1 * rng.normal(size=n)
    return X, y


def test_learns_thresholds_and_interactions_out_of_sample():
    X, y = _data(4000, 1)
    Xt, yt = _data(2000, 2)
    model = BoostedTrees(n_trees=150, depth=3, learning_rate=0.1, n_bins=32).fit(X, y)
    rmse_trees = np.sqrt(np.mean((model.predict(Xt) - yt) ** 2))
    A = np.column_stack([np.ones(len(X)), X])
    beta = np.linalg.lstsq(A, y, rcond=None)[0]
    rmse_linear = np.sqrt(np.mean((np.column_stack([np.ones(len(Xt)), Xt]) @ beta - yt) ** 2))
    assert rmse_trees < 0.5 * rmse_linear
    assert rmse_trees < 0.3


def test_single_row_prediction_equals_batch_prediction():
    X, y = _data(1000, 3)
    model = BoostedTrees(n_trees=40, depth=4).fit(X, y)
    batch = model.predict(X[:5])
    assert np.allclose([model.predict(X[i])[0] for i in range(5)], batch)


def test_missing_feature_values_get_their_own_branch():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 2))
    y = X[:, 0].copy()
    missing = rng.random(3000) < 0.3
    X[missing, 0] = np.nan
    y[missing] = 5.0  # "sensor missing" means something here
    model = BoostedTrees(n_trees=100, depth=2, learning_rate=0.2).fit(X, y)
    pred = model.predict(np.array([[np.nan, 0.0], [0.0, 0.0]]))
    assert np.all(np.isfinite(pred))
    assert abs(pred[0] - 5.0) < 0.3 and abs(pred[1]) < 0.3


def test_weights_decide_which_rows_count():
    X = np.repeat(np.array([[0.0], [1.0]]), 500, axis=0)
    y = np.where(X[:, 0] > 0.5, 10.0, 0.0)
    w = np.where(X[:, 0] > 0.5, 0.0, 1.0)  # the rows at x=1 do not count at all
    model = BoostedTrees(n_trees=50, depth=1, learning_rate=0.3, min_leaf_weight=1.0).fit(X, y, w)
    assert abs(model.predict(np.array([[0.0]]))[0]) < 0.1
    assert abs(model.base) < 1e-9


def test_min_leaf_weight_keeps_nodes_whole():
    X, y = _data(500, 5)
    model = BoostedTrees(n_trees=20, depth=3, min_leaf_weight=400).fit(X, y)
    # No split can leave 400 rows on both sides of 500: every prediction is the (shrunk) mean.
    pred = model.predict(X)
    assert np.ptp(pred) < 1e-12


def test_non_finite_targets_are_refused():
    X, y = _data(100, 6)
    y[3] = np.nan
    with pytest.raises(ValueError):
        BoostedTrees(n_trees=5).fit(X, y)


def test_pv_uses_trees_for_short_leads_on_long_histories(make_pv):
    t, y, lat, lon = make_pv(days=160, seed=3)
    t, y = t[:-32], y[:-32]  # the history ends at 16:00 UTC, mid-morning in Colorado
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PVForecaster(lat, lon).fit(t, y)
    assert model.rich and len(model._trees) == 3
    assert list(model._tree_leads) == [1, 4, 8]  # 15 min, 1 h, 2 h at 15-min steps
    # Six hours ahead from mid-morning: finite and within the AC limit; the trees answer for every tree lead.
    step = t[1] - t[0]
    tf = t[-1] + step * np.arange(1, 25)
    fc = model.predict(tf)
    assert np.all(np.isfinite(fc.mean)) and np.all(fc.mean >= 0) and np.all(fc.mean <= model.pmax + 1e-9)
    st = model._state(len(model.y))
    assert np.isfinite(st["trees"]).all()
    assert np.isfinite(model._tree_index(st["trees"], 6)) and np.isnan(model._tree_index(st["trees"], 9))


def test_pv_hour_ahead_with_trees_cannot_see_the_future(make_pv):
    """Poisoning the data from an issue time on changes no forecast issued up to then (trees included)."""

    t, y, lat, lon = make_pv(days=150, seed=5)
    start = t[0] + np.timedelta64(149 * 86400 + 15 * 3600, "s")  # 09:00 local on the last day
    end = start + np.timedelta64(4 * 3600, "s")

    def run(series: np.ndarray):  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rolling_origin(
                lambda: PVForecaster(lat, lon), t, series, start, end, "hour-ahead", None, None
            )

    res = run(y)
    assert len(res.mean) == 16 and np.all(np.isfinite(res.mean)) and res.mean.max() > 0
    for i in (0, 15):  # poison from the first / the last issue time on
        poisoned = y.copy()
        poisoned[int(np.searchsorted(t, res.issue[i])) :] = 1e6
        res2 = run(poisoned)
        np.testing.assert_allclose(res.mean[: i + 1], res2.mean[: i + 1])
        assert not np.allclose(res.mean, res2.mean) or i == 15  # the poison does reach later forecasts
