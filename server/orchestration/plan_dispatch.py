"""A plan becomes events through the one core call (``events.create``), and a re-plan reconciles with the plan
before it instead of piling up:

* 2030.5 devices: each resource's blocks are DERControls in a program of the plan's own for that device
  (``plan:LFDI`` for its export limit, ``plan:LFDI:storage`` for its battery setpoint), of primacy
  ``orchestration.plan_primacy`` so that staff controls win. A block equal to a live control of the
  predecessor (same value, same end) keeps that control; a new control supersedes the predecessor's
  overlapping ones by the event rules (newer creationTime within a program); a predecessor control the new
  plan overlaps nowhere is cancelled.
* OpenADR VENs: one LOAD_DISPATCH event per VEN over its blocks (0 between them); a re-plan modifies the
  predecessor's event (modificationNumber counts it), or cancels it when the VEN is no longer needed.
* SunSpec Modbus inverters: each block's export limit, in % of the nameplate, queued with
  ``schedule_modbus`` for its start and released at its end; a re-plan drops the predecessor's blocks not
  yet applied.

Every event (created or kept) links to the plan with the block's reason (``plans.link``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core import events, oadr_events, plans, programs, telemetry
from server.core.dispatch import APPLY, schedule_modbus
from server.store.models import EndDevice, Event, Plan, PlanEvent, Program, Ven


@dataclass
class Dispatched:
    created: int = 0
    kept: int = 0
    cancelled: int = 0
    modified: int = 0
    modbus_blocks: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _span(plan: Plan, block: dict[str, Any], now: dt.datetime) -> tuple[dt.datetime, int] | None:
    start = plan.start + dt.timedelta(seconds=plan.step_s * block["t0"])
    end = plan.start + dt.timedelta(seconds=plan.step_s * block["t1"])
    now = now.replace(microsecond=0)  # whole seconds: the block still ends on its interval boundary
    if block["t0"] == 0 and plan.trigger != "day_ahead":
        start = min(start, now)  # an intraday plan's first interval applies from its dispatch on
    start = max(start, now)
    if end <= start:
        return None
    return start, int((end - start).total_seconds())


async def _plan_program(session: AsyncSession, device: EndDevice, suffix: str, primacy: int) -> Program:
    name = f"plan:{device.lfdi}{suffix}"
    program = await session.scalar(select(Program).where(Program.kind == "der", Program.name == name))
    if program is None:
        program = await programs.create_program(session, name, primacy, description="plan")
    await programs.assign(session, program, device)
    return program


async def _live(session: AsyncSession, program_id: int, now: dt.datetime) -> list[Event]:
    return list(
        await session.scalars(
            select(Event).where(
                Event.program_id == program_id, Event.cancelled_at.is_(None), Event.end_at > now
            )
        )
    )


async def _device_blocks(
    session: AsyncSession,
    plan: Plan,
    key: str,
    res: dict[str, Any],
    device: EndDevice,
    primacy: int,
    now: dt.datetime,
    out: Dispatched,
) -> None:
    suffix = ":storage" if res["kind"] == "battery" else ""
    program = await _plan_program(session, device, suffix, primacy)
    live = await _live(session, program.id, now)
    kept: set[int] = set()
    made: list[Event] = []
    for block in res["blocks"]:
        span = _span(plan, block, now)
        if span is None:
            continue
        start, duration = span
        end = start + dt.timedelta(seconds=duration)
        base = {block["field"]: block["value_w"]}
        same = next(
            (
                e
                for e in live
                if e.id not in kept and e.end_at == end and e.start <= start and e.payload.get("base") == base
            ),
            None,
        )
        if same is not None:
            kept.add(same.id)
            out.kept += 1
            await plans.link(session, plan.id, same.id, key, block["why"] | {"block": block["start"]})
            continue
        event = await events.create(
            session,
            program,
            events.NewEvent(
                start=start, duration_s=duration, payload={"base": base}, description=f"plan {plan.id}"
            ),
        )
        made.append(event)
        out.created += 1
        await plans.link(session, plan.id, event.id, key, block["why"] | {"block": block["start"]})
    for e in live:
        if e.id in kept:
            continue
        overlapped = any(e.start < m.end_at and m.start < e.end_at for m in made)
        if not overlapped:  # nothing of the new plan supersedes it: the plan no longer wants it
            await events.cancel(session, e)
            out.cancelled += 1


def _ven_intervals(
    plan: Plan, blocks: list[dict[str, Any]], now: dt.datetime
) -> tuple[dt.datetime, list[dict]]:
    spans = [(b, _span(plan, b, now)) for b in blocks]
    spans = [(b, s) for b, s in spans if s is not None]
    if not spans:
        return now, []
    first = spans[0][1]
    assert first is not None
    start = first[0]
    cursor = start
    intervals: list[dict[str, Any]] = []
    for b, s in spans:
        assert s is not None
        if s[0] > cursor:
            intervals.append({"duration_s": int((s[0] - cursor).total_seconds()), "value": 0.0})
        intervals.append({"duration_s": s[1], "value": float(b["value_w"])})
        cursor = s[0] + dt.timedelta(seconds=s[1])
    return start, intervals


async def _ven_event(
    session: AsyncSession,
    plan: Plan,
    predecessor: Plan | None,
    key: str,
    res: dict[str, Any],
    ven: Ven,
    market_context: str,
    near_window_s: int,
    now: dt.datetime,
    out: Dispatched,
) -> None:
    start, intervals = _ven_intervals(plan, res["blocks"], now)
    old: Event | None = None
    if predecessor is not None:
        old = await session.scalar(
            select(Event)
            .join(PlanEvent, PlanEvent.event_id == Event.id)
            .where(
                PlanEvent.plan_id == predecessor.id,
                PlanEvent.resource == key,
                Event.cancelled_at.is_(None),
                Event.end_at > now,
            )
        )
    why = {
        "blocks": [b["why"] | {"start": b["start"], "value_w": b["value_w"]} for b in res["blocks"]][:24],
    }
    if not intervals:
        if old is not None:
            await events.cancel(session, old)
            out.cancelled += 1
        return
    if old is not None:
        current = (old.payload.get("signal") or {}).get("intervals")
        if old.start == start and current == intervals:
            out.kept += 1
        else:
            await events.modify(
                session, old, start=start, intervals=intervals, reason=f"re-planned by plan {plan.id}"
            )
            out.modified += 1
        await plans.link(session, plan.id, old.id, key, why)
        return
    info = await oadr_events.create_event(
        session,
        signal_name="LOAD_DISPATCH",
        signal_type="delta",
        start=start,
        market_context=market_context,
        near_window_s=near_window_s,
        intervals=intervals,
        ven_names=[ven.name],
        comment=f"plan {plan.id}",
    )
    out.created += 1
    await plans.link(session, plan.id, int(info.id), key, why)


async def _modbus_blocks(
    session: AsyncSession,
    plan: Plan,
    predecessor: Plan | None,
    key: str,
    res: dict[str, Any],
    now: dt.datetime,
    out: Dispatched,
) -> list[dict[str, Any]]:
    name = res["id"]
    old = ((predecessor.outputs or {}).get("modbus") or {}).get(key, []) if predecessor else []
    for entry in old:
        if await delivery.has_unclaimed(session, entry["key"], APPLY):
            await delivery.discard(session, entry["key"])
    rated = (await telemetry.newest_values(session, "modbus", [name], "ratedPower")).get(name)
    if not rated:
        out.skipped.append(f"modbus {name}: nameplate unknown, cannot express a limit in %")
        return []
    queued = []
    for block in res["blocks"]:
        span = _span(plan, block, now)
        if span is None:
            continue
        start, duration = span
        pct = round(min(100.0, 100.0 * block["value_w"] / float(rated)), 1)
        write = {"name": name, "export_limit_pct": pct, "connect": None}
        k = schedule_modbus(session, write, start, start + dt.timedelta(seconds=duration))
        queued.append({"key": k, "start": start.isoformat(), "duration_s": duration, "pct": pct})
        out.modbus_blocks += 1
    return queued


async def dispatch_plan(
    session: AsyncSession,
    plan: Plan,
    predecessor: Plan | None,
    primacy: int,
    market_context: str,
    near_window_s: int,
    now: dt.datetime,
) -> Dispatched:
    out = Dispatched()
    resources: dict[str, Any] = plan.outputs.get("resources", {})
    lfdis = [r["id"] for r in resources.values() if r["party"] == "device"]
    devices = {d.lfdi: d for d in await session.scalars(select(EndDevice).where(EndDevice.lfdi.in_(lfdis)))}
    ven_ids = [r["id"] for r in resources.values() if r["party"] == "ven"]
    vens = {v.ven_id: v for v in await session.scalars(select(Ven).where(Ven.ven_id.in_(ven_ids)))}
    modbus: dict[str, Any] = {}
    for key, res in sorted(resources.items()):
        if res["party"] == "device":
            device = devices.get(res["id"])
            if device is None:
                out.skipped.append(f"device {res['id']}: no longer enrolled")
                continue
            await _device_blocks(session, plan, key, res, device, primacy, now, out)
        elif res["party"] == "ven":
            ven = vens.get(res["id"])
            if ven is None:
                out.skipped.append(f"ven {res['id']}: no longer enrolled")
                continue
            await _ven_event(
                session, plan, predecessor, key, res, ven, market_context, near_window_s, now, out
            )
        elif res["party"] == "modbus":
            modbus[key] = await _modbus_blocks(session, plan, predecessor, key, res, now, out)
    # the predecessor's resources this plan has nothing for: their live events end now
    if predecessor is not None:
        mine = set(resources)
        for pe in await plans.links(session, predecessor.id):
            if pe.resource in mine:
                continue
            event = await session.get(Event, pe.event_id)
            if event is not None and event.cancelled_at is None and event.end_at > now:
                await events.cancel(session, event)
                out.cancelled += 1
    plan.outputs = plan.outputs | {"modbus": modbus, "dispatched": out.to_dict()}
    await session.flush()
    return out
