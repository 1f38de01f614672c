"""The ``dso`` admin CLI. Commands that change server state talk to the admin API of a running server;
``init``, ``serve`` and ``certs`` work on the data directory itself."""

from __future__ import annotations

import sys

from server import __version__
from server.cli import (
    alarm_cmds,
    delivery_cmds,
    demo_cmds,
    device_cmds,
    dispatch_cmds,
    grid_cmds,
    modbus_cmds,
    mv_cmds,
    oadr3_cmds,
    offer_cmds,
    openadr_cmds,
    readings_cmds,
    sep2_cmds,
    setup_cmds,
    staff_cmds,
)
from server.cli.common import CliError, Parser, os_error_message
from server.config import ConfigError

# each module adds its sub-commands; order is the order of ``dso --help``
COMMAND_MODULES = [
    setup_cmds,
    demo_cmds,
    device_cmds,
    sep2_cmds,
    readings_cmds,
    openadr_cmds,
    oadr3_cmds,
    grid_cmds,
    dispatch_cmds,
    mv_cmds,
    offer_cmds,
    modbus_cmds,
    delivery_cmds,
    alarm_cmds,
    staff_cmds,
]


def build_parser() -> Parser:
    parser = Parser(
        prog="dso",
        description="OpenDSO admin CLI: run the server and manage devices, programs and dispatches.",
    )
    parser.add_argument("--version", action="version", version=f"dso (OpenDSO) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ConfigError) as exc:
        print(f"dso: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or directory the user named: missing, a directory, not writable, ...
        print(f"dso: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
