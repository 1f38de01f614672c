"""Two `dso serve` processes on one PostgreSQL database (the scale-out setup): a VEN registered through one
polls the other; a message queued through the first reaches it promptly (the second process's idle-poll cache is
invalidated by NOTIFY) and is handed out exactly once."""

from __future__ import annotations

import shutil
import time

from support import LiveServer, free_port
from support.openadr import FAST_ENV, RawVen, SchemaWatch


def test_two_processes_share_the_queue(tmp_path, pg_database):
    a = LiveServer(tmp_path / "a", database_url=pg_database, extra_env=dict(FAST_ENV)).init().start()
    b = None
    try:
        # the second process: same configuration and PKI, its own ports
        shutil.copytree(a.home, tmp_path / "b", ignore=shutil.ignore_patterns("serve.log"))
        port, admin_port = free_port(), free_port()
        b = LiveServer(
            tmp_path / "b",
            extra_env={
                **FAST_ENV,
                "DSO_SERVER__PORT": str(port),
                "DSO_ADMIN__PORT": str(admin_port),
                "DSO_OPENADR3__PORT": str(free_port()),
            },
        )
        b.info = {
            **a.info,
            "config": str(tmp_path / "b" / "dso.toml"),
            "ca": str(tmp_path / "b" / "pki" / "ca.pem"),
            "server_url": f"https://127.0.0.1:{port}",
            "admin_url": f"http://127.0.0.1:{admin_port}",
        }
        b.start()
        watch = SchemaWatch()
        v = RawVen(a, "scale-ven", watch)
        v.register()
        v.server = b
        while v.poll()[0] != "oadrResponse":  # the VTN's oadrRegisterReport first
            pass
        assert v.poll()[0] == "oadrResponse"  # idle now, and known to be idle in process b
        status, event = a.admin("POST", "/api/v1/openadr/events", {"level": 1, "duration_s": 600})
        assert status == 201
        kinds = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "oadrDistributeEvent" not in kinds:
            kinds.append(v.poll()[0])
            time.sleep(0.2)
        assert "oadrDistributeEvent" in kinds and len(kinds) <= 3, kinds
        v.server = a
        assert v.poll()[0] == "oadrResponse"  # handed out once, by b
        watch.assert_clean()
        assert "no LISTEN connection" not in b.log() and "Traceback" not in b.log()
    finally:
        if b is not None:
            b.stop()
        a.stop()
