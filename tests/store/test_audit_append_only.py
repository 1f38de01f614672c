"""The audit log is append-only in the database itself: UPDATE and DELETE of a record are refused by a trigger on
SQLite and PostgreSQL, whoever connects."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from server.core import audit
from server.store.models import AuditRecord

pytestmark = pytest.mark.asyncio


async def test_audit_records_cannot_be_changed_or_removed(store):
    async with store.sessions.begin() as session:
        audit.record(session, event="request", actor="olga", credential="session", method="POST", status=201)
    for statement in (
        update(AuditRecord).values(actor="someone else"),
        delete(AuditRecord),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with store.sessions.begin() as session:
                await session.execute(statement)
    async with store.sessions() as session:
        assert list(await session.scalars(select(AuditRecord.actor))) == ["olga"]
