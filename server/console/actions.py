"""The console's forms. Each route declares its action (``@requires``) beside its handler, as every admin route
does, and calls the core function the admin API calls; the access middleware checks the session, the CSRF
header htmx sends and the role, and audits the request, before any of this runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from server.admin.access import note, principal, public, requires
from server.admin.common import path_id, runtime
from server.admin.dispatch import send_dispatch
from server.admin.sep2 import parse_start
from server.admin.staff import open_session, set_session_cookie
from server.console import render
from server.console.render import PREFIX
from server.core import alarms, events, parties, programs
from server.core.errors import Invalid, NotFound
from server.core.staff import ALARMS, ENROL, EVENTS
from server.orchestration.plan import export_plan
from server.store.models import EndDevice
from server.store.types import utcnow

routes = web.RouteTableDef()
Form = MultiDictProxy[Any]  # what request.post() returns


def _text(form: Form, name: str, required: bool = True) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise Invalid(f"{name} is required")
    return text


def _number(form: Form, name: str, low: float, high: float) -> float:
    raw = _text(form, name)
    try:
        value = float(raw)
    except ValueError:
        raise Invalid(f"{name} must be a number") from None
    if not low <= value <= high:
        raise Invalid(f"{name} must be {low:g}..{high:g}")
    return value


def _start(form: Form) -> str:
    """A datetime-local field is read as UTC (the console shows every time in UTC); empty means now."""
    raw = _text(form, "start", required=False)
    if not raw:
        return "now"
    return raw if raw.endswith("Z") or "+" in raw[10:] else raw + "Z"


def done(message: str, location: str | None = None) -> web.Response:
    """What a form gets back: a line to show, and the page to go to (or a refresh of the current one)."""
    headers = {"HX-Redirect": location} if location else {"HX-Refresh": "true"}
    return web.Response(text=message, content_type="text/plain", headers=headers)


@routes.post(PREFIX + "/login")
@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    opened = await open_session(request, _text(form, "name"), _text(form, "password"), _text(form, "totp"))
    if opened.refusal is not None:
        return opened.refusal
    response = done("logged in", PREFIX + "/fleet")
    set_session_cookie(request, response, opened.secret)
    return response


@routes.post(PREFIX + "/devices/{id}/controls")
@requires(EVENTS)
async def create_export_limit(request: web.Request) -> web.Response:
    """An export-limit DER control in the device's own program (as ``POST /api/v1/controls`` with an LFDI)."""
    form = await request.post()
    device_id = path_id(request, "device")
    new = events.NewEvent(
        start=parse_start(_start(form)),
        duration_s=int(_number(form, "duration_min", 1, 7 * 24 * 60) * 60),
        payload={"base": {"opModExpLimW": int(_number(form, "export_limit_w", 0, 1e9))}},
        description=_text(form, "description", required=False)[:32],
        response_required=3,
    )
    async with runtime(request).store.sessions.begin() as session:
        device = await session.get(EndDevice, device_id)
        if device is None:
            raise NotFound(f"no device {device_id}")
        program = await programs.device_program(session, device)
        control = await events.create(session, program, new)
    note(request).detail = f"control {control.id}"
    return done(f"control {control.id} created")


@routes.post(PREFIX + "/events")
@requires(EVENTS)
async def create_event(request: web.Request) -> web.Response:
    """A DER control (export limit) or demand-response event for a program, as ``POST /api/v1/events``."""
    form = await request.post()
    payload: dict
    async with runtime(request).store.sessions.begin() as session:
        program = await programs.get_program(session, _text(form, "program"), None)
        if program.kind == "der":
            payload = {"base": {"opModExpLimW": int(_number(form, "export_limit_w", 0, 1e9))}}
        elif program.kind == "dr":
            payload = {"level": int(_number(form, "level", 0, 3))}
        else:
            raise Invalid("the console creates events of DER and demand-response programs")
        new = events.NewEvent(
            start=parse_start(_start(form)),
            duration_s=int(_number(form, "duration_min", 1, 7 * 24 * 60) * 60),
            payload=payload,
            description=_text(form, "description", required=False)[:32],
        )
        e = await events.create(session, program, new)
    return done(f"event {e.id} created")


@routes.post(PREFIX + "/events/{id}/cancel")
@requires(EVENTS)
async def cancel_event(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        e = await events.get(session, path_id(request, "event"))
        await events.cancel(session, e)
    return done(f"event {e.id} cancelled")


@routes.post(PREFIX + "/devices")
@requires(ENROL)
async def enrol_device(request: web.Request) -> web.Response:
    form = await request.post()
    pin = _text(form, "pin", required=False)
    if pin and not pin.isdigit():
        raise Invalid("pin must be digits")
    async with runtime(request).store.sessions.begin() as session:
        device = await parties.enroll_device(
            session,
            lfdi=_text(form, "lfdi"),
            pin=int(pin) if pin else None,
            name=_text(form, "name", required=False)[:200],
        )
    return done(f"device {device.id} enrolled", f"{PREFIX}/devices/{device.id}")


@routes.post(PREFIX + "/alarms/{id}/acknowledge")
@requires(ALARMS)
async def acknowledge(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        alarm = await alarms.acknowledge(session, path_id(request, "alarm"), principal(request).actor)
    return done(f"alarm {alarm['id']} acknowledged")


@routes.post(PREFIX + "/grid/{node}/plan")
@requires(EVENTS)
async def plan(request: web.Request) -> web.Response:
    """The node's export-limit plan from its newest forecast (as ``POST /api/v1/plans``); with ``dispatch=1`` the
    operator approves it and its dispatch goes out over every protocol under the node."""
    form = await request.post()
    rt = runtime(request)
    node = request.match_info["node"]
    found = await export_plan(rt.store, node)
    dispatched = None
    if _text(form, "dispatch", required=False) == "1":
        d = found.dispatch(utcnow())
        if d is None:
            raise Invalid("this plan needs no dispatch (nothing to curtail, or its window is over)")
        dispatched = await send_dispatch(rt, node, d)
    return render.page(request, "plan.html", plan=asdict(found), dispatched=dispatched)
