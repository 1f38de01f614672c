"""The async engine and session factory for SQLite (WAL) or PostgreSQL.

SQLite runs on the event loop's thread (``server.store.sqlite_inline``): no thread hop per statement, and a
transaction's statements run without other requests' in between."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from server.store import sqlite_inline


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
    # WAL lets readers proceed while one writer commits
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # a locked database is waited for by the driver (an asyncio sleep), never by SQLite's sleeping busy handler,
    # which would stop the event loop
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


def _mark_in_thread(_conn, cursor, _statement, _params, context, _many) -> None:
    # the inline driver's cursor behind SQLAlchemy's adapter runs this one statement in a worker thread
    if context is not None and context.execution_options.get(sqlite_inline.IN_THREAD):
        driver_cursor = getattr(cursor, "_cursor", None)
        if isinstance(driver_cursor, sqlite_inline.Cursor):
            driver_cursor.in_thread = True


class _CommitInTask:
    """``async with sessions.begin() as session``, committed (or rolled back) in the caller's own task.

    SQLAlchemy's own runs the commit in a task of its own, which starts one turn of the event loop later; on
    SQLite, whose one write lock a transaction holds from its first write to its commit, every other request's
    write would wait out that turn. The session is still closed the way SQLAlchemy closes it (safe from the
    caller's cancellation); the commit cannot be cut off halfway either, as SQLite's statements here never yield
    except to wait for a lock (``sqlite_inline``)."""

    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def __aenter__(self) -> AsyncSession:
        await self.session.begin()
        return self.session

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                await self.session.commit()
            else:
                await self.session.rollback()
        finally:
            await self.session.__aexit__(exc_type, exc, tb)


class _SqliteSessions(async_sessionmaker[AsyncSession]):
    def begin(self) -> Any:
        return _CommitInTask(self())


def create_store(
    url: str, echo: bool = False, pool_size: int = 20, max_overflow: int = 10, pool_pre_ping: bool = True
) -> Store:
    if url.startswith("sqlite:"):
        url = "sqlite+aiosqlite:" + url[len("sqlite:") :]
    elif url.startswith(("postgresql:", "postgres:")):
        url = "postgresql+asyncpg:" + url.split(":", 1)[1]
    kwargs: dict = {"echo": echo}
    if url.startswith("sqlite+aiosqlite:"):
        kwargs["module"] = sqlite_inline.dbapi()
    if url.startswith("postgresql"):
        # a closed connection is replaced when it is found broken (SQLAlchemy invalidates the pool on a
        # disconnect); recycling keeps connections from outliving server-side idle limits
        kwargs.update(
            pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pool_pre_ping, pool_recycle=1800
        )
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "before_cursor_execute", _mark_in_thread)
    maker = _SqliteSessions if engine.dialect.name == "sqlite" else async_sessionmaker
    return Store(engine, maker(engine, expire_on_commit=False))


LONG_READ = {sqlite_inline.IN_THREAD: True}
"""Execution options of a query that reads much (a history): on SQLite it runs off the event loop."""


def upsert_insert(session: AsyncSession, model: Any) -> Any:
    """An INSERT for ``model`` in the session's dialect, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (SQLite and PostgreSQL spell ON CONFLICT the same way)."""
    backend = session.bind.dialect.name if session.bind is not None else ""
    return (postgresql if backend == "postgresql" else sqlite).insert(model)
