"""One turn of the loop for one stored network model: inputs (the newest model version, each zone's newest
forecast, the flexibility snapshot, the flexibility already bought) -> the planner (in an executor) -> the plan stored with its inputs, outputs
and power-flow check -> dispatched at once (``orchestration.approval = automatic``) or proposed to an operator.

A turn that fails marks its plan failed with the reason and raises an alarm (``forecast_failed`` when a zone
had no usable forecast, ``plan_failed`` otherwise, subject ``model:NAME``); the plan in force stays in force,
because nothing of it is touched until a new plan is made active. A turn that succeeds clears both alarms."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.config import Settings
from server.core import alarms, grid_models, plans
from server.orchestration import clearing, flexibility
from server.orchestration.plan_dispatch import dispatch_plan
from server.orchestration.plan_model import LoopInputs, MissingForecast, OfferInput, ZoneForecast
from server.orchestration.plan_solve import solve
from server.orchestration.resources import clock_price
from server.store import Store
from server.store.models import ForecastRun, GridNode
from server.store.types import utcnow

log = logging.getLogger("dso.loop")


class PlanFailed(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class PlanInterrupted(Exception):
    """The plan could not be completed or its failure not recorded (the database went away): the caller keeps
    the failure until it can be recorded."""

    def __init__(self, plan_id: int, reason: str) -> None:
        super().__init__(reason)
        self.plan_id = plan_id
        self.reason = reason


def subject(model_name: str) -> str:
    return f"model:{model_name}"


def horizon(trigger: str, now: dt.datetime, step_s: int, horizon_s: int) -> tuple[dt.datetime, int]:
    """Day-ahead: the next UTC day; otherwise from the next interval on (what a forecast issued now covers;
    the first block is applied from the moment it is dispatched, so nothing is left uncovered)."""
    if trigger == "day_ahead":
        start = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        return start, 86_400 // step_s
    start = dt.datetime.fromtimestamp((now.timestamp() // step_s + 1) * step_s, dt.UTC)
    return start, max(1, horizon_s // step_s)


async def _forecasts(
    session: Any, zones: dict[str, Any], max_age_s: int, now: dt.datetime
) -> tuple[dict[str, ZoneForecast], list[str]]:
    out: dict[str, ZoneForecast] = {}
    stale: list[str] = []
    for zone, info in zones.items():
        node = await session.scalar(select(GridNode).where(GridNode.name == info["node"]))
        if node is None:
            continue
        run = await session.scalar(
            select(ForecastRun)
            .where(ForecastRun.node_id == node.id, ForecastRun.target == "load")
            .order_by(ForecastRun.issued_at.desc(), ForecastRun.id.desc())
            .limit(1)
            .options(selectinload(ForecastRun.points))
        )
        if run is None:
            continue
        if (now - run.issued_at).total_seconds() > max_age_s:
            stale.append(f"{info['node']} (newest run {run.id} issued {run.issued_at.isoformat()})")
            continue
        out[zone] = ZoneForecast(
            info["node"], run.id, run.issued_at.isoformat(), {p.ts.isoformat(): p.mean for p in run.points}
        )
    return out, stale


def _covered_steps(
    fcs: dict[str, ZoneForecast],
    summary: dict[str, Any],
    mapped: list[dict[str, Any]],
    start: dt.datetime,
    step_s: int,
    steps: int,
) -> int:
    """The horizon shortened to what every mapped zone's forecast covers (a forecast issued just before an
    interval boundary ends one interval earlier than the plan would); a zone without any is left to fail."""
    zones = {str(summary["bus_zone"][str(m["bus"])]) for m in mapped}
    ends = []
    for z in zones:
        if z in fcs and fcs[z].points:
            last = dt.datetime.fromisoformat(max(fcs[z].points))
            ends.append(int((last - start).total_seconds()) // step_s + 1)
    return max(1, min([steps, *ends])) if ends else steps


async def run_plan(
    store: Store, settings: Settings, model_name: str, trigger: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Plan ``model_name`` once; returns the plan as stored. Raises PlanFailed after recording the failure, and
    PlanInterrupted when the store failed under it."""
    o = settings.orchestration
    now = now or utcnow()
    step_s = o.forecast_step_s
    start, steps = horizon(trigger, now, step_s, o.plan_horizon_s)
    async with store.sessions.begin() as session:
        plan = await plans.begin(session, model_name, trigger, start, step_s, steps)
        plan_id = plan.id
    try:
        return await _run(store, settings, plan_id, model_name, now, start, steps)
    except PlanFailed:
        raise
    except Exception as exc:
        log.exception("plan %s of %s could not be completed", plan_id, model_name)
        raise PlanInterrupted(
            plan_id, f"the plan could not be completed: {type(exc).__name__}: {exc}"
        ) from exc


async def _run(
    store: Store,
    settings: Settings,
    plan_id: int,
    model_name: str,
    now: dt.datetime,
    start: dt.datetime,
    steps: int,
) -> dict[str, Any]:
    o = settings.orchestration
    step_s = o.forecast_step_s
    record: dict[str, Any] = {}
    try:
        async with store.sessions() as session:
            model = await grid_models.latest(session, model_name)
            mapped = await grid_models.mappings(session, model_name)
            feeder = await session.scalar(select(GridNode).where(GridNode.name == model_name))
            fcs, stale = await _forecasts(session, model.summary["zones"], o.forecast_max_age_s, now)
            resources = await flexibility.snapshot(session, mapped, now, o.noncompliance_hold_s)
            steps = _covered_steps(fcs, model.summary, mapped, start, step_s, steps)
            bought = await flexibility.cleared(session, mapped, start, step_s, steps)
            end = start + dt.timedelta(seconds=step_s * steps)
            offered = await flexibility.open_offers(session, mapped, start, end)
            firm: dict[int, list[float]] = {}
            for c in bought:
                firm[c.bus] = [a + b for a, b in zip(firm.get(c.bus, [0.0] * steps), c.kw, strict=True)]
            record = {
                "grid_model": {"id": model.id, "name": model.name, "version": model.version},
                "forecasts": {f.node: {"run": f.run_id, "issued_at": f.issued_at} for f in fcs.values()},
                "stale_forecasts": stale,
                "flexibility": [r.to_dict() for r in resources],
                "cleared_flexibility": [c.to_dict() for c in bought],
                "offers": [
                    {
                        "id": o.id,
                        "ven": ven_id,
                        "bus": bus,
                        "start": o.start.isoformat(),
                        "end": o.end_at.isoformat(),
                        "up_kw": o.up_kw,
                        "down_kw": o.down_kw,
                        "price": o.price,
                        "status": o.status,
                        "cleared_by_plan": o.plan_id,
                        "source": f"openadr opt {o.opt_id}" if o.opt_id else "admin",
                    }
                    for o, ven_id, bus in offered
                ],
                "mappings": mapped,
                "options": {
                    "quantile": o.quantile,
                    "policy": o.envelope_policy,
                    "iterations": o.plan_iterations,
                    "approval": o.approval,
                    "step_s": step_s,
                    "start": start.isoformat(),
                    "steps": steps,
                },
            }
            inputs = LoopInputs(
                model=model.model,
                summary=model.summary,
                start=start,
                step_s=step_s,
                steps=steps,
                forecasts=fcs,
                resources=resources,
                latitude=feeder.latitude if feeder else None,
                longitude=feeder.longitude if feeder else None,
                quantile=o.quantile,
                policy=o.envelope_policy,
                iterations=o.plan_iterations,
                time_limit_s=o.solver_time_limit_s,
                firm_kw=firm,
                price=_price(o.price_tariff, start, step_s, steps),
                offers=[
                    OfferInput(o.id, ven_id, bus, o.start, o.end_at, o.up_kw, o.down_kw, o.price)
                    for o, ven_id, bus in offered
                ],
            )
            grid_model_id = model.id
        if not mapped:
            raise PlanFailed(alarms.PLAN_FAILED, f"nothing is mapped to {model_name!r} (dso grid map)")
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, solve, inputs)
        except MissingForecast as exc:
            note = f"; stale: {', '.join(stale)}" if stale else ""
            raise PlanFailed(alarms.FORECAST_FAILED, f"{exc}{note}") from None
        except Exception as exc:  # the planner's own failures: a solver status, a power flow, bad data
            log.exception("plan %s of %s failed", plan_id, model_name)
            raise PlanFailed(alarms.PLAN_FAILED, f"solve failed: {type(exc).__name__}: {exc}") from None
    except PlanFailed as exc:
        await _record_failure(store, plan_id, model_name, exc.kind, exc.reason, record)
        raise
    if o.price_tariff and "price" in result["outputs"]:
        result["outputs"]["price"]["tariff"] = o.price_tariff
    record["defaults"] = sorted(
        {d for r in record["flexibility"] for d in r["defaults"]} | set(result["defaults"])
    )
    async with store.sessions.begin() as session:
        plan = await plans.get(session, plan_id)
        plan.grid_model_id = grid_model_id
        plan.steps = inputs.steps
        plan.inputs = record
        plan.outputs = result["outputs"]
        plan.check = result["check"]
        plan.finished_at = utcnow()
        if o.approval == "automatic":
            await _put_in_force(session, settings, plan, utcnow())
        else:
            plan.status = plans.PROPOSED
        for kind in (alarms.PLAN_FAILED, alarms.FORECAST_FAILED):
            await alarms.clear(session, kind, subject(model_name))
        return plans.plan_dict(plan)


def _price(tariff: str, start: dt.datetime, step_s: int, steps: int) -> list[float] | None:
    """The price the plan holds against and publishes, when a tariff is named for it."""
    if not tariff:
        return None
    hours = (start.timestamp() + step_s * (np.arange(steps) + 0.5)) % 86_400 / 3600
    return [float(x) for x in clock_price(hours)]


async def _put_in_force(session: Any, settings: Settings, plan: Any, now: dt.datetime) -> None:
    predecessor = await plans.activate(session, plan, now)
    o = settings.orchestration
    await clearing.hold_plan_offers(session, plan)
    await dispatch_plan(
        session,
        plan,
        predecessor,
        o.plan_primacy,
        settings.openadr.market_context,
        settings.openadr.near_window_s,
        now,
    )
    await clearing.record_plan_clearing(session, plan, now)


async def approve(store: Store, settings: Settings, plan_id: int, who: str) -> dict[str, Any]:
    async with store.sessions.begin() as session:
        plan = await plans.get(session, plan_id)
        await plans.approve(session, plan, who)
        await _put_in_force(session, settings, plan, utcnow())
        return plans.plan_dict(plan)


async def _record_failure(
    store: Store, plan_id: int, model_name: str, kind: str, reason: str, record: dict[str, Any]
) -> None:
    async with store.sessions.begin() as session:
        plan = await plans.get(session, plan_id)
        await plans.fail(session, plan, reason, record or None)
        kept = await plans.in_force(session, model_name)
        message = f"plan {plan_id} of {model_name} failed: {reason}" + (
            f"; plan {kept.id} stays in force" if kept else "; no plan is in force"
        )
        await alarms.raise_alarm(session, kind, subject(model_name), message)
    log.warning("%s", message)
