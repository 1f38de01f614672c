"""The radial tree under the slack: each bus's parent, the branch that feeds it (line, transformer or coupler)
with its per-unit impedance and rating, and the zone it belongs to (the MV/LV transformer above it, or the MV
zone). Building it is also the check for islands and loops."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from server.orchestration.network.model import Network, NetworkError

BASE_MVA = 1.0
LV_KV = 1.0  # a transformer whose low-voltage side is below this starts an LV zone
MV_ZONE = -1


@dataclass
class Tree:
    bus_ids: (
        np.ndarray
    )  # one bus per node (buses joined by couplers), breadth-first from the slack (position 0)
    pos: dict[int, int]  # every bus id -> its node's position
    parent: np.ndarray  # position of the parent (-1 for the slack)
    branch_kind: list[str]  # "line" | "trafo" | "coupler" | "" (slack)
    branch_id: np.ndarray  # id in its table (-1 for the slack)
    branch_forward: np.ndarray  # True when the table's from/hv side is the parent
    r_pu: np.ndarray  # branch impedance on BASE_MVA
    x_pu: np.ndarray
    s_max_pu: np.ndarray  # thermal rating at 1 pu voltage (inf for couplers)
    zone: np.ndarray  # MV/LV transformer id above the bus, or MV_ZONE
    members: list[list[tuple[str, int, bool]]]  # every (table, id, forward) behind each node's branch

    def node_of(self, bus: int) -> int:
        return self.pos[bus]

    @property
    def n(self) -> int:
        return len(self.bus_ids)

    def branch_label(self, i: int) -> str:
        return f"{self.branch_kind[i]} {int(self.branch_id[i])}"


def build_tree(net: Network) -> Tree:
    buses = net.bus_index()
    # buses joined by closed couplers are one node; parallel branches between two nodes are one branch
    rep = {b: b for b in buses}

    def find(b: int) -> int:
        while rep[b] != b:
            rep[b] = rep[rep[b]]
            b = rep[b]
        return b

    for c in net.couplers:
        a, b = find(c.bus), find(c.other_bus)
        if a != b:
            rep[max(a, b)] = min(a, b)
    edges: dict[tuple[int, int], list[tuple[str, int, int, complex, float]]] = {}
    for ln in net.lines:
        zb = buses[ln.from_bus].vn_kv ** 2 / BASE_MVA
        z = complex(ln.r_ohm_per_km, ln.x_ohm_per_km) * ln.length_km / ln.parallel / zb
        s = (
            math.sqrt(3)
            * buses[ln.from_bus].vn_kv
            * ln.max_i_ka
            * ln.df
            * ln.parallel
            * ln.max_loading_percent
            / 100
        )
        edges.setdefault(_pair(find(ln.from_bus), find(ln.to_bus)), []).append(
            ("line", ln.id, ln.from_bus, z, s)
        )
    lv_trafo = {}
    for t in net.trafos:
        zm = t.vk_percent / 100 * BASE_MVA / t.sn_mva / t.parallel
        r = t.vkr_percent / 100 * BASE_MVA / t.sn_mva / t.parallel
        s = t.sn_mva * t.parallel * t.max_loading_percent / 100 / BASE_MVA
        edges.setdefault(_pair(find(t.hv_bus), find(t.lv_bus)), []).append(
            ("trafo", t.id, t.hv_bus, complex(r, math.sqrt(max(zm * zm - r * r, 0.0))), s)
        )
        lv_trafo[t.id] = t.vn_lv_kv < LV_KV
    adj: dict[int, list[tuple[int, list]]] = {}
    for (a, b), group in edges.items():
        if a == b:
            k, ident = group[0][:2]
            raise NetworkError(f"{k} {ident} connects buses that a closed coupler already joins")
        adj.setdefault(a, []).append((b, group))
        adj.setdefault(b, []).append((a, group))

    root = find(net.slack.bus)
    order, parent, kind, bid, fwd = [root], [-1], [""], [-1], [True]
    rr, xx, ss, zone = [0.0], [0.0], [math.inf], [MV_ZONE]
    members: list[list[tuple[str, int, bool]]] = [[]]
    node_pos = {root: 0}
    used: set[int] = set()
    queue = deque([root])
    while queue:
        node = queue.popleft()
        here = node_pos[node]
        for other, group in adj.get(node, []):
            if id(group) in used:
                continue
            used.add(id(group))
            if other in node_pos:
                k, ident = group[0][:2]
                raise NetworkError(
                    f"{k} {ident} closes a loop between buses {node} and {other}: the planner's "
                    "linear model needs a radial network (open a switch in the loop)"
                )
            # parallel branches: impedances in parallel; the pair is loaded as far as its weakest share allows
            y = sum(1 / g[3] for g in group)
            z = 1 / y
            rating = min(g[4] / abs((1 / g[3]) / y) for g in group)
            k, ident, from_bus = group[0][:3]
            node_pos[other] = len(order)
            order.append(other)
            parent.append(here)
            kind.append(k)
            bid.append(ident)
            fwd.append(find(from_bus) == node)
            rr.append(z.real)
            xx.append(z.imag)
            ss.append(rating)
            members.append([(g[0], g[1], find(g[2]) == node) for g in group])
            zone.append(ident if k == "trafo" and lv_trafo[ident] and find(from_bus) == node else zone[here])
            queue.append(other)
    pos = {b: node_pos[find(b)] for b in buses if find(b) in node_pos}
    if len(pos) < len(buses):
        _refuse_island(net, set(pos))
    return Tree(
        bus_ids=np.array(order),
        pos=pos,
        parent=np.array(parent),
        branch_kind=kind,
        branch_id=np.array(bid),
        branch_forward=np.array(fwd),
        r_pu=np.array(rr),
        x_pu=np.array(xx),
        s_max_pu=np.array(ss),
        zone=np.array(zone),
        members=members,
    )


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _refuse_island(net: Network, reached: set[int]) -> None:
    names = {b.id: b.name for b in net.buses}
    adj: dict[int, list[int]] = {b.id: [] for b in net.buses}
    for a, b in (
        [(ln.from_bus, ln.to_bus) for ln in net.lines]
        + [(t.hv_bus, t.lv_bus) for t in net.trafos]
        + [(c.bus, c.other_bus) for c in net.couplers]
    ):
        adj[a].append(b)
        adj[b].append(a)
    start = min(b for b in adj if b not in reached)
    island, queue = {start}, deque([start])
    while queue:
        for other in adj[queue.popleft()]:
            if other not in island:
                island.add(other)
                queue.append(other)
    listed = ", ".join(f"{b} {names[b]!r}" for b in sorted(island)[:5]) + (" ..." if len(island) > 5 else "")
    raise NetworkError(
        f"bus {start} {names[start]!r} is not connected to the slack bus {net.slack.bus}: "
        f"an island of {len(island)} bus(es) ({listed})"
    )
