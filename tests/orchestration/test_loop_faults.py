"""Faults of the planning loop on a running scheduler: a solver that fails, a forecast that is missing, the
database going away in the middle of a plan. Each leaves the scheduler running, the last good plan in force
(its events untouched) and an alarm naming the cause; the next good turn clears it."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest
from sqlalchemy import delete, select
from test_loop import MODEL, fleet, forecast, settings

from server.core import alarms, plans
from server.orchestration import loop
from server.orchestration.scheduler import Scheduler
from server.store import create_store
from server.store.migrate import upgrade
from server.store.models import Alarm, Event, Plan, PlanEvent, TelemetryReading

pytest.importorskip("pandapower")
SUBJECT = f"model:{MODEL}"


async def wait_for(predicate, within: float = 120.0, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await predicate()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def open_alarm(store, kind: str) -> Alarm | None:  # noqa: ANN001
    async with store.sessions() as session:
        return await session.scalar(
            select(Alarm).where(Alarm.kind == kind, Alarm.subject == SUBJECT, Alarm.cleared_at.is_(None))
        )


async def live_events_of(store, plan_id: int) -> int:  # noqa: ANN001
    async with store.sessions() as session:
        rows = await session.scalars(
            select(Event)
            .join(PlanEvent, PlanEvent.event_id == Event.id)
            .where(PlanEvent.plan_id == plan_id, Event.cancelled_at.is_(None))
        )
        return len(list(rows))


async def newest(store) -> Plan | None:  # noqa: ANN001
    async with store.sessions() as session:
        return await session.scalar(select(Plan).order_by(Plan.id.desc()).limit(1))


@pytest.fixture
async def sqlite_store(tmp_path):
    s = create_store(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    await upgrade(s)
    yield s
    await s.close()


def fast(**extra: object):  # noqa: ANN201
    """The loop every second, no day-ahead job."""
    return settings(replan_interval_s=1, day_ahead_at="", **extra)


async def test_solver_error_keeps_the_last_good_plan_and_the_scheduler(sqlite_store) -> None:
    store = sqlite_store
    await fleet(store)
    await forecast(store)
    full = fast()
    good = await loop.run_plan(store, full, MODEL, "intraday")
    in_force = await live_events_of(store, good["id"])
    assert in_force > 0
    # HiGHS may spend a nanosecond per LP: every LP ends "Time limit reached"
    full.orchestration = dataclasses.replace(full.orchestration, solver_time_limit_s=1e-9)
    sched = Scheduler(store, full.orchestration, full)
    await sched.start()
    try:
        alarm = await wait_for(lambda: open_alarm(store, alarms.PLAN_FAILED), what="a plan_failed alarm")
        assert "Time limit" in alarm.message and f"plan {good['id']} stays in force" in alarm.message
        failed = await newest(store)
        assert failed is not None and failed.status in ("failed", "running")
        turns = sched.turns
        await wait_for(lambda: _true(sched.turns >= turns + 1), what="another turn after the failure")
        async with store.sessions() as session:
            assert (await plans.in_force(session, MODEL)).id == good["id"]
            reasons = [p.reason for p in await session.scalars(select(Plan).where(Plan.status == "failed"))]
        assert reasons and all("Time limit" in r for r in reasons), reasons
        assert await live_events_of(store, good["id"]) == in_force
        # the solver is given time again: the next turn plans, and clears the alarm
        full.orchestration.solver_time_limit_s = 0.0
        await wait_for(lambda: _cleared(store, alarms.PLAN_FAILED), what="the alarm cleared by a good plan")
        async with store.sessions() as session:
            assert (await plans.in_force(session, MODEL)).id > good["id"]
    finally:
        await sched.stop()


async def _true(value: bool) -> bool:
    return value


async def _cleared(store, kind: str) -> bool:  # noqa: ANN001
    async with store.sessions() as session:
        rows = list(await session.scalars(select(Alarm).where(Alarm.kind == kind, Alarm.subject == SUBJECT)))
    return bool(rows) and all(a.cleared_at is not None for a in rows)


async def test_missing_forecast_raises_forecast_failed_and_keeps_the_plan(sqlite_store) -> None:
    store = sqlite_store
    await fleet(store)
    await forecast(store)
    # a forecast older than 2 s is missing for planning
    full = fast(forecast_max_age_s=2)
    good = await loop.run_plan(store, full, MODEL, "intraday")
    in_force = await live_events_of(store, good["id"])
    # the meters under the transformer went silent: no new forecast can be made
    async with store.sessions.begin() as session:
        await session.execute(delete(TelemetryReading))
    await asyncio.sleep(2.1)
    sched = Scheduler(store, full.orchestration, full)
    await sched.start()
    try:
        alarm = await wait_for(
            lambda: open_alarm(store, alarms.FORECAST_FAILED), what="a forecast_failed alarm"
        )
        assert f"{MODEL}/T1" in alarm.message and "stale" in alarm.message, alarm.message
        assert f"plan {good['id']} stays in force" in alarm.message
        turns = sched.turns
        await wait_for(lambda: _true(sched.turns >= turns + 2), what="more turns")
        async with store.sessions() as session:
            assert (await plans.in_force(session, MODEL)).id == good["id"]
            failed = list(await session.scalars(select(Plan).where(Plan.status == "failed")))
        assert failed and all("no forecast" in p.reason or "does not cover" in p.reason for p in failed)
        assert await live_events_of(store, good["id"]) == in_force
    finally:
        await sched.stop()


async def test_database_restart_during_a_plan(pg_database) -> None:
    store = create_store(pg_database.replace("postgresql://", "postgresql+asyncpg://"))
    await upgrade(store)
    db = pg_database.rsplit("/", 1)[1]
    admin_url = pg_database.rsplit("/", 1)[0] + "/postgres"
    try:
        await fleet(store)
        await forecast(store)
        full = fast()
        sched = Scheduler(store, full.orchestration, full)  # its turns are driven by hand here
        good = await loop.run_plan(store, full, MODEL, "intraday")
        in_force = await live_events_of(store, good["id"])
        turn = asyncio.create_task(sched.turn("intraday", 86_400))

        async def running() -> int | None:
            conn = await asyncpg.connect(pg_database, timeout=5)
            try:
                return await conn.fetchval("SELECT id FROM plan WHERE status = 'running' LIMIT 1")
            finally:
                await conn.close()

        plan_id = await wait_for(running, what="a plan running")
        # the database restarts: every connection dropped, none accepted for a while
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                db,
            )
            outcome = await asyncio.wait_for(turn, 300)
            await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        finally:
            await conn.close()
        assert outcome[MODEL].startswith("failed"), outcome
        assert sched.unrecorded, "the failure is kept until the database is back"
        # the next turn records it (plan failed, alarm) and plans again
        again = await sched.turn("intraday", 86_400)
        assert again[MODEL].startswith("plan"), again
        async with store.sessions() as session:
            failed = await session.get(Plan, plan_id)
            raised = list(
                await session.scalars(
                    select(Alarm).where(Alarm.kind == alarms.PLAN_FAILED, Alarm.subject == SUBJECT)
                )
            )
            current = await plans.in_force(session, MODEL)
        assert failed.status == "failed" and "could not be completed" in failed.reason, failed.reason
        assert (
            raised
            and f"plan {plan_id}" in raised[0].message
            and f"plan {good['id']} stays in force" in raised[0].message
        )
        assert raised[0].cleared_at is not None  # the good turn after it cleared it
        # the good plan's events were never dropped: its successor kept them
        assert current.id > good["id"]
        assert await live_events_of(store, current.id) >= in_force - 2
    finally:
        await store.close()
