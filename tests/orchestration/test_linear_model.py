"""The linear model against pandapower's AC power flow on a small hand-made feeder."""

from __future__ import annotations

import numpy as np
from support.grid_feeders import feeder_model, profiles_for

from server.orchestration.acflow import AcRunner
from server.orchestration.linear import ac_point, dist_flow_point, zone_models
from server.orchestration.network.topology import BASE_MVA, build_tree
from server.orchestration.schedule import Schedule


def test_lindistflow_voltages_agree_with_ac_power_flow_within_5_milli_pu():
    model = feeder_model(pv_kw=12.0)
    tree = build_tree(model)
    sched = Schedule.from_profiles(model, profiles_for(model))
    ac = AcRunner(model).run(sched)
    exact = ac_point(model, tree, ac)
    p, q = sched.bus_injection(model, tree.pos, tree.n)
    # the transformer's no-load voltage ratio is 1 here; the slack is at 1.02 pu
    linear = dist_flow_point(tree, p / BASE_MVA, q / BASE_MVA, model.slack.vm_pu)
    error = np.abs(linear.vm - exact.vm)
    assert error.max() < 0.005, error.max()
    # and it is a real model: the voltages move by far more than the error over the day
    assert np.ptp(exact.vm[:, -1]) > 4 * error.max()


def test_sensitivities_predict_the_ac_voltage_after_a_change_of_injection():
    model = feeder_model(pv_kw=20.0)
    tree = build_tree(model)
    sched = Schedule.from_profiles(model, profiles_for(model))
    runner = AcRunner(model)
    before = ac_point(model, tree, runner.run(sched))
    changed = sched.copy()
    changed.sgen_p *= 0.4  # curtail every generator to 40 %
    changed.storage_p[:, 0] = 0.004  # one battery charging 4 kW
    after = ac_point(model, tree, runner.run(changed))
    p0, _ = sched.bus_injection(model, tree.pos, tree.n)
    p1, _ = changed.bus_injection(model, tree.pos, tree.n)
    zone = zone_models(tree)[0]
    dp = (p1 - p0)[:, zone.nodes] / BASE_MVA
    predicted = before.vm[:, zone.nodes] + dp @ zone.r.T
    error = np.abs(predicted - after.vm[:, zone.nodes])
    assert error.max() < 0.002, error.max()
    assert np.abs(after.vm - before.vm).max() > 0.02  # the change itself is large
