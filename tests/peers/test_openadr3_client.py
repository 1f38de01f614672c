"""ElaadNL's openadr3-client (PyPI, the maintained Python 3.x client with both BL and VEN roles) against a live
server: its business-logic client creates a program and an event; its VEN client obtains a token (token URL found
through GET /auth/server), registers a VEN and a resource, reads the events aimed at it, subscribes with a
webhook and is notified -- with its bearer token, in order, after a failed first attempt -- of the event's
creation, modification and cancellation, and posts a report whose values then are in the telemetry store. Every
notification is checked against the specification's schema."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from support import LiveServer
from support.openadr import wait_for
from support.openadr3 import WebhookReceiver, make_client, run_peer, spec_errors
from support.sep2_live import FAST_DELIVERY

pytestmark = pytest.mark.asyncio


@pytest.fixture
def server(tmp_path):
    live = LiveServer(tmp_path / "dso", extra_env=dict(FAST_DELIVERY)).init().start()
    yield live
    live.stop()


async def test_bl_and_ven_clients_program_event_webhooks_and_report(server):
    receiver = WebhookReceiver()
    try:
        bl = await asyncio.to_thread(make_client, server, "utility-bl", "bl")
        ven = await asyncio.to_thread(make_client, server, "site-ven", "ven")
        assert len(bl["client_secret"]) >= 32 and bl["client_id"] != ven["client_id"]
        bl_cfg = {"client_id": bl["client_id"], "client_secret": bl["client_secret"]}
        ven_cfg = {
            "client_id": ven["client_id"],
            "client_secret": ven["client_secret"],
            "ven_name": "site-ven",
        }

        # ---- the VEN registers itself and a resource, and subscribes to events with a webhook
        receiver.fail_next = 1  # the first notification is refused once: it must come again
        registered = await asyncio.to_thread(
            run_peer,
            server,
            "ven-register",
            {
                **ven_cfg,
                "resource": "battery-1",
                "callback": receiver.url("/hook"),
                "bearer": "hook-secret-1",
            },
        )
        assert registered["ven"]["ven_name"] == "site-ven"
        assert registered["resource"]["ven_id"] == registered["ven"]["id"]

        # ---- the BL client creates a program and an event aimed at that VEN
        made = await asyncio.to_thread(
            run_peer,
            server,
            "bl-program-and-event",
            {**bl_cfg, "program": "evening-peak", "level": 2, "targets": ["site-ven"]},
        )
        event_id, program_id = made["event"]["id"], made["program"]["id"]
        assert made["event"]["program_id"] == program_id and made["event"]["targets"] == ["site-ven"]

        # ---- the VEN reads the events aimed at it
        seen = await asyncio.to_thread(run_peer, server, "ven-events", {**ven_cfg, "program_id": program_id})
        assert [e["id"] for e in seen] == [event_id]
        assert seen[0]["intervals"][0]["payloads"][0] == {"type": "SIMPLE", "values": [2.0]}

        def notes():
            return [body for auth, body in receiver.notes("/hook") if body["object"]["id"] == event_id]

        await wait_for(lambda: notes() or None, 20, "the CREATE notification")
        assert receiver.failed == 1  # refused once, then delivered by the outbox's retry
        assert all(auth == "Bearer hook-secret-1" for auth, _ in receiver.notes("/hook"))

        # ---- modified, then cancelled by the BL client
        changed = await asyncio.to_thread(
            run_peer, server, "bl-modify", {**bl_cfg, "event_id": event_id, "level": 3}
        )
        assert changed["intervals"][0]["payloads"][0]["values"] == [3.0]
        await wait_for(lambda: len(notes()) >= 2 or None, 20, "the UPDATE notification")

        # ---- the VEN reports on the event: the values land in the telemetry store
        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        report = await asyncio.to_thread(
            run_peer,
            server,
            "ven-report",
            {
                **ven_cfg,
                "event_id": event_id,
                "resource": "battery-1",
                "start": start.isoformat(),
                "values": [1.5, 2.5],
            },
        )
        assert report["event_id"] == event_id and report["client_id"] == ven["client_id"]
        status, info = server.admin("GET", "/api/v1/vens/site-ven")
        assert status == 200, info
        status, rows = server.admin(
            "GET", f"/api/v1/telemetry?source_kind=ven&source_id={info['ven_id']}&resource=battery-1"
        )
        assert status == 200
        assert sorted((r["measurement"], r["value"]) for r in rows) == [("USAGE", 1.5), ("USAGE", 2.5)]
        assert {dt.datetime.fromisoformat(r["ts"]) for r in rows} == {start, start + dt.timedelta(minutes=5)}

        cancelled = await asyncio.to_thread(run_peer, server, "bl-cancel", {**bl_cfg, "event_id": event_id})
        assert cancelled["id"] == event_id
        await wait_for(lambda: len(notes()) >= 3 or None, 20, "the DELETE notification")
        got = notes()
        assert [n["operation"] for n in got] == ["CREATE", "UPDATE", "DELETE"]
        assert [n["object"]["intervals"][0]["payloads"][0]["values"] for n in got] == [[2.0], [3.0], [3.0]]
        for note in got:
            assert spec_errors("notification", note) == [], note
        # a cancelled event is gone from the VEN's list
        assert (
            await asyncio.to_thread(run_peer, server, "ven-events", {**ven_cfg, "program_id": program_id})
            == []
        )

        # ---- staff see the event and the VEN's report as its answer, beside every other protocol's
        status, shown = server.admin("GET", f"/api/v1/events/{event_id}")
        assert status == 200 and shown["cancelled_at"] is not None
        assert [(r["protocol"], r["ven"]) for r in shown["responses"]] == [("openadr3", "site-ven")]
    finally:
        receiver.close()
