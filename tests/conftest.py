"""Shared fixtures: data directories, live servers on SQLite and PostgreSQL, PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
from support import LiveServer

PG_ADMIN_URL = os.environ.get("DSO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# CI sets this so that a missing PostgreSQL is a failure, never a silent skip
REQUIRE_PG = os.environ.get("DSO_REQUIRE_PG", "") not in ("", "0", "false")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        asyncio.run(_pg("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available", reported verbatim
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; dropped afterwards."""
    reason = pg_available()
    if reason:
        message = f"PostgreSQL tests DID NOT RUN: no server at {PG_ADMIN_URL} ({reason})"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    name = f"dso_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Parametrises a test over both backends."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
async def store(database_url):
    """A migrated store on each backend (with ``database_url``'s parametrisation)."""
    from server.store import create_store
    from server.store.migrate import upgrade

    s = create_store(database_url)
    await upgrade(s)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path):
    """A migrated store on SQLite only (tests of computation over stored data, not of the backends)."""
    from server.store import create_store
    from server.store.migrate import upgrade

    s = create_store(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    await upgrade(s)
    yield s
    await s.close()


@pytest.fixture
def quiet_server(tmp_path) -> Iterator[LiveServer]:
    """A real server with scheduled jobs off, so everything that happens comes from the test."""
    server = LiveServer(tmp_path / "dso", extra_env={"DSO_ORCHESTRATION__ENABLED": "false"}).init().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(tmp_path) -> Iterator[LiveServer]:
    """A fresh initialised data directory with the real server running (SQLite)."""
    server = LiveServer(tmp_path / "dso").init().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One real server for a whole module, for tests that only read or add independent objects."""
    server = LiveServer(tmp_path_factory.mktemp("dso") / "dso").init().start()
    try:
        yield server
    finally:
        server.stop()
