"""No `dso` command ends in a Python traceback for a user mistake. Every sub-command the parser has is driven
with a missing config file, a directory where the file should be, the server down and its port taken by
something else; each answers one line on stderr and a non-zero exit (commands that need no server may
succeed when it is down). Then the file arguments: a missing CSV, a directory for a CSV or a PNG, a file
for a data directory; and `dso serve` / `dso demo` on a taken port, as real processes."""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dso, dso_json, free_port

from server.cli import build_parser, main
from server.cli.durations import seconds

# commands that do not talk to the admin API: the server being down is no mistake for them
OFFLINE = {("init",), ("certs", "device"), ("certs", "ven"), ("demo",)}
# what some commands need beyond their required arguments to get as far as the config
EXTRA = {
    ("event", "create"): ["--level", "1", "--duration", "60"],
    ("grid", "update"): ["--export-limit-kw", "5"],
}
LFDI = "AB" * 20


def leaf_commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []

    def walk(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((path, parser))
            return
        for name, child in subs[0].choices.items():
            walk((*path, name), child)

    walk((), build_parser())
    return out


def value_for(action: argparse.Action, csv: Path) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type in (int, float):
        return "1"
    if action.type is seconds:
        return "60"
    if action.dest in ("lfdi", "aggregator"):
        return LFDI
    if action.dest == "file":
        return str(csv)
    if action.dest == "source":  # a network to import: a SimBench code is read by the server, not locally
        return "simbench:1-LV-rural1--0-sw"
    if action.dest == "price":
        return "10"
    if action.dest == "start":
        return "now"
    if action.dest == "points":
        return "0:0,1:1"
    return "x"


def minimal_args(path: tuple[str, ...], parser: argparse.ArgumentParser, csv: Path, home: Path) -> list[str]:
    """The command with every required argument given a plausible value."""
    args = [*path, *EXTRA.get(path, [])]
    grouped = set()
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            args += [first.option_strings[0], value_for(first, csv)]
        grouped.update(id(a) for a in group._group_actions)
    for action in parser._actions:
        if id(action) in grouped or isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            args.append(str(home / "new-dir") if path == ("init",) else value_for(action, csv))
        elif action.required:
            args += [action.option_strings[0], value_for(action, csv)]
    return args


COMMANDS = leaf_commands()
WITH_CONFIG = [
    (p, parser) for p, parser in COMMANDS if any("--config" in a.option_strings for a in parser._actions)
]


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, argv: list[str]) -> None:
    assert code != 0, argv
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, (argv, err)
    assert "error:" in err, (argv, err)


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    for name in ("DSO_CONFIG", "DSO_ADMIN_URL", "DSO_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "readings.csv"
    csv.write_text("time,value\n2026-11-01T00:00:00Z,1.5\n")
    return tmp_path


@pytest.fixture(scope="module")
def stopped_server(tmp_path_factory) -> dict:
    """An initialised data directory whose server is not running."""
    home = tmp_path_factory.mktemp("down") / "dso"
    return dso_json("init", str(home), "--port", str(free_port()), "--admin-port", str(free_port()), "--json")


class NotAnAdminApi:
    """Something else listening on the port: it answers every connection with a line that is not HTTP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-NotOpenDSO\r\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def taken_ports(stopped_server) -> Iterator[None]:
    admin = int(stopped_server["admin_url"].rsplit(":", 1)[1])
    protocol = int(stopped_server["server_url"].rsplit(":", 1)[1])
    squatters = [NotAnAdminApi(admin), NotAnAdminApi(protocol)]
    try:
        yield
    finally:
        for s in squatters:
            s.close()


def test_every_command_parses_with_its_minimal_arguments():
    assert len(COMMANDS) > 50 and len(WITH_CONFIG) > 45
    parser = build_parser()
    for path, sub in COMMANDS:
        parser.parse_args(minimal_args(path, sub, Path("f.csv"), Path("/tmp")))


@pytest.mark.parametrize("path", [p for p, _ in WITH_CONFIG], ids=" ".join)
def test_missing_config_file_and_a_directory_for_it(path, clean_env, capsys):
    sub = dict(COMMANDS)[path]
    base = minimal_args(path, sub, clean_env / "readings.csv", clean_env)
    missing = clean_env / "no" / "such" / "dso.toml"
    code, err = run([*base, "-c", str(missing)], capsys)
    assert_one_line_error(code, err, base)
    assert str(missing) in err
    (clean_env / "empty").mkdir()
    (clean_env / "dir-for-file" / "dso.toml").mkdir(parents=True)
    for config in (clean_env / "empty", clean_env / "dir-for-file" / "dso.toml"):
        code, err = run([*base, "-c", str(config)], capsys)
        assert_one_line_error(code, err, base)


@pytest.mark.parametrize("path", [p for p, _ in WITH_CONFIG if p != ("serve",)], ids=" ".join)
def test_server_down(path, clean_env, stopped_server, capsys):
    sub = dict(COMMANDS)[path]
    argv = [*minimal_args(path, sub, clean_env / "readings.csv", clean_env), "-c", stopped_server["config"]]
    code, err = run(argv, capsys)
    if path in OFFLINE:
        assert "Traceback" not in err
        return
    assert_one_line_error(code, err, argv)
    assert "cannot reach the admin API" in err


@pytest.mark.parametrize("path", [p for p, _ in WITH_CONFIG if p not in OFFLINE], ids=" ".join)
def test_port_taken_by_something_else(path, clean_env, stopped_server, taken_ports, capsys):
    sub = dict(COMMANDS)[path]
    argv = [*minimal_args(path, sub, clean_env / "readings.csv", clean_env), "-c", stopped_server["config"]]
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, argv)
    if path == ("serve",):
        assert "cannot listen on" in err and "address already in use" in err
    else:
        assert stopped_server["admin_url"] in err


def test_file_arguments(clean_env, stopped_server, capsys):
    config = stopped_server["config"]
    cases = [
        (
            ["telemetry", "import", str(clean_env / "missing.csv"), "--lfdi", LFDI, "-c", config],
            "no such file",
        ),
        (["telemetry", "import", str(clean_env), "--lfdi", LFDI, "-c", config], "is a directory"),
        (
            ["forecast", "--node", "f", "--plot", str(clean_env / "no" / "f.png"), "-c", config],
            "does not exist",
        ),
        (["forecast", "--node", "f", "--plot", str(clean_env), "-c", config], "is a directory"),
        (["init", str(clean_env / "readings.csv")], "is a file, not a directory"),
        (["demo", "--dir", str(clean_env / "readings.csv"), "--port", str(free_port())], "not a directory"),
    ]
    (clean_env / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    cases.append(
        (["telemetry", "import", str(clean_env / "binary.csv"), "--lfdi", LFDI, "-c", config], "CSV")
    )
    for argv, needle in cases:
        code, err = run(argv, capsys)
        assert_one_line_error(code, err, argv)
        assert needle in err, (argv, err)


def test_serve_and_demo_on_a_taken_port_as_processes(tmp_path, stopped_server, taken_ports):
    """The real processes: one line, no traceback, exit 1 (the demo never runs against the other server)."""
    proc = dso("serve", "-c", stopped_server["config"], check=False, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "address already in use" in proc.stderr
    taken = stopped_server["server_url"].rsplit(":", 1)[1]
    proc = dso("demo", "--dir", str(tmp_path / "demo"), "--port", taken, check=False, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"port {taken}" in proc.stderr and "outcome" not in proc.stdout
