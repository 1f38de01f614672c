"""OpenADR 3 administration for staff: the OAuth2 clients of the 3.x API.

/api/v1/oadr3/clients            GET list, POST create {name, role: ven|bl}  (the secret is in this answer only)
/api/v1/oadr3/clients/{name}     PATCH {enabled}  (disabling ends the client's tokens at once)
"""

from __future__ import annotations

from aiohttp import web

from server.admin.access import requires
from server.admin.common import field, json_body, list_reply, reply, runtime
from server.core import oadr3_clients as clients
from server.core.staff import ENROL

routes = web.RouteTableDef()


@routes.get("/api/v1/oadr3/clients")
async def list_clients(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        found = await clients.list_clients(session)
    return list_reply([clients.client_dict(c) for c in found], len(found))


@routes.post("/api/v1/oadr3/clients")
@requires(ENROL)
async def create_client(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        new = await clients.create_client(session, field(body, "name", str), field(body, "role", str))
    settings = runtime(request).settings
    return reply(
        {
            "id": new.id,
            "name": new.name,
            "role": new.role,
            "client_id": new.client_id,
            "client_secret": new.client_secret,
            "openadr3_url": settings.openadr3_url,
            "token_url": settings.openadr3_url + "/auth/token",
        },
        201,
    )


@routes.patch("/api/v1/oadr3/clients/{name}")
@requires(ENROL)
async def patch_client(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        client = await clients.set_enabled(session, request.match_info["name"], field(body, "enabled", bool))
        out = clients.client_dict(client)
    return reply(out)
