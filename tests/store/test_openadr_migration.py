"""Migration 0003 applies, reverts and re-applies cleanly on SQLite and PostgreSQL (with a VEN enrolled before it,
as an upgraded installation would have)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from server.store import create_store
from server.store.migrate import current_revision, upgrade

pytestmark = pytest.mark.asyncio


async def _downgrade(store, revision: str) -> None:
    from alembic import command

    from server.store.migrate import alembic_config

    def run(sync_conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(run)


async def test_migration_round_trip(database_url):
    store = create_store(database_url)
    try:
        await upgrade(store, "0001")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ven (name, fingerprint, ven_id, created_at) "
                    "VALUES ('old', 'AA:BB:CC:DD:EE:FF:00:11:22:33', 'VEN-OLD', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(store, "0003")
        assert await current_revision(store) == "0003"
        async with store.engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT http_pull, push_enabled, enabled, registration_id FROM ven"))
            ).one()
        assert (bool(row[0]), bool(row[1]), bool(row[2]), row[3]) == (True, False, True, None)
        await _downgrade(store, "0001")
        assert await current_revision(store) == "0001"
        await upgrade(store, "0003")
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM telemetry"))).scalar() == 0
    finally:
        await store.close()
