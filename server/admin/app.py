"""The admin application: access (authentication, authorisation, audit), JSON errors, security headers, and the
route modules of each area."""

from __future__ import annotations

import datetime as dt
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server import console
from server.admin import (
    alarms,
    deliveries,
    devices,
    dispatch,
    events,
    grid,
    modbus,
    mv,
    oadr3,
    offers,
    openadr,
    plans,
    sep2,
    sep2_telemetry,
    staff,
    status,
    tariffs_dr,
    telemetry,
)
from server.admin.access import access_middleware, requires, security_headers
from server.admin.common import reply, runtime
from server.core import alarms as alarm_store
from server.core import fleet
from server.core.errors import DomainError
from server.core.staff import READ
from server.observability import Handler, observe_middleware
from server.runtime import RUNTIME, Runtime

log = logging.getLogger("dso.admin")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return reply({"error": str(exc)}, exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return reply({"error": exc.reason}, exc.status)
    except Exception:
        log.exception("admin handler failed: %s %s", request.method, request.path)
        return reply({"error": "internal error (see server log)"}, 500)


async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@requires(READ)
async def metrics(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with rt.store.sessions() as session:
        parties = await fleet.party_states(session, dt.datetime.now(dt.UTC), rt.settings)
        undelivered = await fleet.undelivered(session)
        open_alarms = await alarm_store.open_counts(session)
    rt.metrics.parties.clear()
    for (kind, state), n in parties.items():
        rt.metrics.parties.labels(kind, state).set(n)
    rt.metrics.undelivered.clear()  # a channel whose messages all went out drops from the list
    for channel in {c for c, _ in undelivered}:
        for state in fleet.UNDELIVERED:
            rt.metrics.undelivered.labels(channel, state).set(undelivered.get((channel, state), 0))
    for (kind, severity), n in open_alarms.items():
        rt.metrics.alarms.labels(kind, severity).set(n)
    body = generate_latest(rt.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_admin_app(rt: Runtime) -> web.Application:
    app = web.Application(
        # the outer error middleware answers for failures of access itself, the inner one for the handlers' (so
        # that the access middleware sees, and audits, every handler's outcome as a status)
        middlewares=[
            observe_middleware("admin", rt.metrics, rt.settings.logging.requests),
            error_middleware,
            access_middleware,
            error_middleware,
        ],
        client_max_size=rt.settings.server.max_body_bytes,
    )
    app[RUNTIME] = rt
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for module in (
        status,
        devices,
        sep2,
        sep2_telemetry,
        tariffs_dr,
        events,
        mv,
        offers,
        openadr,
        oadr3,
        grid,
        telemetry,
        modbus,
        dispatch,
        plans,
        deliveries,
        alarms,
        staff,
    ):
        app.add_routes(module.routes)
    console.setup(app)  # the operator console's pages and forms, behind the same access middleware
    return app
