"""Export-limit plans: a grid node's latest load forecast + its export limit + the rooftop PV below it -> the
optimizer -> one dispatch (a per-site export limit over the window where the plan has to curtail).

The node's load forecast is of its *net* load (what its sources meter: import positive, export negative), so a
feeder full of rooftop PV forecasts negative load around noon. The PV that could be curtailed is each 2030.5
device's nameplate (``ratedPower``, stored when the device reports its DERCapability rtgMaxW) times the clear-sky
shape at the node's coordinates (without coordinates: the nameplate wherever the node is forecast to export).
The LP keeps the node's reverse flow within its export limit at the least curtailment; the dispatch then gives
every site the same share of the node's export limit (a static, conservative operating envelope) for the span of
intervals in which the plan curtails. A forecast that stays within the limit gives a plan without a dispatch.

The solve is pure computation: ``solve`` runs in an executor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import forecasts, grid, telemetry
from server.core.dispatch import Dispatch
from server.core.errors import Invalid
from server.orchestration.optimizer import Node, Pv, optimise
from server.store import Store

CURTAIL_EPS_KW = 1e-3


@dataclass
class PlanInputs:
    node: str
    latitude: float | None
    longitude: float | None
    export_limit_kw: float
    forecast_id: int
    step_s: int
    times: list[dt.datetime]  # interval starts
    base_kw: np.ndarray  # forecast net load of the node
    sites: list[str]  # LFDIs of the node's 2030.5 devices
    rated_kw: dict[str, float]  # PV nameplate of those that reported one


@dataclass
class ExportPlan:
    node: str
    forecast_id: int
    step_s: int
    export_limit_kw: float
    sites: int
    pv_sites: int
    pv_rated_kw: float
    peak_import_kw: float
    peak_export_kw: float  # forecast, before the plan
    peak_export_at: str | None
    planned_peak_export_kw: float
    curtailed_kwh: float
    feasible: bool
    violation_kwh: float
    window_start: str | None = None
    window_end: str | None = None
    site_export_limit_w: float | None = None
    notes: list[str] = field(default_factory=list)

    def dispatch(self, now: dt.datetime) -> Dispatch | None:
        """The dispatch that carries the plan out (None when the forecast needs none or the window is over)."""
        if self.window_start is None or self.window_end is None or self.site_export_limit_w is None:
            return None
        start = max(dt.datetime.fromisoformat(self.window_start), now)
        end = dt.datetime.fromisoformat(self.window_end)
        if end <= start:
            return None
        return Dispatch(
            start=start,
            duration_s=int((end - start).total_seconds()),
            export_limit_w=self.site_export_limit_w,
            description=f"export plan {self.node}: {self.export_limit_kw:g} kW feeder export limit",
        )


async def load_inputs(session: AsyncSession, store: Store, node_name: str) -> PlanInputs:
    node = await grid.get_node(session, node_name)
    if node.export_limit_kw is None:
        raise Invalid(f"grid node {node_name!r} has no export limit to plan against (set export_limit_kw)")
    run = await forecasts.latest_forecast(store, node_name, "load")
    if not run["points"]:
        raise Invalid(f"the latest forecast of {node_name!r} has no points")
    sites = [sid for kind, sid in await grid.node_sources(session, node_name) if kind == "device"]
    rows = await telemetry.newest_values(session, "device", sites, "ratedPower")
    rated = {sid: float(v) / 1000 for sid, v in rows.items() if v and v > 0}
    return PlanInputs(
        node=node_name,
        latitude=node.latitude,
        longitude=node.longitude,
        export_limit_kw=node.export_limit_kw,
        forecast_id=run["id"],
        step_s=run["step_s"],
        times=[dt.datetime.fromisoformat(p["ts"]) for p in run["points"]],
        base_kw=np.array([p["mean"] for p in run["points"]]) / 1000.0,
        sites=sites,
        rated_kw=rated,
    )


def pv_shape(inputs: PlanInputs) -> np.ndarray:
    """Fraction of nameplate the PV could produce per interval (interval midpoints)."""
    if inputs.latitude is None or inputs.longitude is None:
        return (inputs.base_kw < 0).astype(float)
    from forecasting.solar import clear_sky, sun_position

    mid = np.array([int(ts.timestamp()) + inputs.step_s // 2 for ts in inputs.times], dtype="datetime64[s]")
    ghi, _, _ = clear_sky(sun_position(mid, inputs.latitude, inputs.longitude))
    return np.clip(ghi / 1000.0, 0.0, 1.0)


def solve(inputs: PlanInputs) -> ExportPlan:
    steps, step_h = len(inputs.times), inputs.step_s / 3600
    shape = pv_shape(inputs)
    notes = []
    if inputs.latitude is None or inputs.longitude is None:
        notes.append("node has no coordinates: curtailable PV taken as nameplate wherever the node exports")
    missing = len(inputs.sites) - len(inputs.rated_kw)
    if missing:
        notes.append(
            f"{missing} device(s) reported no DERCapability rtgMaxW: no curtailable PV counted for them"
        )
    ders = [Pv(lfdi, kw * shape) for lfdi, kw in sorted(inputs.rated_kw.items())]
    root = Node(inputs.node, base_kw=inputs.base_kw, export_limit_kw=inputs.export_limit_kw, ders=list(ders))
    plan = optimise(root, steps, step_h)
    curtail = sum((d.available_kw - plan.pv_output_kw[d.name] for d in ders), np.zeros(steps))
    net = plan.net_kw[inputs.node]
    export = np.clip(-inputs.base_kw, 0, None)
    peak_i = int(np.argmax(export)) if steps else 0
    out = ExportPlan(
        node=inputs.node,
        forecast_id=inputs.forecast_id,
        step_s=inputs.step_s,
        export_limit_kw=inputs.export_limit_kw,
        sites=len(inputs.sites),
        pv_sites=len(inputs.rated_kw),
        pv_rated_kw=round(sum(inputs.rated_kw.values()), 3),
        peak_import_kw=round(float(max(inputs.base_kw.max(initial=0), 0)), 3),
        peak_export_kw=round(float(export[peak_i]) if steps else 0.0, 3),
        peak_export_at=inputs.times[peak_i].isoformat() if steps and export[peak_i] > 0 else None,
        planned_peak_export_kw=round(float(np.clip(-net, 0, None).max(initial=0)), 3),
        curtailed_kwh=round(float(curtail.sum() * step_h), 3),
        feasible=plan.feasible,
        violation_kwh=round(float(plan.violation_kw[inputs.node].sum() * step_h), 3),
        notes=notes,
    )
    active = np.flatnonzero(curtail > CURTAIL_EPS_KW)
    if len(active) and inputs.sites:
        step = dt.timedelta(seconds=inputs.step_s)
        out.window_start = inputs.times[int(active[0])].isoformat()
        out.window_end = (inputs.times[int(active[-1])] + step).isoformat()
        # every site gets the same share of the node's export limit: met whatever each site's own load does
        out.site_export_limit_w = round(inputs.export_limit_kw * 1000 / len(inputs.sites), 1)
    if not plan.feasible:
        out.notes.append(
            f"the export limit cannot be met with the PV known to be curtailable "
            f"({out.violation_kwh} kWh over the limit)"
        )
    return out


async def export_plan(store: Store, node_name: str) -> ExportPlan:
    async with store.sessions() as session:
        inputs = await load_inputs(session, store, node_name)
    return await asyncio.get_running_loop().run_in_executor(None, solve, inputs)
