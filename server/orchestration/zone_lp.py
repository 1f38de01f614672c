"""The LP of one zone (an MV/LV transformer and the LV network under it, or the MV network): the zone's
resources over the horizon against its bus voltage bands and branch ratings through the linear model, every
network limit soft with a named slack.

The columns of each kind of resource are built for all units of the zone at once from ``FleetArrays``.
Network rows are added lazily: first the (bus or branch, interval) pairs that are near their limit at the
operating point, then, after each solve, those the linear model finds violated, until none are (HiGHS
re-solves warm). The rows a zone ended with are logged, so that solving the zone again (the MV step asked it
for a share) can rebuild the same LP, start from the earlier basis and add the boundary on top."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.orchestration.fleet_arrays import FleetArrays
from server.orchestration.linear import OperatingPoint, ZoneModel
from server.orchestration.lp import INF, Lp, role_key
from server.orchestration.network.topology import BASE_MVA, MV_ZONE
from server.orchestration.resources import Costs

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
class Aggregates:
    """MV step: more (or less) injection from the LV zones below an MV node than their own plans. LV zones
    under the same MV node are one column each way: same place, same price, so merging them is exact."""

    node: np.ndarray  # (A,) local node in the MV zone
    down_kw: np.ndarray  # (A, steps) how much the zones can still reduce their injection
    up_kw: np.ndarray


@dataclass
class Slack:
    kind: str  # vm_high | vm_low | branch | boundary
    node: int  # tree position
    interval: int
    amount: float  # pu for voltage, kW otherwise


# role keys of the columns and rows (``lp.role_key``): what they stand for, the same in every zone of a shape
COL_PV, COL_CHARGE, COL_DISCHARGE, COL_SOC, COL_EV, COL_DR, COL_AGG_DOWN, COL_AGG_UP = range(1, 9)
COL_FLOW, COL_DV, COL_SLACK, COL_SLACK_BOUNDARY = range(9, 13)
COL_OFFER_DOWN, COL_OFFER_UP = 13, 14
# an offer costs at least this per kWh: a free one is still bought only where it helps
OFFER_TIE_BREAK = 1e-4
ROW_SOC, ROW_EV, ROW_FLOW, ROW_DV, ROW_V, ROW_P, ROW_BOUNDARY = range(1, 8)

RowLog = list[tuple[str, np.ndarray, np.ndarray]]  # ("v" | "p", local nodes, intervals) in the order added


@dataclass
class ZoneInput:
    model: ZoneModel
    op: OperatingPoint  # whole-tree operating point
    vmin: np.ndarray  # (n,) band of the zone's nodes
    vmax: np.ndarray
    pv: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # indices into FleetArrays
    batteries: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    evs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dr: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offset_pu: np.ndarray | None = None  # (steps,) or (steps, n) voltage change from outside the zone
    fixed_kw: np.ndarray | None = None  # (steps, n) injection change already decided (MV step: LV zones)
    aggregates: Aggregates | None = None
    boundary_hi_kw: np.ndarray | None = None  # (steps,) cap on the zone's injection change
    boundary_lo_kw: np.ndarray | None = None
    replay: RowLog | None = None  # network rows to start with instead of the watched ones


def _ints(a: np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


class ZoneBlock:
    """One zone's columns and rows in an LP."""

    def __init__(
        self,
        lp: Lp,
        zi: ZoneInput,
        fa: FleetArrays,
        local_of: np.ndarray,
        inj_op_kw: np.ndarray,
        costs: Costs,
        margins: Margins,
    ) -> None:
        """``local_of``: every tree node's index within its zone; ``inj_op_kw``: (steps, zone nodes) injection
        of the controllable units at the operating point."""
        self.zi, self.lp, self.costs, self.margins = zi, lp, costs, margins
        zm = zi.model
        steps, dt = fa.steps, fa.step_h
        self.steps, n = steps, len(zm.nodes)
        price = costs.price
        e_node: list[np.ndarray] = []
        e_t: list[np.ndarray] = []
        e_col: list[np.ndarray] = []
        e_coef: list[np.ndarray] = []

        def entries(node: np.ndarray, ts: np.ndarray, cols: np.ndarray, coef: float) -> None:
            e_node.append(node)
            e_t.append(ts)
            e_col.append(cols)
            e_coef.append(np.full(len(ts), coef))

        eq: list[
            tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []  # rows, cols, vals, rhs, keys
        # generation has columns only while the sun is up
        pv = _ints(zi.pv)
        avail = fa.pv_avail[pv]
        u, ts = np.nonzero(avail > 0)
        c0 = lp.add_cols(
            0.0, avail[u, ts], -(price[ts] + costs.curtail) * dt, count=len(u), keys=role_key(COL_PV, u, ts)
        )
        self.pv = (pv, u, ts, c0)
        entries(local_of[fa.pv_node[pv]][u], ts, c0 + np.arange(len(u)), 1.0)
        # storage: charge, discharge and state of charge per interval, laid out unit by unit
        bat = _ints(zi.batteries)
        nb = len(bat) * steps
        bi, tt = np.repeat(np.arange(len(bat)), steps), np.tile(np.arange(steps), len(bat))
        power, eff = fa.bat_power[bat][bi], fa.bat_eff[bat][bi]
        ch = lp.add_cols(
            0.0,
            power,
            np.tile((price + costs.wear) * dt, len(bat)),
            count=nb,
            keys=role_key(COL_CHARGE, bi, tt),
        )
        dis = lp.add_cols(
            0.0,
            power,
            np.tile((-price + costs.wear) * dt, len(bat)),
            count=nb,
            keys=role_key(COL_DISCHARGE, bi, tt),
        )
        soc_lb = fa.bat_min[bat][bi]
        soc_lb[tt == steps - 1] = np.maximum(fa.bat_min[bat], fa.bat_soc0[bat])
        soc = lp.add_cols(soc_lb, fa.bat_energy[bat][bi], 0.0, count=nb, keys=role_key(COL_SOC, bi, tt))
        self.bat = (bat, ch, dis)
        # soc[t] - soc[t-1] - eff*dt*ch[t] + dt/eff*dis[t] = 0 (soc[-1] = soc0)
        r = np.arange(nb)
        prev = r[tt > 0]
        rhs = np.zeros(nb)
        rhs[tt == 0] = fa.bat_soc0[bat]
        eq.append(
            (
                np.concatenate([r, r, r, prev]),
                np.concatenate([soc + r, ch + r, dis + r, soc + prev - 1]),
                np.concatenate([np.ones(nb), -eff * dt, dt / eff, -np.ones(len(prev))]),
                rhs,
                role_key(ROW_SOC, bi, tt),
            )
        )
        node = local_of[fa.bat_node[bat]][bi]
        entries(node, tt, ch + r, -1.0)
        entries(node, tt, dis + r, 1.0)
        # charging sessions: the session's energy delivered inside its (widened) window
        evs = _ints(zi.evs)
        sess, owner = fa.sessions_of(evs)
        t0, lens = fa.sess_t0[sess], fa.sess_t1[sess] - fa.sess_t0[sess]
        total = int(lens.sum())
        si = np.repeat(np.arange(len(sess)), lens)
        ts = t0[si] + np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        power = fa.ev_power[evs][owner]
        # a session's role: its charging point's place in the zone and its place among that point's sessions
        session_slot = owner * 64 + np.minimum(sess - fa.ev_first[evs][owner], 63)
        c0 = lp.add_cols(
            0.0, power[si], price[ts] * dt, count=total, keys=role_key(COL_EV, session_slot[si], ts)
        )
        energy = np.minimum(fa.sess_energy[sess], power * lens * dt)
        eq.append((si, c0 + np.arange(total), np.full(total, dt), energy, role_key(ROW_EV, session_slot, 0)))
        entries(local_of[fa.ev_node[evs]][owner][si], ts, c0 + np.arange(total), -1.0)
        self.ev = (evs, owner[si], ts, c0)
        # demand response (shedding) only helps against import stress: columns where the zone has some
        stressed = self._import_stress(zi, margins)
        dr = _ints(zi.dr)
        shed = fa.dr_max[dr]
        u, ts = np.nonzero(stressed[None, :] & (shed > 0))
        c0 = lp.add_cols(
            0.0, shed[u, ts], (costs.dr - price[ts]) * dt, count=len(u), keys=role_key(COL_DR, u, ts)
        )
        self.dr = (dr, u, ts, c0)
        entries(local_of[fa.dr_node[dr]][u], ts, c0 + np.arange(len(u)), 1.0)
        # aggregators' offers: import lowered (down, injection up) or raised (up) at the offer's price per kWh
        # and nothing else (the energy it moves is the aggregator's to settle), in the intervals it covers
        of = _ints(zi.offers)
        of_price = np.maximum(fa.of_price[of], OFFER_TIE_BREAK) * dt
        od, tdn = np.nonzero(fa.of_down[of] > 0)
        down0 = lp.add_cols(
            0.0, fa.of_down[of][od, tdn], of_price[od], count=len(od), keys=role_key(COL_OFFER_DOWN, od, tdn)
        )
        entries(local_of[fa.of_node[of]][od], tdn, down0 + np.arange(len(od)), 1.0)
        ou, tup = np.nonzero(fa.of_up[of] > 0)
        up0 = lp.add_cols(
            0.0, fa.of_up[of][ou, tup], of_price[ou], count=len(ou), keys=role_key(COL_OFFER_UP, ou, tup)
        )
        entries(local_of[fa.of_node[of]][ou], tup, up0 + np.arange(len(ou)), -1.0)
        self.offers = (of, od, tdn, down0, ou, tup, up0)
        # LV zones' extra flexibility gets columns only in the intervals where they have some
        self.agg: tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, int] | None = None
        if zi.aggregates is not None:
            ag = zi.aggregates
            ad, td = np.nonzero(ag.down_kw > 0)
            au, tu = np.nonzero(ag.up_kw > 0)
            down = lp.add_cols(
                0.0,
                ag.down_kw[ad, td],
                (costs.curtail + price[td]) * dt,
                count=len(ad),
                keys=role_key(COL_AGG_DOWN, ad, td),
            )
            up = lp.add_cols(
                0.0,
                ag.up_kw[au, tu],
                (costs.dr - price[tu]) * dt,
                count=len(au),
                keys=role_key(COL_AGG_UP, au, tu),
            )
            self.agg = (ad, td, down, au, tu, up)
            entries(ag.node[ad], td, down + np.arange(len(ad)), -1.0)
            entries(ag.node[au], tu, up + np.arange(len(au)), 1.0)
        for rows, cols, vals, rhs, keys in eq:
            if len(rhs):
                lp.add_rows(rhs, rhs, rows, cols, vals, keys)

        self.e_node, self.e_t = np.concatenate(e_node), np.concatenate(e_t)
        self.e_col, self.e_coef = np.concatenate(e_col), np.concatenate(e_coef)
        order = np.argsort(self.e_t, kind="stable")
        self.e_node, self.e_t, self.e_col, self.e_coef = (
            a[order] for a in (self.e_node, self.e_t, self.e_col, self.e_coef)
        )
        self.t_start = np.searchsorted(self.e_t, np.arange(steps + 1))

        # constants of the linear model around the operating point
        op = zi.op
        vm = op.vm[:, zm.nodes]
        fixed = zi.fixed_kw if zi.fixed_kw is not None else np.zeros((steps, n))
        offset = np.zeros((steps, n)) if zi.offset_pu is None else zi.offset_pu
        if offset.ndim == 1:
            offset = offset[:, None]
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
        self.log: RowLog = []
        self.boundary: tuple[int, np.ndarray] | None = None
        self.inj_op_sum = inj_op_kw.sum(axis=1)
        self.sparse = zm.zone == MV_ZONE or n > SPARSE_NODES
        if self.sparse:
            self._add_flow_variables(fixed)
            self.c_v_sparse = self.c_v - fixed @ self.rk.T
            self.c_p_sparse = self.c_p + fixed @ below.T
        if zi.replay is not None:
            for kind, js, ts in zi.replay:
                (self.add_voltage_rows if kind == "v" else self.add_branch_rows)(js, ts)
        else:
            watch_v = (vm > zi.vmax - margins.voltage_pu - WATCH_PU) | (
                vm < zi.vmin + margins.voltage_pu + WATCH_PU
            )
            watch_p = self.has_branch[None, :] & (np.abs(p_op_kw) > WATCH_LOADING * self.pmax)
            self.add_voltage_rows(*np.nonzero(watch_v.T))
            self.add_branch_rows(*np.nonzero(watch_p.T))
        # the boundary comes last: a replayed LP's leading columns and rows are those of its earlier basis
        if zi.boundary_hi_kw is not None or zi.boundary_lo_kw is not None:
            self._add_boundary()

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
        tt = np.arange(steps)
        base = np.arange(n * steps)  # node i, interval t -> i * steps + t
        node_t = (base // steps, base % steps)
        self.f0 = lp.add_cols(-INF, INF, 0.0, count=n * steps, keys=role_key(COL_FLOW, *node_t))
        self.u0 = lp.add_cols(-INF, INF, 0.0, count=n * steps, keys=role_key(COL_DV, *node_t))
        child = np.flatnonzero(zm.parent_local >= 0)
        par = zm.parent_local[child]
        child_rows = (par[:, None] * steps + tt[None, :]).ravel()
        child_cols = (child[:, None] * steps + tt[None, :]).ravel()
        # f[i,t] - sum of f[children,t] - entries at (i, t) = fixed[t, i]
        rhs = fixed.T.ravel()
        lp.add_rows(
            rhs,
            rhs,
            np.concatenate([base, child_rows, self.e_node * steps + self.e_t]),
            np.concatenate([self.f0 + base, self.f0 + child_cols, self.e_col]),
            np.concatenate([np.ones(n * steps), -np.ones(len(child_rows)), -self.e_coef]),
            role_key(ROW_FLOW, *node_t),
        )
        # u[i,t] - u[parent,t] - r_i f[i,t] = 0 (the zone's top: r_top + r_i, the MV path above it)
        rk = zm.r_branch * KW_PU * MILLI
        r_i = rk + np.where(zm.parent_local < 0, zm.r_top * KW_PU * MILLI, 0.0)
        lp.add_rows(
            np.zeros(n * steps),
            np.zeros(n * steps),
            np.concatenate([base, base, child_cols]),
            np.concatenate([self.u0 + base, self.f0 + base, self.u0 + child_rows]),
            np.concatenate([np.ones(n * steps), -np.repeat(r_i, steps), -np.ones(len(child_rows))]),
            role_key(ROW_DV, *node_t),
        )

    def _add_boundary(self) -> None:
        """One soft row per interval where the MV step bounds the zone's injection change (only those: a free
        row would still cost the LP its slack columns)."""
        zi, lp, steps = self.zi, self.lp, self.steps
        hi = zi.boundary_hi_kw if zi.boundary_hi_kw is not None else np.full(steps, INF)
        lo = zi.boundary_lo_kw if zi.boundary_lo_kw is not None else np.full(steps, -INF)
        tt = np.flatnonzero(np.isfinite(hi) | np.isfinite(lo))
        k = len(tt)
        slack = lp.add_cols(
            0.0,
            INF,
            self.costs.boundary_penalty,
            count=2 * k,
            keys=role_key(COL_SLACK_BOUNDARY, np.tile([0, 1], k), np.repeat(tt, 2)),
        )
        row, e = self._row_entries(tt)
        r = np.arange(k)
        lp.add_rows(
            lo[tt] + self.inj_op_sum[tt],
            hi[tt] + self.inj_op_sum[tt],
            np.concatenate([row, r, r]),
            np.concatenate([self.e_col[e], slack + 2 * r, slack + 2 * r + 1]),
            np.concatenate([self.e_coef[e], np.ones(k), -np.ones(k)]),
            role_key(ROW_BOUNDARY, 0, tt),
        )
        self.boundary = (slack, tt)

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
        row_kind: int,
        js: np.ndarray,
        ts: np.ndarray,
    ) -> int:
        """Rows ``lower <= entries + lo slack - hi slack <= upper``, one per (local node ``js``, interval ``ts``)."""
        count = len(lower)
        slack_slot = (np.repeat(js, 2) * 2 + np.tile([0, 1], count)) * 8 + row_kind
        slack = self.lp.add_cols(
            0.0, INF, penalty, count=2 * count, keys=role_key(COL_SLACK, slack_slot, np.repeat(ts, 2))
        )
        r = np.arange(count)
        self.lp.add_rows(
            lower,
            upper,
            np.concatenate([row, r, r]),
            np.concatenate([cols, slack + 2 * r, slack + 2 * r + 1]),
            np.concatenate([vals, np.ones(count), -np.ones(count)]),
            role_key(row_kind, js, ts),
        )
        return slack

    def add_voltage_rows(self, js: np.ndarray, ts: np.ndarray) -> int:
        keep = ~self.in_lp_v[ts, js]
        js, ts = js[keep], ts[keep]
        if not len(js):
            return 0
        self.in_lp_v[ts, js] = True
        self.log.append(("v", js, ts))
        if self.sparse:
            row, cols, vals = np.arange(len(js)), self.u0 + js * self.steps + ts, np.ones(len(js))
            c = self.c_v_sparse[ts, js]
        else:
            row, e = self._row_entries(ts)
            cols, vals = self.e_col[e], self.rk[js[row], self.e_node[e]] * self.e_coef[e]
            c = self.c_v[ts, js]
        slack = self._add_soft_rows(
            self.v_lo[js] - c,
            self.v_hi[js] - c,
            row,
            cols,
            vals,
            self.costs.voltage_penalty / MILLI,
            ROW_V,
            js,
            ts,
        )
        self.rows_v.append((js, ts, slack, len(js)))
        return len(js)

    def add_branch_rows(self, ks: np.ndarray, ts: np.ndarray) -> int:
        keep = ~self.in_lp_p[ts, ks] & self.has_branch[ks]
        ks, ts = ks[keep], ts[keep]
        if not len(ks):
            return 0
        self.in_lp_p[ts, ks] = True
        self.log.append(("p", ks, ts))
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
        slack = self._add_soft_rows(
            -pmax - c, pmax - c, row, cols, vals, self.costs.thermal_penalty, ROW_P, ks, ts
        )
        self.rows_p.append((ks, ts, slack, len(ks)))
        return len(ks)

    def aggregates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(down, up), each (A, steps): the kW the MV step asked of the LV zones below each aggregate."""
        ag = self.zi.aggregates
        assert ag is not None and self.agg is not None
        ad, td, down0, au, tu, up0 = self.agg
        down, up = np.zeros_like(ag.down_kw), np.zeros_like(ag.up_kw)
        down[ad, td] = x[down0 + np.arange(len(ad))]
        up[au, tu] = x[up0 + np.arange(len(au))]
        return down, up

    def injection(self, x: np.ndarray) -> np.ndarray:
        """Controllable injection change per zone node per interval (kW) of a solution."""
        n = len(self.zi.model.nodes)
        flat = np.bincount(self.e_t * n + self.e_node, self.e_coef * x[self.e_col], minlength=self.steps * n)
        return flat.reshape(self.steps, n)

    def check(self, x: np.ndarray, tol_milli: float = 0.05, tol_kw: float = 0.05) -> int:
        """Add the rows the linear model finds violated by ``x``; returns how many."""
        return self.check_injection(self.injection(x), tol_milli, tol_kw)

    def check_injection(self, inj: np.ndarray, tol_milli: float = 0.05, tol_kw: float = 0.05) -> int:
        """Add the rows the linear model finds violated by the injection change ``inj`` (steps, zone nodes)."""
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
            b0, bts = self.boundary
            for i, t in enumerate(bts.tolist()):
                amount = max(x[b0 + 2 * i], x[b0 + 2 * i + 1])
                if amount > 1e-3:
                    out.append(Slack("boundary", int(nodes[0]), int(t), float(amount)))
        return out


def solve_blocks(lp: Lp, blocks: list[ZoneBlock]) -> tuple[str, np.ndarray, int, float]:
    """Solve, add violated rows, re-solve warm, until the linear model shows no violation not in the LP;
    returns status, column values, rounds and objective."""
    status, x, objective = lp.solve()
    rounds = 1
    while rounds < MAX_ROUNDS and status == "Optimal":
        added = sum(b.check(x) for b in blocks)
        if not added:
            break
        status, x, objective = lp.solve()
        rounds += 1
    return status, x, rounds, objective
