"""Fleet figures for monitoring: parties online and offline per kind, undelivered messages per channel.

Counted by the database (COUNT ... GROUP BY), so a scrape costs the same on a fleet of ten or ten thousand.
A 2030.5 EndDevice records no last contact yet, so it is counted as enabled or disabled; VENs are online when
seen within three poll periods (plus the 30 s granularity of ``last_seen_at``), Modbus assets when their last
good poll is within three of their poll periods."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Aggregator, DeliveryMessage, EndDevice, ModbusDevice, Ven

UNDELIVERED = ("pending", "failed")


async def party_states(
    session: AsyncSession, now: dt.datetime, ven_poll_s: int
) -> dict[tuple[str, str], int]:
    """(kind, state) -> how many; every kind and state appears, zeros included."""
    counts: dict[tuple[str, str], int] = {
        ("sep2", "enabled"): 0,
        ("sep2", "disabled"): 0,
        ("aggregator", "enrolled"): 0,
        ("openadr", "online"): 0,
        ("openadr", "offline"): 0,
        ("modbus", "online"): 0,
        ("modbus", "offline"): 0,
    }
    for enabled, n in await session.execute(
        select(EndDevice.enabled, func.count()).group_by(EndDevice.enabled)
    ):
        counts[("sep2", "enabled" if enabled else "disabled")] += n
    counts[("aggregator", "enrolled")] = int(await session.scalar(select(func.count(Aggregator.id))) or 0)
    cutoff = now - dt.timedelta(seconds=3 * ven_poll_s + 30)
    vens = int(await session.scalar(select(func.count(Ven.id))) or 0)
    online = int(await session.scalar(select(func.count(Ven.id)).where(Ven.last_seen_at >= cutoff)) or 0)
    counts[("openadr", "online")], counts[("openadr", "offline")] = online, vens - online
    rows = await session.execute(select(ModbusDevice.poll_s, ModbusDevice.last_ok_at, ModbusDevice.enabled))
    for poll_s, last_ok, enabled in rows:
        fresh = enabled and last_ok is not None and (now - last_ok).total_seconds() <= 3 * max(poll_s, 1)
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
