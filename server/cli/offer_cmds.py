"""``dso offers``: aggregators' flexibility offers (window, kW up/down, price), withdrawing one, and clearing open
offers against a need."""

from __future__ import annotations

import argparse
import urllib.parse

from server.choices import OFFER_STATUSES
from server.cli.common import add_config_arg, add_json_arg, admin, emit
from server.cli.durations import seconds


def _kw_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()] if text else []


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("offers", help="flexibility offers of aggregators and their clearing")
    osub = p.add_subparsers(dest="offers_command", metavar="ACTION", required=True, parser_class=type(p))
    p = osub.add_parser("add", help="record an offer of a VEN")
    p.add_argument("--ven", required=True, help="the VEN's name")
    p.add_argument("--start", default="now", help="ISO 8601 with offset, or now")
    p.add_argument("--duration", type=seconds, required=True, help="e.g. 3600, 90m, 2h")
    p.add_argument(
        "--up-kw", type=float, default=0.0, help="net import it can add (consume more, export less)"
    )
    p.add_argument("--down-kw", type=float, default=0.0, help="net import it can shed")
    p.add_argument("--price", type=float, required=True, help="per kWh")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_add)
    p = osub.add_parser("list", help="offers, newest first")
    p.add_argument("--status", choices=list(OFFER_STATUSES))
    p.add_argument("--limit", type=int, default=100)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = osub.add_parser("withdraw", help="withdraw an open offer")
    p.add_argument("id", type=int)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_withdraw)
    p = osub.add_parser("clear", help="clear open offers against a need; cleared offers become events")
    p.add_argument("--start", required=True, help="ISO 8601 with offset: the first interval of the need")
    p.add_argument("--step", type=seconds, default=900)
    p.add_argument(
        "--up-kw", type=_kw_list, default=[], help="kW of up flexibility needed per interval, a,b,c"
    )
    p.add_argument("--down-kw", type=_kw_list, default=[], help="kW of down flexibility needed per interval")
    p.add_argument(
        "--up-cost", type=float, default=0.0, help="per kWh: what the plan pays otherwise (curtailment)"
    )
    p.add_argument("--down-cost", type=float, default=0.0, help="per kWh: what the plan pays otherwise")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_clear)


def _line(o: dict) -> str:
    cleared = (
        f" cleared {o['cleared_direction']} {o['cleared_kw']:g} kW ({o['cleared_kwh']:g} kWh) at {o['cleared_price']:g}"
        f" -> event {o['event_id']}"
        if o["status"] == "cleared"
        else (f" ({o['reason']})" if o["reason"] else "")
    )
    return (
        f"{o['id']:>5} {o['ven']:20} {o['start'][:16]}..{o['end'][11:16]} up {o['up_kw']:g} kW down "
        f"{o['down_kw']:g} kW at {o['price']:g}/kWh  {o['status']}{cleared}"
    )


def cmd_add(args: argparse.Namespace) -> int:
    body = {
        "ven": args.ven,
        "start": args.start,
        "duration_s": args.duration,
        "up_kw": args.up_kw,
        "down_kw": args.down_kw,
        "price": args.price,
    }
    offer = admin(args).call("POST", "/api/v1/offers", body)
    emit(args, offer, _line(offer))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)} | ({"status": args.status} if args.status else {})
    rows = admin(args).call("GET", "/api/v1/offers?" + urllib.parse.urlencode(query))
    emit(args, rows, "\n".join(_line(o) for o in rows) or "no offers")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    offer = admin(args).call("POST", f"/api/v1/offers/{args.id}/withdraw")
    emit(args, offer, _line(offer))
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    body = {
        "start": args.start,
        "step_s": args.step,
        "up_kw": args.up_kw,
        "down_kw": args.down_kw,
        "up_cost": args.up_cost,
        "down_cost": args.down_cost,
    }
    out = admin(args).call("POST", "/api/v1/offers/clear", body)
    lines = [
        f"offer {a['offer_id']} ({a['ven']}): {a['direction']} {a['cleared_kw']:g} kW, {a['cleared_kwh']:g} kWh "
        f"at {a['price']:g} = {a['cost']:.2f}"
        for a in out["awards"]
    ] + [f"offer {k}: rejected, {why}" for k, why in out["rejected"].items()]
    lines.append(f"cost {out['cost']:.2f}; unmet up {max(out['unmet_up_kw'], default=0):g} kW, "
                 f"down {max(out['unmet_down_kw'], default=0):g} kW")  # fmt: skip
    emit(args, out, "\n".join(lines))
    return 0
