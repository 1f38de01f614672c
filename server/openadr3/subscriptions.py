"""/subscriptions: a client's webhooks for operations on objects. Each callbackUrl must be one the server may POST
to (``server.delivery.targets``: checked now and again before every notification). A VEN client sees only its own
subscriptions.

3.0.1 named the operations GET, POST, PUT, DELETE; 3.1.0 names them READ, CREATE, UPDATE, DELETE. A subscription
made with the 3.0.1 names (openadr3-client 2.4 sends them under 3.1 too) is accepted, kept and shown as made, and
selects the same notifications; it is checked against the 3.1.0 schema with the names translated."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import oadr3
from server.core import oadr3_clients as clients
from server.core.errors import Invalid
from server.delivery.targets import TargetPolicy, check_target
from server.openadr3 import render
from server.openadr3.auth import caller, needs
from server.openadr3.http import (
    answer,
    body,
    object_id,
    page,
    path_id,
    query_id,
    query_list,
    query_str,
    runtime,
)
from server.store.models import Oadr3Subscription

routes = web.RouteTableDef()


LEGACY = {"GET": "READ", "POST": "CREATE", "PUT": "UPDATE"}


def in_31_names(value: dict[str, Any]) -> dict[str, Any]:
    """The subscription with 3.0.1 operation names in their 3.1.0 spelling (anything else left for the schema)."""
    given = value.get("objectOperations")
    if not isinstance(given, list):
        return value
    ops = []
    for o in given:
        names = o.get("operations") if isinstance(o, dict) else None
        if isinstance(names, list):
            o = {**o, "operations": [LEGACY.get(x, x) if isinstance(x, str) else x for x in names]}
        ops.append(o)
    return {**value, "objectOperations": ops}


async def rendered(session: AsyncSession, found: list[Oadr3Subscription]) -> list[dict[str, Any]]:
    ids = await oadr3.client_ids(session, list({s.client_pk for s in found}))
    return [render.subscription(s, ids.get(s.client_pk, "")) for s in found]


@routes.get("/subscriptions")
@needs(clients.READ_VEN_OBJECTS)
async def search(request: web.Request) -> web.Response:
    query = oadr3.subscriptions_query(
        caller(request),
        program_id=query_id(request, "programID"),
        client_name=query_str(request, "clientName"),
        objects=query_list(request, "objects"),
    )
    async with runtime(request).store.sessions() as session:
        out = await rendered(session, await page(request, session, query))
    return answer(request, "subscription", out, many=True, checked=[in_31_names(o) for o in out])


async def _save(request: web.Request, sub_id: int | None) -> web.Response:
    who = caller(request)
    value = await body(request, "subscriptionRequest", in_31_names)
    if not value["objectOperations"]:
        raise Invalid("a subscription names at least one object operation")
    policy = TargetPolicy.of(runtime(request).settings)
    for operation in value["objectOperations"]:
        await check_target(operation["callbackUrl"], policy)
    program_id = object_id(value["programID"], "program") if "programID" in value else None
    async with runtime(request).store.sessions() as session, session.begin():
        current = await oadr3.subscription_for(session, who, sub_id) if sub_id is not None else None
        saved = await oadr3.save_subscription(
            session,
            who,
            current,
            client_name=value["clientName"],
            program_id=program_id,
            object_operations=value["objectOperations"],
            targets=list(value.get("targets") or []),
        )
        (out,) = await rendered(session, [saved])
    return answer(request, "subscription", out, 201 if sub_id is None else 200, checked=in_31_names(out))


@routes.post("/subscriptions")
@needs(clients.WRITE_SUBSCRIPTIONS)
async def create(request: web.Request) -> web.Response:
    return await _save(request, None)


@routes.get("/subscriptions/{subscriptionID}")
@needs(clients.READ_VEN_OBJECTS)
async def get(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        found = await oadr3.subscription_for(session, caller(request), path_id(request, "subscriptionID"))
        (out,) = await rendered(session, [found])
    return answer(request, "subscription", out, checked=in_31_names(out))


@routes.put("/subscriptions/{subscriptionID}")
@needs(clients.WRITE_SUBSCRIPTIONS)
async def update(request: web.Request) -> web.Response:
    return await _save(request, path_id(request, "subscriptionID"))


@routes.delete("/subscriptions/{subscriptionID}")
@needs(clients.WRITE_SUBSCRIPTIONS)
async def delete(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        found = await oadr3.subscription_for(session, caller(request), path_id(request, "subscriptionID"))
        (out,) = await rendered(session, [found])
        await oadr3.delete_subscription(session, found)
    return answer(request, "subscription", out)
