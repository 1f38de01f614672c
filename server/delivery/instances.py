"""Delivery processes and their claims: each running worker has a row with a heartbeat; the heartbeat renews the
leases of what it is sending; a process whose heartbeat went stale -- or, on the same host and process
namespace, whose process id is gone -- is dead, and any live process releases its claims at once instead of
letting them hold every message queued behind them until their leases lapse."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import DeliverySettings
from server.delivery.outbox import PENDING
from server.store.models import DeliveryInstance, DeliveryMessage
from server.store.types import utcnow

log = logging.getLogger("dso.delivery")


def rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def host_identity() -> str:
    """Host name plus process-id namespace: two processes with equal values can see each other's process ids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"[:255]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True


@dataclass(frozen=True)
class Instance:
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=host_identity)
    pid: int = field(default_factory=os.getpid)


async def register(session: AsyncSession, me: Instance) -> None:
    now = utcnow()
    session.add(DeliveryInstance(id=me.id, host=me.host, pid=me.pid, started_at=now, heartbeat_at=now))


async def beat(session: AsyncSession, me: Instance, settings: DeliverySettings) -> int:
    """Renew this process's heartbeat and the leases it holds; release the claims of dead processes. Returns how
    many messages were released."""
    now = utcnow()
    alive = await session.execute(
        update(DeliveryInstance).where(DeliveryInstance.id == me.id).values(heartbeat_at=now)
    )
    if rowcount(alive) == 0:
        # another process took us for dead (we were stalled past stale_after_s) and released our claims; our
        # in-flight sends may still finish, but we rejoin as a fresh row
        session.add(DeliveryInstance(id=me.id, host=me.host, pid=me.pid, started_at=now, heartbeat_at=now))
    await session.execute(
        update(DeliveryMessage)
        .where(DeliveryMessage.lease_owner == me.id, DeliveryMessage.status == PENDING)
        .values(lease_until=now + dt.timedelta(seconds=settings.lease_s))
        .execution_options(synchronize_session=False)
    )
    return await release_dead(session, me, settings, now)


def _dead(row: DeliveryInstance, me: Instance, stale_before: dt.datetime) -> bool:
    if row.id == me.id:
        return False
    if row.heartbeat_at < stale_before:
        return True
    return row.host == me.host and row.pid != me.pid and not process_alive(row.pid)


async def release_dead(
    session: AsyncSession, me: Instance, settings: DeliverySettings, now: dt.datetime | None = None
) -> int:
    now = now or utcnow()
    stale_before = now - dt.timedelta(seconds=settings.stale_after_s)
    rows = list(await session.scalars(select(DeliveryInstance).where(DeliveryInstance.id != me.id)))
    dead = [r.id for r in rows if _dead(r, me, stale_before)]
    count = 0
    if dead:
        released = await session.execute(
            update(DeliveryMessage)
            .where(DeliveryMessage.lease_owner.in_(dead), DeliveryMessage.status == PENDING)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            delete(DeliveryInstance)
            .where(DeliveryInstance.id.in_(dead))
            .execution_options(synchronize_session=False)
        )
        count = rowcount(released)
        log.warning("released %d claimed message(s) of %d dead delivery process(es)", count, len(dead))
    # claims whose owner has no row at all (it was removed while a claim of its survived): nobody renews them
    orphans = await session.execute(
        update(DeliveryMessage)
        .where(
            DeliveryMessage.lease_owner.is_not(None),
            DeliveryMessage.status == PENDING,
            DeliveryMessage.lease_owner.not_in(select(DeliveryInstance.id)),
        )
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    if rowcount(orphans):
        log.warning("released %d claimed message(s) whose delivery process is gone", rowcount(orphans))
    return count + rowcount(orphans)


async def retire(session: AsyncSession, me: Instance) -> None:
    """A clean stop (after the finished sends were recorded): hand back every claim still held, remove this
    process's row."""
    await session.execute(
        update(DeliveryMessage)
        .where(DeliveryMessage.lease_owner == me.id, DeliveryMessage.status == PENDING)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(DeliveryInstance).where(DeliveryInstance.id == me.id))
