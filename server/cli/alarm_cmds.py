"""``dso alarms``: the alarms staff must see (open by default), and acknowledging one."""

from __future__ import annotations

import argparse
import urllib.parse

from server.choices import ALARM_KINDS, ALARM_STATES
from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alarms", help="alarms: communication lost, deliveries failing, plans failed, violations"
    )
    asub = p.add_subparsers(dest="alarms_command", metavar="ACTION", required=True, parser_class=type(p))
    p = asub.add_parser("list", help="alarms, newest first (open ones unless --state says otherwise)")
    p.add_argument("--state", choices=list(ALARM_STATES), default="open")
    p.add_argument("--kind", choices=list(ALARM_KINDS))
    p.add_argument("--limit", type=int, default=100)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = asub.add_parser("ack", help="acknowledge an alarm (recorded with your name)")
    p.add_argument("id", type=int)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_ack)


def cmd_list(args: argparse.Namespace) -> int:
    query = {"state": args.state, "limit": str(args.limit)}
    if args.kind:
        query["kind"] = args.kind
    rows = admin(args).call("GET", "/api/v1/alarms?" + urllib.parse.urlencode(query))
    lines = [
        f"{r['id']:>5} {r['severity']:8} {r['kind']:17} {r['subject']:30} x{r['occurrences']:<4} "
        f"since {r['raised_at'][:19]}"
        + (f" ack {r['acknowledged_by']}" if r["acknowledged_by"] else "")
        + (" cleared" if r["cleared_at"] else "")
        + f"  {r['message']}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or f"no {args.state} alarms")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    row = admin(args).call("POST", f"/api/v1/alarms/{args.id}/acknowledge")
    emit(args, row, f"alarm {row['id']} acknowledged by {row['acknowledged_by']}")
    return 0
