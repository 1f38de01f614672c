"""GET /api/v1/status: what is running, counts, database backend."""

from __future__ import annotations

import os
import time

from aiohttp import web
from sqlalchemy import func, select

from server import __version__
from server.admin.common import reply, runtime
from server.core.parties import count_devices
from server.store.migrate import current_revision
from server.store.models import Ven

routes = web.RouteTableDef()
STARTED = time.time()


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with rt.store.sessions() as session:
        devices = await count_devices(session)
        vens = int(await session.scalar(select(func.count()).select_from(Ven)) or 0)
    return reply(
        {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - STARTED, 1),
            "server_url": rt.settings.server_url,
            "admin_url": rt.settings.admin_url,
            "database": {"backend": rt.store.backend, "revision": await current_revision(rt.store)},
            "devices": devices,
            "vens": vens,
        }
    )


@routes.get("/api/v1/rate-limits")
async def rate_limits(request: web.Request) -> web.Response:
    """Clients the protocol listener answered 429 within the last ``within_s`` seconds (default 60)."""
    limiter = runtime(request).ratelimiter
    within = float(request.query.get("within_s", "60"))
    settings = runtime(request).settings.ratelimit
    return reply(
        {
            "enabled": settings.enabled,
            "budgets": {
                "device": {"rate": settings.device_rate, "burst": settings.device_burst},
                "aggregator": {"rate": settings.aggregator_rate, "burst": settings.aggregator_burst},
            },
            "tracked_clients": 0 if limiter is None else len(limiter.buckets),
            "limited": [] if limiter is None else limiter.limited_clients(within),
        }
    )
