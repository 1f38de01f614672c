"""When each 2030.5 client was last heard from, without a database write per request.

The protocol listener tells ``ContactLog.heard`` of every request of an enrolled EndDevice or aggregator; the log
keeps the newest time per party in memory and ``flush`` writes them all in one batched UPDATE (every
``alarms.contact_flush_s``, and at shutdown). A lost flush loses at most that many seconds of contact, never
correctness: last contact is for people and for the communication watch, which allows for the flush period.
The UPDATE names ``changed_at`` itself so that the column's on-update default does not mistake a poll for a
change to the device."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.scope import Scope
from server.store import Store
from server.store.models import Aggregator, EndDevice

log = logging.getLogger("dso.contact")


class ContactLog:
    """Newest contact per EndDevice and aggregator since the last flush (one process)."""

    def __init__(self) -> None:
        self._devices: dict[int, dt.datetime] = {}
        self._aggregators: dict[int, dt.datetime] = {}

    def heard(self, scope: Scope, at: dt.datetime) -> None:
        """Record a request of this client (a dictionary store: costs nothing on the request path)."""
        if scope.device_id is not None:
            _newest(self._devices, scope.device_id, at)
        if scope.aggregator_id is not None:
            _newest(self._aggregators, scope.aggregator_id, at)

    @property
    def pending(self) -> int:
        return len(self._devices) + len(self._aggregators)

    async def flush(self, store: Store) -> int:
        """Write what was heard since the last flush; returns how many parties were written."""
        devices, self._devices = self._devices, {}
        aggregators, self._aggregators = self._aggregators, {}
        if not devices and not aggregators:
            return 0
        try:
            async with store.sessions.begin() as session:
                await _write(session, devices, aggregators)
        except Exception:
            # keep what was heard for the next attempt (unless newer contact arrived meanwhile)
            for key, at in devices.items():
                self._devices.setdefault(key, at)
            for key, at in aggregators.items():
                self._aggregators.setdefault(key, at)
            raise
        return len(devices) + len(aggregators)

    async def run(self, store: Store, every_s: float, stop: asyncio.Event) -> None:
        """Flush every ``every_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
            try:
                await self.flush(store)
            except Exception:  # the database may be restarting: what was heard is kept for the next round
                log.exception("last-contact flush failed")


def _newest(heard: dict[int, dt.datetime], key: int, at: dt.datetime) -> None:
    before = heard.get(key)
    if before is None or at > before:
        heard[key] = at


async def _write(
    session: AsyncSession, devices: dict[int, dt.datetime], aggregators: dict[int, dt.datetime]
) -> None:
    # executemany: one statement, one round trip per batch; a newer time already stored (another process) stays
    for model, heard in ((EndDevice, devices), (Aggregator, aggregators)):
        if not heard:
            continue
        values: dict = {model.last_contact_at: bindparam("at")}
        if model is EndDevice:
            values[EndDevice.changed_at] = EndDevice.changed_at
        statement = (
            update(model)
            .where(
                model.id == bindparam("pk"),
                (model.last_contact_at.is_(None)) | (model.last_contact_at < bindparam("at")),
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )
        conn = await session.connection()
        await conn.execute(statement, [{"pk": pk, "at": at} for pk, at in sorted(heard.items())])
