"""What 2030.5 devices maintain themselves (DER capability/settings/status/availability, ConnectionPoint,
MirrorUsagePoints) and the runtime protocol settings staff change (poll/post rates, client access)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Sep2DeviceResource, Sep2Setting
from server.store.types import utcnow

DEVICE_RESOURCE_KINDS = ("dercap", "derg", "ders", "dera", "cp")


async def get_resource(session: AsyncSession, device_id: int, kind: str) -> Sep2DeviceResource | None:
    return await session.get(Sep2DeviceResource, (device_id, kind))


async def put_resource(session: AsyncSession, device_id: int, kind: str, body: str) -> bool:
    """Store the latest body; True when it was created (201) rather than replaced (204)."""
    existing = await session.get(Sep2DeviceResource, (device_id, kind))
    if existing is None:
        session.add(Sep2DeviceResource(end_device_id=device_id, kind=kind, body=body))
        await session.flush()
        return True
    existing.body = body
    existing.changed_at = utcnow()
    await session.flush()
    return False


async def device_resources(session: AsyncSession, device_id: int) -> dict[str, str]:
    rows = await session.scalars(select(Sep2DeviceResource).where(Sep2DeviceResource.end_device_id == device_id))
    return {r.kind: r.body for r in rows}


# ------------------------------------------------------------------------------------------------ settings
async def get_setting(session: AsyncSession, key: str) -> str | None:
    row = await session.get(Sep2Setting, key)
    return None if row is None else row.value


async def set_setting(session: AsyncSession, key: str, value: str | None) -> None:
    if value is None:
        await session.execute(delete(Sep2Setting).where(Sep2Setting.key == key))
        return
    row = await session.get(Sep2Setting, key)
    if row is None:
        session.add(Sep2Setting(key=key, value=value))
    else:
        row.value = value
    await session.flush()


async def all_settings(session: AsyncSession) -> dict[str, str]:
    return {r.key: r.value for r in await session.scalars(select(Sep2Setting))}
