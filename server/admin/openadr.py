"""OpenADR administration for staff: VENs, events, opt responses and schedules, reports, telemetry.

/api/v1/vens                                 GET list, POST enroll {name, fingerprint, ven_id?, push?}
/api/v1/vens/{name}                          GET, PATCH {push?, enabled?}, DELETE
/api/v1/vens/{name}/reregister               POST  queue oadrRequestReregistration
/api/v1/vens/{name}/cancel-registration      POST  queue oadrCancelPartyRegistration
/api/v1/vens/{name}/report-requests          POST  {report_specifier_id, granularity_s, report_back_duration_s}
/api/v1/vens/{name}/report-requests/{rrid}/cancel  POST  queue oadrCancelReport
/api/v1/openadr/events                       GET (?all=1 includes expired), POST create
/api/v1/openadr/events/{id}                  GET (with opt responses), PATCH modify
/api/v1/openadr/events/{id}/cancel           POST
/api/v1/openadr/opts                         GET ?ven=&event=
/api/v1/openadr/reports                      GET ?ven=   offered metadata and report requests
(telemetry reads live in admin/telemetry.py: GET /api/v1/telemetry)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.access import requires
from server.admin.common import field, json_body, list_reply, optional_time, path_id, reply, runtime, window
from server.core import oadr_events, opts, parties, programs, reports
from server.core import vens as vens_core
from server.core.errors import Invalid
from server.core.staff import ENROL, EVENTS, SETTINGS
from server.store.models import Program

routes = web.RouteTableDef()


def _event_id(request: web.Request) -> int:
    return path_id(request, "event")


def _wake(request: web.Request) -> None:
    """Nudge the delivery worker of this process (the protocol app shares the runtime, not the app)."""
    worker = runtime(request).outbox
    if worker is not None:
        worker.wake()


async def _program(session: AsyncSession, ref: str | int | None) -> Program | None:
    """The DR or price program an OpenADR event is created in, when staff named one."""
    if ref is None:
        return None
    program = await programs.get_program(session, ref, None)
    if program.kind not in ("dr", "rate"):
        raise Invalid("OpenADR events go to a DR program or a rate component of a tariff")
    return program


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = field(body, name, list, required=False, default=[])
    if not all(isinstance(v, str) for v in value):
        raise Invalid(f"field {name!r} must be a list of strings")
    return value


# ---------------------------------------------------------------------------------------------- VENs
@routes.get("/api/v1/vens")
async def list_vens(request: web.Request) -> web.Response:
    win = window(request)
    async with runtime(request).store.sessions() as session:
        found, total = await parties.vens_page(session, win.offset, win.limit)
    return list_reply([v.to_dict() for v in found], total)


@routes.post("/api/v1/vens")
@requires(ENROL)
async def enroll(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        ven = await parties.enroll_ven(
            session,
            field(body, "name", str),
            field(body, "fingerprint", str),
            ven_id=field(body, "ven_id", str, required=False),
            push_enabled=field(body, "push", bool, required=False, default=False),
        )
        info = parties.VenInfo.of(ven)
    return reply(info.to_dict(), 201)


@routes.get("/api/v1/vens/{name}")
async def get_ven(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply((await parties.ven_info(session, request.match_info["name"])).to_dict())


@routes.patch("/api/v1/vens/{name}")
@requires(ENROL)
async def patch_ven(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        info = await parties.update_ven(
            session,
            request.match_info["name"],
            push_enabled=field(body, "push", bool, required=False),
            enabled=field(body, "enabled", bool, required=False),
        )
    return reply(info.to_dict())


@routes.delete("/api/v1/vens/{name}")
@requires(ENROL)
async def delete_ven(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        await parties.delete_ven(session, request.match_info["name"])
    return web.Response(status=204)


async def _queue_for(request: web.Request, kind: str) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        ven = await vens_core.by_name(session, request.match_info["name"])
        if ven.registration_id is None:
            raise Invalid(f"VEN {ven.name} is not registered")
        await vens_core.enqueue(session, ven.id, kind, dedupe=True)
    _wake(request)
    return reply({"queued": kind, "ven": request.match_info["name"]}, 202)


@routes.post("/api/v1/vens/{name}/reregister")
@requires(SETTINGS)
async def reregister(request: web.Request) -> web.Response:
    return await _queue_for(request, vens_core.REQUEST_REREGISTRATION)


@routes.post("/api/v1/vens/{name}/cancel-registration")
@requires(SETTINGS)
async def cancel_registration(request: web.Request) -> web.Response:
    return await _queue_for(request, vens_core.CANCEL_REGISTRATION)


@routes.post("/api/v1/vens/{name}/report-requests")
@requires(SETTINGS)
async def request_report(request: web.Request) -> web.Response:
    body = await json_body(request)
    granularity = field(body, "granularity_s", int, required=False, default=0)
    back = field(body, "report_back_duration_s", int, required=False, default=0)
    if granularity < 0 or back < 0:
        raise Invalid("granularity_s and report_back_duration_s must not be negative")
    async with runtime(request).store.sessions.begin() as session:
        made = await reports.request_report(
            session, request.match_info["name"], field(body, "report_specifier_id", str), granularity, back
        )
    _wake(request)
    return reply(made, 202)


@routes.post("/api/v1/vens/{name}/report-requests/{rrid}/cancel")
@requires(SETTINGS)
async def cancel_report(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        made = await reports.request_cancel(session, request.match_info["name"], request.match_info["rrid"])
    _wake(request)
    return reply(made, 202)


# ---------------------------------------------------------------------------------------------- events
@routes.get("/api/v1/openadr/events")
async def list_events(request: web.Request) -> web.Response:
    rt = runtime(request)
    include = request.query.get("all", "") in ("1", "true", "yes")
    async with rt.store.sessions() as session:
        found = await oadr_events.list_events(
            session,
            rt.settings.openadr.near_window_s,
            include_expired=include,
            default_market_context=rt.settings.openadr.market_context,
        )
    return reply([e.to_dict() for e in found])


@routes.post("/api/v1/openadr/events")
@requires(EVENTS)
async def create_event(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await json_body(request)
    start = optional_time(field(body, "start", str, required=False, default="now"), "start")
    assert start is not None
    level = field(body, "level", (int, float), required=False)
    async with rt.store.sessions.begin() as session:
        info = await oadr_events.create_event(
            session,
            signal_name=field(body, "signal", str, required=False, default="SIMPLE"),
            start=start,
            market_context=field(
                body, "market_context", str, required=False, default=rt.settings.openadr.market_context
            ),
            near_window_s=rt.settings.openadr.near_window_s,
            level=level,
            duration_s=field(body, "duration_s", int, required=False),
            intervals=field(body, "intervals", list, required=False),
            signal_type=field(body, "signal_type", str, required=False),
            ven_names=_str_list(body, "vens"),
            resource_ids=_str_list(body, "resource_ids"),
            group_ids=_str_list(body, "group_ids"),
            priority=field(body, "priority", int, required=False, default=0),
            response_required=field(body, "response_required", str, required=False, default="always"),
            randomization_s=field(body, "randomization_s", int, required=False, default=0),
            test_event=field(body, "test_event", bool, required=False, default=False),
            comment=field(body, "comment", str, required=False, default=""),
            program=await _program(session, field(body, "program", (str, int), required=False)),
        )
    _wake(request)
    return reply(info.to_dict(), 201)


@routes.get("/api/v1/openadr/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with rt.store.sessions() as session:
        info = await oadr_events.get_event(
            session, _event_id(request), rt.settings.openadr.near_window_s, rt.settings.openadr.market_context
        )
    return reply(info.to_dict())


@routes.patch("/api/v1/openadr/events/{id}")
@requires(EVENTS)
async def modify_event(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await json_body(request)
    async with rt.store.sessions.begin() as session:
        info = await oadr_events.modify_event(
            session,
            _event_id(request),
            rt.settings.openadr.near_window_s,
            level=field(body, "level", (int, float), required=False),
            intervals=field(body, "intervals", list, required=False),
            start=optional_time(field(body, "start", str, required=False), "start"),
            duration_s=field(body, "duration_s", int, required=False),
            priority=field(body, "priority", int, required=False),
            reason=field(body, "reason", str, required=False, default=""),
            default_market_context=rt.settings.openadr.market_context,
        )
    _wake(request)
    return reply(info.to_dict())


@routes.post("/api/v1/openadr/events/{id}/cancel")
@requires(EVENTS)
async def cancel_event(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with rt.store.sessions.begin() as session:
        info = await oadr_events.cancel_event(
            session, _event_id(request), rt.settings.openadr.near_window_s, rt.settings.openadr.market_context
        )
    _wake(request)
    return reply(info.to_dict())


# ---------------------------------------------------------------------------------------------- opts, reports
@routes.get("/api/v1/openadr/opts")
async def list_opts(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(await opts.list_opts(session, request.query.get("ven"), request.query.get("event")))


@routes.get("/api/v1/openadr/reports")
async def list_reports(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(await reports.list_reports(session, request.query.get("ven")))
