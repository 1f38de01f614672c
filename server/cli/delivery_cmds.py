"""``dso deliveries list``: notification / push delivery status."""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deliveries", help="outbound notification and push delivery status")
    dsub = p.add_subparsers(dest="deliveries_command", metavar="ACTION", required=True, parser_class=type(p))
    p = dsub.add_parser("list", help="newest first")
    p.add_argument("--status", choices=["pending", "delivered", "failed"])
    p.add_argument("--channel", help="e.g. sep2-notification, openadr-push")
    p.add_argument("--key", help="one subscription / VEN")
    p.add_argument("--limit", type=int, default=100)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    query = {
        k: v
        for k, v in (
            ("status", args.status),
            ("channel", args.channel),
            ("key", args.key),
            ("limit", str(args.limit)),
        )
        if v
    }
    rows = admin(args).call("GET", "/api/v1/deliveries?" + urllib.parse.urlencode(query))
    lines = [
        f"{r['id']:>6} {r['status']:9} {r['attempts']:>3}x {r['channel']:18} {r['url']} {r['last_error']}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no deliveries")
    return 0
