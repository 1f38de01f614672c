"""Run Alembic migrations programmatically (on ``dso init`` and ``dso serve``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from server.store.db import Store

HERE = Path(__file__).parent
# any constant works; it only has to be the same in every process of one deployment
PG_MIGRATION_LOCK = 20305_2


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


async def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the schema to ``revision``. On PostgreSQL an advisory lock keeps concurrent starters apart."""

    def run(sync_conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with store.engine.begin() as conn:
        if store.backend == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        await conn.run_sync(run)


async def current_revision(store: Store) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with store.engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
