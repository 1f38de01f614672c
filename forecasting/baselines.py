"""Reference models the benchmark must beat, behind the same fit/update/predict protocol as ours.

They are deliberately the textbook versions named as references for the forecasting targets: persistence, Holt-Winters additive with a
weekly season, OLS per time slot on daily/weekly lags and day of week, OLS on the clear-sky index, and
clear sky x 7-day mean clear-sky index.  Point forecasts only; :class:`Conformal` gives any of them
quantiles from its own rolling-origin residuals on the end of the training data, so pinball loss and
coverage are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import numpy as np
from scipy.optimize import minimize

from ._common import DAY_S, QUANTILE_LEVELS, Forecast, LocalClock
from .backtest import Model
from .solar import sun_position


class _History:
    """Regular-grid history shared by the simple baselines."""

    def fit(self, t: np.ndarray, y: np.ndarray) -> Self:
        self.t = np.asarray(t, dtype="datetime64[s]")
        self.y = np.asarray(y, dtype=float).copy()
        self.step = self.t[1] - self.t[0]
        self.S = DAY_S // int(self.step.astype(int))
        self._after_fit()
        return self

    def _after_fit(self) -> None:
        pass

    def update(self, t_new: np.ndarray, y_new: np.ndarray) -> Self:
        self.t = np.concatenate([self.t, np.asarray(t_new, dtype="datetime64[s]")])
        self.y = np.concatenate([self.y, np.asarray(y_new, dtype=float)])
        self._after_update(len(t_new))
        return self

    def _after_update(self, n_new: int) -> None:
        pass

    def _idx(self, tf: np.ndarray) -> np.ndarray:
        return ((tf - self.t[0]) // self.step).astype(np.int64)

    @staticmethod
    def _point(tf: np.ndarray, mean: np.ndarray) -> Forecast:
        vals = np.tile(mean, (len(QUANTILE_LEVELS), 1))
        return Forecast(t=tf, mean=mean, levels=QUANTILE_LEVELS.copy(), values=vals)


class Persistence(_History):
    """``season_steps`` = 0: last observed value; otherwise the value one season (e.g. one day) earlier,
    going back whole seasons until an observed value is found."""

    def __init__(self, season_steps: int = 0) -> None:
        self.season = season_steps

    def predict(self, tf: np.ndarray) -> Forecast:
        y = self.y
        n = len(y)
        if self.season == 0:
            fin = np.flatnonzero(np.isfinite(y))
            return self._point(tf, np.full(len(tf), y[fin[-1]]))
        idx = self._idx(tf)
        src = idx.copy()
        for _ in range(14):
            back = src >= n
            src[back] -= self.season
            if not back.any():
                break
        val = y[np.clip(src, 0, n - 1)]
        for _ in range(7):  # skip holes in the source day
            bad = ~np.isfinite(val) & (src - self.season >= 0)
            if not bad.any():
                break
            src[bad] -= self.season
            val = y[src]
        return self._point(tf, val)


class HoltWintersAdditive(_History):
    """Additive Holt-Winters (level, trend, one season), parameters by least squares of one-step errors."""

    def __init__(self, season_steps: int) -> None:
        self.m = season_steps

    def _run(
        self, params: np.ndarray, y: np.ndarray, state: tuple | None = None
    ) -> tuple[float, tuple[float, float, list[float]]]:
        a, b, g = params
        m = self.m
        if state is None:
            # Initial state from all whole seasons of the fitting data: the mean season shape, the first
            # season's level and the average drift between seasons.  (Initialising from the first season
            # alone, the common shortcut, left the baseline at 2.9 % on GB demand instead of 2.05 %.)
            n = (len(y) // m) * m
            W = y[:n].reshape(-1, m)
            means = np.nanmean(W, axis=1)
            level = float(means[0])
            trend = float((means[-1] - means[0]) / max((len(W) - 1) * m, 1))
            season = list(np.nan_to_num(np.nanmean(W - means[:, None], axis=0)))
            start = 0
        else:
            level, trend, season = state
            season = list(season)
            start = 0
        sse = 0.0
        for i in range(start, len(y)):
            s = season[-m]
            f = level + trend + s
            obs = y[i]
            if not np.isfinite(obs):
                obs = f  # gaps: carry the state forward on the model's own forecast
            e = obs - f
            sse += e * e
            new_level = level + trend + a * e
            trend = trend + a * b * e
            season.append(s + g * (1 - a) * e)
            level = new_level
        return sse, (level, trend, season[-m:])

    def _after_fit(self) -> None:
        y = self.y

        def sse(params: np.ndarray) -> float:
            return self._run(params, y)[0]

        res = minimize(
            sse,
            x0=np.array([0.3, 0.01, 0.2]),
            bounds=[(1e-3, 1.0), (0.0, 1.0), (0.0, 1.0)],
            method="L-BFGS-B",
            options={"maxiter": 60},
        )
        self.params = res.x
        _, self.state = self._run(self.params, y)

    def _after_update(self, n_new: int) -> None:
        _, self.state = self._run(self.params, self.y[-n_new:], self.state)

    def predict(self, tf: np.ndarray) -> Forecast:
        level, trend, season = self.state
        h = self._idx(tf) - len(self.y) + 1
        mean = level + h * trend + np.asarray(season)[(h - 1) % self.m]
        return self._point(tf, mean)


class SlotOLS(_History):
    """Day-ahead OLS per time slot: y ~ y(d-1) + ... + y(d-7) + day-of-week dummies (local days).

    All seven daily lags: with only y(d-1) and y(d-7) the baseline scored 16.5 % on the SimBench feeder, with
    all seven 15.5 %, close to the 15.4 % quoted as the published reference, so the stronger variant is the reference.
    """

    LAGS = (1, 2, 3, 4, 5, 6, 7)

    def __init__(self, tz: str | None = None) -> None:
        self.clock = LocalClock(tz)

    def _design(self, idx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        S = self.S
        tt = self.t[0] + idx * self.step
        _, _, wd = self.clock.fields(tt, int(self.step.astype(int)))
        d = np.zeros((len(idx), 7))
        d[np.arange(len(idx)), wd] = 1
        return np.column_stack([yy[idx - lag * S] for lag in self.LAGS] + [d])

    def _after_fit(self) -> None:
        S = self.S
        y = self.y
        idx = np.arange(max(self.LAGS) * S, len(y))
        X = self._design(idx, y)
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y[idx])
        tt = self.t[0] + idx * self.step
        _, slot, _ = self.clock.fields(tt, int(self.step.astype(int)))
        self.beta = np.zeros((S, X.shape[1]))
        for s in range(S):
            r = ok & (slot == s)
            self.beta[s] = np.linalg.lstsq(X[r], y[idx][r], rcond=None)[0]

    def predict(self, tf: np.ndarray) -> Forecast:
        S = self.S
        idx = self._idx(tf)
        ext = np.concatenate([self.y, np.full(int(idx.max()) + 1 - len(self.y), np.nan)])
        # Holes in the lags fall back to the day before (the baseline has no other gap handling).
        for lag in (S, 2 * S):
            bad = ~np.isfinite(ext)
            src = np.flatnonzero(bad) - lag
            ok = src >= 0
            ext[np.flatnonzero(bad)[ok]] = ext[src[ok]]
        X = self._design(idx, ext)
        _, slot, _ = self.clock.fields(tf, int(self.step.astype(int)))
        mean = np.einsum("ip,ip->i", np.nan_to_num(X), self.beta[slot])
        return self._point(tf, mean)


class _ClearSkyBase(_History):
    """Clear-sky power from the same learned clear-sky model as ours (orientation, timestamp convention,
    scale and AC limit fitted on the training data), so the baselines differ from our model only in how
    they forecast the clear-sky index.  This makes them stronger, not weaker: with a horizontal GHI clear
    sky the 7-day-mean baseline scored 25.5 % instead of 23.6 %."""

    def __init__(self, latitude: float, longitude: float, capacity_w: float, altitude_m: float = 0.0) -> None:
        self.lat, self.lon, self.cap, self.alt = latitude, longitude, capacity_w, altitude_m

    def fit(self, t: np.ndarray, y: np.ndarray) -> Self:
        from .pv import PVForecaster

        self._cs = PVForecaster(self.lat, self.lon, altitude_m=self.alt)
        self._cs.fit_clear_sky(t, y)
        return super().fit(t, y)

    def _pcs(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sun = sun_position(t, self.lat, self.lon)
        return self._cs.clear_power(t), sun.zenith

    def _csi(self, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        pcs, zen = self._pcs(t)
        k = np.full(len(y), np.nan)
        day = (zen < 85) & (pcs > 0.05 * self._cs.pmax)
        k[day] = np.clip(y[day] / pcs[day], 0, 1.5)
        return k


class ClearSkyMeanCSI(_ClearSkyBase):
    """Day-ahead PV: clear-sky power x the mean clear-sky index of the last 7 days."""

    def predict(self, tf: np.ndarray) -> Forecast:
        n = 7 * self.S
        k = self._csi(self.t[-n:], self.y[-n:])
        kbar = np.nanmean(k) if np.isfinite(k).any() else 0.7
        pcs, _ = self._pcs(tf)
        return self._point(tf, pcs * kbar)


class CSIOLS(_ClearSkyBase):
    """Short-term PV: OLS per lead of the clear-sky index on the last observed index (daytime rows)."""

    def __init__(self, *args: float, max_lead: int = 8, **kw: float) -> None:
        super().__init__(*args, **kw)
        self.max_lead = max_lead

    def _after_fit(self) -> None:
        k = self._csi(self.t, self.y)
        self.coef = np.zeros((self.max_lead, 2))
        for h in range(1, self.max_lead + 1):
            x, z = k[:-h], k[h:]
            ok = np.isfinite(x) & np.isfinite(z)
            A = np.column_stack([np.ones(ok.sum()), x[ok]])
            self.coef[h - 1] = np.linalg.lstsq(A, z[ok], rcond=None)[0]

    def predict(self, tf: np.ndarray) -> Forecast:
        k = self._csi(self.t[-4:], self.y[-4:])
        fin = np.flatnonzero(np.isfinite(k))
        last = k[fin[-1]] if len(fin) else np.nan
        h = np.clip(self._idx(tf) - len(self.y) + 1, 1, self.max_lead)
        pcs, zen = self._pcs(tf)
        if np.isfinite(last):
            kh = self.coef[h - 1, 0] + self.coef[h - 1, 1] * last
        else:  # sunrise: no index observed yet today
            kh = self.coef[h - 1, 0] / np.maximum(1 - self.coef[h - 1, 1], 1e-3)
        return self._point(tf, np.where(zen < 90, pcs * kh, 0.0))


class Conformal:
    """Give a point-forecast model quantiles: empirical residual quantiles per position in the issued block,
    from a rolling-origin run over the last ``cal_days`` of the training data (fitted before them)."""

    def __init__(self, make: Callable[[], Model], mode: str, tz: str | None, cal_days: int = 28) -> None:
        self.make, self.mode, self.tz, self.cal_days = make, mode, tz, cal_days

    def fit(self, t: np.ndarray, y: np.ndarray) -> Conformal:
        from .backtest import rolling_origin

        start = t[-1] - np.timedelta64(self.cal_days * 86400, "s")
        res = rolling_origin(self.make, t, y, start, t[-1], self.mode, self.tz, refit_days=None)
        # Quantiles per position in the issued block (time of day for day-ahead, one block for 1 h ahead).
        block = int(np.round(86400 / (t[1] - t[0]).astype(int))) if self.mode == "day-ahead" else 1
        pos = np.arange(len(res.t)) % block
        err = res.actual - res.mean
        self.q = np.zeros((block, len(QUANTILE_LEVELS)))
        for p in range(block):
            e = err[(pos == p) & np.isfinite(err)]
            # Dead positions (night for PV) have zero error; keep them zero-width.
            self.q[p] = np.quantile(e, QUANTILE_LEVELS) if len(e) >= 5 else 0.0
        self.model = self.make().fit(t, y)
        return self

    def update(self, t_new: np.ndarray, y_new: np.ndarray) -> Conformal:
        self.model = self.model.update(t_new, y_new)
        return self

    def predict(self, tf: np.ndarray) -> Forecast:
        fc = self.model.predict(tf)
        pos = np.arange(len(tf)) % len(self.q)
        vals = fc.mean[None, :] + self.q[pos].T
        vals = np.maximum.accumulate(vals, axis=0)
        return Forecast(t=tf, mean=fc.mean, levels=QUANTILE_LEVELS.copy(), values=vals)
