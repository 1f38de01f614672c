"""``dso grid``, ``dso forecast`` and ``dso telemetry``: the grid model, its forecasts and the data under them."""

from __future__ import annotations

import argparse
import csv
import sys
import urllib.parse
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.cli import grid_plan_cmds, loop_cmds
from server.cli.common import CliError, add_config_arg, add_json_arg, admin, emit, local_time
from server.cli.durations import seconds


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("grid", help="feeders, transformers and groups, and what is in them")
    gsub = g.add_subparsers(dest="grid_command", metavar="ACTION", required=True, parser_class=type(g))
    p = gsub.add_parser("create", help="create a grid node")
    p.add_argument("name")
    p.add_argument("--kind", choices=["feeder", "transformer", "group"], default="feeder")
    p.add_argument("--parent", help="the node above this one")
    p.add_argument("--timezone", default="UTC", help="IANA zone of the area, e.g. America/Denver")
    p.add_argument("--lat", type=float, help="latitude (needed for PV forecasts)")
    p.add_argument("--lon", type=float, help="longitude")
    p.add_argument("--import-limit-kw", type=float)
    p.add_argument("--export-limit-kw", type=float)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_create)
    p = gsub.add_parser("update", help="change a grid node (only what is given changes)")
    p.add_argument("node")
    p.add_argument("--name", help="rename it")
    p.add_argument("--kind", choices=["feeder", "transformer", "group"])
    p.add_argument("--parent", help="move it under this node")
    p.add_argument("--timezone", help="IANA zone of the area, e.g. America/Denver")
    p.add_argument("--lat", type=float, help="latitude")
    p.add_argument("--lon", type=float, help="longitude")
    p.add_argument("--import-limit-kw", type=float)
    p.add_argument("--export-limit-kw", type=float)
    p.add_argument(
        "--clear",
        action="append",
        default=[],
        choices=sorted(CLEARABLE),
        help="remove a value (repeatable), e.g. --clear parent",
    )
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_update)
    p = gsub.add_parser("delete", help="remove a grid node (its members and forecasts go with it)")
    p.add_argument("node")
    add_config_arg(p)
    p.set_defaults(func=cmd_delete)
    p = gsub.add_parser("list", help="list grid nodes")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_list)
    p = gsub.add_parser("add", help="count a device or VEN in a node")
    p.add_argument("node")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--lfdi", help="a 2030.5 device")
    who.add_argument("--ven", metavar="VENID", help="an OpenADR VEN")
    who.add_argument("--modbus", metavar="NAME", help="an inverter behind the SunSpec Modbus gateway")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_add)
    loop_cmds.register_grid(gsub)
    p = gsub.add_parser(
        "state", help="predicted voltages and loadings of a network model over a day (offline)"
    )
    p.add_argument("--grid", required=True, metavar="simbench:CODE|FILE.json")
    grid_plan_cmds.add_grid_args(p)
    add_json_arg(p)
    p.set_defaults(func=grid_plan_cmds.cmd_grid_state)

    p = sub.add_parser("forecast", help="forecast a grid node now (or show the latest stored forecast)")
    p.add_argument("--node", required=True)
    p.add_argument("--horizon", type=seconds, default=None, help="e.g. 24h (default from config)")
    p.add_argument("--step", type=seconds, default=None, help="e.g. 15m (default from config)")
    p.add_argument("--history", type=seconds, default=None, help="history to learn from, e.g. 28d")
    p.add_argument(
        "--target",
        choices=["load", "pv", "gross"],
        default="load",
        help="load: metered net load; pv: behind-the-meter PV; gross: load without that PV",
    )
    p.add_argument(
        "--latest", action="store_true", help="show the latest stored forecast instead of running one"
    )
    p.add_argument("--plot", metavar="FILE.png", help="also draw the forecast (needs matplotlib)")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_forecast)

    t = sub.add_parser("telemetry", help="import and read telemetry")
    tsub = t.add_subparsers(dest="telemetry_command", metavar="ACTION", required=True, parser_class=type(t))
    p = tsub.add_parser("import", help="import a CSV of time,value rows (ISO 8601 times with offset)")
    p.add_argument("file", help="CSV file, '-' for stdin; a header row is skipped")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--lfdi", help="readings of a 2030.5 device")
    who.add_argument("--ven", metavar="VENID", help="readings of an OpenADR VEN")
    p.add_argument("--measurement", default="realPower")
    p.add_argument("--unit", default="W")
    p.add_argument("--scale", default="none", help="SI prefix of the values: k, M, none, ...")
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_import)
    p = tsub.add_parser("show", help="recent telemetry values, newest first")
    p.add_argument("--source-kind", help="device, ven, modbus")
    p.add_argument("--source-id", help="LFDI, venID, gateway id")
    p.add_argument("--resource")
    p.add_argument("--measurement")
    p.add_argument("--since", help="ISO 8601 with offset")
    p.add_argument("--until", help="ISO 8601 with offset")
    p.add_argument("--limit", type=int, default=50)
    add_config_arg(p)
    add_json_arg(p)
    p.set_defaults(func=cmd_show)


# ``--clear`` names -> the node's fields
CLEARABLE = {
    "parent": "parent",
    "lat": "latitude",
    "lon": "longitude",
    "import-limit-kw": "import_limit_kw",
    "export-limit-kw": "export_limit_kw",
}


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:g} kW"


def _node_line(n: dict) -> str:
    parent = f" under {n['parent']}" if n.get("parent") else ""
    return (
        f"{n['id']:>4}  {n['name']:20} {n['kind']:12} members={len(n['members'])}  {n['timezone']}  "
        f"import limit {_kw(n['import_limit_kw'])}, export limit {_kw(n['export_limit_kw'])}{parent}"
    )


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def cmd_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "kind": args.kind,
        "parent": args.parent,
        "timezone": args.timezone,
        "latitude": args.lat,
        "longitude": args.lon,
        "import_limit_kw": args.import_limit_kw,
        "export_limit_kw": args.export_limit_kw,
    }
    node = admin(args).call("POST", "/api/v1/grid/nodes", body)
    emit(args, node, f"created {node['kind']} {node['name']} (id {node['id']})")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    changes = {
        key: value
        for key, value in (
            ("name", args.name),
            ("kind", args.kind),
            ("parent", args.parent),
            ("timezone", args.timezone),
            ("latitude", args.lat),
            ("longitude", args.lon),
            ("import_limit_kw", args.import_limit_kw),
            ("export_limit_kw", args.export_limit_kw),
        )
        if value is not None
    }
    for name in args.clear:
        if CLEARABLE[name] in changes:
            raise CliError(f"--clear {name} and a new value for it: give one")
        changes[CLEARABLE[name]] = None
    if not changes:
        raise CliError("nothing to change: give at least one option (see dso grid update --help)")
    node = admin(args).call("PATCH", f"/api/v1/grid/nodes/{_q(args.node)}", changes)
    emit(args, node, "updated " + _node_line(node).strip())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    admin(args).call("DELETE", f"/api/v1/grid/nodes/{_q(args.node)}")
    print(f"deleted grid node {args.node}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    nodes = admin(args).call("GET", "/api/v1/grid/nodes")
    emit(args, nodes, "\n".join(_node_line(n) for n in nodes) or "no grid nodes")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    kind, ident = (
        ("device", args.lfdi) if args.lfdi else ("ven", args.ven) if args.ven else ("modbus", args.modbus)
    )
    node = admin(args).call(
        "POST",
        f"/api/v1/grid/nodes/{urllib.parse.quote(args.node, safe='')}/members",
        {"kind": kind, "id": ident},
    )
    emit(args, node, _node_line(node))
    return 0


def _check_plot_target(path: Path) -> None:
    """Before any forecast is run: the PNG can be written and matplotlib is there."""
    if path.is_dir():
        raise CliError(f"--plot {path}: is a directory, give a file name like {path / 'forecast.png'}")
    if not path.parent.is_dir():
        raise CliError(f"--plot {path}: directory {path.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError(
            "--plot needs matplotlib: pip install matplotlib (in a clone: pip install -e '.[plot]')"
        ) from None


def cmd_forecast(args: argparse.Namespace) -> int:
    if args.plot:
        _check_plot_target(Path(args.plot))
    client = admin(args)
    if args.latest:
        run = client.call(
            "GET", f"/api/v1/forecasts/{urllib.parse.quote(args.node, safe='')}?target={args.target}"
        )
    else:
        body: dict = {"node": args.node, "target": args.target}
        if args.horizon:
            body["horizon_s"] = args.horizon
        if args.step:
            body["step_s"] = args.step
        if args.history:
            body["history_days"] = max(1, args.history // 86400)
        run = client.call("POST", "/api/v1/forecasts", body)
    if args.plot:
        plot(run, Path(args.plot))
    points, zone = run["points"], run.get("timezone", "UTC")
    lines = [
        f"{run['target']} forecast for {run['node']} issued {local_time(run['issued_at'], zone)} by "
        f"{run['model']} ({run['history_points']} history intervals); times in {zone}, W:"
    ]
    lines += [
        f"  {local_time(p['ts'], zone)}  {p['mean']:12.1f}  [{p['q10']:.1f} .. {p['q90']:.1f}]"
        for p in points
    ]
    lines += [f"  note: {n}" for n in run["notes"]]
    emit(args, run, "\n".join(lines))
    return 0


def plot(run: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(run)
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as exc:
        raise CliError(f"--plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def figure(run: dict) -> Any:
    """The forecast as a matplotlib figure, its time axis in the node's zone and labelled with it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError(
            "--plot needs matplotlib: pip install matplotlib (in a clone: pip install -e '.[plot]')"
        ) from None
    import datetime as dt

    import matplotlib.dates as mdates

    zone = run.get("timezone", "UTC")
    tz = ZoneInfo(zone)
    # matplotlib's date numbers; the axis formatter shows them in the node's zone
    ts = mdates.date2num([dt.datetime.fromisoformat(p["ts"]).astimezone(tz) for p in run["points"]])
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(
        ts,
        [p["q10"] / 1000 for p in run["points"]],
        [p["q90"] / 1000 for p in run["points"]],
        alpha=0.3,
        label="80 % interval",
    )
    ax.plot(ts, [p["mean"] / 1000 for p in run["points"]], label="mean")
    ax.set_title(f"{run['target']} forecast, {run['node']} (issued {local_time(run['issued_at'], zone)})")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M", tz=tz))
    ax.set_xlabel(f"time ({zone})")
    ax.set_ylabel("kW")
    ax.legend()
    fig.autofmt_xdate()
    return fig


def cmd_import(args: argparse.Namespace) -> int:
    if args.file != "-":
        path = Path(args.file)
        if path.is_dir():
            raise CliError(f"{path}: is a directory, give a CSV file of time,value rows")
        if not path.is_file():
            raise CliError(f"{path}: no such file")
    handle = sys.stdin if args.file == "-" else open(args.file, newline="", encoding="utf-8")  # noqa: SIM115
    with handle:
        rows = []
        try:
            lines = list(csv.reader(handle))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CliError(f"{args.file}: not a CSV text file ({exc.__class__.__name__})") from None
        for i, row in enumerate(lines):
            if not row:
                continue
            try:
                rows.append([row[0].strip(), float(row[1])])
            except (IndexError, ValueError):
                if i == 0:
                    continue  # header
                raise CliError(f"{args.file}: line {i + 1} is not 'time,value'") from None
    kind, ident = ("device", args.lfdi) if args.lfdi else ("ven", args.ven)
    client = admin(args)
    stored = 0
    for start in range(0, len(rows), 50_000):
        out = client.call(
            "POST",
            "/api/v1/telemetry",
            {
                "source_kind": kind,
                "source_id": ident,
                "measurement": args.measurement,
                "unit": args.unit,
                "scale": args.scale,
                "readings": rows[start : start + 50_000],
            },
        )
        stored += out["stored"]
    already = len(rows) - stored
    emit(
        args,
        {"stored": stored, "already_stored": already},
        f"stored {stored} readings" + (f" ({already} were already stored)" if already else ""),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    params = {
        "source_kind": args.source_kind,
        "source_id": args.source_id,
        "resource": args.resource,
        "measurement": args.measurement,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
    }
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    rows = admin(args).call("GET", f"/api/v1/telemetry?{query}")
    lines = [
        f"{r['ts']}  {r['source_id']:<22} {r['resource']:<12} {r['measurement']:<14} {r['value']} {r['unit']}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no telemetry")
    return 0
