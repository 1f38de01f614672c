"""``dso modbus add|list|control``: legacy inverters behind the SunSpec Modbus gateway."""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("modbus", help="SunSpec Modbus TCP inverters polled by the gateway")
    msub = m.add_subparsers(dest="modbus_command", metavar="ACTION", required=True, parser_class=type(m))
    p = msub.add_parser(
        "add", help="register a device; telemetry appears under source kind 'modbus' and NAME"
    )
    p.add_argument("name")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=502)
    p.add_argument("--unit", type=int, default=1, help="Modbus unit (device) id")
    p.add_argument("--poll", type=int, default=60, metavar="SECONDS")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_add)
    p = msub.add_parser("list", help="devices and their last poll")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("control", help="write SunSpec immediate controls (model 123)")
    p.add_argument("name")
    p.add_argument("--export-limit-pct", type=float, help="limit output to this % of rated power")
    p.add_argument("--release-limit", action="store_true", help="disable the output limit")
    p.add_argument("--connect", type=int, choices=[0, 1], help="1 connect, 0 disconnect")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_control)


def cmd_add(args: argparse.Namespace) -> int:
    device = admin(args).call(
        "POST",
        "/api/v1/modbus/devices",
        {"name": args.name, "host": args.host, "port": args.port, "unit_id": args.unit, "poll_s": args.poll},
    )
    emit(
        args,
        device,
        f"added modbus device {device['name']} ({device['host']}:{device['port']} unit {device['unit_id']})",
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    devices = admin(args).call("GET", "/api/v1/modbus/devices")
    lines = [
        f"{d['name']:16} {d['host']}:{d['port']}/{d['unit_id']}  {d['manufacturer']} {d['model']}  "
        f"last ok {d['last_ok_at'] or '-'}  {d['last_error']}"
        for d in devices
    ]
    emit(args, devices, "\n".join(lines) or "no modbus devices")
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    body: dict = {"release_limit": args.release_limit}
    if args.export_limit_pct is not None:
        body["export_limit_pct"] = args.export_limit_pct
    if args.connect is not None:
        body["connect"] = bool(args.connect)
    result = admin(args).call(
        "POST", f"/api/v1/modbus/devices/{urllib.parse.quote(args.name, safe='')}/control", body
    )
    emit(args, result, f"wrote {len(result['writes'])} register(s) on {result['device']}")
    return 0
