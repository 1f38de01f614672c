"""Two `dso serve` processes on one PostgreSQL: what one process keeps (the poll cycle's lists, the client's scope)
never outlives a change committed through the other -- a new control is listed, a revocation refuses, at the very
next request. And several processes may share one port (``server.reuse_port``), on PostgreSQL only."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator

import asyncpg
from support import LiveServer, dso, free_port
from support.sep2 import Sep2Client
from support.sep2_live import FAST_DELIVERY, Admin, enrolled_device, wait_until
from test_csipaus_storage import capability as storage_capability

from server.sep2 import xml


def second_process(a: LiveServer, home, env: dict[str, str]) -> LiveServer:
    """Process b: a's configuration, PKI and database; its own ports unless ``env`` shares a's."""
    shutil.copytree(a.home, home, ignore=shutil.ignore_patterns("serve.log", "*.sqlite3*"))
    port = int(env.get("DSO_SERVER__PORT", free_port()))
    admin_port = int(env.get("DSO_ADMIN__PORT", free_port()))
    openadr3_port = int(env.get("DSO_OPENADR3__PORT", free_port()))
    ports = {"DSO_SERVER__PORT": port, "DSO_ADMIN__PORT": admin_port, "DSO_OPENADR3__PORT": openadr3_port}
    b = LiveServer(home, extra_env={**a.extra_env, **env, **{k: str(v) for k, v in ports.items()}})
    b.info = {
        **a.info,
        "config": str(home / "dso.toml"),
        "ca": str(home / "pki" / "ca.pem"),
        "server_url": f"https://127.0.0.1:{port}",
        "admin_url": f"http://127.0.0.1:{admin_port}",
    }
    return b


@contextlib.contextmanager
def two_processes(tmp_path, pg_database) -> Iterator[tuple[LiveServer, LiveServer, Admin]]:
    """Processes a and b on one PostgreSQL database (their own ports), and a's admin API."""
    a = LiveServer(tmp_path / "a", database_url=pg_database, extra_env=dict(FAST_DELIVERY)).init().start()
    b = None
    try:
        b = second_process(a, tmp_path / "b", {}).start()
        yield a, b, Admin(a)
        assert "Traceback" not in a.log() + b.log()
    finally:
        if b is not None:
            b.stop()
        a.stop()


def export_limit(program: str) -> dict:
    """A control for ``program`` from now for ten minutes: export at most 700 W (a CSIP-AUS element)."""
    return {"program": program, "start": "now", "duration_s": 600, "base": {"opModExpLimW": 700}}


def test_lists_kept_by_one_process_follow_changes_committed_by_the_other(tmp_path, pg_database):
    with two_processes(tmp_path, pg_database) as (a, b, admin):
        on_a, _edev, derp = enrolled_device(a, admin, "two-process-dev", program="two-process-prog")
        assert derp is not None
        on_b = Sep2Client(b, on_a.cert)
        for _ in range(2):  # kept by b
            assert on_b.get(derp + "/derc?l=50").root.get("all") == "0"
            assert on_b.get(derp + "/actderc?l=10").root.get("all") == "0"
        admin("POST", "/api/v1/controls", export_limit("two-process-prog"), expect=201)
        assert on_b.get(derp + "/derc?l=50").root.get("all") == "1"
        assert on_b.get(derp + "/actderc?l=10").root.get("all") == "1"

        admin("PUT", f"/api/v1/sep2/access/{on_a.lfdi}", {"granted": False})
        for path in ("/dcap", derp, derp + "/derc?l=50", derp + "/actderc?l=10"):
            assert on_b.get(path).status == 403, path


def test_a_clients_namespace_recorded_by_one_process_is_how_the_other_answers_it(tmp_path, pg_database):
    """A CSIP-AUS device read its controls through process a (which then keeps it as a 1.2 client), then writes
    its first storage-namespace body to process b: a answers it in the storage namespace at the next request."""
    with two_processes(tmp_path, pg_database) as (a, b, admin):
        on_a, edev, derp = enrolled_device(a, admin, "namespace-dev", program="namespace-prog")
        assert derp is not None
        admin("POST", "/api/v1/controls", export_limit("namespace-prog"), expect=201)
        assert f'"{xml.CSIPAUS_NS}"'.encode() in on_a.get(derp + "/derc?l=5").body  # a keeps: a 1.2 client
        storage_on_b = Sep2Client(b, on_a.cert, storage=True)
        assert storage_on_b.put(edev + "/der/1/dercap", storage_capability()).status == 204
        storage_on_a = Sep2Client(a, on_a.cert, storage=True)  # validates against the storage schema
        raw = storage_on_a.get(derp + "/derc?l=5").body
        assert f'"{xml.CSIPAUS_STORAGE_NS}"'.encode() in raw and f'"{xml.CSIPAUS_NS}"'.encode() not in raw


async def _terminate_other_connections(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return len(
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


def test_a_database_restart_costs_no_request_and_revocation_still_refuses(tmp_path, pg_database):
    """The connection kept for version reads (and the pooled ones) are killed under the server, as a database
    restart would: the next requests are answered on new connections, and a revocation still refuses at once."""
    a = LiveServer(tmp_path / "a", database_url=pg_database, extra_env=dict(FAST_DELIVERY)).init().start()
    try:
        admin = Admin(a)
        device, _edev, derp = enrolled_device(a, admin, "restart-dev", program="restart-prog")
        assert derp is not None
        assert device.get(derp + "/derc?l=50").status == 200  # the version connection is open now
        assert asyncio.run(_terminate_other_connections(pg_database)) > 0
        for path in ("/dcap", derp, derp + "/derc?l=50"):
            assert device.get(path).status == 200, path
        admin("PUT", f"/api/v1/sep2/access/{device.lfdi}", {"granted": False})
        assert device.get("/dcap").status == 403
    finally:
        a.stop()


def test_processes_share_one_port_on_postgresql_only(tmp_path, pg_database):
    env = {**FAST_DELIVERY, "DSO_SERVER__REUSE_PORT": "true"}
    a = LiveServer(tmp_path / "a", database_url=pg_database, extra_env=env).init().start()
    b = None
    try:
        port, admin_port = a.info["server_url"].rsplit(":", 1)[1], a.info["admin_url"].rsplit(":", 1)[1]
        shared = {**env, "DSO_SERVER__PORT": port, "DSO_ADMIN__PORT": admin_port}
        b = second_process(a, tmp_path / "b", shared)
        b.start()  # would exit "address already in use" without SO_REUSEPORT on both
        wait_until(lambda: "admin listener bound" in b.log(), what="process b listening")
        assert b.proc is not None and b.proc.poll() is None
        client = Sep2Client(a, a.issue_device("shared-port"))
        assert all(client.get("/dcap").status == 200 for _ in range(4))
    finally:
        if b is not None:
            b.stop()
        a.stop()

    home = tmp_path / "lite"
    dso("init", str(home), "--port", str(free_port()), "--admin-port", str(free_port()))
    refused = dso("serve", "-c", str(home / "dso.toml"), env={"DSO_SERVER__REUSE_PORT": "true"}, check=False)
    assert refused.returncode != 0
    assert "server.reuse_port" in refused.stderr and "PostgreSQL" in refused.stderr
