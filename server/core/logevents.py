"""Device log events (2030.5 LogEvent): stored as posted, listed per device, newest first."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Sep2LogEvent


async def record(
    session: AsyncSession,
    device_id: int,
    *,
    created: dt.datetime,
    function_set: int,
    code: int,
    event_id: int,
    pen: int,
    profile_id: int,
    details: str,
    extended_data: int | None,
    body: str,
) -> Sep2LogEvent:
    event = Sep2LogEvent(
        end_device_id=device_id,
        created_date_time=created,
        function_set=function_set,
        log_event_code=code,
        log_event_id=event_id,
        log_event_pen=pen,
        profile_id=profile_id,
        details=details,
        extended_data=extended_data,
        body=body,
    )
    session.add(event)
    await session.flush()
    return event


def device_events_query(device_id: int) -> Select[Sep2LogEvent]:
    """One device's LogEvents, newest first."""
    return (
        select(Sep2LogEvent)
        .where(Sep2LogEvent.end_device_id == device_id)
        .order_by(Sep2LogEvent.created_date_time.desc(), Sep2LogEvent.id.desc())
    )


async def for_device(session: AsyncSession, device_id: int, limit: int | None = None) -> list[Sep2LogEvent]:
    query = device_events_query(device_id)
    if limit:
        query = query.limit(limit)
    return list(await session.scalars(query))


def as_dict(e: Sep2LogEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "end_device_id": e.end_device_id,
        "created": e.created_date_time.isoformat(),
        "function_set": e.function_set,
        "log_event_code": e.log_event_code,
        "log_event_id": e.log_event_id,
        "log_event_pen": e.log_event_pen,
        "profile_id": e.profile_id,
        "details": e.details,
        "extended_data": e.extended_data,
        "received_at": e.received_at.isoformat(),
        "href": f"/edev/{e.end_device_id}/lel/{e.id}",
    }


async def count(session: AsyncSession, device_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Sep2LogEvent).where(Sep2LogEvent.end_device_id == device_id)
        )
        or 0
    )
