"""The async engine and session factory for SQLite (WAL) or PostgreSQL.

SQLite takes one writer at a time, and a writer that finds the file locked polls for it (``busy_timeout``) with
growing sleeps: under load a writer can lose that race for the whole timeout and fail with "database is locked"
while others get through. So one process's SQLite writers queue instead, first come first served, on an asyncio
lock taken at a transaction's first write (the statement that makes SQLite take its write lock) and released
at its commit or rollback. Readers never wait for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only


@dataclass
class Store:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers proceed while one writer commits; busy_timeout rides out short write contention
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


BUSY_TIMEOUT_S = 5.0  # what a writer waits for the file (PRAGMA busy_timeout) and for the queue
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_HOLDS = "dso.sqlite-write-lock"


def _queue_sqlite_writers(engine: AsyncEngine) -> None:
    lock = asyncio.Lock()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn, _cursor, statement: str, _params, _context, _many) -> None:
        held = conn.connection.record_info
        if held is None or held.get(_HOLDS) or not statement.lstrip()[:7].upper().startswith(_WRITES):
            return
        try:
            await_only(asyncio.wait_for(lock.acquire(), BUSY_TIMEOUT_S))
        except TimeoutError:
            raise exc.OperationalError(statement, None, Exception("database is locked")) from None
        held[_HOLDS] = True

    def _release(held: dict | None) -> None:
        if held is not None and held.pop(_HOLDS, False):
            lock.release()

    # at the end of the transaction (the next writer's first statement may wait a moment in busy_timeout
    # while this COMMIT finishes), and when a connection goes back to the pool or is dropped unfinished
    for name in ("commit", "rollback"):
        event.listen(engine.sync_engine, name, lambda conn: _release(conn.connection.record_info))
    for name in ("checkin", "invalidate"):
        event.listen(
            engine.sync_engine.pool, name, lambda _dbapi, record, *_: _release(record and record.info)
        )


def create_store(
    url: str, echo: bool = False, pool_size: int = 20, max_overflow: int = 10, pool_pre_ping: bool = True
) -> Store:
    if url.startswith("sqlite:"):
        url = "sqlite+aiosqlite:" + url[len("sqlite:") :]
    elif url.startswith(("postgresql:", "postgres:")):
        url = "postgresql+asyncpg:" + url.split(":", 1)[1]
    kwargs: dict = {"echo": echo}
    if url.startswith("sqlite+aiosqlite:") and ":memory:" not in url:
        # each SQLite connection is a thread (aiosqlite) opened with its PRAGMAs: one opened per checkout beyond
        # the pool and closed after it is a thread started and stopped per request under load, so the pool
        # keeps as many as may be in flight
        kwargs.update(pool_size=pool_size + max_overflow, max_overflow=0, pool_timeout=60)
    if url.startswith("postgresql"):
        # a closed connection is replaced when it is found broken (SQLAlchemy invalidates the pool on a
        # disconnect); recycling keeps connections from outliving server-side idle limits
        kwargs.update(
            pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pool_pre_ping, pool_recycle=1800
        )
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        _queue_sqlite_writers(engine)
    return Store(engine, async_sessionmaker(engine, expire_on_commit=False))


def upsert_insert(session: AsyncSession, model: Any) -> Any:
    """An INSERT for ``model`` in the session's dialect, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (SQLite and PostgreSQL spell ON CONFLICT the same way)."""
    backend = session.bind.dialect.name if session.bind is not None else ""
    return (postgresql if backend == "postgresql" else sqlite).insert(model)
