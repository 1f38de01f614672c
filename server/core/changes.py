"""The change record: what a core mutation changed, kept with its transaction; listeners render from it.

A core function that changes something a client can read (a control created or cancelled, a default control
replaced, a program assigned, a device enrolled, a poll rate changed, readings stored) calls ``record(session,
...)``. Nothing else announces anything: when the transaction commits, the recorded changes of that transaction
are handed to every listener **before** the commit, in the same transaction (the 2030.5 adapter renders each
affected Subscription's resource and queues it in the durable outbox), so a notification exists if and only if
the change was committed. After the commit the outbox worker is woken so delivery starts at once. A rollback
publishes and wakes nothing.

The listeners need the server's settings and the outbox's wake-up; ``attach`` gives them to a store's sessions
(the server does this when it opens its runtime). A session of a store nothing was attached to records changes
that nobody listens to.

Listeners are code registered at import time, not state: every server process registers the same ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import async_session as async_of
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

_PENDING = "dso.changes"
_SETTINGS = "dso.settings"
_WAKE = "dso.wake"
_WAKE_AFTER_COMMIT = "dso.wake-after-commit"


@dataclass(frozen=True)
class Change:
    """What changed. Listeners notify every subscription whose resource depends on any of these."""

    # programs whose controls, default control or attributes changed
    programs: frozenset[int] = field(default_factory=frozenset)
    # devices whose own lists changed (FunctionSetAssignments, program assignment, the EndDevice itself)
    devices: frozenset[int] = field(default_factory=frozenset)
    # whole resource types that changed for everyone (e.g. a poll rate): names as 2030.5 spells them
    resource_types: frozenset[str] = field(default_factory=frozenset)
    # other function sets (pricing, DRLC) name their objects here: {"influence": {1, 2}}
    objects: dict[str, frozenset[int]] = field(default_factory=dict)
    # new telemetry values: (source id, e.g. a device LFDI; series resource, e.g. a meter reading mRID; SI value)
    readings: frozenset[tuple[str, str, float]] = field(default_factory=frozenset)
    # clients whose Scope changed (enrolled, access granted or revoked): LFDIs or OpenADR fingerprints
    parties: frozenset[str] = field(default_factory=frozenset)

    def empty(self) -> bool:
        return not (
            self.parties
            or self.programs
            or self.devices
            or self.resource_types
            or any(self.objects.values())
            or self.readings
        )


@dataclass
class _Pending:
    programs: set[int] = field(default_factory=set)
    devices: set[int] = field(default_factory=set)
    resource_types: set[str] = field(default_factory=set)
    objects: dict[str, set[int]] = field(default_factory=dict)
    readings: set[tuple[str, str, float]] = field(default_factory=set)
    parties: set[str] = field(default_factory=set)

    def change(self) -> Change:
        return Change(
            frozenset(self.programs),
            frozenset(self.devices),
            frozenset(self.resource_types),
            {k: frozenset(v) for k, v in self.objects.items() if v},
            frozenset(self.readings),
            frozenset(self.parties),
        )


Listener = Callable[[AsyncSession, Any, Change], Awaitable[int]]
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def record(
    session: AsyncSession,
    *,
    programs: Iterable[int] = (),
    devices: Iterable[int] = (),
    resource_types: Iterable[str] = (),
    objects: dict[str, Iterable[int]] | None = None,
    readings: Iterable[tuple[str, str, float]] = (),
    parties: Iterable[str] = (),
) -> None:
    """Record a change in the caller's transaction; it is published when that transaction commits."""
    pending: _Pending = session.info.setdefault(_PENDING, _Pending())
    pending.programs.update(programs)
    pending.devices.update(devices)
    pending.resource_types.update(resource_types)
    for kind, ids in (objects or {}).items():
        pending.objects.setdefault(kind, set()).update(ids)
    pending.readings.update(readings)
    pending.parties.update(parties)


def wake_after_commit(session: AsyncSession) -> None:
    """The caller queued outbox messages itself (e.g. for OpenADR VENs): wake the worker once this commits."""
    session.info[_WAKE_AFTER_COMMIT] = True


def recorded(session: AsyncSession) -> Change:
    """What this transaction recorded so far (not yet published)."""
    pending: _Pending | None = session.info.get(_PENDING)
    return pending.change() if pending else Change()


def attach(
    sessions: async_sessionmaker[AsyncSession], settings: Any, wake: Callable[[], None] | None
) -> None:
    """Let the listeners publish the changes recorded in ``sessions``: they render with ``settings``, and
    ``wake`` (the outbox worker's) is called after a commit that queued messages."""
    sessions.configure(info={**(sessions.kw.get("info") or {}), _SETTINGS: settings, _WAKE: wake})


async def publish(session: AsyncSession, settings: Any, change: Change) -> int:
    """Hand ``change`` to every listener in ``session``'s transaction; how many messages they queued."""
    if change.empty():
        return 0
    await session.flush()  # listeners read the changed rows through this session
    total = 0
    for listener in _listeners:
        total += await listener(session, settings, change)
    return total


@event.listens_for(Session, "before_commit")
def _before_commit(sync: Session) -> None:
    pending: _Pending | None = sync.info.pop(_PENDING, None)
    settings = sync.info.get(_SETTINGS)
    if pending is None or settings is None:
        return
    session = async_of(sync)
    if session is None:  # a plain (not asyncio) Session: nothing of ours listens to it
        return
    # commit runs in SQLAlchemy's greenlet; the async listeners run on the loop in this same transaction
    if await_only(publish(session, settings, pending.change())):
        sync.info[_WAKE_AFTER_COMMIT] = True


@event.listens_for(Session, "after_commit")
def _after_commit(sync: Session) -> None:
    if sync.info.pop(_WAKE_AFTER_COMMIT, False):
        wake = sync.info.get(_WAKE)
        if wake is not None:
            wake()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(sync: Session, _previous: Any) -> None:
    sync.info.pop(_PENDING, None)
    sync.info.pop(_WAKE_AFTER_COMMIT, None)
