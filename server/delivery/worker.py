"""The delivery worker: one per server process; claims due messages of every channel, sends them through their
channel, records each outcome as soon as it is known.

    claim (one UPDATE .. WHERE id IN (heads of their keys, due, unclaimed [FOR UPDATE SKIP LOCKED]) RETURNING)
      -> send concurrently, at most ``max_in_flight``, one per key
      -> record outcomes of whatever finished (one transaction per burst): delivered | retry at back-off |
         dead letter after ``max_attempts`` or a 4xx refusal | dropped
    heartbeat every ``heartbeat_s`` (own task): renews this process's leases, releases those of dead processes

A slow receiver delays only its own key: the other keys' messages are claimed and sent meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from sqlalchemy import bindparam, event, exists, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from server.config import DeliverySettings
from server.delivery import instances
from server.delivery.channels import WITHHELD, Channel, Claimed, Outcome
from server.delivery.outbox import (
    DELIVERED,
    DROPPED,
    ENQUEUED,
    FAILED,
    PENDING,
    backoff,
    is_head,
    prune,
    unclaimed,
)
from server.store import Store
from server.store.models import DeliveryMessage
from server.store.types import utcnow

log = logging.getLogger("dso.delivery")
BUSY_RETRIES = 5
PRUNE_EVERY_S = 3600


async def write_retrying(store: Store, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run ``work`` in its own short transaction; on SQLite retry it when the database stays locked past the
    busy timeout (a writer of another connection), instead of losing what it records."""
    for attempt in range(BUSY_RETRIES):
        try:
            async with store.sessions.begin() as session:
                return await work(session)
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == BUSY_RETRIES - 1:
                raise
            log.warning("database locked while recording deliveries; retrying")
            await asyncio.sleep(0.2 * (attempt + 1))
    return None


class DeliveryWorker:
    """Drains the outbox until stopped. Channels are added before ``start``."""

    def __init__(self, store: Store, settings: DeliverySettings) -> None:
        self.store = store
        self.settings = settings
        self.instance = instances.Instance()
        self.channels: dict[str, Channel] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._http: dict[str, aiohttp.ClientSession] = {}
        self._in_flight: dict[asyncio.Task[Outcome], Claimed] = {}
        # outcomes known but not yet written (the database refused the last attempt)
        self._unrecorded: list[tuple[Claimed, Outcome]] = []
        # (channel names, statement) of the "which channels have due messages" read
        self._due_query: tuple[tuple[str, ...], Any] | None = None
        self._hooked = False

    def add_channel(self, channel: Channel) -> None:
        if self._task is not None:
            raise RuntimeError("channels are added before the worker starts")
        self.channels[channel.name] = channel

    def wake(self) -> None:
        """Deliver now rather than at the next poll (called after a commit that queued messages)."""
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        async def arrive(session: AsyncSession) -> int:
            await instances.register(session, self.instance)
            await session.flush()
            # the start-up sweep: a process killed before this one started must not hold its claims any longer
            return await instances.release_dead(session, self.instance, self.settings)

        await write_retrying(self.store, arrive)
        for channel in self.channels.values():
            timeout = aiohttp.ClientTimeout(total=channel.timeout_s or self.settings.timeout_s)
            resolver = channel.resolver() if channel.resolver else None
            connector = aiohttp.TCPConnector(
                ssl=channel.ssl_context or True,
                limit=64,
                resolver=resolver,
                # a guarding resolver sees every new connection's addresses (no cache between it and them)
                use_dns_cache=resolver is None,
            )
            self._http[channel.name] = aiohttp.ClientSession(timeout=timeout, connector=connector)
        event.listen(Session, "after_commit", self._after_commit)
        self._hooked = True
        self._task = asyncio.create_task(self._run(), name="delivery-worker")
        self._beat_task = asyncio.create_task(self._beat_forever(), name="delivery-heartbeat")

    async def stop(self) -> None:
        for loop_task in (self._task, self._beat_task):
            if loop_task:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        if self._hooked:
            event.remove(Session, "after_commit", self._after_commit)
            self._hooked = False
        # sends in flight: those that finished are recorded, the rest handed back at once (not after a lease)
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        finished = self._unrecorded + self._collect(list(self._in_flight))
        self._unrecorded = []
        self._in_flight.clear()
        try:
            if finished:
                await self._record(finished)

            await write_retrying(self.store, functools.partial(instances.retire, me=self.instance))
        except Exception:  # noqa: BLE001 - a dead database at shutdown: the heartbeat going stale frees them
            log.exception("could not hand back claimed deliveries at shutdown")
        for http in self._http.values():
            await http.close()
        self._http.clear()

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(ENQUEUED, False):
            self._wake.set()

    # ------------------------------------------------------------------ loops
    async def _beat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + PRUNE_EVERY_S / 10  # not at the very start: that is busy enough
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:

                async def work(session: AsyncSession) -> int:
                    return await instances.beat(session, self.instance, self.settings)

                if await write_retrying(self.store, work):
                    self._wake.set()
                if self.settings.keep_days > 0 and loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_EVERY_S
                    cutoff = utcnow() - dt.timedelta(days=self.settings.keep_days)
                    pruned = await write_retrying(self.store, functools.partial(prune, older_than=cutoff))
                    if pruned:
                        log.info(
                            "forgot %d delivered message(s) older than %d days",
                            pruned,
                            self.settings.keep_days,
                        )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the heartbeat must outlive database hiccups
                log.exception("delivery heartbeat failed")

    async def _run(self) -> None:
        interval = self.settings.poll_interval_ms / 1000
        while True:
            self._wake.clear()  # before claiming: a commit during the claim wakes the next pass
            full = False
            try:
                room = self.settings.max_in_flight - len(self._in_flight)
                if room > 0:
                    claimed = await self.claim(room)
                    for message in claimed:
                        task = asyncio.create_task(self._send(message))
                        self._in_flight[task] = message
                    full = len(claimed) == room
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must outlive database hiccups
                log.exception("delivery claim failed")
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                done, _ = await asyncio.wait(
                    [waiter, *self._in_flight],
                    timeout=None if full else interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
            finished = [t for t in self._in_flight if t.done()]
            if finished:
                self._unrecorded += self._collect(finished)
                for task in finished:
                    del self._in_flight[task]
            if self._unrecorded:
                try:
                    await self._record(self._unrecorded)
                    self._unrecorded = []
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - kept (and its leases renewed) until the next pass records it
                    log.exception("recording delivery outcomes failed; trying again")

    def _collect(self, tasks: list[asyncio.Task[Outcome]]) -> list[tuple[Claimed, Outcome]]:
        out = []
        for task in tasks:
            if task.done() and not task.cancelled():
                exc = task.exception()
                outcome = Outcome(error=f"sender failed: {exc!r}"[:500]) if exc else task.result()
                out.append((self._in_flight[task], outcome))
        return out

    async def _send(self, message: Claimed) -> Outcome:
        channel = self.channels[message.channel]
        return await channel.send(self._http[message.channel], message)

    # ------------------------------------------------------------------ claims
    async def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due messages, each the head of its key, across the channels."""
        claimed: list[Claimed] = []
        due = await self._due_channels()
        for channel in [c for c in self.channels.values() if c.name in due]:
            if len(claimed) >= limit:
                break
            claimed += await self._claim_channel(channel, limit - len(claimed))
        return claimed

    async def _due_channels(self) -> set[str]:
        """The channels with at least one due, unclaimed pending message.

        The worker looks every ``poll_interval_ms``, and mostly finds nothing: one read of an index per channel
        costs a fraction of a claim (a write transaction per channel), which only the channels found here get.
        A message committed just after this read waits for the next pass or the commit's wake-up, exactly as one
        committed just after a claim would."""
        if not self.channels:
            return set()
        names = tuple(self.channels)
        query = self._due_query
        if query is None or query[0] != names:
            # built once (channels are added before start): the statement, its cache key and its compiled form
            # are reused every pass, only the time is bound anew
            now: Any = bindparam("now")  # stands for the datetime bound at each execution
            m = DeliveryMessage
            statement: Any = select(
                *(
                    exists()
                    .where(m.channel == name, m.status == PENDING, m.next_attempt_at <= now, unclaimed(now))
                    .label(f"due_{i}")
                    for i, name in enumerate(names)
                )
            )
            query = self._due_query = (names, statement)
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(query[1], {"now": utcnow()})).one()
        return {name for name, due in zip(names, row, strict=True) if due}

    async def _claim_channel(self, channel: Channel, limit: int) -> list[Claimed]:
        now = utcnow()
        m = DeliveryMessage
        candidates = (
            select(m.id)
            .where(
                m.channel == channel.name,
                m.status == PENDING,
                m.next_attempt_at <= now,
                unclaimed(now),
                is_head(),
                *([channel.claimable()] if channel.claimable else []),
            )
            .order_by(m.id)
            .limit(limit)
        )
        if self.store.backend == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True, of=m)
        # one statement that writes first: no read-then-upgrade on SQLite, no second claimer on PostgreSQL, and on
        # both the outer conditions re-checked under the write
        statement = (
            update(m)
            .where(m.id.in_(candidates), m.status == PENDING, unclaimed(now))
            .values(
                lease_owner=self.instance.id, lease_until=now + dt.timedelta(seconds=self.settings.lease_s)
            )
            .returning(m.id, m.order_key, m.kind, m.url, m.content_type, m.body, m.payload, m.attempts)
            .execution_options(synchronize_session=False)
        )

        async def work(session: AsyncSession) -> list[Any]:
            return list((await session.execute(statement)).all())

        rows = await write_retrying(self.store, work)
        out = [
            Claimed(
                r.id,
                channel.name,
                r.order_key,
                r.kind,
                r.url,
                r.content_type,
                r.body,
                dict(r.payload or {}),
                r.attempts,
            )
            for r in rows
        ]
        out.sort(key=lambda c: c.id)
        if channel.withhold is not None and out:
            out = await self._withheld(channel, out)
        return out

    async def _withheld(self, channel: Channel, claimed: list[Claimed]) -> list[Claimed]:
        """Give up the claimed messages the channel says must not go out any more (marked failed, released)."""
        assert channel.withhold is not None
        check = channel.withhold

        async def work(session: AsyncSession) -> set[int]:
            gone = await check(session, [(c.id, c.order_key) for c in claimed])
            if gone:
                await session.execute(
                    update(DeliveryMessage)
                    .where(DeliveryMessage.id.in_(gone), DeliveryMessage.lease_owner == self.instance.id)
                    .values(status=FAILED, last_error=WITHHELD, lease_owner=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )
            return gone

        gone = await write_retrying(self.store, work)
        if gone:
            log.info("withheld %d message(s) of %s: %s", len(gone), channel.name, WITHHELD)
        return [c for c in claimed if c.id not in gone]

    # ------------------------------------------------------------------ outcomes
    def _values(self, message: Claimed, outcome: Outcome, now: dt.datetime) -> dict[str, Any]:
        released: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if outcome.later:
            return released
        if outcome.dropped:
            return {**released, "status": DROPPED, "last_error": outcome.error[:500]}
        attempts = message.attempts + 1
        values: dict[str, Any] = {
            **released,
            "attempts": attempts,
            "last_status": outcome.status,
            "last_error": outcome.error,
        }
        if not outcome.error:
            values.update(status=DELIVERED, delivered_at=now, via="post")
            return values
        log.warning(
            "delivery %s (%s) failed on attempt %d: %s",
            message.id,
            message.order_key,
            attempts,
            outcome.error,
        )
        status = outcome.status
        if outcome.final:
            values.update(status=FAILED)
        elif status is not None and 400 <= status < 500 and status not in (408, 429):
            # the receiver refuses this message for good; retrying would only hold its successors back
            values.update(status=FAILED)
        elif attempts >= self.settings.max_attempts:
            values.update(status=FAILED)
        else:
            values.update(next_attempt_at=now + backoff(attempts, self.settings))
        return values

    async def _record(self, outcomes: list[tuple[Claimed, Outcome]]) -> None:
        """Record a burst of outcomes in one transaction; outcomes with equal values share one UPDATE. Only rows
        this process still holds are written (another process may have taken over a lease it let lapse)."""
        if not outcomes:
            return
        now = utcnow()
        groups: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], list[int]]] = {}
        for message, outcome in outcomes:
            values = self._values(message, outcome, now)
            key = tuple(sorted((k, repr(v)) for k, v in values.items()))
            groups.setdefault(key, (values, []))[1].append(message.id)

        async def work(session: AsyncSession) -> None:
            for values, ids in groups.values():
                await session.execute(
                    update(DeliveryMessage)
                    .where(DeliveryMessage.id.in_(ids), DeliveryMessage.lease_owner == self.instance.id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )

        await write_retrying(self.store, work)
        if any(not o.later for _, o in outcomes):
            self._wake.set()  # the successors of finished messages are the heads of their keys now
