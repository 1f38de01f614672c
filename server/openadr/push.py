"""Push delivery: the VTN POSTs queued messages to VENs that registered with oadrHttpPullModel=false and an
oadrTransportAddress, when staff enabled push for them (and ``openadr.push`` is on).

    VTN push worker                                 VEN (its oadrTransportAddress)
     |-- POST {address}/EiEvent oadrDistributeEvent -->|  (mTLS with the VTN certificate)
     |<-------- 200 oadrCreatedEvent | oadrResponse --|  a returned oadrCreatedEvent is recorded like a pulled one
     |   non-2xx / unreachable: the message stays queued, retried with exponential back-off (max 5 min)

The queue table is the outbox: nothing is held only in memory, so a restart loses nothing and on PostgreSQL several
server processes drain it without double delivery (row locks with SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl

import aiohttp
from sqlalchemy import delete, or_, select

from server.config import Settings
from server.core import oadr_events
from server.openadr import codec
from server.openadr.transport import RENDERERS, Vtn, render
from server.runtime import Runtime
from server.store.models import OadrNonce, OadrQueued, Ven
from server.store.types import utcnow
from server.tls import trust_files

log = logging.getLogger("dso.openadr.push")
MAX_BACKOFF_S = 300
# pushed message -> the VEN service endpoint it goes to (appended to the VEN's oadrTransportAddress)
SERVICE_OF = {
    "oadrDistributeEvent": "EiEvent",
    "oadrRegisterReport": "EiReport",
    "oadrCreateReport": "EiReport",
    "oadrCancelReport": "EiReport",
    "oadrRequestReregistration": "EiRegisterParty",
    "oadrCancelPartyRegistration": "EiRegisterParty",
}


def push_url(transport_address: str, message_type: str) -> str:
    """``{transport address}/{service}`` unless the address already names the service."""
    service = SERVICE_OF.get(message_type, "EiEvent")
    base = transport_address.rstrip("/")
    return base if base.endswith("/" + service) else f"{base}/{service}"


def client_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for path in trust_files(settings):
        ctx.load_verify_locations(cafile=path)
    o = settings.openadr
    cert = settings.path(o.push_cert or o.signing_cert or settings.pki.server_cert)
    key = settings.path(o.push_key or o.signing_key or settings.pki.server_key)
    ctx.load_cert_chain(cert, key)
    return ctx


class PushWorker:
    def __init__(self, rt: Runtime, vtn: Vtn) -> None:
        self.rt = rt
        self.vtn = vtn
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.session: aiohttp.ClientSession | None = None
        self._last_cleanup = 0.0

    async def start(self) -> None:
        s = self.rt.settings
        timeout = aiohttp.ClientTimeout(total=s.openadr.push_timeout_s)
        self.session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=client_context(s))
        )
        self.task = asyncio.create_task(self.run(), name="openadr-push")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.session:
            await self.session.close()

    async def run(self) -> None:
        interval = max(self.rt.settings.openadr.push_interval_s, 1)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval)
            self.wake.clear()
            try:
                await self.cleanup_nonces()
                if self.rt.settings.openadr.push:
                    await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must outlive any one failure; it is logged
                log.exception("push worker pass failed")

    async def cleanup_nonces(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_cleanup < 60:
            return
        self._last_cleanup = loop.time()
        cutoff = utcnow() - dt.timedelta(seconds=2 * self.rt.settings.openadr.replay_window_s)
        async with self.rt.store.sessions.begin() as session:
            await session.execute(delete(OadrNonce).where(OadrNonce.seen_at < cutoff))

    async def drain(self) -> None:
        now = utcnow()
        async with self.rt.store.sessions() as session:
            pks = list(
                await session.scalars(
                    select(Ven.id)
                    .join(OadrQueued, OadrQueued.ven_pk == Ven.id)
                    .where(
                        Ven.push_enabled,
                        Ven.enabled,
                        Ven.registration_id.is_not(None),
                        Ven.transport_address != "",
                        Ven.http_pull.is_(False),
                        or_(OadrQueued.next_attempt_at.is_(None), OadrQueued.next_attempt_at <= now),
                    )
                    .distinct()
                )
            )
        for pk in pks:
            await self.deliver_one(pk)

    async def deliver_one(self, ven_pk: int) -> None:
        """Deliver the VEN's oldest message; on failure it stays at the head with a later attempt time."""
        assert self.session is not None
        async with self.rt.store.sessions.begin() as session:
            ven = await session.get(Ven, ven_pk)
            if ven is None:
                return
            while True:
                query = select(OadrQueued).where(OadrQueued.ven_pk == ven_pk).order_by(OadrQueued.id).limit(1)
                if self.rt.store.backend == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                head = await session.scalar(query)
                if head is None or (head.next_attempt_at and head.next_attempt_at > utcnow()):
                    return
                renderer = RENDERERS.get(head.kind)
                msg = await renderer(session, self.vtn, ven, dict(head.payload or {})) if renderer else None
                if msg is not None:
                    break
                await session.delete(head)  # nothing left to say (e.g. registration already gone)
                await session.flush()
            body = render(self.vtn, msg)
            address = push_url(ven.transport_address, codec.local(msg))
            try:
                async with self.session.post(
                    address, data=body, headers={"Content-Type": "application/xml"}
                ) as resp:
                    answer = await resp.read()
                    ok = 200 <= resp.status < 300
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                ok, answer, problem = False, b"", f"{type(exc).__name__}: {exc}"[:300]
            if not ok:
                head.attempts += 1
                delay = min(2**head.attempts, MAX_BACKOFF_S)
                head.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
                head.last_error = problem
                log.warning("push to %s failed (%s); retry in %d s", address, problem, delay)
                return
            # a poll may have taken the same message meanwhile (SQLite has no row locks): then it is simply gone
            await session.execute(delete(OadrQueued).where(OadrQueued.id == head.id))
            await self.absorb_answer(session, ven, answer)

    async def absorb_answer(self, session, ven: Ven, answer: bytes) -> None:
        """A VEN may answer a pushed oadrDistributeEvent with oadrCreatedEvent in the HTTP response."""
        if not answer or len(answer) > self.rt.settings.openadr.max_body_bytes:
            return
        try:
            root = codec.parse(answer)
            codec.validate(root)
        except (codec.XmlRejected, codec.SchemaInvalid) as exc:
            log.warning("push answer from %s ignored: %s", ven.ven_id, exc)
            return
        msg = codec.message_of(root)
        if codec.local(msg) != "oadrCreatedEvent":
            return
        for r in codec.read_created_event(msg):
            try:
                async with session.begin_nested():
                    await oadr_events.record_response(
                        session, ven.id, r.event_id, r.modification_number, r.opt_type, r.code, r.request_id
                    )
            except Exception as exc:  # noqa: BLE001 - one bad response must not undo the delivery
                log.warning("push answer from %s: %s", ven.ven_id, exc)
