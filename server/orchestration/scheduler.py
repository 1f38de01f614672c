"""APScheduler jobs, run only by the process that holds the leader lock.

SQLite means one process, so it always leads. On PostgreSQL several ``dso serve`` processes share the database and
only the one holding a session-level advisory lock runs jobs; if it dies its connection drops, the lock is
released and another process takes over at its next attempt.

Jobs: the forecast of every grid node (left to the planning loop's turns once a network model is stored), and the planning loop (docs/planning.md,
"The loop"): intraday every ``replan_interval_s`` (fresh forecasts, then a re-plan of every stored network model)
and day-ahead at ``day_ahead_at`` (UTC) for the next day. A turn that fails is recorded (plan failed, alarm) and
the next turn runs as usual; a failure that could not even be recorded (the database was away) is kept here and
recorded by the next turn that reaches the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config import OrchestrationSettings, Settings
from server.core import alarms, grid_models, plans
from server.core.forecasts import forecast_all
from server.orchestration import loop
from server.store import Store
from server.store.models import Plan
from server.store.types import utcnow

log = logging.getLogger("dso.scheduler")
LEADER_LOCK = 20305_1
DAY_AHEAD_FORECAST_S = 48 * 3600


class Scheduler:
    def __init__(self, store: Store, settings: OrchestrationSettings, full: Settings | None = None) -> None:
        self.store = store
        self.settings = settings
        self.full = full
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.leader = False
        self._lock_conn: AsyncConnection | None = None
        self._elector: asyncio.Task[None] | None = None
        # failures the database was not there to record: (plan id or None, model, kind, reason)
        self.unrecorded: list[tuple[int | None, str, str, str]] = []
        self.turns = 0

    @property
    def planning(self) -> bool:
        return self.settings.enabled and self.settings.planning and self.full is not None

    async def start(self) -> None:
        # the election runs even with jobs disabled: other leader-only work (the Modbus gateway) relies on it
        s = self.settings
        if s.enabled:
            self.scheduler.add_job(
                self.forecast_job,
                "interval",
                seconds=s.forecast_interval_s,
                id="forecast",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=s.forecast_interval_s,
            )
        if self.planning:
            self.scheduler.add_job(
                self.intraday_job,
                "interval",
                seconds=s.replan_interval_s,
                id="intraday",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=s.replan_interval_s,
            )
            if s.day_ahead_at:
                hh, mm = (int(x) for x in s.day_ahead_at.split(":"))
                self.scheduler.add_job(
                    self.day_ahead_job,
                    "cron",
                    hour=hh,
                    minute=mm,
                    id="day_ahead",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=3600,
                )
        if not s.enabled:
            log.info("scheduled jobs disabled by configuration")
        self.scheduler.start(paused=True)
        self._elector = asyncio.create_task(self._elect(), name="scheduler-election")

    async def _try_lead(self) -> bool:
        if self.store.backend != "postgresql":
            self.leader = True
            return True
        if self._lock_conn is None:
            self._lock_conn = await self.store.engine.connect()
        got = (
            await self._lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK})
        ).scalar()
        await self._lock_conn.commit()
        self.leader = bool(got)
        return self.leader

    async def _elect(self) -> None:
        while not self.leader:
            try:
                await self._try_lead()
            except Exception:  # the database may be restarting; try again later
                log.exception("leader election failed")
                self._lock_conn = None
            if self.leader:
                log.info("this process leads the scheduler")
                if self.planning:
                    await self._took_over()
                self.scheduler.resume()
                return
            await asyncio.sleep(self.settings.leader_retry_s)

    async def _took_over(self) -> None:
        """Plans left running by a process that stopped are failed; a day-ahead plan missed while no process
        led is made now."""
        try:
            async with self.store.sessions.begin() as session:
                await session.execute(
                    update(Plan)
                    .where(Plan.status == plans.RUNNING)
                    .values(
                        status=plans.FAILED,
                        reason="interrupted: the process planning it stopped",
                        finished_at=utcnow(),
                    )
                )
                missed = False
                if self.settings.day_ahead_at:
                    now = utcnow()
                    hh, mm = (int(x) for x in self.settings.day_ahead_at.split(":"))
                    if now.time() >= dt.time(hh, mm):
                        tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
                        made = await session.scalar(
                            select(Plan.id).where(
                                Plan.trigger == "day_ahead",
                                Plan.start == tomorrow,
                                Plan.status != plans.FAILED,
                            )
                        )
                        missed = made is None and bool(await grid_models.model_names(session))
            if missed:
                self.scheduler.add_job(self.day_ahead_job, id="day_ahead_catch_up")
        except Exception:
            log.exception("taking over the planning loop failed; the next turn goes on")

    async def forecast_job(self) -> None:
        s = self.settings
        if self.planning:
            async with self.store.sessions() as session:
                if await grid_models.model_names(session):
                    return  # the planning loop forecasts before each of its turns
        outcome = await forecast_all(
            self.store, s.forecast_horizon_s, s.forecast_step_s, s.forecast_history_days
        )
        log.info("forecast job: %s", outcome or "no grid nodes with members")

    async def intraday_job(self) -> None:
        await self.turn("intraday", self.settings.forecast_horizon_s)

    async def day_ahead_job(self) -> None:
        await self.turn("day_ahead", DAY_AHEAD_FORECAST_S)

    async def turn(self, trigger: str, forecast_horizon_s: int) -> dict[str, str]:
        """Forecast, then plan every stored model; never raises (the scheduler must keep running)."""
        assert self.full is not None
        self.turns += 1
        outcome: dict[str, str] = {}
        s = self.settings
        try:
            await self._record_unrecorded()
            async with self.store.sessions() as session:
                names = await grid_models.model_names(session)
            if not names:
                return outcome
            forecast = await forecast_all(
                self.store, forecast_horizon_s, s.forecast_step_s, s.forecast_history_days
            )
            log.info("%s forecasts: %s", trigger, forecast)
        except Exception as exc:
            log.exception("%s turn could not start", trigger)
            self.unrecorded.append((None, "*", alarms.SCHEDULER, f"{trigger} turn could not start: {exc}"))
            return {"*": f"failed: {exc}"}
        for name in names:
            try:
                plan = await loop.run_plan(self.store, self.full, name, trigger)
                outcome[name] = f"plan {plan['id']} {plan['status']}"
            except loop.PlanFailed as exc:
                outcome[name] = f"failed: {exc.reason}"
            except loop.PlanInterrupted as exc:  # the database went away mid-plan: record it when it is back
                self.unrecorded.append((exc.plan_id, name, alarms.PLAN_FAILED, exc.reason))
                outcome[name] = f"failed: {exc.reason}"
            except Exception as exc:  # the plan could not even begin
                log.exception("plan of %s could not begin", name)
                reason = f"the plan could not begin: {type(exc).__name__}: {exc}"
                self.unrecorded.append((None, name, alarms.PLAN_FAILED, reason))
                outcome[name] = f"failed: {reason}"
        log.info("%s turn: %s", trigger, outcome)
        return outcome

    async def _record_unrecorded(self) -> None:
        if not self.unrecorded:
            return
        async with self.store.sessions.begin() as session:
            for plan_id, name, kind, reason in self.unrecorded:
                if plan_id is not None:
                    plan = await session.get(Plan, plan_id)
                    if plan is not None and plan.status == plans.RUNNING:
                        await plans.fail(session, plan, reason)
                subject = loop.subject(name) if name != "*" else "scheduler:planning"
                kept = await plans.in_force(session, name) if name != "*" else None
                note = f"; plan {kept.id} stays in force" if kept else ""
                where = f"plan {plan_id} of {name}" if plan_id else f"{name}"
                await alarms.raise_alarm(session, kind, subject, f"{where}: {reason}{note}")
        self.unrecorded = []

    async def stop(self) -> None:
        if self._elector:
            self._elector.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._lock_conn is not None:
            # the pool would keep the session (and its lock) alive: unlock explicitly, then drop the connection
            try:
                if self.leader:
                    await self._lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
            finally:
                await self._lock_conn.invalidate()
                await self._lock_conn.close()
            self.leader = False
