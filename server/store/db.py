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
    return Store(engine, async_sessionmaker(engine, expire_on_commit=False))


def upsert_insert(session: AsyncSession, model: Any) -> Any:
    """An INSERT for ``model`` in the session's dialect, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (SQLite and PostgreSQL spell ON CONFLICT the same way)."""
    backend = session.bind.dialect.name if session.bind is not None else ""
    return (postgresql if backend == "postgresql" else sqlite).insert(model)
