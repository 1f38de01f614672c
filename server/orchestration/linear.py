"""The linear network model the planner optimises against: LinDistFlow on the radial tree.

Around an operating point (per interval: every node's voltage and the active/reactive flow into every branch,
from an AC power flow or from the linear model itself), a change of injection dP, dQ (per unit on
``BASE_MVA``) at node i moves the voltage at node j by R(i, j) dP + X(i, j) dQ, where R(i, j) and X(i, j) are
the resistance and reactance of the path the two nodes share towards the slack, and moves the active flow
into every branch on i's path by -dP. The sensitivities depend on the tree only; re-linearising means taking
the voltages and flows of a new operating point.

Per zone (one MV/LV transformer and the LV network under it, or the MV network), ``ZoneModel`` holds the
dense R and X of the zone's nodes and the path incidence (which branches feed which node). An LV zone's R
includes the MV path to its transformer, so a zone sees its own effect on the MV voltage; what other zones
do reaches it through the MV voltage at the transformer (the boundary)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.orchestration.acflow import AcResult
from server.orchestration.network.model import Network
from server.orchestration.network.topology import BASE_MVA, MV_ZONE, Tree


@dataclass
class OperatingPoint:
    vm: np.ndarray  # (steps, nodes) pu
    p: (
        np.ndarray
    )  # (steps, nodes) active flow into each node's branch at the parent side, pu (+ towards node)
    q: np.ndarray  # (steps, nodes) reactive flow, pu


def ac_point(model: Network, tree: Tree, ac: AcResult) -> OperatingPoint:
    steps = ac.vm_pu.shape[0]
    bus_col = {b.id: i for i, b in enumerate(model.buses)}
    vm = ac.vm_pu[:, [bus_col[int(b)] for b in tree.bus_ids]]
    p = np.zeros((steps, tree.n))
    q = np.zeros((steps, tree.n))
    line_col = {x.id: i for i, x in enumerate(model.lines)}
    trafo_col = {x.id: i for i, x in enumerate(model.trafos)}
    for node in range(1, tree.n):
        for kind, ident, forward in tree.members[node]:
            if kind == "line":
                c = line_col[ident]
                p[:, node] += ac.line_p_from[:, c] if forward else ac.line_p_to[:, c]
                q[:, node] += ac.line_q_from[:, c] if forward else ac.line_q_to[:, c]
            elif kind == "trafo":
                c = trafo_col[ident]
                p[:, node] += ac.trafo_p_hv[:, c] if forward else ac.trafo_p_lv[:, c]
                q[:, node] += ac.trafo_q_hv[:, c] if forward else ac.trafo_q_lv[:, c]
    return OperatingPoint(
        vm=np.nan_to_num(vm, nan=1.0), p=np.nan_to_num(p) / BASE_MVA, q=np.nan_to_num(q) / BASE_MVA
    )


def depth_levels(tree: Tree) -> list[np.ndarray]:
    """The tree's nodes by depth (level 0: the slack), so that a pass over the tree is one numpy operation
    per level instead of one per node."""
    depth = np.zeros(tree.n, np.int64)
    parent = tree.parent.tolist()
    d = depth.tolist()
    for node in range(1, tree.n):  # breadth-first: a parent comes before its children
        d[node] = d[parent[node]] + 1
    depth = np.asarray(d, dtype=np.int64)
    order = np.argsort(depth, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(depth[order])) + 1)


def subtree_sums(tree: Tree, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` (steps, nodes) over each node's subtree."""
    out = np.array(values.T, order="C")  # (nodes, steps): a node's series is contiguous
    for level in depth_levels(tree)[:0:-1]:
        np.add.at(out, tree.parent[level], out[level])
    return out.T


def dist_flow_point(tree: Tree, inj_p: np.ndarray, inj_q: np.ndarray | None, v_root: float) -> OperatingPoint:
    """The operating point LinDistFlow predicts for net injections (steps, nodes) in pu, losses neglected
    (``inj_q`` None: no reactive injection)."""
    levels = depth_levels(tree)
    p = -subtree_sums(tree, inj_p).T  # (nodes, steps)
    q = np.zeros_like(p) if inj_q is None else -subtree_sums(tree, inj_q).T
    vm = np.empty_like(p)
    vm[0] = v_root
    for level in levels[1:]:
        vm[level] = (
            vm[tree.parent[level]] - tree.r_pu[level, None] * p[level] - tree.x_pu[level, None] * q[level]
        )
    return OperatingPoint(vm=vm.T, p=p.T, q=q.T)


@dataclass
class ZoneModel:
    zone: int  # MV/LV transformer id, or MV_ZONE
    nodes: np.ndarray  # tree positions, breadth-first (the transformer's LV node first for an LV zone)
    hv_node: int  # the MV node feeding an LV zone (-1 for the MV zone)
    r: np.ndarray  # (n, n) shared path resistance, pu
    x: np.ndarray
    below: np.ndarray  # (n, n) bool: below[k, i] when node i is fed through node k's branch
    s_max: np.ndarray  # (n,) rating of each node's branch at 1 pu
    parent_local: np.ndarray  # (n,) parent within the zone, -1 for the zone's top node
    r_branch: np.ndarray  # (n,) resistance of each node's branch, pu
    r_top: float  # resistance of the MV path above the zone (0 for the MV zone)


def zone_nodes(tree: Tree) -> dict[int, np.ndarray]:
    order = np.argsort(tree.zone, kind="stable")
    zones, starts = np.unique(tree.zone[order], return_index=True)
    return {int(z): np.sort(part) for z, part in zip(zones, np.split(order, starts[1:]), strict=True)}


def zone_model(tree: Tree, zone: int, nodes: np.ndarray, r_cum: np.ndarray, x_cum: np.ndarray) -> ZoneModel:
    n = len(nodes)
    local = {int(v): i for i, v in enumerate(nodes)}
    below = np.zeros((n, n), bool)
    parent_local = np.array([local.get(int(tree.parent[v]), -1) for v in nodes], dtype=np.int64)
    for i, v in enumerate(nodes):
        below[i, i] = True
        par = local.get(int(tree.parent[v]), -1)
        if par >= 0:
            below[:, i] |= below[:, par]
    hv = -1 if zone == MV_ZONE else int(tree.parent[nodes[0]])
    r_br = np.where(nodes == 0, 0.0, tree.r_pu[nodes])
    x_br = np.where(nodes == 0, 0.0, tree.x_pu[nodes])
    bf = below.astype(float)
    r = bf.T @ (r_br[:, None] * bf)
    x = bf.T @ (x_br[:, None] * bf)
    if hv >= 0:
        r += r_cum[hv]
        x += x_cum[hv]
    return ZoneModel(
        zone=zone,
        nodes=nodes,
        hv_node=hv,
        r=r,
        x=x,
        below=below,
        s_max=tree.s_max_pu[nodes],
        parent_local=parent_local,
        r_branch=r_br,
        r_top=float(r_cum[hv]) if hv >= 0 else 0.0,
    )


def cumulative_impedance(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    r_cum = np.zeros(tree.n)
    x_cum = np.zeros(tree.n)
    for node in range(1, tree.n):
        r_cum[node] = r_cum[tree.parent[node]] + tree.r_pu[node]
        x_cum[node] = x_cum[tree.parent[node]] + tree.x_pu[node]
    return r_cum, x_cum


def zone_models(tree: Tree) -> dict[int, ZoneModel]:
    r_cum, x_cum = cumulative_impedance(tree)
    return {z: zone_model(tree, z, nodes, r_cum, x_cum) for z, nodes in zone_nodes(tree).items()}
