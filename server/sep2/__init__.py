"""IEEE 2030.5 adapter: resource models <-> XML, routes per function set, paging, event rules.

``setup(app)`` adds the function-set routes to the protocol (mTLS) application (``server.sep2.routes`` lists
them) and the notification channel to its delivery outbox (``server.sep2.delivery``), and ties what it keeps per
client (edition, CSIP-AUS namespace) to the shared clients token (``server.core.readcache``); the schemas are compiled here, once, so a broken installation fails at start-up rather than on the first
request.
"""

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.delivery import context
    from server.runtime import RUNTIME
    from server.sep2 import csipaus, delivery, editions, routes, xml

    # what this process keeps per client follows facts another process records (server.core.readcache)
    for forget in (editions.forget_all, csipaus.forget_all):
        app[RUNTIME].cache.on_clients_changed(forget)
    xml.schema(strict=False)
    xml.schema(strict=True)
    xml.schema(edition=xml.EDITION_2023)
    routes.setup(app)
    context.add_channel(app, delivery.channel(app[RUNTIME].settings))
