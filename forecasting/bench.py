"""Benchmark: ``python -m forecasting.bench [--only gb,simbench,pv1h,pvda]``.

For each real data set (see :mod:`forecasting.data`) it runs the rolling-origin backtest of
:mod:`forecasting.backtest` for our model, for persistence and for the named best baseline — all
recomputed here, by the same harness, on the same test points — and prints nRMSE, MAE, skill vs persistence,
pinball loss and 80 %-interval coverage next to the target.  Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backtest import BacktestResult, Model, Scores, rolling_origin, score
from .baselines import (
    CSIOLS,
    ClearSkyMeanCSI,
    Conformal,
    HoltWintersAdditive,
    Persistence,
    SlotOLS,
)
from .data import DataSet, load_gb_demand, load_pv_system50, load_simbench_feeder
from .load import LoadForecaster
from .pv import PVForecaster
from .solar import sun_position


@dataclass
class Task:
    key: str
    title: str
    load: Callable[[], DataSet]
    mode: str
    target: float  # nRMSE (%) our model must reach
    issue_baseline: float  # baseline nRMSE reported in the issue
    issue_persistence: float
    ours: Callable[[DataSet], Callable[[], Model]]
    baseline_name: str
    baseline: Callable[[DataSet], Callable[[], Model]]
    persistence: Callable[[DataSet], Callable[[], Model]]
    daytime_only: bool = False
    refit_days: float | None = 7.0


def _steps_per_day(d: DataSet) -> int:
    return int(86400 // (d.t[1] - d.t[0]).astype(int))


def _site(d: DataSet) -> tuple[float, float]:
    """Latitude and longitude of a PV data set (the PV models cannot run without them)."""
    if d.latitude is None or d.longitude is None:
        raise ValueError(f"data set {d.name} has no site coordinates")
    return d.latitude, d.longitude


TASKS = [
    Task(
        "gb",
        "GB demand, day-ahead",
        load_gb_demand,
        "day-ahead",
        2.2,
        2.42,
        10.5,
        ours=lambda d: lambda: LoadForecaster(tz=d.tz, holidays=d.holidays),
        baseline_name="Holt-Winters additive, weekly",
        baseline=lambda d: (
            lambda: Conformal(
                lambda: HoltWintersAdditive(7 * _steps_per_day(d)), "day-ahead", d.tz, cal_days=14
            )
        ),
        persistence=lambda d: (
            lambda: Conformal(lambda: Persistence(_steps_per_day(d)), "day-ahead", d.tz, cal_days=14)
        ),
    ),
    Task(
        "simbench",
        "SimBench LV 1-LV-semiurb4--0-sw, day-ahead",
        load_simbench_feeder,
        "day-ahead",
        14.0,
        15.4,
        25.4,
        ours=lambda d: lambda: LoadForecaster(tz=d.tz, holidays=d.holidays),
        baseline_name="OLS per time slot (lags + day of week)",
        baseline=lambda d: lambda: Conformal(lambda: SlotOLS(d.tz), "day-ahead", d.tz, cal_days=28),
        persistence=lambda d: (
            lambda: Conformal(lambda: Persistence(_steps_per_day(d)), "day-ahead", d.tz, cal_days=28)
        ),
    ),
    Task(
        "pv1h",
        "PV system 50, 1 h ahead",
        load_pv_system50,
        "hour-ahead",
        13.5,
        14.8,
        20.2,
        ours=lambda d: lambda: PVForecaster(*_site(d), altitude_m=d.altitude_m),
        baseline_name="OLS on clear-sky index",
        baseline=lambda d: (
            lambda: Conformal(lambda: CSIOLS(*_site(d), d.norm, altitude_m=d.altitude_m), "hour-ahead", d.tz)
        ),
        persistence=lambda d: lambda: Conformal(lambda: Persistence(0), "hour-ahead", d.tz),
        daytime_only=True,
        refit_days=30.0,
    ),
    Task(
        "pvda",
        "PV system 50, day-ahead, no weather",
        load_pv_system50,
        "day-ahead",
        22.0,
        23.9,
        28.4,
        ours=lambda d: lambda: PVForecaster(*_site(d), altitude_m=d.altitude_m),
        baseline_name="clear sky x 7-day mean CSI",
        baseline=lambda d: (
            lambda: Conformal(
                lambda: ClearSkyMeanCSI(*_site(d), d.norm, altitude_m=d.altitude_m),
                "day-ahead",
                d.tz,
            )
        ),
        persistence=lambda d: (
            lambda: Conformal(lambda: Persistence(_steps_per_day(d)), "day-ahead", d.tz, cal_days=28)
        ),
        daytime_only=True,
        refit_days=30.0,
    ),
]


def run_task(task: Task, data: DataSet) -> dict[str, tuple[Scores, float]]:
    rows: dict[str, tuple[Scores, float]] = {}
    mask_fn: Callable[[BacktestResult], np.ndarray | None] = lambda r: None  # noqa: E731
    if task.daytime_only:
        assert data.latitude is not None and data.longitude is not None
        lat, lon = data.latitude, data.longitude
        mask_fn = lambda r: sun_position(r.t, lat, lon).zenith < 85  # noqa: E731
    for name, make in (
        ("persistence", task.persistence(data)),
        (task.baseline_name, task.baseline(data)),
        ("OpenDSO", task.ours(data)),
    ):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = rolling_origin(
                make, data.t, data.y, data.test_start, data.test_end, task.mode, data.tz, task.refit_days
            )
        rows[name] = (score(res, data.norm, mask_fn(res)), time.perf_counter() - t0)
    return rows


def _single_threaded_blas(argv: list[str] | None) -> None:
    """Re-run this command with one BLAS thread unless the caller chose a thread count.

    The regressions here multiply tall-and-thin matrices; on a shared 2-core machine OpenBLAS' thread pool
    made ``A.T @ A`` ~100x slower (0.38 s instead of 3.5 ms for 30000 x 35).  The variable must be set
    before numpy loads, hence the re-exec.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    args = sys.argv[1:] if argv is None else argv
    os.execve(sys.executable, [sys.executable, "-m", "forecasting.bench", *args], env)


def main(argv: list[str] | None = None) -> int:
    _single_threaded_blas(argv)
    ap = argparse.ArgumentParser(prog="python -m forecasting.bench", description=__doc__)
    ap.add_argument("--only", default="", help="comma-separated task keys: " + ",".join(t.key for t in TASKS))
    args = ap.parse_args(argv)
    keys = [k for k in args.only.split(",") if k]
    cache: dict[str, DataSet] = {}
    all_met = True
    for task in TASKS:
        if keys and task.key not in keys:
            continue
        if task.load.__name__ not in cache:
            cache[task.load.__name__] = task.load()
        data = cache[task.load.__name__]
        rows = run_task(task, data)
        pers = rows["persistence"][0]
        print(f"\n## {task.title} — {data.name}")
        print(
            f"   test {str(data.test_start)[:10]} .. {str(data.test_end)[:10]} UTC, nRMSE/pinball in % of "
            f"{'capacity' if task.daytime_only else 'mean load'} ({data.norm:.4g}); "
            f"target nRMSE <= {task.target} %"
        )
        print(f"| {'model':40s} | nRMSE % | MAE | skill vs pers. % | pinball % | 80% cov. % | n | s |")
        print(f"| {'-' * 40} | ------- | --- | ---------------- | --------- | ---------- | - | - |")
        for name, (s, secs) in rows.items():
            skill = 100 * (1 - s.nrmse / pers.nrmse)
            issue = {"persistence": task.issue_persistence, task.baseline_name: task.issue_baseline}.get(name)
            label = name + (f" (issue: {issue} %)" if issue is not None else "")
            print(
                f"| {label:40s} | {s.nrmse:7.2f} | {s.mae:.4g} | {skill:16.1f} | {s.pinball:9.3f} "
                f"| {s.coverage80:10.1f} | {s.n} | {secs:.0f} |"
            )
        ours = rows["OpenDSO"][0]
        met = ours.nrmse <= task.target and 75 <= ours.coverage80 <= 85
        all_met &= met
        print(
            f"   target {'MET' if met else 'NOT met'}: nRMSE {ours.nrmse:.2f} % (<= {task.target} %), "
            f"80 % coverage {ours.coverage80:.1f} % (75..85 %)"
        )
        sys.stdout.flush()
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
