"""Benchmark the grid-aware planner on synthetic fleets (prints a table; not a test).

    python conformance/bench_grid_planner.py [--sizes 1000,10000,100000] [--intervals 96] [--workers N]
        [--hold] [--cold] [--json]

Each size is its own process; the LV zones' LPs run in worker processes forked from it (``--workers``, default
up to 2). Peak memory: that process's ru_maxrss plus each worker's largest private memory (what it does not
share with the process it was forked from). The network: a 20 kV busbar, 10 MV
feeders, MV/LV transformers of 30 kVA with six houses each on a 0.4 kV cable (about 15 resources per
transformer: five PV systems, two batteries, two charging points, six flexible loads). Ratings are chosen so
that limits bind: transformers and LV cables export more than they take at noon, charging in the evening
overloads the transformers, and every feeder head is rated at 70 % of what its transformers export together.

The operating point is the linear model's own (LinDistFlow over the unmanaged schedule): this measures the
planner (model build, decomposed LPs, MV coordination), not the AC proof, which on 100k resources would be
96 pandapower runs of a 40 000-bus network. Reported: resources, LV zones, LPs solved, solve time, peak
memory, and the check of the result: the objective recomputed from the schedule (energy, curtailment, wear,
demand response and the penalty of the slack the LPs used) against the unmanaged schedule's, (bus or branch,
interval) pairs outside their band or rating by the linear model before and after and the worst of them after,
the slack rows, and the largest breach of a unit's own limits (PV above what the sun gives, storage power,
energy and end state, a charging session's energy, demand response's share; 0 when all hold). The first
columns are the ones to compare between machines: the step's wall time, its CPU time (this process and its
workers), the total peak memory and the 1-minute load average when the size ended. Zone LPs use fast starts
(``PlannerOptions.fast_start``) unless ``--cold``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.orchestration.grid_planner import prepare, solve_step  # noqa: E402
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
    """(bus or branch, interval) pairs outside their band or rating by the linear model (LinDistFlow)."""
    bad_v, over = _outside(net, model, sched)
    return int((bad_v > 1e-4).sum() + (over[:, 1:] > 1e-3).sum())


def _outside(net, model: Network, sched: Schedule) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Per interval and node: pu outside the voltage band, and share of the branch's rating over it."""
    tree = net.tree
    p, q = sched.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    bad_v = np.maximum(op.vm - net.vmax[None, :], net.vmin[None, :] - op.vm).clip(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.nan_to_num(np.abs(op.p) / (tree.s_max_pu[None, :] * np.minimum(op.vm, 1.0)) - 1).clip(0)
    return bad_v, over


def worst_violation(net, model: Network, sched: Schedule) -> dict:  # noqa: ANN001
    bad_v, over = _outside(net, model, sched)
    return {"vm_pu": round(float(bad_v.max()), 5), "loading_pct": round(float(over[:, 1:].max()) * 100, 2)}


def unit_violation(fleet, sched: Schedule) -> float:  # noqa: ANN001
    """Largest breach (kW or kWh) of a unit's own limits in ``sched``: PV above what the sun gives or below 0,
    storage beyond its power or energy or short of its initial state at the end, a charging session's energy
    not delivered inside its window, load shed beyond demand response's share."""
    worst, dt = 0.0, fleet.step_h
    for u in fleet.pv:
        kw = sched.sgen_p[:, u.sgen] * 1000
        worst = max(worst, float((kw - u.avail_kw).max(initial=0)), float(-kw.min(initial=0)))
    for b in fleet.batteries:
        kw = sched.storage_p[:, b.storage] * 1000
        soc = b.soc0_kwh + np.cumsum(np.where(kw > 0, kw * b.efficiency, kw / b.efficiency)) * dt
        worst = max(
            worst,
            float(np.abs(kw).max() - b.power_kw),
            float(soc.max() - b.energy_kwh),
            float(b.min_kwh - soc.min()),
            float(b.soc0_kwh - soc[-1]),
        )
    for ev in fleet.evs:
        kw = sched.load_p[:, ev.load] * 1000
        worst = max(worst, float(kw.max() - ev.power_kw), float(-kw.min()))
        for x in ev.sessions:
            need = min(x.energy_kwh, ev.power_kw * (x.t1 - x.t0) * dt)
            worst = max(worst, need - float(kw[x.t0 : x.t1].sum() * dt))
    for d in fleet.dr:
        shed = (fleet.baseline.load_p[:, d.load] - sched.load_p[:, d.load]) * 1000
        worst = max(worst, float((shed - d.max_shed_kw).max()), float(-shed.min()))
    return worst


def objective(fleet, costs: Costs, sched: Schedule, slacks: list) -> dict:  # noqa: ANN001
    """The planner's objective for ``sched``, recomputed from the schedule: energy at the price, curtailment,
    battery wear, demand response, and the penalties of the slack the LPs used."""
    dt = fleet.step_h
    imp = (sched.load_p.sum(axis=1) + sched.storage_p.sum(axis=1) - sched.sgen_p.sum(axis=1)) * 1000
    avail = sum(float(u.avail_kw.sum()) for u in fleet.pv)
    produced = float(sum(sched.sgen_p[:, u.sgen].sum() for u in fleet.pv)) * 1000
    shed = (
        sum(float((fleet.baseline.load_p[:, d.load] - sched.load_p[:, d.load]).sum()) for d in fleet.dr)
        * 1000
    )
    penalty = {"vm_high": costs.voltage_penalty, "vm_low": costs.voltage_penalty}
    slack_cost = sum(
        x.amount
        * penalty.get(x.kind, costs.thermal_penalty if x.kind == "branch" else costs.boundary_penalty)
        for x in slacks
    )
    parts = {
        "energy": float((costs.price * imp).sum() * dt),
        "curtailment": (avail - produced) * dt * costs.curtail,
        "battery_wear": float(np.abs(sched.storage_p).sum() * 1000 * dt * costs.wear),
        "demand_response": shed * dt * costs.dr,
        "slack_penalty": slack_cost,
    }
    parts["total"] = sum(parts.values())
    return {k: round(v, 2) for k, v in parts.items()}


def run_one(ders: int, steps: int, workers: int | None, hold: bool = False, fast: bool = True) -> dict:
    t0 = time.perf_counter()
    model, profiles = synthetic(ders, steps)
    t1 = time.perf_counter()
    fleet = build_fleet(model, profiles)
    net = prepare(model, fleet)
    tree = net.tree
    p, q = fleet.baseline.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    t2 = time.perf_counter()
    margins = Margins()
    costs = Costs(price=default_price(steps))
    before = os.times()
    t3, c3 = time.perf_counter(), time.process_time()
    step = solve_step(net, fleet, op, fleet.baseline, costs, margins, workers, hold, fast)
    solve, cpu = time.perf_counter() - t3, time.process_time() - c3
    after = os.times()
    workers_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    st = step.stats
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "ders": fleet.size,
        "zones": len(net.zones) - 1,
        "buses": len(model.buses),
        "synthetic_s": round(t1 - t0, 2),
        "prepare_s": round(t2 - t1, 2),
        "solve_s": round(solve, 2),
        "cpu_s": round(cpu + workers_cpu, 2),
        "workers": st.workers,
        "hold": hold,
        "fast_start": fast,
        "lv_s": round(st.lv_seconds, 2),
        "mv_s": round(st.mv_seconds, 2),
        "lv_again_s": round(st.lv_again_seconds, 2),
        "lp_s": round(st.lp_seconds, 2),
        "lp_build_s": round(st.build_seconds, 2),
        "lps": st.lps,
        "warm_lps": st.warm_lps,
        "simplex_iterations": st.iterations,
        "simplex_iterations_again": st.iterations_again,
        "rows": st.rows,
        "cols": st.cols,
        "asked_by_mv": step.boundary_zones,
        "objective": objective(fleet, costs, step.schedule, step.slacks),
        "objective_unmanaged": objective(fleet, costs, fleet.baseline, [])["total"],
        "unit_violation": round(unit_violation(fleet, step.schedule), 6),
        "violations_before": linear_violations(net, model, fleet.baseline, margins),
        "violations_after": linear_violations(net, model, step.schedule, margins),
        "worst_after": worst_violation(net, model, step.schedule),
        "slack_rows": len(step.slacks),
        "peak_mb": round(peak, 1),
        "worker_peak_mb": [round(x, 1) for x in st.worker_peak_mb],
        "peak_total_mb": round(peak + sum(st.worker_peak_mb), 1),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--intervals", type=int, default=96)
    parser.add_argument("--workers", type=int, help="processes for the LV zones (default: up to 2)")
    parser.add_argument("--json", action="store_true", help="one JSON line per size instead of the table")
    parser.add_argument(
        "--hold", action="store_true", help="second LV pass holding zones to the MV plan (hold_boundary)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no same-shape starting basis, no second-LP row pre-check"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.intervals, args.workers, args.hold, not args.cold)))
        return
    if not args.json:
        print(f"{os.cpu_count()} CPUs; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"{'DERs':>7} {'zones':>5} {'prep s':>6} {'solve s':>7} {'CPU s':>6} {'peak MB':>7} {'load':>5} "
            f"{'proc':>4} "
            f"{'LV/MV/LV s':>15} {'LPs':>6} {'warm':>5} {'rows':>8} {'cols':>9} {'MB parts':>12} "
            f"{'objective':>11} {'unmanaged':>11} {'slack pen.':>10} {'viol. before':>12} {'after':>6} "
            f"{'worst V pu / load %':>19} {'slack':>5} {'unit viol.':>10}"
        )
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(size), "--intervals", str(args.intervals)]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        if args.hold:
            cmd += ["--hold"]
        if args.cold:
            cmd += ["--cold"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        phases = f"{r['lv_s']}/{r['mv_s']}/{r['lv_again_s']}"
        peak = f"{r['peak_mb']:.0f}+{'+'.join(f'{x:.0f}' for x in r['worker_peak_mb'])}"
        worst = f"{r['worst_after']['vm_pu']} / {r['worst_after']['loading_pct']}"
        print(
            f"{r['ders']:>7} {r['zones']:>5} {r['prepare_s']:>6} {r['solve_s']:>7} {r['cpu_s']:>6} "
            f"{r['peak_total_mb']:>7.0f} {r['load_avg'][0]:>5.2f} {r['workers']:>4} {phases:>15} {r['lps']:>6} {r['warm_lps']:>5} {r['rows']:>8} {r['cols']:>9} "
            f"{peak:>12} {r['objective']['total']:>11} {r['objective_unmanaged']:>11} "
            f"{r['objective']['slack_penalty']:>10} {r['violations_before']:>12} {r['violations_after']:>6} "
            f"{worst:>19} {r['slack_rows']:>5} {r['unit_violation']:>10}",
            flush=True,
        )


if __name__ == "__main__":
    main()
