"""``dso deliveries``: the delivery outbox of every channel (2030.5 notifications, OpenADR messages for VENs)."""

from __future__ import annotations

import argparse
import urllib.parse

from server.choices import DELIVERY_STATUSES
from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deliveries", help="outbound notification and OpenADR message delivery")
    dsub = p.add_subparsers(dest="deliveries_command", metavar="ACTION", required=True, parser_class=type(p))
    p = dsub.add_parser("list", help="messages, newest first (failed = dead letters)")
    p.add_argument("--status", choices=list(DELIVERY_STATUSES))
    p.add_argument("--channel", help="e.g. sep2-notification, openadr, modbus")
    p.add_argument("--key", help="one subscription (sep2-sub:ID) or VEN (openadr-ven:ID)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--before", type=int, help="page on: only messages older than this id")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = dsub.add_parser("channels", help="messages per channel and status")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_channels)
    p = sub.add_parser("rate-limits", help="clients the protocol listener is answering 429 (request budgets)")
    p.add_argument("--within", type=float, default=60, help="seconds to look back (default 60)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_rate_limits)
    p = dsub.add_parser("requeue", help="give a dead letter (failed) a fresh set of attempts")
    p.add_argument("id", type=int)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_requeue)


def cmd_list(args: argparse.Namespace) -> int:
    query = {
        k: v
        for k, v in (
            ("status", args.status),
            ("channel", args.channel),
            ("key", args.key),
            ("limit", str(args.limit)),
            ("before", str(args.before) if args.before else None),
        )
        if v
    }
    rows = admin(args).call("GET", "/api/v1/deliveries?" + urllib.parse.urlencode(query))
    lines = [
        f"{r['id']:>6} {r['status']:9} {r['attempts']:>3}x {r['channel']:18} {r['key']:22} {r['kind']:20} "
        f"{r['url'] or '(' + (r['via'] or 'poll or push') + ')'} {r['last_error']}"
        for r in rows
    ]
    if len(rows) == args.limit:
        lines.append(f"more: --before {rows[-1]['id']}")
    emit(args, rows, "\n".join(lines) or "no deliveries")
    return 0


def cmd_channels(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", "/api/v1/deliveries/channels")
    lines = [
        f"{r['channel']:18} "
        + " ".join(f"{s} {r[s]}" for s in DELIVERY_STATUSES)
        + (f"  oldest pending {r['oldest_pending_s']} s" if r["oldest_pending_s"] is not None else "")
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no deliveries")
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    row = admin(args).call("POST", f"/api/v1/deliveries/{args.id}/requeue")
    emit(args, row, f"delivery {row['id']} is {row['status']} again")
    return 0


def cmd_rate_limits(args: argparse.Namespace) -> int:
    out = admin(args).call("GET", f"/api/v1/rate-limits?within_s={args.within}")
    lines = [
        f"{c['lfdi']} {c['role']:10} {c['rejected']:>7} rejected, last {c['last_rejected_s_ago']} s ago"
        for c in out["limited"]
    ]
    header = f"{out['tracked_clients']} clients tracked; budgets " + ", ".join(
        f"{role} {b['rate']}/s burst {b['burst']}" for role, b in out["budgets"].items()
    )
    emit(args, out, "\n".join([header, *lines]) if lines else header + "\nno client is being limited")
    return 0
