"""Who may call the admin API, and the record of what they did.

Every route declares the action it needs next to its handler (``@requires(ACTION)``; reads default to
``fleet.read``, a mutation without a declaration is refused); ``@public`` marks the login, the one route that
needs no credential. The access middleware authenticates (an API token or the bootstrap token as a bearer token, or
a session cookie), authorises, demands the CSRF token of a session on mutating requests, and writes the audit
record of every mutating request, every login and logout, every use of an API token and every refused
credential, with the outcome status."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from server.admin.common import reply, runtime
from server.core import audit, staff
from server.core.staff import Principal
from server.observability import Handler

log = logging.getLogger("dso.admin")

F = TypeVar("F", bound=Callable[..., Any])
ACTION_ATTR = "dso_required_action"
PUBLIC_ATTR = "dso_public"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_COOKIE = "dso_session"
CSRF_HEADER = "X-CSRF-Token"
CONSOLE_PREFIX = "/console/"
# answered to anyone: load balancers look here
OPEN_PATHS = frozenset({"/healthz"})


def requires(action: str) -> Callable[[F], F]:
    """Declare the action a route's handler needs (put it below the route decorator)."""
    if action not in staff.ACTIONS:
        raise ValueError(f"unknown action {action!r}")

    def mark(handler: F) -> F:
        setattr(handler, ACTION_ATTR, action)
        return handler

    return mark


def public(handler: F) -> F:
    """A route that needs no credential (the login itself)."""
    setattr(handler, PUBLIC_ATTR, True)
    return handler


def required_action(handler: Any, method: str) -> str | None:
    """The action a handler declared; reads default to ``fleet.read``; None for an undeclared mutation."""
    declared = getattr(handler, ACTION_ATTR, None)
    if declared is not None:
        return str(declared)
    return staff.READ if method in ("GET", "HEAD") else None


def is_public(handler: Any) -> bool:
    return bool(getattr(handler, PUBLIC_ATTR, False))


@dataclass
class AuditNote:
    """What a handler adds to its request's audit record (the login names the account it was for)."""

    event: str = ""
    actor: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


PRINCIPAL = web.RequestKey("principal", Principal)
AUDIT_NOTE = web.RequestKey("audit_note", AuditNote)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def note(request: web.Request) -> AuditNote:
    return request[AUDIT_NOTE]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Refusal:
    """Why an offered credential was refused, and whose it was when that is known."""

    reason: str = ""
    owner: str = ""


async def _authenticate(request: web.Request) -> tuple[Principal | None, Refusal]:
    """The request's principal, or None with why a credential that was offered is refused (empty when none was)."""
    rt = runtime(request)
    header = request.headers.get("Authorization", "")
    if header:
        given = header[7:].strip() if header.startswith("Bearer ") else ""
        bootstrap = rt.settings.admin.token
        if bootstrap and given and hmac.compare_digest(given.encode(), bootstrap.encode()):
            if not rt.settings.admin.bootstrap_token_enabled:
                return None, Refusal(
                    "the bootstrap token is disabled (admin.bootstrap_token_enabled)", "bootstrap"
                )
            return staff.bootstrap_principal(), Refusal()
        if given.startswith(staff.TOKEN_PREFIX):
            async with rt.store.sessions.begin() as session:
                found = await staff.token_principal(session, given, now())
                owner = "" if found else await staff.credential_owner(session, given, is_token=True)
            if found is not None:
                return found, Refusal()
            return None, Refusal("unknown, expired or revoked API token", owner)
        return None, Refusal("missing or wrong admin bearer token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with rt.store.sessions() as session:
            found = await staff.session_principal(session, cookie, now())
            owner = "" if found else await staff.credential_owner(session, cookie, is_token=False)
        if found is not None:
            return found, Refusal()
        return None, Refusal("the session has ended or expired; log in again", owner)
    return None, Refusal()


async def _summary(request: web.Request) -> dict[str, Any] | None:
    if request.method not in MUTATING or not request.body_exists:
        return None
    try:
        # cached: the handler reads the same bytes (but ``can_read_body`` is False from here on: handlers ask
        # ``body_exists``)
        raw = await request.read()
    except web.HTTPException:
        return {"unread": "body too large"}
    if not raw:
        return None
    if request.content_type == "application/json" or raw[:1] in (b"{", b"["):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return {"bytes": len(raw), "content_type": request.content_type}
        redacted = audit.redact(body)
        return redacted if isinstance(redacted, dict) else {"body": redacted}
    return {"bytes": len(raw), "content_type": request.content_type}


def _refuse(status: int, message: str) -> web.Response:
    return reply({"error": message}, status)


async def _decide(
    request: web.Request, handler: Handler, who: Principal | None, failure: str
) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # no such route or method: say so to those who may ask
        return (
            await handler(request) if who is not None else _refuse(401, failure or "authentication required")
        )
    route_handler = match.route.handler
    if is_public(route_handler):
        return await handler(request)
    if who is None:
        if request.method == "GET" and request.path.startswith(CONSOLE_PREFIX):
            # a person at a browser: to the login form (the console's data routes answer the same way)
            return web.Response(status=303, headers={"Location": CONSOLE_PREFIX + "login"})
        return _refuse(401, failure or "missing or wrong admin bearer token, and no session")
    action = required_action(route_handler, request.method)
    if action is None:  # fail closed: a mutation nobody declared an action for is nobody's to make
        return _refuse(403, "this route declares no required action")
    if action not in who.actions:
        return _refuse(403, f"{who.actor} ({who.role or who.credential}) may not {action}")
    if who.csrf is not None and request.method in MUTATING:
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), who.csrf.encode()):
            return _refuse(403, f"a request made with a session cookie needs its {CSRF_HEADER} header")
    return await handler(request)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    who, failure = await _authenticate(request)
    if who is not None:
        request[PRINCIPAL] = who
    request[AUDIT_NOTE] = AuditNote()
    summary = await _summary(request)
    status = 500
    try:
        response = await _decide(request, handler, who, failure.reason)
        status = response.status
        return response
    finally:
        await _audit(request, who, failure, summary, status)


async def _audit(
    request: web.Request, who: Principal | None, failure: Refusal, summary: dict[str, Any] | None, status: int
) -> None:
    extra = request[AUDIT_NOTE]
    token_use = who is not None and who.credential.startswith("token:")
    if not (request.method in MUTATING or failure.reason or token_use or extra.event):
        return
    event = extra.event or ("auth.failed" if failure.reason else "token.use" if token_use else "request")
    route = request.match_info.route.resource
    try:
        async with runtime(request).store.sessions.begin() as session:
            audit.record(
                session,
                event=event,
                actor=extra.actor or (who.actor if who else failure.owner),
                credential=who.credential if who else "none",
                method=request.method,
                route=route.canonical if route is not None else "unmatched",
                path=request.path_qs,
                summary=summary,
                status=status,
                detail=extra.detail or failure.reason,
                remote=request.remote or "",
            )
    except Exception:  # the answer is already decided; a lost record must be loud in the log
        log.exception("audit record not written: %s %s by %s", request.method, request.path, who)


# ---------------------------------------------------------------------------------------------- web security
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer of the admin listener, errors included (an on_response_prepare signal)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
