"""Predictive state: what the grid will look like over the horizon if nothing is managed — forecasts (profiles at
a quantile) in, AC power flow per interval out: every bus's voltage, every line's and transformer's loading,
violations flagged."""

from __future__ import annotations

from typing import Any

import numpy as np

from server.orchestration.acflow import AcRunner, violations
from server.orchestration.network.model import Network, Profiles
from server.orchestration.resources import build_fleet


def predict_state(
    model: Network, profiles: Profiles, quantile: float = 0.5, runner: AcRunner | None = None
) -> dict[str, Any]:
    fleet = build_fleet(model, profiles, quantile)
    runner = runner or AcRunner(model)
    ac = runner.run(fleet.baseline)
    v = violations(model, ac)

    def rows(a: np.ndarray, ids: list[int], digits: int) -> dict[str, list[float | None]]:
        return {
            str(i): [None if np.isnan(x) else round(float(x), digits) for x in a[:, k]]
            for k, i in enumerate(ids)
        }

    return {
        "grid": model.name,
        "start": profiles.start,
        "step_s": profiles.step_s,
        "intervals": fleet.steps,
        "quantile": quantile,
        "summary": {
            "vm_max_pu": [round(float(x), 4) for x in np.nanmax(ac.vm_pu, axis=1)],
            "vm_min_pu": [round(float(x), 4) for x in np.nanmin(ac.vm_pu, axis=1)],
            "line_loading_max": [round(float(x), 2) for x in np.nanmax(ac.line_loading, axis=1, initial=0)],
            "trafo_loading_max": [round(float(x), 2) for x in np.nanmax(ac.trafo_loading, axis=1, initial=0)],
        },
        "violations": v.to_dict(),
        "flagged": [x.to_dict() for x in v.by_element],
        "vm_pu": rows(ac.vm_pu, [b.id for b in model.buses], 4),
        "line_loading_percent": rows(ac.line_loading, [x.id for x in model.lines], 2),
        "trafo_loading_percent": rows(ac.trafo_loading, [x.id for x in model.trafos], 2),
        "pf_seconds": round(ac.seconds, 2),
    }
