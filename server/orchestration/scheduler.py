"""APScheduler jobs, run only by the process that holds the leader lock.

SQLite means one process, so it always leads. On PostgreSQL several ``dso serve`` processes share the database and
only the one holding a session-level advisory lock runs jobs; if it dies its connection drops, the lock is
released and another process takes over at its next attempt.
"""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.config import OrchestrationSettings
from server.core.forecasts import forecast_all
from server.store import Store

log = logging.getLogger("dso.scheduler")
LEADER_LOCK = 20305_1


class Scheduler:
    def __init__(self, store: Store, settings: OrchestrationSettings) -> None:
        self.store = store
        self.settings = settings
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.leader = False
        self._lock_conn: AsyncConnection | None = None
        self._elector: asyncio.Task[None] | None = None

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
        else:
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
                self.scheduler.resume()
                return
            await asyncio.sleep(self.settings.leader_retry_s)

    async def forecast_job(self) -> None:
        s = self.settings
        outcome = await forecast_all(
            self.store, s.forecast_horizon_s, s.forecast_step_s, s.forecast_history_days
        )
        log.info("forecast job: %s", outcome or "no grid nodes with members")

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
