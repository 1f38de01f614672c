"""Responses devices send about controls (received, started, completed, opted out, cancelled, superseded, ...).

Stored as they arrive, visible to staff per control. The status codes are 2030.5 ResponseType values (Table 27):
1 received, 2 started, 3 completed, 4 opt-out, 5 opt-in, 6 cancelled, 7 superseded, 8 partial opt-out,
9 partial opt-in, 10 completed with no user participation, 11 user acknowledge, 12 user decline, 13 not
applicable, 14 invalid event/subject, 15..252 reserved, 253 event abort, 254 user-defined... reserved values are
rejected.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import Invalid
from server.store.models import Sep2Response

VALID_STATUSES = set(range(0, 15)) | {252, 253, 254}


def check_status(status: int) -> int:
    if status not in VALID_STATUSES:
        raise Invalid(f"response status {status} is reserved")
    return status


async def record(
    session: AsyncSession,
    control_id: int,
    end_device_id: int | None,
    lfdi: str,
    status: int,
    created: dt.datetime,
) -> Sep2Response:
    response = Sep2Response(
        control_id=control_id,
        end_device_id=end_device_id,
        lfdi=lfdi,
        status=check_status(status),
        created_date_time=created,
    )
    session.add(response)
    await session.flush()
    return response


async def for_control(session: AsyncSession, control_id: int) -> list[Sep2Response]:
    return list(
        await session.scalars(
            select(Sep2Response).where(Sep2Response.control_id == control_id).order_by(Sep2Response.id)
        )
    )


async def get(session: AsyncSession, response_id: int) -> Sep2Response | None:
    return await session.get(Sep2Response, response_id)


def responses_query(
    end_device_ids: list[int] | Select[int] | None = None,
) -> Select[Sep2Response]:
    """Responses, newest first; of these EndDevices (a list or an id subquery) when given."""
    query = select(Sep2Response).order_by(Sep2Response.created_date_time.desc(), Sep2Response.id.desc())
    if end_device_ids is not None:
        query = query.where(Sep2Response.end_device_id.in_(end_device_ids))
    return query


async def all_responses(session: AsyncSession, end_device_ids: list[int] | None = None) -> list[Sep2Response]:
    return list(await session.scalars(responses_query(end_device_ids)))


def response_dict(r: Sep2Response) -> dict[str, Any]:
    return {
        "id": r.id,
        "control_id": r.control_id,
        "end_device_id": r.end_device_id,
        "lfdi": r.lfdi,
        "status": r.status,
        "created": r.created_date_time.isoformat(),
        "received_at": r.received_at.isoformat(),
    }
