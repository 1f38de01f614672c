"""``dso oadr3``: the OAuth2 clients of the OpenADR 3.1 API (VENs and business-logic clients)."""

from __future__ import annotations

import argparse
import urllib.parse

from server.choices import OADR3_ROLES
from server.cli.common import add_config_arg, add_json_arg, admin, emit

OADR3_PARTY = "oadr3:"  # a 3.x VEN's fingerprint column (server.core.oadr3.fingerprint_of)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("oadr3", help="OpenADR 3.1: OAuth2 clients of VENs and business-logic systems")
    osub = p.add_subparsers(dest="oadr3_command", metavar="KIND", required=True, parser_class=type(p))
    client = osub.add_parser("client", help="OAuth2 clients (client id and secret)")
    csub = client.add_subparsers(dest="client_command", metavar="ACTION", required=True, parser_class=type(p))
    c = csub.add_parser("create", help="a new client; prints its client id and secret (shown this once)")
    c.add_argument("name")
    c.add_argument("--role", choices=list(OADR3_ROLES), required=True, help="ven: a VEN; bl: business logic")
    add_config_arg(c)
    add_json_arg(c)
    c.set_defaults(func=cmd_create)
    c = csub.add_parser("list", help="every client (secrets are never shown again)")
    add_config_arg(c)
    add_json_arg(c)
    c.set_defaults(func=cmd_list)
    for name, enabled in (("disable", False), ("enable", True)):
        c = csub.add_parser(
            name, help=f"{name} a client" + (" (its tokens stop working)" if not enabled else "")
        )
        c.add_argument("name")
        add_config_arg(c)
        add_json_arg(c)
        c.set_defaults(func=cmd_enable, enabled=enabled)
    ven = osub.add_parser("ven", help="the VENs 3.x clients registered")
    vsub = ven.add_subparsers(dest="ven_command", metavar="ACTION", required=True, parser_class=type(p))
    c = vsub.add_parser("list", help="3.x VENs: their 3.x id (venID in the API), name and telemetry venID")
    add_config_arg(c)
    add_json_arg(c)
    c.set_defaults(func=cmd_vens)


def cmd_create(args: argparse.Namespace) -> int:
    row = admin(args).call("POST", "/api/v1/oadr3/clients", {"name": args.name, "role": args.role})
    emit(
        args,
        row,
        f"client {row['name']} ({row['role']})\nclient_id     {row['client_id']}\nclient_secret "
        f"{row['client_secret']}   (shown once: store it now)\ntoken URL     {row['token_url']}",
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", "/api/v1/oadr3/clients")
    lines = [
        f"{r['name']:30} {r['role']:4} {r['client_id']:32} {'enabled' if r['enabled'] else 'disabled'}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no OpenADR 3 clients")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    path = "/api/v1/oadr3/clients/" + urllib.parse.quote(args.name, safe="")
    row = admin(args).call("PATCH", path, {"enabled": args.enabled})
    emit(args, row, f"client {row['name']} {'enabled' if row['enabled'] else 'disabled'}")
    return 0


def cmd_vens(args: argparse.Namespace) -> int:
    rows = [v for v in admin(args).call("GET", "/api/v1/vens") if v["fingerprint"].startswith(OADR3_PARTY)]
    lines = [f"{v['id']:>6} {v['name']:30} {v['ven_id']}" for v in rows]
    emit(args, rows, "\n".join(lines) or "no OpenADR 3 VENs")
    return 0
