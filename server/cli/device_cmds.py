"""``dso device enroll|list|show|delete``."""

from __future__ import annotations

import argparse

from server.cli.common import add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    device = sub.add_parser("device", help="enroll and list 2030.5 devices")
    dsub = device.add_subparsers(
        dest="device_command", metavar="ACTION", required=True, parser_class=type(device)
    )

    p = dsub.add_parser("enroll", help="enroll a device by LFDI (out-of-band registration)")
    p.add_argument("--lfdi", required=True, help="40 hex digits (separators allowed)")
    p.add_argument("--sfdi", type=int, help="checked against the LFDI when given")
    p.add_argument("--pin", type=int, help="registration PIN the device must show")
    p.add_argument("--aggregator", metavar="LFDI", help="the aggregator allowed to act for this device")
    p.add_argument("--name", default="", help="a label for staff")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_enroll)

    p = dsub.add_parser("list", help="list enrolled devices")
    p.add_argument("--aggregator", metavar="LFDI", help="only devices under this aggregator")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)

    p = dsub.add_parser("show", help="one device")
    p.add_argument("id", type=int)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_show)

    p = dsub.add_parser("delete", help="remove a device")
    p.add_argument("id", type=int)
    add_config_arg(p)
    p.set_defaults(func=cmd_delete)


def _line(d: dict) -> str:
    agg = f" aggregator={d['aggregator_lfdi']}" if d.get("aggregator_lfdi") else ""
    return f"{d['id']:>5}  {d['lfdi']}  sfdi={d['sfdi']}  {d['name'] or '-'}{agg}"


def cmd_enroll(args: argparse.Namespace) -> int:
    body = {
        "lfdi": args.lfdi,
        "sfdi": args.sfdi,
        "pin": args.pin,
        "aggregator": args.aggregator,
        "name": args.name,
    }
    device = admin(args).call("POST", "/api/v1/devices", body)
    emit(args, device, f"enrolled device {device['id']}: {device['lfdi']} (sfdi {device['sfdi']})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    query = f"?aggregator={args.aggregator}" if args.aggregator else ""
    found = admin(args).call("GET", "/api/v1/devices" + query)
    emit(args, found, "\n".join(_line(d) for d in found) or "no devices enrolled")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    device = admin(args).call("GET", f"/api/v1/devices/{args.id}")
    emit(args, device, _line(device))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    admin(args).call("DELETE", f"/api/v1/devices/{args.id}")
    print(f"deleted device {args.id}")
    return 0
