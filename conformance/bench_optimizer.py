"""Benchmark the dispatch optimizer: solve time for feeders of growing size (prints a table; not a test).

    python conformance/bench_optimizer.py [--intervals 96] [--sizes 10,100,500,1000]

Each case is one feeder with transformers of 20 sites; every site has rooftop PV, a third have batteries, a
quarter EVs and every site some demand response. The feeder export limit binds at midday and the import limit
in the evening peak, so the LP has real work to do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from server.orchestration.optimizer import Battery, Ev, Flexible, Node, Pv, optimise


def feeder(sites: int, steps: int, rng: np.random.Generator) -> Node:
    hours = np.arange(steps) * 24 / steps
    solar = np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)
    evening = 1 + 0.8 * np.exp(-((hours - 19) ** 2) / 4)
    transformers = []
    for start in range(0, sites, 20):
        ders, base = [], np.zeros(steps)
        for i in range(start, min(sites, start + 20)):
            pv_kw = rng.uniform(3, 8)
            load = rng.uniform(0.5, 1.5) * evening
            base += load - pv_kw * solar
            ders.append(Pv(f"pv{i}", pv_kw * solar))
            ders.append(Flexible(f"dr{i}", np.full(steps, 0.5)))
            if i % 3 == 0:
                ders.append(Battery(f"bat{i}", 5, 13.5, soc_kwh=6.0))
            if i % 4 == 0:
                ders.append(Ev(f"ev{i}", 7.2, rng.uniform(10, 30), deadline=steps * 7 // 24 + steps // 2))
        transformers.append(
            Node(f"tx{start // 20}", base_kw=base, import_limit_kw=60, export_limit_kw=60, ders=ders)
        )
    total = sum(t.base_kw for t in transformers)
    return Node(
        "feeder",
        base_kw=total,
        import_limit_kw=0.9 * total.max(),
        export_limit_kw=0.5 * -total.min(),
        children=transformers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--sizes", default="10,100,500,1000")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(f"{'sites':>6} {'DERs':>6} {'variables':>10} {'solve s':>8} {'feasible':>9}")
    for sites in (int(s) for s in args.sizes.split(",")):
        root = feeder(sites, args.intervals, rng)
        ders = sum(len(t.ders) for t in root.children)
        start = time.perf_counter()
        plan = optimise(root, args.intervals, 24 / args.intervals)
        elapsed = time.perf_counter() - start
        variables = sum(
            len(v)
            for group in (plan.pv_output_kw, plan.battery_kw, plan.ev_kw, plan.shed_kw)
            for v in group.values()
        )
        print(f"{sites:>6} {ders:>6} {variables:>10} {elapsed:>8.2f} {plan.feasible!s:>9}")


if __name__ == "__main__":
    main()
