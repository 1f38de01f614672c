"""Benchmark the forecasts an intraday re-plan needs: every transformer of a grid, net load and PV (prints figures;
not a test).

    python conformance/bench_forecast.py [--transformers 670] [--history-days 28] [--step 900] [--horizon 24h]

A 10k-DER grid has about 670 transformers of 15 sites. Each transformer gets a synthetic metered net load (a
daily load shape with noise, minus rooftop PV under a varying sky) and is forecast as the server does it: the net
load with ``LoadForecaster``, and the split into gross load and PV (``server.core.net_split``) followed by
``PVForecaster`` with the transformer's nameplate. Wall and process CPU time are printed (the machine is shared:
wall time is inflated by other load, CPU time is what the forecasts cost).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import warnings

import numpy as np

from forecasting import LoadForecaster, PVForecaster
from server.core import net_split

LAT, LON = 39.74, -104.99


def transformer(t: np.ndarray, rng: np.random.Generator, sites: int) -> tuple[np.ndarray, float]:
    hours = (t.astype("datetime64[s]").astype(np.int64) % 86_400) / 3600 - 7  # local (UTC-7) hour of day
    evening = 1 + 0.8 * np.exp(-(((hours % 24) - 19) ** 2) / 4)
    load = sites * rng.uniform(600, 1200) * evening * (1 + 0.1 * rng.standard_normal(len(t)))
    nameplate = sites * rng.uniform(3000, 8000)
    days = len(t) // 96 + 1
    sky = np.repeat(np.clip(rng.uniform(0.2, 1.0, days), 0, 1), 96)[: len(t)]
    pv = net_split.clear_sky_power(t, LAT, LON, nameplate) * sky
    return load - pv, nameplate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformers", type=int, default=670)
    parser.add_argument("--sites", type=int, default=15, help="sites per transformer")
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--step", type=int, default=900)
    parser.add_argument("--horizon-h", type=float, default=24.0)
    args = parser.parse_args()
    rng = np.random.default_rng(2030)
    now = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)
    n = args.history_days * 86_400 // args.step
    t0 = np.datetime64(int(now.timestamp()), "s") - n * np.timedelta64(args.step, "s")
    t = t0 + np.arange(n) * np.timedelta64(args.step, "s")
    future = t[-1] + np.arange(1, int(args.horizon_h * 3600 // args.step) + 1) * np.timedelta64(
        args.step, "s"
    )
    grids = [transformer(t, rng, args.sites) for _ in range(args.transformers)]
    tilt, azimuth = net_split.default_orientation(LAT)
    phases = {"net load": 0.0, "split": 0.0, "pv": 0.0}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short-history notes, one per transformer
        for net, nameplate in grids:
            c = time.process_time()
            LoadForecaster(tz="America/Denver").fit(t, net).predict(future)
            phases["net load"] += time.process_time() - c
            c = time.process_time()
            parts = net_split.split(t, net, LAT, LON, nameplate)
            phases["split"] += time.process_time() - c
            c = time.process_time()
            PVForecaster(LAT, LON, capacity_w=nameplate, tilt=tilt, azimuth=azimuth).fit(
                t, parts.pv_w
            ).predict(future)
            phases["pv"] += time.process_time() - c
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    k = args.transformers
    print(
        f"{k} transformers x {args.sites} sites ({k * args.sites} DERs), {args.history_days} d history at "
        f"{args.step // 60} min, {len(future)} steps ahead"
    )
    print(f"  wall {wall:8.2f} s   cpu {cpu:8.2f} s   per transformer {1000 * cpu / k:7.1f} ms cpu")
    for name, seconds in phases.items():
        print(f"  {name:9} cpu {seconds:8.2f} s   ({1000 * seconds / k:7.1f} ms per transformer)")


if __name__ == "__main__":
    main()
