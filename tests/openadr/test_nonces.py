"""ReplayProtect nonce recording: the direct SQLite writer and the SQLAlchemy path agree (new -> True once, a
repeat -> False, duplicates inside one batch -> only the first), and write the same stored form."""

from __future__ import annotations

import asyncio
import sqlite3

from server.openadr.nonces import NonceWriter
from server.store import create_store
from server.store.migrate import upgrade


def test_direct_sqlite_writer_and_sqlalchemy_path(tmp_path):
    async def main() -> None:
        store = create_store(f"sqlite+aiosqlite:///{tmp_path}/n.db")
        await upgrade(store)
        direct = NonceWriter(store)
        assert direct._sqlite_path  # a file database uses the direct writer
        direct.start()
        assert await direct.record("a") and not await direct.record("a")
        many = await asyncio.gather(
            *(direct.record(k) for k in ["b", "b", "c", "a", *(f"k{i}" for i in range(900))])
        )
        assert many[:4] == [True, False, True, False] and all(many[4:])
        await direct.stop()
        generic = NonceWriter(store)
        generic._sqlite_path = None  # force the SQLAlchemy path (what PostgreSQL uses)
        generic.start()
        assert await generic.record("via-sqlalchemy") and not await generic.record("b")
        await generic.stop()
        await store.close()

    asyncio.run(main())
    rows = dict(
        sqlite3.connect(tmp_path / "n.db")
        .execute("SELECT nonce, seen_at FROM oadr_nonce WHERE nonce IN ('a', 'via-sqlalchemy')")
        .fetchall()
    )
    assert len(rows["a"]) == len(rows["via-sqlalchemy"]) == 26  # same 'YYYY-MM-DD HH:MM:SS.ffffff' form
