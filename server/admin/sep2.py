"""Staff API for IEEE 2030.5: programs and their assignment to devices, DER controls and default controls,
Responses, what devices reported (capability/settings/status/availability), poll/post rates and client access.

    GET  /api/v1/programs                          list
    POST /api/v1/programs                          {name, primacy, description?}
    GET  /api/v1/programs/{id|name}                one
    PATCH /api/v1/programs/{id|name}               {primacy?, description?}
    POST /api/v1/programs/{id|name}/assign         {lfdi, fsa?}   put the program in the device's FSA
    POST /api/v1/programs/{id|name}/unassign       {lfdi}
    PUT  /api/v1/programs/{id|name}/default-control {base: {...}, setGradW?}   create/replace
    DELETE /api/v1/programs/{id|name}/default-control
    GET  /api/v1/programs/{id|name}/curves          DERCurves of the program
    POST /api/v1/programs/{id|name}/curves          {curve_type, points: [[x, y], ...], y_ref_type, x_multiplier?,
                                                    y_multiplier?, description?}; controls name them by id
    DELETE /api/v1/curves/{id}
    POST /api/v1/controls                          {program | lfdi, start: ISO8601|"now", duration_s, base: {...},
                                                    randomize_start_s?, randomize_duration_s?, response_required?,
                                                    description?, primacy? (for a device's own program)}
    GET  /api/v1/controls[?lfdi=HEX][&program=NAME]
    GET  /api/v1/controls/{id}
    POST /api/v1/controls/{id}/cancel              {randomized?}
    GET  /api/v1/controls/{id}/responses
    GET  /api/v1/sep2/responses[?lfdi=HEX]
    GET  /api/v1/sep2/devices/{lfdi}               the device, its programs and what it reported (XML as sent)
    PUT  /api/v1/sep2/end-devices/{lfdi}           ensure enrolled: {pin?, aggregator?, name?}
    DELETE /api/v1/sep2/end-devices/{lfdi}         ensure not enrolled (idempotent)
    PUT  /api/v1/sep2/end-devices/{lfdi}/fsa/{title} ensure the device has a FunctionSetAssignments so titled
    PUT  /api/v1/sep2/aggregators/{lfdi}           ensure an aggregator (service provider) exists
    GET  /api/v1/sep2/mups[?owner=LFDI]            MirrorUsagePoints with their reading counts
    DELETE /api/v1/sep2/mups?owner=LFDI            remove a client's MirrorUsagePoints
    GET  /api/v1/sep2/settings                     runtime settings (rates, access)
    PUT  /api/v1/sep2/poll-rates/{resource}        {rate_s}  e.g. resource = DeviceCapability, EndDeviceList
    PUT  /api/v1/sep2/post-rates/{resource}        {rate_s}  e.g. resource = EndDevice, MirrorUsagePoint
    PUT  /api/v1/sep2/access/{lfdi}                {granted}  revoke/restore a client's 2030.5 access
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.admin.access import requires
from server.admin.common import field, json_body, list_reply, path_id, reply, runtime, window
from server.core import events, parties, programs, scope
from server.core import sep2_device as devres
from server.core.errors import Invalid, NotFound
from server.core.staff import ENROL, EVENTS, PROGRAMS, SETTINGS
from server.store.models import Aggregator, Event, EventResponse, Program, Sep2Mup
from server.store.paging import fetch_page
from server.store.types import utcnow

routes = web.RouteTableDef()

RESOURCE_NAMES = {
    "DeviceCapability",
    "Time",
    "EndDeviceList",
    "EndDevice",
    "FunctionSetAssignmentsList",
    "DERProgramList",
    "DERList",
    "MirrorUsagePointList",
    "MirrorUsagePoint",
    "ResponseSetList",
    "Registration",
}


def _program_out(p: Program) -> dict[str, Any]:
    return {**programs.program_dict(p), "href": f"/api/v1/programs/{p.id}"}


def _control_out(c, program: Program | None = None) -> dict[str, Any]:
    return {**events.control_dict(c, program), "href": f"/api/v1/controls/{c.id}"}


def _lfdi(value: str) -> str:
    try:
        return pki.normalise_lfdi(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def parse_start(value: str) -> dt.datetime:
    if value == "now":
        return utcnow()
    try:
        start = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("start must be ISO 8601 with a time zone, or 'now'") from None
    if start.tzinfo is None:
        raise Invalid("start must carry a time zone (e.g. 2026-01-01T10:00:00Z)")
    return start.astimezone(dt.UTC)


# -------------------------------------------------------------------------------------------------- programs
@routes.get("/api/v1/programs")
async def list_programs(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply([_program_out(p) for p in await programs.list_programs(session)])


@routes.post("/api/v1/programs")
@requires(PROGRAMS)
async def create_program(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.create_program(
            session,
            field(body, "name", str),
            field(body, "primacy", int),
            field(body, "description", str, required=False, default=""),
        )
        return reply(_program_out(p), 201)


@routes.get("/api/v1/programs/{ref}")
async def get_program(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(_program_out(await programs.get_program(session, request.match_info["ref"])))


@routes.patch("/api/v1/programs/{ref}")
@requires(PROGRAMS)
async def update_program(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        await programs.update_program(
            session,
            p,
            field(body, "primacy", int, required=False),
            field(body, "description", str, required=False),
        )
        return reply(_program_out(p))


@routes.post("/api/v1/programs/{ref}/assign")
@requires(PROGRAMS)
async def assign(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        device = await programs.device_by_lfdi(session, field(body, "lfdi", str))
        fsa = await programs.assign(
            session, p, device, field(body, "fsa", str, required=False, default=programs.DEFAULT_FSA_TITLE)
        )
        return reply(
            {
                "id": fsa.id,
                "program_id": p.id,
                "end_device_id": device.id,
                "fsa": fsa.title,
                "href": f"/edev/{device.id}/fsa/{fsa.id}",
            }
        )


@routes.post("/api/v1/programs/{ref}/unassign")
@requires(PROGRAMS)
async def unassign(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        device = await programs.device_by_lfdi(session, field(body, "lfdi", str))
        await programs.unassign(session, p, device)
    return web.Response(status=204)


@routes.put("/api/v1/programs/{ref}/default-control")
@requires(PROGRAMS)
async def put_default(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        await programs.set_default_control(
            session, p, field(body, "base", dict), field(body, "setGradW", int, required=False)
        )
        return reply(_program_out(p))


@routes.delete("/api/v1/programs/{ref}/default-control")
@requires(PROGRAMS)
async def delete_default(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        await programs.set_default_control(session, p, None)
    return web.Response(status=204)


@routes.get("/api/v1/programs/{ref}/curves")
async def list_curves(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        return reply(
            [
                {**programs.curve_dict(c), "href": f"/api/v1/curves/{c.id}"}
                for c in await programs.program_curves(session, p.id)
            ]
        )


@routes.post("/api/v1/programs/{ref}/curves")
@requires(PROGRAMS)
async def create_curve(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        p = await programs.get_program(session, request.match_info["ref"])
        c = await programs.create_curve(
            session,
            p,
            field(body, "curve_type", int),
            field(body, "points", list),
            field(body, "y_ref_type", int),
            field(body, "x_multiplier", int, required=False, default=0),
            field(body, "y_multiplier", int, required=False, default=0),
            field(body, "description", str, required=False, default=""),
        )
        return reply({**programs.curve_dict(c), "href": f"/api/v1/curves/{c.id}"}, 201)


@routes.delete("/api/v1/curves/{id}")
@requires(PROGRAMS)
async def delete_curve(request: web.Request) -> web.Response:
    curve_id = path_id(request, "curve")
    async with runtime(request).store.sessions.begin() as session:
        await programs.delete_curve(session, curve_id)
    return web.Response(status=204)


# -------------------------------------------------------------------------------------------------- controls
@routes.post("/api/v1/controls")
@requires(EVENTS)
async def create_control(request: web.Request) -> web.Response:
    body = await json_body(request)
    program_ref = field(body, "program", (str, int), required=False)
    lfdi = field(body, "lfdi", str, required=False)
    if (program_ref is None) == (lfdi is None):
        raise Invalid("give exactly one of 'program' and 'lfdi'")
    new = events.NewEvent(
        start=parse_start(field(body, "start", str, required=False, default="now")),
        duration_s=field(body, "duration_s", int),
        payload={"base": field(body, "base", dict)},
        description=field(body, "description", str, required=False, default=""),
        randomize_start_s=field(body, "randomize_start_s", int, required=False),
        randomize_duration_s=field(body, "randomize_duration_s", int, required=False),
        response_required=field(body, "response_required", int, required=False, default=3),
    )
    async with runtime(request).store.sessions.begin() as session:
        if program_ref is not None:
            program = await programs.get_program(session, program_ref)
        else:
            device = await programs.device_by_lfdi(session, lfdi)
            program = await programs.device_program(
                session, device, field(body, "primacy", int, required=False, default=1)
            )
        control = await events.create(session, program, new)
        return reply({**_control_out(control, program), "warnings": _past_start(new)}, 201)


PAST_SLACK_S = 60  # "now" typed a moment ago is not "in the past"


def _past_start(new: events.NewEvent) -> list[str]:
    """Said back to staff: a control that starts (or even ends) before it was created."""
    late = (utcnow() - new.start).total_seconds()
    if late <= PAST_SLACK_S:
        return []
    if late >= new.duration_s:
        return [f"the control ended {late - new.duration_s:.0f} s ago: devices will not act on it"]
    return [f"the control started {late:.0f} s ago: devices apply it at once for the remaining time"]


@routes.get("/api/v1/controls")
async def list_controls(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        all_programs = {p.id: p for p in await programs.list_programs(session)}
        program_ids: list[int] | None = None
        if "program" in request.query:
            program_ids = [(await programs.get_program(session, request.query["program"])).id]
        if "lfdi" in request.query:
            device = await programs.device_by_lfdi(session, request.query["lfdi"])
            ids = [p.id for p in await programs.device_programs(session, device.id)]
            program_ids = ids if program_ids is None else [i for i in program_ids if i in ids]
        query = events.events_query(kind="der", include_completed=True).order_by(None)
        query = query.order_by(Event.start, Event.creation_time.desc(), Event.id.desc())
        if program_ids is not None:
            query = query.where(Event.program_id.in_(program_ids))
        win = window(request)
        found, total = await fetch_page(session, query, win.offset, win.limit)
        return list_reply([_control_out(c, all_programs.get(c.program_id)) for c in found], total)


async def _control(session: AsyncSession, control_id: int) -> Event:
    c = await session.get(Event, control_id)
    if c is None or c.kind != "der":
        raise NotFound(f"no control {control_id}")
    return c


def _response_out(r: EventResponse) -> dict[str, Any]:
    """A device's Response to a DER control, as these routes have always shown it."""
    return {
        "id": r.id,
        "control_id": r.event_id,
        "end_device_id": r.end_device_id,
        "lfdi": r.lfdi,
        "status": r.status,
        "modes_responded": None if r.modes_responded is None else f"{r.modes_responded:08X}",
        "created": r.created_date_time.isoformat(),
        "received_at": r.received_at.isoformat(),
        "href": f"/rsps/1/rsp/{r.id}",
    }


def _control_id(request: web.Request) -> int:
    return path_id(request, "control")


@routes.get("/api/v1/controls/{id}")
async def get_control(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        c = await _control(session, _control_id(request))
        return reply(_control_out(c, await session.get(Program, c.program_id)))


@routes.post("/api/v1/controls/{id}/cancel")
@requires(EVENTS)
async def cancel_control(request: web.Request) -> web.Response:
    body = await json_body(request) if request.body_exists else {}
    async with runtime(request).store.sessions.begin() as session:
        c = await _control(session, _control_id(request))
        await events.cancel(session, c, field(body, "randomized", bool, required=False, default=False))
        return reply(_control_out(c, await session.get(Program, c.program_id)))


@routes.get("/api/v1/controls/{id}/responses")
async def control_responses(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        c = await _control(session, _control_id(request))
        found = list(await session.scalars(events.responses_query(event_id=c.id)))
        return reply([_response_out(r) for r in found])


@routes.get("/api/v1/sep2/responses")
async def all_responses(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        ids = None
        if "lfdi" in request.query:
            ids = [(await programs.device_by_lfdi(session, request.query["lfdi"])).id]
        win = window(request)
        query = events.responses_query(end_device_ids=ids, kind="der").order_by(None)
        query = query.order_by(EventResponse.created_date_time.desc(), EventResponse.id.desc())
        found, total = await fetch_page(session, query, win.offset, win.limit)
        return list_reply([_response_out(r) for r in found], total)


# --------------------------------------------------------------------------------------------------- devices
@routes.get("/api/v1/sep2/devices/{lfdi}")
async def device_view(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        device = await programs.device_by_lfdi(session, request.match_info["lfdi"])
        agg = await session.get(Aggregator, device.aggregator_id) if device.aggregator_id else None
        progs = await programs.device_programs(session, device.id)
        reported = await devres.device_resources(session, device.id)
        info = {
            "lfdi": device.lfdi,
            "sfdi": device.sfdi,
            "pin": device.pin,
            "name": device.name,
            "aggregator_lfdi": agg.lfdi if agg else None,
            "enabled": device.enabled,
            "registered_by": device.registered_by,
            "created_at": device.created_at.isoformat(),
        }
        return reply(
            {
                "id": device.id,
                "href": f"/edev/{device.id}",
                "device": info,
                "programs": [_program_out(p) for p in progs],
                "reported": reported,
                "status": devres.der_status_summary(reported.get("ders")),
            }
        )


@routes.put("/api/v1/sep2/end-devices/{lfdi}")
@requires(ENROL)
async def ensure_end_device(request: web.Request) -> web.Response:
    body = await json_body(request) if request.body_exists else {}
    lfdi = _lfdi(request.match_info["lfdi"])
    pin = field(body, "pin", int, required=False)
    aggregator = field(body, "aggregator", str, required=False)
    async with runtime(request).store.sessions.begin() as session:
        device, made = await parties.ensure_device(
            session,
            lfdi,
            pin=pin,
            aggregator_lfdi=aggregator,
            name=field(body, "name", str, required=False, default=""),
        )
        status = 201 if made else 200
        return reply(
            {
                "id": device.id,
                "lfdi": device.lfdi,
                "sfdi": device.sfdi,
                "pin": device.pin,
                "href": f"/edev/{device.id}",
            },
            status,
        )


@routes.delete("/api/v1/sep2/end-devices/{lfdi}")
@requires(ENROL)
async def remove_end_device(request: web.Request) -> web.Response:
    lfdi = _lfdi(request.match_info["lfdi"])
    async with runtime(request).store.sessions.begin() as session:
        await parties.remove_device(session, lfdi)
    return web.Response(status=204)


@routes.put("/api/v1/sep2/end-devices/{lfdi}/fsa/{title}")
@requires(ENROL)
async def ensure_fsa(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        device = await programs.device_by_lfdi(session, request.match_info["lfdi"])
        fsa = await programs.ensure_fsa(session, device, request.match_info["title"][:32])
        return reply(
            {
                "id": fsa.id,
                "title": fsa.title,
                "end_device_id": device.id,
                "href": f"/edev/{device.id}/fsa/{fsa.id}",
            }
        )


@routes.put("/api/v1/sep2/aggregators/{lfdi}")
@requires(ENROL)
async def ensure_aggregator(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        agg = await parties.ensure_aggregator(session, _lfdi(request.match_info["lfdi"]))
        return reply({"id": agg.id, "lfdi": agg.lfdi, "href": f"/api/v1/sep2/aggregators/{agg.lfdi}"})


@routes.get("/api/v1/sep2/mups")
async def list_mups(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        if "owner" in request.query:
            query = devres.mups_query(
                await scope.of_client(session, _lfdi(request.query["owner"]), as_staff=True)
            )
        else:
            query = select(Sep2Mup).order_by(Sep2Mup.id)
        win = window(request)
        found, total = await fetch_page(session, query, win.offset, win.limit)
        return list_reply(
            [
                {
                    "id": m.id,
                    "owner_lfdi": m.owner_lfdi,
                    "device_lfdi": m.device_lfdi,
                    "mrid": m.mrid,
                    "readings": m.readings,
                    "href": f"/mup/{m.id}",
                }
                for m in found
            ],
            total,
        )


@routes.delete("/api/v1/sep2/mups")
@requires(SETTINGS)
async def delete_mups(request: web.Request) -> web.Response:
    if "owner" not in request.query:
        raise Invalid("give ?owner=LFDI")
    async with runtime(request).store.sessions.begin() as session:
        n = await devres.delete_mups(
            session, await scope.of_client(session, _lfdi(request.query["owner"]), as_staff=True)
        )
    return reply({"deleted": n})


# -------------------------------------------------------------------------------------------------- settings
@routes.get("/api/v1/sep2/settings")
async def get_settings(request: web.Request) -> web.Response:
    settings = runtime(request).settings.sep2
    async with runtime(request).store.sessions() as session:
        return reply(
            {
                "poll_rate_s": settings.poll_rate_s,
                "post_rate_s": settings.post_rate_s,
                "registration": settings.registration,
                "profile": settings.profile,
                "pen": settings.pen,
                "overrides": await devres.all_settings(session),
            }
        )


def _resource(request: web.Request) -> str:
    name = request.match_info["resource"]
    if name not in RESOURCE_NAMES:
        raise NotFound(f"unknown resource {name!r}; one of {', '.join(sorted(RESOURCE_NAMES))}")
    return name


async def _put_rate(request: web.Request, prefix: str) -> web.Response:
    resource = _resource(request)
    body = await json_body(request)
    rate = field(body, "rate_s", int, required=False)
    if rate is not None and not 1 <= rate <= 2**32 - 1:
        raise Invalid("rate_s must be 1..4294967295 (or null to restore the default)")
    async with runtime(request).store.sessions.begin() as session:
        await devres.set_rate(session, prefix, resource, rate)
    return reply({"resource": resource, "rate_s": rate})


@routes.put("/api/v1/sep2/poll-rates/{resource}")
@requires(SETTINGS)
async def put_poll_rate(request: web.Request) -> web.Response:
    return await _put_rate(request, "pollrate")


@routes.put("/api/v1/sep2/post-rates/{resource}")
@requires(SETTINGS)
async def put_post_rate(request: web.Request) -> web.Response:
    return await _put_rate(request, "postrate")


@routes.put("/api/v1/sep2/access/{lfdi}")
@requires(ENROL)
async def put_access(request: web.Request) -> web.Response:
    lfdi = _lfdi(request.match_info["lfdi"])
    granted = field(await json_body(request), "granted", bool)
    async with runtime(request).store.sessions.begin() as session:
        await scope.set_access(session, lfdi, granted)
    return reply({"lfdi": lfdi, "granted": granted})


__all__ = ["routes", "NotFound"]
