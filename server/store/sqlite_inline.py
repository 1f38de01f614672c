"""An aiosqlite-shaped SQLite driver that runs each statement on the calling thread (the event loop's).

SQLAlchemy's async SQLite dialect drives aiosqlite, which gives every connection a thread and hands each cursor
call (open, execute, fetch, close) to it and back: four thread hops per statement, each waking the event loop.
SQLite statements on the request path take microseconds (an indexed row in the page cache), so the hops cost more
than the work, and while a write transaction's statements wait their turn on a busy loop it holds SQLite's one
write lock, which the other writers then wait for.

Here the same calls run at once: an ``await`` on them never yields, so a request's transaction runs from its first
write to its commit without another request's statements in between. Two things change with that:

* SQLite's own busy handler would sleep on the event loop, so connections open with ``busy_timeout = 0`` and a
  statement that finds the database locked (by another process, or by a transaction of this one that awaits
  something else while it holds the lock) is retried after an ``asyncio.sleep``, growing from 1 ms to 50 ms, for
  up to :data:`BUSY_TIMEOUT_S`; the loop keeps serving meanwhile. Only the first write of a transaction or its
  commit can find the lock taken (the sqlite3 module begins a transaction at its first write), and both are safe
  to repeat.
* A slow statement holds the loop for its duration: the request path's statements are indexed and paged in SQL,
  and a query known to read much (a forecast's or a measurement's history) says so with the execution option
  :data:`IN_THREAD`; its execute and fetch then run in a worker thread while the loop goes on.

The module has the attributes SQLAlchemy's aiosqlite adapter reads of aiosqlite (``connect``, ``Connection``,
the DB-API exception classes, the SQLite version); see :func:`dbapi`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

# execution option: run this statement off the event loop (``server.store.db``)
IN_THREAD = "sqlite_in_thread"
BUSY_TIMEOUT_S = 5.0
_FIRST_WAIT_S, _LONGEST_WAIT_S = 0.001, 0.05

DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(error)


async def _retrying(call: Callable[[], Any]) -> Any:
    """``call()``; while it finds the database locked, again after a short sleep that lets the loop go on."""
    wait, deadline = _FIRST_WAIT_S, time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() + wait > deadline:
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, _LONGEST_WAIT_S)


class _NoThread:
    """Stands for aiosqlite's worker thread, which SQLAlchemy marks as a daemon; there is none."""

    daemon = True


class _AtOnce:
    """Stands for aiosqlite's queue of calls, which SQLAlchemy feeds directly to change the isolation level: the
    call runs now."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to the awaiting caller, as aiosqlite's thread would
            future.set_exception(error)


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.in_thread = False  # set for one statement by ``server.store.db`` (the IN_THREAD option)

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        if self.in_thread:
            # SQLite's own busy handler is harmless off the loop; the connection is this task's alone meanwhile
            await asyncio.to_thread(self._cursor.execute, sql, parameters)
            self.in_thread = self._cursor.description is not None  # and its rows are fetched there too
        else:
            await _retrying(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        rows = list(parameters)  # an iterator could not be replayed after a busy retry
        await _retrying(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        if self.in_thread:
            self.in_thread = False
            return await asyncio.to_thread(self._cursor.fetchall)
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorOpening:
    """What ``Connection.cursor()`` returns: aiosqlite's is awaitable and an async context manager."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def __aexit__(self, *_exc: object) -> None:
        return None


class Connection:
    """One sqlite3 connection used from the event loop's thread only (opened without the same-thread check because
    SQLAlchemy's pool may close it from a finaliser)."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._args, self._kwargs = args, kwargs
        self._conn: sqlite3.Connection | None = None
        self._thread = _NoThread()
        self._tx = _AtOnce()

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    async def _open(self) -> Connection:
        # a transaction takes the write lock at its start (the sqlite3 module begins one before the first write):
        # a BEGIN that finds the lock taken holds nothing yet and is safe to repeat, where a deferred one that had
        # read first would be refused for good once the other writer commits (its snapshot is stale)
        self._conn = sqlite3.connect(
            *self._args, **{**self._kwargs, "check_same_thread": False, "isolation_level": "IMMEDIATE"}
        )
        return self

    @property
    def _connection(self) -> sqlite3.Connection | None:  # SQLAlchemy tests it before a commit or rollback
        return self._conn

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("no active connection")
        return self._conn

    def cursor(self) -> _CursorOpening:
        return _CursorOpening(self._open_conn())

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        cursor = Cursor(self._open_conn().cursor())
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        await _retrying(self._open_conn().commit)

    async def rollback(self) -> None:
        self._open_conn().rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open_conn().create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._open_conn().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._open_conn().isolation_level = value


def connect(*args: Any, **kwargs: Any) -> Connection:
    kwargs.pop("loop", None)
    kwargs.pop("iter_chunk_size", None)
    return Connection(args, kwargs)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """This driver as the DB-API module SQLAlchemy's async SQLite dialect expects (``create_engine(module=...)``)."""
    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
