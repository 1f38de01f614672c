"""OAuth2 for the 3.x API: ``GET /auth/server`` names the token endpoint, ``POST /auth/token`` runs the
client-credentials grant (credentials in HTTP Basic or in the form, RFC 6749 2.3.1), and the bearer middleware
turns a token into the request's ``Caller`` once. Each route declares the OAuth2 scope the specification gives it
(``@needs``); a token without it gets 403, no token or a bad or expired one 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from aiohttp import web

from server.core import oadr3_clients as clients
from server.openadr3 import spec
from server.openadr3.http import CALLER, JSON, Handler, problem, runtime
from server.store.types import utcnow

SCOPE_ATTR = "oadr3_scope"
PUBLIC = "public"


def needs(scope: str) -> Callable[[Handler], Handler]:
    """The OAuth2 scope a route needs (the specification's ``security`` of the operation)."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, SCOPE_ATTR, scope)
        return handler

    return mark


def _auth_error(status: int, error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description}
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="openadr3"'
    return web.Response(status=status, text=json.dumps(body), content_type=JSON, headers=headers)


def _basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


@needs(PUBLIC)
async def auth_server(request: web.Request) -> web.Response:
    url = runtime(request).settings.openadr3_url + "/auth/token"
    value = {"tokenURL": url}
    assert not spec.errors("authServerInfo", value)
    return web.Response(text=json.dumps(value), content_type=JSON)


@needs(PUBLIC)
async def token(request: web.Request) -> web.Response:
    rt = runtime(request)
    if request.content_type != "application/x-www-form-urlencoded":
        return _auth_error(400, "invalid_request", "send application/x-www-form-urlencoded")
    try:
        form = urllib.parse.parse_qs((await request.read()).decode(), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _auth_error(400, "invalid_request", "the form cannot be read")
    fields: dict[str, Any] = {k: v[0] for k, v in form.items() if len(v) == 1}
    if any(len(v) > 1 for v in form.values()):
        return _auth_error(400, "invalid_request", "a parameter is repeated")
    basic = _basic(request.headers.get("Authorization", ""))
    if basic is not None:
        if "client_secret" in fields:
            return _auth_error(400, "invalid_request", "give the client credentials once")
        fields.setdefault("client_id", basic[0])
        fields["client_secret"] = basic[1]
    if fields.get("grant_type") != "client_credentials":
        if "grant_type" in fields:
            return _auth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        return _auth_error(400, "invalid_request", "grant_type is missing")
    wrong = spec.errors("clientCredentialRequest", fields)
    if wrong:
        return _auth_error(400, "invalid_request", "; ".join(wrong))
    async with rt.store.sessions() as session:
        client = await clients.client_for_secret(session, fields["client_id"])
    # argon2 is CPU-heavy: off the event loop
    ok = await asyncio.get_running_loop().run_in_executor(
        None, clients.secret_matches, client, fields["client_secret"]
    )
    if not ok or client is None or not client.enabled:
        return _auth_error(401, "invalid_client", "unknown client or wrong secret")
    try:
        scopes = clients.granted_scopes(client.role, fields.get("scope"))
    except clients.InvalidScope as exc:
        return _auth_error(400, "invalid_scope", str(exc))
    async with rt.store.sessions() as session, session.begin():
        client = await session.get(type(client), client.id)
        assert client is not None
        issued, ttl = await clients.issue_token(session, client, scopes, rt.settings.openadr3.token_ttl_s)
    value = {
        "access_token": issued,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": " ".join(sorted(scopes)),
    }
    return web.Response(
        text=json.dumps(value), content_type=JSON, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


@web.middleware
async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The caller of a request: from its bearer token, once; the scope its route declares is checked here."""
    route_handler = getattr(request.match_info, "handler", None)
    wanted = getattr(route_handler, SCOPE_ATTR, None)
    if wanted == PUBLIC or request.match_info.http_exception is not None:
        return await handler(request)
    if wanted is None:  # every route declares its scope; one that does not is closed
        return problem(403, "this route declares no scope")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="openadr3"'}
    if scheme.lower() != "bearer" or not presented.strip() or len(presented) > 4096:
        return problem(401, "a bearer token is required (POST /auth/token)", challenge)
    rt = runtime(request)
    presented = presented.strip()
    version = await rt.cache.token(rt.store.engine)
    async with rt.store.sessions() as session:
        caller = await rt.cache.representation(
            clients.token_key(presented), version, lambda: clients.caller_for_token(session, presented)
        )
    if caller is None or (caller.expires_at is not None and caller.expires_at <= utcnow()):
        return problem(
            401,
            "the bearer token is invalid or has expired",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if wanted not in caller.scopes:
        return problem(403, f"this token lacks the scope {wanted}")
    request[CALLER] = caller
    return await handler(request)


def caller(request: web.Request) -> clients.Caller:
    return request[CALLER]
