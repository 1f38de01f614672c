"""The SQLite driver that runs statements on the event loop's thread: a lock held elsewhere is waited for without
stopping the loop (and given up after the busy timeout), transactions of one process that yield while writing
still all commit, and a long read marked as such runs in a worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.store import sqlite_inline
from server.store.db import LONG_READ, create_store


@pytest.fixture
async def db(tmp_path):
    path = tmp_path / "inline.sqlite3"
    store = create_store(f"sqlite+aiosqlite:///{path}")
    async with store.sessions.begin() as session:
        await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield store, path
    await store.close()


def hold_write_lock(path, seconds: float, taken: threading.Event) -> threading.Thread:
    """Another connection (as another process would) holding the write lock for ``seconds``."""

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('other')")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def count(store) -> int:
    async with store.sessions() as session:
        return (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()


async def test_a_write_waits_for_a_lock_held_elsewhere_while_the_loop_keeps_serving(db):
    store, path = db
    taken = threading.Event()
    holder = hold_write_lock(path, 0.4, taken)
    assert await asyncio.to_thread(taken.wait, 5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    started = time.monotonic()
    async with store.sessions.begin() as session:
        await session.execute(text("INSERT INTO t (v) VALUES ('ours')"))
    waited = time.monotonic() - started
    beat.cancel()
    holder.join()
    assert waited >= 0.3  # it did wait for the other writer's commit
    assert ticks >= 5  # and the loop ran other work meanwhile (a sleeping busy handler would have stopped it)
    assert await count(store) == 2


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_and_stores_nothing(db, monkeypatch):
    store, path = db
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_S", 0.2)
    taken = threading.Event()
    holder = hold_write_lock(path, 1.0, taken)
    assert await asyncio.to_thread(taken.wait, 5)
    with pytest.raises(Exception, match="database is locked"):
        async with store.sessions.begin() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('ours')"))
    holder.join()
    async with store.sessions() as session:
        values = (await session.execute(text("SELECT v FROM t"))).scalars().all()
    assert values == ["other"]


async def test_transactions_of_one_process_that_yield_while_writing_all_commit(db):
    store, _ = db

    async def writer(k: int) -> None:
        async with store.sessions.begin() as session:
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{k}-a"})
            await asyncio.sleep(0.005)  # holds the write lock across a turn of the loop
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{k}-b"})

    await asyncio.gather(*(writer(k) for k in range(8)))
    assert await count(store) == 16


def lock_probe(path, seen: list[str]) -> None:
    """Whether another connection could take the write lock right now (timeout 0: no waiting)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        seen.append("free")
    except sqlite3.OperationalError:
        seen.append("locked")
    finally:
        conn.close()


async def test_sessions_begin_commits_before_the_loop_runs_anything_else(db):
    store, path = db
    plain = async_sessionmaker(store.engine)  # SQLAlchemy's own: its commit runs in a task of its own
    for maker, expected in ((plain, "locked"), (store.sessions, "free")):
        seen: list[str] = []
        async with maker.begin() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('x')"))
            # the next thing the loop runs once this block lets it: is the write lock still held then?
            asyncio.get_running_loop().call_soon(lock_probe, path, seen)
        assert seen == [expected]
    assert await count(store) == 2


async def test_a_long_read_runs_in_a_worker_thread_and_an_ordinary_one_on_the_loop(db):
    store, _ = db
    async with store.sessions.begin() as session:
        await session.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": str(i)} for i in range(500)])
    threads: list[str] = []
    async with store.sessions() as session:
        raw = await (await session.connection()).get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, sqlite_inline.Connection)
        driver._open_conn().set_progress_handler(lambda: threads.append(threading.current_thread().name), 50)
        ordinary = (await session.execute(text("SELECT v FROM t ORDER BY v"))).scalars().all()
        on_loop = set(threads)
        threads.clear()
        long = (
            await session.execute(text("SELECT v FROM t ORDER BY v").execution_options(**LONG_READ))
        ).all()
    assert len(ordinary) == len(long) == 500
    assert on_loop == {threading.current_thread().name}
    assert threads and threading.current_thread().name not in set(threads)
