"""The grid-aware planner: network model + forecast (profiles at a quantile) + flexibility -> the cheapest
schedule of every generator, storage unit, charging point and flexible load that keeps every bus in its
voltage band and every line and transformer within its rating, proven by AC power flow.

Method (see docs/planning.md):
1. AC power flow of the unmanaged schedule: the operating point and the violations "before".
2. Decomposed LP around the operating point (LinDistFlow, ``linear``): every LV zone (an MV/LV transformer
   and what is below it) is solved on its own with the MV voltage at its transformer as it is; then the MV
   LP takes the LV zones' changes as given, moves MV resources and, where the MV network still needs it, asks
   LV zones for more (aggregate flexibility at their transformer); those zones are solved again with that share
   as a (soft) boundary on their transformer's flow and the MV voltage change as an offset. The LV zones' LPs
   run in forked worker processes (``zone_pool``) where that is safe, in this process otherwise.
3. AC power flow of the plan; if violations remain, re-linearise around the plan's operating point and go to
   2 (bounded). The best plan found is kept; what remains is reported with the reason.

Pure computation (no server, no database): the server calls ``plan_grid`` in an executor (from a thread the
planner does not fork: ``zone_pool.default_workers``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from server.orchestration.acflow import AcResult, AcRunner, ViolationSummary, violations
from server.orchestration.fleet_arrays import FleetArrays
from server.orchestration.linear import (
    OperatingPoint,
    ZoneModel,
    ac_point,
    cumulative_impedance,
    dist_flow_point,
    zone_models,
)
from server.orchestration.lp import Lp
from server.orchestration.network.model import Network, Profiles
from server.orchestration.network.topology import MV_ZONE, Tree, build_tree
from server.orchestration.resources import Costs, Fleet, FlexSpec, build_fleet, default_price
from server.orchestration.schedule import Schedule
from server.orchestration.zone_lp import (
    KW_PU,
    WATCH_LOADING,
    WATCH_PU,
    Aggregates,
    Margins,
    Slack,
    ZoneBlock,
    ZoneInput,
    solve_blocks,
)
from server.orchestration.zone_pool import (
    StepContext,
    ZonePool,
    ZoneResult,
    ZoneTask,
    default_workers,
    zone_schedule,
)

if TYPE_CHECKING:
    from scipy import sparse


@dataclass
class PlannerOptions:
    quantile: float = 0.5
    max_iterations: int = 4
    margins: Margins = field(default_factory=Margins)
    costs: Costs | None = None
    offers: list[FlexSpec] = field(default_factory=list)  # aggregators' offers the plan may buy
    workers: int | None = None  # processes for the LV zones' LPs; None: ``zone_pool.default_workers()``
    # second LV pass: zones keep to the MV plan where their feeder is near a limit (see docs/planning.md)
    hold_boundary: bool = False
    # zones start from a same-shape zone's basis, second LPs with the rows their first plan breaks: the same
    # LP optima in fewer simplex iterations, but ties between equally cheap plans break otherwise (on the
    # SimBench semiurban grid one more element, 0.2 milli-pu over, and 8 kWh more curtailment), so it is the
    # benchmark's choice, not the default
    fast_start: bool = False


@dataclass
class SolveStats:
    lp_seconds: float = 0.0  # summed over every LP (in the workers too)
    build_seconds: float = 0.0
    lps: int = 0
    warm_lps: int = 0  # LPs that started from the basis of the zone's earlier LP
    rounds: int = 0
    rows: int = 0
    cols: int = 0
    iterations: int = 0  # simplex iterations
    iterations_again: int = 0  # of them, in the second LV pass
    statuses: dict[str, int] = field(default_factory=dict)
    workers: int = 1
    lv_seconds: float = 0.0  # wall time of the first LV pass, the MV step, the second LV pass
    mv_seconds: float = 0.0
    lv_again_seconds: float = 0.0
    worker_peak_mb: list[float] = field(default_factory=list)

    def count(self, status: str, rounds: int, rows: int, cols: int, iterations: int) -> None:
        self.lps += 1
        self.rounds += rounds
        self.rows += rows
        self.cols += cols
        self.iterations += iterations
        self.statuses[status] = self.statuses.get(status, 0) + 1


@dataclass
class PlanningNetwork:
    """The planner's view of a network: tree, zones, bands, where each resource sits, and the incidence
    matrices that sum per node or per zone without a loop over units."""

    model: Network
    tree: Tree
    zones: dict[int, ZoneModel]
    vmin: np.ndarray  # per tree node
    vmax: np.ndarray
    r_cum: np.ndarray
    units: dict[int, dict[str, list[int]]]  # zone -> {"pv": [...], ...} indices into the fleet lists
    arrays: FleetArrays
    unit_index: dict[int, dict[str, np.ndarray]]  # the same as index arrays
    local_of: np.ndarray  # (tree nodes,) each node's index within its zone
    lv_zones: list[int]  # sorted
    lv_hv_local: np.ndarray  # (LV zones,) the MV zone's local index of each LV zone's transformer node
    node_of_unit: dict[str, sparse.csr_matrix]  # kind -> (tree nodes, units) incidence
    lv_zone_of_node: sparse.csr_matrix  # (LV zones, tree nodes) incidence
    group_order: np.ndarray  # tree nodes sorted by group (the subtrees under the slack's children)
    group_start: np.ndarray  # (groups,) where each group starts in group_order
    lv_group: np.ndarray  # (LV zones,) group of each LV zone


def _incidence(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    from scipy import sparse  # loaded with the first plan, not with the server (see optimizer.optimise)

    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def prepare(model: Network, fleet: Fleet) -> PlanningNetwork:
    tree = build_tree(model)
    vmin = np.full(tree.n, -np.inf)
    vmax = np.full(tree.n, np.inf)
    for b in model.buses:
        node = tree.pos[b.id]
        vmin[node] = max(vmin[node], b.v_min_pu)
        vmax[node] = min(vmax[node], b.v_max_pu)
    fa = FleetArrays.of(fleet, tree.pos)
    nodes_of_kind = {
        "pv": fa.pv_node,
        "batteries": fa.bat_node,
        "evs": fa.ev_node,
        "dr": fa.dr_node,
        "offers": fa.of_node,
    }
    units: dict[int, dict[str, list[int]]] = {}
    unit_index: dict[int, dict[str, np.ndarray]] = {}
    for kind, nodes in nodes_of_kind.items():
        if not len(nodes):
            continue
        zone = tree.zone[nodes]
        order = np.argsort(zone, kind="stable")
        keys, starts = np.unique(zone[order], return_index=True)
        for z, part in zip(keys, np.split(order, starts[1:]), strict=True):
            unit_index.setdefault(int(z), {})[kind] = part.astype(np.int64)
            units.setdefault(int(z), {k: [] for k in nodes_of_kind})[kind] = part.tolist()
    r_cum, _ = cumulative_impedance(tree)
    zones = zone_models(tree)
    local_of = np.zeros(tree.n, np.int64)
    for zm in zones.values():
        local_of[zm.nodes] = np.arange(len(zm.nodes))
    lv_zones = sorted(z for z in zones if z != MV_ZONE)
    lv_hv_local = np.array([local_of[zones[z].hv_node] for z in lv_zones], dtype=np.int64)
    lv_pos = {z: i for i, z in enumerate(lv_zones)}
    in_lv = np.flatnonzero(tree.zone != MV_ZONE)
    zone_rows = np.array([lv_pos[int(z)] for z in tree.zone[in_lv]], dtype=np.int64)
    # zones couple through the feeder they share: group them by the feeder they hang from (the subtrees under
    # the first node below the slack with more than one child: the busbar)
    children = np.bincount(tree.parent[1:], minlength=tree.n)
    busbar = 0
    while children[busbar] == 1:
        busbar = int(np.flatnonzero(tree.parent == busbar)[0])
    group = np.zeros(tree.n, np.int64)
    for node in range(1, tree.n):  # breadth-first: a parent comes before its children
        group[node] = node if tree.parent[node] == busbar else group[tree.parent[node]]
    _, group = np.unique(group, return_inverse=True)
    group_order = np.argsort(group, kind="stable")
    group_start = np.flatnonzero(np.r_[True, np.diff(group[group_order]) > 0])
    return PlanningNetwork(
        model=model,
        tree=tree,
        zones=zones,
        vmin=vmin,
        vmax=vmax,
        r_cum=r_cum,
        units=units,
        arrays=fa,
        unit_index=unit_index,
        local_of=local_of,
        lv_zones=lv_zones,
        lv_hv_local=lv_hv_local,
        node_of_unit={
            k: _incidence(nodes, np.arange(len(nodes)), (tree.n, len(nodes)))
            for k, nodes in nodes_of_kind.items()
        },
        lv_zone_of_node=_incidence(zone_rows, in_lv, (len(lv_zones), tree.n)),
        group_order=group_order,
        group_start=group_start,
        lv_group=group[[zones[z].nodes[0] for z in lv_zones]].astype(np.int64),
    )


def _per_node(net: PlanningNetwork, kind: str, kw: np.ndarray) -> np.ndarray:
    """(steps, units) kW of one kind -> (steps, tree nodes)."""
    return np.asarray((net.node_of_unit[kind] @ kw.T).T)


def _per_lv_zone(net: PlanningNetwork, per_node: np.ndarray) -> np.ndarray:
    """(steps, tree nodes) -> (steps, LV zones) sums."""
    return np.asarray((net.lv_zone_of_node @ per_node.T).T)


def controllable_injection(net: PlanningNetwork, sched: Schedule, baseline: Schedule) -> np.ndarray:
    """kW injected per tree node per interval by what the planner controls, in ``sched``."""
    fa = net.arrays
    return (
        _per_node(net, "pv", sched.sgen_p[:, fa.pv_sgen] * 1000)
        - _per_node(net, "batteries", sched.storage_p[:, fa.bat_storage] * 1000)
        - _per_node(net, "evs", sched.load_p[:, fa.ev_load] * 1000)
        + _per_node(net, "dr", (baseline.load_p[:, fa.dr_load] - sched.load_p[:, fa.dr_load]) * 1000)
        + _per_node(net, "offers", (baseline.load_p[:, fa.of_load] - sched.load_p[:, fa.of_load]) * 1000)
    )


def _apply(r: ZoneResult, sched: Schedule, stats: SolveStats, slacks: dict[int, list[Slack]]) -> None:
    if r.status != "Optimal":
        raise RuntimeError(f"the LP of zone {r.zone} ended {r.status}")
    sched.sgen_p[:, r.sgen] = r.sgen_p
    sched.storage_p[:, r.storage] = r.storage_p
    sched.load_p[:, r.load] = r.load_p
    sched.load_q[:, r.load_q_idx] = r.load_q
    slacks[r.zone] = r.slacks
    stats.count(r.status, r.rounds, r.rows, r.cols, r.iterations)
    stats.warm_lps += int(r.warm)
    stats.build_seconds += r.build_seconds
    stats.lp_seconds += r.lp_seconds


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


def _coupled_stress(
    net: PlanningNetwork, op: OperatingPoint, change_kw: np.ndarray, margins: Margins
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, groups) each: where, with the injection change ``change_kw`` (steps, tree nodes; overwritten)
    by the linear model, a bus of the group is near its upper band or an MV branch near its rating in reverse
    (``high``), or a bus near its lower band or an MV branch near its rating forward (``low``)."""
    tree = net.tree
    change_kw *= KW_PU
    lin = dist_flow_point(tree, change_kw, None, 0.0)
    vm, p = lin.vm, lin.p
    vm += op.vm
    p += op.p
    near = margins.voltage_pu + WATCH_PU
    high = vm > net.vmax[None, :] - near
    low = vm < net.vmin[None, :] + near
    mv = np.flatnonzero((tree.zone == MV_ZONE) & np.isfinite(tree.s_max_pu) & (np.arange(tree.n) > 0))
    s = tree.s_max_pu[None, mv] * np.minimum(vm[:, mv], 1.0) * WATCH_LOADING
    high[:, mv] |= p[:, mv] < -s
    low[:, mv] |= p[:, mv] > s
    order, start = net.group_order, net.group_start
    return (
        np.logical_or.reduceat(high[:, order], start, axis=1),
        np.logical_or.reduceat(low[:, order], start, axis=1),
    )


@dataclass
class StepResult:
    schedule: Schedule
    slacks: list[Slack]
    stats: SolveStats
    boundary_zones: int


def _solve_mv(
    net: PlanningNetwork,
    ctx: StepContext,
    new: Schedule,
    stats: SolveStats,
    slacks: dict[int, list[Slack]],
    hold: bool = False,
) -> list[ZoneTask]:
    """The MV step: LV zones' changes fixed at their transformers, MV resources and LV zones' aggregate
    flexibility against the MV limits; returns the LV zones to solve again (share asked, MV voltage moved)."""
    fleet, op, steps = ctx.fleet, ctx.op, ctx.fleet.steps
    fa = net.arrays
    mv = net.zones[MV_ZONE]
    hv = net.lv_hv_local
    change = controllable_injection(net, new, fleet.baseline)
    change -= ctx.inj_op  # (steps, tree nodes) what the LV zones changed
    dev = _per_lv_zone(net, change)  # (steps, LV zones) each zone's change of injection
    fixed = np.zeros((steps, len(mv.nodes)))
    np.add.at(fixed.T, hv, dev.T)
    # what each zone can still give: its remaining PV output (less), its remaining demand response (more)
    down = np.clip(_per_lv_zone(net, _per_node(net, "pv", new.sgen_p[:, fa.pv_sgen] * 1000)), 0, None)
    shed = (fleet.baseline.load_p[:, fa.dr_load] - new.load_p[:, fa.dr_load]) * 1000
    up = np.clip(_per_lv_zone(net, _per_node(net, "dr", fa.dr_max.T - shed)), 0, None)
    # offered to the MV step only where an MV limit is near, by zones that can affect it
    relevant = _mv_relevance(net, mv, op, fixed, ctx.margins)[:, hv]
    down, up = down * relevant, up * relevant
    at, inv = np.unique(hv, return_inverse=True)
    down_at = np.zeros((len(at), steps))
    up_at = np.zeros((len(at), steps))
    np.add.at(down_at, inv, down.T)
    np.add.at(up_at, inv, up.T)
    units = net.unit_index.get(MV_ZONE, {})
    empty = np.zeros(0, np.int64)
    zi = ZoneInput(
        model=mv,
        op=op,
        vmin=net.vmin[mv.nodes],
        vmax=net.vmax[mv.nodes],
        pv=units.get("pv", empty),
        batteries=units.get("batteries", empty),
        evs=units.get("evs", empty),
        dr=units.get("dr", empty),
        offers=units.get("offers", empty),
        fixed_kw=fixed,
        aggregates=Aggregates(at, down_at, up_at),
    )
    t0 = time.perf_counter()
    lp = Lp()
    block = ZoneBlock(lp, zi, fa, net.local_of, ctx.inj_op[:, mv.nodes], ctx.costs, ctx.margins)
    t1 = time.perf_counter()
    status, x, rounds, _ = solve_blocks(lp, [block])
    lp.release()
    stats.build_seconds += t1 - t0
    stats.lp_seconds += time.perf_counter() - t1
    if status != "Optimal":
        raise RuntimeError(f"the LP of the MV zone ended {status}")
    for table, (idx, values) in zone_schedule(block, x, fleet, fa).items():
        target = {"sgen": new.sgen_p, "storage": new.storage_p, "load": new.load_p, "load_q": new.load_q}
        target[table][:, idx] = values
    slacks[MV_ZONE] = block.slacks(x)
    stats.count(status, rounds, lp.m, lp.n, lp.iterations)
    # the share asked of each zone: its part of what was asked at its MV node (the zones there are alike)
    got_down, got_up = block.aggregates(x)
    ask_down = (
        np.divide(down.T, down_at[inv], out=np.zeros_like(down.T), where=down_at[inv] > 0) * got_down[inv]
    )
    ask_up = np.divide(up.T, up_at[inv], out=np.zeros_like(up.T), where=up_at[inv] > 0) * got_up[inv]
    # the MV voltage change every LV zone sees, less its own part (its LP has that through its R)
    dv = (block.injection(x) + fixed) @ block.rk.T / 1000  # pu
    own = dev - ask_down.T + ask_up.T
    r_top = net.r_cum[[net.zones[z].hv_node for z in net.lv_zones]]
    offset = dv[:, hv] - r_top[None, :] * KW_PU * own
    # every LV zone's MV voltage above assumes the others do what the MV step planned for them: a zone that
    # reduced its injection (export stress) may not give it back, one that raised it may not lower it again,
    # or the relief each zone counts on from the others would be spent by all of them at once
    asked_down, asked_up = ask_down > 1e-3, ask_up > 1e-3  # (LV zones, steps)
    hi = np.where(asked_down, dev.T - ask_down, np.inf)
    lo = np.where(asked_up, dev.T + ask_up, -np.inf)
    if hold:  # where the zones' feeder is near a limit on that side
        change[:, mv.nodes] += block.injection(x) - ctx.inj_op[:, mv.nodes]  # MV units, shares asked
        stress_hi, stress_lo = _coupled_stress(net, op, change, ctx.margins)
        g = net.lv_group
        hi = np.minimum(hi, np.where((dev.T < -1e-3) & stress_hi[:, g].T, own.T, np.inf))
        lo = np.maximum(lo, np.where((dev.T > 1e-3) & stress_lo[:, g].T, own.T, -np.inf))
    asked = np.asarray(asked_down.any(axis=1) | asked_up.any(axis=1))
    held = np.asarray(np.isfinite(hi).any(axis=1) | np.isfinite(lo).any(axis=1))
    moved = np.asarray(np.abs(offset).max(axis=0, initial=0) >= 5e-4)
    again: list[ZoneTask] = []
    for i, z in enumerate(net.lv_zones):
        if not (asked[i] or moved[i]):
            continue
        task = ZoneTask(z, offset_pu=offset[:, i].copy())
        if held[i]:
            task.boundary_hi_kw, task.boundary_lo_kw = hi[i].copy(), lo[i].copy()
        task.asked = bool(asked[i])
        again.append(task)
    return again


def solve_step(
    net: PlanningNetwork,
    fleet: Fleet,
    op: OperatingPoint,
    sched: Schedule,
    costs: Costs,
    margins: Margins,
    workers: int | None = None,
    hold_boundary: bool = False,
    fast_start: bool = False,
) -> StepResult:
    """One decomposed LP around ``op`` (the operating point of ``sched``): LV zones, the MV step, LV again
    where the MV network asked for more or its voltage moved."""
    stats = SolveStats(workers=default_workers() if workers is None else max(1, workers))
    new = sched.copy()
    inj_op = controllable_injection(net, sched, fleet.baseline)
    ctx = StepContext(net, fleet, op, inj_op, costs, margins, fast_start)
    slacks: dict[int, list[Slack]] = {}
    boundary_zones = 0
    with ZonePool(ctx, stats.workers if len(net.lv_zones) > 1 else 1) as pool:
        t0 = time.perf_counter()
        for r in pool.run([ZoneTask(z) for z in net.lv_zones]):
            _apply(r, new, stats, slacks)
        t1 = time.perf_counter()
        stats.lv_seconds = t1 - t0
        if MV_ZONE in net.zones:
            again = _solve_mv(net, ctx, new, stats, slacks, hold_boundary)
            t2 = time.perf_counter()
            stats.mv_seconds = t2 - t1
            boundary_zones = sum(t.asked for t in again)
            first = stats.iterations
            for r in pool.run(again):
                _apply(r, new, stats, slacks)
            stats.iterations_again = stats.iterations - first
            stats.lv_again_seconds = time.perf_counter() - t2
    stats.worker_peak_mb = pool.stats.worker_peak_mb
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
    fleet = build_fleet(model, profiles, opts.quantile, opts.offers)
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
        step = solve_step(
            net, fleet, op, sched, costs, opts.margins, opts.workers, opts.hold_boundary, opts.fast_start
        )
        step_seconds = time.perf_counter() - t0  # wall time (the LPs' own times add up over the workers)
        solve_seconds += step_seconds
        ac = runner.run(step.schedule)
        after = violations(model, ac)
        iterations.append(
            Iteration(
                after,
                step_seconds,
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
