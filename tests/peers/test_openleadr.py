"""openleadr's real OpenADRClient (a VEN) against a live OpenDSO server over mutual TLS.

The signed scenario walks the whole life of a VEN: registration, report registration and periodic
oadrUpdateReport values landing in telemetry, an event made with `dso event create` delivered by poll, modified
(on_update_event sees the new modificationNumber) and cancelled, opt responses recorded, oadrCreateOpt and
oadrCancelOpt, a VTN-requested re-registration and a VTN restart after which the VEN carries on without
registering again. Every body the server sends is validated against the official 2.0b schema.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from openleadr import objects
from support import dso
from support.openadr import SchemaWatch, admin, client, enroll, start_server, wait_for

pytestmark = pytest.mark.asyncio


def add_power_report(c, resource: str, value: float) -> None:
    c.add_report(
        callback=lambda: value,
        resource_id=resource,
        measurement="voltage",
        unit="V",
        scale="none",
        report_duration=dt.timedelta(seconds=1),
        sampling_rate=objects.SamplingRate(
            min_period=dt.timedelta(seconds=1), max_period=dt.timedelta(seconds=60)
        ),
    )


class Recorder:
    """on_event / on_update_event handlers that remember what the VEN saw and answer as told."""

    def __init__(self, answer: str = "optIn") -> None:
        self.answer = answer
        self.seen: list[tuple[str, int, str]] = []

    async def on_event(self, event):
        d = event["event_descriptor"]
        self.seen.append(("new", d["modification_number"], d["event_status"]))
        return self.answer

    async def on_update_event(self, event):
        d = event["event_descriptor"]
        self.seen.append(("update", d["modification_number"], d["event_status"]))
        return self.answer


async def _dso(server, *args: str) -> str:
    proc = await asyncio.to_thread(dso, *args, "-c", server.config)
    return proc.stdout


async def test_signed_ven_full_life(tmp_path):
    server = await asyncio.to_thread(start_server, tmp_path / "dso", DSO_OPENADR__SIGN_REPLIES="true")
    watch = SchemaWatch()
    ven = await asyncio.to_thread(enroll, server, "aggregator-1")
    # VEN signs every message; it also checks the VTN's signature against the VTN certificate fingerprint
    c = client(server, ven, watch, sign=True, verify_vtn=True)
    rec = Recorder("optIn")
    c.add_handler("on_event", rec.on_event)
    c.add_handler("on_update_event", rec.on_update_event)
    add_power_report(c, "meter-7", 231.5)
    try:
        # ---- registration
        await c.run()
        assert c.registration_id and c.ven_id == ven["ven_id"]
        status, info = await admin(server, "GET", "/api/v1/vens/aggregator-1")
        assert info["registration_id"] == c.registration_id
        registered_at = info["registered_at"]

        # ---- report registration and periodic values into telemetry
        status, reps = await admin(server, "GET", "/api/v1/openadr/reports?ven=aggregator-1")
        assert [r["report_name"] for r in reps["requests"]] == ["TELEMETRY_USAGE"]

        async def telemetry_rows():
            _, rows = await admin(server, "GET", f"/api/v1/telemetry?source_id={c.ven_id}&limit=10")
            return rows if len(rows) >= 2 else None

        rows = await wait_for(telemetry_rows, 15, "oadrUpdateReport values in telemetry")
        assert {(r["resource"], r["measurement"], r["unit"], r["value"]) for r in rows} == {
            ("meter-7", "voltage", "V", 231.5)
        }
        _, reps = await admin(server, "GET", "/api/v1/openadr/reports?ven=aggregator-1")
        assert reps["requests"][0]["status"] == "active"
        assert reps["offered"][0]["resource_id"] == "meter-7" and reps["offered"][0]["unit"] == "V"
        cli_rows = json.loads(
            await _dso(server, "telemetry", "show", "--source-id", c.ven_id, "--limit", "1", "--json")
        )
        assert cli_rows[0]["value"] == 231.5
        # a one-shot report asked by staff (oadrCreateReport with granularity 0) is answered by the VEN
        spec = reps["offered"][0]["report_specifier_id"]
        one_shot = json.loads(await _dso(server, "report", "request", "aggregator-1", spec, "--json"))

        async def one_shot_delivered():
            _, r = await admin(server, "GET", "/api/v1/openadr/reports?ven=aggregator-1")
            req = next(q for q in r["requests"] if q["report_request_id"] == one_shot["report_request_id"])
            return req if req["last_update_at"] else None

        await wait_for(one_shot_delivered, 10, "one-shot report values")

        # ---- event from the CLI, delivered by poll
        event_id = (
            await _dso(
                server,
                "event",
                "create",
                "--signal",
                "SIMPLE",
                "--level",
                "2",
                "--start",
                "now",
                "--duration",
                "900",
                "--ven",
                "aggregator-1",
            )
        ).strip()
        assert event_id.isdigit()
        await wait_for(lambda: rec.seen, 10, "on_event")
        assert rec.seen[0] == ("new", 0, "active")
        await wait_for(lambda: _responses(server, event_id, 1), 10, "optIn recorded")

        # ---- modified: on_update_event sees modificationNumber 1
        await _dso(server, "event", "modify", event_id, "--level", "3")
        await wait_for(lambda: ("update", 1, "active") in rec.seen, 10, "on_update_event with mod 1")
        rec.answer = "optOut"
        # ---- cancelled: stays visible, status cancelled, modificationNumber 2
        await _dso(server, "event", "cancel", event_id)
        await wait_for(lambda: ("update", 2, "cancelled") in rec.seen, 10, "on_update_event cancelled")
        responses = await wait_for(lambda: _responses(server, event_id, 3), 10, "three opt responses")
        assert [(r["opt_type"], r["modification_number"]) for r in responses] == [
            ("optIn", 0),
            ("optIn", 1),
            ("optOut", 2),
        ]
        listed = json.loads(await _dso(server, "event", "list", "--json"))
        assert [(e["id"], e["status"], e["modification_number"]) for e in listed] == [
            (int(event_id), "cancelled", 2)
        ]

        # ---- oadrCreateOpt / oadrCancelOpt
        now = dt.datetime.now(dt.UTC)
        opt_id = await c.create_opt(
            opt_type="optOut",
            opt_reason="notParticipating",
            targets=[objects.Target(resource_id="meter-7")],
            vavailability=objects.Vavailability(
                components=[
                    objects.VavailabilityComponent(
                        dtstart=now + dt.timedelta(hours=1), duration=dt.timedelta(hours=2)
                    )
                ]
            ),
        )
        assert opt_id
        opts = json.loads(await _dso(server, "opt", "list", "--ven", "aggregator-1", "--json"))
        assert (
            opts[0]["opt_id"] == opt_id and opts[0]["opt_type"] == "optOut" and opts[0]["status"] == "active"
        )
        assert opts[0]["availability"][0]["duration_s"] == 7200
        assert opts[0]["targets"] == {"resourceID": ["meter-7"]}
        assert await c.cancel_opt(opt_id) is True
        opts = json.loads(await _dso(server, "opt", "list", "--ven", "aggregator-1", "--json"))
        assert opts[0]["status"] == "cancelled"

        # ---- oadrRequestReregistration -> the VEN registers again with its registrationID
        await _dso(server, "ven", "reregister", "aggregator-1")

        async def reregistered():
            _, v = await admin(server, "GET", "/api/v1/vens/aggregator-1")
            return v if v["registered_at"] != registered_at else None

        info = await wait_for(reregistered, 10, "re-registration")
        assert info["registration_id"] == c.registration_id  # renewed, not replaced
        registered_at = info["registered_at"]
        # the report was registered again: the old request is cancelled (oadrCancelReport), a new one runs

        async def one_active_request():
            _, r = await admin(server, "GET", "/api/v1/openadr/reports?ven=aggregator-1")
            states = [q["status"] for q in r["requests"]]
            return states if states.count("active") == 1 and states.count("cancelled") >= 1 else None

        await wait_for(one_active_request, 10, "superseded report request cancelled, new one active")

        # ---- VTN restart in the middle: the VEN keeps polling without registering again
        await asyncio.to_thread(server.restart)
        event2 = await _dso(
            server,
            "event",
            "create",
            "--signal",
            "SIMPLE",
            "--level",
            "1",
            "--start",
            "now",
            "--duration",
            "600",
            "--json",
        )
        event2_id = str(json.loads(event2)["id"])
        await wait_for(lambda: _responses(server, event2_id, 1), 15, "event after restart answered")
        _, info = await admin(server, "GET", "/api/v1/vens/aggregator-1")
        assert info["registered_at"] == registered_at and info["registration_id"] == c.registration_id
        watch.assert_clean()
    finally:
        await c.stop()
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.log()


def _responses(server, event_id: str, count: int):
    status, event = server.admin("GET", f"/api/v1/openadr/events/{event_id}")
    assert status == 200, event
    return event["responses"] if len(event["responses"]) >= count else None


async def test_two_vens_isolated_unsigned_and_rsa_signed(tmp_path, database_url):
    """ven-a does not sign, ven-b (RSA certificate) signs every message; an event for ven-b never reaches ven-a.
    On SQLite and PostgreSQL."""
    server = await asyncio.to_thread(start_server, tmp_path / "dso", database_url=database_url)
    watch = SchemaWatch()
    a = await asyncio.to_thread(enroll, server, "ven-a")
    b = await asyncio.to_thread(enroll, server, "ven-b", True)  # RSA certificate: the RSA TLS suite
    ca, cb = client(server, a, watch, sign=False), client(server, b, watch, sign=True)
    ra, rb = Recorder(), Recorder()
    for cl, rec in ((ca, ra), (cb, rb)):
        cl.add_handler("on_event", rec.on_event)
        cl.add_handler("on_update_event", rec.on_update_event)
    try:
        await ca.run()
        await cb.run()
        assert ca.registration_id and cb.registration_id and ca.ven_id != cb.ven_id
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = await _dso(
            server,
            "event",
            "create",
            "--signal",
            "ELECTRICITY_PRICE",
            "--level",
            "0.31",
            "--start",
            start,
            "--duration",
            "3600",
            "--ven",
            "ven-b",
        )
        await wait_for(lambda: rb.seen, 10, "event at ven-b")
        assert rb.seen[0] == ("new", 0, "far")
        await asyncio.sleep(2.5)  # ven-a polled at least twice meanwhile
        assert ra.seen == []
        await wait_for(lambda: _responses(server, out.strip(), 1), 10, "ven-b optIn")
        watch.assert_clean()
    finally:
        await ca.stop()
        await cb.stop()
        await asyncio.to_thread(server.stop)
