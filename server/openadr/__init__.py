"""OpenADR 2.0b VTN (profile B) on the shared mTLS listener.

Services under ``{openadr.prefix}/``: EiRegisterParty, EiEvent, EiReport, EiOpt, OadrPoll (one module each, with
its message sequence at the top), plus push delivery. ``setup`` compiles the 2.0b schema and loads the signing key
once, at start-up, and registers the routes; ``transport`` holds the request pipeline and ``codec`` all XML.
"""

from __future__ import annotations

from aiohttp import web

from server.openadr import codec, event, opt, poll, register_party, report, signing  # noqa: F401 - registers handlers
from server.openadr.nonces import NonceWriter
from server.openadr.pollcache import PollCache
from server.openadr.push import PushWorker
from server.openadr.transport import HANDLERS, VTN, Vtn, endpoint
from server.runtime import RUNTIME

PUSH = web.AppKey("openadr.push", PushWorker)


def setup(app: web.Application) -> None:
    rt = app[RUNTIME]
    s = rt.settings
    signer = None
    cert = s.path(s.openadr.signing_cert or s.pki.server_cert)
    key = s.path(s.openadr.signing_key or s.pki.server_key)
    if s.openadr.sign_replies or cert.exists():
        signer = signing.Signer(cert, key)
    vtn = Vtn(settings=s, schema=codec.schema(), signer=signer, poll_cache=PollCache(rt.store),
              nonces=NonceWriter(rt.store))
    app[VTN] = vtn
    prefix = s.openadr.prefix.rstrip("/")
    for service in HANDLERS:
        app.router.add_post(f"{prefix}/{service}", endpoint(service))

    async def background(app: web.Application):
        await vtn.poll_cache.start()
        vtn.nonces.start()
        worker = PushWorker(rt, vtn)
        await worker.start()
        vtn.wake_push = worker.wake.set
        # the admin app shares the Runtime, not this app: let its handlers nudge the worker after a change
        rt.openadr_wake = worker.wake.set  # type: ignore[attr-defined]
        app[PUSH] = worker
        yield
        await worker.stop()
        await vtn.nonces.stop()
        await vtn.poll_cache.close()

    app.cleanup_ctx.append(background)
