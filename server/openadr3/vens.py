"""/vens and /resources: a VEN client registers its one VEN (VEN_VEN_REQUEST) and its resources; a BL client may
register a VEN for a VEN client (BL_VEN_REQUEST naming its clientID), set targets, and sees every VEN. A VEN client
sees only its own VEN and resources: anything else is 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import oadr3
from server.core import oadr3_clients as clients
from server.core.errors import Forbidden, Invalid
from server.openadr3 import render
from server.openadr3.auth import caller, needs
from server.openadr3.http import (
    answer,
    body,
    object_id,
    page,
    page_rows,
    path_id,
    query_id,
    query_list,
    query_str,
    runtime,
)
from server.store.models import Oadr3Resource, Oadr3Ven, Ven

routes = web.RouteTableDef()


async def rendered_vens(session: AsyncSession, rows: list[tuple[Ven, Oadr3Ven]]) -> list[dict[str, Any]]:
    ids = await oadr3.client_ids(session, [state.client_pk for _, state in rows])
    return [render.ven(v, state, ids.get(state.client_pk, "")) for v, state in rows]


async def rendered_resources(session: AsyncSession, found: list[Oadr3Resource]) -> list[dict[str, Any]]:
    owners = await oadr3.ven_clients(session, [r.ven_pk for r in found])
    ids = await oadr3.client_ids(session, list(set(owners.values())))
    return [render.resource(r, ids.get(owners.get(r.ven_pk, 0), "")) for r in found]


def _check_kind(value: dict[str, Any], bl: bool, bl_kind: str, ven_kind: str) -> None:
    expected = bl_kind if bl else ven_kind
    if value["objectType"] != expected:
        raise Forbidden(f"a {'business-logic' if bl else 'VEN'} client sends {expected}")


@routes.get("/vens")
@needs(clients.READ_VEN_OBJECTS)
async def search_vens(request: web.Request) -> web.Response:
    query = oadr3.vens_query(
        caller(request), name=query_str(request, "venName"), targets=query_list(request, "targets")
    )
    async with runtime(request).store.sessions() as session:
        rows = await page_rows(request, session, query)
        out = await rendered_vens(session, [(r[0], r[1]) for r in rows])
    return answer(request, "ven", out, many=True)


@routes.post("/vens")
@needs(clients.WRITE_VENS)
async def create_ven(request: web.Request) -> web.Response:
    who = caller(request)
    value = await body(request, "venRequest")
    _check_kind(value, who.is_bl, "BL_VEN_REQUEST", "VEN_VEN_REQUEST")
    async with runtime(request).store.sessions() as session, session.begin():
        row = await oadr3.create_ven(
            session,
            who,
            name=value["venName"],
            attributes=list(value.get("attributes") or []),
            targets=list(value.get("targets") or []),
            client_id=value.get("clientID"),
        )
        (out,) = await rendered_vens(session, [row])
    return answer(request, "ven", out, 201)


@routes.get("/vens/{venID}")
@needs(clients.READ_VEN_OBJECTS)
async def get_ven(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        row = await oadr3.ven_for(session, caller(request), path_id(request, "venID"))
        (out,) = await rendered_vens(session, [row])
    return answer(request, "ven", out)


@routes.put("/vens/{venID}")
@needs(clients.WRITE_VENS)
async def update_ven(request: web.Request) -> web.Response:
    who = caller(request)
    ven_pk = path_id(request, "venID")
    value = await body(request, "venRequest")
    _check_kind(value, who.is_bl, "BL_VEN_REQUEST", "VEN_VEN_REQUEST")
    async with runtime(request).store.sessions() as session, session.begin():
        ven, state = await oadr3.ven_for(session, who, ven_pk)
        if who.is_bl and value.get("clientID") not in (
            None,
            (await oadr3.client_ids(session, [state.client_pk]))[state.client_pk],
        ):
            raise Invalid("a VEN cannot move to another client")
        row = await oadr3.update_ven(
            session,
            who,
            ven,
            state,
            name=value["venName"],
            attributes=list(value.get("attributes") or []),
            targets=list(value["targets"]) if "targets" in value else None,
        )
        (out,) = await rendered_vens(session, [row])
    return answer(request, "ven", out)


@routes.delete("/vens/{venID}")
@needs(clients.WRITE_VENS)
async def delete_ven(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        ven, state = await oadr3.ven_for(session, caller(request), path_id(request, "venID"))
        (out,) = await rendered_vens(session, [(ven, state)])
        await oadr3.delete_ven(session, ven)
    return answer(request, "ven", out)


# ----------------------------------------------------------------------------------------------------- resources
@routes.get("/resources")
@needs(clients.READ_VEN_OBJECTS)
async def search_resources(request: web.Request) -> web.Response:
    query = oadr3.resources_query(
        caller(request),
        name=query_str(request, "resourceName"),
        ven_pk=query_id(request, "venID"),
        targets=query_list(request, "targets"),
    )
    async with runtime(request).store.sessions() as session:
        out = await rendered_resources(session, await page(request, session, query))
    return answer(request, "resource", out, many=True)


async def _save(request: web.Request, resource_id: int | None) -> web.Response:
    who = caller(request)
    value = await body(request, "resourceRequest")
    _check_kind(value, who.is_bl, "BL_RESOURCE_REQUEST", "VEN_RESOURCE_REQUEST")
    async with runtime(request).store.sessions() as session, session.begin():
        current = await oadr3.resource_for(session, who, resource_id) if resource_id is not None else None
        saved = await oadr3.save_resource(
            session,
            who,
            current,
            ven_pk=object_id(value["venID"], "VEN"),
            name=value["resourceName"],
            attributes=list(value.get("attributes") or []),
            targets=list(value["targets"]) if "targets" in value else None,
        )
        (out,) = await rendered_resources(session, [saved])
    return answer(request, "resource", out, 201 if resource_id is None else 200)


@routes.post("/resources")
@needs(clients.WRITE_VENS)
async def create_resource(request: web.Request) -> web.Response:
    return await _save(request, None)


@routes.get("/resources/{resourceID}")
@needs(clients.READ_VEN_OBJECTS)
async def get_resource(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        found = await oadr3.resource_for(session, caller(request), path_id(request, "resourceID"))
        (out,) = await rendered_resources(session, [found])
    return answer(request, "resource", out)


@routes.put("/resources/{resourceID}")
@needs(clients.WRITE_VENS)
async def update_resource(request: web.Request) -> web.Response:
    return await _save(request, path_id(request, "resourceID"))


@routes.delete("/resources/{resourceID}")
@needs(clients.WRITE_VENS)
async def delete_resource(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        found = await oadr3.resource_for(session, caller(request), path_id(request, "resourceID"))
        (out,) = await rendered_resources(session, [found])
        await oadr3.delete_resource(session, found)
    return answer(request, "resource", out)
