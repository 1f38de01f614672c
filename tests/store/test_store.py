"""The store on both backends: migrations, device enrolment rules, UTC datetimes, WAL on SQLite."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from server import pki
from server.core import parties
from server.core.errors import Conflict, Invalid, NotFound
from server.store.migrate import current_revision, upgrade

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
AGG = "AA" * 20


async def test_migrations_reach_head_and_are_idempotent(store):
    head = await current_revision(store)
    assert head is not None
    await upgrade(store)
    assert await current_revision(store) == head


async def test_enroll_list_get_delete(store):
    async with store.sessions.begin() as session:
        d = await parties.enroll_device(session, LFDI.lower(), pin=111115, aggregator_lfdi=AGG, name="pv-1")
    assert d.lfdi == LFDI and d.sfdi == pki.sfdi_from_lfdi(LFDI) and d.aggregator_lfdi == AGG
    async with store.sessions() as session:
        # the aggregator's own EndDevice (CSIP-AUS) and the device under it
        assert sorted(x.lfdi for x in await parties.list_devices(session)) == sorted([AGG, LFDI])
        assert [x.lfdi for x in await parties.list_devices(session, aggregator_lfdi=AGG)] == [LFDI]
        assert await parties.list_devices(session, aggregator_lfdi="BB" * 20) == []
        assert (await parties.get_device(session, d.id)).name == "pv-1"
    async with store.sessions.begin() as session:
        await parties.delete_device(session, d.id)
    async with store.sessions() as session:
        with pytest.raises(NotFound):
            await parties.get_device(session, d.id)
        assert await parties.count_devices(session) == 1  # the aggregator's own EndDevice stays


async def test_duplicate_lfdi_is_a_conflict_and_stores_nothing_more(store):
    async with store.sessions.begin() as session:
        await parties.enroll_device(session, LFDI)
    with pytest.raises(Conflict):
        async with store.sessions.begin() as session:
            await parties.enroll_device(session, LFDI, aggregator_lfdi=AGG)
    async with store.sessions() as session:
        assert await parties.count_devices(session) == 1
        # the aggregator created inside the failed transaction was rolled back with it
        assert (await session.execute(text("SELECT count(*) FROM aggregator"))).scalar() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lfdi": "nothex"},
        {"lfdi": LFDI, "sfdi": 123},
        {"lfdi": LFDI, "pin": -1},
        {"lfdi": LFDI, "pin": 10_000_000},
    ],
)
async def test_invalid_enrolment_is_rejected(store, kwargs):
    with pytest.raises(Invalid):
        async with store.sessions.begin() as session:
            await parties.enroll_device(session, **kwargs)
    async with store.sessions() as session:
        assert await parties.count_devices(session) == 0


async def test_datetimes_come_back_as_aware_utc(store):
    async with store.sessions.begin() as session:
        d = await parties.enroll_device(session, LFDI)
    created = dt.datetime.fromisoformat(d.created_at)
    assert created.tzinfo is not None and created.utcoffset() == dt.timedelta(0)
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


async def test_backend_specifics(store):
    async with store.engine.connect() as conn:
        if store.backend == "sqlite":
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        else:
            assert store.backend == "postgresql"
            assert "PostgreSQL" in (await conn.execute(text("SELECT version()"))).scalar()
