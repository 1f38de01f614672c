"""Per-client request budgets on the protocol listener: a token bucket per LFDI, its rate and burst by role
(device or aggregator, ``[ratelimit]``). A request beyond the budget is answered 429 with Retry-After (the seconds
until a token is back) and a 2030.5 Error body before its handler runs, so a client that ignores Retry-After costs the server its
identity lookup (the certificate is cached, the Scope one indexed query) and slows only itself.

Memory is bounded: at most ``ratelimit.max_clients`` buckets, the least recently seen dropped first (a dropped
client starts again with a full bucket, which only ever errs towards serving it). Staff see who is limited in
``dso_ratelimit_rejected_total`` / ``dso_ratelimit_limited_clients`` and ``GET /api/v1/rate-limits``
(``dso rate-limits``)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter, Gauge

from server.config import RateLimitSettings
from server.observability import Handler, Metrics
from server.runtime import IDENTITY, SCOPE, Runtime
from server.sep2 import xml

REASON_LIMIT = 2  # 2030.5 Error reasonCode: resource limit reached


@dataclass
class Bucket:
    role: str
    tokens: float
    updated: float
    rejected: int = 0
    last_rejected: float = 0.0


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()
        self.rejected = self.limited = None
        if metrics is not None:
            self.rejected = Counter(
                "dso_ratelimit_rejected_total", "requests answered 429", ["role"], registry=metrics.registry
            )
            self.limited = Gauge(
                "dso_ratelimit_limited_clients",
                "clients answered 429 within the last minute",
                registry=metrics.registry,
            )
            self.limited.set_function(lambda: len(self.limited_clients()))

    def budget(self, role: str) -> tuple[int, int]:
        """(tokens per second, burst) of a role."""
        s = self.settings
        if role == "aggregator":
            return s.aggregator_rate, s.aggregator_burst
        return s.device_rate, s.device_burst

    def take(self, lfdi: str, role: str, now: float | None = None) -> float:
        """Spend a token of ``lfdi``; 0 when the request may go on, else the seconds until a token is back."""
        now = time.monotonic() if now is None else now
        rate, burst = self.budget(role)
        bucket = self.buckets.get(lfdi)
        if bucket is None:
            bucket = self.buckets[lfdi] = Bucket(role, burst, now)
            while len(self.buckets) > self.settings.max_clients:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(lfdi)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated, bucket.role = now, role
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        bucket.rejected += 1
        bucket.last_rejected = now
        if self.rejected is not None:
            self.rejected.labels(role).inc()
        return (1 - bucket.tokens) / rate if rate > 0 else 3600.0

    def limited_clients(self, within_s: float = 60.0) -> list[dict[str, object]]:
        """Clients answered 429 within the last ``within_s`` seconds, most rejected first."""
        now = time.monotonic()
        out = [
            {
                "lfdi": lfdi,
                "role": b.role,
                "rejected": b.rejected,
                "last_rejected_s_ago": round(now - b.last_rejected, 1),
                "tokens": round(b.tokens, 2),
            }
            for lfdi, b in self.buckets.items()
            if b.rejected and now - b.last_rejected <= within_s
        ]
        return sorted(out, key=lambda c: -int(str(c["rejected"])))


def middleware(rt: Runtime):
    """The protocol listener's rate limit (after the identity middleware: it needs the LFDI and the Scope)."""
    limiter = rt.ratelimiter = RateLimiter(rt.settings.ratelimit, rt.metrics)

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not rt.settings.ratelimit.enabled:
            return await handler(request)
        scope = request.get(SCOPE)
        role = "aggregator" if scope is not None and scope.aggregator_id is not None else "device"
        wait = limiter.take(request[IDENTITY].lfdi, role)
        if wait <= 0:
            return await handler(request)
        body = xml.serialize(xml.E("Error", None, xml.leaf("reasonCode", REASON_LIMIT)))
        return web.Response(
            status=429,
            body=body,
            content_type=xml.MEDIA_TYPE,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    return limit
