"""Zero-trust staff access against the real server: every admin mutation route is refused without a credential,
refused for a role (or token scope) that lacks its action, and audited with the account when allowed; login with
password + TOTP, lockout after repeated failures, sessions that end at logout and at expiry, CSRF, scoped and
expiring API tokens, the bootstrap token, the CLI's `dso login`, security headers."""

from __future__ import annotations

import http.cookies
import inspect
import json
import os
import re
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from support import LiveServer, dso, dso_json

from server.admin import create_admin_app
from server.admin.access import is_public, required_action
from server.config import Settings
from server.core.staff import ACTIONS, OWN, ROLES
from server.runtime import Runtime
from server.store import create_store

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
# long enough that a loaded machine does not end a session or a lock while a test still uses it
SESSION_TTL_S = 15
LOCKOUT_S = 10
MAX_FAILURES = 3


def admin_mutation_routes() -> dict[tuple[str, str], Any]:
    """Every mutating (method, route) of the admin router, with its handler."""
    rt = Runtime(settings=Settings(), store=create_store("sqlite+aiosqlite:///:memory:"))
    app = create_admin_app(rt)
    return {(r.method, r.resource.canonical): r.handler for r in app.router.routes() if r.method in MUTATING}


def test_every_mutation_route_declares_its_action():
    routes = admin_mutation_routes()
    assert len(routes) > 60
    undeclared = [r for r, h in routes.items() if required_action(h, r[0]) is None and not is_public(h)]
    assert undeclared == [], "a mutation route without a required action"
    # the login, and the console's login form (the same check, the same audit)
    assert sorted(r for r, h in routes.items() if is_public(h)) == [
        ("POST", "/api/v1/login"),
        ("POST", "/console/login"),
    ]
    # the access middleware has read the body of a mutation before its handler runs, so a handler asking
    # can_read_body would see none
    assert not [r for r, h in routes.items() if "can_read_body" in inspect.getsource(h)]
    # no role implies another: each grants a set of its own, and only the admin manages staff and reads the audit
    assert set().union(*ROLES.values()) == set(ACTIONS)
    assert [r for r, actions in ROLES.items() if {"staff.manage", "audit.read"} & actions] == ["admin"]


# ------------------------------------------------------------------------------------------------- helpers
@dataclass
class Answer:
    status: int
    headers: Any
    body: Any


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    cookie: str | None = None,
    csrf: str | None = None,
) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"dso_session={cookie}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.info["admin_url"] + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, answer_headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, answer_headers = exc.read(), exc.code, exc.headers
    return Answer(status, answer_headers, json.loads(raw) if raw else None)


def boot(server: LiveServer, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    got = call(server, method, path, body, token=server.info["admin_token"])
    assert got.status == expect, (method, path, got.status, got.body)
    return got.body


def add_account(server: LiveServer, name: str, role: str) -> dict[str, Any]:
    return boot(server, "POST", "/api/v1/staff", {"name": name, "role": role}, expect=201)


def code(account: dict[str, Any], step: int = 0) -> str:
    return pyotp.TOTP(account["totp_secret"]).at(time.time() + 30 * step)


def session_cookie(answer: Answer) -> http.cookies.Morsel:
    jar = http.cookies.SimpleCookie()
    for value in answer.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return jar["dso_session"]


def log_in(server: LiveServer, account: dict[str, Any], second: str | None = None) -> tuple[str, str]:
    got = call(
        server,
        "POST",
        "/api/v1/login",
        {"name": account["name"], "password": account["password"], "totp": second or code(account)},
    )
    assert got.status == 200, got.body
    return session_cookie(got).value, got.body["csrf_token"]


def audit(server: LiveServer, **query: str) -> list[dict[str, Any]]:
    return boot(server, "GET", "/api/v1/audit?" + urllib.parse.urlencode({"limit": "10000", **query}))


def fill(route: str) -> str:
    # an integer where a handler parses one, a name nothing has elsewhere: the request reaches its handler
    return re.sub(r"\{(\w+)\}", lambda m: "999999" if m.group(1) in ("id", "rrid") else "nobody-here", route)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    env = {
        "DSO_ORCHESTRATION__ENABLED": "false",
        "DSO_ADMIN__SESSION_TTL_S": str(SESSION_TTL_S),
        "DSO_ADMIN__LOCKOUT_S": str(LOCKOUT_S),
        "DSO_ADMIN__LOGIN_MAX_FAILURES": str(MAX_FAILURES),
    }
    live = LiveServer(tmp_path_factory.mktemp("staff") / "dso", extra_env=env).init().start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def role_tokens(server) -> dict[str, str]:
    """One account per role, logged in with password + TOTP, each holding a token of every action of its role."""
    tokens = {}
    for role in ROLES:
        account = add_account(server, f"{role}-1", role)
        cookie, csrf = log_in(server, account)
        made = call(server, "POST", "/api/v1/tokens", {"name": "t"}, cookie=cookie, csrf=csrf)
        assert made.status == 201 and set(made.body["scopes"]) == ROLES[role], made.body
        tokens[role] = made.body["token"]
    return tokens


# ------------------------------------------------------------------------------------------------- must-show
def test_every_mutation_route_is_refused_without_credential_or_action_and_audited_when_allowed(
    server, role_tokens
):
    routes = admin_mutation_routes()
    # least-privileged role holding each action: the audit shows several accounts, not only the admin
    holder = {a: next(r for r in ROLES if a in ROLES[r]) for a in ACTIONS}
    own_only = call(
        server,
        "POST",
        "/api/v1/tokens",
        {"name": "read only", "scopes": ["fleet.read"]},
        token=role_tokens["admin"],
    ).body["token"]
    outcomes: dict[tuple[str, str], int] = {}
    for (method, route), handler in sorted(routes.items()):
        path = fill(route)
        if is_public(handler):
            continue
        action = required_action(handler, method)
        # (a) nobody
        got = call(server, method, path, {})
        assert got.status == 401, (method, route, got.status, got.body)
        # (b) every role that lacks the action; and a token whose scopes lack it (self.manage is every role's)
        lacking = [r for r in ROLES if action not in ROLES[r]]
        assert lacking or action == OWN, (method, route)
        for role in lacking:
            got = call(server, method, path, {}, token=role_tokens[role])
            assert got.status == 403 and action in got.body["error"], (method, route, role, got.body)
        if action not in ("fleet.read",):
            got = call(server, method, path, {}, token=own_only)
            assert got.status == 403, (method, route, "read-only token", got.body)
        # (c) the least-privileged role that holds it gets past access (whatever the handler makes of {})
        role = holder[action]
        got = call(server, method, path, {}, token=role_tokens[role])
        assert got.status not in (401, 403), (method, route, role, got.status, got.body)
        outcomes[(method, route)] = got.status
    records = audit(server)
    for (method, route), status in outcomes.items():
        role = holder[required_action(routes[(method, route)], method)]
        mine = [
            r
            for r in records
            if r["actor"] == f"{role}-1"
            and r["method"] == method
            and r["route"] == route
            and r["status"] == status
        ]
        assert mine, (method, route, role, "no audit record naming the account")
        assert mine[-1]["credential"].startswith("token:") and mine[-1]["remote"] == "127.0.0.1"
        refused = [r for r in records if r["method"] == method and r["route"] == route and r["status"] == 401]
        assert refused and refused[-1]["actor"] == "" and refused[-1]["credential"] == "none"


def test_login_with_password_and_totp_session_cookie_and_csrf(server):
    account = add_account(server, "olga", "operator")
    assert account["totp_uri"].startswith("otpauth://totp/OpenDSO:olga?secret=")
    assert account["totp_qr_svg"].startswith("<svg") and "<script" not in account["totp_qr_svg"]
    assert len(account["recovery_codes"]) == 10
    wrong = call(
        server, "POST", "/api/v1/login", {"name": "olga", "password": account["password"], "totp": "000000"}
    )
    assert wrong.status == 401 and "dso_session" not in (wrong.headers.get("Set-Cookie") or "")
    right = call(
        server,
        "POST",
        "/api/v1/login",
        {"name": "olga", "password": account["password"], "totp": code(account)},
    )
    assert right.status == 200, right.body
    morsel = session_cookie(right)
    assert (
        morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    )
    cookie, csrf = morsel.value, right.body["csrf_token"]
    me = call(server, "GET", "/api/v1/session", cookie=cookie)
    assert (me.status, me.body["actor"], me.body["role"], me.body["csrf_token"]) == (
        200,
        "olga",
        "operator",
        csrf,
    )
    # the same TOTP code is good once
    replay = call(
        server,
        "POST",
        "/api/v1/login",
        {"name": "olga", "password": account["password"], "totp": code(account)},
    )
    assert replay.status == 401
    # a mutating request with the cookie alone (a forged cross-site form) is refused; with the CSRF token it passes
    event = {"program": "nobody", "start": "now", "duration_s": 60}
    assert call(server, "POST", "/api/v1/events", event, cookie=cookie).status == 403
    assert call(server, "POST", "/api/v1/events", event, cookie=cookie, csrf="guess").status == 403
    assert call(server, "POST", "/api/v1/events", event, cookie=cookie, csrf=csrf).status not in (401, 403)
    # an operator may not enrol devices, on the server, whatever a page shows
    assert call(server, "POST", "/api/v1/devices", {}, cookie=cookie, csrf=csrf).status == 403
    # a recovery code replaces the TOTP code once
    recovery = account["recovery_codes"][0]
    first = call(
        server, "POST", "/api/v1/login", {"name": "olga", "password": account["password"], "totp": recovery}
    )
    again = call(
        server, "POST", "/api/v1/login", {"name": "olga", "password": account["password"], "totp": recovery}
    )
    assert (first.status, again.status) == (200, 401)
    # secrets never reach the audit log
    call(
        server,
        "POST",
        "/api/v1/session/password",
        {"password": "not-it", "new_password": "x" * 16},
        cookie=cookie,
        csrf=csrf,
    )
    rows = audit(server, actor="olga")
    assert [r["event"] for r in rows][:3] == ["login.failed", "login", "login.failed"]
    assert all(account["password"] not in json.dumps(r) and recovery not in json.dumps(r) for r in rows)
    changed = [r for r in rows if r["route"] == "/api/v1/session/password"][-1]
    assert (
        changed["summary"] == {"password": "[redacted]", "new_password": "[redacted]"}
        and changed["status"] == 400
    )
    assert [r["summary"] for r in rows if r["event"] == "login"][0]["password"] == "[redacted]"


def test_repeated_failed_logins_lock_the_account_and_are_audited(server):
    account = add_account(server, "brute", "viewer")
    statuses = [
        call(
            server, "POST", "/api/v1/login", {"name": "brute", "password": f"guess-{i}", "totp": "123456"}
        ).status
        for i in range(MAX_FAILURES + 2)
    ]
    assert statuses == [401] * (MAX_FAILURES - 1) + [429] * 3
    # locked: even the right password and code are refused, and the code is not spent
    good = {"name": "brute", "password": account["password"], "totp": code(account)}
    locked = call(server, "POST", "/api/v1/login", good)
    assert locked.status == 429 and int(locked.headers["Retry-After"]) <= LOCKOUT_S
    rows = audit(server, actor="brute")
    assert [r["event"] for r in rows] == ["login.failed"] * (MAX_FAILURES - 1) + ["login.locked"] * 4
    assert all(r["remote"] == "127.0.0.1" and r["method"] == "POST" for r in rows)
    assert "locked after 3 failures" in rows[MAX_FAILURES - 1]["detail"]
    listed = {a["name"]: a for a in boot(server, "GET", "/api/v1/staff")}
    assert listed["brute"]["locked_until"] is not None
    time.sleep(LOCKOUT_S + 0.5)
    assert call(server, "POST", "/api/v1/login", good).status == 200


def test_a_stolen_session_cookie_stops_working_after_logout_and_after_expiry(server):
    account = add_account(server, "sam", "viewer")
    cookie, csrf = log_in(server, account)
    assert call(server, "GET", "/api/v1/devices", cookie=cookie).status == 200
    out = call(server, "POST", "/api/v1/logout", {}, cookie=cookie, csrf=csrf)
    assert out.status == 200 and 'dso_session=""' in out.headers["Set-Cookie"]
    after = call(server, "GET", "/api/v1/devices", cookie=cookie)
    assert after.status == 401 and "ended or expired" in after.body["error"]
    cookie, _ = log_in(server, account, second=code(account, 1))
    assert call(server, "GET", "/api/v1/devices", cookie=cookie).status == 200
    time.sleep(SESSION_TTL_S + 0.5)
    assert call(server, "GET", "/api/v1/devices", cookie=cookie).status == 401
    events = [r["event"] for r in audit(server, actor="sam")]
    assert events[:2] == ["login", "logout"] and events.count("auth.failed") == 2


def test_api_tokens_have_scopes_expiry_and_die_with_their_account(server):
    account = add_account(server, "eve", "engineer")
    cookie, csrf = log_in(server, account)

    def token(body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        made = call(server, "POST", "/api/v1/tokens", body, cookie=cookie, csrf=csrf)
        assert made.status == expect, made.body
        return made.body

    reader = token({"name": "reader", "scopes": ["fleet.read"]})["token"]
    assert reader.startswith("dso_")
    assert call(server, "GET", "/api/v1/devices", token=reader).status == 200
    refused = call(server, "POST", "/api/v1/grid/nodes", {"name": "n1"}, token=reader)
    assert refused.status == 403 and "grid.write" in refused.body["error"]
    # no more than the role: an engineer cannot mint a staff-managing token; nor one living past the maximum
    assert "staff.manage" in token({"scopes": ["staff.manage"]}, expect=400)["error"]
    assert token({"expires_in_s": 200 * 86_400}, expect=400)["error"].startswith("a token lives at most")
    short = token({"name": "short", "expires_in_s": 2})["token"]
    assert (
        call(server, "POST", "/api/v1/grid/nodes", {"name": "n2", "kind": "feeder"}, token=short).status
        == 201
    )
    time.sleep(2.5)
    assert call(server, "GET", "/api/v1/devices", token=short).status == 401
    # revoked, and the account disabled: a token stops at once
    full = token({"name": "full"})
    assert call(server, "DELETE", f"/api/v1/tokens/{full['id']}", token=full["token"]).status == 200
    assert call(server, "GET", "/api/v1/devices", token=full["token"]).status == 401
    other = token({"name": "other"})["token"]
    boot(server, "POST", "/api/v1/staff/eve/disable")
    assert call(server, "GET", "/api/v1/devices", token=other).status == 401
    assert call(server, "GET", "/api/v1/devices", cookie=cookie).status == 401
    uses = [r for r in audit(server, actor="eve") if r["event"] == "token.use"]
    assert {r["path"] for r in uses} >= {"/api/v1/devices"} and all(
        r["credential"].startswith("token:") for r in uses
    )
    nodes = [
        r for r in audit(server, actor="eve") if r["route"] == "/api/v1/grid/nodes" and r["status"] == 201
    ]
    assert nodes and nodes[0]["summary"] == {"name": "n2", "kind": "feeder"}


def test_audit_is_paged_in_sql_and_filtered_by_time(server):
    rows = audit(server)
    assert len(rows) > 10
    page = call(server, "GET", "/api/v1/audit?offset=2&limit=3", token=server.info["admin_token"])
    assert int(page.headers["X-Total-Count"]) >= len(rows) and [r["id"] for r in page.body] == [
        r["id"] for r in rows[2:5]
    ]
    later = rows[-3]["at"]
    since = audit(server, since=later)
    assert since and all(r["at"] >= later for r in since) and len(since) < len(rows)
    # the application has no route that changes or removes a record
    for method in ("PUT", "PATCH", "DELETE"):
        assert call(server, method, "/api/v1/audit", {}, token=server.info["admin_token"]).status == 405
    # bootstrap changes are named as such
    assert any(r["actor"] == "bootstrap" and r["route"] == "/api/v1/staff" for r in rows)


def test_security_headers_on_every_answer(server):
    for answer in (
        call(server, "GET", "/api/v1/devices"),
        call(server, "GET", "/api/v1/devices", token=server.info["admin_token"]),
        call(server, "GET", "/api/v1/no-such", token=server.info["admin_token"]),
    ):
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"


def test_cli_staff_login_and_audit(server, tmp_path):
    env = {"DSO_CREDENTIALS": str(tmp_path / "creds" / "credentials.json")}

    def cli(*args: str, **kw: Any):
        return dso(*args, "-c", server.config, env=env, **kw)

    made = dso_json("staff", "add", "carl", "--role", "operator", "--json", "-c", server.config, env=env)
    assert made["role"] == "operator" and made["password"] and made["totp_secret"]
    qr = tmp_path / "dora.svg"
    human = cli("staff", "add", "dora", "--role", "viewer", "--qr", str(qr)).stdout
    assert "password" in human and "TOTP secret" in human and "shown this once" in human.lower()
    assert qr.read_text().startswith("<svg") and stat.S_IMODE(os.stat(qr).st_mode) == 0o600
    login = cli(
        "login", "--name", "carl", "--password-stdin", "--totp", code(made), stdin=made["password"] + "\n"
    )
    assert "logged in as carl" in login.stdout
    stored = tmp_path / "creds" / "credentials.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stored.parent).st_mode) == 0o700
    # the CLI now acts as carl: an operator reads, and may not enrol a device
    cli("status")
    refused = cli("device", "enroll", "--lfdi", "AB" * 20, check=False)
    assert refused.returncode == 1 and "403" in refused.stderr and "devices.enrol" in refused.stderr
    rows = [r for r in audit(server, actor="carl")]
    assert {r["event"] for r in rows} >= {"login", "logout", "token.use"}
    assert any(r["route"] == "/api/v1/devices" and r["status"] == 403 for r in rows)
    listed = dso_json(
        "staff", "list", "--json", "-c", server.config, env=env | {"DSO_CREDENTIALS": str(tmp_path / "none")}
    )
    assert {"carl", "dora"} <= {a["name"] for a in listed}
    shown = dso_json(
        "audit",
        "--since",
        "10m",
        "--json",
        "-c",
        server.config,
        env=env | {"DSO_CREDENTIALS": str(tmp_path / "none")},
    )
    assert any(r["actor"] == "carl" for r in shown)
    assert (
        "carl"
        in dso(
            "audit", "--since", "1h", "-c", server.config, env={"DSO_CREDENTIALS": str(tmp_path / "none")}
        ).stdout
    )
    # carl's token cannot read the audit log
    assert cli("audit", check=False).returncode == 1
    cli("logout")
    assert json.loads(stored.read_text()) == {}
    disabled = dso_json("staff", "disable", "dora", "--json", "-c", server.config)
    assert disabled["disabled"] is True


def test_the_bootstrap_token_can_be_disabled(tmp_path):
    live = (
        LiveServer(
            tmp_path / "dso",
            extra_env={"DSO_ORCHESTRATION__ENABLED": "false", "DSO_ADMIN__BOOTSTRAP_TOKEN_ENABLED": "false"},
        )
        .init()
        .start()
    )
    try:
        got = call(live, "GET", "/api/v1/devices", token=live.info["admin_token"])
        assert got.status == 401 and "bootstrap_token_enabled" in got.body["error"]
        assert (
            call(
                live, "POST", "/api/v1/staff", {"name": "x1", "role": "admin"}, token=live.info["admin_token"]
            ).status
            == 401
        )
    finally:
        live.stop()
