"""The OpenADR 3.1 VTN: REST and JSON as the OpenADR 3.1.0 OpenAPI specification defines it, over the one
program/event model the 2030.5 and OpenADR 2.0b adapters render too.

It listens on its own HTTPS listener (``[openadr3]``): server-side TLS with the server's certificates and OAuth2
bearer tokens, as 3.x clients expect (the protocol listener demands client certificates, which 3.x clients do not
present). What it owns:

- ``spec``: the specification (bundled, Apache-2.0) as JSON Schema validators; every body is checked on the way in
  and every answer on the way out (``http``), and every refusal is a Problem body;
- ``auth``: ``/auth/server``, ``/auth/token`` (client credentials) and the bearer middleware that makes the
  request's ``Caller`` once, with the scope each route declares;
- one module per object kind (``programs``, ``events``, ``vens`` with resources, ``reports``, ``subscriptions``)
  translating between 3.x JSON (``render``) and ``server.core`` (``oadr3``, ``events``, ``programs``);
- ``notify``: webhooks for subscriptions, from the change record through the durable outbox.
"""

from __future__ import annotations

from aiohttp import web

from server.core import oadr3_clients as clients
from server.delivery.context import add_channel
from server.openadr3 import auth, events, notify, programs, reports, subscriptions, vens
from server.openadr3.http import answer, problems
from server.runtime import RUNTIME, Runtime


@auth.needs(clients.READ_ALL)
async def notifiers(request: web.Request) -> web.Response:
    """Webhooks only: MQTT is not offered."""
    return answer(request, "notifiersResponse", {"WEBHOOK": True})


async def not_offered(request: web.Request) -> web.Response:
    raise web.HTTPNotImplemented(reason="this VTN offers no MQTT notifier")


setattr(not_offered, auth.SCOPE_ATTR, auth.PUBLIC)


def create_app(rt: Runtime) -> web.Application:
    s = rt.settings.openadr3
    api = web.Application(middlewares=[problems, auth.bearer], client_max_size=s.max_body_bytes)
    api[RUNTIME] = rt
    api.router.add_get("/auth/server", auth.auth_server)
    api.router.add_post("/auth/token", auth.token)
    api.router.add_get("/notifiers", notifiers)
    api.router.add_route("*", "/notifiers/{rest:.*}", not_offered)
    for module in (programs, events, vens, reports, subscriptions):
        api.router.add_routes(module.routes)
    prefix = s.prefix.strip("/")
    if not prefix:
        return api
    # paths outside the prefix are refused with a Problem too
    app = web.Application(middlewares=[problems], client_max_size=s.max_body_bytes)
    app[RUNTIME] = rt
    app.add_subapp("/" + prefix, api)
    return app


def setup_delivery(app: web.Application) -> None:
    """Add the webhook channel to the protocol application's outbox worker (one worker per process)."""
    rt = app[RUNTIME]
    if rt.settings.openadr3.enabled:
        add_channel(app, notify.channel(rt.settings))
