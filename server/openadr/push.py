"""Push: the ``openadr`` channel of the delivery outbox. The VTN POSTs a VEN's queued messages to it when the VEN
registered with oadrHttpPullModel=false and an oadrTransportAddress and staff enabled push for it (and
``openadr.push`` is on); otherwise the same messages wait for its oadrPoll.

    delivery worker (openadr channel)                VEN (its oadrTransportAddress)
     |-- POST {address}/EiEvent oadrDistributeEvent -->|  (mTLS with the VTN's push certificate)
     |<-------- 200 oadrCreatedEvent | oadrResponse --|  a returned oadrCreatedEvent is recorded like a pulled one
     |   non-2xx / unreachable: the message stays at the head of the VEN's queue, retried with the outbox's
     |   back-off ([delivery] settings); a poll does not take a head while it is being pushed

Messages are rendered at delivery from their kind and arguments (current eventStatus, fresh signature).
"""

from __future__ import annotations

import logging
import ssl

import aiohttp
from sqlalchemy import ColumnElement, String, cast, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.core import oadr_events
from server.core import vens as vens_core
from server.core.errors import DomainError
from server.delivery.channels import Channel, Claimed, Outcome, post
from server.delivery.targets import GuardedResolver, Refused, TargetPolicy, check_target
from server.openadr import codec
from server.openadr.transport import RENDERERS, Vtn, render
from server.store import Store
from server.store.models import DeliveryMessage, Ven
from server.tls import trust_files

log = logging.getLogger("dso.openadr.push")
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


def takes_pushes(ven: Ven) -> bool:
    return bool(
        ven.push_enabled
        and ven.enabled
        and ven.registration_id is not None
        and ven.transport_address
        and not ven.http_pull
    )


def pushable() -> ColumnElement[bool]:
    """The outbox claims a VEN's message for push only while the VEN takes pushes (else it waits for a poll)."""
    keys = select(literal(vens_core.KEY_PREFIX) + cast(Ven.id, String)).where(
        Ven.push_enabled,
        Ven.enabled,
        Ven.registration_id.is_not(None),
        Ven.transport_address != "",
        Ven.http_pull.is_(False),
    )
    return DeliveryMessage.order_key.in_(keys)


class Pusher:
    """The channel's sender: render the claimed message for its VEN (in a short transaction of its own), POST it,
    then record an oadrCreatedEvent the VEN answered with."""

    def __init__(self, store: Store, settings: Settings, vtn: Vtn) -> None:
        self.store = store
        self.settings = settings
        self.vtn = vtn
        # the same rules as 2030.5 notification targets: checked again before each push and at connect time
        self.policy = TargetPolicy.of(settings)

    def channel(self) -> Channel:
        return Channel(
            vens_core.CHANNEL,
            self.send,
            ssl_context=client_context(self.settings),
            timeout_s=self.settings.openadr.push_timeout_s,
            claimable=pushable,
            resolver=lambda: GuardedResolver(self.policy),
        )

    async def send(self, http: aiohttp.ClientSession, message: Claimed) -> Outcome:
        ven_pk = int(message.order_key.removeprefix(vens_core.KEY_PREFIX))
        async with self.store.sessions.begin() as session:
            ven = await session.get(Ven, ven_pk)
            if ven is None:
                return Outcome(dropped=True, error="VEN deleted")
            if not takes_pushes(ven):
                return Outcome(later=True)  # switched to pull meanwhile: the next poll takes it
            renderer = RENDERERS.get(message.kind)
            if renderer is None:
                return Outcome(dropped=True, error=f"unknown OpenADR message kind {message.kind}")
            msg = await renderer(session, self.vtn, ven, dict(message.payload))
            if msg is None:
                return Outcome(dropped=True, error="nothing left to say (its subject is gone)")
            body = render(self.vtn, msg)
            address = push_url(ven.transport_address, codec.local(msg))
            ven_id = ven.ven_id
        try:
            await check_target(address, self.policy)
        except Refused as exc:
            return Outcome(error=f"push address refused: {exc}"[:500], final=True)
        outcome, answer = await post(http, address, body, "application/xml")
        if not outcome.error:
            async with self.store.sessions.begin() as session:
                await self.absorb_answer(session, ven_pk, ven_id, answer)
        return outcome

    async def absorb_answer(self, session: AsyncSession, ven_pk: int, ven_id: str, answer: bytes) -> None:
        """A VEN may answer a pushed oadrDistributeEvent with oadrCreatedEvent in the HTTP response."""
        if not answer or len(answer) > self.settings.openadr.max_body_bytes:
            return
        try:
            root = codec.parse(answer)
            codec.validate(root)
        except (codec.XmlRejected, codec.SchemaInvalid) as exc:
            log.warning("push answer from %s ignored: %s", ven_id, exc)
            return
        msg = codec.message_of(root)
        if codec.local(msg) != "oadrCreatedEvent":
            return
        for r in codec.read_created_event(msg):
            # no SAVEPOINT here: on SQLite one would open a read transaction that a concurrent commit makes
            # impossible to upgrade to a write ("database is locked" at once, whatever the busy timeout);
            # record_response refuses a bad answer before it adds anything, so there is nothing to roll back
            try:
                await oadr_events.record_response(
                    session, ven_pk, r.event_id, r.modification_number, r.opt_type, r.code, r.request_id
                )
            except DomainError as exc:
                log.warning("push answer from %s: %s", ven_id, exc)
