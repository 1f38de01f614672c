"""``dso dispatch``: one decision about a grid node, sent to every resource under it in its own protocol;
``dso plan``: the export-limit plan from the node's latest forecast (optionally dispatched), the offline grid plan
(``--grid``), and the stored plans of the loop (``dso plan list|show|approve|run``)."""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli import grid_plan_cmds, loop_cmds
from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit, local_time
from server.cli.durations import seconds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dispatch", help="limit, connect/disconnect or call demand response on a grid node")
    p.add_argument("--node", required=True)
    p.add_argument("--start", default="now", help="ISO 8601 with offset, or now")
    p.add_argument("--duration", type=seconds, required=True, help="e.g. 3600, 90m, 2h")
    p.add_argument("--export-limit-w", type=float, help="per site (2030.5 opModExpLimW)")
    p.add_argument("--import-limit-w", type=float, help="per site (2030.5 opModImpLimW)")
    p.add_argument("--gen-limit-w", type=float, help="per site (2030.5 opModGenLimW)")
    p.add_argument("--connect", type=int, choices=[0, 1])
    p.add_argument("--dr-level", type=int, choices=[0, 1, 2, 3], help="OpenADR SIMPLE level for VENs")
    p.add_argument("--description", default="")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_dispatch)

    p = sub.add_parser(
        "plan",
        help="plan a grid node against its export limit from its latest load forecast, or plan a whole "
        "network model offline (--grid)",
    )
    loop_cmds.add_plan_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--node", help="a grid node of the running server")
    which.add_argument(
        "--grid",
        metavar="simbench:CODE|FILE.json",
        help="plan a network model offline: voltage and thermal limits, AC power-flow proof",
    )
    p.add_argument(
        "--dispatch", action="store_true", help="send the plan's per-site export limit to the node"
    )
    grid_plan_cmds.add_grid_args(p)
    p.add_argument("--policy", default="equal", help="envelope allocation: equal, proportional or max")
    p.add_argument("--iterations", type=int, default=4, help="re-linearise at most this many times (--grid)")
    p.add_argument(
        "--no-envelope-check", action="store_true", help="skip the AC checks of envelopes (--grid)"
    )
    p.add_argument("--plot", metavar="FILE.png", help="voltages, loadings and envelopes (--grid; matplotlib)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_plan)


def cmd_dispatch(args: argparse.Namespace) -> int:
    body = {
        "node": args.node,
        "start": args.start,
        "duration_s": args.duration,
        "description": args.description,
        "export_limit_w": args.export_limit_w,
        "import_limit_w": args.import_limit_w,
        "generation_limit_w": args.gen_limit_w,
        "dr_level": args.dr_level,
        "connect": None if args.connect is None else bool(args.connect),
    }
    out = admin(args).call("POST", "/api/v1/dispatch", {k: v for k, v in body.items() if v is not None})
    lines = [
        f"dispatch to {out['node']}: {len(out['sep2_controls'])} 2030.5 control(s), "
        f"{len(out['openadr_events'])} OpenADR event(s), {len(out['modbus_scheduled'])} Modbus write(s) scheduled"
    ]
    lines += [f"  skipped: {s}" for s in out["skipped"]]
    emit(args, out, "\n".join(lines))
    return 0


def plan_lines(out: dict, zone: str = "UTC") -> list[str]:
    """The plan for people, its times in ``zone`` (the node's)."""
    lines = [
        f"plan for {out['node']} (forecast run {out['forecast_id']}, {out['sites']} site(s), "
        f"{out['pv_sites']} with PV, {out['pv_rated_kw']:g} kW rated)",
        f"  export limit {out['export_limit_kw']:g} kW; forecast peak export {out['peak_export_kw']:g} kW"
        + (f" at {local_time(out['peak_export_at'], zone)}" if out["peak_export_at"] else "")
        + f", peak import {out['peak_import_kw']:g} kW",
        f"  planned peak export {out['planned_peak_export_kw']:g} kW, curtailing {out['curtailed_kwh']:g} kWh"
        + ("" if out["feasible"] else f" (still {out['violation_kwh']:g} kWh over the limit)"),
    ]
    if out["window_start"]:
        start, end = local_time(out["window_start"], zone), local_time(out["window_end"], zone)
        lines.append(f"  per-site export limit {out['site_export_limit_w']:g} W from {start} to {end}")
    else:
        lines.append("  the forecast stays within the export limit: nothing to dispatch")
    lines += [f"  note: {n}" for n in out["notes"]]
    if out.get("dispatch"):
        lines.append(f"  dispatched: {len(out['dispatch']['sep2_controls'])} 2030.5 control(s)")
    return lines


def cmd_plan(args: argparse.Namespace) -> int:
    if args.action:
        return loop_cmds.cmd_plan_action(args)
    if not args.node and not args.grid:
        raise CliError(
            "give --node NODE, --grid simbench:CODE|FILE.json, or an action (list, show, approve, run)"
        )
    if args.grid:
        return grid_plan_cmds.cmd_plan_grid(args)
    client = admin(args)
    out = client.call("POST", "/api/v1/plans", {"node": args.node, "dispatch": args.dispatch})
    if args.json:
        emit(args, out)
        return 0
    zone = client.call("GET", f"/api/v1/grid/nodes/{urllib.parse.quote(args.node, safe='')}")["timezone"]
    emit(args, out, "\n".join(plan_lines(out, zone)))
    return 0
