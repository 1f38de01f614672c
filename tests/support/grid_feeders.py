"""Small hand-made networks and profiles for the planner's tests (pandapower builds them; the model imports)."""

from __future__ import annotations

import numpy as np
import pandapower as pp

from server.orchestration.network.model import Network, Profiles
from server.orchestration.network.pandapower_io import from_pandapower

STEPS = 24  # hourly: keeps the AC power flows of a test few


def lv_feeder(pv_kw: float = 12.0, with_storage: bool = True, sites: int = 6) -> object:
    """20 kV slack, one 250 kVA 20/0.4 kV transformer, a 0.4 kV cable feeder of ``sites`` houses (60 m apart)
    with a branch of two more; every house has a load, most have rooftop PV."""
    net = pp.create_empty_network(name="test feeder")
    mv = pp.create_bus(net, 20.0, name="MV")
    lv = pp.create_bus(net, 0.4, name="LV busbar")
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer_from_parameters(
        net,
        mv,
        lv,
        sn_mva=0.25,
        vn_hv_kv=20,
        vn_lv_kv=0.4,
        vkr_percent=1.2,
        vk_percent=4.0,
        pfe_kw=0.5,
        i0_percent=0.2,
        name="T1",
    )
    prev = lv
    houses = []
    for i in range(sites):
        b = pp.create_bus(net, 0.4, name=f"house {i}")
        pp.create_line_from_parameters(net, prev, b, 0.06, 0.206, 0.08, 260, 0.27, name=f"cable {i}")
        houses.append(b)
        prev = b
    for i in range(2):
        b = pp.create_bus(net, 0.4, name=f"branch house {i}")
        pp.create_line_from_parameters(
            net,
            houses[1] if i == 0 else houses[-1],
            b,
            0.05,
            0.206,
            0.08,
            260,
            0.27,
            name=f"branch cable {i}",
        )
        houses.append(b)
    for i, b in enumerate(houses):
        pp.create_load(net, b, 0.004, q_mvar=0.001, name=f"load {i}")
        if i % 4 != 3:
            pp.create_sgen(
                net,
                b,
                pv_kw / 1000 * (1 + 0.2 * (i % 3)),
                sn_mva=pv_kw / 1000 * (1 + 0.2 * (i % 3)),
                name=f"pv {i}",
                type="PV",
            )
    if with_storage:
        pp.create_storage(net, houses[-3], 0.0, max_e_mwh=0.010, sn_mva=0.005, name="battery 1")
        pp.create_storage(net, houses[2], 0.0, max_e_mwh=0.010, sn_mva=0.005, name="battery 2")
    return net


def solar_shape(steps: int = STEPS) -> np.ndarray:
    hours = (np.arange(steps) + 0.5) * 24 / steps
    return np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)


def profiles_for(model: Network, steps: int = STEPS, load_scale: float = 1.0) -> Profiles:
    hours = (np.arange(steps) + 0.5) * 24 / steps
    load_shape = 0.5 + 0.6 * np.exp(-((hours - 19) ** 2) / 6) + 0.2 * np.exp(-((hours - 7) ** 2) / 2)
    return Profiles(
        start="2026-06-21T00:00:00",
        step_s=86400 // steps,
        load_p={x.id: x.p_mw * load_shape * load_scale for x in model.loads},
        load_q={x.id: x.q_mvar * load_shape * load_scale for x in model.loads},
        sgen_p={s.id: s.p_mw * solar_shape(steps) for s in model.sgens},
        storage_p={s.id: np.zeros(steps) for s in model.storages},
    )


def feeder_model(**kw: object) -> Network:
    return from_pandapower(lv_feeder(**kw), name="test feeder")  # type: ignore[arg-type]
