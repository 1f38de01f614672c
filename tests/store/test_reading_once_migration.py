"""Migration 0008 on SQLite and PostgreSQL: readings stored twice before it are stored once after it (the
earliest kept), and from then on the telemetry store refuses a second copy of a reading while taking new
ones."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, text

from server.core import telemetry
from server.store import create_store
from server.store.migrate import current_revision, upgrade
from server.store.models import TelemetryReading

pytestmark = pytest.mark.asyncio

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
ROW = {
    "source_kind": "device",
    "source_id": "LFDI1",
    "resource": "MMR",
    "measurement": "realPower",
    "unit": "W",
}


async def test_duplicates_removed_then_refused(database_url):
    store = create_store(database_url)
    try:
        await upgrade(store, "0007")
        ts = [T0, T0, T0 + dt.timedelta(minutes=5)]
        async with store.engine.begin() as conn:
            for when, value, rtype in [
                (ts[0], 1.0, ""),
                (ts[1], 2.0, ""),
                (ts[0], 3.0, "q2"),
                (ts[2], 4.0, ""),
            ]:
                await conn.execute(
                    insert(TelemetryReading).values(ts=when, value=value, reading_type=rtype, **ROW)
                )
            await conn.execute(insert(TelemetryReading).values(ts=ts[2], value=5.0, reading_type="", **ROW))
        await upgrade(store, "0008")
        assert await current_revision(store) == "0008"
        async with store.engine.connect() as conn:
            kept = sorted((await conn.execute(text("SELECT reading_type, value FROM telemetry"))).all())
        # per (source, series, reading type, time) the first stored row; another reading type: another series
        assert [tuple(r) for r in kept] == [("", 1.0), ("", 4.0), ("q2", 3.0)]

        reading = telemetry.Reading("device", "LFDI1", "realPower", T0, 9.0, "W", resource="MMR")
        later = telemetry.Reading("device", "LFDI1", "realPower", T0 + dt.timedelta(hours=1), 7.0, "W", "MMR")
        async with store.sessions.begin() as session:
            # the same reading again (twice in one call, too) is not stored; the new one is, once
            new = await telemetry.add_new(session, [reading, later, later])
        assert new == [later]
        async with store.sessions() as session:
            rows = await telemetry.query(session, source_id="LFDI1", measurement="realPower")
        assert sorted((r["reading_type"], r["value"]) for r in rows) == [
            ("", 1.0),
            ("", 4.0),
            ("", 7.0),
            ("q2", 3.0),
        ]
    finally:
        await store.close()
