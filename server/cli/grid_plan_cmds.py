"""``dso plan --grid`` and ``dso grid state``: the grid-aware planner run offline on a network model (a SimBench
code with its profiles as the forecast, or a pandapower JSON file with profiles), printed or as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from server.cli.common import CliError


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Solvers and power-flow libraries write banners to file descriptor 1; keep stdout for the result."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def add_grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--day", type=int, help="day of the profile year, 0 = 1 January (SimBench grids)")
    p.add_argument(
        "--profiles", metavar="FILE.json", help="profiles for a pandapower JSON grid (Profiles.to_dict)"
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=0.5,
        help="forecast quantile to plan against (0.9: high generation, low load); default 0.5",
    )


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    from server.orchestration.network.model import NetworkError, Profiles
    from server.orchestration.network.simbench_io import load_grid

    try:
        model, profiles = load_grid(args.grid, args.day)
    except NetworkError as exc:
        raise CliError(str(exc)) from None
    if args.profiles:
        profiles = Profiles.from_dict(json.loads(Path(args.profiles).read_text()))
    if profiles is None:
        raise CliError("a pandapower JSON grid needs --profiles FILE.json")
    return model, profiles


def cmd_plan_grid(args: argparse.Namespace) -> int:
    from server.orchestration.envelopes import POLICIES
    from server.orchestration.grid_planner import PlannerOptions, plan_grid
    from server.orchestration.grid_report import report

    if args.policy not in POLICIES:
        raise CliError(f"--policy must be one of {', '.join(POLICIES)}")
    with _stdout_to_stderr():
        model, profiles = load(args)
        try:
            plan = plan_grid(
                model, profiles, PlannerOptions(quantile=args.quantile, max_iterations=args.iterations)
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        doc, chosen = report(
            plan,
            args.policy,
            check_envelopes=not args.no_envelope_check,
            grid=args.grid,
            day=args.day,
            quantile=args.quantile,
        )
        if args.plot:
            plot_plan(plan, doc, chosen, Path(args.plot))
    if args.json:
        print(json.dumps(doc))
    else:
        print("\n".join(plan_lines(doc)))
    return 0


def _cat(c: dict) -> str:
    return f"{c['intervals']} interval(s)" + (f", worst {c['worst']}" if c["worst"] is not None else "")


def plan_lines(doc: dict) -> list[str]:
    labels = {
        "vm_high": "voltage above band",
        "vm_low": "voltage below band",
        "line": "lines over rating",
        "trafo": "transformers over rating",
        "no_convergence": "power flow not converged",
    }
    lines = [
        f"grid plan {doc['grid']} day {doc['day']} ({doc['intervals']} x {doc['step_s'] // 60} min from "
        f"{doc['start']}), quantile {doc['quantile']}, {doc['network']['buses']} buses, "
        f"{doc['network']['lv_zones']} LV zones"
    ]
    lines.append(
        f"  resources: {doc['resources']['pv']} generators, {doc['resources']['batteries']} storage, "
        f"{doc['resources']['evs']} charging points, {doc['resources']['dr']} DR loads"
    )
    for key, label in labels.items():
        b, a = doc["violations_before"][key], doc["violations_after"][key]
        if b["intervals"] or a["intervals"]:
            lines.append(f"  {label}: before {_cat(b)}; after {_cat(a)}")
    if not doc["remaining"]:
        lines.append("  after the plan the AC power flow shows no violation in any interval")
    for v in doc["remaining"][:20]:
        lines.append(
            f"  remaining: {v['kind']} {v['element']} in {len(v['intervals'])} interval(s), worst "
            f"{v['worst']} at {v['worst_interval']}: {v['reason']}"
        )
    lines.append(
        f"  curtailed {doc['curtailed_kwh']:g} kWh of {doc['generation_available_kwh']:g} kWh "
        f"({doc['curtailed_share'] * 100:.2f} %)"
    )
    sh = doc["shifted"]
    lines.append(
        f"  storage charged {sh['battery_charged_kwh']:g} kWh, EV energy moved {sh['ev_energy_moved_kwh']:g}"
        f" kWh, DR shed {sh['dr_shed_kwh']:g} kWh"
    )
    lines.append(f"  cost {doc['cost']['plan']['total']:g} (unmanaged {doc['cost']['unmanaged']['total']:g})")
    e = doc["envelopes"]
    lines.append(
        f"  export over {e['sites']} connection points (could export {e['possible_export_kwh']:g} kWh):"
    )
    for name, x in list(e["policies"].items()) + list(e["static"].items()):
        check = x.get("ac_check")
        ac = (
            ""
            if check is None
            else (
                "AC: no violation"
                if not check
                else "AC: "
                + ", ".join(f"{k} {c['intervals']} interval(s) worst {c['worst']}" for k, c in check.items())
            )
        )
        lines.append(f"    {name:>12}: {x['export_kwh']:>10g} kWh  {ac}")
    lines.append(
        f"  solve {doc['solve_seconds']:g} s, power flow {doc['pf_seconds']:g} s ({doc['pf_runs']} runs), "
        f"{len(doc['iterations'])} iteration(s), best {doc['best_iteration']}"
    )
    return lines


def plot_plan(plan: Any, doc: dict, chosen: Any, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'opendso[plot]'") from None
    import numpy as np

    hours = np.arange(plan.fleet.steps) * plan.fleet.step_h
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax = axes[0]
    for label, ac, style in (("before", plan.ac_before, "--"), ("after", plan.ac_after, "-")):
        ax.plot(hours, np.nanmax(ac.vm_pu, axis=1), style, label=f"max {label}")
        ax.plot(hours, np.nanmin(ac.vm_pu, axis=1), style, label=f"min {label}")
    ax.axhline(max(b.v_max_pu for b in plan.model.buses), color="k", lw=0.5)
    ax.axhline(min(b.v_min_pu for b in plan.model.buses), color="k", lw=0.5)
    ax.set_ylabel("voltage, pu")
    ax.legend(fontsize=7, ncol=4)
    ax = axes[1]
    for label, ac, style in (("before", plan.ac_before, "--"), ("after", plan.ac_after, "-")):
        ax.plot(hours, np.nanmax(ac.trafo_loading, axis=1, initial=0), style, label=f"transformer {label}")
        ax.plot(hours, np.nanmax(ac.line_loading, axis=1, initial=0), style, label=f"line {label}")
    ax.axhline(100, color="k", lw=0.5)
    ax.set_ylabel("max loading, %")
    ax.legend(fontsize=7, ncol=4)
    ax = axes[2]
    if chosen is not None and chosen.size:
        ax.plot(hours, chosen.mean(axis=1), label=f"mean envelope ({doc['policy']})")
        ax.plot(hours, chosen.min(axis=1), ":", label="min envelope")
    for lim in (1.5, 5.0):
        ax.axhline(lim, color="grey", lw=0.5)
    ax.set_ylabel("export limit per site, kW")
    ax.set_xlabel("hour")
    ax.legend(fontsize=7)
    fig.suptitle(f"{doc['grid']} day {doc['day']}")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def cmd_grid_state(args: argparse.Namespace) -> int:
    from server.orchestration.grid_state import predict_state

    with _stdout_to_stderr():
        model, profiles = load(args)
        state = predict_state(model, profiles, args.quantile)
    if args.json:
        print(json.dumps(state))
        return 0
    s = state["summary"]
    lines = [
        f"predicted state of {state['grid']} from {state['start']} ({state['intervals']} intervals), "
        f"quantile {state['quantile']}",
        "  interval  vm min    vm max   line max %  trafo max %",
    ]
    for t in range(state["intervals"]):
        lines.append(
            f"  {t:>8}  {s['vm_min_pu'][t]:.4f}  {s['vm_max_pu'][t]:.4f}  {s['line_loading_max'][t]:>10.1f}"
            f"  {s['trafo_loading_max'][t]:>11.1f}"
        )
    for v in state["flagged"][:30]:
        lines.append(
            f"  flagged: {v['kind']} {v['element']} {v['name']!r} in {len(v['intervals'])} interval(s), "
            f"worst {v['worst']} at {v['worst_interval']}"
        )
    if len(state["flagged"]) > 30:
        lines.append(f"  ... {len(state['flagged']) - 30} more (--json lists all)")
    print("\n".join(lines))
    return 0
