"""Plans as records: each run of the planner is one row from the moment it starts (``running``) to its end
(``failed`` with the reason, ``proposed`` awaiting an operator, or ``active``); the plan in force is the newest
``active`` plan of its model, and making a plan active supersedes the one before. Every event a plan dispatched
links back to it with the reason (``plan_event``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import Conflict, NotFound
from server.store.models import Plan, PlanEvent
from server.store.types import utcnow

RUNNING, FAILED, PROPOSED, ACTIVE, SUPERSEDED = "running", "failed", "proposed", "active", "superseded"
STATUSES = (RUNNING, FAILED, PROPOSED, ACTIVE, SUPERSEDED)
TRIGGERS = ("day_ahead", "intraday", "manual")


def plan_dict(p: Plan, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "model": p.model_name,
        "grid_model_id": p.grid_model_id,
        "trigger": p.trigger,
        "status": p.status,
        "reason": p.reason,
        "created_at": p.created_at.isoformat(),
        "finished_at": p.finished_at.isoformat() if p.finished_at else None,
        "start": p.start.isoformat(),
        "step_s": p.step_s,
        "steps": p.steps,
        "approved_by": p.approved_by,
        "approved_at": p.approved_at.isoformat() if p.approved_at else None,
        "dispatched_at": p.dispatched_at.isoformat() if p.dispatched_at else None,
        "summary": (p.check or {}).get("summary", {}),
    }
    if full:
        out |= {"inputs": p.inputs, "outputs": p.outputs, "check": p.check}
    return out


async def begin(
    session: AsyncSession, model_name: str, trigger: str, start: dt.datetime, step_s: int, steps: int
) -> Plan:
    plan = Plan(
        model_name=model_name, trigger=trigger, status=RUNNING, start=start, step_s=step_s, steps=steps
    )
    session.add(plan)
    await session.flush()
    return plan


async def get(session: AsyncSession, plan_id: int) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id}")
    return plan


async def fail(session: AsyncSession, plan: Plan, reason: str, inputs: dict[str, Any] | None = None) -> None:
    plan.status = FAILED
    plan.reason = reason[:4000]
    plan.finished_at = utcnow()
    if inputs is not None:
        plan.inputs = inputs
    await session.flush()


async def in_force(session: AsyncSession, model_name: str) -> Plan | None:
    return await session.scalar(
        select(Plan)
        .where(Plan.model_name == model_name, Plan.status == ACTIVE)
        .order_by(Plan.id.desc())
        .limit(1)
    )


async def activate(session: AsyncSession, plan: Plan, now: dt.datetime | None = None) -> Plan | None:
    """Make ``plan`` the one in force; returns its predecessor (now superseded)."""
    before = await in_force(session, plan.model_name)
    await session.execute(
        update(Plan)
        .where(Plan.model_name == plan.model_name, Plan.status.in_([ACTIVE, PROPOSED]), Plan.id != plan.id)
        .values(status=SUPERSEDED)
    )
    plan.status = ACTIVE
    plan.dispatched_at = now or utcnow()
    await session.flush()
    return before


async def approve(session: AsyncSession, plan: Plan, who: str) -> None:
    if plan.status != PROPOSED:
        raise Conflict(f"plan {plan.id} is {plan.status}: only a proposed plan can be approved")
    newer = await session.scalar(
        select(func.count()).where(
            Plan.model_name == plan.model_name, Plan.id > plan.id, Plan.status.in_([ACTIVE, PROPOSED])
        )
    )
    if newer:
        raise Conflict(f"plan {plan.id} has been superseded by a newer plan of {plan.model_name!r}")
    plan.approved_by = who[:64]
    plan.approved_at = utcnow()
    await session.flush()


async def link(
    session: AsyncSession, plan_id: int, event_id: int, resource: str, why: dict[str, Any]
) -> None:
    exists = await session.get(PlanEvent, (plan_id, event_id))
    if exists is None:
        session.add(PlanEvent(plan_id=plan_id, event_id=event_id, resource=resource[:100], why=why))
        await session.flush()


async def links(session: AsyncSession, plan_id: int) -> list[PlanEvent]:
    return list(
        await session.scalars(
            select(PlanEvent).where(PlanEvent.plan_id == plan_id).order_by(PlanEvent.event_id)
        )
    )


async def of_event(session: AsyncSession, event_id: int) -> list[dict[str, Any]]:
    """The plans that created (or kept) an event, newest first, with why."""
    rows = (
        await session.execute(
            select(PlanEvent, Plan)
            .join(Plan, Plan.id == PlanEvent.plan_id)
            .where(PlanEvent.event_id == event_id)
            .order_by(Plan.id.desc())
        )
    ).all()
    return [
        {"plan": p.id, "model": p.model_name, "status": p.status, "resource": pe.resource, "why": pe.why}
        for pe, p in rows
    ]


async def page(session: AsyncSession, model: str | None, limit: int, offset: int) -> tuple[int, list[Plan]]:
    q = select(Plan)
    if model:
        q = q.where(Plan.model_name == model)
    total = await session.scalar(select(func.count()).select_from(q.subquery()))
    rows = await session.scalars(q.order_by(Plan.id.desc()).limit(limit).offset(offset))
    return int(total or 0), list(rows)
