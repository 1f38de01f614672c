"""Loaders for the real benchmark data sets shipped inside PyPI packages (the ``bench`` extra).

Nothing here is vendored: each loader imports its package lazily and raises ImportError with the name of the
missing package.  pandas is allowed here (and only here and in the benchmark) for reading the files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DataSet:
    name: str
    t: np.ndarray  # datetime64[s] UTC
    y: np.ndarray  # float, NaN = missing
    tz: str  # local time zone for day-ahead issue times and day types
    test_start: np.datetime64  # first UTC instant of the test period
    test_end: np.datetime64  # end (exclusive)
    norm: float  # nRMSE denominator
    latitude: float | None = None
    longitude: float | None = None
    altitude_m: float = 0.0
    holidays: tuple[str, ...] = ()


def load_gb_demand() -> DataSet:
    """GB national electricity demand, half-hourly, Monday 2000-06-05 .. Sunday 2000-08-27 (Taylor 2003).

    The series carries no timestamps; it is labelled in UK local time (BST in this whole window), so the
    UTC instants are one hour earlier.  Test: the last six weeks.
    """
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(), dtype=float)
    t_local = np.datetime64("2000-06-05T00:00", "s") + np.arange(len(y)) * np.timedelta64(1800, "s")
    t = t_local - np.timedelta64(3600, "s")
    test_start = np.datetime64("2000-07-17T00:00", "s") - np.timedelta64(3600, "s")
    return DataSet(
        name="GB demand (Taylor), 30 min",
        t=t,
        y=y,
        tz="Europe/London",
        test_start=test_start,
        test_end=t[-1] + np.timedelta64(1800, "s"),
        norm=float(np.mean(y[t >= test_start])),
    )


def load_simbench_feeder(code: str = "1-LV-semiurb4--0-sw") -> DataSet:
    """Sum of all load profiles of a SimBench LV feeder, 15 min, 2016 (train Jan-Sep, test Oct-Dec).

    SimBench time stamps run 35136 quarter hours through the leap year 2016 without DST gaps, i.e. in
    standard time (CET = UTC+1), so they are labelled with a fixed +1 h offset.
    """
    import simbench as sb

    net = sb.get_simbench_net(code)
    prof = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    y = np.asarray(prof[("load", "p_mw")].sum(axis=1), dtype=float) * 1e3  # kW
    t_local = np.datetime64("2016-01-01T00:00", "s") + np.arange(len(y)) * np.timedelta64(900, "s")
    t = t_local - np.timedelta64(3600, "s")
    test_start = np.datetime64("2016-10-01T00:00", "s") - np.timedelta64(3600, "s")
    # German public holidays of 2016.  Besides the national ones the profiles show Corpus Christi (26 May)
    # and All Saints (1 Nov) as holidays -- the calendar of e.g. North Rhine-Westphalia -- but not Epiphany,
    # Assumption or Reformation Day (checked against the daily means of the series).  A utility knows its own
    # regional calendar, so the benchmark passes it the way an operator would.
    holidays = (
        "2016-01-01",
        "2016-03-25",
        "2016-03-28",
        "2016-05-01",
        "2016-05-05",
        "2016-05-16",
        "2016-05-26",
        "2016-10-03",
        "2016-11-01",
        "2016-12-25",
        "2016-12-26",
    )
    return DataSet(
        name=f"SimBench LV feeder {code}, 15 min",
        t=t,
        y=y,
        tz="Etc/GMT-1",
        test_start=test_start,
        test_end=t[-1] + np.timedelta64(900, "s"),
        norm=float(np.mean(y[t >= test_start])),
        holidays=holidays,
    )


PV50_CAPACITY_W = 3085.0


def load_pv_system50() -> DataSet:
    """NREL PVDAQ system 50 AC power (Golden, CO), 15 min, 2011-04 .. 2013-12; test = 2013.

    The file's stamps carry a fixed -07:00 offset but are really local wall-clock time *with* DST, so the
    offset is dropped, the wall clock is localised to America/Denver (ambiguous/non-existent hours at the DST
    changes fall at night and are dropped) and converted to UTC.
    """
    import os

    import pandas as pd
    import pvanalytics

    path = os.path.join(
        os.path.dirname(pvanalytics.__file__), "data", "system_50_ac_power_2_full_DST.parquet"
    )
    df = pd.read_parquet(path)
    wall = df["measured_on"].dt.tz_localize(None)
    local = wall.dt.tz_localize("America/Denver", ambiguous="NaT", nonexistent="NaT")
    ok = local.notna().to_numpy()
    utc = local[ok].dt.tz_convert("UTC").dt.tz_localize(None)
    t = utc.to_numpy().astype("datetime64[s]")
    y = df["ac_power_2"].to_numpy(dtype=float)[ok]
    t, first = np.unique(t, return_index=True)
    y = y[first]
    # Re-grid (the dropped DST hours leave holes; the forecaster treats them as missing).
    step = np.timedelta64(900, "s")
    idx = ((t - t[0]) // step).astype(np.int64)
    grid = t[0] + np.arange(idx[-1] + 1) * step
    yy = np.full(len(grid), np.nan)
    yy[idx] = y
    return DataSet(
        name="PV system 50 (NREL PVDAQ, Golden CO), 15 min",
        t=grid,
        y=yy,
        tz="America/Denver",
        test_start=np.datetime64("2013-01-01T07:00", "s"),
        test_end=grid[-1] + step,
        norm=PV50_CAPACITY_W,
        latitude=39.7406,
        longitude=-105.1774,
        altitude_m=1790.0,
    )
