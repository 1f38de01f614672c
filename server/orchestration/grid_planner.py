"""The grid-aware planner: network model + forecast (profiles at a quantile) + flexibility -> the cheapest
schedule of every generator, storage unit, charging point and flexible load that keeps every bus in its
voltage band and every line and transformer within its rating, proven by AC power flow.

Method (see docs/planning.md):
1. AC power flow of the unmanaged schedule: the operating point and the violations "before".
2. Decomposed LP around the operating point (LinDistFlow, ``linear``): every LV zone (an MV/LV transformer
   and what is below it) is solved on its own with the MV voltage at its transformer as it is; then the MV
   LP takes the LV zones' changes as given, moves MV resources and, where the MV network still needs it, asks
   LV zones for more (aggregate flexibility at their transformer); those zones are solved again with that share
   as a (soft) boundary on their transformer's flow and the MV voltage change as an offset.
3. AC power flow of the plan; if violations remain, re-linearise around the plan's operating point and go to
   2 (bounded). The best plan found is kept; what remains is reported with the reason.

Pure computation (no server, no database): the server calls ``plan_grid`` in an executor."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.orchestration.acflow import AcResult, AcRunner, ViolationSummary, violations
from server.orchestration.linear import OperatingPoint, ZoneModel, ac_point, cumulative_impedance, zone_models
from server.orchestration.lp import Lp
from server.orchestration.network.model import Network, Profiles
from server.orchestration.network.topology import MV_ZONE, Tree, build_tree
from server.orchestration.resources import Costs, Fleet, build_fleet, default_price
from server.orchestration.schedule import Schedule
from server.orchestration.zone_lp import (
    KW_PU,
    WATCH_LOADING,
    WATCH_PU,
    Aggregate,
    Margins,
    Slack,
    ZoneBlock,
    ZoneInput,
    solve_blocks,
)

BATCH_NODES = 1  # LV zones are solved together until a batch reaches this many nodes (1: one LP per zone)


@dataclass
class PlannerOptions:
    quantile: float = 0.5
    max_iterations: int = 4
    margins: Margins = field(default_factory=Margins)
    costs: Costs | None = None
    batch_nodes: int = BATCH_NODES


@dataclass
class SolveStats:
    lp_seconds: float = 0.0
    build_seconds: float = 0.0
    lps: int = 0
    rounds: int = 0
    rows: int = 0
    cols: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class PlanningNetwork:
    """The planner's view of a network: tree, zones, bands and where each resource sits."""

    model: Network
    tree: Tree
    zones: dict[int, ZoneModel]
    vmin: np.ndarray  # per tree node
    vmax: np.ndarray
    r_cum: np.ndarray
    units: dict[int, dict[str, list[int]]]  # zone -> {"pv": [...], ...} indices into the fleet lists


def prepare(model: Network, fleet: Fleet) -> PlanningNetwork:
    tree = build_tree(model)
    vmin = np.full(tree.n, -np.inf)
    vmax = np.full(tree.n, np.inf)
    for b in model.buses:
        node = tree.pos[b.id]
        vmin[node] = max(vmin[node], b.v_min_pu)
        vmax[node] = min(vmax[node], b.v_max_pu)
    units: dict[int, dict[str, list[int]]] = {}
    for kind, items in (
        ("pv", fleet.pv),
        ("batteries", fleet.batteries),
        ("evs", fleet.evs),
        ("dr", fleet.dr),
    ):
        for k, u in enumerate(items):
            z = int(tree.zone[tree.pos[u.bus]])  # type: ignore[attr-defined]
            units.setdefault(z, {"pv": [], "batteries": [], "evs": [], "dr": []})[kind].append(k)
    r_cum, _ = cumulative_impedance(tree)
    return PlanningNetwork(model, tree, zone_models(tree), vmin, vmax, r_cum, units)


def controllable_injection(net: PlanningNetwork, fleet: Fleet, sched: Schedule) -> np.ndarray:
    """kW injected per tree node per interval by what the planner controls, in ``sched``."""
    tree, steps = net.tree, fleet.steps
    inj = np.zeros((steps, tree.n))
    for u in fleet.pv:
        inj[:, tree.pos[u.bus]] += sched.sgen_p[:, u.sgen] * 1000
    for b in fleet.batteries:
        inj[:, tree.pos[b.bus]] -= sched.storage_p[:, b.storage] * 1000
    for ev in fleet.evs:
        inj[:, tree.pos[ev.bus]] -= sched.load_p[:, ev.load] * 1000
    for d in fleet.dr:
        inj[:, tree.pos[d.bus]] += (fleet.baseline.load_p[:, d.load] - sched.load_p[:, d.load]) * 1000
    return inj


def apply_solution(block: ZoneBlock, x: np.ndarray, fleet: Fleet, sched: Schedule) -> None:
    for k, (c0, ts) in block.pv_cols.items():
        kw = np.zeros(fleet.steps)
        kw[ts] = x[c0 : c0 + len(ts)]
        sched.sgen_p[:, fleet.pv[k].sgen] = kw / 1000
    for k, (ch, dis, _soc) in block.bat_cols.items():
        sched.storage_p[:, fleet.batteries[k].storage] = (
            x[ch : ch + fleet.steps] - x[dis : dis + fleet.steps]
        ) / 1000
    for k, sessions in block.ev_cols.items():
        kw = np.zeros(fleet.steps)
        for c0, t0, t1 in sessions:
            kw[t0:t1] = x[c0 : c0 + t1 - t0]
        sched.load_p[:, fleet.evs[k].load] = kw / 1000
    for k, (c0, ts) in block.dr_cols.items():
        d = fleet.dr[k]
        base = fleet.baseline.load_p[:, d.load]
        shed = np.zeros(fleet.steps)
        shed[ts] = x[c0 : c0 + len(ts)] / 1000
        sched.load_p[:, d.load] = base - shed
        scale = np.divide(base - shed, base, out=np.ones_like(base), where=base > 0)
        sched.load_q[:, d.load] = fleet.baseline.load_q[:, d.load] * scale


def _solve_group(
    net: PlanningNetwork,
    fleet: Fleet,
    inputs: list[ZoneInput],
    inj_op: np.ndarray,
    costs: Costs,
    margins: Margins,
    sched: Schedule,
    stats: SolveStats,
) -> tuple[list[ZoneBlock], np.ndarray]:
    t0 = time.perf_counter()
    lp = Lp()
    blocks = [
        ZoneBlock(lp, zi, fleet, net.tree.pos, inj_op[:, zi.model.nodes], costs, margins) for zi in inputs
    ]
    t1 = time.perf_counter()
    status, x, rounds = solve_blocks(lp, blocks)
    stats.build_seconds += t1 - t0
    stats.lp_seconds += time.perf_counter() - t1
    stats.lps += 1
    stats.rounds += rounds
    stats.rows += lp.m
    stats.cols += lp.n
    stats.statuses[status] = stats.statuses.get(status, 0) + 1
    if status != "Optimal":
        raise RuntimeError(f"the LP of zone(s) {[zi.model.zone for zi in inputs]} ended {status}")
    for b in blocks:
        apply_solution(b, x, fleet, sched)
    return blocks, x


def _zone_input(net: PlanningNetwork, zone: int, op: OperatingPoint, **extra: Any) -> ZoneInput:
    zm = net.zones[zone]
    u = net.units.get(zone, {"pv": [], "batteries": [], "evs": [], "dr": []})
    return ZoneInput(
        model=zm,
        op=op,
        vmin=net.vmin[zm.nodes],
        vmax=net.vmax[zm.nodes],
        pv=u["pv"],
        batteries=u["batteries"],
        evs=u["evs"],
        dr=u["dr"],
        **extra,
    )


def _batches(net: PlanningNetwork, zones: list[int], limit: int) -> list[list[int]]:
    out: list[list[int]] = [[]]
    size = 0
    for z in zones:
        n = len(net.zones[z].nodes)
        if out[-1] and size + n > limit:
            out.append([])
            size = 0
        out[-1].append(z)
        size += n
    return [b for b in out if b]


def _mv_relevance(
    net: PlanningNetwork, mv: ZoneModel, op: OperatingPoint, fixed: np.ndarray, margins: Margins
) -> np.ndarray:
    """(steps, MV nodes) True where an injection change at the node would act on an MV limit that is near."""
    nodes = mv.nodes
    vm = op.vm[:, nodes] + fixed @ (mv.r * KW_PU).T
    p = op.p[:, nodes] / KW_PU - fixed @ mv.below.T.astype(float)
    vmax, vmin = net.vmax[nodes], net.vmin[nodes]
    near_v = (vm > vmax - margins.voltage_pu - WATCH_PU) | (vm < vmin + margins.voltage_pu + WATCH_PU)
    s_kw = mv.s_max[None, :] * np.minimum(op.vm[:, nodes], 1.0) / KW_PU
    near_p = (np.abs(p) > WATCH_LOADING * s_kw) & np.isfinite(mv.s_max)[None, :]
    reach_v = near_v.astype(float) @ (mv.r > 0).astype(float)
    reach_p = near_p.astype(float) @ mv.below.astype(float)
    return (reach_v + reach_p) > 0


@dataclass
class StepResult:
    schedule: Schedule
    slacks: list[Slack]
    stats: SolveStats
    boundary_zones: int


def solve_step(
    net: PlanningNetwork,
    fleet: Fleet,
    op: OperatingPoint,
    sched: Schedule,
    costs: Costs,
    margins: Margins,
    batch_nodes: int = BATCH_NODES,
) -> StepResult:
    """One decomposed LP around ``op`` (the operating point of ``sched``): LV zones, the MV step, LV again
    where the MV network asked for more."""
    stats = SolveStats()
    steps = fleet.steps
    new = sched.copy()
    inj_op = controllable_injection(net, fleet, sched)
    lv_zones = sorted(z for z in net.zones if z != MV_ZONE)
    slacks: dict[int, list[Slack]] = {}
    for batch in _batches(net, lv_zones, batch_nodes):
        blocks, x = _solve_group(
            net, fleet, [_zone_input(net, z, op) for z in batch], inj_op, costs, margins, new, stats
        )
        for z, b in zip(batch, blocks, strict=True):
            slacks[z] = b.slacks(x)
    boundary_zones = 0
    if MV_ZONE in net.zones:
        inj_lv = controllable_injection(net, fleet, new)
        mv = net.zones[MV_ZONE]
        mv_local = {int(v): i for i, v in enumerate(mv.nodes)}
        fixed = np.zeros((steps, len(mv.nodes)))
        dev: dict[int, np.ndarray] = {}
        aggs = []
        pv_out = np.zeros((steps, net.tree.n))
        dr_room = np.zeros((steps, net.tree.n))
        for u in fleet.pv:
            pv_out[:, net.tree.pos[u.bus]] += new.sgen_p[:, u.sgen] * 1000
        for d in fleet.dr:
            dr_room[:, net.tree.pos[d.bus]] += (
                d.max_shed_kw - (fleet.baseline.load_p[:, d.load] - new.load_p[:, d.load]) * 1000
            )
        for z in lv_zones:
            nodes = net.zones[z].nodes
            dev[z] = (inj_lv[:, nodes] - inj_op[:, nodes]).sum(axis=1)
            hv = mv_local[net.zones[z].hv_node]
            fixed[:, hv] += dev[z]
            aggs.append(
                Aggregate(
                    z,
                    hv,
                    np.clip(pv_out[:, nodes].sum(axis=1), 0, None),
                    np.clip(dr_room[:, nodes].sum(axis=1), 0, None),
                )
            )
        # LV flexibility is offered to the MV step only where an MV limit is near, by zones that can affect it
        relevant = _mv_relevance(net, mv, op, fixed, margins)
        for a in aggs:
            a.down_kw = a.down_kw * relevant[:, a.node]
            a.up_kw = a.up_kw * relevant[:, a.node]
        zi = _zone_input(net, MV_ZONE, op, fixed_kw=fixed, aggregates=aggs)
        blocks, x = _solve_group(net, fleet, [zi], inj_op, costs, margins, new, stats)
        mv_block = blocks[0]
        slacks[MV_ZONE] = mv_block.slacks(x)
        # the MV voltage change every LV zone sees, and the share asked of it
        mv_inj = mv_block.injection(x) + fixed
        dv = mv_inj @ mv_block.rk.T / 1000  # pu
        again: list[ZoneInput] = []
        for z in lv_zones:
            down, up = mv_block.aggregate(z, x)
            own = dev[z] - down + up
            offset = dv[:, mv_local[net.zones[z].hv_node]] - net.r_cum[net.zones[z].hv_node] * KW_PU * own
            asked = (down > 1e-3) | (up > 1e-3)
            if not asked.any() and np.abs(offset).max(initial=0) < 5e-4:
                continue
            extra: dict[str, Any] = {"offset_pu": np.repeat(offset[:, None], len(net.zones[z].nodes), axis=1)}
            if asked.any():
                boundary_zones += 1
                extra["boundary_hi_kw"] = np.where(down > 1e-3, dev[z] - down, np.inf)
                extra["boundary_lo_kw"] = np.where(up > 1e-3, dev[z] + up, -np.inf)
            again.append(_zone_input(net, z, op, **extra))
        by_zone = {zi.model.zone: zi for zi in again}
        for batch in _batches(net, [zi.model.zone for zi in again], batch_nodes):
            blocks, x = _solve_group(
                net, fleet, [by_zone[z] for z in batch], inj_op, costs, margins, new, stats
            )
            for z, b in zip(batch, blocks, strict=True):
                slacks[z] = b.slacks(x)
    return StepResult(new, [s for z in sorted(slacks) for s in slacks[z]], stats, boundary_zones)


@dataclass
class Iteration:
    violations: ViolationSummary
    lp_seconds: float
    pf_seconds: float
    boundary_zones: int
    lps: int
    rounds: int


@dataclass
class GridPlan:
    model: Network
    profiles: Profiles
    fleet: Fleet
    net: PlanningNetwork
    costs: Costs
    before: ViolationSummary
    after: ViolationSummary
    ac_before: AcResult
    ac_after: AcResult
    schedule: Schedule
    slacks: list[Slack]
    iterations: list[Iteration]
    best_iteration: int
    solve_seconds: float
    pf_seconds: float
    pf_runs: int
    margins: Margins


def violation_weight(v: ViolationSummary) -> float:
    """How bad: interval-weighted excess (pu x 100 for voltage, percent for loading)."""
    total = 0.0
    for x in v.by_element:
        excess = abs(x.worst - x.limit) * (100 if x.kind.startswith("vm") else 1)
        total += len(x.intervals) * (1 + excess)
    return total


def plan_grid(
    model: Network, profiles: Profiles, options: PlannerOptions | None = None, runner: AcRunner | None = None
) -> GridPlan:
    opts = options or PlannerOptions()
    fleet = build_fleet(model, profiles, opts.quantile)
    costs = opts.costs or Costs(price=default_price(fleet.steps))
    net = prepare(model, fleet)
    runner = runner or AcRunner(model)
    ac_before = runner.run(fleet.baseline)
    before = violations(model, ac_before)
    sched, ac, op = fleet.baseline, ac_before, ac_point(model, net.tree, ac_before)
    best: tuple[float, int, Schedule, AcResult, ViolationSummary, list[Slack]] | None = None
    iterations: list[Iteration] = []
    solve_seconds = 0.0
    for it in range(max(1, opts.max_iterations)):
        t0 = time.perf_counter()
        step = solve_step(net, fleet, op, sched, costs, opts.margins, opts.batch_nodes)
        solve_seconds += time.perf_counter() - t0
        ac = runner.run(step.schedule)
        after = violations(model, ac)
        iterations.append(
            Iteration(
                after,
                step.stats.lp_seconds + step.stats.build_seconds,
                ac.seconds,
                step.boundary_zones,
                step.stats.lps,
                step.stats.rounds,
            )
        )
        weight = violation_weight(after)
        if best is None or weight < best[0]:
            best = (weight, it, step.schedule, ac, after, step.slacks)
        if after.count == 0:
            break
        sched, op = step.schedule, ac_point(model, net.tree, ac)
    assert best is not None
    _, best_it, sched, ac, after, slacks = best
    from server.orchestration.explain import explain

    explain(net, fleet, after, slacks, ac)
    return GridPlan(
        model=model,
        profiles=profiles,
        fleet=fleet,
        net=net,
        costs=costs,
        before=before,
        after=after,
        ac_before=ac_before,
        ac_after=ac,
        schedule=sched,
        slacks=slacks,
        iterations=iterations,
        best_iteration=best_it,
        solve_seconds=solve_seconds,
        pf_seconds=runner.total_seconds,
        pf_runs=runner.total_runs,
        margins=opts.margins,
    )
