"""Application factory and runner: the mTLS protocol listener (2030.5 + OpenADR) and the admin listener.

``create_protocol_app`` and ``create_admin_app`` build the aiohttp applications around one ``Runtime``;
``serve`` runs both until SIGINT/SIGTERM and shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from server import sep2
from server.admin import create_admin_app
from server.config import ConfigError, Settings
from server.core import changes, readcache
from server.core.comms import CommsWatch
from server.delivery import context as delivery_context
from server.modbus import delivery as modbus_delivery
from server.modbus.gateway import ModbusGateway
from server.observability import Handler, observe_middleware
from server.openadr import setup as openadr_setup
from server.orchestration.scheduler import Scheduler
from server.runtime import CACHE_TOKEN, IDENTITY, RUNTIME, SCOPE, Runtime
from server.sep2 import ratelimit
from server.store import create_store
from server.store.migrate import upgrade
from server.tls import identity_of, server_context

log = logging.getLogger("dso.server")

# Each protocol adapter contributes a function that adds its routes (and sub-apps) to the protocol application.
PROTOCOL_SETUPS: list[Callable[[web.Application], None]] = [sep2.setup, openadr_setup, modbus_delivery.setup]


def identity_middleware(rt: Runtime):
    """The caller's TLS identity and, from it, its 2030.5 Scope: built once per request, before any handler."""

    openadr_prefix = rt.settings.openadr.prefix.rstrip("/") + "/"

    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = identity_of(request, rt.settings)
        if identity is None:
            # only reachable behind a proxy: without proxy mode the handshake already demanded a certificate
            return web.Response(status=403, text="client certificate required\n")
        request[IDENTITY] = identity
        if not request.path.startswith(openadr_prefix):
            # OpenADR resolves its caller per message (venID checked against the certificate, server.openadr)
            # kept per identity until a change record drops it (server.core.readcache)
            async with rt.store.sessions() as session:
                token = await rt.cache.token(session)
                found = request[SCOPE] = await rt.cache.scope_for(session, identity, token)
            request[CACHE_TOKEN] = token
            if found.registered:
                rt.contacts.heard(found, dt.datetime.now(dt.UTC))  # in memory; flushed in batches
        return await handler(request)

    return identify


def create_protocol_app(rt: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[
            observe_middleware("protocol", rt.metrics),
            identity_middleware(rt),
            ratelimit.middleware(rt),
        ],
        client_max_size=rt.settings.server.max_body_bytes,
    )
    app[RUNTIME] = rt
    delivery_context.setup(app)  # the protocols' setups add their channels to it
    for setup in PROTOCOL_SETUPS:
        setup(app)
    return app


async def open_runtime(settings: Settings) -> Runtime:
    db = settings.database
    store = create_store(settings.database_url, db.echo, db.pool_size, db.max_overflow, db.pool_pre_ping)
    await upgrade(store)
    # several processes may share PostgreSQL: each request then compares the shared cache version
    cache = readcache.ReadCache(db.cache_entries, shared=store.backend == "postgresql")
    readcache.attach(store.sessions, cache)
    rt = Runtime(settings=settings, store=store, cache=cache)
    # core's change record is published to the protocol listeners with these settings; the outbox is woken after
    changes.attach(store.sessions, settings, lambda: rt.outbox.wake() if rt.outbox is not None else None)
    return rt


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _listen(site: web.TCPSite, section: str, host: str, port: int) -> None:
    """Start a listener; a port that is taken (or an address this host lacks) is a one-line error."""
    try:
        await site.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {_address(host, port)} ({section}.host/{section}.port): {reason.lower()}"
            + ("; is another server running there?" if exc.errno == errno.EADDRINUSE else "")
        ) from None


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run both listeners until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    rt = await open_runtime(settings)
    ssl_ctx = server_context(settings)  # keys are loaded once, here
    scheduler = rt.scheduler = Scheduler(rt.store, settings.orchestration)
    rt.modbus = ModbusGateway(rt.store, settings.modbus, is_leader=lambda: scheduler.leader)
    watch = CommsWatch(rt.store, settings, rt.contacts, is_leader=lambda: scheduler.leader)
    runners: list[web.AppRunner] = []
    try:
        await rt.scheduler.start()
        await rt.modbus.start()
        await watch.start()
        protocol = web.AppRunner(create_protocol_app(rt), access_log=None, handle_signals=False)
        admin = web.AppRunner(create_admin_app(rt), access_log=None, handle_signals=False)
        for runner in (protocol, admin):
            await runner.setup()
            runners.append(runner)
        s, a = settings.server, settings.admin
        await _listen(web.TCPSite(protocol, s.host, s.port, ssl_context=ssl_ctx), "server", s.host, s.port)
        await _listen(web.TCPSite(admin, a.host, a.port), "admin", a.host, a.port)
        log.info(
            "protocol listener bound to %s, clients use %s (2030.5 at %s/dcap, OpenADR at %s%s)",
            _address(s.host, s.port),
            settings.server_url,
            settings.server_url,
            settings.server_url,
            settings.openadr.prefix,
        )
        log.info("admin listener bound to %s (%s)", _address(a.host, a.port), settings.admin_url)
        log.info("database %s", rt.store.backend)
        await stop.wait()
        log.info("shutting down")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await watch.stop()  # after the listeners: the last contacts they heard are flushed
        await rt.modbus.stop()
        await rt.scheduler.stop()
        await rt.store.close()
        log.info("stopped")
