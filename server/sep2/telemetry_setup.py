"""Registers the second half of the 2030.5 function sets (issue 4) on the protocol application: subscriptions and
notifications, metering mirrors into telemetry, log events, pricing and DRLC. Kept apart from ``routes`` so each
function set is readable alone."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.sep2 import drlc, events, logevents, metering, pricing, subscriptions
    from server.sep2.routes import method_not_allowed

    methods: dict[str, list[str]] = {}
    for module in (subscriptions, logevents, pricing, drlc, events, metering):
        app.add_routes(module.routes)
        for r in module.routes:
            if isinstance(r, web.RouteDef):
                methods.setdefault(r.path, []).append(r.method)
    # other methods on these hrefs: 405 with Allow and an Error body, as for the core function sets
    for path, allowed in methods.items():
        app.router.add_route("*", path, method_not_allowed(sorted(allowed)))
