"""A plan becomes events through the one core call (``events.create``), and a re-plan reconciles with the plan
before it instead of piling up:

* 2030.5 devices: each resource's blocks are events in a program of the plan's own for that device, of
  primacy ``orchestration.plan_primacy`` so that staff controls win: DERControls in ``plan:LFDI`` (its site's
  envelope: opModExpLimW and opModImpLimW where they bind, one control per run of equal limits),
  ``plan:LFDI:storage`` (its battery's opModTargetW) and ``plan:LFDI:ev`` (its EV charging as opModImpLimW);
  DRLC EndDeviceControls (a targetReduction in W) in the DR program ``plan:LFDI:dr`` it is enrolled in. A
  block equal to a live event of the program (same payload, same end, beginning with the block, or at any time
  up to now when the block is under way) keeps that event unless something newer that stays overlaps it: by the
  event rules a newer overlapping event of the program supersedes it entirely (newer creationTime wins, for
  DERControls, EndDeviceControls and TimeTariffIntervals alike). An old event that began before a block still
  to come is not kept: it covers intervals where the plan now wants another event (which would supersede it)
  or none (which the device would follow it through). A block whose match is not kept gets a new event, which
  may overlap another kept one in turn (repeated until nothing changes); an unchanged re-plan keeps every event
  and creates none. A new DERControl supersedes the older overlapping ones; a live event the new plan does not
  keep is cancelled (a DERControl only where nothing new overlaps it).
* the plan's price series (when the loop planned against one, ``orchestration.price_tariff``): one
  TimeTariffInterval per run of equal prices in the tariff's rate component ``plan energy``, each with the
  OpenADR ELECTRICITY_PRICE signal the tariff's VENs receive; the plan's devices and VENs are enrolled. A
  re-plan reconciles them as above.
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
from server.core import events, oadr_events, plans, pricing, programs, telemetry
from server.core.dispatch import APPLY, schedule_modbus
from server.store.models import EndDevice, Event, Plan, PlanEvent, Program, Ven

PLAN_RATE = "plan energy"


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


async def _dr_program(session: AsyncSession, device: EndDevice, primacy: int) -> Program:
    name = f"plan:{device.lfdi}:dr"
    program = await session.scalar(
        select(Program).where(Program.kind == "dr", Program.name == name, Program.parent_ref == 0)
    )
    if program is None:
        program = await programs.create(session, "dr", name, primacy=primacy, description="plan")
    await programs.add_member(session, program, device=device)
    return program


def _der_payload(block: dict[str, Any]) -> dict[str, Any]:
    return {"base": block.get("base") or {block["field"]: block["value_w"]}}


def _dr_payload(block: dict[str, Any]) -> dict[str, Any]:
    """A DRLC EndDeviceControl: the planned reduction as targetReduction in W (UnitType 2), and for a VEN of the
    program the same as a LOAD_DISPATCH delta."""
    watts = int(min(65535, max(0, round(block["value_w"]))))
    return {
        "device_category": block.get("device_category") or "00000001",
        "control": {"targetReduction": {"type": 2, "value": watts}},
        "signal": {
            "name": "LOAD_DISPATCH",
            "type": "delta",
            "intervals": [{"duration_s": 1, "value": -watts}],
        },
    }


def _price_payload(block: dict[str, Any]) -> dict[str, Any]:
    return {"tou_tier": 0, "tiers": [{"price": int(block["price"]), "start_value": 0}]}


def _same(kind: str, event: Event, payload: dict[str, Any]) -> bool:
    """Does a live event already say what ``payload`` would (its stored, checked form)?"""
    if kind == "der":
        return bool(event.payload.get("base") == payload["base"])
    if kind == "dr":
        return bool(
            event.payload.get("control") == payload["control"]
            and event.payload.get("deviceCategory") == int(payload["device_category"], 16)
        )
    return [t["price"] for t in event.payload.get("tiers", [])] == [t["price"] for t in payload["tiers"]]


@dataclass(frozen=True)
class _Wanted:
    """A block as the event it asks for: ``payload`` over [start, end)."""

    block: dict[str, Any]
    start: dt.datetime
    end: dt.datetime
    payload: dict[str, Any]


def _overlaps(e: Event, start: dt.datetime, end: dt.datetime) -> bool:
    return e.start < end and start < e.end_at


def _begins_with(e: Event, w: _Wanted, now: dt.datetime) -> bool:
    """Does a live event begin where the block does? Exactly at its start, or anywhere up to now when the block
    is under way (``_span`` clips its start to now, so a re-plan a little later finds its event begun earlier).
    One that begins before a block still to come covers intervals the plan now wants something else in, or
    nothing: a new event there supersedes it, and where there is none the device would follow it."""
    now = now.replace(microsecond=0)  # as ``_span`` clips
    return e.start == w.start or (w.start == now and e.start <= now)


def _match(kind: str, wanted: list[_Wanted], live: list[Event], now: dt.datetime) -> dict[int, Event]:
    """Index of a block -> a live event equal to it (same payload, same end, ``_begins_with`` it). Of several
    (under way), the one beginning last, then the newest."""
    matched: dict[int, Event] = {}
    taken: set[int] = set()
    for i, w in enumerate(wanted):
        found = [
            e
            for e in live
            if e.id not in taken
            and e.end_at == w.end
            and _begins_with(e, w, now)
            and _same(kind, e, w.payload)
        ]
        if found:
            best = max(found, key=lambda e: (e.start, e.creation_time, e.id))
            matched[i] = best
            taken.add(best.id)
    return matched


def _in_force(
    kind: str, wanted: list[_Wanted], matched: dict[int, Event], live: list[Event], ended: list[Event]
) -> dict[int, Event]:
    """The matches a device will still follow after the re-plan. Within a program a newer overlapping event
    supersedes an older one entirely (2030.5 event rules, whatever the kind), so a match is dropped when an
    event the re-plan creates overlaps it, or when a newer event that stays overlaps it: another kept one, one
    that already ended (it can overlap a kept event under way, which began before now), or a DERControl left
    uncancelled because something new overlaps it. A dropped match makes its block a new event, which can overlap another kept one:
    repeated until nothing changes (matches only ever go, so it ends). An unchanged re-plan creates nothing, so
    it keeps everything."""
    matched = dict(matched)
    while True:
        made = [(w.start, w.end) for i, w in enumerate(wanted) if i not in matched]
        kept = {e.id for e in matched.values()}
        staying = ended + [
            e for e in live if e.id in kept or (kind == "der" and any(_overlaps(e, s, t) for s, t in made))
        ]
        dropped = [
            i
            for i, e in matched.items()
            if any(_overlaps(e, s, t) for s, t in made)
            or any(
                o.id != e.id
                and _overlaps(o, e.start, e.end_at)
                and (o.creation_time, o.id) > (e.creation_time, e.id)  # newer, as the event rules order them
                for o in staying
            )
        ]
        if not dropped:
            return matched
        for i in dropped:
            del matched[i]


async def _reconcile(
    session: AsyncSession,
    plan: Plan,
    key: str,
    program: Program,
    kind: str,
    blocks: list[dict[str, Any]],
    now: dt.datetime,
    out: Dispatched,
) -> None:
    """The blocks as events of ``program``: a live event equal to a block (same payload, same end,
    ``_begins_with`` it) is kept when nothing newer that stays overlaps it (``_in_force``), the rest created; a
    live DERControl not kept is cancelled where nothing new overlaps it (what overlaps it supersedes it), a live
    DR or price event not kept is cancelled."""
    make = {"der": _der_payload, "dr": _dr_payload, "price": _price_payload}[kind]
    found = await events.relevant(session, [program.id], now)
    live = [e for e in found if e.cancelled_at is None and e.end_at > now]
    ended = [e for e in found if e.cancelled_at is None and e.end_at <= now]
    wanted: list[_Wanted] = []
    for block in blocks:
        span = _span(plan, block, now)
        if span is None:
            continue
        start, duration = span
        payload = make(block)
        if "signal" in payload:
            payload["signal"]["intervals"][0]["duration_s"] = duration
        wanted.append(_Wanted(block, start, start + dt.timedelta(seconds=duration), payload))
    matched = _in_force(kind, wanted, _match(kind, wanted, live, now), live, ended)
    made: list[Event] = []
    for i, w in enumerate(wanted):
        why = w.block["why"] | {"block": w.block["start"]}
        same = matched.get(i)
        if same is not None:
            out.kept += 1
            await plans.link(session, plan.id, same.id, key, why)
            continue
        duration = int((w.end - w.start).total_seconds())
        event = await events.create(
            session,
            program,
            events.NewEvent(
                start=w.start, duration_s=duration, payload=w.payload, description=f"plan {plan.id}"
            ),
        )
        made.append(event)
        out.created += 1
        await plans.link(session, plan.id, event.id, key, why)
    kept = {e.id for e in matched.values()}
    for e in live:
        if e.id in kept:
            continue
        overlapped = any(_overlaps(e, m.start, m.end_at) for m in made)
        # nothing of the new plan supersedes it: the plan no longer wants it. A DR or price event reaches
        # OpenADR VENs too, which do not apply the 2030.5 supersession: the old one is cancelled either way
        if not overlapped or kind != "der":
            await events.cancel(session, e)
            out.cancelled += 1


SUFFIX = {"battery": ":storage", "ev": ":ev"}


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
    if res["kind"] == "dr":
        program = await _dr_program(session, device, primacy)
        await _reconcile(session, plan, key, program, "dr", res["blocks"], now, out)
        return
    program = await _plan_program(session, device, SUFFIX.get(res["kind"], ""), primacy)
    await _reconcile(session, plan, key, program, "der", res["blocks"], now, out)


async def _price_blocks(
    session: AsyncSession, plan: Plan, tariff_name: str, primacy: int, now: dt.datetime, out: Dispatched
) -> None:
    """The plan's price series as TimeTariffIntervals of the tariff ``tariff_name`` (its rate component
    ``plan energy``: energy delivered, per kWh, prices in thousandths of the currency), each carrying the
    OpenADR ELECTRICITY_PRICE its VENs receive; every 2030.5 device and VEN the plan has a resource for is
    enrolled in the tariff."""
    price = plan.outputs["price"]["per_kwh"]
    tariff = await session.scalar(
        select(Program).where(Program.kind == "price", Program.name == tariff_name, Program.parent_ref == 0)
    )
    if tariff is None:
        tariff = await pricing.create_tariff(
            session, tariff_name, price_power_of_ten=-3, primacy=primacy, description="plan"
        )
    rate = await session.scalar(
        select(Program).where(
            Program.kind == "rate", Program.parent_id == tariff.id, Program.name == PLAN_RATE
        )
    )
    if rate is None:
        rate = await pricing.add_rate(session, tariff, PLAN_RATE, power_of_ten=3, description="plan")
    milli = [round(float(p) * 1000) for p in price]
    blocks = []
    for t0, t1, value in plan_solve_blocks(milli):
        blocks.append(
            {
                "t0": t0,
                "t1": t1,
                "start": plan.outputs["intervals"][t0],
                "price": value,
                "why": {"price_per_kwh": value / 1000, "source": "the plan's objective"},
            }
        )
    resources: dict[str, Any] = plan.outputs.get("resources", {})
    lfdis = sorted({r["id"] for r in resources.values() if r["party"] == "device"})
    for device in await session.scalars(select(EndDevice).where(EndDevice.lfdi.in_(lfdis))):
        await programs.add_member(session, tariff, device=device)
    ven_ids = sorted({r["id"] for r in resources.values() if r["party"] == "ven"})
    for ven in await session.scalars(select(Ven).where(Ven.ven_id.in_(ven_ids))):
        await programs.add_member(session, tariff, ven=ven)
    await _reconcile(session, plan, f"price:{tariff_name}", rate, "price", blocks, now, out)


def plan_solve_blocks(values: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal values: [(first, end (exclusive), value)]."""
    out: list[tuple[int, int, int]] = []
    for t, v in enumerate(values):
        if out and out[-1][2] == v and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1, v)
        else:
            out.append((t, t + 1, v))
    return out


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


def _says_from(old: Event, start: dt.datetime, now: dt.datetime) -> list[dict[str, Any]] | None:
    """The intervals a VEN's live event still has from ``start`` on: all of them when it begins there; when the
    plan's first block is under way (``_span`` clipped its start to now) and the event began earlier, what is
    left of it from now (what it said before now is past). None when it cannot say the same from ``start``."""
    current = (old.payload.get("signal") or {}).get("intervals")
    if not current:
        return None
    if old.start == start:
        return list(current)
    if start != now.replace(microsecond=0) or old.start > start:
        return None
    cursor, left = old.start, []
    for interval in current:
        end = cursor + dt.timedelta(seconds=interval["duration_s"])
        if end > start:
            begins = max(cursor, start)
            left.append(interval | {"duration_s": int((end - begins).total_seconds())})
        cursor = end
    return left


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
        if _says_from(old, start, now) == intervals:
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
    tariff_name = (plan.outputs.get("price") or {}).get("tariff")
    if tariff_name:
        await _price_blocks(session, plan, tariff_name, primacy, now, out)
    # the predecessor's resources this plan has nothing for: their live events end now
    if predecessor is not None:
        mine = set(resources) | ({f"price:{tariff_name}"} if tariff_name else set())
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
