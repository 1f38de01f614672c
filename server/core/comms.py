"""The communication watch: which parties went quiet, which receivers keep refusing their messages.

A party is *online* when heard within ``alarms.comms_lost_factor`` of its poll periods: a 2030.5 EndDevice or
aggregator by its last request (``server.core.contact``, written every ``contact_flush_s``, which the window
allows for; a device behind an aggregator is heard when its aggregator is), a VEN by its last message
(``last_seen_at``, 30 s granularity), a Modbus asset by its last good poll. ``check`` opens a COMMS_LOST alarm for
each party that was heard once and is now quiet, and clears it when the party is heard again; it opens a
DELIVERY_FAILING alarm for each order key (a subscription, a VEN's stream) whose newest finished message is a dead
letter, cleared once a later message is delivered or the dead letter is requeued. A party never heard is offline
but not alarmed (enrolling a thousand devices before they are installed is not an outage).

The watch runs on the scheduler's leader only, and judges a kind of party only once it has led for that kind's
whole window: the contact another process heard reaches the database within a flush period, but this process's
own memory of what it heard before a restart is gone."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.core import alarms
from server.core.contact import ContactLog
from server.store import Store
from server.store.models import Aggregator, DeliveryMessage, EndDevice, ModbusDevice, Sep2Setting, Ven
from server.store.models.devices import AGGREGATOR_OWN

log = logging.getLogger("dso.comms")

VEN_GRANULARITY_S = 30  # last_seen_at is written at most this often (server.core.vens)
SEP2_POLL_SETTING = "pollrate:DeviceCapability"  # a device's first poll; the default poll rate otherwise


@dataclass(frozen=True)
class Windows:
    """How long each kind of party may stay quiet before it counts as lost, in seconds."""

    sep2_s: float
    ven_s: float
    factor: float
    modbus_slack_s: float = 0.0

    def modbus_s(self, poll_s: int) -> float:
        return self.factor * max(poll_s, 1) + self.modbus_slack_s


async def windows(session: AsyncSession, settings: Settings) -> Windows:
    override = await session.scalar(select(Sep2Setting.value).where(Sep2Setting.key == SEP2_POLL_SETTING))
    sep2_poll = int(override) if override is not None else settings.sep2.poll_rate_s
    factor = settings.alarms.comms_lost_factor
    return Windows(
        sep2_s=factor * sep2_poll + settings.alarms.contact_flush_s,
        ven_s=factor * settings.openadr.poll_freq_s + VEN_GRANULARITY_S,
        factor=factor,
    )


def fleet_devices():
    """The EndDevices that are the fleet's devices (SQL condition): not the one CSIP-AUS gives each aggregator
    itself, which the aggregator's own requests keep alive and the fleet view counts as the aggregator."""
    return EndDevice.registered_by != AGGREGATOR_OWN


def device_contact():
    """A device's last contact: its own request or its aggregator's, whichever is newer (SQL expression)."""
    own, agg = EndDevice.last_contact_at, Aggregator.last_contact_at
    return case(
        (agg.is_(None), own),
        (own.is_(None), agg),
        (agg > own, agg),
        else_=own,
    )


@dataclass(frozen=True)
class Quiet:
    """A party not heard within its window: what to tell staff, and the window it was judged by."""

    message: str
    allowed_s: float


def device_subject(lfdi: str) -> str:
    return f"device:{lfdi}"


def _ago(now: dt.datetime, then: dt.datetime | None) -> str:
    return "ever" if then is None else f"{(now - then).total_seconds():.0f} s"


async def _lost_sep2(session: AsyncSession, now: dt.datetime, w: Windows) -> dict[str, Quiet]:
    cutoff = now - dt.timedelta(seconds=w.sep2_s)
    lost: dict[str, Quiet] = {}
    contact = device_contact()
    rows = await session.execute(
        select(EndDevice.lfdi, EndDevice.name, contact)
        .outerjoin(Aggregator, Aggregator.id == EndDevice.aggregator_id)
        .where(
            fleet_devices(),
            EndDevice.enabled.is_(True),
            EndDevice.last_contact_at.is_not(None),
            contact < cutoff,
        )
    )
    for lfdi, name, last in rows:
        lost[device_subject(lfdi)] = Quiet(
            f"2030.5 device {name or lfdi} not heard for {_ago(now, last)} (allowed {w.sep2_s:.0f} s)",
            w.sep2_s,
        )
    for lfdi, name, last in await session.execute(
        select(Aggregator.lfdi, Aggregator.name, Aggregator.last_contact_at).where(
            Aggregator.last_contact_at < cutoff
        )
    ):
        lost[f"aggregator:{lfdi}"] = Quiet(
            f"2030.5 aggregator {name or lfdi} not heard for {_ago(now, last)} (allowed {w.sep2_s:.0f} s)",
            w.sep2_s,
        )
    return lost


async def _lost_vens(session: AsyncSession, now: dt.datetime, w: Windows) -> dict[str, Quiet]:
    cutoff = now - dt.timedelta(seconds=w.ven_s)
    rows = await session.execute(
        select(Ven.name, Ven.last_seen_at).where(Ven.enabled.is_(True), Ven.last_seen_at < cutoff)
    )
    return {
        f"ven:{name}": Quiet(
            f"OpenADR VEN {name} not heard for {_ago(now, last)} (allowed {w.ven_s:.0f} s)", w.ven_s
        )
        for name, last in rows
    }


async def _lost_modbus(session: AsyncSession, now: dt.datetime, w: Windows) -> dict[str, Quiet]:
    lost: dict[str, Quiet] = {}
    rows = await session.execute(
        select(
            ModbusDevice.name, ModbusDevice.poll_s, ModbusDevice.last_ok_at, ModbusDevice.last_error
        ).where(ModbusDevice.enabled.is_(True), ModbusDevice.last_ok_at.is_not(None))
    )
    for name, poll_s, last_ok, error in rows:
        if last_ok is None:
            continue
        allowed = w.modbus_s(poll_s)
        if (now - last_ok).total_seconds() > allowed:
            why = f": {error}" if error else ""
            lost[f"modbus:{name}"] = Quiet(
                f"Modbus asset {name} has not answered a poll for {_ago(now, last_ok)} "
                f"(allowed {allowed:.0f} s){why}",
                allowed,
            )
    return lost


async def failing_deliveries(session: AsyncSession) -> dict[str, str]:
    """Order keys whose newest finished message is a dead letter -> what to tell staff."""
    failed = (
        select(
            DeliveryMessage.order_key,
            DeliveryMessage.channel,
            func.count().label("n"),
            func.max(DeliveryMessage.id).label("newest"),
        )
        .where(DeliveryMessage.status == "failed")
        .group_by(DeliveryMessage.order_key, DeliveryMessage.channel)
        .subquery()
    )
    delivered = (
        select(DeliveryMessage.order_key, func.max(DeliveryMessage.id).label("newest"))
        .where(DeliveryMessage.status == "delivered")
        .group_by(DeliveryMessage.order_key)
        .subquery()
    )
    rows = await session.execute(
        select(failed.c.order_key, failed.c.channel, failed.c.n, DeliveryMessage.last_error)
        .outerjoin(delivered, delivered.c.order_key == failed.c.order_key)
        .join(DeliveryMessage, DeliveryMessage.id == failed.c.newest)
        .where(or_(delivered.c.newest.is_(None), delivered.c.newest < failed.c.newest))
    )
    return {
        f"delivery:{key}": f"{n} dead letter(s) on channel {channel} for {key}; newest: {error or 'no error text'}"[
            :2000
        ]
        for key, channel, n, error in rows
    }


@dataclass
class Outcome:
    raised: int = 0
    cleared: int = 0

    def __bool__(self) -> bool:
        return bool(self.raised or self.cleared)


async def check(
    session: AsyncSession, settings: Settings, now: dt.datetime, judging_since: dt.datetime | None = None
) -> Outcome:
    """Open and clear COMMS_LOST and DELIVERY_FAILING alarms to match what the database says now. A quiet party
    is alarmed only once ``now`` is a whole window of its own past ``judging_since`` (when the watch began to
    lead); one heard again is cleared at once."""
    w = await windows(session, settings)
    lost = {
        **await _lost_sep2(session, now, w),
        **await _lost_vens(session, now, w),
        **await _lost_modbus(session, now, w),
    }
    due = {
        subject: q.message
        for subject, q in lost.items()
        if judging_since is None or (now - judging_since).total_seconds() >= q.allowed_s
    }
    open_now = await alarms.open_subjects(session, alarms.COMMS_LOST)
    raised = await alarms.raise_many(session, alarms.COMMS_LOST, due, now=now)
    cleared = await alarms.clear_many(
        session, alarms.COMMS_LOST, {s for s in open_now if s not in lost}, now=now
    )
    failing = await failing_deliveries(session)
    open_now = await alarms.open_subjects(session, alarms.DELIVERY_FAILING, "delivery:")
    raised += await alarms.raise_many(session, alarms.DELIVERY_FAILING, failing, now=now)
    cleared += await alarms.clear_many(
        session, alarms.DELIVERY_FAILING, {s for s in open_now if s not in failing}, now=now
    )
    return Outcome(raised, cleared)


class CommsWatch:
    """Flushes this process's contact log and, while this process leads, runs ``check`` periodically."""

    def __init__(
        self, store: Store, settings: Settings, contacts: ContactLog, is_leader: Callable[[], bool]
    ) -> None:
        self.store = store
        self.settings = settings
        self.contacts = contacts
        self.is_leader = is_leader
        self.leading_since: dt.datetime | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        a = self.settings.alarms
        self._tasks.append(
            asyncio.create_task(
                self.contacts.run(self.store, a.contact_flush_s, self._stop), name="contact-flush"
            )
        )
        if a.enabled:
            self._tasks.append(asyncio.create_task(self._watch(), name="comms-watch"))

    async def tick(self, now: dt.datetime | None = None) -> Outcome:
        """One round: flush what this process heard, then (as leader, after one window) check."""
        at = now or dt.datetime.now(dt.UTC)
        await self.contacts.flush(self.store)
        if not self.is_leader():
            self.leading_since = None
            return Outcome()
        if self.leading_since is None:
            self.leading_since = at
        async with self.store.sessions.begin() as session:
            outcome = await check(session, self.settings, at, self.leading_since)
        if outcome:
            log.info("communication watch: %d alarm(s) raised, %d cleared", outcome.raised, outcome.cleared)
        return outcome

    async def _watch(self) -> None:
        every = self.settings.alarms.check_interval_s
        while not self._stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("communication watch failed")
            try:
                await asyncio.wait_for(self._stop.wait(), every)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("communication watch stopped with an error")
        self._tasks.clear()
