"""One run of the loop's planner (pure computation, in an executor): the planning model of ``plan_model``,
the grid-aware planner, the chosen envelope policy with its own AC check, and per resource the blocks of equal
value that become events, each with why it exists (the limits the unmanaged forecast broke in those intervals,
and how loaded the zone's transformer is before and after)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from server.orchestration import envelopes as env
from server.orchestration import lp
from server.orchestration.acflow import AcResult, AcRunner, violations
from server.orchestration.grid_planner import GridPlan, PlannerOptions, plan_grid
from server.orchestration.linear import ac_point
from server.orchestration.plan_model import (
    MIN_BATTERY_W,
    MIN_OFFER_KW,
    MIN_SHED_KW,
    ROUND_W,
    Built,
    LoopInputs,
    build,
)
from server.orchestration.schedule import Schedule


def blocks(values: np.ndarray, active: np.ndarray, step: float = ROUND_W) -> list[tuple[int, int, float]]:
    """Runs of equal (rounded) values where ``active``: [(first, end (exclusive), value)]."""
    out: list[tuple[int, int, float]] = []
    rounded = np.round(values / step) * step
    t, n = 0, len(values)
    while t < n:
        if not active[t]:
            t += 1
            continue
        s = t
        while t < n and active[t] and rounded[t] == rounded[s]:
            t += 1
        out.append((s, t, float(rounded[s])))
    return out


def _trafo_loading(built: Built, ac: AcResult) -> dict[int, np.ndarray]:
    return {t.id: ac.trafo_loading[:, k] for k, t in enumerate(built.network.trafos)}


def _reasons(plan: GridPlan, t0: int, t1: int) -> list[str]:
    out = []
    for v in plan.before.by_element:
        hit = [t for t in v.intervals if t0 <= t < t1]
        if hit:
            label = v.name or v.element
            out.append(f"{v.kind} {label}: worst {round(v.worst, 3)} (limit {v.limit}) unmanaged")
    return out[:5]


def _clearing(
    inputs: LoopInputs,
    built: Built,
    plan: GridPlan,
    resources: dict[str, Any],
    times: list[str],
    zone_info: Any,
) -> list[dict[str, Any]]:
    """Each open offer the plan considered: what it bought of it per interval (kW, + more import), at what cost,
    or why nothing; a bought offer becomes a resource ``offer:ID`` of the VEN whose blocks are its dispatch."""
    step_h = inputs.step_s / 3600
    position = {x.id: k for k, x in enumerate(plan.model.loads)}
    curtailing = sum(
        ((u.avail_kw - plan.schedule.sgen_p[:, u.sgen] * 1000).clip(0) for u in plan.fleet.pv),
        np.zeros(inputs.steps),
    )
    out = []
    for (o, load_id), spec in zip(built.offers, built.flex, strict=True):
        k = position[load_id]
        kw = (plan.schedule.load_p[:, k] - plan.fleet.baseline.load_p[:, k]) * 1000
        kw = np.where(np.abs(kw) >= MIN_OFFER_KW, np.round(kw * 1000 / ROUND_W) * ROUND_W / 1000, 0.0)
        up, down = float(kw.clip(0).sum() * step_h), float((-kw).clip(0).sum() * step_h)
        taken = bool(np.any(kw != 0))
        entry: dict[str, Any] = {
            "offer": o.id,
            "ven": o.ven,
            "bus": o.bus,
            "window": [o.start.isoformat(), o.end.isoformat()],
            "up_kw": o.up_kw,
            "down_kw": o.down_kw,
            "price": o.price,
            "kw": [round(float(v), 3) for v in kw],
            "up_kwh": round(up, 3),
            "down_kwh": round(down, 3),
            "kwh": round(up + down, 3),
            "cost": round((up + down) * o.price, 4),
            "direction": ("both" if up and down else "up" if up else "down") if taken else "",
            "taken": taken,
            "why": "",
        }
        if not taken:
            available = (spec.up_kw > 0) | (spec.down_kw > 0)
            if not available.any():
                entry["why"] = "its window covers no whole interval of the plan"
            elif (spec.up_kw > 0).any() and (curtailing[spec.up_kw > 0] > MIN_OFFER_KW).any():
                dearest = float((plan.costs.price + plan.costs.curtail)[spec.up_kw > 0].max())
                entry["why"] = (
                    f"price {o.price:g} per kWh: curtailing PV (at most {dearest:g} per kWh) is cheaper"
                )
            else:
                entry["why"] = "the plan needs no flexibility of it at its price where and when it is offered"
        out.append(entry)
        if not taken:
            continue
        blocks_out = []
        for t0, t1, value in blocks(kw * 1000, kw != 0):
            blocks_out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": "LOAD_DISPATCH",
                    "value_w": value,
                    "why": {
                        "site_bus": o.bus,
                        "action": f"offer {o.id} cleared {'up' if value > 0 else 'down'} at {o.price:g} per kWh",
                        "offer": o.id,
                        "limits_broken_unmanaged": _reasons(plan, t0, t1),
                        **zone_info(o.bus, t0, t1),
                    },
                }
            )
        resources[f"offer:{o.id}"] = {
            "kind": "offer",
            "party": "ven",
            "id": o.ven,
            "bus": o.bus,
            "offer": o.id,
            "price": o.price,
            "kw": entry["kw"],
            "blocks": blocks_out,
        }
    return out


def solve(inputs: LoopInputs) -> dict[str, Any]:
    t_start = time.perf_counter()
    built = build(inputs)
    lp.set_time_limit(inputs.time_limit_s)
    try:
        plan = plan_grid(
            built.network,
            built.profiles,
            PlannerOptions(
                quantile=inputs.quantile, max_iterations=inputs.iterations, workers=1, offers=built.flex
            ),
        )
    finally:
        lp.set_time_limit(0)
    times = [t.isoformat() for t in inputs.times()]
    # envelopes of the chosen policy around the plan's operating point, and their own AC check
    s = env.sites(plan.net, plan.fleet, plan.schedule)
    op = ac_point(plan.model, plan.net.tree, plan.ac_after)
    e = env.envelopes(plan.net, s, op, inputs.policy, plan.margins)
    runner = AcRunner(plan.model)
    env_check = violations(
        plan.model, runner.run(env.export_schedule(plan.model, plan.fleet, plan.schedule, s, e))
    )
    col = {int(b): i for i, b in enumerate(s.buses)}
    load_before = _trafo_loading(built, plan.ac_before)
    load_after = _trafo_loading(built, plan.ac_after)
    zones = inputs.summary["zones"]

    def zone_info(bus: int, t0: int, t1: int) -> dict[str, Any]:
        z = zones[str(built.zone_of_bus[bus])]
        info: dict[str, Any] = {"node": z["node"]}
        if z["trafo"] is not None:
            tid = int(z["trafo"])
            info["transformer_loading_pct"] = {
                "before": round(float(np.nanmax(load_before[tid][t0:t1])), 1),
                "after": round(float(np.nanmax(load_after[tid][t0:t1])), 1),
                "rating_kva": z["rating_kva"],
            }
        return info

    resources: dict[str, Any] = {}
    plate: dict[int, float] = {}
    for r in built.pv:
        plate[r.bus] = plate.get(r.bus, 0.0) + r.power_kw
    for k, r in enumerate(built.pv):
        c = col.get(r.bus)
        if c is None:
            continue
        share = r.power_kw / plate[r.bus] if plate[r.bus] > 0 else 1.0
        limit_w = e[:, c] * 1000 * share
        binding = e[:, c] < s.cap_kw[:, c] - 0.01
        out = []
        for t0, t1, value in blocks(limit_w, binding):
            out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": "opModExpLimW",
                    "value_w": max(value, 0.0),
                    "why": {
                        "site_bus": r.bus,
                        "site_could_export_kw": round(float(s.cap_kw[t0:t1, c].max()), 3),
                        "site_envelope_kw": round(float(e[t0:t1, c].min()), 3),
                        "policy": inputs.policy,
                        "share_of_site": round(share, 4),
                        "limits_broken_unmanaged": _reasons(plan, t0, t1),
                        **zone_info(r.bus, t0, t1),
                    },
                }
            )
        resources[r.key] = {
            "kind": "pv",
            "party": r.party,
            "id": r.id,
            "bus": r.bus,
            "rated_kw": r.power_kw,
            "planned_kw": [round(float(x) * 1000, 3) for x in plan.schedule.sgen_p[:, k]],
            "envelope_w": [round(float(x), 1) for x in limit_w],
            "blocks": out,
        }
    for k, r in enumerate(built.batteries):
        target_w = -plan.schedule.storage_p[:, k] * 1e6  # discharge positive, as opModTargetW
        out = []
        for t0, t1, value in blocks(target_w, np.abs(target_w) >= MIN_BATTERY_W):
            out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": "opModTargetW",
                    "value_w": value,
                    "why": {
                        "site_bus": r.bus,
                        "action": "discharge" if value > 0 else "charge",
                        "limits_broken_unmanaged": _reasons(plan, t0, t1),
                        **zone_info(r.bus, t0, t1),
                    },
                }
            )
        resources[r.key] = {
            "kind": "battery",
            "party": r.party,
            "id": r.id,
            "bus": r.bus,
            "power_kw": r.power_kw,
            "energy_kwh": r.energy_kwh,
            "target_w": [round(float(x), 1) for x in target_w],
            "blocks": out,
        }
    load_idx = {x.id: i for i, x in enumerate(built.network.loads)}
    offer_loads = {load_id for _, load_id in built.offers}
    for r in built.dr:
        idx = [load_idx[x.id] for x in built.network.loads if x.bus == r.bus and x.id not in offer_loads]
        shed_kw = (plan.fleet.baseline.load_p[:, idx] - plan.schedule.load_p[:, idx]).sum(axis=1) * 1000
        out = []
        for t0, t1, value in blocks(-shed_kw * 1000, shed_kw >= MIN_SHED_KW):
            out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": "LOAD_DISPATCH",
                    "value_w": value,
                    "why": {
                        "site_bus": r.bus,
                        "action": "reduce load",
                        "limits_broken_unmanaged": _reasons(plan, t0, t1),
                        **zone_info(r.bus, t0, t1),
                    },
                }
            )
        resources[r.key] = {
            "kind": "dr",
            "party": r.party,
            "id": r.id,
            "bus": r.bus,
            "shed_kw": [round(float(x), 3) for x in shed_kw],
            "blocks": out,
        }
    step_h = inputs.step_s / 3600
    clearing = _clearing(inputs, built, plan, resources, times, zone_info)
    curtailed_t = sum(
        ((u.avail_kw - plan.schedule.sgen_p[:, u.sgen] * 1000).clip(0) for u in plan.fleet.pv),
        np.zeros(inputs.steps),
    )
    curtailed = float(np.sum(curtailed_t) * step_h)
    before, after = plan.before.to_dict(), plan.after.to_dict()

    def count(d: dict[str, Any]) -> int:
        return len({t for c in d.values() for t in c["interval_list"]})

    transformers = {}
    for z in zones.values():
        if z["trafo"] is None:
            continue
        tid = int(z["trafo"])
        transformers[z["node"]] = {
            "rating_kva": z["rating_kva"],
            "before_max_pct": round(float(np.nanmax(load_before[tid])), 1),
            "after_max_pct": round(float(np.nanmax(load_after[tid])), 1),
            "before_pct": [round(float(x), 1) for x in load_before[tid]],
            "after_pct": [round(float(x), 1) for x in load_after[tid]],
        }
    summary = {
        "violation_intervals_before": count(before),
        "violation_intervals_after": count(after),
        "envelope_violation_intervals": count(env_check.to_dict()),
        "curtailed_kwh": round(curtailed, 3),
        "battery_kwh": round(float(np.clip(plan.schedule.storage_p, 0, None).sum() * 1000 * step_h), 3),
        "shed_kwh": round(
            float(
                sum(
                    sum(x for x in res["shed_kw"]) * step_h
                    for res in resources.values()
                    if res["kind"] == "dr"
                )
            ),
            3,
        ),
        "offers_kwh": round(sum(c["kwh"] for c in clearing), 3),
        "offers_cost": round(sum(c["cost"] for c in clearing), 4),
        "offers_taken": sum(1 for c in clearing if c["taken"]),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    # what the plan's own actions cost by the planner's figures (per kWh: curtailment at the energy price plus
    # ``curtail``, load shed at ``dr``, an offer at its price)
    unit = plan.costs
    cost = {
        "curtailment": float((curtailed_t * (unit.price + unit.curtail)).sum() * step_h),
        "demand_response": summary["shed_kwh"] * unit.dr,
        "offers": summary["offers_cost"],
    }
    cost["total"] = sum(cost.values())
    summary["cost"] = {k: round(v, 4) for k, v in cost.items()}
    check = {
        "summary": summary,
        "before": before,
        "after": after,
        "envelopes": env_check.to_dict(),
        "remaining": [v.to_dict() for v in plan.after.by_element],
        "transformers": transformers,
        "power_flows": plan.pf_runs + runner.total_runs,
    }
    outputs = {"intervals": times, "resources": resources, "policy": inputs.policy, "clearing": clearing}
    return {"outputs": outputs, "check": check, "defaults": built.defaults}


__all__ = ["Schedule", "blocks", "solve"]
