"""``dso ven ...``, ``dso event ...``, ``dso opt list``, ``dso report ...``: OpenADR for staff."""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli import loop_cmds
from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit
from server.cli.durations import seconds


def _p(sub, name: str, help: str, func, json: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    add_config_arg(p)
    if json:
        add_json_arg(p)
    p.set_defaults(func=func)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    ven = sub.add_parser("ven", help="enroll and manage OpenADR VENs")
    vsub = ven.add_subparsers(dest="ven_command", metavar="ACTION", required=True, parser_class=type(ven))
    p = _p(vsub, "enroll", "enroll a VEN by its certificate fingerprint", cmd_ven_enroll)
    p.add_argument("--name", required=True)
    p.add_argument(
        "--fingerprint", required=True, help="last 10 bytes of SHA-256 of the certificate, colon hex"
    )
    p.add_argument("--ven-id", help="venID to hand out (default: generated)")
    p.add_argument("--push", action="store_true", help="allow push delivery to the VEN's transport address")
    _p(vsub, "list", "list VENs", cmd_ven_list)
    p = _p(vsub, "show", "one VEN", cmd_ven_show)
    p.add_argument("name")
    p = _p(vsub, "set", "change a VEN's push permission or enable/disable it", cmd_ven_set)
    p.add_argument("name")
    p.add_argument("--push", choices=["on", "off"])
    p.add_argument("--enabled", choices=["on", "off"])
    p = _p(
        vsub, "reregister", "ask the VEN to register again (oadrRequestReregistration)", cmd_ven_reregister
    )
    p.add_argument("name")
    p = _p(
        vsub,
        "cancel-registration",
        "cancel the VEN's registration (oadrCancelPartyRegistration)",
        cmd_ven_cancel,
    )
    p.add_argument("name")
    p = _p(vsub, "delete", "remove a VEN", cmd_ven_delete, json=False)
    p.add_argument("name")

    event = sub.add_parser("event", help="create, modify, cancel and list OpenADR events")
    esub = event.add_subparsers(
        dest="event_command", metavar="ACTION", required=True, parser_class=type(event)
    )
    p = _p(esub, "create", "create an event (prints its id)", cmd_event_create)
    p.add_argument(
        "--signal", default="SIMPLE", help="SIMPLE, ELECTRICITY_PRICE, LOAD_DISPATCH, LOAD_CONTROL, ..."
    )
    p.add_argument("--signal-type", help="override the signal type (level, price, setpoint, delta, ...)")
    p.add_argument("--level", type=float, help="payload value of the (single) interval")
    p.add_argument("--start", default="now", help="ISO 8601 with zone, or 'now'")
    p.add_argument("--duration", type=seconds, help="length of the (single) interval, e.g. 3600, 1h")
    p.add_argument(
        "--interval",
        action="append",
        default=[],
        metavar="SECONDS:VALUE",
        help="back-to-back intervals instead of --level/--duration (repeat)",
    )
    p.add_argument(
        "--ven", action="append", default=[], metavar="NAME", help="target VEN (repeat); default all"
    )
    p.add_argument("--resource", action="append", default=[], metavar="ID", help="target resourceID (repeat)")
    p.add_argument("--group", action="append", default=[], metavar="ID", help="target groupID (repeat)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--market-context")
    p.add_argument("--program", help="the DR program (id or name) the event belongs to; its VENs receive it")
    p.add_argument("--randomization", type=int, default=0, metavar="SECONDS", help="start tolerance")
    p.add_argument("--response-required", choices=["always", "never"], default="always")
    p.add_argument("--test", action="store_true", help="mark as a test event")
    p = _p(esub, "modify", "change an event (modificationNumber increments)", cmd_event_modify)
    p.add_argument("id", type=int)
    p.add_argument("--level", type=float)
    p.add_argument("--start", help="ISO 8601 with zone, or 'now'")
    p.add_argument("--duration", type=seconds, help="e.g. 3600, 1h")
    p.add_argument("--priority", type=int)
    p = _p(esub, "cancel", "cancel an event", cmd_event_cancel)
    p.add_argument("id", type=int)
    p = _p(esub, "show", "one event of any kind with every response (2030.5 and OpenADR)", cmd_event_show)
    p.add_argument("id", type=int)
    p = _p(esub, "list", "events not yet expired", cmd_event_list)
    p.add_argument("--all", action="store_true", help="include expired events")

    opt = sub.add_parser("opt", help="VEN opt schedules")
    osub = opt.add_subparsers(dest="opt_command", metavar="ACTION", required=True, parser_class=type(opt))
    p = _p(osub, "list", "opt schedules sent by VENs", cmd_opt_list)
    p.add_argument("--ven", metavar="NAME")
    p.add_argument("--event", metavar="ID")

    rep = sub.add_parser("report", help="VEN reports")
    rsub = rep.add_subparsers(dest="report_command", metavar="ACTION", required=True, parser_class=type(rep))
    p = _p(rsub, "list", "offered reports and report requests", cmd_report_list)
    p.add_argument("--ven", metavar="NAME")
    p = _p(
        rsub, "request", "ask a VEN for a registered report (granularity 0 = one-shot)", cmd_report_request
    )
    p.add_argument("ven")
    p.add_argument("specifier")
    p.add_argument("--granularity", type=int, default=0, metavar="SECONDS")
    p.add_argument("--back-duration", type=int, default=0, metavar="SECONDS")
    p = _p(rsub, "cancel", "stop a report request", cmd_report_cancel)
    p.add_argument("ven")
    p.add_argument("report_request_id")


def _ven_line(v: dict) -> str:
    reg = v["registration_id"] or "not registered"
    return f"{v['name']:<20} {v['ven_id']:<22} {v['fingerprint']}  {reg}  queued={v['queued']}"


def _event_line(e: dict) -> str:
    targets = ",".join(e["vens"]) or "all VENs"
    levels = "/".join(str(i["value"]) for i in e["intervals"])
    return (
        f"{e['id']:>5}  {e['signal_name']:<18} {levels:<8} {e['start']}  {e['duration_s']:>6}s  "
        f"{e['status']:<9} mod={e['modification_number']}  {targets}"
    )


def cmd_ven_enroll(args: argparse.Namespace) -> int:
    body = {"name": args.name, "fingerprint": args.fingerprint, "ven_id": args.ven_id, "push": args.push}
    v = admin(args).call("POST", "/api/v1/vens", body)
    emit(args, v, f"enrolled VEN {v['name']}: venID {v['ven_id']} ({v['fingerprint']})")
    return 0


def cmd_ven_list(args: argparse.Namespace) -> int:
    found = admin(args).call("GET", "/api/v1/vens")
    emit(args, found, "\n".join(_ven_line(v) for v in found) or "no VENs enrolled")
    return 0


def cmd_ven_show(args: argparse.Namespace) -> int:
    v = admin(args).call("GET", f"/api/v1/vens/{_q(args.name)}")
    emit(args, v, _ven_line(v))
    return 0


def cmd_ven_set(args: argparse.Namespace) -> int:
    body = {}
    if args.push:
        body["push"] = args.push == "on"
    if args.enabled:
        body["enabled"] = args.enabled == "on"
    v = admin(args).call("PATCH", f"/api/v1/vens/{_q(args.name)}", body)
    emit(args, v, _ven_line(v))
    return 0


def cmd_ven_reregister(args: argparse.Namespace) -> int:
    r = admin(args).call("POST", f"/api/v1/vens/{_q(args.name)}/reregister")
    emit(args, r, f"oadrRequestReregistration queued for {args.name}")
    return 0


def cmd_ven_cancel(args: argparse.Namespace) -> int:
    r = admin(args).call("POST", f"/api/v1/vens/{_q(args.name)}/cancel-registration")
    emit(args, r, f"oadrCancelPartyRegistration queued for {args.name}")
    return 0


def cmd_ven_delete(args: argparse.Namespace) -> int:
    admin(args).call("DELETE", f"/api/v1/vens/{_q(args.name)}")
    print(f"deleted VEN {args.name}")
    return 0


def _intervals(values: list[str]) -> list[dict]:
    out = []
    for value in values:
        length, sep, level = value.partition(":")
        try:
            out.append({"duration_s": int(length), "value": float(level)})
        except ValueError:
            raise CliError(f"--interval wants SECONDS:VALUE, got {value!r}") from None
        if not sep:
            raise CliError(f"--interval wants SECONDS:VALUE, got {value!r}")
    return out


def cmd_event_create(args: argparse.Namespace) -> int:
    if not args.interval and (args.level is None or args.duration is None):
        raise CliError("give --level and --duration, or one or more --interval SECONDS:VALUE")
    body = {
        "signal": args.signal,
        "signal_type": args.signal_type,
        "level": args.level,
        "start": args.start,
        "duration_s": args.duration,
        "intervals": _intervals(args.interval) or None,
        "vens": args.ven,
        "resource_ids": args.resource,
        "group_ids": args.group,
        "priority": args.priority,
        "market_context": args.market_context,
        "program": args.program,
        "randomization_s": args.randomization,
        "response_required": args.response_required,
        "test_event": args.test,
    }
    e = admin(args).call("POST", "/api/v1/openadr/events", body)
    emit(args, e, str(e["id"]))
    return 0


def cmd_event_modify(args: argparse.Namespace) -> int:
    body = {"level": args.level, "start": args.start, "duration_s": args.duration, "priority": args.priority}
    e = admin(args).call(
        "PATCH", f"/api/v1/openadr/events/{args.id}", {k: v for k, v in body.items() if v is not None}
    )
    emit(args, e, f"event {e['id']} modified: modificationNumber {e['modification_number']}")
    return 0


def cmd_event_cancel(args: argparse.Namespace) -> int:
    e = admin(args).call("POST", f"/api/v1/openadr/events/{args.id}/cancel")
    emit(args, e, f"event {e['id']} cancelled: modificationNumber {e['modification_number']}")
    return 0


# 2030.5 ResponseType names; OpenADR answers are stored as 5 (opt-in) or 4 (opt-out)
RESPONSE_NAMES = {
    1: "received",
    2: "started",
    3: "completed",
    4: "opted out",
    5: "opted in",
    6: "cancelled",
    7: "superseded",
    8: "partially opted out",
    9: "partially opted in",
    10: "completed, no user participation",
    11: "user acknowledged",
    12: "user declined",
    13: "not applicable",
    14: "invalid event",
    252: "rejected",
    253: "aborted",
}


def response_line(r: dict) -> str:
    if r["protocol"] == "openadr":
        party = f"OpenADR VEN {r['ven']}"
        what = f"{r['opt_type']} (modificationNumber {r['modification_number']}, code {r['response_code']})"
    elif r["protocol"] == "openadr3":
        party = f"OpenADR 3 VEN {r['ven']}"
        what = "report received"
    else:
        party = f"2030.5 device {r['lfdi']}"
        what = RESPONSE_NAMES.get(r["status"], f"status {r['status']}")
    return f"  {r['received_at']}  {party:<52} {what}"


def cmd_event_show(args: argparse.Namespace) -> int:
    """Any event (DER control, price, DR) with every party's response, whatever its protocol."""
    e = admin(args).call("GET", f"/api/v1/events/{args.id}")
    state = "cancelled" if e["cancelled_at"] else "scheduled"
    head = (
        f"event {e['id']} ({e['kind']}) in program {e['program']}: {e['start']} for {e['duration_s']} s, "
        f"{state}, modificationNumber {e['modification_number']}"
    )
    lines = [head, f"responses ({len(e['responses'])}):"] + [response_line(r) for r in e["responses"]]
    lines += loop_cmds.event_plan_lines(e)
    emit(args, e, "\n".join(lines))
    return 0


def cmd_event_list(args: argparse.Namespace) -> int:
    found = admin(args).call("GET", "/api/v1/openadr/events" + ("?all=1" if args.all else ""))
    emit(args, found, "\n".join(_event_line(e) for e in found) or "no events")
    return 0


def cmd_opt_list(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({k: v for k, v in (("ven", args.ven), ("event", args.event)) if v})
    found = admin(args).call("GET", "/api/v1/openadr/opts" + (f"?{query}" if query else ""))
    lines = [
        f"{o['ven']:<20} {o['opt_id']:<24} {o['opt_type']:<7} {o['opt_reason']:<16} "
        f"event={o['event_id'] or '-'} {o['status']}"
        for o in found
    ]
    emit(args, found, "\n".join(lines) or "no opts")
    return 0


def cmd_report_list(args: argparse.Namespace) -> int:
    found = admin(args).call("GET", "/api/v1/openadr/reports" + (f"?ven={_q(args.ven)}" if args.ven else ""))
    lines = [
        f"{r['ven']:<20} {r['report_request_id']:<16} {r['report_name']:<18} every {r['granularity_s']}s "
        f"{r['status']}"
        for r in found["requests"]
    ]
    emit(args, found, "\n".join(lines) or "no report requests")
    return 0


def cmd_report_request(args: argparse.Namespace) -> int:
    body = {
        "report_specifier_id": args.specifier,
        "granularity_s": args.granularity,
        "report_back_duration_s": args.back_duration,
    }
    r = admin(args).call("POST", f"/api/v1/vens/{_q(args.ven)}/report-requests", body)
    emit(args, r, r["report_request_id"])
    return 0


def cmd_report_cancel(args: argparse.Namespace) -> int:
    r = admin(args).call(
        "POST", f"/api/v1/vens/{_q(args.ven)}/report-requests/{_q(args.report_request_id)}/cancel"
    )
    emit(args, r, f"oadrCancelReport queued for {args.report_request_id}")
    return 0


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")
