"""Fleet figures for monitoring: parties online and offline per kind, undelivered messages per channel.

Counted by the database (COUNT ... GROUP BY), so a scrape costs the same on a fleet of ten or ten thousand.
A party is online when heard within ``alarms.comms_lost_factor`` of its poll periods (the windows of
``server.core.comms``, which raises the COMMS_LOST alarms by the same rule); a disabled 2030.5 EndDevice is
counted as disabled."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.core import comms
from server.store.models import Aggregator, DeliveryMessage, EndDevice, ModbusDevice, Ven

UNDELIVERED = ("pending", "failed")


async def party_states(
    session: AsyncSession, now: dt.datetime, settings: Settings
) -> dict[tuple[str, str], int]:
    """(kind, state) -> how many; every kind and state appears, zeros included."""
    counts: dict[tuple[str, str], int] = {
        (kind, state): 0
        for kind in ("sep2", "aggregator", "openadr", "modbus")
        for state in ("online", "offline")
    }
    counts[("sep2", "disabled")] = 0
    w = await comms.windows(session, settings)
    sep2_cutoff = now - dt.timedelta(seconds=w.sep2_s)
    contact = comms.device_contact()
    heard = case((contact >= sep2_cutoff, "online"), else_="offline")
    for state, enabled, n in await session.execute(
        select(heard, EndDevice.enabled, func.count())
        .outerjoin(Aggregator, Aggregator.id == EndDevice.aggregator_id)
        .where(comms.fleet_devices())
        .group_by(heard, EndDevice.enabled)
    ):
        counts[("sep2", state if enabled else "disabled")] += n
    aggs = case((Aggregator.last_contact_at >= sep2_cutoff, "online"), else_="offline")
    for state, n in await session.execute(select(aggs, func.count()).group_by(aggs)):
        counts[("aggregator", state)] += n
    cutoff = now - dt.timedelta(seconds=w.ven_s)
    vens = int(await session.scalar(select(func.count(Ven.id))) or 0)
    online = int(await session.scalar(select(func.count(Ven.id)).where(Ven.last_seen_at >= cutoff)) or 0)
    counts[("openadr", "online")], counts[("openadr", "offline")] = online, vens - online
    rows = await session.execute(select(ModbusDevice.poll_s, ModbusDevice.last_ok_at, ModbusDevice.enabled))
    for poll_s, last_ok, enabled in rows:
        fresh = enabled and last_ok is not None and (now - last_ok).total_seconds() <= w.modbus_s(poll_s)
        counts[("modbus", "online" if fresh else "offline")] += 1
    return counts


async def undelivered(session: AsyncSession) -> dict[tuple[str, str], int]:
    """(channel, status) -> messages pending or failed (dead letters)."""
    rows = await session.execute(
        select(DeliveryMessage.channel, DeliveryMessage.status, func.count())
        .where(DeliveryMessage.status.in_(UNDELIVERED))
        .group_by(DeliveryMessage.channel, DeliveryMessage.status)
    )
    return {(channel, status): n for channel, status, n in rows}
