"""Application factory and runner: the mTLS protocol listener (2030.5 + OpenADR 2.0b), the admin listener and the
OpenADR 3.1 listener (server-side TLS, bearer tokens).

``create_protocol_app``, ``create_admin_app`` and ``server.openadr3.create_app`` build the aiohttp applications
around one ``Runtime``; ``serve`` runs them until SIGINT/SIGTERM and shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import gc
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
from server.openadr3 import create_app as create_openadr3_app
from server.openadr3 import setup_delivery as openadr3_delivery
from server.orchestration.scheduler import Scheduler
from server.runtime import CACHE_TOKEN, IDENTITY, RUNTIME, SCOPE, Runtime
from server.sep2 import csipaus, ratelimit
from server.store import create_store
from server.store.migrate import upgrade
from server.tls import identity_of, openadr3_context, server_context

log = logging.getLogger("dso.server")

# Each protocol adapter contributes a function that adds its routes (and sub-apps) to the protocol application.
PROTOCOL_SETUPS: list[Callable[[web.Application], None]] = [
    sep2.setup,
    openadr_setup,
    openadr3_delivery,
    modbus_delivery.setup,
]


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
            token = await rt.cache.token(rt.store.engine)
            kept = rt.cache.kept_scope(identity, token)
            if kept is None:
                async with rt.store.sessions() as session:
                    kept = await rt.cache.scope_for(session, identity, token)
            found = request[SCOPE] = kept
            request[CACHE_TOKEN] = token
            if found.registered:
                rt.contacts.heard(found, dt.datetime.now(dt.UTC))  # in memory; flushed in batches
        return await handler(request)

    return identify


def create_protocol_app(rt: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[
            observe_middleware("protocol", rt.metrics, rt.settings.logging.requests),
            identity_middleware(rt),
            ratelimit.middleware(rt),
            csipaus.middleware(rt),
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
    if settings.server.reuse_port and rt.store.backend != "postgresql":
        await rt.store.close()
        # what one process keeps (server.core.readcache) is shared through PostgreSQL only
        raise ConfigError("server.reuse_port: several processes need PostgreSQL (database.url), not SQLite")
    ssl_ctx = server_context(settings)  # keys are loaded once, here
    scheduler = rt.scheduler = Scheduler(rt.store, settings.orchestration, settings)
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
        s, a, o3 = settings.server, settings.admin, settings.openadr3
        reuse = s.reuse_port or None  # None: aiohttp's default (not set)
        await _listen(
            web.TCPSite(protocol, s.host, s.port, ssl_context=ssl_ctx, reuse_port=reuse),
            "server",
            s.host,
            s.port,
        )
        await _listen(web.TCPSite(admin, a.host, a.port, reuse_port=reuse), "admin", a.host, a.port)
        if o3.enabled:
            # bearer tokens, not client certificates: server-side TLS only (same certificates and suites)
            oadr3 = web.AppRunner(create_openadr3_app(rt), access_log=None, handle_signals=False)
            await oadr3.setup()
            runners.append(oadr3)
            site = web.TCPSite(
                oadr3, o3.host, o3.port, ssl_context=openadr3_context(settings), reuse_port=reuse
            )
            await _listen(site, "openadr3", o3.host, o3.port)
            log.info(
                "OpenADR 3.1 listener bound to %s (%s)", _address(o3.host, o3.port), settings.openadr3_url
            )
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
        # what start-up made (modules, schemas, routes) lives as long as the process: keep it out of the cyclic
        # collector's full passes, which would otherwise walk it all (~150,000 objects) again and again
        gc.collect()
        gc.freeze()
        await stop.wait()
        log.info("shutting down")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await watch.stop()  # after the listeners: the last contacts they heard are flushed
        await rt.modbus.stop()
        await rt.scheduler.stop()
        await rt.cache.close()
        await rt.store.close()
        log.info("stopped")
