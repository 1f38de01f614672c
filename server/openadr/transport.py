"""The request pipeline shared by every OpenADR service endpoint.

    VEN --POST {prefix}/<Service> (oadrPayload)--> pipeline:
        1. body size cap (HTTP 413 before any parsing)
        2. hardened parse (no DTD/entities/network)            -> oadrResponse 400 on failure
        3. 2.0b schema validation                              -> oadrResponse 454
        4. message type must belong to <Service>               -> oadrResponse 453
        5. XML signature (when present or required)            -> oadrResponse 463 (with the reason)
        6. oadrPoll of a VEN known to be idle: nonce stored (see nonces), oadrResponse (see pollcache)
        7. otherwise handler(ctx) in one database transaction (after the ReplayProtect nonce is stored);
           domain errors -> 452/463/454/450
        8. reply wrapped in oadrPayload, signed when configured
    VEN <-- 200 application/xml -- reply

Malformed or invalid input never yields HTTP 500: every failure after the size check is an oadrResponse carrying an
OpenADR responseCode and a description saying what was wrong.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from lxml import etree
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.core import scope as client_scope
from server.core import vens as vens_core
from server.core.errors import Conflict, DomainError, Invalid, NotFound
from server.core.identity import ClientIdentity
from server.core.scope import Scope
from server.openadr import codec, signing
from server.openadr.nonces import NonceWriter
from server.openadr.pollcache import PollCache
from server.runtime import IDENTITY, RUNTIME, Runtime
from server.store.models import Ven

log = logging.getLogger("dso.openadr")

# OpenADR 2.0b responseCodes used by this VTN
OK = 200
BAD_REQUEST = 400
OUT_OF_SEQUENCE = 450
INVALID_ID = 452
NOT_RECOGNIZED = 453
INVALID_DATA = 454
NOT_REGISTERED_OR_AUTHORIZED = 463
OTHER_ERROR = 469

REQUEST_ID = codec.q("pyld", "requestID")
SIGNATURE = codec.q("ds", "Signature")


class OadrError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def code_for(exc: DomainError) -> int:
    if isinstance(exc, vens_core.UnknownVen | NotFound):
        return INVALID_ID
    if isinstance(exc, vens_core.VenMismatch | vens_core.NotRegistered):
        return NOT_REGISTERED_OR_AUTHORIZED
    if isinstance(exc, Conflict):
        return OUT_OF_SEQUENCE
    if isinstance(exc, Invalid):
        return INVALID_DATA
    return OTHER_ERROR


@dataclass
class Vtn:
    """What the OpenADR adapter holds for the life of the server (all loaded once at start-up)."""

    settings: Settings
    schema: etree.XMLSchema
    signer: signing.Signer | None
    poll_cache: PollCache
    nonces: NonceWriter
    wake_push: Callable[[], None] = field(default=lambda: None)


VTN = web.AppKey("openadr.vtn", Vtn)


@dataclass
class Ctx:
    """One inbound message being handled."""

    rt: Runtime
    vtn: Vtn
    session: AsyncSession
    identity: ClientIdentity
    message: etree._Element
    kind: str
    request_id: str | None
    claimed_ven_id: str | None
    signed: bool
    scope: Scope  # who is asking; ``ven()`` resolves the VEN it acts as
    _ven: Ven | None = None
    # a poll answered "nothing" although messages are queued (the head is being pushed): not an idle VEN
    not_idle: bool = False

    @property
    def settings(self) -> Settings:
        return self.rt.settings

    async def ven(self, require_registration: bool = True) -> Ven:
        """The calling VEN (TLS fingerprint checked against the message's venID)."""
        if self._ven is None:
            ven = await vens_core.caller(
                self.session, self.identity.fingerprint, self.claimed_ven_id, require_registration
            )
            if (
                ven.registration_id
                and ven.xml_signature
                and not self.signed
                and self.kind != "oadrCreatePartyRegistration"
            ):
                # it registered with oadrXmlSignature=true: an unsigned message in its name is refused
                raise OadrError(
                    NOT_REGISTERED_OR_AUTHORIZED,
                    "signature rejected: this VEN registered with "
                    "oadrXmlSignature true, but the message is unsigned",
                )
            await vens_core.touch(self.session, ven)
            self._ven = ven
            self.scope = client_scope.as_ven(self.scope, ven.id)
        return self._ven


Handler = Callable[[Ctx], Awaitable[etree._Element]]
# service name -> message type -> handler; filled by the service modules' @handles decorators
HANDLERS: dict[str, dict[str, Handler]] = {}


# queued message kind -> renderer (session, vtn, ven, payload) -> message element, or None to drop the item
Renderer = Callable[[AsyncSession, "Vtn", Ven, dict], Awaitable["etree._Element | None"]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn

    return register


def handles(service: str, kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS.setdefault(service, {})[kind] = fn
        return fn

    return register


def render(vtn: Vtn, msg: etree._Element) -> bytes:
    root = codec.envelope(msg)
    if vtn.signer is not None and vtn.settings.openadr.sign_replies:
        return vtn.signer.seal_tree(root)
    return codec.serialise(root)


def xml_response(vtn: Vtn, msg: etree._Element) -> web.Response:
    return web.Response(body=render(vtn, msg), content_type="application/xml")


def error(
    vtn: Vtn, code: int, description: str, request_id: str | None = None, ven_id: str | None = None
) -> web.Response:
    return xml_response(vtn, codec.response(code, description, request_id, ven_id))


async def read_capped(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None:
        if request.content_length > cap:
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=request.content_length)
        return await request.read()  # the length is known and within the cap
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:  # chunked bodies carry no length up front
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _record_nonce(vtn: Vtn, verified: signing.Verified) -> None:
    """Stored durably before the message is handled; a nonce seen before means a replay."""
    if not await vtn.nonces.record(f"{verified.fingerprint}/{verified.nonce}"[:200]):
        raise OadrError(NOT_REGISTERED_OR_AUTHORIZED, "signature rejected: ReplayProtect nonce already used")


def endpoint(service: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        rt = request.app[RUNTIME]
        vtn = request.app[VTN]
        body = await read_capped(request, rt.settings.openadr.max_body_bytes)
        try:
            root = codec.parse(body)
        except codec.XmlRejected as exc:
            return error(vtn, BAD_REQUEST, str(exc))
        try:
            codec.validate(root)
        except codec.SchemaInvalid as exc:
            return error(vtn, INVALID_DATA, str(exc)[:500])
        msg = codec.message_of(root)
        kind = codec.local(msg)
        # requestID sits at different depths per message; the first one found is the message's own
        first = next(msg.iterdescendants(REQUEST_ID), None)
        request_id = first.text.strip() if first is not None and first.text is not None else None
        # the sender's venID: a direct child, except in oadrCreatedEvent (never one inside targets or sources)
        claimed = codec.text(msg, "ei:venID") or codec.text(msg, "pyld:eiCreatedEvent/ei:venID")
        handler = HANDLERS.get(service, {}).get(kind)
        if handler is None:
            return error(vtn, NOT_RECOGNIZED, f"{kind} is not handled by the {service} service", request_id)
        identity: ClientIdentity = request[IDENTITY]
        signed = next(root.iterchildren(SIGNATURE), None) is not None
        settings = rt.settings.openadr
        verified = None
        if signed:  # pure CPU: checked before any database connection is taken
            try:
                verified = signing.verify(
                    root, identity.fingerprint, dt.timedelta(seconds=settings.replay_window_s)
                )
            except signing.SignatureRejected as exc:
                return error(vtn, NOT_REGISTERED_OR_AUTHORIZED, f"signature rejected: {exc}", request_id)
        elif settings.require_signatures:
            return error(
                vtn,
                NOT_REGISTERED_OR_AUTHORIZED,
                "signature rejected: this VTN requires signed messages",
                request_id,
            )
        signing_replies = settings.sign_replies and vtn.signer is not None
        if kind == "oadrPoll":
            idle = vtn.poll_cache.lookup(identity.fingerprint, claimed, signed)
            if idle is not None:
                if verified is not None:
                    try:
                        await _record_nonce(vtn, verified)
                    except OadrError as exc:
                        return error(vtn, exc.code, exc.description, request_id)
                # signed: the same oadrResponse as ever, with a fresh ReplayProtect and signature of its own
                body = (
                    vtn.signer.seal(idle.answer, idle.object_digest)
                    if signing_replies and vtn.signer is not None
                    else idle.answer
                )
                return web.Response(body=body, content_type="application/xml")
        generation = vtn.poll_cache.generation
        try:
            if verified is not None:
                await _record_nonce(vtn, verified)
            async with rt.store.sessions.begin() as session:
                ctx = Ctx(
                    rt,
                    vtn,
                    session,
                    identity,
                    msg,
                    kind,
                    request_id,
                    claimed,
                    signed,
                    client_scope.unresolved(identity),
                )
                reply = await handler(ctx)
        except OadrError as exc:
            return error(vtn, exc.code, exc.description, request_id, None)
        except DomainError as exc:
            return error(vtn, code_for(exc), str(exc), request_id, None)
        except IntegrityError:
            # two messages of one VEN raced to create the same object (e.g. the same optID): the loser retries
            return error(
                vtn, OUT_OF_SEQUENCE, "conflicting concurrent change; send the message again", request_id
            )
        except (ValueError, TypeError) as exc:
            # schema-valid but semantically unusable values (dates, numbers) are the VEN's fault, not a 500
            return error(vtn, INVALID_DATA, f"invalid value: {exc}"[:300], request_id)
        except Exception:
            # a bug of ours: logged with its traceback, and the VEN still gets an OpenADR answer, never a bare 500
            log.exception("OpenADR %s %s failed", service, kind)
            return error(vtn, OTHER_ERROR, "internal error in the VTN (logged)", request_id)
        if kind in {"oadrCreatedEvent", "oadrCreatePartyRegistration", "oadrUpdateReport"}:
            vtn.wake_push()
        body = render(vtn, reply)
        if (
            kind == "oadrPoll"
            and ctx._ven is not None
            and not ctx.not_idle
            and codec.local(reply) == "oadrResponse"
        ):
            envelope = codec.envelope(reply) if signing_replies else None
            unsigned = codec.serialise(envelope) if envelope is not None else body
            # the canonical oadrSignedObject never changes while the VEN stays idle: hashed once, not per poll
            digest = (
                vtn.signer.object_digest(envelope) if envelope is not None and vtn.signer is not None else b""
            )
            vtn.poll_cache.remember(
                identity.fingerprint, ctx._ven.ven_id, unsigned, digest, ctx._ven.xml_signature, generation
            )
        return web.Response(body=body, content_type="application/xml")

    return handle
