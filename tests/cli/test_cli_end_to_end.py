"""`dso init`, `dso serve`, `dso certs device`, `dso device enroll`, `dso device list --json`, `dso status`
against the real server process; and the CLI's answers to bad input."""

from __future__ import annotations

import json

import pytest
from support import LiveServer, dso, dso_json


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    url = "" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    s = LiveServer(tmp_path / "dso", database_url=url).init().start()
    yield s
    s.stop()


def test_enroll_and_list_devices_through_the_running_server(server):
    cert = server.issue_device("inverter-1")
    agg = server.issue_device("vpp", aggregator=True)
    enrolled = dso_json(
        "device",
        "enroll",
        "--lfdi",
        cert["lfdi"],
        "--pin",
        "123455",
        "--aggregator",
        agg["lfdi"],
        "--name",
        "inverter 1",
        "-c",
        server.config,
        "--json",
    )
    assert enrolled["lfdi"] == cert["lfdi"] and enrolled["sfdi"] == cert["sfdi"]
    listed = dso_json("device", "list", "--json", "-c", server.config)
    # the device under the aggregator, and the aggregator's own EndDevice (CSIP-AUS: it subscribes there)
    assert sorted((d["lfdi"], d["aggregator_lfdi"] or "") for d in listed) == sorted(
        [(cert["lfdi"], agg["lfdi"]), (agg["lfdi"], "")]
    )
    assert [d["id"] for d in listed if d["lfdi"] == cert["lfdi"]] == [enrolled["id"]]
    status = dso_json("status", "--json", "-c", server.config)
    backend = "postgresql" if server.database_url else "sqlite"
    assert status["devices"] == 2 and status["vens"] == 0 and status["database"]["backend"] == backend
    # the state is in the database, not in the process: it survives a restart
    server.restart()
    relisted = dso_json("device", "list", "--json", "-c", server.config)
    assert sorted(d["lfdi"] for d in relisted) == sorted([cert["lfdi"], agg["lfdi"]])


def test_duplicate_enrolment_is_a_one_line_error(server):
    cert = server.issue_device("dup")
    dso("device", "enroll", "--lfdi", cert["lfdi"], "-c", server.config)
    proc = dso("device", "enroll", "--lfdi", cert["lfdi"], "-c", server.config, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "409" in proc.stderr and "already enrolled" in proc.stderr


def test_serve_logs_urls_as_json_lines_and_stops_on_sigterm(server):
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    messages = " ".join(entry["msg"] for entry in lines)
    assert server.url in messages and server.info["admin_url"] in messages and "stopped" in messages


@pytest.mark.parametrize(
    "args", [["device", "enroll"], ["nosuchcommand"], ["init", "/tmp/x", "--port", "abc"], ["certs"]]
)
def test_bad_arguments_give_one_line_and_nonzero_exit(args):
    proc = dso(*args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "error" in proc.stderr


def test_missing_config_is_named(tmp_path):
    proc = dso("device", "list", "-c", str(tmp_path / "absent.toml"), check=False)
    assert proc.returncode == 1 and str(tmp_path / "absent.toml") in proc.stderr


def test_corrupt_config_names_file_and_key(tmp_path):
    cfg = tmp_path / "dso.toml"
    cfg.write_text("[admin]\nport = 'x'\n")
    proc = dso("serve", "-c", str(cfg), check=False)
    assert proc.returncode == 1
    assert str(cfg) in proc.stderr and "[admin] port" in proc.stderr


def test_cli_reports_a_stopped_server_plainly(tmp_path):
    s = LiveServer(tmp_path / "dso").init()
    proc = dso("status", "-c", s.config, check=False)
    assert proc.returncode == 1 and "is `dso serve` running?" in proc.stderr


def test_help_everywhere():
    for args in (
        ["--help"],
        ["init", "--help"],
        ["serve", "--help"],
        ["certs", "device", "--help"],
        ["device", "enroll", "--help"],
        ["device", "list", "--help"],
        ["status", "--help"],
    ):
        proc = dso(*args)
        assert "usage: dso" in proc.stdout
