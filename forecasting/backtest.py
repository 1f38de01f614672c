"""Rolling-origin backtests and the metrics the benchmark reports.

Protocol (identical for our models and for the baselines):

* The model is fitted on everything strictly before the first issue time, then moved forward origin by
  origin: before each issue time it receives, through ``update``, exactly the observations that became
  available since the previous origin, and every ``refit_days`` it is refitted on the data before the origin.
  The model object never sees a value at or after its issue time (``tests/forecasting_tests`` pins this with a
  spying model).
* Day-ahead: issued at 00:00 local time, forecasting the 24 h of the local day that starts then.
* Hour-ahead: issued at every step, forecasting the single value one hour after the newest observation
  (15 min data: lead of four steps).  This is the strict reading of "1 h ahead"; averaging over leads of
  15-60 min would flatter every model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ._common import QUANTILE_LEVELS, Forecast, LocalClock


class Model(Protocol):
    def fit(self, t: np.ndarray, y: np.ndarray) -> Model: ...
    def update(self, t_new: np.ndarray, y_new: np.ndarray) -> Model: ...
    def predict(self, t_future: np.ndarray) -> Forecast: ...


@dataclass
class BacktestResult:
    t: np.ndarray  # target instants (all issued forecasts, concatenated)
    issue: np.ndarray  # issue time of each target
    actual: np.ndarray
    mean: np.ndarray
    quantiles: np.ndarray  # (len(QUANTILE_LEVELS), n)
    levels: np.ndarray = field(default_factory=lambda: QUANTILE_LEVELS.copy())


def issue_times(
    t: np.ndarray, start: np.datetime64, end: np.datetime64, mode: str, tz: str | None
) -> np.ndarray:
    """Issue instants (UTC) in [start, end): local midnights (day-ahead) or every step (hour-ahead)."""
    cand = t[(t >= start) & (t < end)]
    if mode == "day-ahead":
        loc = LocalClock(tz).local_seconds(cand)
        return cand[loc % 86400 == 0]
    if mode == "hour-ahead":
        return cand
    raise ValueError(f"unknown mode {mode!r}")


def rolling_origin(
    make_model: Callable[[], Model],
    t: np.ndarray,
    y: np.ndarray,
    start: np.datetime64,
    end: np.datetime64,
    mode: str,
    tz: str | None = None,
    refit_days: float | None = 7.0,
) -> BacktestResult:
    """Run a rolling-origin backtest of the model built by ``make_model`` over issue times in [start, end)."""
    t = np.asarray(t, dtype="datetime64[s]")
    step = t[1] - t[0]
    origins = issue_times(t, start, end, mode, tz)
    model: Model | None = None
    seen = 0  # number of leading samples the model has been given
    last_fit: np.datetime64 | None = None
    out_t, out_issue, out_mean, out_q = [], [], [], []
    for origin in origins:
        avail = int(np.searchsorted(t, origin))  # samples strictly before the issue time
        refit = model is None or (
            refit_days is not None
            and last_fit is not None
            and (origin - last_fit) >= np.timedelta64(int(refit_days * 86400), "s")
        )
        if refit:
            model = make_model().fit(t[:avail], y[:avail])
            last_fit = origin
        elif avail > seen:
            assert model is not None
            model = model.update(t[seen:avail], y[seen:avail])
        seen = avail
        if mode == "day-ahead":
            tf = origin + np.arange(int(np.timedelta64(86400, "s") / step)) * step
        else:
            tf = np.array([origin + np.timedelta64(3600, "s") - step])
        assert model is not None
        fc = model.predict(tf)
        out_t.append(tf)
        out_issue.append(np.full(len(tf), origin))
        out_mean.append(fc.mean)
        out_q.append(np.stack([fc.quantile(q) for q in QUANTILE_LEVELS]))
    tt = np.concatenate(out_t)
    pos = np.searchsorted(t, tt)
    inside = pos < len(t)
    actual = np.full(len(tt), np.nan)
    actual[inside] = y[pos[inside]]
    actual[inside & (t[np.minimum(pos, len(t) - 1)] != tt)] = np.nan
    return BacktestResult(
        t=tt,
        issue=np.concatenate(out_issue),
        actual=actual,
        mean=np.concatenate(out_mean),
        quantiles=np.concatenate(out_q, axis=1),
    )


@dataclass
class Scores:
    nrmse: float
    mae: float
    pinball: float
    coverage80: float
    n: int


def score(res: BacktestResult, norm: float, mask: np.ndarray | None = None) -> Scores:
    """nRMSE (% of ``norm``), MAE (units of y), mean pinball loss over the stored quantile levels (% of
    ``norm``) and the share of actuals inside the 10-90 % interval (%)."""
    ok = np.isfinite(res.actual) & np.isfinite(res.mean)
    if mask is not None:
        ok &= mask
    a = res.actual[ok]
    m = res.mean[ok]
    q = res.quantiles[:, ok]
    err = a - m
    lv = res.levels[:, None]
    diff = a[None, :] - q
    pin = np.mean(np.maximum(lv * diff, (lv - 1) * diff))
    lo = q[list(res.levels).index(0.1)]
    hi = q[list(res.levels).index(0.9)]
    return Scores(
        nrmse=100 * float(np.sqrt(np.mean(err**2))) / norm,
        mae=float(np.mean(np.abs(err))),
        pinball=100 * float(pin) / norm,
        coverage80=100 * float(np.mean((a >= lo) & (a <= hi))),
        n=int(ok.sum()),
    )
