"""Forecasts per grid node: telemetry of the node's sources -> one regular series -> ``forecasting`` -> stored run.

The model fit runs in a worker thread (``run_in_executor``) so the event loop keeps serving requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import grid, net_split, telemetry
from server.core.errors import Invalid, NotFound
from server.store import Store
from server.store.db import LONG_READ
from server.store.models import ForecastPoint, ForecastRun, GridNode, TelemetryReading
from server.store.types import utcnow

# load: the metered net load; pv: behind-the-meter PV output; gross: the load without the PV below the node
# (pv and gross come from the split of the net, ``server.core.net_split``)
TARGETS = ("load", "pv", "gross")


@dataclass(frozen=True)
class Series:
    start: dt.datetime
    step_s: int
    values: np.ndarray  # W per step, NaN where unknown
    sources: int

    def times(self) -> np.ndarray:
        t0 = np.datetime64(int(self.start.timestamp()), "s")
        return t0 + np.arange(len(self.values)) * np.timedelta64(self.step_s, "s")


def aggregate(
    rows: list[tuple[str, str, dt.datetime, float]], start: dt.datetime, step_s: int, buckets: int
) -> tuple[np.ndarray, int]:
    """Sum per-source interval means into one node series.

    * Inside a source's reporting span a missing interval makes the node value unknown (NaN): summing the others
      would look like a load drop.
    * Before a source's first report it counts as absent (0) while others report, so a device installed last
      week does not erase the feeder's history; where no source reported at all the node is unknown.
    * The series ends at the last interval every recently reporting source has reached, so readings still on
      their way (a device posting every 15 minutes) are not mistaken for a drop. A source silent for two days
      counts as removed.
    """
    total = np.zeros(buckets)
    unknown = np.zeros(buckets, dtype=bool)
    reporting = np.zeros(buckets, dtype=int)
    lasts: list[int] = []
    by_source: dict[tuple[str, str], list[tuple[float, float]]] = {}
    t0 = start.timestamp()
    for kind, source, ts, value in rows:
        by_source.setdefault((kind, source), []).append((ts.timestamp(), value))
    for samples in by_source.values():
        arr = np.array(samples)
        idx = ((arr[:, 0] - t0) // step_s).astype(int)
        keep = (idx >= 0) & (idx < buckets) & np.isfinite(arr[:, 1])
        idx, vals = idx[keep], arr[keep, 1]
        if not len(idx):
            continue
        sums = np.bincount(idx, weights=vals, minlength=buckets)
        counts = np.bincount(idx, minlength=buckets)
        span = np.zeros(buckets, dtype=bool)
        span[idx.min() : idx.max() + 1] = True
        have = counts > 0
        total[have] += sums[have] / counts[have]
        reporting += have
        unknown |= span & ~have
        lasts.append(int(idx.max()))
    unknown |= reporting == 0
    recent = [last for last in lasts if last >= buckets - 2 * 86_400 // step_s]
    if recent:
        unknown[min(recent) + 1 :] = True
    total[unknown] = np.nan
    return total, len(lasts)


async def node_series(
    session: AsyncSession, name: str, measurement: str, step_s: int, since: dt.datetime, until: dt.datetime
) -> Series:
    sources = await grid.node_sources(session, name)
    if not sources:
        raise Invalid(f"grid node {name!r} has no members (add devices or VENs to it)")
    start = dt.datetime.fromtimestamp(since.timestamp() // step_s * step_s, dt.UTC)
    buckets = int((until - start).total_seconds() // step_s)
    query = (
        select(
            TelemetryReading.source_kind,
            TelemetryReading.source_id,
            TelemetryReading.resource,
            TelemetryReading.ts,
            TelemetryReading.value,
        )
        .where(
            tuple_(TelemetryReading.source_kind, TelemetryReading.source_id).in_(sources),
            TelemetryReading.measurement == measurement,
            TelemetryReading.ts >= start,
            TelemetryReading.ts < until,
        )
        .execution_options(**LONG_READ)
    )
    # a VEN reporting per resource (each charger, each battery behind it) is the sum of its resources
    rows = [
        (kind, f"{source}/{resource}" if kind == "ven" and resource else source, ts, value)
        for kind, source, resource, ts, value in await session.execute(query)
    ]
    values, used = aggregate(rows, start, step_s, max(buckets, 0))
    return Series(start, step_s, values, used)


def _fit_predict(
    target: str, node: dict, t: np.ndarray, y: np.ndarray, t_future: np.ndarray, nameplate_w: float = 0.0
):
    from forecasting import LoadForecaster, PVForecaster

    split_notes: list[str] = []
    if target in ("pv", "gross"):
        # the meter sees net load: PV and gross load are first separated with the nameplate and clear-sky shape
        parts = net_split.split(t, y, node["latitude"], node["longitude"], nameplate_w)
        y = parts.pv_w if target == "pv" else parts.load_w
        split_notes.append(
            f"split of the net load with {nameplate_w / 1000:.1f} kW PV nameplate, array tilt={parts.tilt:g} deg "
            f"azimuth={parts.azimuth:g} deg (default orientation)"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model: PVForecaster | LoadForecaster
        if target == "pv":
            tilt, azimuth = net_split.default_orientation(node["latitude"])
            model = PVForecaster(
                node["latitude"], node["longitude"], capacity_w=nameplate_w, tilt=tilt, azimuth=azimuth
            ).fit(t, y)
        else:
            model = LoadForecaster(tz=node["timezone"]).fit(t, y)
        forecast = model.predict(t_future)
    notes = split_notes + [str(w.message) for w in caught] + list(getattr(forecast, "notes", []) or [])
    return type(model).__name__, forecast.mean, forecast.quantile(0.1), forecast.quantile(0.9), notes


async def pv_nameplate_w(session: AsyncSession, name: str) -> float:
    """The PV nameplate below a node: the newest ``ratedPower`` of each 2030.5 device and SunSpec asset in it."""
    sources = await grid.node_sources(session, name)
    total = 0.0
    for kind in ("device", "modbus"):
        ids = [sid for k, sid in sources if k == kind]
        if ids:
            total += sum((await telemetry.newest_values(session, kind, ids, "ratedPower")).values())
    return total


async def run_forecast(
    store: Store,
    name: str,
    horizon_s: int = 86_400,
    step_s: int = 900,
    history_days: int = 28,
    target: str = "load",
    measurement: str = "realPower",
    now: dt.datetime | None = None,
) -> dict:
    if target not in TARGETS:
        raise Invalid(f"target must be one of {', '.join(TARGETS)}")
    if not 300 <= step_s <= 3600 or step_s % 60:
        raise Invalid("step must be 5 to 60 minutes in whole minutes")
    if not step_s <= horizon_s <= 48 * 3600:
        raise Invalid("horizon must be one step to 48 hours")
    if not 1 <= history_days <= 3 * 366:
        raise Invalid("history must be 1 to 1098 days")
    now = now or utcnow()
    until = dt.datetime.fromtimestamp(now.timestamp() // step_s * step_s, dt.UTC)
    async with store.sessions() as session:
        node = await session.scalar(select(GridNode).where(GridNode.name == name))
        if node is None:
            raise NotFound(f"no grid node {name!r}")
        node_dict = {
            "name": node.name,
            "timezone": node.timezone,
            "latitude": node.latitude,
            "longitude": node.longitude,
        }
        series = await node_series(
            session, name, measurement, step_s, until - dt.timedelta(days=history_days), until
        )
        nameplate = 0.0
        if target in ("pv", "gross"):
            if node.latitude is None or node.longitude is None:
                raise Invalid(f"grid node {name!r} needs latitude/longitude for a {target} forecast")
            nameplate = await pv_nameplate_w(session, name)
            if nameplate <= 0:
                raise Invalid(
                    f"no PV nameplate below {name!r}: its devices have reported no DERCapability rtgMaxW "
                    "(ratedPower) yet"
                )
    valid = int(np.isfinite(series.values).sum())
    if valid < 2:
        raise Invalid(
            f"not enough {measurement} telemetry for {name!r} in the last {history_days} days "
            f"({valid} intervals)"
        )
    # learn from the first known interval on: leading unknowns only dilute the history
    first = int(np.argmax(np.isfinite(series.values)))
    t, y = series.times()[first:], series.values[first:]
    t_future = np.datetime64(int(until.timestamp()), "s") + np.arange(
        1, horizon_s // step_s + 1
    ) * np.timedelta64(step_s, "s")
    try:
        model, mean, q10, q90, notes = await asyncio.get_running_loop().run_in_executor(
            None, _fit_predict, target, node_dict, t, y, t_future, nameplate
        )
    except ValueError as exc:  # the forecaster's own "cannot fit this" answers
        raise Invalid(f"forecast for {name!r} failed: {exc}") from None
    run = ForecastRun(
        target=target,
        measurement=measurement,
        issued_at=now,
        step_s=step_s,
        horizon_s=horizon_s,
        history_points=valid,
        model=model,
        notes="\n".join(notes),
    )
    run.points = [
        ForecastPoint(
            ts=dt.datetime.fromtimestamp(int(ts.astype("datetime64[s]").astype(int)), dt.UTC),
            mean=float(m),
            q10=float(lo),
            q90=float(hi),
        )
        for ts, m, lo, hi in zip(t_future, mean, q10, q90, strict=True)
    ]
    async with store.sessions.begin() as session:
        node_id = await session.scalar(select(GridNode.id).where(GridNode.name == name))
        if node_id is None:  # deleted while the model was fitting
            raise NotFound(f"no grid node {name!r}")
        run.node_id = node_id
        session.add(run)
        await session.flush()
        return run_dict(run, name, series.sources, timezone=str(node_dict["timezone"]))


def run_dict(run: ForecastRun, node: str, sources: int | None = None, timezone: str = "UTC") -> dict:
    return {
        "id": run.id,
        "node": node,
        "timezone": timezone,  # the node's zone: what people reading the times expect them in
        "target": run.target,
        "measurement": run.measurement,
        "issued_at": run.issued_at.isoformat(),
        "step_s": run.step_s,
        "horizon_s": run.horizon_s,
        "history_points": run.history_points,
        "model": run.model,
        "notes": run.notes.splitlines(),
        "sources": sources,
        "unit": "W",
        "points": [{"ts": p.ts.isoformat(), "mean": p.mean, "q10": p.q10, "q90": p.q90} for p in run.points],
    }


async def latest_forecast(store: Store, name: str, target: str = "load") -> dict:
    from sqlalchemy.orm import selectinload

    async with store.sessions() as session:
        node = await session.scalar(select(GridNode).where(GridNode.name == name))
        if node is None:
            raise NotFound(f"no grid node {name!r}")
        run = await session.scalar(
            select(ForecastRun)
            .where(ForecastRun.node_id == node.id, ForecastRun.target == target)
            .order_by(ForecastRun.issued_at.desc(), ForecastRun.id.desc())
            .limit(1)
            .options(selectinload(ForecastRun.points))
        )
        if run is None:
            raise NotFound(f"no {target} forecast stored for {name!r} yet")
        return run_dict(run, name, timezone=node.timezone)


async def forecast_all(store: Store, horizon_s: int, step_s: int, history_days: int) -> dict[str, str]:
    """The scheduled job: forecast every node that has members; a node that cannot be forecast is reported."""
    async with store.sessions() as session:
        names = [n.name for n in await grid.list_nodes(session) if n.members]
    outcome: dict[str, str] = {}
    for name in names:
        try:
            run = await run_forecast(store, name, horizon_s, step_s, history_days)
            outcome[name] = f"run {run['id']}"
        except (Invalid, NotFound) as exc:
            outcome[name] = f"skipped: {exc}"
    return outcome
