"""``dso program ...`` and ``dso control ...``: 2030.5 DER programs and controls, through the admin API.

Every command prints JSON with ``--json`` (always including ``id`` and ``href`` for the object it made)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from lxml import etree

from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit, stderr
from server.cli.durations import seconds


def _common(p: argparse.ArgumentParser) -> None:
    add_config_arg(p)
    add_json_arg(p)


def _add_base_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exp-lim-w", type=float, metavar="W", help="CSIP-AUS export limit (opModExpLimW)")
    p.add_argument("--imp-lim-w", type=float, metavar="W", help="CSIP-AUS import limit (opModImpLimW)")
    p.add_argument("--gen-lim-w", type=float, metavar="W", help="CSIP-AUS generation limit (opModGenLimW)")
    p.add_argument("--load-lim-w", type=float, metavar="W", help="CSIP-AUS load limit (opModLoadLimW)")
    p.add_argument("--target-w", type=float, metavar="W", help="active power target (opModTargetW)")
    p.add_argument(
        "--storage-target-w",
        type=float,
        metavar="W",
        help="CSIP-AUS 1.3 storage target, negative to charge (opModStorageTargetW)",
    )
    p.add_argument(
        "--max-lim-w", type=float, metavar="PCT", help="max active power, %% of setMaxW (opModMaxLimW)"
    )
    p.add_argument("--connect", type=int, choices=(0, 1), help="opModConnect")
    p.add_argument("--energize", type=int, choices=(0, 1), help="opModEnergize")
    p.add_argument(
        "--fixed-w", type=float, metavar="PCT", help="fixed active power, %% of setMaxW (opModFixedW)"
    )
    p.add_argument("--ramp-tms", type=int, metavar="CS", help="ramp time, hundredths of a second (rampTms)")
    p.add_argument(
        "--curve",
        action="append",
        default=[],
        metavar="MODE=ID",
        help="a curve mode and the program's curve id, e.g. opModVoltVar=1 (repeatable)",
    )


def _base(args: argparse.Namespace) -> dict[str, Any]:
    base: dict[str, Any] = {}
    for attr, name in (
        ("exp_lim_w", "opModExpLimW"),
        ("imp_lim_w", "opModImpLimW"),
        ("gen_lim_w", "opModGenLimW"),
        ("load_lim_w", "opModLoadLimW"),
        ("target_w", "opModTargetW"),
        ("storage_target_w", "opModStorageTargetW"),
    ):
        if getattr(args, attr) is not None:
            base[name] = getattr(args, attr)
    for attr, name in (("connect", "opModConnect"), ("energize", "opModEnergize")):
        if getattr(args, attr) is not None:
            base[name] = bool(getattr(args, attr))
    # percentages on the command line; 2030.5 carries hundredths of a percent
    if args.fixed_w is not None:
        base["opModFixedW"] = round(args.fixed_w * 100)
    if args.max_lim_w is not None:
        base["opModMaxLimW"] = round(args.max_lim_w * 100)
    if args.ramp_tms is not None:
        base["rampTms"] = args.ramp_tms
    for item in args.curve:
        mode, _, ident = item.partition("=")
        if not ident.isdigit():
            raise CliError(f"--curve wants MODE=ID, e.g. opModVoltVar=1 (got {item!r})")
        base[mode] = int(ident)
    return base


def register(sub: argparse._SubParsersAction) -> None:
    program = sub.add_parser("program", help="2030.5 DER programs and their assignment to devices")
    psub = program.add_subparsers(
        dest="program_command", metavar="ACTION", required=True, parser_class=type(program)
    )
    p = psub.add_parser("create", help="create a DER program")
    p.add_argument("--name", required=True)
    p.add_argument("--primacy", type=int, required=True, help="0..255, lower wins across programs")
    p.add_argument("--description", default="")
    _common(p)
    p.set_defaults(func=cmd_program_create)

    p = psub.add_parser("list", help="list programs")
    _common(p)
    p.set_defaults(func=cmd_program_list)

    p = psub.add_parser("assign", help="assign a program to a device (through its FunctionSetAssignments)")
    p.add_argument("--program", required=True, help="name or id")
    p.add_argument("--lfdi", required=True)
    p.add_argument("--fsa", default="default", help="title of the device's FSA to put it in")
    _common(p)
    p.set_defaults(func=cmd_program_assign)

    p = psub.add_parser("default", help="set (or --clear) the program's DefaultDERControl")
    p.add_argument("--program", required=True, help="name or id")
    p.add_argument("--set-grad-w", type=int, help="default ramp rate, hundredths of %% of setMaxW per second")
    p.add_argument("--clear", action="store_true", help="remove the default control")
    _add_base_args(p)
    _common(p)
    p.set_defaults(func=cmd_program_default)

    p = psub.add_parser("curve", help="add a DERCurve to a program (controls refer to it by id)")
    p.add_argument("--program", required=True, help="name or id")
    p.add_argument(
        "--type",
        type=int,
        required=True,
        dest="curve_type",
        help="DERCurveType: 0 freq-watt, ..., 11 volt-var, 12 volt-watt, 13 watt-var",
    )
    p.add_argument("--points", required=True, metavar="X:Y,X:Y,...", help="integer points (1..10)")
    p.add_argument("--y-ref", type=int, required=True, help="DERUnitRefType of y (e.g. 1 = %% setMaxW)")
    p.add_argument("--x-mult", type=int, default=0, help="power-of-ten multiplier of x")
    p.add_argument("--y-mult", type=int, default=0, help="power-of-ten multiplier of y")
    p.add_argument("--description", default="")
    _common(p)
    p.set_defaults(func=cmd_program_curve)

    control = sub.add_parser("control", help="2030.5 DER controls (events)")
    csub = control.add_subparsers(
        dest="control_command", metavar="ACTION", required=True, parser_class=type(control)
    )
    p = csub.add_parser("create", help="create a DER control for a device or a program")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--lfdi", help="one device (its own program, created on first use)")
    target.add_argument("--program", help="every device the program is assigned to (name or id)")
    p.add_argument("--start", required=True, help="ISO 8601 with time zone, or 'now'")
    p.add_argument("--duration", type=seconds, required=True, help="e.g. 900, 15m, 1h")
    p.add_argument(
        "--allow-past", action="store_true", help="send it even when it has already ended (devices ignore it)"
    )
    p.add_argument("--randomize-start", type=int, metavar="SECONDS")
    p.add_argument("--randomize-duration", type=int, metavar="SECONDS")
    p.add_argument("--primacy", type=int, help="primacy of the device's own program when it is created")
    p.add_argument("--description", default="")
    _add_base_args(p)
    _common(p)
    p.set_defaults(func=cmd_control_create)

    p = csub.add_parser("cancel", help="cancel a control (it stays visible with EventStatus cancelled)")
    p.add_argument("id", type=int)
    p.add_argument("--randomized", action="store_true", help="devices apply their randomization (status 3)")
    _common(p)
    p.set_defaults(func=cmd_control_cancel)

    p = csub.add_parser("list", help="list controls")
    p.add_argument("--lfdi", help="controls reaching this device")
    p.add_argument("--program", help="controls of this program")
    _common(p)
    p.set_defaults(func=cmd_control_list)

    p = csub.add_parser("responses", help="Responses devices posted for a control")
    p.add_argument("id", type=int)
    _common(p)
    p.set_defaults(func=cmd_control_responses)

    _register_sep2(sub)


def _register_sep2(sub: argparse._SubParsersAction) -> None:
    sep2 = sub.add_parser("sep2", help="2030.5 runtime settings and what devices reported")
    ssub = sep2.add_subparsers(dest="sep2_command", metavar="ACTION", required=True, parser_class=type(sep2))
    p = ssub.add_parser("show", help="a device: its programs and the DER resources it reported")
    p.add_argument("lfdi")
    _common(p)
    p.set_defaults(func=cmd_sep2_show)
    for name, what in (("poll-rate", "pollRate of a resource"), ("post-rate", "postRate of a resource")):
        p = ssub.add_parser(
            name, help=f"set the {what} (e.g. DeviceCapability, EndDeviceList, MirrorUsagePoint)"
        )
        p.add_argument("resource")
        p.add_argument("seconds", type=int, nargs="?", help="omit to restore the configured default")
        _common(p)
        p.set_defaults(func=cmd_sep2_rate, kind=name + "s")
    p = ssub.add_parser("access", help="grant or revoke a client's 2030.5 access (by certificate LFDI)")
    p.add_argument("lfdi")
    p.add_argument("state", choices=("grant", "revoke"))
    _common(p)
    p.set_defaults(func=cmd_sep2_access)
    p = ssub.add_parser("aggregator", help="enroll an aggregator (service provider) client by LFDI")
    p.add_argument("lfdi")
    _common(p)
    p.set_defaults(func=cmd_sep2_aggregator)


def cmd_sep2_show(args: argparse.Namespace) -> int:
    view = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}")
    lines = [
        f"EndDevice {view['href']}  {view['device']['lfdi']}  sfdi={view['device']['sfdi']}",
        "programs: "
        + (", ".join(f"{p['name']} (primacy {p['primacy']})" for p in view["programs"]) or "none"),
    ]
    lines += [f"{kind}: {xml_text(body)}" for kind, body in sorted(view["reported"].items())]
    emit(args, view, "\n".join(lines))
    return 0


def cmd_sep2_rate(args: argparse.Namespace) -> int:
    r = admin(args).call("PUT", f"/api/v1/sep2/{args.kind}/{args.resource}", {"rate_s": args.seconds})
    emit(
        args, r, f"{args.resource} {args.kind[:-1]}: {r['rate_s'] if r['rate_s'] is not None else 'default'}"
    )
    return 0


def cmd_sep2_access(args: argparse.Namespace) -> int:
    r = admin(args).call("PUT", f"/api/v1/sep2/access/{args.lfdi}", {"granted": args.state == "grant"})
    emit(args, r, f"{r['lfdi']}: access {'granted' if r['granted'] else 'revoked'}")
    return 0


def cmd_sep2_aggregator(args: argparse.Namespace) -> int:
    r = admin(args).call("PUT", f"/api/v1/sep2/aggregators/{args.lfdi}")
    emit(args, r, f"aggregator {r['id']}: {r['lfdi']}")
    return 0


def base_text(base: dict[str, Any] | None) -> str:
    """A DERControlBase as ``opModExpLimW=1000 W, opModConnect=on`` rather than a Python dict."""
    if not base:
        return "-"
    units = {"W": " W", "Tms": " cs"}
    parts = []
    for name, value in base.items():
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        unit = next((u for suffix, u in units.items() if name.endswith(suffix)), "")
        if name in ("opModFixedW", "opModMaxLimW"):
            text, unit = f"{float(value) / 100:g}", " %"
        parts.append(f"{name}={text}{unit}")
    return ", ".join(parts)


def xml_text(body: str) -> str:
    """A stored 2030.5 resource as ``path=value`` pairs of its leaves rather than raw XML."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(body.encode(), parser)
    except etree.XMLSyntaxError:
        return body
    pairs = []
    for el in root.iter():
        text = (el.text or "").strip()
        if len(el) or el is root or not text or not isinstance(el.tag, str):
            continue
        path = "/".join(etree.QName(a).localname for a in reversed(list(el.iterancestors())) if a is not root)
        pairs.append(f"{path + '/' if path else ''}{etree.QName(el).localname}={text}")
    return ", ".join(pairs) or "-"


def _control_line(c: dict[str, Any]) -> str:
    state = "cancelled" if c.get("cancelled_at") else "live"
    return (
        f"{c['id']:>5}  {c.get('program') or c['program_id']}  start={c['start']}  {c['duration_s']}s  "
        f"{state}  {base_text(c['base'])}"
    )


def cmd_program_create(args: argparse.Namespace) -> int:
    p = admin(args).call(
        "POST",
        "/api/v1/programs",
        {"name": args.name, "primacy": args.primacy, "description": args.description},
    )
    emit(args, p, f"created program {p['id']} {p['name']} (primacy {p['primacy']})")
    return 0


def cmd_program_list(args: argparse.Namespace) -> int:
    found = admin(args).call("GET", "/api/v1/programs")
    emit(
        args,
        found,
        "\n".join(f"{p['id']:>5}  {p['name']}  primacy={p['primacy']}" for p in found) or "no programs",
    )
    return 0


def cmd_program_assign(args: argparse.Namespace) -> int:
    r = admin(args).call(
        "POST", f"/api/v1/programs/{args.program}/assign", {"lfdi": args.lfdi, "fsa": args.fsa}
    )
    emit(args, r, f"program {r['program_id']} assigned to device {r['end_device_id']} (FSA {r['href']})")
    return 0


def cmd_program_default(args: argparse.Namespace) -> int:
    client = admin(args)
    if args.clear:
        client.call("DELETE", f"/api/v1/programs/{args.program}/default-control")
        p = client.call("GET", f"/api/v1/programs/{args.program}")
    else:
        p = client.call(
            "PUT",
            f"/api/v1/programs/{args.program}/default-control",
            {"base": _base(args), "setGradW": args.set_grad_w},
        )
    default = p["default_control"]
    shown = "none"
    if isinstance(default, dict):
        grad = default.get("setGradW")
        shown = base_text(default.get("base")) + (f", setGradW={grad}" if grad is not None else "")
    emit(args, p, f"program {p['id']} default control: {shown}")
    return 0


def cmd_program_curve(args: argparse.Namespace) -> int:
    try:
        points = [[int(v) for v in pair.split(":")] for pair in args.points.split(",")]
    except ValueError:
        raise CliError("--points wants integer pairs X:Y separated by commas") from None
    c = admin(args).call(
        "POST",
        f"/api/v1/programs/{args.program}/curves",
        {
            "curve_type": args.curve_type,
            "points": points,
            "y_ref_type": args.y_ref,
            "x_multiplier": args.x_mult,
            "y_multiplier": args.y_mult,
            "description": args.description,
        },
    )
    emit(args, c, f"created curve {c['id']} (type {c['curve_type']}) in program {c['program_id']}")
    return 0


def _check_start(start: str, duration_s: int, allow_past: bool) -> None:
    """A control that would already be over is refused unless asked for (devices would never act on it)."""
    if start == "now":
        return
    try:
        when = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--start {start!r}: ISO 8601 with a time zone (e.g. 2026-01-01T10:00:00Z), or now"
        ) from None
    if when.tzinfo is None:
        raise CliError(f"--start {start!r} needs a time zone (e.g. Z or -07:00)")
    ended = when + dt.timedelta(seconds=duration_s)
    if ended <= dt.datetime.now(dt.UTC) and not allow_past:
        raise CliError(
            f"--start {start} with --duration {duration_s} s ended at {ended.isoformat()}: devices would "
            "ignore it (pass --allow-past to send it anyway)"
        )


def cmd_control_create(args: argparse.Namespace) -> int:
    _check_start(args.start, args.duration, args.allow_past)
    body: dict[str, Any] = {
        "start": args.start,
        "duration_s": args.duration,
        "base": _base(args),
        "description": args.description,
    }
    if args.lfdi:
        body["lfdi"] = args.lfdi
        if args.primacy is not None:
            body["primacy"] = args.primacy
    else:
        body["program"] = args.program
    if args.randomize_start is not None:
        body["randomize_start_s"] = args.randomize_start
    if args.randomize_duration is not None:
        body["randomize_duration_s"] = args.randomize_duration
    c = admin(args).call("POST", "/api/v1/controls", body)
    if not args.json:
        for warning in c.get("warnings", []):
            stderr(f"dso: warning: {warning}")
    emit(args, c, f"created control {c['id']}: {_control_line(c)}")
    return 0


def cmd_control_cancel(args: argparse.Namespace) -> int:
    c = admin(args).call("POST", f"/api/v1/controls/{args.id}/cancel", {"randomized": args.randomized})
    emit(args, c, f"cancelled control {c['id']}")
    return 0


def cmd_control_list(args: argparse.Namespace) -> int:
    query = "&".join(f"{k}={v}" for k, v in (("lfdi", args.lfdi), ("program", args.program)) if v)
    found = admin(args).call("GET", "/api/v1/controls" + (f"?{query}" if query else ""))
    emit(args, found, "\n".join(_control_line(c) for c in found) or "no controls")
    return 0


def cmd_control_responses(args: argparse.Namespace) -> int:
    found = admin(args).call("GET", f"/api/v1/controls/{args.id}/responses")
    emit(
        args,
        found,
        "\n".join(f"{r['id']:>5}  {r['lfdi']}  status={r['status']}  {r['created']}" for r in found)
        or "no responses",
    )
    return 0
