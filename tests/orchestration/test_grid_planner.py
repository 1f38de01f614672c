"""The grid-aware planner on a small feeder: violations found by AC power flow before, none after; a case no
flexibility can fix returns slack with the element named; envelope policies keep their promises; the CLI's JSON."""

from __future__ import annotations

import json

import numpy as np
import pandapower as pp
import pytest
from support.grid_feeders import STEPS, feeder_model, lv_feeder, profiles_for

from server.cli import main
from server.orchestration import envelopes as env
from server.orchestration.grid_planner import PlannerOptions, plan_grid
from server.orchestration.linear import ac_point
from server.orchestration.network.model import Load


@pytest.fixture(scope="module")
def crowded():
    """Rooftop PV far beyond what the feeder takes at noon."""
    model = feeder_model(pv_kw=30.0)
    profiles = profiles_for(model)
    return model, profiles, plan_grid(model, profiles, PlannerOptions(max_iterations=3))


def test_plan_removes_every_violation_the_ac_power_flow_found(crowded):
    model, profiles, plan = crowded
    assert plan.before.category("vm_high")["intervals"] >= 4
    assert plan.before.category("vm_high")["worst"] > 1.06
    assert plan.after.count == 0, [v.to_dict() for v in plan.after.by_element]
    s, f = plan.schedule, plan.fleet
    for u in f.pv:  # generation within what the sun gives
        assert (s.sgen_p[:, u.sgen] * 1000 <= u.avail_kw + 1e-6).all()
        assert (s.sgen_p[:, u.sgen] >= -1e-9).all()
    for b in f.batteries:  # storage within power and energy, back to where it started
        kw = s.storage_p[:, b.storage] * 1000
        assert np.abs(kw).max() <= b.power_kw + 1e-6
        soc = b.soc0_kwh + np.cumsum(np.where(kw > 0, kw * b.efficiency, kw / b.efficiency)) * f.step_h
        assert soc.min() >= b.min_kwh - 1e-6 and soc.max() <= b.energy_kwh + 1e-6
        assert soc[-1] >= b.soc0_kwh - 1e-6
    assert plan.ac_after.vm_pu.max() <= 1.05 + 1e-4


def test_infeasible_case_returns_slack_and_names_the_element():
    model = feeder_model(pv_kw=5.0)
    end = max(b.id for b in model.buses if b.name.startswith("house"))
    model.loads.append(Load(id=100, name="heat pump", bus=end, p_mw=0.16, q_mvar=0.03, kind="heat_pump"))
    profiles = profiles_for(model)
    plan = plan_grid(model, profiles, PlannerOptions(max_iterations=2))
    low = [v for v in plan.after.by_element if v.kind == "vm_low"]
    assert low, "a 160 kW heat pump at the feeder end must pull it below the band"
    assert any(s.kind == "vm_low" for s in plan.slacks)
    worst = min(low, key=lambda v: v.worst)
    assert worst.element.startswith("bus ")
    assert "not enough flexibility" in worst.reason
    assert "LV zone of trafo 0 'T1'" in worst.reason


def test_each_envelope_policy_keeps_its_promise(crowded):
    model, _, plan = crowded
    sites = env.sites(plan.net, plan.fleet, plan.schedule)
    op = ac_point(model, plan.net.tree, plan.ac_after)
    got = {p: env.envelopes(plan.net, sites, op, p, plan.margins) for p in env.POLICIES}
    cap = sites.cap_kw
    binding = [t for t in range(STEPS) if got["equal"][t].sum() < cap[t].sum() - 1e-3]
    assert binding, "the feeder must limit export in some interval for the policies to differ"
    for t in binding:
        e = got["equal"][t]
        free = cap[t] > e + 1e-6  # sites not held back by what they could export
        assert free.any()
        assert np.ptp(e[free]) < 1e-3  # equal: every unconstrained site gets the same
        plate = sites.nameplate_kw
        ratio = np.divide(got["proportional"][t], plate, out=np.zeros_like(plate), where=plate > 0)
        free = (cap[t] > got["proportional"][t] + 1e-6) & (plate > 0)
        assert np.ptp(ratio[free]) < 1e-4  # proportional: the same share of nameplate
        for other in ("equal", "proportional"):
            assert got["max"][t].sum() >= got[other][t].sum() - 1e-3  # max: never less in total
    assert sum(got["max"][t].sum() - got["equal"][t].sum() for t in binding) > 1.0
    # and every allocation stays within what the sites could export
    for e in got.values():
        assert (e <= cap + 1e-6).all() and (e >= -1e-9).all()


def test_cli_plan_grid_json_carries_every_element_per_interval(tmp_path, capfd):
    net = lv_feeder(pv_kw=30.0)
    grid = tmp_path / "feeder.json"
    pp.to_json(net, str(grid))
    model = feeder_model(pv_kw=30.0)
    prof = tmp_path / "profiles.json"
    prof.write_text(json.dumps(profiles_for(model).to_dict()))
    assert (
        main(
            [
                "plan",
                "--grid",
                str(grid),
                "--profiles",
                str(prof),
                "--json",
                "--iterations",
                "2",
                "--no-envelope-check",
                "--policy",
                "proportional",
            ]
        )
        == 0
    )
    doc = json.loads(capfd.readouterr().out)
    planned = doc["planned_kw"]
    assert set(planned) == {"sgen", "load", "storage"}
    assert set(planned["sgen"]) == {str(i) for i in net.sgen.index}
    assert set(planned["load"]) == {str(i) for i in net.load.index}
    assert set(planned["storage"]) == {str(i) for i in net.storage.index}
    assert all(len(v) == STEPS for table in planned.values() for v in table.values())
    assert doc["violations_before"]["vm_high"]["intervals"] > 0
    assert set(doc["violations_after"]) == {"vm_high", "vm_low", "line", "trafo", "no_convergence"}
    assert doc["policy"] == "proportional"
    assert set(doc["envelopes"]["policies"]) == {"equal", "proportional", "max"}
    assert set(doc["envelopes"]["static"]) == {"1.5kW", "5kW"}
    assert len(doc["envelopes_kw"]) == doc["envelopes"]["sites"]
    for key in ("curtailed_kwh", "shifted", "cost", "solve_seconds", "pf_seconds", "iterations"):
        assert key in doc
    # applying the planned powers to the same pandapower network reproduces the plan's voltages
    t = int(np.argmax([sum(v[i] for v in planned["sgen"].values()) for i in range(STEPS)]))
    for table in ("sgen", "load", "storage"):
        for idx, series in planned[table].items():
            net[table].loc[int(idx), "p_mw"] = series[t] / 1000
    net.load["q_mvar"] = [profiles_for(model).load_q[i][t] for i in net.load.index]
    pp.runpp(net, numba=False)
    assert net.res_bus.vm_pu.max() <= 1.05 + 1e-3 or doc["remaining"]


def test_plan_keeps_node_plans_and_takes_exactly_one_of_node_and_grid(capsys):
    from server.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["plan", "--node", "feeder 1", "--dispatch"])
    assert (args.node, args.grid, args.dispatch) == ("feeder 1", None, True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["plan", "--node", "f", "--grid", "simbench:x"])
    assert exit_.value.code == 2
    assert "--grid" in capsys.readouterr().err
    # neither (nor a stored plan's action): a usage error naming both
    from server.cli import main

    assert main(["plan"]) == 1
    err = capsys.readouterr().err
    assert "--node" in err and "--grid" in err and "show" in err


def test_import_envelopes_hold_by_ac_power_flow_where_what_sites_could_import_would_not():
    """An evening peak the plan relieves: every site importing what it could (its load, its battery charging at
    full rate) breaks limits; every site importing its import envelope at once keeps every limit, by AC."""
    from server.orchestration.acflow import AcRunner, violations

    model = feeder_model(pv_kw=5.0)
    plan = plan_grid(model, profiles_for(model, load_scale=5.5), PlannerOptions(max_iterations=3))
    assert plan.before.count > 0 and plan.after.count == 0
    sites = env.sites(plan.net, plan.fleet, plan.schedule)
    op = ac_point(model, plan.net.tree, plan.ac_after)
    cap = sites.import_cap_kw
    runner = AcRunner(model)
    assert violations(model, runner.run(env.import_schedule(model, plan.schedule, sites, cap))).count > 0
    for policy in ("equal", "proportional"):
        got = env.import_envelopes(plan.net, sites, op, policy, plan.margins)
        binding = [t for t in range(STEPS) if got[t].sum() < cap[t].sum() - 1e-3]
        assert binding, policy
        assert (got <= cap + 1e-6).all() and (got >= -1e-9).all()
        held = violations(model, runner.run(env.import_schedule(model, plan.schedule, sites, got)))
        assert held.count == 0, (policy, [v.to_dict() for v in held.by_element])
        if policy == "equal":
            for t in binding:
                free = cap[t] > got[t] + 1e-6
                assert free.any() and np.ptp(got[t][free]) < 1e-3  # one value for every site it holds back
