"""OpenADR 2.0b VTN (profile B) on the shared mTLS listener.

Services under ``{openadr.prefix}/`` (one module each, with its message sequence at the top), push delivery, and
the request pipeline in ``transport``; all XML is built and read in ``codec``. ``setup`` compiles the official 2.0b
schema (from the installed openleadr package) and loads the signing key once, at start-up.

What is supported (VEN -> VTN message: VTN answer)

    EiRegisterParty  oadrQueryRegistration: oadrCreatedPartyRegistration (profiles, poll frequency)
                     oadrCreatePartyRegistration (new / with registrationID): oadrCreatedPartyRegistration
                     oadrCancelPartyRegistration: oadrCanceledPartyRegistration
                     oadrCanceledPartyRegistration, oadrResponse: oadrResponse
    EiEvent          oadrRequestEvent: oadrDistributeEvent;  oadrCreatedEvent: oadrResponse
    EiReport         oadrRegisterReport: oadrRegisteredReport (requests by configuration)
                     oadrCreatedReport, oadrRegisteredReport, oadrCanceledReport: oadrResponse
                     oadrUpdateReport: oadrUpdatedReport (values -> telemetry)
                     oadrCreateReport: oadrCreatedReport;  oadrCancelReport: oadrCanceledReport
    EiOpt            oadrCreateOpt: oadrCreatedOpt;  oadrCancelOpt: oadrCanceledOpt
    OadrPoll         oadrPoll: next queued message, or oadrResponse

VTN-initiated (queued per VEN in the delivery outbox; handed out by poll, or pushed to
{oadrTransportAddress}/{service} by the outbox's ``openadr`` channel):
oadrDistributeEvent, oadrRegisterReport, oadrCreateReport, oadrCancelReport, oadrRequestReregistration,
oadrCancelPartyRegistration.

Errors (always an oadrResponse, HTTP 200, except 413 for oversized bodies): 400 malformed XML or DTD,
454 schema-invalid or unusable values, 453 message not of this service, 452 unknown venID / registrationID /
event / opt / report request (also another VEN's), 463 certificate-venID mismatch, not enrolled, not registered,
bad/replayed/missing signature, 450 conflicting change, 469 internal error.

Not supported: XMPP transport, profile 2.0a, VTN-offered reports (the VTN's oadrRegisterReport is empty),
oadrEvent eiReportRequests, multi-signal events and baselines.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from server.delivery.context import DELIVERY, add_channel
from server.openadr import codec, event, opt, poll, register_party, report, signing  # noqa: F401 - registers handlers
from server.openadr.nonces import NonceWriter, prune_forever
from server.openadr.pollcache import PollCache
from server.openadr.push import Pusher
from server.openadr.transport import HANDLERS, VTN, Vtn, endpoint
from server.runtime import RUNTIME


def setup(app: web.Application) -> None:
    rt = app[RUNTIME]
    s = rt.settings
    signer = None
    cert = s.path(s.openadr.signing_cert or s.pki.server_cert)
    key = s.path(s.openadr.signing_key or s.pki.server_key)
    if s.openadr.sign_replies or cert.exists():
        signer = signing.Signer(cert, key)
    worker = app[DELIVERY]
    vtn = Vtn(
        settings=s,
        schema=codec.schema(),
        signer=signer,
        poll_cache=PollCache(rt.store),
        nonces=NonceWriter(rt.store),
        wake_push=worker.wake,
    )
    app[VTN] = vtn
    prefix = s.openadr.prefix.rstrip("/")
    for service in HANDLERS:
        app.router.add_post(f"{prefix}/{service}", endpoint(service))
    if s.openadr.push:
        # without push every VEN's messages simply wait for its oadrPoll
        add_channel(app, Pusher(rt.store, s, vtn).channel())

    async def background(app: web.Application):
        await vtn.poll_cache.start()
        vtn.nonces.start()
        pruning = asyncio.create_task(
            prune_forever(rt.store, s.openadr.replay_window_s), name="openadr-nonces"
        )
        yield
        pruning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruning
        await vtn.nonces.stop()
        await vtn.poll_cache.close()

    app.cleanup_ctx.append(background)
