"""Structured logging, request ids and Prometheus metrics shared by both listeners."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("dso.http")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key.startswith("dso_"):
                entry[key[4:]] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    if use_json:
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Metrics:
    """Per-application registry so several servers in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dso_http_requests_total",
            "HTTP requests",
            ["listener", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dso_http_request_seconds",
            "HTTP request latency",
            ["listener", "route", "method"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        # set from the database when the admin listener's /metrics is scraped
        self.parties = Gauge(
            "dso_fleet_parties",
            "Enrolled parties by kind and state",
            ["kind", "state"],
            registry=self.registry,
        )
        self.undelivered = Gauge(
            "dso_deliveries_undelivered",
            "Outbox messages pending or failed (dead letters) per channel",
            ["channel", "status"],
            registry=self.registry,
        )
        self.alarms = Gauge(
            "dso_alarms_open",
            "Alarms not cleared, by kind and severity",
            ["kind", "severity"],
            registry=self.registry,
        )

    def children(self, listener: str, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The labelled counter and histogram of one (listener, route, method, status), looked up once.

        Bounded like the label sets themselves: routes are patterns (or "unmatched"), and methods and statuses
        are few; an unusual method name is not remembered, so a client cannot grow this map."""
        key = (listener, route, method, status)
        found = self._children.get(key)
        if found is None:
            found = (
                self.requests.labels(listener, route, method, str(status)),
                self.latency.labels(listener, route, method),
            )
            if method in _METHODS:
                self._children[key] = found
        return found


REQUEST_ID = web.RequestKey("request_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_QUIET_METHODS = frozenset({"GET", "HEAD"})


def observe_middleware(listener: str, metrics: Metrics, requests: str = "all"):
    """Count and time every request; log it at INFO as ``requests`` says (``LoggingSettings.requests``)."""
    log_all, log_none = requests == "all", requests == "none"

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")[:64] or os.urandom(8).hex()
        request[REQUEST_ID] = request_id
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        finally:
            elapsed = time.perf_counter() - start
            # label by route pattern, not raw path, so cardinality stays bounded
            resource = request.match_info.route.resource if request.match_info.route else None
            route = resource.canonical if resource is not None else "unmatched"
            count, latency = metrics.children(listener, route, request.method, status)
            count.inc()
            latency.observe(elapsed)
            quiet = log_none or (not log_all and status < 400 and request.method in _QUIET_METHODS)
            if not quiet and log.isEnabledFor(logging.INFO):  # the arguments cost even a dropped line
                log.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    status,
                    extra={
                        "dso_request_id": request_id,
                        "dso_listener": listener,
                        "dso_status": status,
                        "dso_ms": round(elapsed * 1000, 2),
                        "dso_remote": request.remote,
                    },
                )
        response.headers["X-Request-Id"] = request_id
        return response

    return observe
