"""pandapower <-> model: read a pandapower network (object or JSON file) into the model, and build the
pandapower network of a model (same element indices) for the AC power flows that judge a plan.

Switches are resolved on import: a closed bus-bus switch becomes a coupler, a line or transformer behind an open
switch is left out (it carries no power). Needs pandapower (the ``grid`` extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from server.orchestration.network.model import (
    Bus,
    Coupler,
    Line,
    Load,
    Network,
    NetworkError,
    Sgen,
    Slack,
    Storage,
    Trafo,
)

DEFAULT_BAND = (0.95, 1.05)


def _pp() -> Any:
    try:
        import pandapower
    except ImportError:
        raise NetworkError("pandapower is not installed: pip install 'opendso[grid]'") from None
    return pandapower


def load_kind(profile: str | None) -> str:
    """What a SimBench load profile stands for (H0 households, G trade, L farms, Air/Soil heat pumps,
    HLS/APLS charging at home and at work)."""
    head = (profile or "").split("_")[0].split("-")[0]
    if head in ("H0", "BL"):
        return "household"
    if head.startswith(("G", "L")):
        return "commercial"
    if head in ("Air", "Soil"):
        return "heat_pump"
    if head in ("HLS", "APLS"):
        return "ev"
    return "household" if not profile else "other"


def _sgen_kind(kind: Any) -> str:
    text = str(kind or "")
    return (
        "pv"
        if "PV" in text
        else "wind"
        if ("Wind" in text or "WP" in text)
        else ("pv" if not text else "other")
    )


def _num(row: Any, key: str, default: float) -> float:
    value = row.get(key, default) if hasattr(row, "get") else default
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _str(row: Any, key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None


def from_pandapower(
    net: Any, name: str = "network", v_band: tuple[float, float] | None = DEFAULT_BAND
) -> Network:
    """``v_band`` sets every bus's band; None takes each bus's min_vm_pu/max_vm_pu (0.95-1.05 where absent)."""
    for table in ("trafo3w", "gen", "impedance", "xward", "ward"):
        if table in net and len(net[table]) and net[table].in_service.any():
            first = net[table][net[table].in_service].index[0]
            raise NetworkError(f"{table} {first}: this element type is not modelled by the planner")
    grids = net.ext_grid[net.ext_grid.in_service]
    if len(grids) != 1:
        raise NetworkError(f"the network needs exactly one external grid (slack), it has {len(grids)}")
    open_lines, open_trafos, couplers = set(), set(), []
    for sid, sw in net.switch.iterrows():
        if sw.et == "b" and sw.closed:
            couplers.append(Coupler(id=int(sid), bus=int(sw.bus), other_bus=int(sw.element)))
        elif sw.et == "l" and not sw.closed:
            open_lines.add(int(sw.element))
        elif sw.et == "t" and not sw.closed:
            open_trafos.add(int(sw.element))
    buses = []
    for bid, b in net.bus[net.bus.in_service].iterrows():
        lo, hi = v_band or (_num(b, "min_vm_pu", DEFAULT_BAND[0]), _num(b, "max_vm_pu", DEFAULT_BAND[1]))
        buses.append(Bus(id=int(bid), name=str(b["name"]), vn_kv=float(b.vn_kv), v_min_pu=lo, v_max_pu=hi))
    lines = [
        Line(
            id=int(i),
            name=str(r["name"]),
            from_bus=int(r.from_bus),
            to_bus=int(r.to_bus),
            length_km=float(r.length_km),
            r_ohm_per_km=float(r.r_ohm_per_km),
            x_ohm_per_km=float(r.x_ohm_per_km),
            max_i_ka=_num(r, "max_i_ka", math.nan),
            c_nf_per_km=_num(r, "c_nf_per_km", 0.0),
            g_us_per_km=_num(r, "g_us_per_km", 0.0),
            parallel=int(_num(r, "parallel", 1)),
            df=_num(r, "df", 1.0),
            max_loading_percent=_num(r, "max_loading_percent", 100.0),
        )
        for i, r in net.line[net.line.in_service].iterrows()
        if int(i) not in open_lines
    ]
    trafos = [
        Trafo(
            id=int(i),
            name=str(r["name"]),
            hv_bus=int(r.hv_bus),
            lv_bus=int(r.lv_bus),
            sn_mva=_num(r, "sn_mva", math.nan),
            vn_hv_kv=float(r.vn_hv_kv),
            vn_lv_kv=float(r.vn_lv_kv),
            vk_percent=_num(r, "vk_percent", math.nan),
            vkr_percent=_num(r, "vkr_percent", math.nan),
            pfe_kw=_num(r, "pfe_kw", 0.0),
            i0_percent=_num(r, "i0_percent", 0.0),
            shift_degree=_num(r, "shift_degree", 0.0),
            tap_side=_str(r, "tap_side"),
            tap_neutral=_num(r, "tap_neutral", 0.0),
            tap_min=_num(r, "tap_min", 0.0),
            tap_max=_num(r, "tap_max", 0.0),
            tap_step_percent=_num(r, "tap_step_percent", 0.0),
            tap_step_degree=_num(r, "tap_step_degree", 0.0),
            tap_pos=_num(r, "tap_pos", 0.0),
            tap_changer_type=_str(r, "tap_changer_type"),
            parallel=int(_num(r, "parallel", 1)),
            max_loading_percent=_num(r, "max_loading_percent", 100.0),
        )
        for i, r in net.trafo[net.trafo.in_service].iterrows()
        if int(i) not in open_trafos
    ]
    loads = [
        Load(
            id=int(i),
            name=str(r["name"]),
            bus=int(r.bus),
            p_mw=float(r.p_mw) * _num(r, "scaling", 1.0),
            q_mvar=float(r.q_mvar) * _num(r, "scaling", 1.0),
            kind=load_kind(_str(r, "profile")),
            profile=_str(r, "profile"),
        )
        for i, r in net.load[net.load.in_service].iterrows()
    ]
    sgens = [
        Sgen(
            id=int(i),
            name=str(r["name"]),
            bus=int(r.bus),
            p_mw=float(r.p_mw) * _num(r, "scaling", 1.0),
            sn_mva=_num(r, "sn_mva", abs(float(r.p_mw))),
            q_mvar=_num(r, "q_mvar", 0.0),
            kind=_sgen_kind(r.get("type")),
            profile=_str(r, "profile"),
        )
        for i, r in net.sgen[net.sgen.in_service].iterrows()
    ]
    storages = []
    for i, r in net.storage[net.storage.in_service].iterrows():
        eff = _num(r, "efficiency_percent", 95.0)
        storages.append(
            Storage(
                id=int(i),
                name=str(r["name"]),
                bus=int(r.bus),
                sn_mva=_num(r, "sn_mva", abs(float(r.p_mw))),
                max_e_mwh=_num(r, "max_e_mwh", math.nan),
                p_mw=float(r.p_mw),
                min_e_mwh=_num(r, "min_e_mwh", 0.0),
                soc_percent=_num(r, "soc_percent", 0.0),
                efficiency=eff if eff <= 1 else eff / 100,
                profile=_str(r, "profile"),
            )
        )
    g = grids.iloc[0]
    model = Network(
        name=name,
        buses=buses,
        lines=lines,
        trafos=trafos,
        couplers=couplers,
        loads=loads,
        sgens=sgens,
        storages=storages,
        f_hz=float(getattr(net, "f_hz", 50.0)),
        slack=Slack(bus=int(g.bus), vm_pu=_num(g, "vm_pu", 1.0), va_degree=_num(g, "va_degree", 0.0)),
    )
    model.validate()
    return model


def load_json(path: str | Path, v_band: tuple[float, float] | None = DEFAULT_BAND) -> Network:
    net = _pp().from_json(str(path))
    return from_pandapower(net, name=Path(path).stem, v_band=v_band)


def to_pandapower(model: Network) -> Any:
    """A pandapower network of the model, element indices kept (built table by table: one call per table)."""
    pp = _pp()
    net = pp.create_empty_network(name=model.name, f_hz=model.f_hz)

    def col(items: list, key: str) -> list:
        return [getattr(x, key) for x in items]

    b = model.buses
    pp.create_buses(
        net,
        len(b),
        col(b, "vn_kv"),
        index=col(b, "id"),
        name=col(b, "name"),
        min_vm_pu=col(b, "v_min_pu"),
        max_vm_pu=col(b, "v_max_pu"),
    )
    ln = model.lines
    if ln:
        pp.create_lines_from_parameters(
            net,
            col(ln, "from_bus"),
            col(ln, "to_bus"),
            col(ln, "length_km"),
            col(ln, "r_ohm_per_km"),
            col(ln, "x_ohm_per_km"),
            col(ln, "c_nf_per_km"),
            col(ln, "max_i_ka"),
            name=col(ln, "name"),
            index=col(ln, "id"),
            g_us_per_km=col(ln, "g_us_per_km"),
            parallel=col(ln, "parallel"),
            df=col(ln, "df"),
            max_loading_percent=col(ln, "max_loading_percent"),
        )
    for t in model.trafos:  # few; the plural call does not take every tap field
        pp.create_transformer_from_parameters(
            net,
            t.hv_bus,
            t.lv_bus,
            t.sn_mva,
            t.vn_hv_kv,
            t.vn_lv_kv,
            t.vkr_percent,
            t.vk_percent,
            t.pfe_kw,
            t.i0_percent,
            shift_degree=t.shift_degree,
            tap_side=t.tap_side,
            tap_neutral=t.tap_neutral,
            tap_min=t.tap_min,
            tap_max=t.tap_max,
            tap_step_percent=t.tap_step_percent,
            tap_step_degree=t.tap_step_degree,
            tap_pos=t.tap_pos,
            tap_changer_type=t.tap_changer_type,
            parallel=t.parallel,
            max_loading_percent=t.max_loading_percent,
            name=t.name,
            index=t.id,
        )
    c = model.couplers
    if c:
        pp.create_switches(net, col(c, "bus"), col(c, "other_bus"), et="b", closed=True, index=col(c, "id"))
    x = model.loads
    if x:
        pp.create_loads(
            net,
            col(x, "bus"),
            col(x, "p_mw"),
            q_mvar=col(x, "q_mvar"),
            name=col(x, "name"),
            index=col(x, "id"),
        )
    g = model.sgens
    if g:
        pp.create_sgens(
            net,
            col(g, "bus"),
            col(g, "p_mw"),
            q_mvar=col(g, "q_mvar"),
            sn_mva=col(g, "sn_mva"),
            name=col(g, "name"),
            index=col(g, "id"),
        )
    st = model.storages
    if st:
        pp.create_storages(
            net,
            col(st, "bus"),
            col(st, "p_mw"),
            col(st, "max_e_mwh"),
            sn_mva=col(st, "sn_mva"),
            min_e_mwh=col(st, "min_e_mwh"),
            soc_percent=col(st, "soc_percent"),
            name=col(st, "name"),
            index=col(st, "id"),
        )
    pp.create_ext_grid(net, model.slack.bus, vm_pu=model.slack.vm_pu, va_degree=model.slack.va_degree)
    return net
