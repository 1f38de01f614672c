"""What `dso init` and `dso certs` leave in a data directory: a certificate name is never silently re-keyed,
the SQLite file is as private as the config, and `dso serve` logs the address it bound as well as the URL
clients use."""

from __future__ import annotations

import json

from support import dso


def test_certs_never_overwrite_a_name_without_replace(tmp_path):
    info = json.loads(dso("init", str(tmp_path / "d"), "--json").stdout)
    cfg = info["config"]
    first = json.loads(dso("certs", "device", "inverter-1", "--json", "-c", cfg).stdout)
    pem = (tmp_path / "d" / "pki" / "clients" / "inverter-1.pem").read_bytes()
    again = dso("certs", "device", "inverter-1", "-c", cfg, check=False)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    assert "exists" in again.stderr and first["lfdi"] in again.stderr and "--replace" in again.stderr
    assert (tmp_path / "d" / "pki" / "clients" / "inverter-1.pem").read_bytes() == pem
    replaced = json.loads(dso("certs", "device", "inverter-1", "--replace", "--json", "-c", cfg).stdout)
    assert replaced["lfdi"] != first["lfdi"]
    # without --json: the same facts for people
    human = dso("certs", "device", "inverter-2", "-c", cfg).stdout
    assert human.startswith("device inverter-2\nLFDI  ") and "{" not in human
    ven = dso("certs", "ven", "vpp-1", "-c", cfg).stdout
    assert ven.startswith("VEN vpp-1 (ECC P-256)\nfingerprint  ")
    assert dso("certs", "ven", "vpp-1", "-c", cfg, check=False).returncode == 1


def test_database_file_is_private_and_serve_names_the_bound_address(live_server):
    db = live_server.home / "dso.sqlite3"
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert oct((live_server.home / "dso.toml").stat().st_mode & 0o777) == "0o600"
    live_server.stop()
    log = [json.loads(line)["msg"] for line in live_server.log().splitlines() if line.startswith("{")]
    # tests listen on loopback only (support.LiveServer sets server.host)
    assert any(f"bound to 127.0.0.1:{live_server.port}" in m and live_server.url in m for m in log), log
