"""The LP of one zone (an MV/LV transformer and the LV network under it, or the MV network): the zone's
resources over the horizon against its bus voltage bands and branch ratings through the linear model, every
network limit soft with a named slack.

Several zones can share one LP (their blocks are independent); network rows are added lazily: first the
(bus or branch, interval) pairs that are near their limit at the operating point, then, after each solve,
those the linear model finds violated, until none are (HiGHS re-solves warm)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.orchestration.linear import OperatingPoint, ZoneModel
from server.orchestration.lp import INF, Lp
from server.orchestration.network.topology import BASE_MVA, MV_ZONE
from server.orchestration.resources import Costs, Fleet

KW_PU = 1e-3 / BASE_MVA  # pu per kW
MILLI = 1e3  # voltage rows are written in milli-pu (better scaled)
WATCH_PU = 0.01  # voltage rows start in the LP this close to the band
WATCH_LOADING = 0.9  # branch rows start in the LP above this share of the rating
MAX_ROUNDS = 12
SPARSE_NODES = 400  # zones larger than this get flow variables instead of dense sensitivity rows


@dataclass
class Margins:
    voltage_pu: float = 0.002
    thermal: float = 0.02  # share of the rating kept free


@dataclass
class Aggregate:
    """MV step: more (or less) injection from an LV zone than its own plan, at its transformer's MV node."""

    zone: int
    node: int  # local node in the MV zone
    down_kw: np.ndarray  # (steps,) how much the zone can still reduce its injection
    up_kw: np.ndarray


@dataclass
class Slack:
    kind: str  # vm_high | vm_low | branch | boundary
    node: int  # tree position
    interval: int
    amount: float  # pu for voltage, kW otherwise


@dataclass
class ZoneInput:
    model: ZoneModel
    op: OperatingPoint  # whole-tree operating point
    vmin: np.ndarray  # (n,) band of the zone's nodes
    vmax: np.ndarray
    pv: list[int] = field(default_factory=list)  # indices into fleet lists, of units in this zone
    batteries: list[int] = field(default_factory=list)
    evs: list[int] = field(default_factory=list)
    dr: list[int] = field(default_factory=list)
    offset_pu: np.ndarray | None = None  # (steps, n) voltage change from outside the zone
    fixed_kw: np.ndarray | None = None  # (steps, n) injection change already decided (MV step: LV zones)
    aggregates: list[Aggregate] = field(default_factory=list)
    boundary_hi_kw: np.ndarray | None = None  # (steps,) cap on the zone's injection change
    boundary_lo_kw: np.ndarray | None = None


class ZoneBlock:
    """One zone's columns and rows inside a shared LP."""

    def __init__(
        self,
        lp: Lp,
        zi: ZoneInput,
        fleet: Fleet,
        node_of: dict[int, int],
        inj_op_kw: np.ndarray,
        costs: Costs,
        margins: Margins,
    ) -> None:
        self.zi, self.lp, self.fleet, self.costs, self.margins = zi, lp, fleet, costs, margins
        zm = zi.model
        steps, dt = fleet.steps, fleet.step_h
        self.steps, n = steps, len(zm.nodes)
        local = {int(v): i for i, v in enumerate(zm.nodes)}
        price = costs.price
        e_node, e_t, e_col, e_coef = [], [], [], []
        tt = np.arange(steps)

        def entry(node: int, cols: np.ndarray, coef: float, ts: np.ndarray = tt) -> None:
            e_node.append(np.full(len(ts), node))
            e_t.append(ts)
            e_col.append(cols)
            e_coef.append(np.full(len(ts), coef))

        eq_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (cols, vals, row, rhs)
        # generation has columns only while the sun is up
        self.pv_cols: dict[int, tuple[int, np.ndarray]] = {}
        for k in zi.pv:
            u = fleet.pv[k]
            ts = np.flatnonzero(u.avail_kw > 0)
            c0 = lp.add_cols(0.0, u.avail_kw[ts], -(price[ts] + costs.curtail) * dt, count=len(ts))
            self.pv_cols[k] = (c0, ts)
            entry(local[node_of[u.bus]], c0 + np.arange(len(ts)), 1.0, ts)
        self.bat_cols: dict[int, tuple[int, int, int]] = {}
        for k in zi.batteries:
            b = fleet.batteries[k]
            ch = lp.add_cols(0.0, b.power_kw, (price + costs.wear) * dt)
            dis = lp.add_cols(0.0, b.power_kw, (-price + costs.wear) * dt)
            soc_lb = np.full(steps, b.min_kwh)
            soc_lb[-1] = max(b.min_kwh, b.soc0_kwh)
            soc = lp.add_cols(soc_lb, b.energy_kwh, 0.0, count=steps)
            self.bat_cols[k] = (ch, dis, soc)
            node = local[node_of[b.bus]]
            entry(node, ch + tt, -1.0)
            entry(node, dis + tt, 1.0)
            # soc[t] - soc[t-1] - eff*dt*ch[t] + dt/eff*dis[t] = 0 (soc[-1] = soc0)
            r = np.repeat(tt, 3)[: 3 * steps]
            cols = np.column_stack([soc + tt, ch + tt, dis + tt]).ravel()
            vals = np.tile([1.0, -b.efficiency * dt, dt / b.efficiency], steps)
            prev_r, prev_c = tt[1:], soc + tt[:-1]
            rhs = np.zeros(steps)
            rhs[0] = b.soc0_kwh
            eq_rows.append(
                (
                    np.concatenate([cols, prev_c]),
                    np.concatenate([vals, -np.ones(steps - 1)]),
                    np.concatenate([r, prev_r]),
                    rhs,
                )
            )
        self.ev_cols: dict[int, list[tuple[int, int, int]]] = {}
        for k in zi.evs:
            ev = fleet.evs[k]
            node = local[node_of[ev.bus]]
            self.ev_cols[k] = []
            for s in ev.sessions:
                ts = np.arange(s.t0, s.t1)
                c0 = lp.add_cols(0.0, ev.power_kw, price[ts] * dt)
                self.ev_cols[k].append((c0, s.t0, s.t1))
                entry(node, c0 + ts - s.t0, -1.0, ts)
                energy = min(s.energy_kwh, ev.power_kw * len(ts) * dt)
                eq_rows.append(
                    (
                        c0 + np.arange(len(ts)),
                        np.full(len(ts), dt),
                        np.zeros(len(ts), int),
                        np.array([energy]),
                    )
                )
        # demand response (shedding) only helps against import stress: columns where the zone has some
        stressed = self._import_stress(zi, margins)
        self.dr_cols: dict[int, tuple[int, np.ndarray]] = {}
        for k in zi.dr:
            d = fleet.dr[k]
            ts = np.flatnonzero(stressed & (d.max_shed_kw > 0))
            c0 = lp.add_cols(0.0, d.max_shed_kw[ts], (costs.dr - price[ts]) * dt, count=len(ts))
            self.dr_cols[k] = (c0, ts)
            entry(local[node_of[d.bus]], c0 + np.arange(len(ts)), 1.0, ts)
        # an LV zone's extra flexibility gets columns only in the intervals where it has some
        self.agg_cols: dict[int, tuple[int, np.ndarray, int, np.ndarray]] = {}
        for a in zi.aggregates:
            td, tu = np.flatnonzero(a.down_kw > 0), np.flatnonzero(a.up_kw > 0)
            down = lp.add_cols(0.0, a.down_kw[td], (costs.curtail + price[td]) * dt, count=len(td))
            up = lp.add_cols(0.0, a.up_kw[tu], (costs.dr - price[tu]) * dt, count=len(tu))
            self.agg_cols[a.zone] = (down, td, up, tu)
            entry(a.node, down + np.arange(len(td)), -1.0, td)
            entry(a.node, up + np.arange(len(tu)), 1.0, tu)
        for cols, vals, rows, rhs in eq_rows:
            lp.add_rows(rhs, rhs, rows, cols, vals)

        def cat(xs: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)

        self.e_node, self.e_t = cat(e_node, np.int64), cat(e_t, np.int64)
        self.e_col, self.e_coef = cat(e_col, np.int64), cat(e_coef, float)
        order = np.argsort(self.e_t, kind="stable")
        self.e_node, self.e_t, self.e_col, self.e_coef = (
            a[order] for a in (self.e_node, self.e_t, self.e_col, self.e_coef)
        )
        self.t_start = np.searchsorted(self.e_t, np.arange(steps + 1))

        # constants of the linear model around the operating point
        op = zi.op
        vm = op.vm[:, zm.nodes]
        fixed = zi.fixed_kw if zi.fixed_kw is not None else np.zeros((steps, n))
        offset = zi.offset_pu if zi.offset_pu is not None else np.zeros((steps, n))
        self.rk = zm.r * KW_PU * MILLI  # milli-pu per kW
        below = zm.below.astype(float)
        self.below = below
        self.c_v = (vm + offset) * MILLI + (fixed - inj_op_kw) @ self.rk.T  # (steps, n) milli-pu
        p_op_kw = op.p[:, zm.nodes] / KW_PU
        q_op_kw = op.q[:, zm.nodes] / KW_PU
        self.c_p = p_op_kw + (inj_op_kw - fixed) @ below.T
        # a current rating: the power it allows falls with the voltage
        s_kw = zm.s_max[None, :] * np.minimum(vm, 1.0) / KW_PU * (1 - margins.thermal)
        self.pmax = np.sqrt(np.maximum(s_kw**2 - q_op_kw**2, (0.05 * s_kw) ** 2))
        self.has_branch = np.isfinite(zm.s_max) & (zm.nodes != 0)
        self.v_hi = (zi.vmax - margins.voltage_pu) * MILLI
        self.v_lo = (zi.vmin + margins.voltage_pu) * MILLI
        self.in_lp_v = np.zeros((steps, n), bool)
        self.in_lp_p = np.zeros((steps, n), bool)
        self.rows_v: list[tuple[np.ndarray, np.ndarray, int, int]] = []  # (js, ts, first slack col, count)
        self.rows_p: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        self.boundary: tuple[int, np.ndarray] | None = None
        self.inj_op_sum = inj_op_kw.sum(axis=1)
        self.sparse = zm.zone == MV_ZONE or n > SPARSE_NODES
        if self.sparse:
            self._add_flow_variables(fixed)
            self.c_v_sparse = self.c_v - fixed @ self.rk.T
            self.c_p_sparse = self.c_p + fixed @ below.T
        if zi.boundary_hi_kw is not None or zi.boundary_lo_kw is not None:
            self._add_boundary()
        watch_v = (vm > zi.vmax - margins.voltage_pu - WATCH_PU) | (
            vm < zi.vmin + margins.voltage_pu + WATCH_PU
        )
        watch_p = self.has_branch[None, :] & (np.abs(p_op_kw) > WATCH_LOADING * self.pmax)
        self.add_voltage_rows(*np.nonzero(watch_v.T))
        self.add_branch_rows(*np.nonzero(watch_p.T))

    @staticmethod
    def _import_stress(zi: ZoneInput, margins: Margins) -> np.ndarray:
        """(steps,) intervals where a voltage of the zone is near its lower limit or a branch near its rating
        in the forward direction, at the operating point."""
        zm, op = zi.model, zi.op
        vm = op.vm[:, zm.nodes]
        low = (vm < zi.vmin + margins.voltage_pu + WATCH_PU).any(axis=1)
        s_kw = zm.s_max[None, :] * np.minimum(vm, 1.0) / KW_PU
        forward = ((op.p[:, zm.nodes] / KW_PU > WATCH_LOADING * s_kw) & np.isfinite(zm.s_max)[None, :]).any(
            axis=1
        )
        return low | forward

    def _add_flow_variables(self, fixed: np.ndarray) -> None:
        """Large zones: per node and interval the injection change below it (f) and the voltage change it
        causes (u), so that a network row has three entries instead of one per resource in the zone."""
        zm, lp, steps = self.zi.model, self.lp, self.steps
        n = len(zm.nodes)
        self.f0 = lp.add_cols(-INF, INF, 0.0, count=n * steps)
        self.u0 = lp.add_cols(-INF, INF, 0.0, count=n * steps)
        tt = np.arange(steps)
        # f[i,t] - sum of f[children,t] - entries at (i, t) = fixed[t, i]
        rows = [np.repeat(np.arange(n) * steps, steps) + np.tile(tt, n)]
        cols = [self.f0 + rows[0]]
        vals = [np.ones(n * steps)]
        child = np.flatnonzero(zm.parent_local >= 0)
        for c in child:
            p = zm.parent_local[c]
            rows.append(p * steps + tt)
            cols.append(self.f0 + c * steps + tt)
            vals.append(-np.ones(steps))
        rows.append(self.e_node * steps + self.e_t)
        cols.append(self.e_col)
        vals.append(-self.e_coef)
        rhs = fixed.T.ravel()
        lp.add_rows(rhs, rhs, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals))
        # u[i,t] - u[parent,t] - r_i f[i,t] = 0 (the zone's top: r_top + r_i, the MV path above it)
        rk = zm.r_branch * KW_PU * MILLI
        top = zm.parent_local < 0
        r_i = rk + np.where(top, zm.r_top * KW_PU * MILLI, 0.0)
        base = np.repeat(np.arange(n) * steps, steps) + np.tile(tt, n)
        rows = [base, base]
        cols = [self.u0 + base, self.f0 + base]
        vals = [np.ones(n * steps), -np.repeat(r_i, steps)]
        for c in child:
            rows.append(c * steps + tt)
            cols.append(self.u0 + zm.parent_local[c] * steps + tt)
            vals.append(-np.ones(steps))
        lp.add_rows(
            np.zeros(n * steps),
            np.zeros(n * steps),
            np.concatenate(rows),
            np.concatenate(cols),
            np.concatenate(vals),
        )

    def _add_boundary(self) -> None:
        zi, lp, steps = self.zi, self.lp, self.steps
        hi = zi.boundary_hi_kw if zi.boundary_hi_kw is not None else np.full(steps, INF)
        lo = zi.boundary_lo_kw if zi.boundary_lo_kw is not None else np.full(steps, -INF)
        slack = lp.add_cols(0.0, INF, self.costs.boundary_penalty, count=2 * steps)
        rows, cols, vals = [], [], []
        for t in range(steps):
            a, b = self.t_start[t], self.t_start[t + 1]
            rows.append(np.full(b - a + 2, t))
            cols.append(np.concatenate([self.e_col[a:b], [slack + 2 * t, slack + 2 * t + 1]]))
            vals.append(np.concatenate([self.e_coef[a:b], [1.0, -1.0]]))
        lp.add_rows(
            lo + self.inj_op_sum,
            hi + self.inj_op_sum,
            np.concatenate(rows),
            np.concatenate(cols),
            np.concatenate(vals),
        )
        self.boundary = (slack, np.arange(steps))

    def _row_entries(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For rows at intervals ``ts``: (row of each entry, entry index) over every entry of that interval."""
        a, b = self.t_start[ts], self.t_start[ts + 1]
        lens = b - a
        row = np.repeat(np.arange(len(ts)), lens)
        first = np.repeat(a - (np.cumsum(lens) - lens), lens)
        return row, first + np.arange(int(lens.sum()))

    def _add_soft_rows(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        row: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        penalty: float,
    ) -> int:
        count = len(lower)
        slack = self.lp.add_cols(0.0, INF, penalty, count=2 * count)
        r = np.arange(count)
        self.lp.add_rows(
            lower,
            upper,
            np.concatenate([row, r, r]),
            np.concatenate([cols, slack + 2 * r, slack + 2 * r + 1]),
            np.concatenate([vals, np.ones(count), -np.ones(count)]),
        )
        return slack

    def add_voltage_rows(self, js: np.ndarray, ts: np.ndarray) -> int:
        keep = ~self.in_lp_v[ts, js]
        js, ts = js[keep], ts[keep]
        if not len(js):
            return 0
        self.in_lp_v[ts, js] = True
        if self.sparse:
            row, cols, vals = np.arange(len(js)), self.u0 + js * self.steps + ts, np.ones(len(js))
            c = self.c_v_sparse[ts, js]
        else:
            row, e = self._row_entries(ts)
            cols, vals = self.e_col[e], self.rk[js[row], self.e_node[e]] * self.e_coef[e]
            c = self.c_v[ts, js]
        slack = self._add_soft_rows(
            self.v_lo[js] - c, self.v_hi[js] - c, row, cols, vals, self.costs.voltage_penalty / MILLI
        )
        self.rows_v.append((js, ts, slack, len(js)))
        return len(js)

    def add_branch_rows(self, ks: np.ndarray, ts: np.ndarray) -> int:
        keep = ~self.in_lp_p[ts, ks] & self.has_branch[ks]
        ks, ts = ks[keep], ts[keep]
        if not len(ks):
            return 0
        self.in_lp_p[ts, ks] = True
        if self.sparse:
            row, cols, vals = np.arange(len(ks)), self.f0 + ks * self.steps + ts, -np.ones(len(ks))
            c = self.c_p_sparse[ts, ks]
        else:
            row, e = self._row_entries(ts)
            sel = self.below[ks[row], self.e_node[e]] > 0
            row, e = row[sel], e[sel]
            cols, vals = self.e_col[e], -self.e_coef[e]
            c = self.c_p[ts, ks]
        pmax = self.pmax[ts, ks]
        slack = self._add_soft_rows(-pmax - c, pmax - c, row, cols, vals, self.costs.thermal_penalty)
        self.rows_p.append((ks, ts, slack, len(ks)))
        return len(ks)

    def aggregate(self, zone: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(down, up) kW the MV step asked of an LV zone per interval."""
        c_down, td, c_up, tu = self.agg_cols[zone]
        down, up = np.zeros(self.steps), np.zeros(self.steps)
        down[td] = x[c_down + np.arange(len(td))]
        up[tu] = x[c_up + np.arange(len(tu))]
        return down, up

    def injection(self, x: np.ndarray) -> np.ndarray:
        """Controllable injection per zone node per interval (kW) of a solution."""
        inj = np.zeros((self.steps, len(self.zi.model.nodes)))
        np.add.at(inj, (self.e_t, self.e_node), self.e_coef * x[self.e_col])
        return inj

    def check(self, x: np.ndarray, tol_milli: float = 0.05, tol_kw: float = 0.05) -> int:
        """Add the rows the linear model finds violated by ``x``; returns how many."""
        inj = self.injection(x)
        v = self.c_v + inj @ self.rk.T
        p = self.c_p - inj @ self.below.T
        bad_v = ((v > self.v_hi[None, :] + tol_milli) | (v < self.v_lo[None, :] - tol_milli)) & ~self.in_lp_v
        bad_p = (np.abs(p) > self.pmax + tol_kw) & self.has_branch[None, :] & ~self.in_lp_p
        added = self.add_voltage_rows(*np.nonzero(bad_v.T)) if bad_v.any() else 0
        added += self.add_branch_rows(*np.nonzero(bad_p.T)) if bad_p.any() else 0
        return added

    def slacks(self, x: np.ndarray, tol: float = 1e-6) -> list[Slack]:
        out = []
        nodes = self.zi.model.nodes
        for js, ts, s0, count in self.rows_v:
            lo, hi = x[s0 : s0 + 2 * count : 2], x[s0 + 1 : s0 + 2 * count : 2]
            for r in np.flatnonzero((lo > tol) | (hi > tol)):
                kind = "vm_high" if hi[r] > lo[r] else "vm_low"
                out.append(Slack(kind, int(nodes[js[r]]), int(ts[r]), float(max(lo[r], hi[r]) / MILLI)))
        for ks, ts, s0, count in self.rows_p:
            lo, hi = x[s0 : s0 + 2 * count : 2], x[s0 + 1 : s0 + 2 * count : 2]
            for r in np.flatnonzero((lo > 1e-3) | (hi > 1e-3)):
                out.append(Slack("branch", int(nodes[ks[r]]), int(ts[r]), float(max(lo[r], hi[r]))))
        if self.boundary is not None:
            s0, ts = self.boundary
            for t in ts:
                amount = max(x[s0 + 2 * t], x[s0 + 2 * t + 1])
                if amount > 1e-3:
                    out.append(Slack("boundary", int(nodes[0]), int(t), float(amount)))
        return out


def solve_blocks(lp: Lp, blocks: list[ZoneBlock]) -> tuple[str, np.ndarray, int]:
    """Solve, add violated rows, re-solve warm, until the linear model shows no violation not in the LP."""
    status, x, _ = lp.solve()
    rounds = 1
    while rounds < MAX_ROUNDS and status == "Optimal":
        added = sum(b.check(x) for b in blocks)
        if not added:
            break
        status, x, _ = lp.solve()
        rounds += 1
    return status, x, rounds
