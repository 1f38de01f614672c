"""The operator console: HTML pages served by the admin listener behind the staff login.

It owns presentation only. Pages read through core (fleet, events, grid, deliveries, alarms) and every form posts
to a console route that declares its action with ``@requires`` like any admin route and calls the same core
function as the admin API, so the access middleware (session cookie, CSRF header, role, audit) decides for the
console exactly as for the API; a hidden button is never the protection. Templates are Jinja2 with autoescape;
htmx and Chart.js are vendored files (``static/vendor``); no inline script or style (the CSP forbids both);
``live`` streams server-sent events that make the alarm and event lists refresh themselves."""

from __future__ import annotations

from aiohttp import web

from server.console import actions, live, pages, render


def setup(app: web.Application) -> None:
    render.setup(app)
    live.setup(app)
    for module in (pages, actions, live, render):
        app.add_routes(module.routes)
