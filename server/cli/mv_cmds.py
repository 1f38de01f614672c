"""``dso mv EVENT``: what an event delivered against its baseline, per resource, node and program; ``--csv``
writes the settlement export."""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import Any

from server.choices import MV_ADJUSTMENTS
from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mv", help="measurement and verification of an event: baseline, measured, delivered kW"
    )
    p.add_argument("event", type=int, help="event id")
    p.add_argument("--csv", metavar="FILE", help="write the settlement CSV to FILE ('-' for stdout)")
    p.add_argument("--adjustment", choices=list(MV_ADJUSTMENTS), help="same-day adjustment (multiplicative)")
    p.add_argument("--cap", type=float, help="adjustment cap (0.2: factor within 0.8..1.2)")
    p.add_argument("--days", type=int, help="similar days averaged (10)")
    p.add_argument("--step", type=int, metavar="SECONDS", help="settlement interval (900)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_mv)


def _energy_kwh(intervals: list[dict[str, Any]]) -> str:
    if any(i["delivered_kw"] is None for i in intervals):
        return "unknown (missing data)"
    from datetime import datetime

    kwh = sum(
        i["delivered_kw"]
        * (datetime.fromisoformat(i["end"]) - datetime.fromisoformat(i["start"])).total_seconds()
        / 3600
        for i in intervals
    )
    return f"{kwh:.3f} kWh"


def _mean_kw(intervals: list[dict[str, Any]], key: str) -> str:
    values = [i[key] for i in intervals if i[key] is not None]
    return f"{sum(values) / len(values):8.3f}" if values else "       -"


def lines(report: dict[str, Any]) -> list[str]:
    out = [
        f"event {report['event_id']} ({report['kind']}, program {report['program']}): "
        f"{report['start'][:16]} .. {report['end'][:16]} UTC, {report['direction']} reduction, {report['method']}",
        f"{'resource':44} {'node':14} days  factor  base kW  meas kW  deliv kW  delivered",
    ]
    for r in report["resources"]:
        factor = "-" if r["adjustment_factor"] is None else f"{r['adjustment_factor']:.3f}"
        out.append(
            f"{r['resource'][:44]:44} {(r['node'] or '-')[:14]:14} {len(r['days_used']):>4} {factor:>7} "
            f"{_mean_kw(r['intervals'], 'baseline_kw')} {_mean_kw(r['intervals'], 'measured_kw')} "
            f"{_mean_kw(r['intervals'], 'delivered_kw')}  {_energy_kwh(r['intervals'])}"
            + (f"  [{', '.join(r['flags'])}]" if r["flags"] else "")
        )
    for n in report["nodes"]:
        out.append(
            f"node {n['node'] or '(no node)'}: {n['resources']} resource(s), {_energy_kwh(n['intervals'])}"
        )
    out.append(f"program {report['program']}: {_energy_kwh(report['program_total'])}")
    if not report["resources"]:
        out.append("the event reached no resource")
    return out


def cmd_mv(args: argparse.Namespace) -> int:
    query = {
        k: str(v)
        for k, v in (
            ("adjustment", args.adjustment),
            ("cap", args.cap),
            ("days", args.days),
            ("step_s", args.step),
        )
        if v is not None
    }
    path = f"/api/v1/events/{args.event}/mv" + ("?" + urllib.parse.urlencode(query) if query else "")
    report = admin(args).call("GET", path)
    if args.csv:
        from server.core import mv  # the store's models come with it: imported only when a CSV is asked for

        text = mv.csv_text(report)
        if args.csv == "-":
            print(text, end="")
            return 0
        try:
            Path(args.csv).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.csv}: {exc.strerror}") from None
    emit(
        args,
        report,
        "\n".join(lines(report)) + (f"\nsettlement CSV written to {args.csv}" if args.csv else ""),
    )
    return 0
