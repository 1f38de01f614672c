"""``dso sep2 ...``: what 2030.5 devices sent up and what the server pushes down (staff view, issue 4).

    dso sep2 latest LFDI                       newest reading of every series of a device (SI units)
    dso sep2 readings LFDI [--since T] [--until T] [--measurement M] [--resource MRID] [--limit N]
    dso sep2 log-events LFDI [--limit N]
    dso sep2 subscriptions [--lfdi LFDI]       subscriptions and their notification delivery state
"""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("sep2", help="2030.5 telemetry, log events, subscriptions and notifications")
    gsub = group.add_subparsers(dest="sep2_command", metavar="ACTION", required=True, parser_class=type(group))

    p = gsub.add_parser("latest", help="newest reading of every series of a device")
    p.add_argument("lfdi")
    p.set_defaults(func=cmd_latest)
    _common(p)

    p = gsub.add_parser("readings", help="a device's readings in [since, until), newest first")
    p.add_argument("lfdi")
    p.add_argument("--since", help="ISO 8601 with offset, e.g. 2026-11-25T00:00:00Z")
    p.add_argument("--until", help="ISO 8601 with offset (exclusive)")
    p.add_argument("--measurement", help="realPower, reactivePower, voltage, frequency, energyReal, ...")
    p.add_argument("--resource", help="MirrorMeterReading mRID")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=cmd_readings)
    _common(p)

    p = gsub.add_parser("log-events", help="LogEvents a device posted, newest first")
    p.add_argument("lfdi")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_log_events)
    _common(p)

    p = gsub.add_parser("subscriptions", help="subscriptions with notification delivery state")
    p.add_argument("--lfdi", help="only the SubscriptionList of this device")
    p.set_defaults(func=cmd_subscriptions)
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_arg(p)
    add_json_arg(p)


def _q(**values: object) -> str:
    return urllib.parse.urlencode({k: str(v) for k, v in values.items() if v is not None})


def _row(r: dict) -> str:
    dur = f" /{r['duration_s']:.0f}s" if r.get("duration_s") else ""
    return f"{r['ts']}  {r['measurement']:15} {r['value']:>14.6g} {r['unit']:5}{dur}  {r['resource']}"


def cmd_latest(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}/telemetry/latest")
    emit(args, rows, "\n".join(_row(r) for r in rows) or "no readings")
    return 0


def cmd_readings(args: argparse.Namespace) -> int:
    query = _q(since=args.since, until=args.until, measurement=args.measurement, resource=args.resource,
               limit=args.limit)
    rows = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}/telemetry?{query}")
    emit(args, rows, "\n".join(_row(r) for r in rows) or "no readings")
    return 0


def cmd_log_events(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}/log-events?{_q(limit=args.limit)}")
    lines = [f"{r['created']}  fs={r['function_set']} code={r['log_event_code']} id={r['log_event_id']} "
             f"pen={r['log_event_pen']} {r['details']}" for r in rows]
    emit(args, rows, "\n".join(lines) or "no log events")
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", f"/api/v1/sep2/subscriptions?{_q(lfdi=args.lfdi)}")
    lines = []
    for r in rows:
        last = r["last"] or {}
        lines.append(f"{r['href']:24} {r['resource']:36} -> {r['notification_uri']}  delivered={r['delivered']} "
                     f"pending={r['pending']} failed={r['failed']} {last.get('last_error') or ''}".rstrip())
    emit(args, rows, "\n".join(lines) or "no subscriptions")
    return 0
