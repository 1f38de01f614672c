"""Checks on the real benchmark data; skipped unless the ``bench`` extra is installed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecasting import LoadForecaster
from forecasting.backtest import rolling_origin, score


def test_gb_demand_day_ahead_meets_target():
    pytest.importorskip("pmdarima")
    from forecasting.data import load_gb_demand

    d = load_gb_demand()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rolling_origin(
            lambda: LoadForecaster(tz=d.tz), d.t, d.y, d.test_start, d.test_end, "day-ahead", d.tz, 7.0
        )
    s = score(res, d.norm)
    assert s.n == 42 * 48
    assert s.nrmse <= 2.2
    assert 75 <= s.coverage80 <= 85


def test_pv_system50_dst_labels_are_fixed():
    """After the DST fix, the mid-point between first and last light sits near solar noon all year."""
    pytest.importorskip("pvanalytics")
    pytest.importorskip("pandas")
    from forecasting.data import load_pv_system50
    from forecasting.solar import sun_position

    d = load_pv_system50()
    assert np.all(np.diff(d.t) == np.timedelta64(900, "s"))
    local = d.t - np.timedelta64(7, "h")
    day = local.astype("datetime64[D]")
    sun = sun_position(d.t, d.latitude, d.longitude)
    for month in ("2012-01", "2012-07", "2013-01", "2013-07"):
        offsets = []
        for u in np.unique(day[local.astype("datetime64[M]") == np.datetime64(month)]):
            s = day == u
            on = np.flatnonzero(d.y[s] > 30)
            if len(on) < 10:
                continue
            minutes = (local[s] - u).astype(float) / 60
            mid = (minutes[on[0]] + minutes[on[-1]]) / 2
            offsets.append(mid - minutes[np.argmin(sun.zenith[s])])
        # summer and winter agree (a wrong DST fix would put them an hour apart)
        assert abs(np.median(offsets)) < 30, month
