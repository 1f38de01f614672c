"""What a process keeps between requests: each client's ``Scope`` and the representations of the GETs a device
polls, until a change record (or the clock) says otherwise.

Kept: the Scope of each TLS identity (``scope_for``) and representations a handler asks to keep
(``representation``: DeviceCapability, and per scope and query the EndDeviceList, EndDevice,
FunctionSetAssignmentsList, DERProgramList, DERProgram, DERControlList, ActiveDERControlList and DefaultDERControl),
in bounded LRU maps. Each representation says what it was read from (``Dependencies``): the programs whose events
and attributes it shows, and the next instant its content changes by the clock alone (a control starting or
ending turns scheduled into active into completed, and the lists with it); it is not served at or after that
instant.

Dropped, by the change record of a committed transaction (``changes.listen``):

* everything, when the change can alter a scope or any kept value (``affects``): an enrolment, a removal or a
  re-enabling of an EndDevice, an aggregator or a VEN enrolled, access granted or revoked, a program
  assignment, a MirrorUsagePoint created or deleted, a poll/post rate;
* the representations that read a changed program (a control created, modified or cancelled, a default control
  replaced, a program's attributes or curves): every kept list of every device that sees the program, since
  an event of one program flips the potentiallySuperseded flag of another's (``server.core.der_controls``).

Readings do not drop anything (no kept value depends on them). Invalidation rides on the change record that
also drives the 2030.5 notifications, in the same transaction, in every process that commits the change: a kept
GET and its notification cannot disagree. A value computed while such a transaction was committing is not kept
(``epoch`` is bumped before and after the commit, and a value is stored only if it did not move while it was
read).

Several processes on one PostgreSQL: the committing transaction also writes a new token to the
``cache:version`` setting, and each request reads that one row (``token``) before using anything kept, so
another process never serves a scope or representation older than the last committed change: revocation and a
new control take effect at once everywhere, for the price of one primary-key read per request (shared by the
requests that arrive while it runs; ``_VersionReads``). A per-process TTL
would have been cheaper but would let a revoked client in, or hide a control, for the TTL. On SQLite (one process
owns the file) the token is the process's generation alone and a kept answer costs no query.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from server.core import changes, scope
from server.core.identity import ClientIdentity
from server.store.db import upsert_insert
from server.store.models import Sep2Setting

VERSION_KEY = "cache:version"  # the shared token several processes compare (a Sep2Setting row)
# a second token, for what processes keep per client beside this cache (the edition and CSIP-AUS namespace a client
# writes in): written when such a fact is recorded, read with the first, and it drops only those
CLIENTS_KEY = "cache:clients"
_KEY = "dso.readcache"
_DIRTY = "dso.readcache-dirty"
_DIRTY_PROGRAMS = "dso.readcache-programs"
# change-record object kinds whose change alters a kept value
_OBJECT_KINDS = frozenset({"mup", "aggregator"})

_SETTINGS = Sep2Setting.__table__.c
_VERSION_QUERY = select(_SETTINGS.key, _SETTINGS.value).where(_SETTINGS.key.in_((VERSION_KEY, CLIENTS_KEY)))
_CLIENTS_QUERY = select(_SETTINGS.value).where(_SETTINGS.key == CLIENTS_KEY)

T = TypeVar("T")
Token = tuple[int, str | None]
Versions = tuple[str | None, str | None]  # the shared version token, the clients token


def affects(change: changes.Change) -> bool:
    """Whether ``change`` can alter a kept scope or any kept representation (then everything is dropped)."""
    return bool(
        change.parties
        or change.devices
        or change.resource_types
        or any(change.objects.get(k) for k in _OBJECT_KINDS)
    )


@dataclass
class Dependencies:
    """What a representation was read from, noted by its renderer: the programs it shows and the first instant
    after which the clock alone changes it. Renderers note; only a kept GET reads it (a notification ignores
    it)."""

    programs: set[int] = field(default_factory=set)
    until: dt.datetime | None = None

    def read_programs(self, ids: Iterable[int]) -> None:
        self.programs.update(ids)

    def changes_at(self, when: dt.datetime) -> None:
        if self.until is None or when < self.until:
            self.until = when

    def read_intervals(self, spans: Iterable[tuple[dt.datetime, dt.datetime]], now: dt.datetime) -> None:
        """Events shown with a status that depends on the time: the next start or end after ``now`` is when
        the representation changes by itself."""
        for start, end in spans:
            for edge in (start, end):
                if edge > now:
                    self.changes_at(edge)


@dataclass
class _Kept:
    token: Token
    value: Any
    programs: frozenset[int]
    until: float | None  # epoch seconds


class _VersionReads:
    """Reads of the shared version token, shared by the requests that wait for one: a request uses a read that
    began after it arrived (so it sees every change committed before it), and the requests arriving while one
    read is under way share the next. Under load that is one read per round trip, not one per request.

    The reads run on one connection kept for them in autocommit: one round trip each (a pooled checkout would
    add the pool's liveness ping, and a transaction its BEGIN and ROLLBACK, three of the four round trips, and
    most of what PostgreSQL spent per request). A read that fails on a broken connection (the database
    restarted) is retried once on a new one."""

    def __init__(self) -> None:
        self._current: asyncio.Future[Versions] | None = None  # began before anyone now waiting arrived
        self._next: asyncio.Future[Versions] | None = None  # the read those arriving now will share
        self._conn: AsyncConnection | None = None

    async def read(self, engine: AsyncEngine) -> Versions:
        if self._current is None:
            self._current = self._start(engine)
            return await asyncio.shield(self._current)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)

    def _start(self, engine: AsyncEngine) -> asyncio.Future[Versions]:
        task = asyncio.ensure_future(self._read_version(engine))
        task.add_done_callback(lambda done: self._finished(engine, done))
        return task

    def _finished(self, engine: AsyncEngine, _done: asyncio.Future[Versions]) -> None:
        waiting, self._next = self._next, None
        self._current = None
        if waiting is None:
            return
        self._current = self._start(engine)
        self._current.add_done_callback(lambda read: _hand_over(read, waiting))

    async def _read_version(self, engine: AsyncEngine) -> Versions:
        for attempt in (1, 2):
            if self._conn is None:
                conn = await engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                rows = dict((await self._conn.execute(_VERSION_QUERY)).all())
                return rows.get(VERSION_KEY), rows.get(CLIENTS_KEY)
            except DBAPIError as exc:
                broken, self._conn = self._conn, None
                await _discard(broken, exc.connection_invalidated)
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _discard(conn, invalidated=False)


async def _discard(conn: AsyncConnection, invalidated: bool) -> None:
    try:
        if invalidated:
            await conn.invalidate()
        await conn.close()
    except (DBAPIError, OSError):  # already gone with the database
        pass


def _hand_over(read: asyncio.Future[Versions], waiting: asyncio.Future[Versions]) -> None:
    if waiting.done():
        return
    if read.cancelled():
        waiting.cancel()
    elif read.exception() is not None:
        waiting.set_exception(read.exception())  # type: ignore[arg-type]
    else:
        waiting.set_result(read.result())


class ReadCache:
    def __init__(self, max_entries: int = 10_000, shared: bool = False) -> None:
        self.max_entries = max_entries
        self.shared = shared  # read the shared version token per request (several processes, PostgreSQL)
        self.generation = 0  # bumped when everything is dropped: a kept value is used only under its own
        self.epoch = 0  # bumped on every drop: a value read while one happened is not kept
        self._scopes: OrderedDict[tuple[str, str], tuple[Token, scope.Scope]] = OrderedDict()
        self._reps: OrderedDict[Any, _Kept] = OrderedDict()
        self._by_program: dict[int, set[Any]] = {}
        self._versions = _VersionReads()
        self._clients: str | None = None  # the clients token last read
        self._client_listeners: list[Callable[[], None]] = []
        self.hits = self.misses = 0

    def invalidate(self) -> None:
        self.generation += 1
        self.epoch += 1
        self._scopes.clear()
        self._reps.clear()
        self._by_program.clear()

    def invalidate_programs(self, ids: Iterable[int]) -> None:
        """Drop the representations that read any of these programs."""
        self.epoch += 1
        for program_id in ids:
            for key in self._by_program.pop(program_id, ()):
                self._forget(key)

    def _forget(self, key: Any) -> None:
        kept = self._reps.pop(key, None)
        if kept is None:
            return
        for program_id in kept.programs:
            keys = self._by_program.get(program_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_program[program_id]

    def __len__(self) -> int:
        return len(self._reps)

    async def close(self) -> None:
        """Give back the connection the version reads kept (before the engine is disposed)."""
        await self._versions.close()

    async def token(self, engine: AsyncEngine) -> Token:
        """What kept values must have been read at to be used now: one Core primary-key read on the connection
        kept for it when several processes share the database (no ORM session: it is on every request)."""
        generation = self.generation
        if not self.shared:
            return generation, None
        version, clients = await self._versions.read(engine)
        self._saw_clients(clients)
        return generation, version

    def on_clients_changed(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` whenever another process may have recorded a client fact (``clients_changed``): what
        this process keeps per client beside this cache must be read again."""
        self._client_listeners.append(forget)

    async def check_clients(self, session: AsyncSession) -> None:
        """Read the clients token in ``session`` (outside a request: a notification fan-out)."""
        if self.shared:
            self._saw_clients(await session.scalar(_CLIENTS_QUERY))

    def _saw_clients(self, clients: str | None) -> None:
        if clients != self._clients:
            self._clients = clients
            for forget in self._client_listeners:
                forget()

    def kept_scope(self, ident: ClientIdentity, token: Token) -> scope.Scope | None:
        return self._get(self._scopes, (ident.lfdi, ident.fingerprint), token)

    def _get(self, store: OrderedDict, key: Any, token: Token) -> Any:
        hit = store.get(key)
        if hit is not None and hit[0] == token:
            store.move_to_end(key)
            self.hits += 1
            return hit[1]
        self.misses += 1
        return None

    def _put(self, store: OrderedDict, key: Any, token: Token, value: Any) -> None:
        if token[0] != self.generation:  # a change committed while this was read: do not keep it
            return
        store[key] = (token, value)
        store.move_to_end(key)
        while len(store) > self.max_entries:
            store.popitem(last=False)

    async def scope_for(self, session: AsyncSession, ident: ClientIdentity, token: Token) -> scope.Scope:
        key = (ident.lfdi, ident.fingerprint)
        found = self._get(self._scopes, key, token)
        if found is None:
            found = await scope.for_identity(session, ident)
            self._put(self._scopes, key, token, found)
        return found

    async def representation(self, key: Any, token: Token, build: Callable[[], Awaitable[T]]) -> T:
        """A representation that depends on no program and not on the clock (DeviceCapability)."""

        async def built() -> tuple[T, Dependencies]:
            return await build(), Dependencies()

        return await self.kept(key, token, built)

    async def kept(self, key: Any, token: Token, build: Callable[[], Awaitable[tuple[T, Dependencies]]]) -> T:
        """The value kept under ``key`` if it was read under ``token`` and the clock has not changed it, else
        ``build()``'s, kept with the dependencies it reports."""
        kept = self._reps.get(key)
        if kept is not None and kept.token == token and (kept.until is None or time.time() < kept.until):
            self._reps.move_to_end(key)
            self.hits += 1
            return kept.value
        self.misses += 1
        epoch = self.epoch
        value, deps = await build()
        if epoch == self.epoch and token[0] == self.generation:
            self._keep(key, _Kept(token, value, frozenset(deps.programs), _epoch_s(deps.until)))
        return value

    def _keep(self, key: Any, kept: _Kept) -> None:
        self._forget(key)
        self._reps[key] = kept
        for program_id in kept.programs:
            self._by_program.setdefault(program_id, set()).add(key)
        while len(self._reps) > self.max_entries:
            self._forget(next(iter(self._reps)))


def _epoch_s(when: dt.datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def attach(sessions: async_sessionmaker[AsyncSession], cache: ReadCache) -> None:
    """Drop ``cache`` whenever a transaction of ``sessions`` commits a change that affects it."""
    info = dict(sessions.kw.get("info") or {})
    info[_KEY] = cache
    sessions.configure(info=info)


async def _on_change(session: AsyncSession, _settings: Any, change: changes.Change) -> int:
    everything = affects(change)
    if not everything and not change.programs:
        return 0
    cache: ReadCache | None = session.info.get(_KEY)
    if everything:
        if cache is not None:
            cache.invalidate()
        session.info[_DIRTY] = True
    else:
        if cache is not None:
            cache.invalidate_programs(change.programs)
        session.info.setdefault(_DIRTY_PROGRAMS, set()).update(change.programs)
    # every process compares this token: write a new one in the transaction that makes the change
    await _new_token(session, VERSION_KEY)
    return 0


async def _new_token(session: AsyncSession, key: str) -> None:
    stmt = upsert_insert(session, Sep2Setting).values(key=key, value=uuid.uuid4().hex)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
    )


changes.listen(_on_change)


async def clients_changed(session: AsyncSession) -> None:
    """In the transaction that records a fact kept per client (its edition, its CSIP-AUS namespace): every other
    process forgets what it keeps per client at its next request (``ReadCache.on_clients_changed``)."""
    await _new_token(session, CLIENTS_KEY)


async def check_clients(session: AsyncSession) -> None:
    """``ReadCache.check_clients`` of the cache attached to ``session``'s maker, if any."""
    cache: ReadCache | None = session.info.get(_KEY)
    if cache is not None:
        await cache.check_clients(session)


@event.listens_for(Session, "after_commit")
def _after_commit(sync: Session) -> None:
    # what was read between the listener and the commit saw the old rows
    cache: ReadCache | None = sync.info.get(_KEY)
    if sync.info.pop(_DIRTY, False) and cache is not None:
        cache.invalidate()
    programs = sync.info.pop(_DIRTY_PROGRAMS, None)
    if programs and cache is not None:
        cache.invalidate_programs(programs)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(sync: Session, _previous: Any) -> None:
    sync.info.pop(_DIRTY, None)
    sync.info.pop(_DIRTY_PROGRAMS, None)
