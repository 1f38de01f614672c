"""What a process keeps between requests: each client's ``Scope`` and hot GET representations, until a change
record says otherwise.

Kept: the Scope of each TLS identity (``scope_for``) and representations a handler asks to keep
(``representation``: DeviceCapability), each in one bounded LRU map. Dropped: everything, when a committed
transaction recorded a change that can alter a scope or a kept representation (``affects``): an enrolment, a
removal or a re-enabling of an EndDevice, an aggregator or a VEN enrolled, access granted or revoked, a program
assignment, a MirrorUsagePoint created or deleted, a poll/post rate. Readings and controls do not drop it (no kept
value depends on them).

Invalidation rides on the change record (``changes.listen``), so it happens in every process that commits the
change, in the same transaction that drives the notifications: a kept GET and its notification cannot disagree.
A value computed while such a transaction was committing is not kept (``generation`` is bumped before and after
the commit, and a value is stored only under the generation it was read at).

Several processes on one PostgreSQL: the committing transaction also writes a new token to the
``cache:version`` setting, and each request reads that one row (``token``) before using anything kept, so
another process never serves a scope or representation older than the last committed change: revocation takes
effect at once everywhere, for the price of one primary-key read per request. A per-process TTL would have been
cheaper but would let a revoked client in for the TTL. On SQLite (one process owns the file) the token is the
process's generation alone and a cached answer costs no query.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from server.core import changes, scope
from server.core.identity import ClientIdentity
from server.store.db import upsert_insert
from server.store.models import Sep2Setting

VERSION_KEY = "cache:version"  # the shared token several processes compare (a Sep2Setting row)
_KEY = "dso.readcache"
_DIRTY = "dso.readcache-dirty"
# change-record object kinds whose change alters a kept value
_OBJECT_KINDS = frozenset({"mup", "aggregator"})

T = TypeVar("T")
Token = tuple[int, str | None]


def affects(change: changes.Change) -> bool:
    """Whether ``change`` can alter a kept scope or representation."""
    return bool(
        change.parties
        or change.devices
        or change.resource_types
        or any(change.objects.get(k) for k in _OBJECT_KINDS)
    )


class ReadCache:
    def __init__(self, max_entries: int = 10_000, shared: bool = False) -> None:
        self.max_entries = max_entries
        self.shared = shared  # read the shared version token per request (several processes, PostgreSQL)
        self.generation = 0
        self._scopes: OrderedDict[tuple[str, str], tuple[Token, scope.Scope]] = OrderedDict()
        self._reps: OrderedDict[Any, tuple[Token, Any]] = OrderedDict()
        self.hits = self.misses = 0

    def invalidate(self) -> None:
        self.generation += 1
        self._scopes.clear()
        self._reps.clear()

    async def token(self, session: AsyncSession) -> Token:
        """What kept values must have been read at to be used now."""
        generation = self.generation
        if not self.shared:
            return generation, None
        version = await session.scalar(select(Sep2Setting.value).where(Sep2Setting.key == VERSION_KEY))
        return generation, version

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
        found = self._get(self._reps, key, token)
        if found is None:
            found = await build()
            self._put(self._reps, key, token, found)
        return found


def attach(sessions: async_sessionmaker[AsyncSession], cache: ReadCache) -> None:
    """Drop ``cache`` whenever a transaction of ``sessions`` commits a change that affects it."""
    info = dict(sessions.kw.get("info") or {})
    info[_KEY] = cache
    sessions.configure(info=info)


async def _on_change(session: AsyncSession, _settings: Any, change: changes.Change) -> int:
    if not affects(change):
        return 0
    cache: ReadCache | None = session.info.get(_KEY)
    if cache is not None:
        cache.invalidate()
    session.info[_DIRTY] = True
    # every process compares this token: write a new one in the transaction that makes the change
    stmt = upsert_insert(session, Sep2Setting).values(key=VERSION_KEY, value=uuid.uuid4().hex)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
    )
    return 0


changes.listen(_on_change)


@event.listens_for(Session, "after_commit")
def _after_commit(sync: Session) -> None:
    if sync.info.pop(_DIRTY, False):
        cache: ReadCache | None = sync.info.get(_KEY)
        if cache is not None:
            cache.invalidate()  # what was read between the listener and the commit saw the old rows


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(sync: Session, _previous: Any) -> None:
    sync.info.pop(_DIRTY, None)
