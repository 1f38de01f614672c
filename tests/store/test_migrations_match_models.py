"""The Alembic migrations build exactly the schema the SQLAlchemy models describe, on SQLite and PostgreSQL:
a fresh database upgraded to head, compared with ``Base.metadata`` by Alembic's autogenerate, shows no difference
(tables, columns, types, nullability, indexes, unique constraints, foreign keys)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.store import create_store
from server.store.migrate import upgrade
from server.store.models import Base

pytestmark = pytest.mark.asyncio


def _differences(sync_conn) -> list:
    context = MigrationContext.configure(
        sync_conn,
        opts={"compare_type": True, "compare_server_default": False, "target_metadata": Base.metadata},
    )
    return [d for d in compare_metadata(context, Base.metadata) if not _is_version_table(d)]


def _is_version_table(diff) -> bool:
    # Alembic's own bookkeeping table is not part of the models
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


async def test_upgraded_schema_equals_models(database_url):
    store = create_store(database_url)
    try:
        await upgrade(store)
        async with store.engine.connect() as conn:
            diffs = await conn.run_sync(_differences)
    finally:
        await store.close()
    assert diffs == [], "migrations and models disagree:\n" + "\n".join(map(repr, diffs))
