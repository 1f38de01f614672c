"""Alarms: one open alarm per condition and subject (raised again = refreshed and counted), cleared and reopened
as a new row, acknowledged with the name of who did it; listed and acknowledged through the admin API and
``dso alarms``; open alarms counted in /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from support import LiveServer, dso, dso_json

from server.core import alarms
from server.core.errors import Invalid, NotFound
from server.store import create_store

T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


async def test_raise_refresh_clear_reopen_acknowledge(store):
    async with store.sessions.begin() as session:
        first = await alarms.raise_alarm(
            session, alarms.PLAN_FAILED, "plan:day-ahead", "solver error", now=T0
        )
        again = await alarms.raise_alarm(
            session,
            alarms.PLAN_FAILED,
            "plan:day-ahead",
            "no forecast for node t1",
            severity="critical",
            now=T0 + dt.timedelta(minutes=15),
        )
        other = await alarms.raise_alarm(session, alarms.PLAN_FAILED, "plan:intraday", "solver error", now=T0)
    assert again.id == first.id and again.occurrences == 2 and other.id != first.id
    assert again.severity == "critical" and again.message == "no forecast for node t1"
    assert again.raised_at == T0 and again.last_seen_at == T0 + dt.timedelta(minutes=15)
    async with store.sessions.begin() as session:
        # a later warning does not lower a critical alarm
        assert (
            await alarms.raise_alarm(session, alarms.PLAN_FAILED, "plan:day-ahead", "x")
        ).severity == "critical"
        acked = await alarms.acknowledge(session, first.id, "olga", now=T0 + dt.timedelta(hours=1))
        assert acked["acknowledged_by"] == "olga"
        # acknowledging twice keeps the first acknowledgement
        assert (await alarms.acknowledge(session, first.id, "ivan"))["acknowledged_by"] == "olga"
        assert await alarms.clear(
            session, alarms.PLAN_FAILED, "plan:day-ahead", now=T0 + dt.timedelta(hours=2)
        )
        assert not await alarms.clear(session, alarms.PLAN_FAILED, "plan:day-ahead")
        reopened = await alarms.raise_alarm(session, alarms.PLAN_FAILED, "plan:day-ahead", "solver error")
    assert reopened.id not in (first.id, other.id) and reopened.occurrences == 1
    async with store.sessions() as session:
        open_rows, open_total = await alarms.page(session, state="open")
        assert open_total == 2 and [r["id"] for r in open_rows] == [reopened.id, other.id]
        assert (await alarms.page(session, state="cleared"))[1] == 1
        assert (await alarms.page(session, state="acknowledged"))[1] == 1
        assert (await alarms.page(session, state="unacknowledged"))[1] == 2
        assert (await alarms.page(session, state="all", subject="plan:day-ahead"))[1] == 2
        one, total = await alarms.page(session, state="all", offset=1, limit=1)
        assert total == 3 and len(one) == 1
        counts = await alarms.open_counts(session)
        assert counts[(alarms.PLAN_FAILED, "warning")] == 2 and counts[(alarms.COMMS_LOST, "critical")] == 0
    async with store.sessions.begin() as session:
        with pytest.raises(Invalid):
            await alarms.raise_alarm(session, "made-up", "x", "y")
        with pytest.raises(Invalid):
            await alarms.raise_alarm(session, alarms.SCHEDULER, "x", "y", severity="fatal")
        with pytest.raises(NotFound):
            await alarms.acknowledge(session, 99_999, "olga")
        with pytest.raises(Invalid):
            await alarms.page(session, state="sleeping")


def _raise_in(server: LiveServer, kind: str, subject: str, message: str) -> None:
    async def go() -> None:
        store = create_store(f"sqlite+aiosqlite:///{server.home / 'dso.sqlite3'}")
        async with store.sessions.begin() as session:
            await alarms.raise_alarm(session, kind, subject, message, severity="critical")
        await store.close()

    asyncio.run(go())


def _gauge(text: str, kind: str, severity: str) -> float:
    line = f'dso_alarms_open{{kind="{kind}",severity="{severity}"}} '
    return float(next(x for x in text.splitlines() if x.startswith(line)).split()[-1])


def test_alarms_through_the_admin_api_cli_and_metrics(quiet_server):
    server = quiet_server
    assert _gauge(server.admin("GET", "/metrics")[1], alarms.FORECAST_FAILED, "critical") == 0
    _raise_in(server, alarms.FORECAST_FAILED, "node:feeder-1", "no telemetry since 2026-12-01")
    status, rows = server.admin("GET", "/api/v1/alarms")
    assert status == 200 and [(r["kind"], r["subject"]) for r in rows] == [
        (alarms.FORECAST_FAILED, "node:feeder-1")
    ]
    assert _gauge(server.admin("GET", "/metrics")[1], alarms.FORECAST_FAILED, "critical") == 1
    listed = dso_json("alarms", "list", "-c", server.config, "--json")
    assert [r["id"] for r in listed] == [rows[0]["id"]]
    assert "no telemetry since 2026-12-01" in dso("alarms", "list", "-c", server.config).stdout
    acked = dso_json("alarms", "ack", str(rows[0]["id"]), "-c", server.config, "--json")
    assert acked["acknowledged_by"] == "bootstrap" and acked["acknowledged_at"]
    assert server.admin("GET", "/api/v1/alarms?state=unacknowledged")[1] == []
    assert server.admin("GET", "/api/v1/alarms?state=nonsense")[0] == 400
    assert server.admin("POST", "/api/v1/alarms/abc/acknowledge")[0] == 400
    assert server.admin("POST", "/api/v1/alarms/424242/acknowledge")[0] == 404
    audit = server.admin("GET", "/api/v1/audit")[1]
    assert any(r["route"] == "/api/v1/alarms/{id}/acknowledge" and r["status"] == 200 for r in audit)
