"""The decomposed planning step on a network of many LV zones on shared MV feeders: worker processes plan
what one process plans, a zone solved again from its first basis reaches the optimum a cold solve reaches,
zones held to the MV plan leave no limit broken by the linear model, and the fleet arrays keep every unit."""

from __future__ import annotations

import numpy as np
import pytest

from server.orchestration.fleet_arrays import FleetArrays
from server.orchestration.grid_planner import PlanningNetwork, controllable_injection, prepare, solve_step
from server.orchestration.linear import dist_flow_point
from server.orchestration.network.model import Bus, Line, Load, Network, Profiles, Sgen, Slack, Storage, Trafo
from server.orchestration.resources import Costs, Fleet, build_fleet, default_price
from server.orchestration.schedule import Schedule
from server.orchestration.zone_lp import Margins
from server.orchestration.zone_pool import StepContext, ZoneSolver, ZoneTask

STEPS = 24


def shared_feeders(feeders: int = 2, trafos: int = 12, mv_r_ohm_km: float = 2.5) -> tuple[Network, Profiles]:
    """A 20 kV busbar, ``feeders`` MV feeders of ``trafos`` 30 kVA transformers each (one MV section per
    transformer), four houses per transformer with PV, one battery and one charging point; the feeder heads
    are rated for all of it, so the MV voltage, which every zone of a feeder moves, is what binds."""
    rng = np.random.default_rng(3)
    hours = np.arange(STEPS) + 0.5
    solar = np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)
    shape = 0.4 + 0.8 * np.exp(-((hours - 19.5) ** 2) / 5)
    buses = [Bus(0, "busbar", 20.0)]
    lines: list[Line] = []
    tr: list[Trafo] = []
    loads: list[Load] = []
    sgens: list[Sgen] = []
    storages: list[Storage] = []
    load_p: dict[int, np.ndarray] = {}
    load_q: dict[int, np.ndarray] = {}
    sgen_p: dict[int, np.ndarray] = {}

    def bus(name: str, kv: float) -> int:
        buses.append(Bus(len(buses), name, kv))
        return len(buses) - 1

    for f in range(feeders):
        prev = 0
        for _ in range(trafos):
            mv = bus(f"feeder {f} node {len(tr)}", 20.0)
            lines.append(Line(len(lines), f"MV {mv}", prev, mv, 1.0, mv_r_ohm_km, 0.2, 1.0))
            prev = mv
            lv = bus(f"LV {len(tr)}", 0.4)
            tr.append(Trafo(len(tr), f"T{len(tr)}", mv, lv, 0.1, 20.0, 0.4, 4.0, 1.0))
            up = lv
            for h in range(4):
                hb = bus(f"house {len(tr) - 1}.{h}", 0.4)
                lines.append(Line(len(lines), f"LV {hb}", up, hb, 0.08, 0.2, 0.08, 0.3))
                up = hb
                kw = rng.uniform(0.8, 1.6)
                ld = Load(len(loads), f"house {hb}", hb, kw / 1000, kw / 4000, "household")
                loads.append(ld)
                load_p[ld.id], load_q[ld.id] = ld.p_mw * shape, ld.q_mvar * shape
                sg = Sgen(len(sgens), f"pv {hb}", hb, 0.012, 0.012)
                sgens.append(sg)
                sgen_p[sg.id] = sg.p_mw * solar * rng.uniform(0.8, 1.0)
                if h == 1:
                    storages.append(Storage(len(storages), f"battery {hb}", hb, 0.005, 0.010, soc_percent=30))
                if h == 3:
                    ev = Load(len(loads), f"charger {hb}", hb, 0.007, 0.0, "ev")
                    loads.append(ev)
                    prof = np.zeros(STEPS)
                    prof[18:21] = ev.p_mw
                    load_p[ev.id], load_q[ev.id] = prof, np.zeros(STEPS)
    model = Network("shared feeders", buses, lines, tr, Slack(0, 1.03), loads, sgens, storages)
    storage_p = {s.id: np.zeros(STEPS) for s in storages}
    return model, Profiles("2026-06-21T00:00:00", 3600, load_p, load_q, sgen_p, storage_p)


def linear_excess(net: PlanningNetwork, model: Network, sched: Schedule) -> float:
    """The largest voltage outside its band (pu) by LinDistFlow over the whole network."""
    tree = net.tree
    p, q = sched.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    return float(np.maximum(op.vm - net.vmax, net.vmin - op.vm).max())


@pytest.fixture(scope="module")
def grid() -> tuple[Network, Fleet, PlanningNetwork]:
    model, profiles = shared_feeders()
    fleet = build_fleet(model, profiles)
    return model, fleet, prepare(model, fleet)


def _step(grid, workers: int, hold: bool = True, fast: bool = False):  # noqa: ANN001, ANN202
    model, fleet, net = grid
    tree = net.tree
    p, q = fleet.baseline.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    return solve_step(
        net, fleet, op, fleet.baseline, Costs(price=default_price(STEPS)), Margins(), workers, hold, fast
    )


def test_the_network_needs_planning(grid):
    model, fleet, net = grid
    assert linear_excess(net, model, fleet.baseline) > 0.01  # noon export lifts the feeder ends far out


@pytest.mark.parametrize("fast", [False, True], ids=["cold", "fast-start"])
def test_worker_processes_plan_what_one_process_plans(grid, fast):
    # with fast starts too: a zone's starting basis comes from its template group, not from its worker
    one, two = _step(grid, workers=1, fast=fast), _step(grid, workers=2, fast=fast)
    assert two.stats.workers == 2 and two.stats.lps == one.stats.lps
    assert two.stats.warm_lps > 0  # zones solved again started from their first basis, in their worker
    for a, b in (
        (one.schedule.sgen_p, two.schedule.sgen_p),
        (one.schedule.storage_p, two.schedule.storage_p),
    ):
        np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(one.schedule.load_p, two.schedule.load_p, atol=1e-9)
    assert [(s.kind, s.node, s.interval) for s in one.slacks] == [
        (s.kind, s.node, s.interval) for s in two.slacks
    ]


def test_zones_started_from_a_same_shape_zone_reach_the_cold_optima_in_fewer_iterations(grid):
    model, fleet, net = grid
    tree = net.tree
    p, q = fleet.baseline.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    inj = controllable_injection(net, fleet.baseline, fleet.baseline)
    costs = Costs(price=default_price(STEPS))
    cold = ZoneSolver(StepContext(net, fleet, op, inj, costs, Margins()))
    fast = ZoneSolver(StepContext(net, fleet, op, inj, costs, Margins(), fast_start=True))
    tasks = [ZoneTask(z, group_start=i == 0) for i, z in enumerate(net.lv_zones)]
    got = [fast.solve(t) for t in tasks]
    want = [cold.solve(ZoneTask(t.zone)) for t in tasks]
    assert all(r.status == "Optimal" for r in got + want)
    for g, w in zip(got, want, strict=True):
        assert g.objective == pytest.approx(w.objective, rel=1e-7, abs=1e-6)
    assert sum(r.iterations for r in got[1:]) < 0.5 * sum(r.iterations for r in want[1:])


def test_zones_held_to_the_mv_plan_leave_no_voltage_outside_its_band(grid):
    model, _, net = grid
    held = _step(grid, workers=1)
    assert not [s for s in held.slacks if s.kind.startswith("vm")]
    assert linear_excess(net, model, held.schedule) < 1e-4
    # the zones of a feeder all giving back what they curtailed once the MV voltage dropped: too much at once
    free = _step(grid, workers=1, hold=False)
    assert linear_excess(net, model, free.schedule) > linear_excess(net, model, held.schedule) + 1e-3


def test_a_zone_solved_again_from_its_first_basis_reaches_the_cold_optimum(grid):
    model, fleet, net = grid
    tree = net.tree
    p, q = fleet.baseline.bus_injection(model, tree.pos, tree.n)
    op = dist_flow_point(tree, p, q, model.slack.vm_pu)
    inj = controllable_injection(net, fleet.baseline, fleet.baseline)
    ctx = StepContext(net, fleet, op, inj, Costs(price=default_price(STEPS)), Margins())
    zone = net.lv_zones[-1]  # a feeder end
    offset = np.full(STEPS, -0.004)  # the MV voltage 4 milli-pu lower: room to give curtailment back
    cap = np.full(STEPS, np.inf)
    cap[10:14] = -5.0  # and at noon 5 kW less than at the operating point
    task = ZoneTask(zone, offset_pu=offset, boundary_hi_kw=cap)
    warm_solver = ZoneSolver(ctx)
    first = warm_solver.solve(ZoneTask(zone))
    warm = warm_solver.solve(task)
    cold = ZoneSolver(ctx).solve(task)
    assert not first.warm and warm.warm and not cold.warm
    assert warm.status == cold.status == "Optimal"
    assert warm.objective == pytest.approx(cold.objective, rel=1e-7, abs=1e-6)
    assert warm.iterations < cold.iterations


def test_fleet_arrays_keep_every_unit_and_session(grid):
    model, fleet, net = grid
    fa = FleetArrays.of(fleet, net.tree.pos)
    assert len(fa.pv_sgen) == len(fleet.pv) and len(fa.bat_storage) == len(fleet.batteries)
    assert len(fa.dr_load) == len(fleet.dr) and len(fa.ev_load) == len(fleet.evs)
    evs = np.arange(len(fleet.evs))[::-1].copy()  # any order, as a zone lists them
    sess, owner = fa.sessions_of(evs)
    got = [(int(evs[o]), int(fa.sess_t0[s]), int(fa.sess_t1[s])) for s, o in zip(sess, owner, strict=True)]
    want = [(int(e), x.t0, x.t1) for e in evs for x in fleet.evs[e].sessions]
    assert got == want
    per_zone = sum(len(u.get("pv", [])) for u in net.unit_index.values())
    assert per_zone == len(fleet.pv)
