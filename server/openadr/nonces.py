"""ReplayProtect nonces, recorded durably with group commit.

Every signed message's nonce must be stored before the message is answered (in the database, so every server
process and a restarted one still know it). One INSERT transaction per message would cost more CPU than the XML
signature itself, so concurrent messages share one: callers queue their nonce and wait; a writer task inserts
everything queued in one ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` and tells each caller whether its nonce
was new. The guarantee is the same as a per-message insert (durable before the answer), the cost is shared.

    request A --nonce a--\\
    request B --nonce b---> queue --> writer: INSERT (a, b, c) ON CONFLICT DO NOTHING RETURNING nonce --> a,b new
    request C --nonce c--/                                                                             c replayed

On SQLite (a database file) the writer uses its own ``sqlite3`` connection on one dedicated thread: a batch is one
hop to that thread (BEGIN IMMEDIATE, INSERT .. RETURNING, COMMIT) instead of the half-dozen event-loop/thread
round trips the thread-based async driver made per transaction, which cost more CPU than the insert. The hop is a plain queue
and one ``call_soon_threadsafe`` back (an executor's futures, locks and callback chains cost more than the insert
again, once per signed message at low concurrency). Same file, same WAL mode and
``synchronous=NORMAL`` as the main engine, so the durability guarantee is unchanged; being off the loop, this
thread waits for the lock in SQLite's own busy handler (5 s, the main engine's asyncio wait). PostgreSQL
(and in-memory SQLite) keep the SQLAlchemy path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import sqlite3
import threading

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from server.store import Store
from server.store.models import OadrNonce
from server.store.types import utcnow

log = logging.getLogger("dso.openadr")
MAX_BATCH = 500


class NonceWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[bool]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self._insert = postgresql.insert if store.backend == "postgresql" else sqlite.insert
        database = store.engine.url.database if store.backend == "sqlite" else None
        # a file database gets the direct writer; ":memory:" (one database per connection) cannot
        self._sqlite_path = (
            database if database and database != ":memory:" and not database.startswith("file:") else None
        )
        self._seen_at = OadrNonce.__table__.c.seen_at.type.bind_processor(store.engine.dialect)
        # the direct writer's thread and its inbox: (keys, future to resolve on the loop) or None to stop
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[tuple[list[str], asyncio.Future[set[str]]] | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        if self._sqlite_path:
            self._thread = threading.Thread(
                target=self._serve_sync,
                args=(asyncio.get_running_loop(),),
                name="openadr-nonces",
                daemon=True,
            )
            self._thread.start()
        self.task = asyncio.create_task(self._run(), name="openadr-nonces")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._jobs.put(None)  # after any batch still queued; the thread closes its connection and ends
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    async def record(self, key: str) -> bool:
        """True when ``key`` was not seen before (and is now stored), False for a replay."""
        if self.task is None or self.task.done():
            raise RuntimeError("nonce writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self.queue.put((key, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                fresh = await self._insert_batch([key for key, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it, the writer must go on
                log.exception("recording ReplayProtect nonces failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in batch:
                if not future.done():
                    # a nonce twice in one batch: only its first sender gets True
                    future.set_result(key in fresh)
                    fresh.discard(key)

    async def _insert_batch(self, keys: list[str]) -> set[str]:
        if self._thread is not None:
            done: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
            self._jobs.put((keys, done))
            return await done
        now = utcnow()
        rows = [{"nonce": k, "seen_at": now} for k in dict.fromkeys(keys)]
        stmt = (
            self._insert(OadrNonce)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["nonce"])
            .returning(OadrNonce.nonce)
        )
        async with self.store.engine.begin() as conn:
            return set((await conn.execute(stmt)).scalars().all())

    # ------------------------------------------------------------------ SQLite file: direct writer thread
    def _serve_sync(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: one batch at a time, each answered on the event loop."""
        try:
            while (job := self._jobs.get()) is not None:
                keys, done = job
                try:
                    result: set[str] | BaseException = self._insert_sync(keys)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting batch, the thread goes on
                    result = exc
                loop.call_soon_threadsafe(_resolve, done, result)
        finally:
            self._close_sync()

    def _insert_sync(self, keys: list[str]) -> set[str]:
        """Runs on the writer thread only (the connection never leaves it)."""
        if self._conn is None:
            assert self._sqlite_path is not None
            conn = sqlite3.connect(self._sqlite_path, isolation_level=None, timeout=5.0)
            # the main engine's journal settings (server.store.db); a busy timeout because this thread may sleep
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        seen_at = self._seen_at(utcnow()) if self._seen_at else utcnow()
        unique = list(dict.fromkeys(keys))
        table = OadrNonce.__tablename__
        conn = self._conn
        fresh: set[str] = set()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(unique), 400):  # old SQLite builds allow 999 parameters per statement
                chunk = unique[i : i + 400]
                sql = (
                    f"INSERT INTO {table} (nonce, seen_at) VALUES "
                    + ", ".join(["(?, ?)"] * len(chunk))
                    + " ON CONFLICT (nonce) DO NOTHING RETURNING nonce"
                )
                params = [value for key in chunk for value in (key, seen_at)]
                fresh.update(row[0] for row in conn.execute(sql, params).fetchall())
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return fresh

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _resolve(done: asyncio.Future[set[str]], result: set[str] | BaseException) -> None:
    if done.done():  # the batch's waiter was cancelled (the writer is stopping)
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


PRUNE_EVERY_S = 60


async def prune_forever(store: Store, replay_window_s: int) -> None:
    """Forget nonces older than twice the replay window (a message that old is refused for its timestamp)."""
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        cutoff = utcnow() - dt.timedelta(seconds=2 * replay_window_s)
        try:
            async with store.sessions.begin() as session:
                await session.execute(delete(OadrNonce).where(OadrNonce.seen_at < cutoff))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - pruning is housekeeping; it tries again next time
            log.exception("pruning ReplayProtect nonces failed")
