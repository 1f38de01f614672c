"""The demo's judge: an AC power flow (pandapower, through the planner's own ``AcRunner``) of the SimBench grid with
every site's measured (or unmanaged) net power at its bus, interval by interval, and the violations it shows:
voltage outside the band, lines and the transformer over their rating.

Pure computation; the demo runs it in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from server.orchestration.acflow import AcRunner, violations
from server.orchestration.network.model import Load, Network
from server.orchestration.schedule import Schedule

Q_RATIO = 0.2  # reactive power of the consumption part (power factor ~0.98); PV at unity


def load_buses(model: Network) -> list[int]:
    """Buses with a load of the model: where customers connect (one simulated site each)."""
    return sorted({x.bus for x in model.loads})


@dataclass
class Verdict:
    intervals: int  # intervals with at least one violation
    interval_list: list[int]
    trafo_max_pct: float
    vm_max_pu: float
    vm_min_pu: float
    by_kind: dict[str, Any]
    converged: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "intervals": self.intervals,
            "trafo_max_pct": round(self.trafo_max_pct, 1),
            "vm_max_pu": round(self.vm_max_pu, 4),
            "vm_min_pu": round(self.vm_min_pu, 4),
            "by_kind": {k: v["intervals"] for k, v in self.by_kind.items() if v["intervals"]},
        }


def judge(
    model: Network, net_w: dict[int, np.ndarray], load_w: dict[int, np.ndarray] | None = None
) -> Verdict:
    """Power flow of the grid with ``net_w[bus]`` (W per interval, import positive) at each bus, in place of the
    model's own loads, generators and storage. ``load_w[bus]`` (the consumption part) sets reactive power."""
    buses = sorted(net_w)
    steps = len(next(iter(net_w.values())))
    loads = [Load(k, f"site at bus {b}", b, 0.0, 0.0) for k, b in enumerate(buses)]
    grid = replace(model, loads=loads, sgens=[], storages=[])
    p = np.column_stack([np.asarray(net_w[b], float) for b in buses]) / 1e6
    cons = np.column_stack([np.asarray((load_w or net_w)[b], float).clip(0) for b in buses]) / 1e6
    sched = Schedule(p, cons * Q_RATIO, np.zeros((steps, 0)), np.zeros((steps, 0)))
    ac = AcRunner(grid).run(sched)
    found = violations(grid, ac)
    by_kind = found.to_dict()
    hit = sorted({t for v in found.by_element for t in v.intervals})
    return Verdict(
        intervals=len(hit),
        interval_list=hit,
        trafo_max_pct=float(np.nanmax(ac.trafo_loading)) if ac.trafo_loading.size else 0.0,
        vm_max_pu=float(np.nanmax(ac.vm_pu)),
        vm_min_pu=float(np.nanmin(ac.vm_pu)),
        by_kind=by_kind,
        converged=int(ac.converged.sum()),
        seconds=ac.seconds,
    )
