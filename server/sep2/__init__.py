"""IEEE 2030.5 adapter: resource models <-> XML, routes per function set, paging, event rules.

``setup(app)`` adds the function-set routes to the protocol (mTLS) application (``server.sep2.routes`` lists
them) and the notification channel to its delivery outbox (``server.sep2.delivery``); the schemas are compiled here, once, so a broken installation fails at start-up rather than on the first
request.
"""

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.delivery import context
    from server.runtime import RUNTIME
    from server.sep2 import delivery, routes, xml

    xml.schema(strict=False)
    xml.schema(strict=True)
    xml.schema(edition=xml.EDITION_2023)
    routes.setup(app)
    context.add_channel(app, delivery.channel(app[RUNTIME].settings))
