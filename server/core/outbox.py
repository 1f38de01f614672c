"""Durable outbound delivery (2030.5 notifications, OpenADR push).

A change and the messages announcing it are written in the same transaction (``enqueue``), so no message is lost
when the process dies. ``OutboxWorker`` POSTs due messages, retries with exponential back-off when the receiver
answers 5xx or cannot be reached, and delivers messages of one ``order_key`` strictly in order: a message is only
claimed when no older message of its key is still pending. Claims are leases in the database (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so several server processes can drain one outbox without a coordinator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.config import DeliverySettings
from server.core.errors import Invalid
from server.store import Store
from server.store.models import OutboxMessage
from server.store.types import utcnow

log = logging.getLogger("dso.outbox")
WITHHELD = "recipient's access revoked"

# channel -> the messages (id, order_key) of a claimed batch that must not go out because their recipient lost
# access since they were queued; checked in the claiming transaction, right before delivery
Withhold = Callable[[AsyncSession, list[tuple[int, str]]], Awaitable[set[int]]]
_withholders: dict[str, Withhold] = {}


def withhold(channel: str, check: Withhold) -> None:
    _withholders[channel] = check


LEASE = dt.timedelta(seconds=60)
BATCH = 256  # claimed per pass; one key has at most one message in a batch (order per key)


def check_target_url(url: str, settings: DeliverySettings) -> str:
    """Only https:// targets, or http:// on a loopback host when the configuration allows it."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or parsed.scheme not in ("https", "http"):
        raise Invalid(f"notification URI must be an absolute https URL, got {url!r}")
    if parsed.scheme == "http":
        if not settings.allow_http_loopback:
            raise Invalid("plain http notification URIs are not allowed (https only)")
        try:
            loopback = ipaddress.ip_address(parsed.hostname).is_loopback
        except ValueError:
            loopback = parsed.hostname == "localhost"
        if not loopback:
            raise Invalid("plain http notification URIs are allowed on loopback only")
    return url


def enqueue(
    session: AsyncSession, channel: str, order_key: str, url: str, body: bytes, content_type: str
) -> OutboxMessage:
    """Add a message in the caller's transaction; it becomes deliverable when that transaction commits."""
    message = OutboxMessage(
        channel=channel,
        order_key=order_key,
        url=url,
        body=body,
        content_type=content_type,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        last_error="",
    )
    session.add(message)
    return message


def backoff(attempts: int, settings: DeliverySettings) -> dt.timedelta:
    seconds = min(settings.max_backoff_s, settings.initial_backoff_s * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=seconds)


@dataclass(frozen=True)
class Claimed:
    id: int
    url: str
    body: bytes
    content_type: str
    attempts: int


class OutboxWorker:
    """Drains the outbox until stopped. One per server process."""

    def __init__(self, store: Store, settings: DeliverySettings, ssl_context: ssl.SSLContext | None) -> None:
        self.store = store
        self.settings = settings
        self.ssl_context = ssl_context
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        """Called after a commit that enqueued messages, so they go out without waiting for the next poll."""
        self._wake.set()

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self._http = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64))
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._http:
            await self._http.close()

    async def _run(self) -> None:
        interval = self.settings.poll_interval_ms / 1000
        while True:
            try:
                claimed = await self.claim()
                if claimed:
                    # different keys go out concurrently; one key has at most one message in a batch
                    await self.deliver_batch(claimed)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker must outlive database hiccups
                log.exception("outbox pass failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass

    async def claim(self) -> list[Claimed]:
        now = utcnow()
        older = aliased(OutboxMessage)
        query = (
            select(OutboxMessage)
            .where(
                OutboxMessage.status == "pending",
                OutboxMessage.next_attempt_at <= now,
                (OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now),
                ~exists().where(
                    and_(
                        older.order_key == OutboxMessage.order_key,
                        older.status == "pending",
                        older.id < OutboxMessage.id,
                    )
                ),
            )
            .order_by(OutboxMessage.id)
            .limit(BATCH)
        )
        if self.store.backend == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OutboxMessage)
        claimed: list[Claimed] = []
        async with self.store.sessions.begin() as session:
            rows = {row.id: row for row in await session.scalars(query)}
            if not rows:
                return claimed
            # compare-and-set in one statement: SQLite has no row locks, so two claimers may read the same rows;
            # each row belongs to the claimer whose update still found it unleased (RETURNING says which)
            won = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id.in_(list(rows)),
                    OutboxMessage.status == "pending",
                    (OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now),
                )
                .values(lease_until=now + LEASE)
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
            mine = [rows[msg_id] for (msg_id,) in won.all()]
            withheld = await self._withheld(session, mine)
            for row in mine:
                if row.id not in withheld:
                    claimed.append(Claimed(row.id, row.url, row.body, row.content_type, row.attempts))
        claimed.sort(key=lambda m: m.id)
        return claimed

    async def _withheld(self, session: AsyncSession, rows: list[OutboxMessage]) -> set[int]:
        """Messages of this claim whose recipient may no longer receive them: given up on, never posted."""
        by_channel: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            if row.channel in _withholders:
                by_channel.setdefault(row.channel, []).append((row.id, row.order_key))
        withheld: set[int] = set()
        for channel, messages in by_channel.items():
            withheld |= await _withholders[channel](session, messages)
        if withheld:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(withheld)))
                .values(status="failed", last_error=WITHHELD, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            log.info("withheld %d message(s): %s", len(withheld), WITHHELD)
        return withheld

    async def deliver_batch(self, claimed: list[Claimed]) -> None:
        """POST a claimed batch concurrently, then record every outcome in ONE transaction (fan-out of thousands
        of notifications is bounded by commits otherwise). Outcomes of POSTs that finished are recorded even when
        the worker is stopped mid-batch, so a restart does not send them again."""
        outcomes: list[tuple[Claimed, int | None, str]] = []

        async def one(message: Claimed) -> None:
            status, error = await self.post(message)
            outcomes.append((message, status, error))

        try:
            await asyncio.gather(*(one(m) for m in claimed))
        finally:
            done = {m.id for m, _, _ in outcomes}
            unfinished = [m.id for m in claimed if m.id not in done]
            if outcomes or unfinished:
                # stopped mid-batch: record what finished, hand back the leases of the rest at once (not after
                # LEASE) so the next worker -- or this process restarted -- sends them without waiting
                await asyncio.shield(self._record_many(outcomes, release=unfinished))

    async def deliver(self, message: Claimed) -> None:
        status, error = await self.post(message)
        await self._record(message, status, error)

    async def post(self, message: Claimed) -> tuple[int | None, str]:
        assert self._http is not None
        status: int | None = None
        error = ""
        # True: aiohttp's default verification (and nothing at all for a plain http URL)
        tls = self.ssl_context if self.ssl_context is not None and message.url.startswith("https") else True
        try:
            async with self._http.post(
                message.url,
                data=message.body,
                ssl=tls,
                headers={"Content-Type": message.content_type},
            ) as response:
                status = response.status
                await response.read()
            if status >= 300:
                error = f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        return status, error

    async def _record(self, message: Claimed, status: int | None, error: str) -> None:
        await self._record_many([(message, status, error)])

    def _outcome(self, message: Claimed, status: int | None, error: str, now: dt.datetime) -> dict:
        attempts = message.attempts + 1
        values: dict = {"attempts": attempts, "last_status": status, "last_error": error, "lease_until": None}
        if not error:
            values.update(status="delivered", delivered_at=now)
        elif status is not None and 400 <= status < 500 and status not in (408, 429):
            # the receiver refuses this message for good; retrying would only block its successors
            values.update(status="failed")
        elif attempts >= self.settings.max_attempts:
            values.update(status="failed")
        else:
            values.update(next_attempt_at=now + backoff(attempts, self.settings))
        if error:
            log.warning("delivery %s to %s failed (attempt %d): %s", message.id, message.url, attempts, error)
        return values

    async def _record_many(
        self, outcomes: list[tuple[Claimed, int | None, str]], release: list[int] | None = None
    ) -> None:
        now = utcnow()
        # outcomes with the same values (typically: delivered on the first attempt) share one UPDATE
        groups: dict[tuple, tuple[dict, list[int]]] = {}
        for message, status, error in outcomes:
            values = self._outcome(message, status, error, now)
            key = tuple(sorted((k, str(v)) for k, v in values.items()))
            groups.setdefault(key, (values, []))[1].append(message.id)
        async with self.store.sessions.begin() as session:
            for values, ids in groups.values():
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            if release:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(release))
                    .values(lease_until=None)
                    .execution_options(synchronize_session=False)
                )


def delivery_ssl_context(
    ca_files: list[str], client_cert: str | None, client_key: str | None, verify: bool
) -> ssl.SSLContext:
    """The client side of outbound POSTs: our server certificate as client cert, receivers checked against our
    trust anchors (2030.5 notifications are mutually authenticated like every other exchange)."""
    ctx = ssl.create_default_context()
    if verify:
        for path in ca_files:
            ctx.load_verify_locations(cafile=path)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert and client_key:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx
