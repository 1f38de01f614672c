"""/programs: the core's DR programs and rate components as 3.x programs (BL clients write; VENs read the ones
that reach them). A program's targets are the names of its VEN members."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import oadr3
from server.core import oadr3_clients as clients
from server.core.errors import Invalid
from server.openadr3 import render
from server.openadr3.auth import caller, needs
from server.openadr3.http import answer, body, page, path_id, query_list, runtime
from server.store.models import Program

routes = web.RouteTableDef()


def fields(value: dict[str, Any]) -> oadr3.ProgramFields:
    extra = {k: value[k] for k in render.PROGRAM_EXTRA if k in value}
    return oadr3.ProgramFields(value["programName"], extra, list(value.get("targets") or []))


async def rendered(session: AsyncSession, found: list[Program]) -> list[dict[str, Any]]:
    targets = await oadr3.target_names(session, [p.id for p in found])
    return [render.program(p, targets.get(p.id, [])) for p in found]


@routes.get("/programs")
@needs(clients.READ_TARGETS)
async def search(request: web.Request) -> web.Response:
    query = oadr3.programs_query(caller(request), query_list(request, "targets"))
    async with runtime(request).store.sessions() as session:
        out = await rendered(session, await page(request, session, query))
    return answer(request, "program", out, many=True)


@routes.post("/programs")
@needs(clients.WRITE_PROGRAMS)
async def create(request: web.Request) -> web.Response:
    value = await body(request, "programRequest")
    async with runtime(request).store.sessions() as session, session.begin():
        program = await oadr3.create_program(session, fields(value))
        (out,) = await rendered(session, [program])
    return answer(request, "program", out, 201)


@routes.get("/programs/{programID}")
@needs(clients.READ_TARGETS)
async def get(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        program = await oadr3.program_for(session, caller(request), path_id(request, "programID"))
        (out,) = await rendered(session, [program])
    return answer(request, "program", out)


@routes.put("/programs/{programID}")
@needs(clients.WRITE_PROGRAMS)
async def update(request: web.Request) -> web.Response:
    program_id = path_id(request, "programID")
    value = await body(request, "programRequest")
    async with runtime(request).store.sessions() as session, session.begin():
        program = await oadr3.program_for(session, caller(request), program_id)
        if program.kind != "dr" and value.get("targets"):
            raise Invalid("a rate component's members are its tariff's")
        program = await oadr3.update_program(session, program, fields(value))
        (out,) = await rendered(session, [program])
    return answer(request, "program", out)


@routes.delete("/programs/{programID}")
@needs(clients.WRITE_PROGRAMS)
async def delete(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session, session.begin():
        program = await oadr3.program_for(session, caller(request), path_id(request, "programID"))
        (out,) = await rendered(session, [program])
        await oadr3.delete_program(session, program)
    return answer(request, "program", out)
