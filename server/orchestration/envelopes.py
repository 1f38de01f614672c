"""Dynamic operating envelopes: per connection point (a bus with a customer's elements) and interval, the export
the network can take if every site of the zone exports its envelope at once, around the plan's operating point
(linear model, same margins as the plan), shared by a policy:

- ``equal``: one value per zone and interval for every site, each site capped by what it could export;
- ``proportional``: the same share of nameplate (generation + storage rating) for every site;
- ``max``: the largest total export (an LP; sites nearer the transformer get more).

What a site could export is its generation forecast less its load (at the planning quantile), never negative.

Import envelopes are the same the other way: the import every site of the zone can take at once (its feeder's
forward rating, the lower voltage band), shared by ``equal`` or ``proportional`` (``max`` shares as ``equal``);
what a site could import is its load (a charging point at its rating) less its generation, never negative, plus
its storage's charge rating.

Static limits (1.5 kW, 5 kW per site) are the same cap at a fixed value, checked by AC power flow like the
envelopes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.orchestration.lp import Lp
from server.orchestration.network.topology import MV_ZONE
from server.orchestration.resources import Fleet
from server.orchestration.schedule import Schedule
from server.orchestration.zone_lp import KW_PU, MILLI, Margins

POLICIES = ("equal", "proportional", "max")
STATIC_LIMITS_KW = (1.5, 5.0)
BISECTION_STEPS = 40


@dataclass
class Sites:
    buses: np.ndarray  # connection point buses
    node: np.ndarray  # tree position of each
    zone: np.ndarray
    cap_kw: np.ndarray  # (steps, sites) what each site could export
    import_cap_kw: np.ndarray  # (steps, sites) what each site could import
    nameplate_kw: np.ndarray  # (sites,)
    net_kw: np.ndarray  # (steps, sites) net injection of the site in the plan


def sites(net, fleet: Fleet, sched: Schedule) -> Sites:  # noqa: ANN001  (PlanningNetwork)
    model, tree = net.model, net.tree
    cps = model.connection_points()
    buses = np.array(sorted(cps), dtype=np.int64)
    col = {int(b): i for i, b in enumerate(buses)}
    steps = fleet.steps
    gen = np.zeros((steps, len(buses)))
    load = np.zeros((steps, len(buses)))
    peak = np.zeros((steps, len(buses)))  # load with every charging point at its rating
    plate = np.zeros(len(buses))
    charge = np.zeros(len(buses))
    net_kw = np.zeros((steps, len(buses)))
    for k, s in enumerate(model.sgens):
        c = col.get(s.bus)
        if c is not None:
            gen[:, c] += fleet.pv[k].avail_kw
            plate[c] += s.sn_mva * 1000
            net_kw[:, c] += sched.sgen_p[:, k] * 1000
    for k, st in enumerate(model.storages):
        c = col.get(st.bus)
        if c is not None:
            plate[c] += st.sn_mva * 1000
            charge[c] += st.sn_mva * 1000
            net_kw[:, c] -= sched.storage_p[:, k] * 1000
    ev_rating = {ev.load: ev.power_kw for ev in fleet.evs}
    for k, ld in enumerate(model.loads):
        c = col.get(ld.bus)
        if c is not None:
            load[:, c] += fleet.baseline.load_p[:, k] * 1000
            peak[:, c] += np.maximum(fleet.baseline.load_p[:, k] * 1000, ev_rating.get(k, 0.0))
            net_kw[:, c] -= sched.load_p[:, k] * 1000
    node = np.array([tree.pos[int(b)] for b in buses], dtype=np.int64)
    return Sites(
        buses=buses,
        node=node,
        zone=tree.zone[node],
        cap_kw=np.clip(gen - load, 0, None),
        import_cap_kw=np.clip(peak - gen, 0, None) + charge[None, :],
        nameplate_kw=plate,
        net_kw=net_kw,
    )


class _ZoneCheck:
    """The linear model of one zone for envelopes: is an export pattern within every limit?"""

    def __init__(self, net, zone: int, site_idx: np.ndarray, s: Sites, op, margins: Margins) -> None:  # noqa: ANN001
        zm = net.zones[zone]
        local = {int(v): i for i, v in enumerate(zm.nodes)}
        self.where = np.array([local[int(n)] for n in s.node[site_idx]], dtype=np.int64)
        self.r = zm.r[:, self.where] * KW_PU * MILLI  # (n, sites) milli-pu per kW
        self.below = zm.below[:, self.where].astype(float)
        vm = op.vm[:, zm.nodes]
        self.base_net = s.net_kw[:, site_idx]
        self.v0 = vm * MILLI
        self.p0 = op.p[:, zm.nodes] / KW_PU
        q = op.q[:, zm.nodes] / KW_PU
        s_kw = zm.s_max[None, :] * np.minimum(vm, 1.0) / KW_PU * (1 - margins.thermal)
        self.pmax = np.sqrt(np.maximum(s_kw**2 - q**2, (0.05 * s_kw) ** 2))
        self.has_branch = np.isfinite(zm.s_max) & (zm.nodes != 0)
        self.v_hi = (net.vmax[zm.nodes] - margins.voltage_pu) * MILLI

    def ok(self, export_kw: np.ndarray) -> np.ndarray:
        """(steps,) True where the zone's sites exporting ``export_kw`` (steps, sites) keep every limit."""
        d = export_kw - self.base_net
        v = self.v0 + d @ self.r.T
        p = self.p0 - d @ self.below.T
        # a limit already broken at the operating point (beyond reach of these sites) must not get worse
        v_lim = np.maximum(self.v_hi[None, :], self.v0 + np.minimum(d, 0) @ self.r.T)
        p_ok = ((p >= -self.pmax) | (p >= self.p0)) | ~self.has_branch[None, :]
        return ((v <= v_lim + 1e-6).all(axis=1)) & p_ok.all(axis=1)


class _ZoneImportCheck(_ZoneCheck):
    """The same zone the other way: is an import pattern within the lower voltage band and the forward rating?"""

    def __init__(self, net, zone: int, site_idx: np.ndarray, s: Sites, op, margins: Margins) -> None:  # noqa: ANN001
        super().__init__(net, zone, site_idx, s, op, margins)
        self.v_lo = (net.vmin[net.zones[zone].nodes] + margins.voltage_pu) * MILLI

    def ok(self, import_kw: np.ndarray) -> np.ndarray:
        d = -import_kw - self.base_net
        v = self.v0 + d @ self.r.T
        p = self.p0 - d @ self.below.T
        v_lim = np.minimum(self.v_lo[None, :], self.v0 + np.maximum(d, 0) @ self.r.T)
        p_ok = ((p <= self.pmax) | (p <= self.p0)) | ~self.has_branch[None, :]
        return ((v >= v_lim - 1e-6).all(axis=1)) & p_ok.all(axis=1)


def _bisect(check: _ZoneCheck, pattern, hi: np.ndarray) -> np.ndarray:  # noqa: ANN001
    lo = np.zeros_like(hi)
    ok_hi = check.ok(pattern(hi))
    best = np.where(ok_hi, hi, 0.0)
    hi = np.where(ok_hi, hi, hi)
    todo = ~ok_hi
    for _ in range(BISECTION_STEPS):
        if not todo.any():
            break
        mid = (lo + hi) / 2
        ok = check.ok(pattern(mid))
        lo = np.where(todo & ok, mid, lo)
        hi = np.where(todo & ~ok, mid, hi)
    return np.where(todo, lo, best)


def _equal_share(check: _ZoneCheck, cap: np.ndarray) -> np.ndarray:
    """(steps, sites): the largest limit every site of the zone may use at once, each capped by its own ``cap``."""
    got = _bisect(check, lambda e: np.minimum(e[:, None], cap), cap.max(axis=1))
    return np.minimum(got[:, None], cap)


def _proportional_share(check: _ZoneCheck, cap: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """(steps, sites): the largest share of each site's ``plate`` all may use at once, capped by ``cap``."""
    ratio = np.divide(cap, plate[None, :]).max(axis=1)
    got = _bisect(check, lambda a: np.minimum(a[:, None] * plate[None, :], cap), ratio)
    return np.minimum(got[:, None] * plate[None, :], cap)


def _max_export(check: _ZoneCheck, cap: np.ndarray) -> np.ndarray:
    steps, n_sites = cap.shape
    out = np.zeros_like(cap)
    for t in range(steps):
        if cap[t].max(initial=0) <= 0:
            continue
        if check.ok(cap[t : t + 1])[0]:
            out[t] = cap[t]
            continue
        lp = Lp()
        c0 = lp.add_cols(0.0, cap[t], -1.0)
        cols = c0 + np.arange(n_sites)
        d0 = check.base_net[t]
        rhs_v = (
            np.maximum(check.v_hi, check.v0[t] + np.minimum(-d0, 0) @ check.r.T) - check.v0[t] + check.r @ d0
        )
        nv = len(rhs_v)
        lp.add_rows(
            np.full(nv, -np.inf), rhs_v, np.repeat(np.arange(nv), n_sites), np.tile(cols, nv), check.r.ravel()
        )
        idx = np.flatnonzero(check.has_branch)
        # reverse flow: p0 - below (e - base) >= -pmax  ->  below e <= pmax + p0 + below base
        rhs_p = np.maximum(check.pmax[t, idx] + check.p0[t, idx], 0) + check.below[idx] @ d0
        lp.add_rows(
            np.full(len(idx), -np.inf),
            rhs_p,
            np.repeat(np.arange(len(idx)), n_sites),
            np.tile(cols, len(idx)),
            check.below[idx].ravel(),
        )
        status, x, _ = lp.solve()
        lp.release()
        if status == "Optimal":
            out[t] = np.clip(x[cols], 0, cap[t])
    return out


def envelopes(net, s: Sites, op, policy: str, margins: Margins) -> np.ndarray:  # noqa: ANN001
    """(steps, sites) export limit in kW under ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    out = np.zeros_like(s.cap_kw)
    for zone in np.unique(s.zone):
        idx = np.flatnonzero(s.zone == zone)
        if not len(idx):
            continue
        check = _ZoneCheck(net, int(zone), idx, s, op, margins)
        cap = s.cap_kw[:, idx]
        if policy == "equal":
            out[:, idx] = _equal_share(check, cap)
        elif policy == "proportional":
            out[:, idx] = _proportional_share(check, cap, np.maximum(s.nameplate_kw[idx], 1e-9))
        else:
            out[:, idx] = _max_export(check, cap)
    return out


def import_envelopes(net, s: Sites, op, policy: str, margins: Margins) -> np.ndarray:  # noqa: ANN001
    """(steps, sites) import limit in kW under ``policy`` (``max`` shares as ``equal``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    out = np.zeros_like(s.import_cap_kw)
    for zone in np.unique(s.zone):
        idx = np.flatnonzero(s.zone == zone)
        check = _ZoneImportCheck(net, int(zone), idx, s, op, margins)
        cap = s.import_cap_kw[:, idx]
        if policy == "proportional":
            # in proportion to what each site could import at most
            out[:, idx] = _proportional_share(check, cap, np.maximum(cap.max(axis=0), 1e-9))
        else:
            out[:, idx] = _equal_share(check, cap)
    return out


def static(s: Sites, limit_kw: float) -> np.ndarray:
    return np.minimum(s.cap_kw, limit_kw)


def export_schedule(model, fleet: Fleet, sched: Schedule, s: Sites, export_kw: np.ndarray) -> Schedule:  # noqa: ANN001
    """The plan with every connection point exporting ``export_kw``: its generators produce its load plus the
    export (as far as they can), its storage the rest; other elements as planned."""
    out = sched.copy()
    col = {int(b): i for i, b in enumerate(s.buses)}
    load = np.zeros_like(export_kw)
    for k, ld in enumerate(model.loads):
        c = col.get(ld.bus)
        if c is not None:
            load[:, c] += out.load_p[:, k] * 1000
    need = export_kw + load  # generation needed at each site
    avail = np.zeros_like(export_kw)
    for k, sg in enumerate(model.sgens):
        c = col.get(sg.bus)
        if c is not None:
            avail[:, c] += fleet.pv[k].avail_kw
    share = np.divide(np.minimum(need, avail), avail, out=np.zeros_like(avail), where=avail > 0)
    for k, sg in enumerate(model.sgens):
        c = col.get(sg.bus)
        if c is not None:
            out.sgen_p[:, k] = fleet.pv[k].avail_kw * share[:, c] / 1000
    rest = np.clip(need - np.minimum(need, avail), 0, None)
    for k, st in enumerate(model.storages):
        c = col.get(st.bus)
        if c is not None:
            give = np.minimum(rest[:, c], st.sn_mva * 1000)
            out.storage_p[:, k] = -give / 1000
            rest[:, c] -= give
    return out


def import_schedule(model, sched: Schedule, s: Sites, import_kw: np.ndarray) -> Schedule:  # noqa: ANN001
    """The plan with every connection point importing ``import_kw``: its generators as planned, its storage
    idle, its loads taking the rest (in proportion to their planned power, at their planned power factor)."""
    out = sched.copy()
    col = {int(b): i for i, b in enumerate(s.buses)}
    gen = np.zeros_like(import_kw)
    for k, sg in enumerate(model.sgens):
        c = col.get(sg.bus)
        if c is not None:
            gen[:, c] += out.sgen_p[:, k] * 1000
    for k, st in enumerate(model.storages):
        if st.bus in col:
            out.storage_p[:, k] = 0.0
    need = import_kw + gen  # what the site's loads draw
    planned = np.zeros_like(import_kw)
    count = np.zeros(len(s.buses))
    for k, ld in enumerate(model.loads):
        c = col.get(ld.bus)
        if c is not None:
            planned[:, c] += np.clip(out.load_p[:, k], 0, None) * 1000
            count[c] += 1
    for k, ld in enumerate(model.loads):
        c = col.get(ld.bus)
        if c is None:
            continue
        mine = np.clip(out.load_p[:, k], 0, None) * 1000
        share = np.divide(mine, planned[:, c], out=np.full(len(mine), 1 / count[c]), where=planned[:, c] > 0)
        p_kw = need[:, c] * share
        pf = np.divide(
            out.load_q[:, k], out.load_p[:, k], out=np.zeros(len(mine)), where=out.load_p[:, k] > 0
        )
        out.load_p[:, k] = p_kw / 1000
        out.load_q[:, k] = p_kw / 1000 * pf
    return out


__all__ = [
    "MV_ZONE",
    "POLICIES",
    "STATIC_LIMITS_KW",
    "Sites",
    "envelopes",
    "export_schedule",
    "import_envelopes",
    "import_schedule",
    "sites",
    "static",
]
