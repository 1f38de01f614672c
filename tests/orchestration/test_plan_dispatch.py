"""A re-plan reconciles its blocks with the events of the plan before it: an event is kept only where the device
will still follow it. 2030.5 supersedes an older DERControl by any newer one it overlaps in the same program, so
keeping an old event that begins before its block, where the re-plan makes a new event, would leave the block
without a control."""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.core import events, parties, plans, programs
from server.orchestration.plan_dispatch import dispatch_plan
from server.store.types import utcnow

LFDI = "AB" * 20
STEP = 900


def _blocks(start: dt.datetime, runs: list[tuple[int, int, float]]) -> list[dict[str, Any]]:
    return [
        {
            "t0": t0,
            "t1": t1,
            "start": (start + dt.timedelta(seconds=STEP * t0)).isoformat(),
            "field": "opModTargetW",
            "value_w": value,
            "base": {"opModTargetW": value},
            "why": {"test": True},
        }
        for t0, t1, value in runs
    ]


async def _plan(session: Any, start: dt.datetime, runs: list[tuple[int, int, float]]) -> Any:
    plan = await plans.begin(session, "feeder", "intraday", start, STEP, 16)
    plan.outputs = {
        "intervals": [(start + dt.timedelta(seconds=STEP * t)).isoformat() for t in range(16)],
        "resources": {
            f"device:{LFDI}:storage": {
                "kind": "battery",
                "party": "device",
                "id": LFDI,
                "bus": 0,
                "blocks": _blocks(start, runs),
            }
        },
    }
    return plan


async def _followed(session: Any, device_id: int, start: dt.datetime, now: dt.datetime) -> list[float | None]:
    """The setpoint the device follows in each of the 16 intervals: the live control (neither cancelled nor
    superseded) over the interval's middle."""
    seen = await events.evaluated(session, await programs.device_programs(session, device_id), now)
    live = [e for e, ev in seen if ev.status.value in (0, 1)]
    out: list[float | None] = []
    for t in range(16):
        mid = start + dt.timedelta(seconds=STEP * t + STEP // 2)
        found = [e for e in live if e.start <= mid < e.end_at]
        out.append(found[0].payload["base"]["opModTargetW"] if len(found) == 1 else None)
    return out


async def test_a_replan_keeps_an_old_control_only_where_no_new_one_supersedes_it(sqlite_store) -> None:
    now = utcnow().replace(microsecond=0)
    start = dt.datetime.fromtimestamp((now.timestamp() // STEP + 1) * STEP, dt.UTC)
    async with sqlite_store.sessions.begin() as session:
        device = await parties.enroll_device(session, LFDI)
        first = await _plan(session, start, [(4, 10, -5000.0)])
        await dispatch_plan(session, first, None, 10, "", 0, now)
        # the re-plan charges less in the first of those intervals and as before in the rest: the rest's block
        # ends with the old event but begins after it
        second = await _plan(session, start, [(4, 5, -3960.0), (5, 10, -5000.0)])
        out = await dispatch_plan(session, second, first, 10, "", 0, now)
        followed = await _followed(session, device.id, start, now)
    assert followed[4:10] == [-3960.0] + [-5000.0] * 5, (followed, out.to_dict())
    assert followed[:4] == [None] * 4 and followed[10:] == [None] * 6
    assert out.created == 2 and out.kept == 0, out.to_dict()


async def test_a_replan_still_keeps_the_control_of_a_block_under_way(sqlite_store) -> None:
    """The first block of an intraday plan applies from its dispatch on; the next plan's first block, a little
    later, keeps that event (nothing new precedes it)."""
    now = utcnow().replace(microsecond=0)
    start = dt.datetime.fromtimestamp((now.timestamp() // STEP + 1) * STEP, dt.UTC)
    async with sqlite_store.sessions.begin() as session:
        device = await parties.enroll_device(session, LFDI)
        first = await _plan(session, start, [(0, 3, 2000.0), (3, 6, -5000.0)])
        await dispatch_plan(session, first, None, 10, "", 0, now)
        later = now + dt.timedelta(seconds=40)
        second = await _plan(session, start, [(0, 3, 2000.0), (3, 6, -5000.0)])
        out = await dispatch_plan(session, second, first, 10, "", 0, later)
        followed = await _followed(session, device.id, start, later)
    assert out.kept == 2 and out.created == 0, out.to_dict()
    assert followed[:6] == [2000.0] * 3 + [-5000.0] * 3
