"""The dispatch LP: limits respected by the cheapest means, nested nodes, EV deadlines, honest infeasibility."""

from __future__ import annotations

import numpy as np
import pytest

from server.orchestration.optimizer import Battery, Ev, Flexible, Node, Pv, optimise

T, DT = 24, 1.0
HOURS = np.arange(T)
SOLAR = np.clip(np.sin(np.pi * (HOURS - 6) / 12), 0, None)  # 0 at night, 1 at noon


def test_no_binding_limit_means_no_action():
    pv = Pv("pv", 5 * SOLAR)
    feeder = Node(
        "feeder", base_kw=np.full(T, 3.0) - 5 * SOLAR, import_limit_kw=10, export_limit_kw=10, ders=[pv]
    )
    plan = optimise(feeder, T, DT)
    assert plan.feasible
    np.testing.assert_allclose(plan.pv_output_kw["pv"], 5 * SOLAR, atol=1e-6)
    np.testing.assert_allclose(plan.net_kw["feeder"], feeder.base_kw, atol=1e-6)


def test_export_limit_curtails_exactly_the_excess():
    pv = Pv("pv", 10 * SOLAR)
    feeder = Node("feeder", base_kw=np.full(T, 2.0) - 10 * SOLAR, export_limit_kw=4.0, ders=[pv])
    plan = optimise(feeder, T, DT)
    assert plan.feasible
    assert plan.net_kw["feeder"].min() >= -4.0 - 1e-6
    excess = np.clip(-(feeder.base_kw) - 4.0, 0, None)
    np.testing.assert_allclose(10 * SOLAR - plan.pv_output_kw["pv"], excess, atol=1e-6)


def test_a_battery_absorbs_the_peak_before_any_curtailment():
    pv = Pv("pv", 10 * SOLAR, curtail_cost=0.10)
    battery = Battery("bess", power_kw=5, energy_kwh=40, soc_kwh=0, cycle_cost=0.01)
    feeder = Node("feeder", base_kw=np.full(T, 2.0) - 10 * SOLAR, export_limit_kw=4.0, ders=[pv, battery])
    plan = optimise(feeder, T, DT)
    assert plan.feasible
    curtailed = (10 * SOLAR - plan.pv_output_kw["pv"]).sum()
    excess = np.clip(-(feeder.base_kw) - 4.0, 0, None)
    # the battery (5 kW) takes what it can; only the excess above its rating is curtailed
    np.testing.assert_allclose(curtailed, np.clip(excess - 5, 0, None).sum(), atol=1e-5)
    soc = plan.battery_soc_kwh["bess"]
    assert soc.min() >= -1e-9 and soc.max() <= 40 + 1e-9
    # energy balance of the battery: charged * eta == stored (it never discharges here: nothing to gain)
    np.testing.assert_allclose(soc[-1], 0.95 * plan.battery_kw["bess"].clip(0).sum(), rtol=1e-6)


def test_ev_charges_its_energy_by_the_deadline_in_the_cheapest_hours():
    price = np.where((HOURS >= 1) & (HOURS < 5), 0.05, 0.30)
    ev = Ev("ev", power_kw=7, energy_kwh=21, deadline=8)
    feeder = Node("feeder", base_kw=np.full(T, 1.0), import_limit_kw=20, ders=[ev])
    plan = optimise(feeder, T, DT, import_price=price)
    charge = plan.ev_kw["ev"]
    assert charge.sum() * DT == pytest.approx(21)
    assert charge[8:].sum() == pytest.approx(0)
    assert charge[1:5].sum() == pytest.approx(21)  # all of it in the cheap hours


def test_nested_transformer_limit_binds_inside_a_loose_feeder():
    ev_a, ev_b = Ev("ev-a", 7, 14, deadline=4), Ev("ev-b", 7, 14, deadline=4)
    tx = Node("tx", base_kw=np.full(T, 2.0), import_limit_kw=9.0, ders=[ev_a, ev_b])
    feeder = Node("feeder", base_kw=np.full(T, 5.0), import_limit_kw=100.0, children=[tx])
    plan = optimise(feeder, T, DT)
    assert plan.feasible
    assert plan.net_kw["tx"].max() <= 9.0 + 1e-6
    assert (plan.ev_kw["ev-a"] + plan.ev_kw["ev-b"]).sum() == pytest.approx(28)


def test_demand_response_sheds_only_when_the_import_limit_needs_it():
    base = np.full(T, 8.0)
    base[18:21] = 12.0
    dr = Flexible("hvac", reduction_kw=np.full(T, 3.0))
    feeder = Node("feeder", base_kw=base, import_limit_kw=10.0, ders=[dr])
    plan = optimise(feeder, T, DT)
    assert plan.feasible
    np.testing.assert_allclose(plan.shed_kw["hvac"], np.clip(base - 10, 0, None), atol=1e-6)


def test_an_unfixable_overload_is_reported_not_hidden():
    feeder = Node(
        "feeder",
        base_kw=np.full(T, 15.0),
        import_limit_kw=10.0,
        ders=[Flexible("hvac", reduction_kw=np.full(T, 2.0))],
    )
    plan = optimise(feeder, T, DT)
    assert not plan.feasible
    np.testing.assert_allclose(plan.violation_kw["feeder"], 3.0, atol=1e-6)
    np.testing.assert_allclose(plan.shed_kw["hvac"], 2.0, atol=1e-6)  # still does what it can


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="base_kw has 3 values"):
        optimise(Node("f", base_kw=np.zeros(3)), T, DT)
