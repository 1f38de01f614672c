"""Staff commands for the 2030.5 data devices send up and the influence dispatches sent down:

dso readings latest LFDI                   newest reading of every series of a device (SI units)
dso readings range LFDI [--since T] [--until T] [--measurement M] [--resource MRID] [--limit N]
dso logevents LFDI [--limit N]             LogEvents a device posted
dso subscriptions [--lfdi LFDI]            subscriptions and their notification delivery state
dso tariff create --name N [--currency 840] [--price-power -3] [--primacy 1] [--rate-code C]
dso tariff rate TARIFF --name N [--uom 72] [--flow-direction 1]
dso tariff assign TARIFF --lfdi LFDI | --ven NAME
dso tariff price TARIFF --duration S --price P[@START_VALUE] ... [--start ISO|now] [--rate R] [--tou-tier T]
dso tariff list | dso tariff cancel ID [--randomized]
dso drlc program --name N [--primacy 1]
dso drlc assign PROGRAM --lfdi LFDI | --ven NAME
dso drlc event PROGRAM --duration S --category thermostat|evse|HEX ... [--cooling-setpoint C100]
             [--heating-setpoint C100] [--duty-cycle PCT] [--load-reduction 0|1] [--target-reduction TYPE:VALUE]
             [--cooling-offset C] [--heating-offset C] [--start ISO|now] [--response-required BITS]
dso drlc list | dso drlc cancel ID [--randomized]
"""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit
from server.cli.durations import seconds


def _member_args(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--lfdi", help="a 2030.5 device")
    who.add_argument("--ven", help="an OpenADR VEN (its name): it receives the program's events")


def _member(a: argparse.Namespace) -> dict[str, str]:
    return {"lfdi": a.lfdi} if a.lfdi else {"ven": a.ven}


def register(sub: argparse._SubParsersAction) -> None:
    def group(name: str, help_: str) -> argparse._SubParsersAction:
        g = sub.add_parser(name, help=help_)
        return g.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True, parser_class=type(g))

    readings = group("readings", "a 2030.5 device's mirrored meter readings (telemetry, SI units)")
    p = readings.add_parser("latest", help="newest reading of every series of a device")
    p.add_argument("lfdi")
    p.set_defaults(func=cmd_latest)
    _common(p)
    p = readings.add_parser("range", help="a device's readings in [since, until), newest first")
    p.add_argument("lfdi")
    p.add_argument("--since", help="ISO 8601 with offset, e.g. 2026-11-25T00:00:00Z")
    p.add_argument("--until", help="ISO 8601 with offset (exclusive)")
    p.add_argument("--measurement", help="realPower, reactivePower, voltage, frequency, energyReal, ...")
    p.add_argument("--resource", help="MirrorMeterReading mRID")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=cmd_readings)
    _common(p)

    p = sub.add_parser("logevents", help="LogEvents a 2030.5 device posted, newest first")
    p.add_argument("lfdi")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_log_events)
    _common(p)

    p = sub.add_parser("subscriptions", help="2030.5 subscriptions with notification delivery state")
    p.add_argument("--lfdi", help="only the SubscriptionList of this device")
    p.set_defaults(func=cmd_subscriptions)
    _common(p)

    tariff = group("tariff", "2030.5 pricing: tariffs, rate components, time-varying prices")
    p = tariff.add_parser("create", help="create a tariff (TariffProfile)")
    p.add_argument("--name", required=True)
    p.add_argument("--currency", type=int, default=840, help="ISO 4217 numeric (840 USD, 36 AUD, 978 EUR)")
    p.add_argument("--price-power", type=int, default=-3, help="prices are x 10^this currency units")
    p.add_argument("--primacy", type=int, default=1)
    p.add_argument("--rate-code", default="")
    p.set_defaults(
        func=lambda a: _post(
            a,
            "/api/v1/tariffs",
            {
                "name": a.name,
                "currency": a.currency,
                "price_power_of_ten": a.price_power,
                "primacy": a.primacy,
                "rate_code": a.rate_code,
            },
        )
    )
    _common(p)
    p = tariff.add_parser("rate", help="add a rate component (what is priced) to a tariff")
    p.add_argument("tariff")
    p.add_argument("--name", required=True)
    p.add_argument("--uom", type=int, default=72, help="72 Wh (default), 38 W, 73 varh, ...")
    p.add_argument("--flow-direction", type=int, default=1, help="1 delivered to the customer, 19 received")
    p.set_defaults(
        func=lambda a: _post(
            a,
            f"/api/v1/tariffs/{a.tariff}/rates",
            {"name": a.name, "uom": a.uom, "flow_direction": a.flow_direction},
        )
    )
    _common(p)
    p = tariff.add_parser("assign", help="enrol a 2030.5 device or an OpenADR VEN in a tariff")
    p.add_argument("tariff")
    _member_args(p)
    p.set_defaults(func=lambda a: _post(a, f"/api/v1/tariffs/{a.tariff}/assign", _member(a)))
    _common(p)
    p = tariff.add_parser("price", help="publish a price interval (TimeTariffInterval) with prices per block")
    p.add_argument("tariff")
    p.add_argument("--start", default="now")
    p.add_argument("--duration", type=seconds, required=True, help="e.g. 900, 15m, 1h")
    p.add_argument(
        "--price",
        action="append",
        required=True,
        metavar="P[@START]",
        help="price of a consumption block, from START (default 0); repeat for more blocks",
    )
    p.add_argument("--rate", help="rate component id or name (default: the first)")
    p.add_argument("--tou-tier", type=int, default=0)
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_price)
    _common(p)
    p = tariff.add_parser("list", help="tariffs and their rate components")
    p.set_defaults(func=lambda a: _get(a, "/api/v1/tariffs"))
    _common(p)
    _cancel(tariff, "cancel a price interval")

    drlc = group("drlc", "2030.5 demand response / load control (thermostats, water heaters, EVSE, ...)")
    p = drlc.add_parser("program", help="create a demand response program")
    p.add_argument("--name", required=True)
    p.add_argument("--primacy", type=int, default=1)
    p.set_defaults(func=lambda a: _post(a, "/api/v1/dr-programs", {"name": a.name, "primacy": a.primacy}))
    _common(p)
    p = drlc.add_parser("assign", help="enrol a 2030.5 device or an OpenADR VEN in a DR program")
    p.add_argument("program")
    _member_args(p)
    p.set_defaults(func=lambda a: _post(a, f"/api/v1/dr-programs/{a.program}/assign", _member(a)))
    _common(p)
    p = drlc.add_parser("event", help="create a load-control event (EndDeviceControl)")
    p.add_argument("program")
    p.add_argument("--start", default="now")
    p.add_argument("--duration", type=seconds, required=True, help="e.g. 900, 15m, 1h")
    p.add_argument(
        "--category",
        action="append",
        required=True,
        help="thermostat, water-heater, evse, pool-pump, ... or a hex bit map; repeatable",
    )
    p.add_argument("--cooling-setpoint", type=int, help="hundredths of a degree C")
    p.add_argument("--heating-setpoint", type=int, help="hundredths of a degree C")
    p.add_argument("--cooling-offset", type=int, help="degrees C")
    p.add_argument("--heating-offset", type=int, help="degrees C")
    p.add_argument("--duty-cycle", type=int, help="percent on-time")
    p.add_argument("--load-reduction", type=int, choices=[0, 1], help="ApplianceLoadReduction type")
    p.add_argument("--target-reduction", metavar="TYPE:VALUE", help="e.g. 1:5 (5 kW)")
    p.add_argument("--description", default="")
    p.add_argument("--response-required", type=int, default=0)
    p.add_argument("--randomize-start", type=int)
    p.set_defaults(func=cmd_dr_event)
    _common(p)
    p = drlc.add_parser("list", help="DR programs")
    p.set_defaults(func=lambda a: _get(a, "/api/v1/dr-programs"))
    _common(p)
    _cancel(drlc, "cancel a load-control event")


def _cancel(parent: argparse._SubParsersAction, help_: str) -> None:
    p = parent.add_parser("cancel", help=help_ + " (it stays visible with EventStatus cancelled)")
    p.add_argument("id", type=int)
    p.add_argument("--randomized", action="store_true", help="devices apply their randomization (status 3)")
    p.set_defaults(
        func=lambda a: _post(a, f"/api/v1/influence-events/{a.id}/cancel", {"randomized": a.randomized})
    )
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
    query = _q(
        since=args.since,
        until=args.until,
        measurement=args.measurement,
        resource=args.resource,
        limit=args.limit,
    )
    rows = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}/telemetry?{query}")
    emit(args, rows, "\n".join(_row(r) for r in rows) or "no readings")
    return 0


def cmd_log_events(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", f"/api/v1/sep2/devices/{args.lfdi}/log-events?{_q(limit=args.limit)}")
    lines = [
        f"{r['created']}  fs={r['function_set']} code={r['log_event_code']} id={r['log_event_id']} "
        f"pen={r['log_event_pen']} {r['details']}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no log events")
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    rows = admin(args).call("GET", f"/api/v1/sep2/subscriptions?{_q(lfdi=args.lfdi)}")
    lines = []
    for r in rows:
        last = r["last"] or {}
        lines.append(
            f"{r['href']:24} {r['resource']:36} -> {r['notification_uri']}  delivered={r['delivered']} "
            f"pending={r['pending']} failed={r['failed']} {last.get('last_error') or ''}".rstrip()
        )
    emit(args, rows, "\n".join(lines) or "no subscriptions")
    return 0


def _post(args: argparse.Namespace, path: str, body: dict) -> int:
    out = admin(args).call("POST", path, body)
    emit(args, out, f"ok: {out.get('href', '') if isinstance(out, dict) else out}")
    return 0


def _get(args: argparse.Namespace, path: str) -> int:
    out = admin(args).call("GET", path)
    emit(args, out)
    return 0


def cmd_price(args: argparse.Namespace) -> int:
    blocks = []
    for raw in args.price:
        price, _, start = raw.partition("@")
        try:
            blocks.append({"price": int(price), **({"start_value": int(start)} if start else {})})
        except ValueError:
            raise CliError(f"--price {raw!r}: expected PRICE or PRICE@START_VALUE (integers)") from None
    body = {
        "start": args.start,
        "duration_s": args.duration,
        "prices": blocks,
        "tou_tier": args.tou_tier,
        "description": args.description,
    }
    if args.rate:
        body["rate"] = int(args.rate) if args.rate.isdigit() else args.rate
    return _post(args, f"/api/v1/tariffs/{args.tariff}/prices", body)


def cmd_dr_event(args: argparse.Namespace) -> int:
    control: dict = {}
    if args.cooling_setpoint is not None or args.heating_setpoint is not None:
        control["setPoint"] = {
            k: v
            for k, v in (
                ("coolingSetpoint", args.cooling_setpoint),
                ("heatingSetpoint", args.heating_setpoint),
            )
            if v is not None
        }
    if args.cooling_offset is not None or args.heating_offset is not None:
        control["offset"] = {
            k: v
            for k, v in (("coolingOffset", args.cooling_offset), ("heatingOffset", args.heating_offset))
            if v is not None
        }
    if args.duty_cycle is not None:
        control["dutyCycle"] = {"normalValue": args.duty_cycle}
    if args.load_reduction is not None:
        control["applianceLoadReduction"] = {"type": args.load_reduction}
    if args.target_reduction:
        kind, _, value = args.target_reduction.partition(":")
        try:
            control["targetReduction"] = {"type": int(kind), "value": int(value)}
        except ValueError:
            raise CliError("--target-reduction must be TYPE:VALUE (integers)") from None
    hexes = [c for c in args.category if all(ch in "0123456789abcdefABCDEF" for ch in c)]
    if hexes and len(hexes) != len(args.category):
        raise CliError("--category: give names or one hex bit map, not both")
    category = hexes[0] if hexes else args.category
    body = {
        "start": args.start,
        "duration_s": args.duration,
        "device_category": category,
        "control": control,
        "description": args.description,
        "response_required": args.response_required,
        "randomize_start_s": args.randomize_start,
    }
    return _post(args, f"/api/v1/dr-programs/{args.program}/events", body)
