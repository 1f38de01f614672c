"""The network model: import from pandapower, JSON round trip, the pandapower network it builds back, and the
networks it refuses (islands, unknown buses, missing ratings, loops) with the element named."""

from __future__ import annotations

import json

import numpy as np
import pandapower as pp
import pytest
from support.grid_feeders import feeder_model, lv_feeder

from server.orchestration.network.model import Network, NetworkError
from server.orchestration.network.pandapower_io import from_pandapower, load_json, to_pandapower
from server.orchestration.network.topology import MV_ZONE, build_tree


def test_model_round_trips_through_json_and_rebuilds_the_same_power_flow(tmp_path):
    net = lv_feeder()
    path = tmp_path / "feeder.json"
    pp.to_json(net, str(path))
    model = load_json(path)
    again = Network.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    rebuilt = to_pandapower(again)
    pp.runpp(net, numba=False)
    pp.runpp(rebuilt, numba=False)
    np.testing.assert_allclose(rebuilt.res_bus.vm_pu.loc[net.bus.index], net.res_bus.vm_pu, atol=1e-9)
    np.testing.assert_allclose(rebuilt.res_line.loading_percent, net.res_line.loading_percent, atol=1e-7)


def test_tree_has_one_lv_zone_per_distribution_transformer():
    model = feeder_model()
    tree = build_tree(model)
    assert tree.n == len(model.buses)
    assert set(tree.zone[1:]) == {0}  # everything under trafo 0
    assert tree.zone[0] == MV_ZONE
    assert tree.branch_kind[tree.pos[1]] == "trafo"


def test_island_is_refused_with_its_name():
    net = lv_feeder()
    a = pp.create_bus(net, 0.4, name="cut-off yard")
    b = pp.create_bus(net, 0.4, name="cut-off barn")
    pp.create_line_from_parameters(net, a, b, 0.05, 0.2, 0.08, 200, 0.2)
    with pytest.raises(NetworkError, match=r"cut-off (yard|barn).*not connected.*island of 2 bus"):
        from_pandapower(net)


def test_open_switch_that_cuts_off_a_bus_makes_an_island():
    net = lv_feeder()
    last = net.line.index[-1]
    pp.create_switch(net, int(net.line.from_bus[last]), int(last), et="l", closed=False)
    with pytest.raises(NetworkError, match="branch house 1"):
        from_pandapower(net)


def test_unknown_bus_and_missing_rating_are_named():
    model = feeder_model()
    model.loads[0].bus = 999
    with pytest.raises(NetworkError, match=r"load 0 'load 0' refers to unknown bus 999"):
        model.validate()
    net = lv_feeder()
    net.line.loc[3, "max_i_ka"] = np.nan
    with pytest.raises(NetworkError, match=r"line 3 'cable 3' has no rating"):
        from_pandapower(net)
    net = lv_feeder()
    net.trafo.loc[0, "sn_mva"] = 0.0
    with pytest.raises(NetworkError, match=r"trafo 0 'T1' has no rating"):
        from_pandapower(net)


def test_loop_is_refused_naming_the_branch_that_closes_it():
    net = lv_feeder()
    pp.create_line_from_parameters(net, 3, 6, 0.05, 0.2, 0.08, 200, 0.2, name="ring")
    with pytest.raises(NetworkError, match=r"line (\d+) closes a loop between buses") as err:
        from_pandapower(net)
    in_ring = {2, 3, 4, 10}  # the cables between buses 3 and 6, and the ring itself
    assert int(str(err.value).split()[1]) in in_ring


def test_parallel_transformers_behind_a_coupler_are_one_branch():
    net = lv_feeder()
    mv2 = pp.create_bus(net, 20.0, name="MV 2")
    pp.create_switch(net, 0, mv2, et="b", closed=True)
    pp.create_transformer_from_parameters(
        net,
        mv2,
        1,
        sn_mva=0.25,
        vn_hv_kv=20,
        vn_lv_kv=0.4,
        vkr_percent=1.2,
        vk_percent=4.0,
        pfe_kw=0.5,
        i0_percent=0.2,
        name="T2",
    )
    tree = build_tree(from_pandapower(net))
    node = tree.pos[1]
    assert {m[1] for m in tree.members[node]} == {0, 1}
    assert tree.s_max_pu[node] == pytest.approx(0.5)
