"""IEEE 2030.5 adapter: resource models <-> XML, routes per function set, paging, event rules.

``setup(app)`` adds the function-set routes to the protocol (mTLS) application (``server.sep2.routes`` lists
them); the schemas are compiled here, once, so a broken installation fails at start-up rather than on the first
request.
"""

from aiohttp import web


def setup(app: web.Application) -> None:
    from server.sep2 import routes, xml

    xml.schema(strict=False)
    xml.schema(strict=True)
    routes.setup(app)
