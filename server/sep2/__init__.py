"""IEEE 2030.5 adapter: resource models <-> XML, routes per function set, paging, event rules.

``setup(app)`` adds the function-set routes to the protocol (mTLS) application; the schemas are compiled here,
once, so a broken installation fails at start-up rather than on the first request.
"""

from aiohttp import web


def setup(app: web.Application) -> None:
    # telemetry_setup: subscriptions, metering, log events, pricing, DRLC (issue 4)
    from server.sep2 import routes, telemetry_setup, xml

    xml.schema(strict=False)
    xml.schema(strict=True)
    # first: routes.setup ends with catch-all Error answers for unknown hrefs under /edev etc.
    telemetry_setup.setup(app)
    routes.setup(app)
