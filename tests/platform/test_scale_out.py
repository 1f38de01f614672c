"""Scale-out: several `dso serve` processes on one PostgreSQL database share all state; exactly one leads the
scheduler, and another takes over when it stops."""

from __future__ import annotations

import time

from support import LiveServer, dso_json


def leaders(servers: list[LiveServer]) -> list[LiveServer]:
    return [s for s in servers if "this process leads the scheduler" in s.log()]


def test_two_processes_share_the_database_and_elect_one_scheduler_leader(tmp_path, pg_database):
    env = {"DSO_ORCHESTRATION__LEADER_RETRY_S": "1"}
    a = LiveServer(tmp_path / "a", database_url=pg_database, extra_env=env).init().start()
    b = LiveServer(tmp_path / "b", database_url=pg_database, extra_env=env).init().start()
    try:
        lfdi = a.issue_device("shared")["lfdi"]
        dso_json("device", "enroll", "--lfdi", lfdi, "-c", a.config, "--json")
        # enrolled through one process, visible through the other: no state lives in a process
        assert [d["lfdi"] for d in dso_json("device", "list", "--json", "-c", b.config)] == [lfdi]
        deadline = time.monotonic() + 15
        while not leaders([a, b]) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # give a second (wrong) leader the chance to appear
        assert len(leaders([a, b])) == 1
        first = leaders([a, b])[0]
        other = b if first is a else a
        first.stop()
        deadline = time.monotonic() + 15
        while "this process leads the scheduler" not in other.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "this process leads the scheduler" in other.log()
    finally:
        a.stop()
        b.stop()
