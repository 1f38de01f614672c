"""Change announcements: the one call a domain change makes so that every protocol can tell its subscribers.

A caller that changed something (a control created or cancelled, a default control replaced, a program assigned,
a poll rate changed, readings stored) calls ``changed(session, runtime, ...)`` **inside the transaction of the change**. Each
protocol adapter registered a listener (``register``); the 2030.5 adapter renders the changed resource for each
matching Subscription and writes it to the durable outbox in that same transaction, so a notification exists if
and only if the change was committed. When the transaction commits, the outbox worker is woken so delivery starts
immediately instead of at the worker's next poll (a rollback queues and wakes nothing).

Listeners are code registered at import time, not state: every server process registers the same ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Change:
    """What changed. Listeners notify every subscription whose resource depends on any of these."""

    # programs whose controls, default control or attributes changed
    programs: frozenset[int] = field(default_factory=frozenset)
    # devices whose own lists changed (FunctionSetAssignments, program assignment, the EndDevice itself)
    devices: frozenset[int] = field(default_factory=frozenset)
    # whole resource types that changed for everyone (e.g. a poll rate): names as 2030.5 spells them
    resource_types: frozenset[str] = field(default_factory=frozenset)
    # other function sets (pricing, DRLC) name their objects here: {"tariff": {1, 2}, "drlc": {3}}
    objects: dict[str, frozenset[int]] = field(default_factory=dict)
    # new telemetry values: (source id, e.g. a device LFDI; series resource, e.g. a meter reading mRID; SI value)
    readings: frozenset[tuple[str, str, float]] = field(default_factory=frozenset)

    def empty(self) -> bool:
        return not (
            self.programs
            or self.devices
            or self.resource_types
            or any(self.objects.values())
            or self.readings
        )


Listener = Callable[[AsyncSession, Any, Change], Awaitable[int]]
_listeners: list[Listener] = []


def register(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


async def changed(
    session: AsyncSession,
    runtime: Any,
    *,
    programs: Iterable[int] = (),
    devices: Iterable[int] = (),
    resource_types: Iterable[str] = (),
    objects: dict[str, Iterable[int]] | None = None,
    readings: Iterable[tuple[str, str, float]] = (),
) -> int:
    """Announce a change in the caller's transaction; returns how many notifications were queued.

    ``runtime`` is the server's Runtime (its ``settings`` are passed to listeners, its ``outbox`` is woken after
    the commit); anything with a ``settings`` attribute and an optional ``outbox`` works (tools, benchmarks)."""
    change = Change(
        frozenset(programs),
        frozenset(devices),
        frozenset(resource_types),
        {k: frozenset(v) for k, v in (objects or {}).items()},
        frozenset(readings),
    )
    if change.empty():
        return 0
    await session.flush()  # listeners read the changed rows through this session
    total = 0
    for listener in _listeners:
        total += await listener(session, runtime.settings, change)
    worker = getattr(runtime, "outbox", None)
    if total and worker is not None:
        event.listen(session.sync_session, "after_commit", lambda _s: worker.wake(), once=True)
    return total
