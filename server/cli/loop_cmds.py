"""The network model in the server and the plans made on it: ``dso grid import|models|model|map|unmap`` and
``dso plan list|show|approve|run``; ``why_lines`` is what ``dso event show`` prints of an event's plan."""

from __future__ import annotations

import argparse
import datetime as dt
import urllib.parse
from pathlib import Path
from typing import Any

from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def register_grid(gsub: argparse._SubParsersAction) -> None:
    p = gsub.add_parser(
        "import", help="store a network model (a new version of its name): simbench:CODE or FILE.json"
    )
    p.add_argument(
        "source", metavar="simbench:CODE|FILE.json", help="a SimBench code or a pandapower JSON file"
    )
    p.add_argument("--name", help="model name (default: the SimBench code or the file's name)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_import)
    p = gsub.add_parser("models", help="stored network models (newest versions)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_models)
    p = gsub.add_parser("model", help="one stored network model: its buses, zones and what is mapped where")
    p.add_argument("name")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_model)
    for action, helptext in (
        ("map", "connect an enrolled resource at a bus of a model (it joins the bus's transformer node)"),
        ("unmap", "remove a resource's connection"),
    ):
        p = gsub.add_parser(action, help=helptext)
        p.add_argument("model")
        if action == "map":
            p.add_argument("--bus", type=int, required=True, help="bus id of the model (dso grid model NAME)")
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--lfdi", help="a 2030.5 device")
        who.add_argument("--ven", metavar="VENID", help="an OpenADR VEN")
        who.add_argument("--modbus", metavar="NAME", help="an inverter behind the SunSpec Modbus gateway")
        add_config_arg(p)
        add_json_arg(p)
        p.set_defaults(func=cmd_map if action == "map" else cmd_unmap)


def _who(args: argparse.Namespace) -> tuple[str, str]:
    if args.lfdi:
        return "device", args.lfdi
    if args.ven:
        return "ven", args.ven
    return "modbus", args.modbus


def cmd_import(args: argparse.Namespace) -> int:
    if args.source.startswith("simbench:"):
        body: dict[str, Any] = {"source": args.source}
        if args.name:
            body["name"] = args.name
    else:
        path = Path(args.source)
        body = {"name": args.name or path.stem, "pandapower": path.read_text(), "source": path.name}
    out = admin(args).call("POST", "/api/v1/grid/models", body)
    emit(
        args,
        out,
        f"model {out['name']} version {out['version']}: {out['buses']} buses, "
        f"{len(out['zones']) - 1} transformer node(s) under grid node {out['name']}",
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    out = admin(args).call("GET", "/api/v1/grid/models")
    lines = [
        f"{m['name']:<40} v{m['version']:<3} {m['buses']:>5} buses {m['mappings']:>5} mapped  {m['source']}"
        for m in out
    ]
    emit(args, out, "\n".join(lines) or "no network models (dso grid import simbench:CODE | FILE.json)")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    out = admin(args).call("GET", f"/api/v1/grid/models/{_q(args.name)}")
    lines = [f"model {out['name']} version {out['version']} ({out['source']}), {out['buses']} buses"]
    mapped: dict[int, list[str]] = {}
    for m in out["mapped"]:
        mapped.setdefault(m["bus"], []).append(f"{m['kind']} {m['id']}")
    for b in out["buses_detail"]:
        here = ", ".join(mapped.get(b["bus"], []))
        lines.append(f"  bus {b['bus']:>5} {b['name']:<28} {b['kv']:>6g} kV  {b['node']:<40} {here}")
    emit(args, out, "\n".join(lines))
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    kind, ident = _who(args)
    body = {"bus": args.bus, "kind": kind, "id": ident}
    out = admin(args).call("POST", f"/api/v1/grid/models/{_q(args.model)}/mappings", body)
    emit(
        args, out, f"{kind} {out['id']} connected at bus {out['bus']} of {out['model']} (node {out['node']})"
    )
    return 0


def cmd_unmap(args: argparse.Namespace) -> int:
    kind, ident = _who(args)
    admin(args).call("DELETE", f"/api/v1/grid/models/{_q(args.model)}/mappings/{kind}/{_q(ident)}")
    emit(
        args,
        {"model": args.model, "kind": kind, "id": ident},
        f"{kind} {ident} disconnected from {args.model}",
    )
    return 0


# ---------------------------------------------------------------------------------------------------- plans
def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "approve", "run"],
        help="stored plans: list, show ID, approve ID (operator approval), run MODEL (plan now)",
    )
    p.add_argument("target", nargs="?", metavar="ID|MODEL")
    p.add_argument("--model", dest="plan_model", help="list: only this model's plans")
    p.add_argument("--lfdi", help="show: only this 2030.5 device's schedule")
    p.add_argument("--resource", help="show: only this resource (device:LFDI, ven:VENID, modbus:NAME)")
    p.add_argument(
        "--at", help="show: the interval containing this time (HH:MM UTC on the plan's days, or ISO)"
    )


PLAN_TIMEOUT_S = 900.0


def cmd_plan_action(args: argparse.Namespace) -> int:
    client = admin(args)
    if args.action == "list":
        query = f"?model={_q(args.plan_model)}" if args.plan_model else ""
        out = client.call("GET", f"/api/v1/plans/runs{query}")
        lines = [
            f"{p['id']:>6}  {p['model']:<30} {p['trigger']:<9} {p['status']:<10} {p['start']}  "
            f"{(p['reason'] or _summary_line(p['summary']))[:90]}"
            for p in out
        ]
        emit(args, out, "\n".join(lines) or "no plans yet")
        return 0
    if not args.target:
        raise CliError(f"dso plan {args.action} needs {'a model' if args.action == 'run' else 'a plan id'}")
    if args.action == "run":
        # a plan is solved and checked by AC power flow before the answer: minutes on a large grid
        out = client.call("POST", "/api/v1/plans/runs", {"model": args.target}, timeout=PLAN_TIMEOUT_S)
        emit(
            args, out, f"plan {out['id']} of {out['model']}: {out['status']}; {_summary_line(out['summary'])}"
        )
        return 0
    if not args.target.isdigit():
        raise CliError("a plan id is a number")
    if args.action == "approve":
        out = client.call("POST", f"/api/v1/plans/runs/{args.target}/approve", {})
        emit(args, out, f"plan {out['id']} approved by {out['approved_by']}: {out['status']}")
        return 0
    out = client.call("GET", f"/api/v1/plans/runs/{args.target}")
    emit(
        args,
        _filtered(out, args),
        "\n".join(show_lines(out, args.resource or (args.lfdi and f"device:{args.lfdi.upper()}"), args.at)),
    )
    return 0


def _filtered(out: dict, args: argparse.Namespace) -> dict:
    key = args.resource or (args.lfdi and f"device:{args.lfdi.upper()}")
    if not key:
        return out
    res = out["outputs"].get("resources", {})
    keep = {k: v for k, v in res.items() if k == key or k.startswith(key + ":")}
    return out | {"outputs": out["outputs"] | {"resources": keep}}


def _summary_line(s: dict) -> str:
    if not s:
        return ""
    return (
        f"violation intervals {s['violation_intervals_before']} -> {s['violation_intervals_after']} (AC power flow), "
        f"curtailed {s['curtailed_kwh']:g} kWh, storage {s['battery_kwh']:g} kWh, shed {s['shed_kwh']:g} kWh"
        + (f", offers {s['offers_kwh']:g} kWh for {s['offers_cost']:g}" if s.get("offers_kwh") else "")
        + (f", cost {s['cost']['total']:g}" if s.get("cost") else "")
    )


def _interval_at(out: dict, at: str) -> int | None:
    times = [dt.datetime.fromisoformat(t) for t in out["outputs"].get("intervals", [])]
    if not times:
        return None
    step = dt.timedelta(seconds=out["step_s"])
    if len(at) <= 5 and ":" in at:
        hh, mm = (int(x) for x in at.split(":"))
        for k, t in enumerate(times):
            if t.hour * 60 + t.minute <= hh * 60 + mm < t.hour * 60 + t.minute + step.seconds // 60:
                return k
        return None
    when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    for k, t in enumerate(times):
        if t <= when < t + step:
            return k
    return None


def show_lines(out: dict, key: str | None = None, at: str | None = None) -> list[str]:
    inp, check = out.get("inputs", {}), out.get("check", {})
    lines = [
        f"plan {out['id']} of {out['model']} ({out['trigger']}): {out['status']}"
        + (f" -- {out['reason']}" if out["reason"] else ""),
        f"  horizon {out['start']} + {out['steps']} x {out['step_s'] // 60} min; made {out['created_at']}",
    ]
    gm = inp.get("grid_model")
    if gm:
        lines.append(f"  grid model {gm['name']} version {gm['version']} (id {gm['id']})")
    for node, f in sorted(inp.get("forecasts", {}).items()):
        lines.append(f"  forecast {node}: run {f['run']} issued {f['issued_at']}")
    for r in inp.get("flexibility", []):
        counted = "counted" if r["counted"] else f"NOT counted ({r['why_not']})"
        size = f"{r['power_kw']:g} kW" + (
            f" {r['energy_kwh']:g} kWh SOC {r['soc_percent']:g} %" if r["kind"] == "battery" else ""
        )
        band = (r.get("min_soc_percent", 0.0), r.get("max_soc_percent", 100.0))  # plans before the band: none
        if r["kind"] == "battery" and band != (0.0, 100.0):
            size += f" (kept within {band[0]:.4g}..{band[1]:.4g} %)"
        if r["kind"] == "ev":
            size = f"{r['power_kw']:g} kW, needs {r['energy_kwh']:g} kWh"
        if r["kind"] == "dr":
            size = f"{r['share']:.0%} of its connection point's load"
        lines.append(f"  flexibility {r['party']}:{r['id']} {r['kind']} at bus {r['bus']}: {size}, {counted}")
    for o in inp.get("offers", []):
        size = " ".join(f"{d} {o[d + '_kw']:g} kW" for d in ("up", "down") if o[d + "_kw"])
        lines.append(
            f"  offer {o['id']} of {o['ven']} at bus {o['bus']} ({o['source']}): {size} at {o['price']:g} per kWh, "
            f"{o['start']} .. {o['end']}, {o['status']}"
        )
    for d in inp.get("defaults", []):
        lines.append(f"  default used: {d}")
    if check.get("summary"):
        lines.append("  " + _summary_line(check["summary"]))
        for node, t in sorted(check.get("transformers", {}).items()):
            lines.append(
                f"  {node} ({t['rating_kva']:g} kVA): max loading {t['before_max_pct']:g} % unmanaged, "
                f"{t['after_max_pct']:g} % planned"
            )
        env = check.get("envelopes", {})
        broken = {k: v["intervals"] for k, v in env.items() if v["intervals"]}
        lines.append(f"  export envelopes, AC check: {'no violation' if not broken else broken}")
        imp = check.get("import_envelopes", {})
        broken = {k: v["intervals"] for k, v in imp.items() if v["intervals"]}
        lines.append(f"  import envelopes, AC check: {'no violation' if not broken else broken}")
    for c in out.get("outputs", {}).get("clearing", []):
        if c["taken"]:
            event = f", event {c['event']}" if c.get("event") else ""
            lines.append(
                f"  clearing: offer {c['offer']} of {c['ven']} bought {c['direction']} {c['kwh']:g} kWh "
                f"(up to {max(abs(v) for v in c['kw']):g} kW) at {c['price']:g}: {c['cost']:g}{event}"
            )
        else:
            lines.append(f"  clearing: offer {c['offer']} of {c['ven']} not bought: {c['why']}")
    res = out.get("outputs", {}).get("resources", {})
    k_at = _interval_at(out, at) if at else None
    if at and k_at is None:
        lines.append(f"  {at} is not within the plan's horizon")
    for name, r in sorted(res.items()):
        if key and not (name == key or name.startswith(key + ":")):
            continue
        lines.append(f"  {name} ({r['kind']} at bus {r['bus']}): {len(r['blocks'])} block(s)")
        for b in r["blocks"]:
            if k_at is not None and not b["t0"] <= k_at < b["t1"]:
                continue
            lines += _block_lines(out, b)
        if k_at is not None and not any(b["t0"] <= k_at < b["t1"] for b in r["blocks"]):
            lines.append(
                f"    at {out['outputs']['intervals'][k_at]}: no control (nothing had to be limited)"
            )
    if out.get("events"):
        lines.append(f"  events: {', '.join(str(e['event']) for e in out['events'])}")
    return lines


def _block_lines(out: dict, b: dict) -> list[str]:
    times = out["outputs"]["intervals"]
    end = (dt.datetime.fromisoformat(times[b["t1"] - 1]) + dt.timedelta(seconds=out["step_s"])).isoformat()
    values = b.get("base") or {b["field"]: b["value_w"]}
    what = ", ".join(f"{k} {v:g} W" for k, v in values.items())
    return [f"    {b['start']} .. {end}: {what}"] + why_lines(b["why"], "      ")


def why_lines(why: dict, indent: str = "  ") -> list[str]:
    lines = []
    if "site_envelope_kw" in why:
        lines.append(
            f"{indent}site at bus {why['site_bus']} could export {why['site_could_export_kw']:g} kW; the network takes "
            f"{why['site_envelope_kw']:g} kW from it when every site exports its envelope ({why['policy']} policy)"
        )
    if "site_import_envelope_kw" in why:
        lines.append(
            f"{indent}site at bus {why['site_bus']} could import {why['site_could_import_kw']:g} kW; the network "
            f"gives it {why['site_import_envelope_kw']:g} kW when every site imports its envelope "
            f"({why['policy']} policy)"
        )
    if "action" in why:
        lines.append(f"{indent}{why['action']} at bus {why['site_bus']}")
    t = why.get("transformer_loading_pct")
    if t:
        lines.append(
            f"{indent}{why['node']} ({t['rating_kva']:g} kVA): loading up to {t['before']:g} % unmanaged, "
            f"{t['after']:g} % with the plan (AC power flow)"
        )
    for r in why.get("limits_broken_unmanaged", []):
        lines.append(f"{indent}unmanaged forecast: {r}")
    if "price_per_kwh" in why:
        lines.append(f"{indent}price {why['price_per_kwh']:g} per kWh ({why['source']})")
    for b in why.get("blocks", []):
        lines.append(f"{indent}{b['start']}: {b['value_w']:g} W")
        lines += why_lines({k: v for k, v in b.items() if k != "blocks"}, indent + "  ")
    return lines


def event_plan_lines(e: dict) -> list[str]:
    lines = []
    for p in e.get("plans", []):
        lines.append(f"plan {p['plan']} of {p['model']} ({p['status']}) for {p['resource']}:")
        lines += why_lines(p["why"])
    return lines
