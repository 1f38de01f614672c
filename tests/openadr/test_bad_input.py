"""Raw OpenADR messages over real mutual TLS: bad input, identity checks, cross-VEN isolation, signatures,
VTN-initiated messages and the durability of the poll queue. Messages are built with openleadr's own message
builder (so they are what a real VEN sends) or deliberately broken by hand."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from lxml import etree
from support.openadr import RawVen, SchemaWatch, message_type, response_code, start_server

from server.openadr import codec


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("oadr") / "dso")
    watch = SchemaWatch()
    a, b = RawVen(server, "raw-a", watch), RawVen(server, "raw-b", watch)
    a.register()
    b.register()
    try:
        yield server, watch, a, b
    finally:
        server.stop()
        watch.assert_clean()
        assert "Traceback" not in server.log()


def test_malformed_xml_gets_oadr_response_400(env):
    server, watch, a, _ = env
    status, answer = a.send("OadrPoll", b"<oadrPayload><unclosed>")
    assert status == 200 and message_type(answer) == "oadrResponse" and response_code(answer) == 400


def test_entity_expansion_refused_quickly(env):
    server, watch, a, _ = env
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
            for i in range(1, 10)
        )
        + b']><oadrPayload xmlns="http://openadr.org/oadr-2.0b/2012/07">&lol9;</oadrPayload>'
    )
    started = time.monotonic()
    status, answer = a.send("OadrPoll", bomb)
    assert status == 200 and response_code(answer) == 400 and b"DOCTYPE" in answer
    assert time.monotonic() - started < 2


def test_schema_invalid_gets_454(env):
    server, watch, a, _ = env
    body = a.msg("oadrPoll", ven_id=a.ven_id).replace(b"<ei:venID>", b"<ei:bogus>x</ei:bogus><ei:venID>")
    status, answer = a.send("OadrPoll", body)
    assert status == 200 and response_code(answer) == 454 and b"schema" in answer


def test_oversized_body_is_413(env):
    server, watch, a, _ = env
    status, _ = a.send("OadrPoll", b"<" + b"x" * 300_000 + b"/>")
    assert status == 413


def test_unknown_ven_id_is_452(env):
    server, watch, a, _ = env
    status, answer = a.send("OadrPoll", a.msg("oadrPoll", ven_id="VEN-NOBODY"))
    assert response_code(answer) == 452


def test_other_vens_id_is_463(env):
    server, watch, a, b = env
    status, answer = a.send("OadrPoll", a.msg("oadrPoll", ven_id=b.ven_id))
    assert response_code(answer) == 463


def test_unenrolled_certificate_cannot_register(env):
    server, watch, _, _ = env
    stranger = RawVen(server, "stranger", watch, enrolled=False)
    answer = stranger.register()
    assert response_code(answer) == 463 and stranger.registration_id is None


def test_message_on_wrong_service_is_453(env):
    server, watch, a, _ = env
    status, answer = a.send("EiEvent", a.msg("oadrPoll", ven_id=a.ven_id))
    assert response_code(answer) == 453


def test_query_registration_reveals_only_own_ids(env):
    server, watch, a, b = env
    status, answer = a.send("EiRegisterParty", a.msg("oadrQueryRegistration", request_id="q1"))
    root = etree.fromstring(answer)
    assert message_type(answer) == "oadrCreatedPartyRegistration"
    assert codec.text(root, ".//ei:venID") == a.ven_id and b.ven_id.encode() not in answer
    vtn_id = codec.text(root, ".//ei:vtnID")
    assert vtn_id and not vtn_id.islower()


def test_cross_ven_access_is_refused(env):
    server, watch, a, b = env
    status, event = server.admin(
        "POST", "/api/v1/openadr/events", {"level": 1, "duration_s": 600, "vens": ["raw-a"]}
    )
    assert status == 201
    # b does not see a's event ...
    status, answer = b.send("EiEvent", b.msg("oadrRequestEvent", request_id="e1", ven_id=b.ven_id))
    assert message_type(answer) == "oadrDistributeEvent" and b"<ei:eventID>" not in answer
    # ... a does, and the target names a alone
    status, answer = a.send("EiEvent", a.msg("oadrRequestEvent", request_id="e1", ven_id=a.ven_id))
    assert f"<ei:eventID>{event['id']}</ei:eventID>".encode() in answer and b.ven_id.encode() not in answer
    # b cannot answer a's event
    created = b.msg(
        "oadrCreatedEvent",
        ven_id=b.ven_id,
        response={"response_code": 200, "response_description": "OK", "request_id": "e1"},
        event_responses=[
            {
                "response_code": 200,
                "response_description": "OK",
                "request_id": "e1",
                "event_id": str(event["id"]),
                "modification_number": 0,
                "opt_type": "optOut",
            }
        ],
    )
    status, answer = b.send("EiEvent", created)
    assert response_code(answer) == 452
    assert server.admin("GET", f"/api/v1/openadr/events/{event['id']}")[1]["responses"] == []
    # a's opt cannot be cancelled by b
    opt = a.msg(
        "oadrCreateOpt",
        request_id="o1",
        ven_id=a.ven_id,
        opt_id="opt-a",
        opt_type="optOut",
        opt_reason="participating",
        created_date_time=dt.datetime.now(dt.UTC),
        event_id=str(event["id"]),
        modification_number=0,
        targets=[{"ven_id": a.ven_id}],
    )
    status, answer = a.send("EiOpt", opt)
    assert message_type(answer) == "oadrCreatedOpt" and response_code(answer) == 200
    status, answer = b.send("EiOpt", b.msg("oadrCancelOpt", request_id="o2", ven_id=b.ven_id, opt_id="opt-a"))
    assert response_code(answer) == 452
    # b cannot opt on a's event either
    opt_b = b.msg(
        "oadrCreateOpt",
        request_id="o3",
        ven_id=b.ven_id,
        opt_id="opt-b",
        opt_type="optIn",
        opt_reason="participating",
        created_date_time=dt.datetime.now(dt.UTC),
        event_id=str(event["id"]),
        modification_number=0,
        targets=[{"ven_id": b.ven_id}],
    )
    assert response_code(b.send("EiOpt", opt_b)[1]) == 452
    # b cannot cancel a's registration
    cancel = b.msg(
        "oadrCancelPartyRegistration", request_id="c1", registration_id=a.registration_id, ven_id=b.ven_id
    )
    assert response_code(b.send("EiRegisterParty", cancel)[1]) == 452
    assert server.admin("GET", "/api/v1/vens/raw-a")[1]["registration_id"] == a.registration_id


def test_bad_and_replayed_signatures_are_rejected(env):
    server, watch, a, _ = env
    signed = a.msg("oadrQueryRegistration", sign=True, request_id="q-signed")
    assert response_code(a.send("EiRegisterParty", signed)[1]) == 200
    status, answer = a.send("EiRegisterParty", signed)  # the same nonce again
    assert response_code(answer) == 463 and b"nonce already used" in answer
    # the same on the idle-poll fast path: drain the queue, then replay a signed poll
    while a.poll()[0] != "oadrResponse":
        pass
    signed_poll = a.msg("oadrPoll", sign=True, ven_id=a.ven_id)
    assert response_code(a.send("OadrPoll", signed_poll)[1]) == 200
    status, answer = a.send("OadrPoll", signed_poll)
    assert response_code(answer) == 463 and b"nonce already used" in answer
    tampered = a.msg("oadrQueryRegistration", sign=True, request_id="q-original").replace(
        b"q-original", b"q-evil"
    )
    status, answer = a.send("EiRegisterParty", tampered)
    assert response_code(answer) == 463 and b"signature rejected" in answer


def test_ven_registered_for_signatures_must_sign(env):
    server, watch, _, _ = env
    c = RawVen(server, "raw-signing", watch)
    answer = c.register(xml_signature=True)
    assert response_code(answer) == 200
    status, answer = c.send("OadrPoll", c.msg("oadrPoll", ven_id=c.ven_id))
    assert response_code(answer) == 463 and b"unsigned" in answer
    status, answer = c.send("OadrPoll", c.msg("oadrPoll", sign=True, ven_id=c.ven_id))
    assert status == 200 and b"signature rejected" not in answer


def test_signature_by_another_certificate_is_rejected(env):
    server, watch, a, b = env
    # b signs a message and a sends it over its own TLS connection
    forged = b.msg("oadrPoll", sign=True, ven_id=a.ven_id)
    status, answer = a.send("OadrPoll", forged)
    assert response_code(answer) == 463 and b"signature rejected" in answer


def test_report_requests_from_staff_reach_the_ven(env):
    server, watch, a, _ = env
    from openleadr import objects

    report = objects.Report(
        report_specifier_id="spec-1",
        report_name="METADATA_TELEMETRY_STATUS",
        created_date_time=dt.datetime.now(dt.UTC),
        duration=dt.timedelta(seconds=60),
        report_descriptions=[
            objects.ReportDescription(
                r_id="status-1",
                reading_type="x-notApplicable",
                report_type="x-resourceStatus",
                market_context="http://mc",
                report_subject=objects.Target(resource_id="dev-1"),
                report_data_source=objects.Target(resource_id="dev-1"),
                sampling_rate=objects.SamplingRate(
                    min_period=dt.timedelta(seconds=1), max_period=dt.timedelta(seconds=60)
                ),
            )
        ],
    )
    body = a.msg(
        "oadrRegisterReport", request_id="rr1", ven_id=a.ven_id, reports=[report], report_request_id=0
    )
    status, answer = a.send("EiReport", body)
    assert message_type(answer) == "oadrRegisteredReport" and b"spec-1" in answer
    status, made = server.admin(
        "POST", "/api/v1/vens/raw-a/report-requests", {"report_specifier_id": "spec-1", "granularity_s": 0}
    )
    assert status == 202
    kinds = [a.poll()[0] for _ in range(4)]
    assert "oadrCreateReport" in kinds
    status, _ = server.admin("POST", f"/api/v1/vens/raw-a/report-requests/{made['report_request_id']}/cancel")
    assert status == 202
    kind, answer = a.poll()
    assert kind == "oadrCancelReport" and made["report_request_id"].encode() in answer


def test_queue_survives_restart_and_vtn_cancels_registration(tmp_path):
    server = start_server(tmp_path / "dso", DSO_OPENADR__SELF_REGISTER="true")
    watch = SchemaWatch()
    try:
        # self-registration: the certificate is not enrolled beforehand
        v = RawVen(server, "self-made", watch, enrolled=False)
        v.register()
        assert v.ven_id and v.registration_id
        # a self-registering VEN whose oadrVenName is taken gets a unique name, not a failure
        RawVen(server, "taken", watch)
        other = RawVen(server, "taken-too", watch, enrolled=False)
        other.name = "taken"
        assert response_code(other.register()) == 200
        names = {x["name"] for x in server.admin("GET", "/api/v1/vens")[1]}
        assert "taken" in names and any(n.startswith("taken-") and n != "taken-too" for n in names)
        assert v.poll()[0] == "oadrRegisterReport"  # the VTN's own report registration comes first
        status, event = server.admin("POST", "/api/v1/openadr/events", {"level": 2, "duration_s": 600})
        server.restart()
        kind, answer = v.poll()
        assert kind == "oadrDistributeEvent" and f"<ei:eventID>{event['id']}</ei:eventID>".encode() in answer
        assert v.poll()[0] == "oadrResponse"
        # VTN-initiated cancellation: delivered by poll, confirmed by the VEN, then the VEN is unregistered
        name = next(x["name"] for x in server.admin("GET", "/api/v1/vens")[1] if x["ven_id"] == v.ven_id)
        assert server.admin("POST", f"/api/v1/vens/{name}/cancel-registration")[0] == 202
        kind, answer = v.poll()
        assert kind == "oadrCancelPartyRegistration" and v.registration_id.encode() in answer
        confirm = v.msg(
            "oadrCanceledPartyRegistration",
            ven_id=v.ven_id,
            registration_id=v.registration_id,
            response={"response_code": 200, "response_description": "OK", "request_id": "x"},
        )
        assert response_code(v.send("EiRegisterParty", confirm)[1]) == 200
        status, answer = v.send("OadrPoll", v.msg("oadrPoll", ven_id=v.ven_id))
        assert response_code(answer) == 463
        watch.assert_clean()
    finally:
        server.stop()


def test_staff_cli_for_vens(env):
    server, watch, a, _ = env
    from support import dso, dso_json

    listed = dso_json("ven", "list", "--json", "-c", server.config)
    assert {"raw-a", "raw-b"} <= {v["name"] for v in listed}
    shown = dso_json("ven", "set", "raw-b", "--push", "on", "--json", "-c", server.config)
    assert shown["push_enabled"] is True and shown["registration_id"] == env[3].registration_id
    # errors are one line and a non-zero exit
    proc = dso("ven", "show", "nobody", "-c", server.config, check=False)
    assert proc.returncode == 1 and "no VEN named" in proc.stderr
    proc = dso("ven", "enroll", "--name", "x", "--fingerprint", "zz", "-c", server.config, check=False)
    assert proc.returncode == 1 and "fingerprint" in proc.stderr
    proc = dso(
        "event",
        "create",
        "--level",
        "1",
        "--duration",
        "60",
        "--start",
        "2026-01-01T00:00:00",
        "-c",
        server.config,
        check=False,
    )
    assert proc.returncode == 1 and "time zone" in proc.stderr
    proc = dso("event", "modify", "999999", "--level", "2", "-c", server.config, check=False)
    assert proc.returncode == 1 and "no event" in proc.stderr
    made = dso_json(
        "event",
        "create",
        "--signal",
        "ELECTRICITY_PRICE",
        "--interval",
        "900:0.12",
        "--interval",
        "900:0.31",
        "--start",
        "2030-01-01T00:00:00Z",
        "--ven",
        "raw-a",
        "--json",
        "-c",
        server.config,
    )
    assert made["duration_s"] == 1800 and [i["value"] for i in made["intervals"]] == [0.12, 0.31]
    assert made["status"] == "far" and made["signal_type"] == "price" and made["vens"] == ["raw-a"]
    out = dso("event", "list", "-c", server.config).stdout
    assert "SIMPLE" in out and "0.12/0.31" in out


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.1.2.3/OpenADR2/Simple/2.0b", "private address"),
        ("https://127.0.0.1:{admin_port}/api/v1/vens", "own admin listener"),
        ("ftp://127.0.0.1/x", "absolute https URL"),
    ],
)
def test_push_transport_address_the_server_must_not_reach_is_refused(env, address, reason):
    server, watch, _, _ = env
    admin_port = server.info["admin_url"].rsplit(":", 1)[1]
    name = f"push-{abs(hash(address)) % 10_000}"
    ven = RawVen(server, name, watch)
    answer = ven.register(http_pull_model=False, transport_address=address.format(admin_port=admin_port))
    assert response_code(answer) == 454 and reason.encode() in answer, answer
    stored = next(v for v in server.admin("GET", "/api/v1/vens")[1] if v["name"] == name)
    assert stored["registration_id"] is None and stored["transport_address"] == ""
