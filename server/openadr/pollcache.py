"""A fast path for the common oadrPoll: a registered VEN with nothing queued.

    oadrPoll --> [signature verified, nonce INSERTed]  --> cache: idle VEN? --yes--> oadrResponse
                                                                     |no
                                                                     v
                                            full path (VEN lookup, queue, transaction); learns "idle"

Most polls find an empty queue. On the embedded SQLite store the server process is the only writer (the CLI goes
through the admin API of that same process), so the process can remember "this certificate is VEN x, registered,
with nothing queued" and answer the next unsigned poll without a database round trip. Any flush or commit that
touches a VEN or the message queue clears the whole cache first, so a remembered "empty" never outlives a change;
entries also expire after ``TTL_S`` so that ``last_seen_at`` keeps being recorded by the full path.

On PostgreSQL several server processes share the store, so a change made by one must reach the caches of all:
every flush that touches a VEN or the queue also sends ``NOTIFY dso_oadr_poll`` (delivered when its transaction
commits) and each process LISTENs on a dedicated connection and clears its cache. Without a working listener
(it could not connect, or the connection dropped) the cache stays off and every poll reads the database. Between
a commit in one process and the notification reaching another, that other process may still answer one poll
"nothing queued"; the message is then handed out at the next poll, never lost.

A signed poll answered from here still has its signature verified and its ReplayProtect nonce recorded in the
database first, and its answer is signed afresh when the VTN signs replies (fresh ReplayProtect timestamp and
nonce, its own signature value); only the digest of the unchanging oadrSignedObject is kept with the entry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from server.core.vens import CHANNEL as VEN_CHANNEL
from server.store import Store
from server.store.models import DeliveryMessage, Ven

TTL_S = 20.0
CHANNEL = "dso_oadr_poll"
log = logging.getLogger("dso.openadr")


@dataclass(frozen=True)
class Idle:
    ven_id: str
    answer: bytes  # the rendered, unsigned oadrResponse for this VEN (an oadrPoll carries no requestID)
    object_digest: bytes  # SHA-256 of its canonical oadrSignedObject, when the VTN signs replies (else empty)
    must_sign: bool  # it registered with oadrXmlSignature=true: only signed polls may be answered from here
    expires: float


class PollCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.postgres = store.backend == "postgresql"
        # answering from the cache is allowed (SQLite: always; PostgreSQL: while the listener is up)
        self.enabled = not self.postgres
        self._idle: dict[str, Idle] = {}  # TLS fingerprint -> idle VEN
        # bumped by every invalidation: a poll only remembers what it read if no change began meanwhile
        self.generation = 0
        self._listener: Any = None
        # class-level listeners: every session of this process (protocol and admin listeners alike); on
        # PostgreSQL they are needed even while this process's cache is off, to notify the other processes
        event.listen(Session, "after_flush", self._after_flush)
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_bulk_update", self._after_bulk)
        event.listen(Session, "after_bulk_delete", self._after_bulk)
        self._hooked = True

    async def start(self) -> None:
        if not self.postgres:
            return
        try:
            import asyncpg

            dsn = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = await asyncpg.connect(dsn, timeout=10)
            await self._listener.add_listener(CHANNEL, lambda *_: self.clear())
            self._listener.add_termination_listener(lambda *_: self._listener_lost())
        except Exception:  # noqa: BLE001 - without a listener the cache simply stays off
            log.warning(
                "no LISTEN connection for %s: every oadrPoll reads the database", CHANNEL, exc_info=True
            )
            self._listener = None
            return
        self.clear()
        self.enabled = True

    def _listener_lost(self) -> None:
        log.warning("LISTEN connection for %s lost: every oadrPoll reads the database from now on", CHANNEL)
        self.enabled = False
        self.clear()

    async def close(self) -> None:
        self.enabled = False
        if self._hooked:
            event.remove(Session, "after_flush", self._after_flush)
            event.remove(Session, "after_commit", self._after_commit)
            event.remove(Session, "after_bulk_update", self._after_bulk)
            event.remove(Session, "after_bulk_delete", self._after_bulk)
            self._hooked = False
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await listener.close()
        self._idle.clear()

    def lookup(self, fingerprint: str, claimed_ven_id: str | None, signed: bool) -> Idle | None:
        if not self.enabled:
            return None
        idle = self._idle.get(fingerprint)
        if idle is None or idle.ven_id != claimed_ven_id or idle.expires < time.monotonic():
            return None
        if idle.must_sign and not signed:
            return None
        return idle

    def remember(
        self,
        fingerprint: str,
        ven_id: str,
        answer: bytes,
        object_digest: bytes,
        must_sign: bool,
        generation: int,
    ) -> None:
        """Remember an idle VEN, unless an invalidation happened since ``generation`` was read."""
        if self.enabled and generation == self.generation:
            self._idle[fingerprint] = Idle(ven_id, answer, object_digest, must_sign, time.monotonic() + TTL_S)

    def clear(self) -> None:
        self.generation += 1
        self._idle.clear()

    # ------------------------------------------------------------------ invalidation
    def _after_flush(self, session: Session, _context) -> None:
        for obj in (*session.new, *session.dirty, *session.deleted):
            if isinstance(obj, Ven) or (isinstance(obj, DeliveryMessage) and obj.channel == VEN_CHANNEL):
                # cleared before the commit too: a poll racing the commit cannot re-learn a stale "empty"
                session.info["oadr_poll_dirty"] = True
                self.clear()
                if self.postgres:
                    # transactional: the other processes hear it when (and only if) this transaction commits
                    session.connection().exec_driver_sql(f"NOTIFY {CHANNEL}")
                return

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("oadr_poll_dirty", False):
            self.clear()

    def _after_bulk(self, update_context) -> None:
        self.clear()
