"""What a grid plan amounts to, as plain data (the ``dso plan --grid --json`` document): violations before and
after (AC power flow), the planned power of every element by its pandapower table and index, curtailment,
energy shifted, cost, envelopes per policy against static per-site limits (each checked by AC power flow),
timings and iterations."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from server.orchestration import envelopes as env
from server.orchestration.acflow import AcRunner, violations
from server.orchestration.grid_planner import GridPlan
from server.orchestration.linear import ac_point
from server.orchestration.schedule import Schedule


def _kw(a: np.ndarray) -> list[float]:
    return [round(float(x) * 1000, 3) for x in a]


def planned_power(plan: GridPlan) -> dict[str, dict[str, list[float]]]:
    m, s = plan.model, plan.schedule
    return {
        "sgen": {str(x.id): _kw(s.sgen_p[:, k]) for k, x in enumerate(m.sgens)},
        "load": {str(x.id): _kw(s.load_p[:, k]) for k, x in enumerate(m.loads)},
        "storage": {str(x.id): _kw(s.storage_p[:, k]) for k, x in enumerate(m.storages)},
    }


def energy_cost(plan: GridPlan, sched: Schedule) -> dict[str, float]:
    f, c = plan.fleet, plan.costs
    dt = f.step_h
    imp = (sched.load_p.sum(axis=1) + sched.storage_p.sum(axis=1) - sched.sgen_p.sum(axis=1)) * 1000
    curtailed = sum((u.avail_kw - sched.sgen_p[:, u.sgen] * 1000).clip(0).sum() for u in f.pv) * dt
    through = float(np.abs(sched.storage_p).sum() * 1000 * dt)
    shed = (
        sum(((f.baseline.load_p[:, d.load] - sched.load_p[:, d.load]) * 1000).clip(0).sum() for d in f.dr)
        * dt
    )
    parts = {
        "energy": float((c.price * imp).sum() * dt),
        "curtailment": float(curtailed * c.curtail),
        "battery_wear": through * c.wear,
        "demand_response": float(shed * c.dr),
        "offers": float(
            sum(
                np.abs(sched.load_p[:, o.load] - f.baseline.load_p[:, o.load]).sum() * o.price for o in f.flex
            )
            * 1000
            * dt
        ),
    }
    parts["total"] = sum(parts.values())
    return {k: round(v, 2) for k, v in parts.items()}


def shifted(plan: GridPlan) -> dict[str, float]:
    f, s, dt = plan.fleet, plan.schedule, plan.fleet.step_h
    charged = float(sum(np.clip(s.storage_p[:, b.storage], 0, None).sum() for b in f.batteries) * 1000 * dt)
    charged_before = float(
        sum(np.clip(f.baseline.storage_p[:, b.storage], 0, None).sum() for b in f.batteries) * 1000 * dt
    )
    ev_moved = float(
        sum(np.abs(s.load_p[:, e.load] - f.baseline.load_p[:, e.load]).sum() for e in f.evs) * 1000 * dt / 2
    )
    shed = float(
        sum((f.baseline.load_p[:, d.load] - s.load_p[:, d.load]).clip(0).sum() for d in f.dr) * 1000 * dt
    )
    return {
        "battery_charged_kwh": round(charged, 2),
        "battery_charged_unmanaged_kwh": round(charged_before, 2),
        "ev_energy_moved_kwh": round(ev_moved, 2),
        "dr_shed_kwh": round(shed, 2),
    }


def envelope_section(
    plan: GridPlan, policy: str, runner: AcRunner, check: bool = True
) -> tuple[dict[str, Any], np.ndarray | None, Any]:
    """Export per policy and per static limit (kWh over the horizon), each with its AC check."""
    s = env.sites(plan.net, plan.fleet, plan.schedule)
    op = ac_point(plan.model, plan.net.tree, plan.ac_after)
    dt = plan.fleet.step_h
    active = np.flatnonzero(s.cap_kw.sum(axis=1) > 0)
    out: dict[str, Any] = {
        "sites": len(s.buses),
        "possible_export_kwh": round(float(s.cap_kw.sum() * dt), 2),
        "intervals_checked": len(active),
        "policies": {},
        "static": {},
    }
    chosen = None
    cases = [(p, env.envelopes(plan.net, s, op, p, plan.margins)) for p in env.POLICIES]
    cases += [(f"{lim:g}kW", env.static(s, lim)) for lim in env.STATIC_LIMITS_KW]
    for name, e in cases:
        entry: dict[str, Any] = {"export_kwh": round(float(e.sum() * dt), 2)}
        if check and len(active):
            sched = env.export_schedule(plan.model, plan.fleet, plan.schedule, s, e)
            sub = Schedule(
                sched.load_p[active], sched.load_q[active], sched.sgen_p[active], sched.storage_p[active]
            )
            t0 = time.perf_counter()
            v = violations(plan.model, runner.run(sub))
            for x in v.by_element:
                x.intervals = [int(active[t]) for t in x.intervals]
                x.worst_interval = int(active[x.worst_interval])
            entry["ac_check"] = {
                k: {"intervals": c["intervals"], "worst": c["worst"]}
                for k, c in v.to_dict().items()
                if c["intervals"]
            }
            entry["ac_seconds"] = round(time.perf_counter() - t0, 2)
        if name in env.POLICIES:
            out["policies"][name] = entry
        else:
            out["static"][name] = entry
        if name == policy:
            chosen = e
    for name in env.POLICIES:
        p = out["policies"][name]["export_kwh"]
        out["policies"][name]["gain_over_static_kwh"] = {
            k: round(p - v["export_kwh"], 2) for k, v in out["static"].items()
        }
    return out, chosen, s


def report(
    plan: GridPlan,
    policy: str = "equal",
    runner: AcRunner | None = None,
    check_envelopes: bool = True,
    grid: str | None = None,
    day: int | None = None,
    quantile: float = 0.5,
) -> tuple[dict[str, Any], Any]:
    runner = runner or AcRunner(plan.model)
    t0 = time.perf_counter()
    env_out, chosen, s = envelope_section(plan, policy, runner, check_envelopes)
    if chosen is None:
        raise ValueError(f"unknown policy {policy!r}")
    env_seconds = time.perf_counter() - t0
    f = plan.fleet
    avail = float(sum(u.avail_kw.sum() for u in f.pv) * f.step_h)
    curtailed = float(
        sum((u.avail_kw - plan.schedule.sgen_p[:, u.sgen] * 1000).clip(0).sum() for u in f.pv) * f.step_h
    )
    doc: dict[str, Any] = {
        "grid": grid or plan.model.name,
        "day": day,
        "start": plan.profiles.start,
        "step_s": plan.profiles.step_s,
        "intervals": f.steps,
        "quantile": quantile,
        "policy": policy,
        "network": {
            "buses": len(plan.model.buses),
            "lines": len(plan.model.lines),
            "trafos": len(plan.model.trafos),
            "lv_zones": len([z for z in plan.net.zones if z >= 0]),
            "sgens": len(plan.model.sgens),
            "loads": len(plan.model.loads),
            "storages": len(plan.model.storages),
        },
        "resources": {"pv": len(f.pv), "batteries": len(f.batteries), "evs": len(f.evs), "dr": len(f.dr)},
        "violations_before": plan.before.to_dict(),
        "violations_after": plan.after.to_dict(),
        "remaining": [v.to_dict() for v in plan.after.by_element],
        "curtailed_kwh": round(curtailed, 2),
        "generation_available_kwh": round(avail, 2),
        "curtailed_share": round(curtailed / avail, 4) if avail else 0.0,
        "shifted": shifted(plan),
        "cost": {"plan": energy_cost(plan, plan.schedule), "unmanaged": energy_cost(plan, f.baseline)},
        "envelopes": env_out,
        "iterations": [
            {
                "violations": {k: c["intervals"] for k, c in it.violations.to_dict().items()},
                "lp_seconds": round(it.lp_seconds, 3),
                "pf_seconds": round(it.pf_seconds, 2),
                "lps": it.lps,
                "lazy_rounds": it.rounds,
                "lv_zones_asked_by_mv": it.boundary_zones,
            }
            for it in plan.iterations
        ],
        "best_iteration": plan.best_iteration + 1,
        "solve_seconds": round(plan.solve_seconds, 3),
        "pf_seconds": round(plan.pf_seconds, 2),
        "pf_runs": plan.pf_runs,
        "envelope_seconds": round(env_seconds, 2),
        "slack_used": [
            {
                "kind": x.kind,
                "bus": int(plan.net.tree.bus_ids[x.node]),
                "interval": x.interval,
                "amount": round(x.amount, 5),
            }
            for x in plan.slacks[:200]
        ],
        "planned_kw": planned_power(plan),
        "envelopes_kw": {
            str(int(b)): [round(float(v), 3) for v in chosen[:, i]] for i, b in enumerate(s.buses)
        },
    }
    return doc, chosen
