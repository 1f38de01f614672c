"""Typed application state shared by both listeners (``web.AppKey``s) and request-scoped keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.config import Settings
from server.core.contact import ContactLog
from server.core.identity import ClientIdentity
from server.core.readcache import ReadCache
from server.core.scope import Scope
from server.delivery.worker import DeliveryWorker
from server.modbus.gateway import ModbusGateway
from server.observability import Metrics
from server.orchestration.scheduler import Scheduler
from server.store import Store


@dataclass
class Runtime:
    """What lives as long as the server: settings, the store, metrics. No state needed for correctness."""

    settings: Settings
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    # the delivery worker while the server runs (it wakes itself when a transaction that queued messages commits)
    outbox: DeliveryWorker | None = None
    scheduler: Scheduler | None = None
    modbus: ModbusGateway | None = None
    # scopes and hot representations, dropped by change records (server.core.readcache)
    cache: ReadCache = field(default_factory=ReadCache)
    # the last contact of the 2030.5 clients this process heard, written in batches (server.core.contact)
    contacts: ContactLog = field(default_factory=ContactLog)
    # the protocol listener's request budgets (server.sep2.ratelimit), once that listener exists
    ratelimiter: Any = None


RUNTIME = web.AppKey("runtime", Runtime)
# request key under which the protocol listener's identity middleware puts the ClientIdentity
IDENTITY = web.RequestKey("identity", ClientIdentity)
# request key under which the protocol listener's scope middleware puts the caller's Scope (built once per request)
SCOPE = web.RequestKey("scope", Scope)
# request key of the cache token the scope was read at; kept representations are used only under the same token
CACHE_TOKEN = web.RequestKey("cache_token", tuple)
