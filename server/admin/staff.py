"""Staff access: login and logout (a session cookie), the caller's own session and API tokens, staff accounts,
and the audit log (/api/v1/audit)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.admin.access import (
    CSRF_HEADER,
    SESSION_COOKIE,
    note,
    now,
    principal,
    public,
    requires,
)
from server.admin.common import (
    field,
    json_body,
    list_reply,
    optional_time,
    parse_time,
    path_id,
    reply,
    runtime,
    window,
)
from server.core import audit, staff
from server.core.errors import Invalid

routes = web.RouteTableDef()


@dataclass
class Opened:
    """A login's outcome: the refusal to answer with, or the new session (its secret goes in the cookie)."""

    refusal: web.Response | None = None
    secret: str = ""
    csrf_token: str = ""
    expires_at: dt.datetime | None = None
    account: dict[str, Any] | None = None


async def open_session(request: web.Request, name: str, password: str, code: str) -> Opened:
    """Check password and second factor (a TOTP code or a recovery code) with throttling and lockout, and start
    a session; the login route and the console's login form both come here (and are audited as logins)."""
    rt = runtime(request)
    admin = rt.settings.admin
    at = now()
    remark = note(request)
    remark.actor = name[:64]
    async with rt.store.sessions.begin() as session:
        outcome = await staff.login(
            session, name, password, code, at, admin.login_max_failures, admin.lockout_s
        )
        if outcome.account is None:
            remark.event = "login.locked" if outcome.locked else "login.failed"
            remark.detail = outcome.reason
            if outcome.locked:
                retry = max(1, int(((outcome.locked_until or at) - at).total_seconds()))
                return Opened(
                    reply(
                        {
                            "error": "too many failed logins: the account is locked for now",
                            "retry_after_s": retry,
                        },
                        429,
                        headers={"Retry-After": str(retry)},
                    )
                )
            return Opened(reply({"error": "wrong name, password or code"}, 401))
        secret, row = await staff.start_session(
            session, outcome.account, at, admin.session_ttl_s, request.remote or ""
        )
        account = staff.account_view(outcome.account)
    remark.event = "login"
    return Opened(None, secret, row.csrf_token, row.expires_at, account)


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    """The session cookie: HttpOnly, Secure, SameSite=Strict, for as long as the session lasts."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=runtime(request).settings.admin.session_ttl_s,
        path="/",
        httponly=True,
        secure=True,
        samesite="Strict",
    )


@routes.post("/api/v1/login")
@public
async def login(request: web.Request) -> web.Response:
    """Password and second factor (a TOTP code or a recovery code): a session cookie (HttpOnly, Secure,
    SameSite=Strict) and the CSRF token its mutating requests must carry."""
    body = await json_body(request)
    opened = await open_session(
        request, field(body, "name", str), field(body, "password", str), field(body, "totp", str)
    )
    if opened.refusal is not None:
        return opened.refusal
    response = reply(
        {
            "account": opened.account,
            "csrf_token": opened.csrf_token,
            "expires_at": opened.expires_at,
            "csrf_header": CSRF_HEADER,
        }
    )
    set_session_cookie(request, response, opened.secret)
    return response


@routes.post("/api/v1/logout")
@requires(staff.OWN)
async def logout(request: web.Request) -> web.Response:
    who = principal(request)
    note(request).event = "logout"
    if who.session_digest is None:
        raise Invalid("logout ends a session; this request was made with a token (revoke it instead)")
    async with runtime(request).store.sessions.begin() as session:
        await staff.end_session(session, who.session_digest, now())
    response = reply({"ended": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/api/v1/session")
@requires(staff.OWN)
async def whoami(request: web.Request) -> web.Response:
    """Who the caller is, what it may do, and (for a session) its CSRF token."""
    who = principal(request)
    return reply(
        {
            "actor": who.actor,
            "role": who.role,
            "credential": who.credential,
            "actions": sorted(who.actions),
            "expires_at": who.expires_at,
            "csrf_token": who.csrf,
        }
    )


@routes.post("/api/v1/session/password")
@requires(staff.OWN)
async def change_password(request: web.Request) -> web.Response:
    body = await json_body(request)
    who = principal(request)
    if who.account_id is None:
        raise Invalid("the bootstrap credential has no password")
    async with runtime(request).store.sessions.begin() as session:
        await staff.set_password(
            session, who.account_id, field(body, "password", str), field(body, "new_password", str)
        )
    return reply({"changed": True})


@routes.post("/api/v1/tokens")
@requires(staff.OWN)
async def create_token(request: web.Request) -> web.Response:
    """An API token of the caller's account: ``scopes`` (default every action of the role), ``expires_at`` or
    ``expires_in_s`` (default and at most ``admin.token_max_days``)."""
    body = await json_body(request)
    rt = runtime(request)
    at = now()
    max_days = rt.settings.admin.token_max_days
    scopes = field(body, "scopes", list, required=False)
    if scopes is not None and not all(isinstance(s, str) for s in scopes):
        raise Invalid("scopes must be a list of action names")
    if body.get("expires_at") is not None:
        expires = parse_time(body["expires_at"], "expires_at", allow_now=False)
    else:
        seconds = field(body, "expires_in_s", int, required=False, default=max_days * 86_400)
        expires = at + dt.timedelta(seconds=seconds)
    async with rt.store.sessions.begin() as session:
        token = await staff.create_token(
            session,
            principal(request),
            field(body, "name", str, required=False, default=""),
            scopes,
            expires,
            at,
            max_days,
        )
    return reply(token, 201)


@routes.get("/api/v1/tokens")
@requires(staff.OWN)
async def list_tokens(request: web.Request) -> web.Response:
    who = principal(request)
    if who.account_id is None:
        return reply([])
    async with runtime(request).store.sessions() as session:
        return reply(await staff.list_tokens(session, who.account_id))


@routes.delete("/api/v1/tokens/{id}")
@requires(staff.OWN)
async def revoke_token(request: web.Request) -> web.Response:
    who = principal(request)
    token_id = path_id(request, "token")
    if who.account_id is None:
        raise Invalid("the bootstrap credential has no tokens")
    async with runtime(request).store.sessions.begin() as session:
        return reply(await staff.revoke_token(session, who.account_id, token_id, now()))


@routes.post("/api/v1/staff")
@requires(staff.STAFF)
async def create_account(request: web.Request) -> web.Response:
    """The answer carries the first password, the TOTP secret and its otpauth:// URI, and the recovery codes:
    shown this once, never stored in the clear."""
    body = await json_body(request)
    async with runtime(request).store.sessions.begin() as session:
        account = await staff.create_account(
            session, field(body, "name", str), field(body, "role", str), principal(request).actor
        )
    return reply(account, 201)


@routes.get("/api/v1/staff")
@requires(staff.STAFF)
async def list_accounts(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions() as session:
        return reply(await staff.list_accounts(session))


@routes.post("/api/v1/staff/{name}/disable")
@requires(staff.STAFF)
async def disable_account(request: web.Request) -> web.Response:
    async with runtime(request).store.sessions.begin() as session:
        return reply(await staff.disable_account(session, request.match_info["name"], now()))


@routes.get("/api/v1/audit")
@requires(staff.AUDIT)
async def audit_log(request: web.Request) -> web.Response:
    """Oldest first from ``since`` (ISO 8601), paged (``offset``/``limit``, ``X-Total-Count``); ``actor`` and
    ``event`` filter."""
    win = window(request, default_limit=1000)
    since = optional_time(request.query.get("since"), "since")
    async with runtime(request).store.sessions() as session:
        rows, total = await audit.page(
            session,
            since,
            win.offset,
            win.limit,
            actor=request.query.get("actor") or None,
            event=request.query.get("event") or None,
        )
    return list_reply(rows, total)
