"""Benchmark the grid-aware planner on synthetic fleets (prints a table; not a test).

    python conformance/bench_grid_planner.py [--sizes 1000,10000,100000] [--intervals 96]

Each size is its own process (peak memory is that process's ru_maxrss). The network: a 20 kV busbar, 10 MV
feeders, MV/LV transformers of 30 kVA with six houses each on a 0.4 kV cable (about 15 resources per
transformer: five PV systems, two batteries, two charging points, six flexible loads). Ratings are chosen so
that limits bind: transformers and LV cables export more than they take at noon, charging in the evening
overloads the transformers, and every feeder head is rated at 70 % of what its transformers export together.

The operating point is the linear model's own (LinDistFlow over the unmanaged schedule): this measures the
planner (model build, decomposed LPs, MV coordination), not the AC proof, which on 100k resources would be
96 pandapower runs of a 40 000-bus network. Reported: resources, LV zones, LPs solved, solve time, peak
memory, and (network row, interval) pairs outside the limits by the linear model before and after.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.orchestration.grid_planner import BATCH_NODES, prepare, solve_step  # noqa: E402
from server.orchestration.linear import dist_flow_point  # noqa: E402
from server.orchestration.network.model import Bus, Line, Load, Network, Profiles, Sgen, Slack, Storage, Trafo  # noqa: E402
from server.orchestration.resources import Costs, build_fleet, default_price  # noqa: E402
from server.orchestration.schedule import Schedule  # noqa: E402
from server.orchestration.zone_lp import Margins  # noqa: E402

FEEDERS = 10
HOUSES = 6
DERS_PER_TRAFO = 15
MV_SECTIONS = 20


def synthetic(ders: int, steps: int, seed: int = 7) -> tuple[Network, Profiles]:
    rng = np.random.default_rng(seed)
    trafos_total = max(FEEDERS, round(ders / DERS_PER_TRAFO))
    buses = [Bus(0, "MV busbar", 20.0)]
    lines: list[Line] = []
    trafos: list[Trafo] = []
    loads: list[Load] = []
    sgens: list[Sgen] = []
    storages: list[Storage] = []
    hours = (np.arange(steps) + 0.5) * 24 / steps
    solar = np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)
    house_shape = 0.4 + 0.8 * np.exp(-((hours - 19.5) ** 2) / 5) + 0.3 * np.exp(-((hours - 7.5) ** 2) / 2)
    load_p, load_q, sgen_p = {}, {}, {}
    per_feeder = [trafos_total // FEEDERS + (1 if f < trafos_total % FEEDERS else 0) for f in range(FEEDERS)]

    def bus(name: str, kv: float) -> int:
        buses.append(Bus(len(buses), name, kv))
        return len(buses) - 1

    for f, count in enumerate(per_feeder):
        per_section = max(1, int(np.ceil(count / MV_SECTIONS)))
        # the feeder head is rated at 70 % of the transformers' combined noon export
        head_a = 0.7 * count * 25 / (np.sqrt(3) * 20) / 1000
        prev, placed = 0, 0
        while placed < count:
            mv = bus(f"feeder {f} section {len(lines)}", 20.0)
            lines.append(Line(len(lines), f"MV {f}.{mv}", prev, mv, 0.3, 0.1, 0.1, head_a))
            prev = mv
            for _ in range(min(per_section, count - placed)):
                lv = bus(f"LV {len(trafos)}", 0.4)
                trafos.append(Trafo(len(trafos), f"T{len(trafos)}", mv, lv, 0.03, 20.0, 0.4, 4.0, 1.5))
                up = lv
                for h in range(HOUSES):
                    hb = bus(f"house {len(trafos) - 1}.{h}", 0.4)
                    lines.append(Line(len(lines), f"LV {hb}", up, hb, 0.06, 0.44, 0.08, 0.12))
                    up = hb
                    kw = rng.uniform(0.8, 1.6)
                    ld = Load(len(loads), f"house {hb}", hb, kw / 1000, kw / 4000, "household")
                    loads.append(ld)
                    load_p[ld.id], load_q[ld.id] = ld.p_mw * house_shape, ld.q_mvar * house_shape
                    if h < 5:
                        kwp = rng.uniform(6, 10)
                        sg = Sgen(len(sgens), f"pv {hb}", hb, kwp / 1000, kwp / 1000)
                        sgens.append(sg)
                        sgen_p[sg.id] = sg.p_mw * solar
                    if h in (1, 4):
                        storages.append(
                            Storage(len(storages), f"battery {hb}", hb, 0.005, 0.010, soc_percent=30)
                        )
                    if h in (2, 5):
                        ev = Load(len(loads), f"charger {hb}", hb, 0.007, 0.0, "ev")
                        loads.append(ev)
                        start = int(rng.integers(steps * 17 // 24, steps * 20 // 24))
                        prof = np.zeros(steps)
                        prof[start : start + int(rng.integers(steps // 12, steps // 6))] = ev.p_mw
                        load_p[ev.id], load_q[ev.id] = prof, np.zeros(steps)
                placed += 1
    model = Network("synthetic", buses, lines, trafos, Slack(0, 1.03), loads, sgens, storages)
    profiles = Profiles(
        "2026-06-21T00:00:00",
        86400 // steps,
        load_p,
        load_q,
        sgen_p,
        {s.id: np.zeros(steps) for s in storages},
    )
    return model, profiles


def linear_violations(net, model: Network, sched: Schedule, margins: Margins) -> int:  # noqa: ANN001
    tree = net.tree
    p, q = sched.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    bad = (op.vm > net.vmax[None, :] + 1e-4) | (op.vm < net.vmin[None, :] - 1e-4)
    over = np.abs(op.p) > tree.s_max_pu[None, :] * np.minimum(op.vm, 1.0) * (1 + 1e-3)
    return int(bad.sum() + over[:, 1:].sum())


def run_one(ders: int, steps: int, batch_nodes: int) -> dict:
    t0 = time.perf_counter()
    model, profiles = synthetic(ders, steps)
    fleet = build_fleet(model, profiles)
    net = prepare(model, fleet)
    tree = net.tree
    p, q = fleet.baseline.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    build = time.perf_counter() - t0
    margins = Margins()
    t1, c1 = time.perf_counter(), time.process_time()
    step = solve_step(net, fleet, op, fleet.baseline, Costs(price=default_price(steps)), margins, batch_nodes)
    solve, cpu = time.perf_counter() - t1, time.process_time() - c1
    return {
        "ders": fleet.size,
        "zones": len(net.zones) - 1,
        "buses": len(model.buses),
        "build_s": round(build, 2),
        "solve_s": round(solve, 2),
        "cpu_s": round(cpu, 2),
        "lp_s": round(step.stats.lp_seconds, 2),
        "lp_build_s": round(step.stats.build_seconds, 2),
        "lps": step.stats.lps,
        "rows": step.stats.rows,
        "cols": step.stats.cols,
        "asked_by_mv": step.boundary_zones,
        "violations_before": linear_violations(net, model, fleet.baseline, margins),
        "violations_after": linear_violations(net, model, step.schedule, margins),
        "slack_rows": len(step.slacks),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--batch-nodes", type=int, default=BATCH_NODES, help="LV zones per LP, in nodes")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.intervals, args.batch_nodes)))
        return
    print(
        f"{'DERs':>7} {'zones':>6} {'buses':>7} {'build s':>8} {'solve s':>8} {'CPU s':>7} {'LP s':>7} {'LPs':>5} "
        f"{'rows':>8} {'cols':>9} {'peak MB':>8} {'viol. before':>13} {'after':>6} {'slack':>6}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(size),
                "--intervals",
                str(args.intervals),
                "--batch-nodes",
                str(args.batch_nodes),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['ders']:>7} {r['zones']:>6} {r['buses']:>7} {r['build_s']:>8} {r['solve_s']:>8} {r['cpu_s']:>7} {r['lp_s']:>7} "
            f"{r['lps']:>5} {r['rows']:>8} {r['cols']:>9} {r['peak_mb']:>8} {r['violations_before']:>13} "
            f"{r['violations_after']:>6} {r['slack_rows']:>6}",
            flush=True,
        )


if __name__ == "__main__":
    main()
