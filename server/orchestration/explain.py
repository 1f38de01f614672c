"""Why a violation is left after planning: either the LP itself had to use slack there (the flexibility that
could help was exhausted: named, with what it was doing) or the linear model kept it within limits and the AC
power flow disagrees by more than the planning margin (linearisation error left when iterations ran out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from server.orchestration.acflow import AcResult, ViolationSummary
from server.orchestration.network.topology import MV_ZONE
from server.orchestration.resources import Fleet
from server.orchestration.zone_lp import Slack

if TYPE_CHECKING:
    from server.orchestration.grid_planner import PlanningNetwork


def _zone_label(net: PlanningNetwork, zone: int) -> str:
    if zone == MV_ZONE:
        return "the MV network"
    names = {t.id: t.name for t in net.model.trafos}
    return f"LV zone of trafo {zone} {names.get(zone, '')!r}"


def flexibility_note(net: PlanningNetwork, fleet: Fleet, zone: int, t: int, ac: AcResult, kind: str) -> str:
    """What the zone's resources were doing in interval ``t`` of the plan (after the plan)."""
    tree = net.tree
    in_zone = {k for k in ("pv", "batteries", "evs", "dr", "offers")}
    units = net.units.get(zone, {k: [] for k in in_zone})
    from server.orchestration.grid_planner import PlanningNetwork  # noqa: F401  (type only)

    parts = []
    if kind in ("vm_high", "reverse"):
        avail = sum(float(fleet.pv[k].avail_kw[t]) for k in units["pv"])
        parts.append(f"{len(units['pv'])} generator(s) with {avail:.1f} kW available")
        cap = sum(fleet.batteries[k].power_kw for k in units["batteries"])
        parts.append(f"{len(units['batteries'])} storage unit(s) of {cap:.1f} kW")
        offered = sum(float(fleet.flex[k].up_kw[t]) for k in units.get("offers", []))
    else:
        shed = sum(float(fleet.dr[k].max_shed_kw[t]) for k in units["dr"])
        parts.append(f"demand response up to {shed:.1f} kW")
        parts.append(f"{len(units['evs'])} charging point(s)")
        offered = sum(float(fleet.flex[k].down_kw[t]) for k in units.get("offers", []))
    if units.get("offers"):
        parts.append(f"{len(units['offers'])} offer(s) of {offered:.1f} kW")
    if zone != MV_ZONE:
        hv = net.zones[zone].hv_node
        bus_col = {b.id: i for i, b in enumerate(net.model.buses)}
        v_hv = float(ac.vm_pu[t, bus_col[int(tree.bus_ids[hv])]])
        parts.append(f"MV voltage at its transformer {v_hv:.4f} pu")
    return f"{_zone_label(net, zone)}: " + ", ".join(parts)


def explain(
    net: PlanningNetwork, fleet: Fleet, after: ViolationSummary, slacks: list[Slack], ac: AcResult
) -> None:
    tree = net.tree
    by_node: dict[tuple[str, int], list[Slack]] = {}
    for s in slacks:
        key = ("vm" if s.kind.startswith("vm") else s.kind, s.node)
        by_node.setdefault(key, []).append(s)
    for v in after.by_element:
        if v.kind == "no_convergence":
            continue
        table, ident = v.element.split()
        if table == "bus":
            node = tree.pos[int(ident)]
            key = ("vm", node)
        else:
            node = next(
                (
                    i
                    for i in range(1, tree.n)
                    if any(m[0] == table and m[1] == int(ident) for m in tree.members[i])
                ),
                -1,
            )
            key = ("branch", node)
        zone = int(tree.zone[node]) if node >= 0 else MV_ZONE
        used = [s for s in by_node.get(key, []) if s.interval in v.intervals]
        direction = (
            "vm_high"
            if v.kind == "vm_high"
            else "vm_low"
            if v.kind == "vm_low"
            else ("reverse" if _reverse(net, ac, table, int(ident), v.worst_interval) else "forward")
        )
        note = flexibility_note(net, fleet, zone, v.worst_interval, ac, direction)
        if used:
            worst = max(used, key=lambda s: s.amount)
            unit = "pu" if worst.kind.startswith("vm") else "kW"
            v.reason = (
                f"not enough flexibility: the plan needed {worst.amount:.4g} {unit} of slack here in "
                f"interval {worst.interval} after using what could help ({note})"
            )
        else:
            v.reason = (
                "linearisation error: the linear model kept this within its limit (with the planning "
                f"margin) but the AC power flow shows {v.worst:.4g}; iterations ended first ({note})"
            )


def _reverse(net: PlanningNetwork, ac: AcResult, table: str, ident: int, t: int) -> bool:
    if table == "trafo":
        col = [x.id for x in net.model.trafos].index(ident)
        return bool(np.nan_to_num(ac.trafo_p_hv[t, col]) < 0)
    col = [x.id for x in net.model.lines].index(ident)
    return bool(np.nan_to_num(ac.line_p_from[t, col]) < 0)
