"""AC power flow over a horizon (pandapower, the judge of every plan): a schedule in, per interval the voltage
of every bus and the loading and flow of every line and transformer out, and the violations they show.

The pandapower network is built once from the model; each interval only changes the element powers, so the
power flow reuses pandapower's internal model (``recycle``) and starts from the previous interval's result."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.orchestration.network.model import Network
from server.orchestration.network.pandapower_io import to_pandapower
from server.orchestration.schedule import Schedule

TOLERANCE_PU = 1e-4
TOLERANCE_PERCENT = 0.01


@dataclass
class AcResult:
    vm_pu: np.ndarray  # (steps, buses) in model bus order
    line_loading: np.ndarray  # (steps, lines) percent
    trafo_loading: np.ndarray  # (steps, trafos) percent
    line_p_from: np.ndarray  # MW, Mvar at each end (power entering the branch)
    line_q_from: np.ndarray
    line_p_to: np.ndarray
    line_q_to: np.ndarray
    trafo_p_hv: np.ndarray
    trafo_q_hv: np.ndarray
    trafo_p_lv: np.ndarray
    trafo_q_lv: np.ndarray
    converged: np.ndarray  # (steps,) bool
    seconds: float
    runs: int


class AcRunner:
    def __init__(self, model: Network) -> None:
        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = to_pandapower(model)
        self.total_seconds = 0.0
        self.total_runs = 0

    def run(self, sched: Schedule) -> AcResult:
        import pandapower as pp

        net, steps = self.net, sched.steps
        nb, nl, nt = len(net.bus), len(net.line), len(net.trafo)
        out = {
            k: np.full((steps, n), np.nan)
            for k, n in (
                ("vm", nb),
                ("ll", nl),
                ("tl", nt),
                ("lpf", nl),
                ("lqf", nl),
                ("lpt", nl),
                ("lqt", nl),
                ("tph", nt),
                ("tqh", nt),
                ("tpl", nt),
                ("tql", nt),
            )
        }
        converged = np.zeros(steps, bool)
        start = time.perf_counter()
        for t in range(steps):
            net.load["p_mw"] = sched.load_p[t]
            net.load["q_mvar"] = sched.load_q[t]
            net.sgen["p_mw"] = sched.sgen_p[t]
            net.storage["p_mw"] = sched.storage_p[t]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pp.runpp(
                        net,
                        numba=False,
                        init="results" if t else "auto",
                        recycle={"trafo": True, "gen": False, "bus_pq": True},
                    )
            except pp.LoadflowNotConverged:
                continue
            converged[t] = True
            out["vm"][t] = net.res_bus.vm_pu.to_numpy()
            if nl:
                res = net.res_line
                out["ll"][t], out["lpf"][t], out["lqf"][t] = (
                    res.loading_percent,
                    res.p_from_mw,
                    res.q_from_mvar,
                )
                out["lpt"][t], out["lqt"][t] = res.p_to_mw, res.q_to_mvar
            if nt:
                res = net.res_trafo
                out["tl"][t], out["tph"][t], out["tqh"][t] = res.loading_percent, res.p_hv_mw, res.q_hv_mvar
                out["tpl"][t], out["tql"][t] = res.p_lv_mw, res.q_lv_mvar
        seconds = time.perf_counter() - start
        self.total_seconds += seconds
        self.total_runs += steps
        return AcResult(
            vm_pu=out["vm"],
            line_loading=out["ll"],
            trafo_loading=out["tl"],
            line_p_from=out["lpf"],
            line_q_from=out["lqf"],
            line_p_to=out["lpt"],
            line_q_to=out["lqt"],
            trafo_p_hv=out["tph"],
            trafo_q_hv=out["tqh"],
            trafo_p_lv=out["tpl"],
            trafo_q_lv=out["tql"],
            converged=converged,
            seconds=seconds,
            runs=steps,
        )


@dataclass
class Violation:
    kind: str  # vm_high | vm_low | line | trafo | no_convergence
    element: str  # "bus 17", "line 3", "trafo 2"
    name: str
    intervals: list[int]
    worst: float  # pu or percent
    worst_interval: int
    limit: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "element": self.element,
            "name": self.name,
            "intervals": self.intervals,
            "worst": round(self.worst, 4),
            "worst_interval": self.worst_interval,
            "limit": self.limit,
            "reason": self.reason,
        }


@dataclass
class ViolationSummary:
    by_element: list[Violation] = field(default_factory=list)

    def category(self, kind: str) -> dict[str, Any]:
        items = [v for v in self.by_element if v.kind == kind]
        intervals = sorted({t for v in items for t in v.intervals})
        worst = (max if kind != "vm_low" else min)((v.worst for v in items), default=None)
        return {
            "intervals": len(intervals),
            "interval_list": intervals,
            "elements": len(items),
            "worst": None if worst is None else round(worst, 4),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            kind: self.category(kind) for kind in ("vm_high", "vm_low", "line", "trafo", "no_convergence")
        }

    @property
    def count(self) -> int:
        return len(self.by_element)


def violations(model: Network, ac: AcResult) -> ViolationSummary:
    out = ViolationSummary()
    vmax = np.array([b.v_max_pu for b in model.buses])
    vmin = np.array([b.v_min_pu for b in model.buses])
    bad = np.flatnonzero(~ac.converged)
    if len(bad):
        out.by_element.append(
            Violation(
                "no_convergence",
                "network",
                model.name,
                [int(t) for t in bad],
                0.0,
                int(bad[0]),
                0.0,
                "the AC power flow did not converge",
            )
        )
    vm = np.where(np.isnan(ac.vm_pu), 1.0, ac.vm_pu)

    def add(
        kind: str,
        label: str,
        names: list[tuple[str, str]],
        values: np.ndarray,
        excess: np.ndarray,
        limit: np.ndarray,
        worst_max: bool,
    ) -> None:
        for j in np.flatnonzero((excess > 0).any(axis=0)):
            ts = np.flatnonzero(excess[:, j] > 0)
            series = values[:, j]
            wt = int(ts[np.argmax(series[ts])] if worst_max else ts[np.argmin(series[ts])])
            out.by_element.append(
                Violation(
                    kind,
                    f"{label} {names[j][0]}",
                    names[j][1],
                    [int(t) for t in ts],
                    float(series[wt]),
                    wt,
                    float(limit[j]),
                )
            )

    bus_names = [(str(b.id), b.name) for b in model.buses]
    add("vm_high", "bus", bus_names, vm, vm - vmax - TOLERANCE_PU, vmax, True)
    add("vm_low", "bus", bus_names, vm, vmin - TOLERANCE_PU - vm, vmin, False)
    if model.lines:
        lim = np.array([ln.max_loading_percent for ln in model.lines])
        ll = np.nan_to_num(ac.line_loading)
        add(
            "line",
            "line",
            [(str(x.id), x.name) for x in model.lines],
            ll,
            ll - lim - TOLERANCE_PERCENT,
            lim,
            True,
        )
    if model.trafos:
        lim = np.array([t.max_loading_percent for t in model.trafos])
        tl = np.nan_to_num(ac.trafo_loading)
        add(
            "trafo",
            "trafo",
            [(str(x.id), x.name) for x in model.trafos],
            tl,
            tl - lim - TOLERANCE_PERCENT,
            lim,
            True,
        )
    return out
