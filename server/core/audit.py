"""The audit log: who (an account, "bootstrap" or nobody), did what (method, route, a summary of the body with
secrets removed, the outcome), when and from where. Records are only ever added; reading pages in SQL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import AuditRecord
from server.store.paging import fetch_page

# a field whose name contains one of these never reaches the log, whatever its value
SECRET_FIELD = re.compile(r"password|secret|token|totp|code|key|pin|credential|cookie", re.IGNORECASE)
REDACTED = "[redacted]"
MAX_STRING = 200
MAX_ITEMS = 20
MAX_DEPTH = 4
MAX_FIELDS = 50


def redact(value: Any, depth: int = 0) -> Any:
    """The body as far as it helps a reader: secrets replaced, long strings cut, long lists counted."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"{{{len(value)} fields}}"
        shown = {
            str(k)[:MAX_STRING]: REDACTED if SECRET_FIELD.search(str(k)) else redact(v, depth + 1)
            for k, v in list(value.items())[:MAX_FIELDS]
        }
        if len(value) > MAX_FIELDS:  # an unauthenticated caller cannot make the log hold its whole body
            shown["..."] = f"{len(value) - MAX_FIELDS} more fields"
        return shown
    if isinstance(value, list):
        if len(value) > MAX_ITEMS or depth >= MAX_DEPTH:
            return f"[{len(value)} items]"
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str) and len(value) > MAX_STRING:
        return value[:MAX_STRING] + f"... ({len(value)} characters)"
    return value


def record(
    session: AsyncSession,
    *,
    event: str,
    actor: str,
    credential: str,
    method: str = "",
    route: str = "",
    path: str = "",
    summary: dict[str, Any] | None = None,
    status: int = 0,
    detail: str = "",
    remote: str = "",
    at: dt.datetime | None = None,
) -> None:
    session.add(
        AuditRecord(
            at=at or dt.datetime.now(dt.UTC),
            event=event,
            actor=actor[:64],
            credential=credential[:32],
            method=method[:8],
            route=route[:200],
            path=path[:500],
            summary=summary,
            status=status,
            detail=detail,
            remote=remote[:64],
        )
    )


def view(r: AuditRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at,
        "event": r.event,
        "actor": r.actor,
        "credential": r.credential,
        "method": r.method,
        "route": r.route,
        "path": r.path,
        "summary": r.summary,
        "status": r.status,
        "detail": r.detail,
        "remote": r.remote,
    }


async def page(
    session: AsyncSession,
    since: dt.datetime | None,
    offset: int,
    limit: int,
    actor: str | None = None,
    event: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Oldest first (the order things happened), from ``since``."""
    query = select(AuditRecord).order_by(AuditRecord.id)
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if actor:
        query = query.where(AuditRecord.actor == actor)
    if event:
        query = query.where(AuditRecord.event == event)
    rows, total = await fetch_page(session, query, offset, limit)
    return [view(r) for r in rows], total
