"""A re-plan reconciles its blocks with the events of the plan before it: an event is kept only where the device
will still follow it and only over what the plan still wants. Within a program 2030.5 supersedes an older event
by any newer one it overlaps, and a device follows an event from its start: an old event is kept for a block only
when it begins with the block (or the block is under way) and nothing newer that stays overlaps it; an unchanged
re-plan keeps everything and creates nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import der_controls as rules
from server.core import events, parties, plans, programs
from server.orchestration import plan_dispatch
from server.orchestration.plan_dispatch import dispatch_plan
from server.store.models import Event, Plan, Program
from server.store.types import utcnow

LFDI = "AB" * 20
STEP = 900
STEPS = 16
Runs = list[tuple[int, int, float]]


def _blocks(start: dt.datetime, runs: Runs, field: str) -> list[dict[str, Any]]:
    return [
        {
            "t0": t0,
            "t1": t1,
            "start": (start + dt.timedelta(seconds=STEP * t0)).isoformat(),
            "field": field,
            "value_w": value,
            "why": {"test": True},
        }
        | ({"base": {field: value}} if field == "opModTargetW" else {})
        for t0, t1, value in runs
    ]


async def _plan(session: AsyncSession, start: dt.datetime, runs: Runs, kind: str = "battery") -> Plan:
    """An intraday plan of the 16 intervals from ``start``: the device's battery setpoint, or its DR reduction."""
    plan = await plans.begin(session, "feeder", "intraday", start, STEP, STEPS)
    field = "opModTargetW" if kind == "battery" else "targetReduction"
    plan.outputs = {
        "intervals": [(start + dt.timedelta(seconds=STEP * t)).isoformat() for t in range(STEPS)],
        "resources": {
            f"device:{LFDI}:{kind}": {
                "kind": kind,
                "party": "device",
                "id": LFDI,
                "bus": 0,
                "blocks": _blocks(start, runs, field),
            }
        },
    }
    return plan


def _value(e: Event) -> float:
    if e.kind == "der":
        return float(e.payload["base"]["opModTargetW"])
    return float(e.payload["control"]["targetReduction"]["value"])


async def _followed(
    session: AsyncSession, program_ids: list[int], start: dt.datetime, now: dt.datetime
) -> list[float | None]:
    """What the device follows in each of the 16 intervals (at its middle): the event the event rules resolve
    as the one to apply there (``der_controls.winner``), or None."""
    primacy = {
        p.id: p.primacy for p in await session.scalars(select(Program).where(Program.id.in_(program_ids)))
    }
    out: list[float | None] = []
    for t in range(STEPS):
        mid = max(now, start + dt.timedelta(seconds=STEP * t + STEP // 2))
        found = {e.id: e for e in await events.relevant(session, program_ids, mid)}
        chosen = rules.winner([events.interval_of(e, primacy[e.program_id]) for e in found.values()], mid)
        out.append(None if chosen is None else _value(found[chosen.id]))
    return out


async def _der_programs(session: AsyncSession, device: parties.DeviceInfo) -> list[int]:
    return [p.id for p in await programs.device_programs(session, device.id)]


async def _dr_programs(session: AsyncSession) -> list[int]:
    return list(
        await session.scalars(
            select(Program.id).where(Program.kind == "dr", Program.name == f"plan:{LFDI}:dr")
        )
    )


def _expected(runs: Runs) -> list[float | None]:
    out: list[float | None] = [None] * STEPS
    for t0, t1, value in runs:
        out[t0:t1] = [value] * (t1 - t0)
    return out


def _next_boundary(now: dt.datetime) -> dt.datetime:
    return dt.datetime.fromtimestamp((now.timestamp() // STEP + 1) * STEP, dt.UTC)


async def _replan_twice(
    session, start: dt.datetime, now: dt.datetime, first_runs, second_runs, later_s: int = 0
) -> tuple[Any, list, Any, list]:
    """Dispatch ``first_runs``, re-plan with ``second_runs``, then the same second plan again ``later_s`` later:
    each re-plan's result and what the device follows after it."""
    device = await parties.enroll_device(session, LFDI)
    first = await _plan(session, start, first_runs)
    await dispatch_plan(session, first, None, 10, "", 0, now)
    second = await _plan(session, start, second_runs)
    out = await dispatch_plan(session, second, first, 10, "", 0, now)
    followed = await _followed(session, await _der_programs(session, device), start, now)
    third = await _plan(session, start, second_runs)
    again = await dispatch_plan(session, third, second, 10, "", 0, now + dt.timedelta(seconds=later_s))
    followed_again = await _followed(session, await _der_programs(session, device), start, now)
    return out, followed, again, followed_again


async def test_a_replan_keeps_no_old_control_a_new_one_supersedes(sqlite_store) -> None:
    """The re-plan charges less in the first of the old event's intervals and as before in the rest: the rest's
    block ends with the old event but begins after it, and the new event before it would supersede it."""
    now = utcnow().replace(microsecond=0)
    start = _next_boundary(now)
    second_runs = [(4, 5, -3960.0), (5, 10, -5000.0)]
    async with sqlite_store.sessions.begin() as session:
        out, followed, again, followed_again = await _replan_twice(
            session, start, now, [(4, 10, -5000.0)], second_runs
        )
    assert followed == _expected(second_runs), (followed, out.to_dict())
    assert (out.created, out.kept) == (2, 0), out.to_dict()
    # the same plan again keeps both new events, not the superseded old one that also matches the later block
    assert (again.created, again.kept) == (0, 2), again.to_dict()
    assert followed_again == _expected(second_runs), (followed_again, again.to_dict())


async def test_dropping_one_kept_control_can_drop_the_next(sqlite_store) -> None:
    """Two live controls each match a block of the re-plan: the older one is superseded by the newer one it
    overlaps, so its block gets a new event, and that new event overlaps the newer one in turn."""
    now = utcnow().replace(microsecond=0)
    start = _next_boundary(now)
    runs = [(4, 6, 1000.0), (6, 10, -2000.0)]
    async with sqlite_store.sessions.begin() as session:
        device = await parties.enroll_device(session, LFDI)
        first = await _plan(session, start, [(2, 6, 1000.0)])
        await dispatch_plan(session, first, None, 10, "", 0, now)
        second = await _plan(session, start, [(5, 10, -2000.0)])
        await dispatch_plan(session, second, first, 10, "", 0, now)
        third = await _plan(session, start, runs)
        out = await dispatch_plan(session, third, second, 10, "", 0, now)
        followed = await _followed(session, await _der_programs(session, device), start, now)
    assert followed == _expected(runs), (followed, out.to_dict())
    assert (out.created, out.kept) == (2, 0), out.to_dict()


async def test_an_unchanged_replan_keeps_every_control(sqlite_store) -> None:
    """The first block of an intraday plan applies from its dispatch on, so a little later the same plan's first
    block begins after its event: nothing new precedes it, and it is kept like the rest."""
    now = utcnow().replace(microsecond=0)
    start = _next_boundary(now) - dt.timedelta(seconds=STEP)  # the interval under way
    runs = [(0, 3, 2000.0), (3, 6, -5000.0), (8, 12, 1500.0)]
    async with sqlite_store.sessions.begin() as session:
        device = await parties.enroll_device(session, LFDI)
        first = await _plan(session, start, runs)
        made = await dispatch_plan(session, first, None, 10, "", 0, now)
        later = now + dt.timedelta(seconds=40)
        second = await _plan(session, start, runs)
        out = await dispatch_plan(session, second, first, 10, "", 0, later)
        followed = await _followed(session, await _der_programs(session, device), start, later)
    assert made.created == 3
    assert (out.created, out.kept, out.cancelled) == (0, 3, 0), out.to_dict()
    assert followed == _expected(runs), followed


async def test_a_replan_keeps_no_old_dr_event_a_new_one_supersedes(sqlite_store) -> None:
    """DRLC EndDeviceControls follow the same event rules: the old event is cancelled only when not kept, so a
    kept one that a new event overlaps would be superseded."""
    now = utcnow().replace(microsecond=0)
    start = _next_boundary(now)
    second_runs = [(4, 5, 800.0), (5, 10, 1200.0)]
    async with sqlite_store.sessions.begin() as session:
        await parties.enroll_device(session, LFDI)
        first = await _plan(session, start, [(4, 10, 1200.0)], "dr")
        await dispatch_plan(session, first, None, 10, "", 0, now)
        second = await _plan(session, start, second_runs, "dr")
        out = await dispatch_plan(session, second, first, 10, "", 0, now)
        followed = await _followed(session, await _dr_programs(session), start, now)
        third = await _plan(session, start, second_runs, "dr")
        again = await dispatch_plan(session, third, second, 10, "", 0, now)
    assert followed == _expected(second_runs), (followed, out.to_dict())
    assert (out.created, out.kept, out.cancelled) == (2, 0, 1), out.to_dict()
    assert (again.created, again.kept, again.cancelled) == (0, 2, 0), again.to_dict()


async def test_a_replan_keeps_no_old_control_over_intervals_it_no_longer_wants(sqlite_store) -> None:
    """The old control charges over six intervals; the re-plan wants the same only in the last two and nothing
    before them. Nothing new precedes the later block, but keeping the old control would charge the battery in
    the four intervals the plan now leaves free: the block gets a control of its own, which supersedes the old
    one."""
    now = utcnow().replace(microsecond=0)
    start = _next_boundary(now)
    second_runs = [(8, 10, -5000.0)]
    async with sqlite_store.sessions.begin() as session:
        out, followed, again, _ = await _replan_twice(
            session, start, now, [(4, 10, -5000.0)], second_runs, later_s=30
        )
    assert followed == _expected(second_runs), (followed, out.to_dict())
    assert (out.created, out.kept) == (1, 0), out.to_dict()
    assert (again.created, again.kept) == (0, 1), again.to_dict()


def test_a_ven_event_under_way_says_from_now_what_it_said() -> None:
    """A VEN's live event is kept by a re-plan when what is left of it from the dispatch on is what the plan now
    wants: its first block under way began at the dispatch before, so its intervals start earlier."""
    began = dt.datetime(2026, 6, 21, 12, 0, tzinfo=dt.UTC)
    old = Event(
        start=began,
        payload={
            "signal": {"intervals": [{"duration_s": 600, "value": 5.0}, {"duration_s": 900, "value": 7.0}]}
        },
    )
    now = began + dt.timedelta(seconds=240, microseconds=500)
    at = now.replace(microsecond=0)  # where ``_span`` clips the first block's start
    assert plan_dispatch._says_from(old, began, now) == [
        {"duration_s": 600, "value": 5.0},
        {"duration_s": 900, "value": 7.0},
    ]
    assert plan_dispatch._says_from(old, at, now) == [
        {"duration_s": 360, "value": 5.0},
        {"duration_s": 900, "value": 7.0},
    ]
    # past its first interval: only the second is left
    later = began + dt.timedelta(seconds=700)
    assert plan_dispatch._says_from(old, later, later) == [{"duration_s": 800, "value": 7.0}]
    # a block still to come that begins after the event: the event covers what the plan no longer wants
    assert plan_dispatch._says_from(old, at + dt.timedelta(seconds=60), now) is None
    # an event that begins after the block cannot say what the block wants from its start
    assert (
        plan_dispatch._says_from(old, began - dt.timedelta(seconds=60), began - dt.timedelta(seconds=60))
        is None
    )
