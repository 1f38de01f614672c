"""One run of the loop's planner (pure computation, in an executor): the planning model of ``plan_model``,
the grid-aware planner, the chosen envelope policy with its own AC check, and per resource the blocks of equal
value that become events, each with why it exists (the limits the unmanaged forecast broke in those intervals,
and how loaded the zone's transformer is before and after):

* a site's envelope (export and import limit where they bind) goes to its 2030.5 devices: the export limit
  shared by PV nameplate, the import limit by power rating over its PV and battery devices (``device:LFDI``,
  one block per run of equal limit pairs);
* a battery's planned power (``device:LFDI:storage``), an EV charger's planned charging as its import limit
  (``device:LFDI:ev``), a load's planned reduction (``ven:VENID`` LOAD_DISPATCH, ``device:LFDI:dr`` a DRLC
  targetReduction in W);
* the objective's price series, when the loop gave one (``outputs["price"]``)."""

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
from server.orchestration.resources import Costs
from server.orchestration.schedule import Schedule

MIN_EV_W = 50.0  # an EV charger's window is where it may charge: limits below this are sent as 0


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


def base_blocks(
    series: dict[str, tuple[np.ndarray, np.ndarray]], step: float = ROUND_W
) -> list[tuple[int, int, dict[str, float]]]:
    """Runs of intervals where at least one field is active and every active field's (rounded) value, and
    which fields are active, stay equal: [(first, end (exclusive), {field: value})]."""
    n = len(next(iter(series.values()))[0]) if series else 0
    keys: list[tuple[tuple[str, float], ...] | None] = []
    for t in range(n):
        key = tuple(
            (name, float(np.round(values[t] / step) * step))
            for name, (values, active) in series.items()
            if active[t]
        )
        keys.append(key or None)
    out: list[tuple[int, int, dict[str, float]]] = []
    t = 0
    while t < n:
        if keys[t] is None:
            t += 1
            continue
        first = t
        while t < n and keys[t] == keys[first]:
            t += 1
        out.append((first, t, dict(keys[first] or ())))
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
    costs = Costs(price=np.array(inputs.price, dtype=float)) if inputs.price is not None else None
    try:
        plan = plan_grid(
            built.network,
            built.profiles,
            PlannerOptions(
                quantile=inputs.quantile,
                max_iterations=inputs.iterations,
                workers=1,
                costs=costs,
                offers=built.flex,
            ),
        )
    finally:
        lp.set_time_limit(0)
    times = [t.isoformat() for t in inputs.times()]
    # envelopes of the chosen policy around the plan's operating point, and their own AC check
    s = env.sites(plan.net, plan.fleet, plan.schedule)
    op = ac_point(plan.model, plan.net.tree, plan.ac_after)
    e = env.envelopes(plan.net, s, op, inputs.policy, plan.margins)
    imp = env.import_envelopes(plan.net, s, op, inputs.policy, plan.margins)
    runner = AcRunner(plan.model)
    env_check = violations(
        plan.model, runner.run(env.export_schedule(plan.model, plan.fleet, plan.schedule, s, e))
    )
    imp_check = violations(plan.model, runner.run(env.import_schedule(plan.model, plan.schedule, s, imp)))
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
    # the site's import limit goes to its 2030.5 PV and battery devices, shared by their power rating
    carriers: dict[str, tuple[int, float]] = {}  # LFDI -> (bus, rating kW)
    for r in built.pv + built.batteries:
        if r.party == "device":
            bus, kw = carriers.get(r.id, (r.bus, 0.0))
            carriers[r.id] = (bus, kw + r.power_kw)
    site_rating: dict[int, float] = {}
    for bus, kw in carriers.values():
        site_rating[bus] = site_rating.get(bus, 0.0) + kw
    steps = len(times)
    none = np.zeros(steps, dtype=bool)

    def import_series(lfdi: str) -> tuple[np.ndarray, np.ndarray, int | None, float]:
        bus, kw = carriers.get(lfdi, (-1, 0.0))
        c = col.get(bus)
        if c is None:
            return np.zeros(steps), none, None, 0.0
        share = kw / site_rating[bus] if site_rating[bus] > 0 else 1.0
        binding = imp[:, c] < s.import_cap_kw[:, c] - 0.01
        return imp[:, c] * 1000 * share, binding, c, share

    def import_why(c: int, share: float, t0: int, t1: int) -> dict[str, Any]:
        return {
            "site_could_import_kw": round(float(s.import_cap_kw[t0:t1, c].max()), 3),
            "site_import_envelope_kw": round(float(imp[t0:t1, c].min()), 3),
            "share_of_site_import": round(share, 4),
        }

    def envelope_blocks(
        lfdi: str | None, bus: int, exp: tuple[np.ndarray, np.ndarray] | None, share: float
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if exp is not None:
            series["opModExpLimW"] = (np.maximum(exp[0], 0.0), exp[1])
        imp_w, imp_on, ic, ishare = import_series(lfdi) if lfdi else (None, none, None, 0.0)
        if imp_w is not None and ic is not None:
            series["opModImpLimW"] = (np.maximum(imp_w, 0.0), imp_on)
        c = col.get(bus)
        out = []
        for t0, t1, base in base_blocks(series):
            field = "opModExpLimW" if "opModExpLimW" in base else "opModImpLimW"
            why: dict[str, Any] = {"site_bus": bus, "policy": inputs.policy}
            if "opModExpLimW" in base and c is not None:
                why |= {
                    "site_could_export_kw": round(float(s.cap_kw[t0:t1, c].max()), 3),
                    "site_envelope_kw": round(float(e[t0:t1, c].min()), 3),
                    "share_of_site": round(share, 4),
                }
            if "opModImpLimW" in base and ic is not None:
                why |= import_why(ic, ishare, t0, t1)
            why |= {"limits_broken_unmanaged": _reasons(plan, t0, t1), **zone_info(bus, t0, t1)}
            out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": field,
                    "value_w": base[field],
                    "base": base,
                    "why": why,
                }
            )
        return out, (imp_w if imp_w is not None and ic is not None else None)

    for k, r in enumerate(built.pv):
        c = col.get(r.bus)
        if c is None:
            continue
        share = r.power_kw / plate[r.bus] if plate[r.bus] > 0 else 1.0
        limit_w = e[:, c] * 1000 * share
        binding = e[:, c] < s.cap_kw[:, c] - 0.01
        out, imp_w = envelope_blocks(r.id if r.party == "device" else None, r.bus, (limit_w, binding), share)
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
        if imp_w is not None:
            resources[r.key]["import_envelope_w"] = [round(float(x), 1) for x in imp_w]
    # a battery device without PV carries its site's import envelope on its own
    for r in built.batteries:
        key = f"device:{r.id}"
        if r.party != "device" or key in resources:
            continue
        out, imp_w = envelope_blocks(r.id, r.bus, None, 0.0)
        if out and imp_w is not None:
            resources[key] = {
                "kind": "site",
                "party": "device",
                "id": r.id,
                "bus": r.bus,
                "import_envelope_w": [round(float(x), 1) for x in imp_w],
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
    for r in built.evs:
        idx = load_idx[built.ev_load[r.key]]
        planned_w = plan.schedule.load_p[:, idx] * 1e6
        window = np.zeros(steps, dtype=bool)
        ev = next((x for x in plan.fleet.evs if x.load == idx), None)
        for session in ev.sessions if ev is not None else []:
            window[session.t0 : session.t1] = True
        unmanaged_w = plan.fleet.baseline.load_p[:, idx] * 1e6
        allowed = np.where(planned_w >= MIN_EV_W, planned_w, 0.0)
        out = []
        for t0, t1, v in blocks(allowed, window):
            out.append(
                {
                    "t0": t0,
                    "t1": t1,
                    "start": times[t0],
                    "field": "opModImpLimW",
                    "value_w": max(v, 0.0),
                    "why": {
                        "site_bus": r.bus,
                        "action": "charge" if v > 0 else "wait",
                        "unmanaged_kw": round(float(unmanaged_w[t0:t1].mean()) / 1000, 3),
                        "energy_needed_kwh": round(r.energy_kwh, 3),
                        "limits_broken_unmanaged": _reasons(plan, t0, t1),
                        **zone_info(r.bus, t0, t1),
                    },
                }
            )
        resources[r.key] = {
            "kind": "ev",
            "party": r.party,
            "id": r.id,
            "bus": r.bus,
            "power_kw": r.power_kw,
            "energy_kwh": r.energy_kwh,
            "planned_w": [round(float(x), 1) for x in planned_w],
            "unmanaged_w": [round(float(x), 1) for x in unmanaged_w],
            "blocks": out,
        }
    sharing: dict[int, int] = {}
    for r in built.dr:
        sharing[r.bus] = sharing.get(r.bus, 0) + 1
    for r in built.dr:
        at = [
            load_idx[x.id]
            for x in built.network.loads
            if x.bus == r.bus and x.kind != "ev" and x.id not in offer_loads
        ]
        shed_kw = (plan.fleet.baseline.load_p[:, at] - plan.schedule.load_p[:, at]).sum(axis=1) * 1000
        shed_kw = shed_kw / sharing[r.bus]  # resources at one connection point share its reduction
        out = []
        device = r.party == "device"
        for t0, t1, value in blocks(-shed_kw * 1000, shed_kw >= MIN_SHED_KW):
            block: dict[str, Any] = {
                "t0": t0,
                "t1": t1,
                "start": times[t0],
                "field": "targetReduction" if device else "LOAD_DISPATCH",
                "value_w": -value if device else value,
                "why": {
                    "site_bus": r.bus,
                    "action": "reduce load",
                    "limits_broken_unmanaged": _reasons(plan, t0, t1),
                    **zone_info(r.bus, t0, t1),
                },
            }
            if device:
                block["device_category"] = f"{r.category:08X}"
            out.append(block)
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
        "import_envelope_violation_intervals": count(imp_check.to_dict()),
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
        "import_envelopes": imp_check.to_dict(),
        "remaining": [v.to_dict() for v in plan.after.by_element],
        "transformers": transformers,
        "power_flows": plan.pf_runs + runner.total_runs,
    }
    outputs: dict[str, Any] = {
        "intervals": times,
        "resources": resources,
        "policy": inputs.policy,
        "clearing": clearing,
    }
    if inputs.price is not None:
        outputs["price"] = {"per_kwh": [round(float(x), 5) for x in plan.costs.price]}
    return {"outputs": outputs, "check": check, "defaults": built.defaults}


__all__ = ["Schedule", "base_blocks", "blocks", "solve"]
