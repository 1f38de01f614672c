"""Last contact and the communication watch: contact is kept in memory and written in one batched statement (none
per request, and never counted as a change of the device); parties quiet for longer than their window raise
COMMS_LOST, cleared when heard again; a receiver whose newest message is a dead letter raises DELIVERY_FAILING,
cleared once a later message goes out; /metrics' online/offline counts follow the same windows."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import event, select
from support import LiveServer

from server.config import Settings
from server.core import alarms, comms, fleet, fleetview, parties
from server.core.contact import ContactLog
from server.core.scope import Party, Scope
from server.store.models import DeliveryMessage, EndDevice, ModbusDevice, Ven

T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DEV, AGG, AGG_DEV, SILENT = "A1" * 20, "B2" * 20, "C3" * 20, "D4" * 20


def settings() -> Settings:
    s = Settings()
    s.sep2.poll_rate_s = 60
    s.openadr.poll_freq_s = 10
    s.alarms.comms_lost_factor = 3
    s.alarms.contact_flush_s = 30
    return s  # windows: 2030.5 3*60+30 = 210 s, VEN 3*10+30 = 60 s


async def _statements(store, work) -> int:
    count = 0

    def seen(*_args) -> None:
        nonlocal count
        count += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await work()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    return count


async def _enrol(store) -> dict[str, int]:
    async with store.sessions.begin() as session:
        dev = await parties.enroll_device(session, DEV, name="roof-1")
        agg_dev = await parties.enroll_device(session, AGG_DEV, aggregator_lfdi=AGG, name="behind-agg")
        await parties.enroll_device(session, SILENT, name="never-installed")
        ven = await parties.enroll_ven(session, "vpp-1", "AA:BB:CC:DD:EE:FF:00:11:22:33")
        ven.last_seen_at = T0
        modbus = await parties.enroll_modbus_device(session, "inv-1", "127.0.0.1", poll_s=20)
        modbus.last_ok_at = T0
        agg_id = (await session.get(EndDevice, agg_dev.id)).aggregator_id
    return {"dev": dev.id, "agg_dev": agg_dev.id, "agg": agg_id}


async def _open(store) -> dict[str, str]:
    async with store.sessions() as session:
        rows, _ = await alarms.page(session, state="open", limit=1000)
    return {r["subject"]: r["kind"] for r in rows}


async def test_contact_is_batched_and_quiet_parties_raise_and_clear_comms_lost(store):
    ids = await _enrol(store)
    async with store.sessions() as session:
        changed_before = (await session.get(EndDevice, ids["dev"])).changed_at
    log = ContactLog()
    dev = Scope(Party.DEVICE, DEV, device_id=ids["dev"])
    agg = Scope(Party.AGGREGATOR, AGG, aggregator_id=ids["agg"])

    async def requests() -> None:
        for i in range(500):  # what the identity middleware does per request
            log.heard(dev, T0 + dt.timedelta(seconds=i % 7))
            log.heard(agg, T0)

    assert await _statements(store, requests) == 0 and log.pending == 2

    async def flush() -> None:
        assert await log.flush(store) == 2

    # one UPDATE per table, whatever the number of requests (plus the transaction's own statements)
    assert await _statements(store, flush) <= 4 and log.pending == 0
    async with store.sessions() as session:
        row = await session.get(EndDevice, ids["dev"])
        assert row.last_contact_at == T0 + dt.timedelta(seconds=6)
        assert row.changed_at == changed_before  # a poll is not a change of the device
    # an older time flushed later (another process) does not move last contact back
    log.heard(dev, T0)
    await log.flush(store)
    async with store.sessions() as session:
        assert (await session.get(EndDevice, ids["dev"])).last_contact_at == T0 + dt.timedelta(seconds=6)

    s = settings()
    async with store.sessions.begin() as session:
        assert not await comms.check(session, s, T0 + dt.timedelta(seconds=50))
        counts = await fleet.party_states(session, T0 + dt.timedelta(seconds=50), s)
    # the aggregator's device is heard through its aggregator; the silent one was never heard
    assert counts[("sep2", "online")] == 2 and counts[("sep2", "offline")] == 1
    assert counts[("aggregator", "online")] == 1 and counts[("openadr", "online")] == 1
    assert counts[("modbus", "online")] == 1

    # 100 s: the VEN (60 s) and the Modbus asset (3 * 20 s) are lost, 2030.5 (210 s) is not yet
    async with store.sessions.begin() as session:
        outcome = await comms.check(session, s, T0 + dt.timedelta(seconds=100))
    assert outcome.raised == 2
    assert await _open(store) == {"ven:vpp-1": alarms.COMMS_LOST, "modbus:inv-1": alarms.COMMS_LOST}

    # 300 s: every party heard once is lost, nothing is raised twice; neither the never-heard device nor the one
    # heard only through its aggregator raises an alarm of its own (its aggregator's says it)
    later = T0 + dt.timedelta(seconds=300)
    for _ in range(2):
        async with store.sessions.begin() as session:
            await comms.check(session, s, later)
    assert set(await _open(store)) == {
        "ven:vpp-1",
        "modbus:inv-1",
        f"device:{DEV}",
        f"aggregator:{AGG}",
    }
    async with store.sessions() as session:
        rows, total = await alarms.page(session, state="all", limit=100)
        assert total == 4 and all(r["occurrences"] == 1 for r in rows)
        counts = await fleet.party_states(session, later, s)
    assert counts[("sep2", "offline")] == 3 and counts[("openadr", "offline")] == 1

    # heard again: the device's and the aggregator's (and so its device's) alarms clear, the VEN's too
    log.heard(dev, later)
    log.heard(agg, later)
    await log.flush(store)
    async with store.sessions.begin() as session:
        (await session.scalar(select(Ven))).last_seen_at = later
        (await session.scalar(select(ModbusDevice))).last_ok_at = later
    async with store.sessions.begin() as session:
        outcome = await comms.check(session, s, later + dt.timedelta(seconds=5))
    assert outcome.cleared == 4 and await _open(store) == {}


async def test_dead_letters_raise_delivery_failing_until_a_later_message_is_delivered(store):
    key = "sep2-sub:7"
    async with store.sessions.begin() as session:
        session.add(DeliveryMessage(channel="sep2-notification", order_key=key, status="delivered"))
        session.add(
            DeliveryMessage(
                channel="sep2-notification", order_key=key, status="failed", last_error="HTTP 500"
            )
        )
        session.add(DeliveryMessage(channel="openadr", order_key="openadr-ven:1", status="delivered"))
    async with store.sessions.begin() as session:
        await comms.check(session, settings(), T0)
    assert await _open(store) == {f"delivery:{key}": alarms.DELIVERY_FAILING}
    async with store.sessions() as session:
        (row,), _ = await alarms.page(session)
    assert "HTTP 500" in row["message"] and "sep2-notification" in row["message"]
    async with store.sessions.begin() as session:
        session.add(DeliveryMessage(channel="sep2-notification", order_key=key, status="delivered"))
    async with store.sessions.begin() as session:
        assert (await comms.check(session, settings(), T0)).cleared == 1
    assert await _open(store) == {}


async def test_a_new_leader_judges_a_party_only_after_a_whole_window_of_its_own(store):
    await _enrol(store)
    log = ContactLog()
    async with store.sessions() as session:
        device_id = await session.scalar(select(EndDevice.id).where(EndDevice.lfdi == DEV))
    log.heard(Scope(Party.DEVICE, DEV, device_id=device_id), T0)
    await log.flush(store)
    at = T0 + dt.timedelta(seconds=300)  # everyone is quiet by now
    async with store.sessions.begin() as session:
        # leading for 100 s: long enough for the VEN's (60 s) and the Modbus asset's (60 s) windows, not 2030.5's
        outcome = await comms.check(session, settings(), at, judging_since=at - dt.timedelta(seconds=100))
    assert outcome.raised == 2 and set(await _open(store)) == {"ven:vpp-1", "modbus:inv-1"}
    async with store.sessions.begin() as session:
        await comms.check(session, settings(), at, judging_since=at - dt.timedelta(seconds=210))
    assert f"device:{DEV}" in await _open(store)


def test_a_live_server_records_contact_and_raises_and_clears_comms_lost(tmp_path):
    """A real device over mutual TLS: online after it polls, COMMS_LOST once it stops, cleared when it is back."""
    env = {
        "DSO_ORCHESTRATION__ENABLED": "false",
        "DSO_SEP2__POLL_RATE_S": "1",
        "DSO_ALARMS__COMMS_LOST_FACTOR": "2",
        "DSO_ALARMS__CONTACT_FLUSH_S": "1",
        "DSO_ALARMS__CHECK_INTERVAL_S": "1",
    }
    server = LiveServer(tmp_path / "dso", extra_env=env).init().start()
    try:
        device = server.issue_device("watched")
        assert server.admin("POST", "/api/v1/devices", {"lfdi": device["lfdi"], "name": "watched"})[0] == 201
        ctx = server.client_context(device["cert"], device["key"])
        subject = f"device:{device['lfdi']}"

        def open_alarms() -> list[dict]:
            return server.admin("GET", "/api/v1/alarms?state=open")[1]

        def wait(predicate, seconds: float = 20) -> None:
            deadline = time.monotonic() + seconds
            while not predicate():
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.25)

        assert server.request(ctx, "GET", "/dcap")[0] == 200
        wait(lambda: gauge(server.admin("GET", "/metrics")[1], kind="sep2", state="online") == 1)
        # quiet for longer than 2 poll periods + the flush period: lost
        wait(lambda: [a["subject"] for a in open_alarms()] == [subject])
        assert open_alarms()[0]["kind"] == alarms.COMMS_LOST
        assert gauge(server.admin("GET", "/metrics")[1], kind="sep2", state="offline") == 1
        assert server.request(ctx, "GET", "/dcap")[0] == 200  # back
        wait(lambda: open_alarms() == [])
        cleared = server.admin("GET", "/api/v1/alarms?state=cleared")[1]
        assert [a["subject"] for a in cleared] == [subject]
    finally:
        server.stop()


def gauge(text: str, **labels: str) -> float:
    wanted = "dso_fleet_parties{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted + " "))


async def test_fleet_rows_are_filtered_and_paged_in_sql(store):
    ids = await _enrol(store)
    log = ContactLog()
    log.heard(Scope(Party.DEVICE, DEV, device_id=ids["dev"]), T0)
    await log.flush(store)
    s, now = settings(), T0 + dt.timedelta(seconds=10)
    async with store.sessions() as session:
        rows, total = await fleetview.page(session, s, now, "sep2")
        assert total == 3 and [r.name for r in rows] == ["roof-1", "behind-agg", "never-installed"]
        online, n = await fleetview.page(session, s, now, "sep2", state="online")
        # the device behind the aggregator is not heard: its aggregator never was
        assert n == 1 and online[0].name == "roof-1" and online[0].last_contact == T0
        assert (await fleetview.page(session, s, now, "sep2", state="offline"))[1] == 2
        assert [r.name for r in (await fleetview.page(session, s, now, "sep2", q="INSTALL"))[0]] == [
            "never-installed"
        ]
        assert (await fleetview.page(session, s, now, "sep2", q="%"))[1] == 0  # LIKE wildcards are literal
        second, n = await fleetview.page(session, s, now, "sep2", offset=1, limit=1)
        assert n == 3 and [r.name for r in second] == ["behind-agg"]
        assert (await fleetview.device_row(session, s, now, ids["agg_dev"])).name == "behind-agg"
        vens, _ = await fleetview.page(session, s, now, "ven")
        modbus, _ = await fleetview.page(session, s, now, "modbus")
    assert [v.online for v in vens] == [True] and [m.online for m in modbus] == [True]
