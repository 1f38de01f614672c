"""``dso demo``: set up a data directory, start the real server and run a simulated fleet on a SimBench LV grid
through forecast, plan, dispatch, a flexibility market, one simulated day and its verdict by power flow
(``server.sim.demo``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

from server.cli.common import CliError

MARKER = ".dso-demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the product on the embedded default: server + a simulated 2030.5 fleet (PV, batteries) and an "
        "OpenADR aggregator of EV chargers on a SimBench LV grid -> forecast -> plan -> dispatch -> one "
        "simulated day -> violations by AC power flow, curtailment, flexibility bought, M&V",
    )
    p.add_argument(
        "--dir", default="./dso-demo", help="data directory (created like `dso init`; default ./dso-demo)"
    )
    p.add_argument(
        "--grid",
        default="1-LV-rural1--0-sw",
        help="SimBench LV grid code with one transformer (default 1-LV-rural1--0-sw)",
    )
    p.add_argument("--devices", type=int, default=0, help="sites (default: one per customer bus of the grid)")
    p.add_argument("--evs", type=int, default=4, help="EV chargers behind the aggregator's VEN (default 4)")
    p.add_argument(
        "--history-days", type=int, default=7, help="days of readings backfilled per site (7..28, default 7)"
    )
    p.add_argument(
        "--play-seconds",
        type=float,
        default=20.0,
        help="wall time the simulated day takes to play (default 20)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument(
        "--keep-serving", action="store_true", help="after the summary keep the server running until Ctrl-C"
    )
    p.add_argument("--port", type=int, help="protocol listener port (default 8443, or a free one if taken)")
    p.add_argument("--admin-port", type=int, help="admin API port (default 8444, or a free one if taken)")
    p.add_argument("--seed", type=int, default=2030, help="fleet seed")
    p.add_argument("--verbose", action="store_true", help="show the server's INFO log lines too")
    p.set_defaults(func=cmd_demo)


def _port(wanted: int | None, default: int) -> int:
    """The port asked for; otherwise the default when it is free, else any free loopback port."""
    if wanted is not None:
        return wanted
    for candidate in (default, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return s.getsockname()[1]
    raise CliError("no free port on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as s:
        # as the listener will: a connection in TIME_WAIT is no conflict
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    # as `dso serve`: BLAS thread pools in the worker threads only fight the event loop for the cores
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import sys

    from server.cli.setup_cmds import init_data_dir
    from server.config import load_settings
    from server.observability import setup_logging
    from server.sim.demo import DemoOptions, run_demo

    if not 0 <= args.devices <= 500:
        raise CliError("--devices must be 0..500")
    if not 0 <= args.evs <= 50:
        raise CliError("--evs must be 0..50")
    # M&V baselines take days of the event's own type (weekday or weekend): only a week of history always has
    # one, whatever day the demo's events fall on
    if not 7 <= args.history_days <= 28:
        raise CliError("--history-days must be 7..28 (the M&V baselines need a day of each type: a week)")
    if not 0 <= args.play_seconds <= 3600:
        raise CliError("--play-seconds must be 0..3600")
    directory = Path(args.dir)
    config = directory / "dso.toml"
    port = admin_port = None
    if config.exists():  # keep its ports unless asked otherwise (a second run reuses the directory)
        if not (directory / MARKER).exists():
            raise CliError(
                f"{directory} is a data directory `dso demo` did not make: give a new --dir (the demo starts "
                "its store afresh on every run)"
            )
        existing = load_settings(config)
        port, admin_port = args.port or existing.server.port, args.admin_port or existing.admin.port
        # a fresh store: the simulated day is played on the demo's own history, not on an earlier run's day
        if not existing.database.url:
            for suffix in ("", "-wal", "-shm"):
                (existing.base_dir / f"dso.sqlite3{suffix}").unlink(missing_ok=True)
    else:
        port, admin_port = _port(args.port, 8443), _port(args.admin_port, 8444)
    for flag, number in (("--port", port), ("--admin-port", admin_port)):
        if number is not None and not _free(number):
            raise CliError(
                f"port {number} on 127.0.0.1 is taken (another `dso serve` or demo?): stop it or pass "
                f"{flag} with a free port"
            )
    settings, _ = init_data_dir(directory, port, admin_port, host="127.0.0.1")
    (settings.base_dir / MARKER).write_text("made by `dso demo`: its store starts afresh on every run\n")
    # loopback only; the devices should see their controls within seconds; the demo plans itself (no
    # scheduler turns in between)
    settings.server.host = "127.0.0.1"
    settings.openadr3.enabled = False  # the demo's fleet speaks 2030.5 and OpenADR 2.0b
    settings.sep2.poll_rate_s, settings.sep2.post_rate_s = 5, 10
    settings.orchestration.planning = False
    settings.orchestration.day_ahead_at = ""
    settings.orchestration.forecast_interval_s = 86_400
    setup_logging("INFO" if args.verbose else "WARNING", "text")
    print(
        f"OpenDSO demo: SimBench {args.grid}, simulated PV/battery sites over 2030.5 and {args.evs} EV chargers "
        f"behind an OpenADR VEN, {args.history_days} days of history, one simulated day; data in "
        f"{settings.base_dir}",
        file=sys.stderr,
    )
    opts = DemoOptions(
        grid=args.grid,
        devices=args.devices,
        evs=args.evs,
        history_days=args.history_days,
        keep_serving=args.keep_serving,
        play_s=args.play_seconds,
        seed=args.seed,
    )
    # stdout carries the summary only: whatever else writes to file descriptor 1 while the demo runs (the LP
    # solver's banner, from C) goes to stderr with the progress lines
    sys.stdout.flush()
    summary = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def out(text: str) -> None:
        summary.write(text + "\n")
        summary.flush()

    try:
        demo = asyncio.run(run_demo(settings, opts, as_json=args.json, out=out))
    finally:
        sys.stdout.flush()
        os.dup2(summary.fileno(), 1)
        summary.close()
    return 0 if demo.ok() else 1
