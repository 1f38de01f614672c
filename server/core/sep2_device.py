"""What 2030.5 devices maintain themselves (DER capability/settings/status/availability, ConnectionPoint,
MirrorUsagePoints) and the runtime protocol settings staff change (poll/post rates, client access)."""

from __future__ import annotations

from typing import Any, cast

from lxml import etree
from sqlalchemy import Select, Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from server.core import changes
from server.core.errors import Conflict, Invalid
from server.core.scope import Scope
from server.store.db import upsert_insert
from server.store.models import Sep2DeviceResource, Sep2Mmr, Sep2Mup, Sep2MupReading, Sep2Setting
from server.store.types import utcnow

DEVICE_RESOURCE_KINDS = ("dercap", "derg", "ders", "dera", "cp")
_NS = "{urn:ieee:std:2030.5:ns}"


def der_status_summary(body: str | None) -> dict[str, Any] | None:
    """What staff read first in a stored DERStatus: its connect status (IEEE 2030.5-2023 ``connectStatus``, else
    2018 ``genConnectStatus``; bit 0 connected, bit 1 available (2018) / energized (2023)), the edition it was
    reported in and its readingTime."""
    if body is None:
        return None
    root = etree.fromstring(body.encode())  # stored, validated XML
    field = "connectStatus" if root.find(f"{_NS}connectStatus") is not None else "genConnectStatus"
    value = root.findtext(f"{_NS}{field}/{_NS}value")
    reading = root.findtext(f"{_NS}readingTime")
    return {
        "edition": "2023" if root.get("schemaVer") else "2018",
        "connect_status": None if value is None else {"field": field, "value": value, "bits": int(value, 16)},
        "reading_time": None if reading is None else int(reading),
    }


async def get_resource(session: AsyncSession, device_id: int, kind: str) -> Sep2DeviceResource | None:
    return await session.get(Sep2DeviceResource, (device_id, kind))


async def put_resource(session: AsyncSession, device_id: int, kind: str, body: str) -> None:
    """Store the latest body in one upsert: concurrent first PUTs of one resource (a device's burst) all
    succeed, the last write wins."""
    stmt = upsert_insert(session, Sep2DeviceResource).values(
        end_device_id=device_id, kind=kind, body=body, changed_at=utcnow()
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["end_device_id", "kind"],
            set_={"body": stmt.excluded.body, "changed_at": stmt.excluded.changed_at},
        )
    )


async def device_resources(session: AsyncSession, device_id: int) -> dict[str, str]:
    rows = await session.scalars(
        select(Sep2DeviceResource).where(Sep2DeviceResource.end_device_id == device_id)
    )
    return {r.kind: r.body for r in rows}


# ------------------------------------------------------------------------------------------------ settings
async def get_setting(session: AsyncSession, key: str) -> str | None:
    row = await session.get(Sep2Setting, key)
    return None if row is None else row.value


async def get_settings(session: AsyncSession, keys: set[str]) -> dict[str, str]:
    """The stored values of those of ``keys`` that are set (one query per chunk of keys)."""
    found: dict[str, str] = {}
    wanted = sorted(keys)
    for i in range(0, len(wanted), _SETTING_CHUNK):
        rows = await session.execute(
            select(Sep2Setting.key, Sep2Setting.value).where(
                Sep2Setting.key.in_(wanted[i : i + _SETTING_CHUNK])
            )
        )
        found.update({k: v for k, v in rows.all() if v is not None})
    return found


_SETTING_CHUNK = 5000  # keys per IN (...): below SQLite's and asyncpg's bound-parameter limits


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


async def set_rate(session: AsyncSession, kind: str, resource: str, rate_s: int | None) -> None:
    """Set (or, with None, reset to the default) the ``pollrate`` or ``postrate`` staff give a resource type;
    every resource of that type a client reads changes with it."""
    key = f"{kind}:{resource}"
    value = None if rate_s is None else str(rate_s)
    if await get_setting(session, key) != value:
        await set_setting(session, key, value)
        changes.record(session, resource_types=[resource])


async def all_settings(session: AsyncSession) -> dict[str, str]:
    return {r.key: r.value for r in await session.scalars(select(Sep2Setting))}


# ------------------------------------------------------------------------------------------ MirrorUsagePoints
def mups_query(scope: Scope) -> Select[Sep2Mup]:
    """The MirrorUsagePoints ``scope`` owns (none while its access is revoked), in list order (id)."""
    owners = [] if scope.revoked else scope.mup_owners()
    return select(Sep2Mup).where(Sep2Mup.owner_lfdi.in_(owners)).order_by(Sep2Mup.id)


async def mups_of(session: AsyncSession, scope: Scope) -> list[Sep2Mup]:
    return list(await session.scalars(mups_query(scope)))


# built once (every post of readings looks its MirrorUsagePoint up): as ``mups_query`` with one id
_OWNED_MUP = select(Sep2Mup).where(
    Sep2Mup.owner_lfdi.in_(bindparam("owners", expanding=True)), Sep2Mup.id == bindparam("mup_id")
)


async def owned_mup(session: AsyncSession, scope: Scope, mup_id: int) -> Sep2Mup | None:
    """MirrorUsagePoint ``mup_id`` if ``scope`` owns it."""
    owners = [] if scope.revoked else list(scope.mup_owners())
    return await session.scalar(_OWNED_MUP, {"owners": owners, "mup_id": mup_id})


async def upsert_mup(
    session: AsyncSession, owner_lfdi: str, device_lfdi: str, mrid: str, body: str, mmr_mrids: list[str]
) -> tuple[Sep2Mup, bool]:
    """Create or (same owner, same mRID) replace a MirrorUsagePoint; True when created.

    Meter reading mRIDs are unique server-wide: one already used by another MirrorUsagePoint is a conflict."""
    mup = await session.scalar(select(Sep2Mup).where(Sep2Mup.owner_lfdi == owner_lfdi, Sep2Mup.mrid == mrid))
    if len(set(mmr_mrids)) != len(mmr_mrids):
        raise Invalid("MirrorMeterReading mRIDs must be distinct")
    taken = list(await session.scalars(select(Sep2Mmr).where(Sep2Mmr.mrid.in_(mmr_mrids))))
    for mmr in taken:
        if mup is None or mmr.mup_id != mup.id:
            raise Conflict(f"MirrorMeterReading mRID {mmr.mrid} is already used by another MirrorUsagePoint")
    is_new = mup is None
    if mup is None:
        mup = Sep2Mup(owner_lfdi=owner_lfdi, device_lfdi=device_lfdi, mrid=mrid, body=body)
        session.add(mup)
        await session.flush()
    else:
        mup.body, mup.device_lfdi, mup.changed_at = body, device_lfdi, utcnow()
        await session.execute(delete(Sep2Mmr).where(Sep2Mmr.mup_id == mup.id))
    for m in mmr_mrids:
        session.add(Sep2Mmr(mup_id=mup.id, mrid=m))
    await session.flush()
    if is_new:  # the owner's MirrorUsagePointList (and the count its DeviceCapability shows) changed
        changes.record(session, objects={"mup": [mup.id]})
    return mup, is_new


async def delete_mup(session: AsyncSession, mup: Sep2Mup) -> None:
    await session.delete(mup)
    await session.flush()
    changes.record(session, objects={"mup": [mup.id]})


_MUP_TABLE = cast(Table, Sep2Mup.__table__)
_KEEP_POST = insert(cast(Table, Sep2MupReading.__table__))
_COUNT_READINGS = (
    update(_MUP_TABLE)
    .where(_MUP_TABLE.c.id == bindparam("id_"))
    .values(readings=_MUP_TABLE.c.readings + bindparam("count"), changed_at=bindparam("now"))
)


async def add_readings(session: AsyncSession, mup: Sep2Mup, body: str, count: int) -> None:
    """Keep a post of readings to ``mup`` and count them (two Core statements: the hot path of every device's
    metering, where the ORM's unit of work would cost more than the writes)."""
    now = utcnow()
    await session.execute(_KEEP_POST, {"mup_id": mup.id, "body": body, "received_at": now})
    await session.execute(_COUNT_READINGS, {"id_": mup.id, "count": count, "now": now})
    # the object the caller holds says what the row now says
    set_committed_value(mup, "readings", mup.readings + count)
    set_committed_value(mup, "changed_at", now)


async def delete_mups(session: AsyncSession, scope: Scope) -> int:
    found = await mups_of(session, scope)
    for mup in found:
        await session.delete(mup)
    await session.flush()
    changes.record(session, objects={"mup": [m.id for m in found]})
    return len(found)
