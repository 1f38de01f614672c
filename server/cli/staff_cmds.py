"""``dso staff``, ``dso login``/``logout`` and ``dso audit``: staff accounts, the CLI's own API token, and the
record of who did what."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import http.cookies
import os
import socket
import sys
import urllib.parse

from server.cli.common import (
    CliError,
    add_config_arg,
    add_json_arg,
    admin,
    emit,
    load_credentials,
    save_credentials,
)
from server.cli.durations import seconds

ROLES = ("viewer", "operator", "engineer", "admin")
SESSION_COOKIE = "dso_session"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("staff", help="staff accounts (roles: viewer, operator, engineer, admin)")
    ssub = p.add_subparsers(dest="staff_command", metavar="ACTION", required=True, parser_class=type(p))
    p = ssub.add_parser("add", help="create an account; prints its first password and TOTP secret once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--qr", metavar="PATH", help="also write the TOTP QR code as SVG to PATH (mode 0600)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_add)
    p = ssub.add_parser("list", help="every account, its role and state")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = ssub.add_parser("disable", help="disable an account: its sessions and tokens stop working at once")
    p.add_argument("name")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_disable)

    p = sub.add_parser(
        "login", help="log in as a staff account and keep an API token for this CLI (mode 0600)"
    )
    p.add_argument("--name", help="account name (default: asked)")
    p.add_argument(
        "--totp", metavar="CODE", help="the authenticator's code or a recovery code (default: asked)"
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--expires", type=seconds, default=None, help="token lifetime, e.g. 8h or 30d")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_login)
    p = sub.add_parser("logout", help="revoke the token `dso login` stored for this server and forget it")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser(
        "audit", help="the audit log: who changed what, when, from where; logins and token use"
    )
    p.add_argument("--since", help="ISO 8601 time, or a duration back from now (15m, 24h, 7d)")
    p.add_argument("--actor", help="one account (or 'bootstrap')")
    p.add_argument(
        "--event", help="request, login, login.failed, login.locked, logout, token.use, auth.failed"
    )
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--offset", type=int, default=0)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_audit)


def cmd_add(args: argparse.Namespace) -> int:
    a = admin(args).call("POST", "/api/v1/staff", {"name": args.name, "role": args.role})
    if args.qr:
        fd = os.open(args.qr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(a["totp_qr_svg"])
    shown = {k: v for k, v in a.items() if k != "totp_qr_svg"}
    human = "\n".join(
        [
            f"staff account {a['name']} ({a['role']}) created. Shown this once, hand it over in person:",
            f"  password        {a['password']}",
            f"  TOTP secret     {a['totp_secret']}",
            f"  TOTP URI        {a['totp_uri']}",
            "  recovery codes  " + " ".join(a["recovery_codes"]),
            *([f"  QR code         {args.qr}"] if args.qr else []),
        ]
    )
    emit(args, shown, human)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", "/api/v1/staff")
    lines = [
        f"{r['name']:24} {r['role']:9} "
        + (
            "disabled"
            if r["disabled"]
            else f"locked until {r['locked_until']}"
            if r["locked_until"]
            else "active"
        )
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no staff accounts (the bootstrap token creates the first admin)")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    row = admin(args).call("POST", f"/api/v1/staff/{urllib.parse.quote(args.name)}/disable")
    emit(args, row, f"staff account {row['name']} disabled")
    return 0


def _ask(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()


def cmd_login(args: argparse.Namespace) -> int:
    client = admin(args)
    client.exchange(
        "GET", "/healthz", bearer=False
    )  # a server that is down is said before a password is asked
    name = args.name or _ask("name: ")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    code = args.totp or _ask("code: ")
    answer, headers = client.exchange(
        "POST", "/api/v1/login", {"name": name, "password": password, "totp": code}, bearer=False
    )
    cookies = http.cookies.SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        cookies.load(value)
    if SESSION_COOKIE not in cookies:
        raise CliError("the server answered the login without a session")
    session = {
        "Cookie": f"{SESSION_COOKIE}={cookies[SESSION_COOKIE].value}",
        "X-CSRF-Token": answer["csrf_token"],
    }
    body: dict[str, object] = {"name": f"dso login on {socket.gethostname()}"}
    if args.expires:
        body["expires_in_s"] = args.expires
    try:
        token, _ = client.exchange("POST", "/api/v1/tokens", body, headers=session, bearer=False)
    finally:
        client.exchange("POST", "/api/v1/logout", {}, headers=session, bearer=False)
    stored = load_credentials()
    stored[client.base] = {
        "token": token["token"],
        "id": token["id"],
        "account": name,
        "expires_at": token["expires_at"],
    }
    path = save_credentials(stored)
    view = {k: v for k, v in token.items() if k != "token"} | {"account": name, "file": str(path)}
    emit(args, view, f"logged in as {name}; token {token['id']} until {token['expires_at']} kept in {path}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    client = admin(args)
    client.exchange("GET", "/healthz", bearer=False)
    stored = load_credentials()
    mine = stored.pop(client.base, None)
    if mine is None:
        raise CliError(f"no `dso login` token for {client.base}")
    client.call("DELETE", f"/api/v1/tokens/{mine['id']}")
    save_credentials(stored)
    emit(args, {"revoked": mine["id"]}, f"token {mine['id']} of {mine['account']} revoked and forgotten")
    return 0


def since_value(text: str) -> str:
    """An ISO time as given, or a duration back from now as an ISO time."""
    if text[:1].isdigit() and not any(c in text for c in "-:T"):
        try:
            back = seconds(text)
        except argparse.ArgumentTypeError as exc:
            raise CliError(str(exc)) from None
        return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=back)).isoformat()
    return text


def cmd_audit(args: argparse.Namespace) -> int:
    query = {
        k: v
        for k, v in (
            ("since", since_value(args.since) if args.since else None),
            ("actor", args.actor),
            ("event", args.event),
            ("limit", str(args.limit)),
            ("offset", str(args.offset)),
        )
        if v
    }
    rows = admin(args).call("GET", "/api/v1/audit?" + urllib.parse.urlencode(query))
    lines = [
        f"{r['at'][:19]} {r['actor'] or '-':16} {r['event']:12} {r['method']:6} {r['path'][:60]:60} {r['status']} "
        f"{r['remote']} {r['detail']}".rstrip()
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no audit records")
    return 0
