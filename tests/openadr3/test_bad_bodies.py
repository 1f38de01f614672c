"""More than 200 malformed request bodies -- wrong types, numbers beyond any range, unknown enums, deep nesting,
not JSON at all, the wrong media type, 10 MB -- sent to every writable 3.x collection and object: each gets a 4xx
with a Problem body the specification accepts, nothing of them is stored, and the server answers normally after."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from support import LiveServer
from support.openadr3 import Api, make_client, spec_errors

START = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
GOOD = {
    "program": {"programName": "good"},
    "event": {
        "programID": "PROGRAM",
        "intervalPeriod": {"start": START, "duration": "PT1H"},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],
    },
    "ven": {"objectType": "BL_VEN_REQUEST", "venName": "v2", "clientID": "CLIENT"},
    "subscription": {
        "clientName": "bl",
        "objectOperations": [
            {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "http://127.0.0.1:9/x"}
        ],
    },
    "resource": {
        "objectType": "BL_RESOURCE_REQUEST",
        "resourceName": "r",
        "venID": "VEN",
        "clientID": "CLIENT",
    },
}
DEEP = {"a": 1}
for _ in range(200):
    DEEP = {"a": DEEP}


def with_(base: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def variants(kind: str) -> list[bytes]:
    base = GOOD[kind]
    wrong_values: list[Any] = [123, 1.5, True, [], {}, "x" * 9000, -1]
    out: list[bytes] = []
    for key in base:
        for value in wrong_values:
            if isinstance(base[key], str) and isinstance(value, str) and len(value) < 200:
                continue
            out.append(json.dumps(with_(base, [key], value)).encode())
    # unknown enums and shapes the specification refuses
    specific = {
        "program": lambda: [
            with_(base, ["payloadDescriptors"], [{"objectType": "NO_SUCH", "payloadType": "PRICE"}]),
            with_(base, ["targets"], [""]),
            with_(base, ["intervalPeriod"], {"start": "yesterday", "duration": 5}),
            with_(base, ["programDescriptions"], [{"URL": 7}]),
        ],
        "event": lambda: [
            with_(base, ["intervals", 0, "payloads", 0, "values"], ["not a number"]),
            with_(base, ["intervals", 0, "payloads", 0, "values"], [1, 2]),
            with_(base, ["intervals", 0, "id"], 2**40),
            with_(base, ["intervalPeriod", "duration"], "P1X"),
            with_(base, ["intervalPeriod", "duration"], "P99999999Y"),
            with_(base, ["intervalPeriod", "start"], "not-a-date"),
            with_(base, ["priority"], -3),
            with_(base, ["reportDescriptors"], [{"payloadType": "USAGE", "reportIntervals": "SOMETIMES"}]),
            with_(base, ["programID"], "no such id!"),
            with_(base, ["programID"], "999999"),
            with_(base, ["targets"], ["no-such-ven"]),
            with_(base, ["intervals"], []),
        ],
        "ven": lambda: [
            with_(base, ["objectType"], "VEN_VEN_REQUEST"),
            with_(base, ["objectType"], "SOMETHING"),
            with_(base, ["clientID"], "no-such-client"),
            with_(base, ["attributes"], [{"type": "X"}]),
        ],
        "subscription": lambda: [
            with_(base, ["objectOperations", 0, "operations"], ["EXPLODE"]),
            with_(base, ["objectOperations", 0, "objects"], ["THING"]),
            with_(base, ["objectOperations", 0, "callbackUrl"], "ftp://127.0.0.1/x"),
            with_(base, ["objectOperations", 0, "callbackUrl"], "https://169.254.169.254/latest"),
            with_(base, ["programID"], "424242"),
        ],
        "resource": lambda: [
            with_(base, ["venID"], "777777"),
            with_(base, ["objectType"], "VEN_RESOURCE_REQUEST"),
        ],
    }[kind]()
    out += [json.dumps(b).encode() for b in specific]
    # not JSON, or JSON of the wrong kind, or numbers no double holds
    out += [
        b"",
        b"{",
        b"[1, 2",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b"123",
        b'"text"',
        b'{"programName": NaN}',
        b'{"programName": "x", "attributes": [{"type": "T", "values": [1e999]}]}',
        b'{"programName": "x", "attributes": [{"type": "T", "values": [' + b"9" * 5000 + b"]}]}",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(with_(base, ["deep"], DEEP)).encode(),
    ]
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    server = (
        LiveServer(
            tmp_path_factory.mktemp("oadr3-bad") / "dso",
            extra_env={"DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true"},
        )
        .init()
        .start()
    )
    try:
        bl = Api.login(server, make_client(server, "bl", "bl"))
        ven_client = make_client(server, "site", "ven")
        status, program = bl.call("POST", "/programs", {"programName": "base"})
        assert status == 201
        status, ven = bl.call(
            "POST",
            "/vens",
            {"objectType": "BL_VEN_REQUEST", "venName": "site", "clientID": ven_client["client_id"]},
        )
        assert status == 201, ven
        GOOD["event"]["programID"] = program["id"]
        GOOD["ven"]["clientID"] = ven_client["client_id"]
        GOOD["resource"].update(venID=ven["id"], clientID=ven_client["client_id"])
        yield server, bl, program, ven
    finally:
        server.stop()


def snapshot(bl: Api) -> dict[str, Any]:
    out = {}
    for path in ("/programs", "/events", "/vens", "/resources", "/subscriptions", "/reports"):
        status, body = bl.call("GET", path)
        assert status == 200
        out[path] = body
    return out


def test_malformed_bodies_get_problems_and_store_nothing(setup):
    server, bl, program, ven = setup
    before = snapshot(bl)
    targets = {
        "program": ["/programs", f"/programs/{program['id']}"],
        "event": ["/events"],
        "ven": ["/vens", f"/vens/{ven['id']}"],
        "subscription": ["/subscriptions"],
        "resource": ["/resources"],
    }
    sent = 0
    for kind, paths in targets.items():
        for raw in variants(kind):
            for path in paths:
                method = "PUT" if path.count("/") > 1 else "POST"
                status, headers, answer = bl.raw(method, path, raw, {"Content-Type": "application/json"})
                assert 400 <= status < 500, (kind, path, raw[:200], status, answer[:300])
                assert headers["Content-Type"].startswith("application/json")
                body = json.loads(answer)
                assert body["status"] == status and spec_errors("problem", body) == [], body
                sent += 1
    # the wrong media type, and 10 MB
    status, _, answer = bl.raw("POST", "/programs", b'{"programName": "x"}', {"Content-Type": "text/plain"})
    assert status == 415 and json.loads(answer)["status"] == 415
    huge = b'{"programName": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    status, _, answer = bl.raw("POST", "/programs", huge, {"Content-Type": "application/json"})
    assert status == 413 and spec_errors("problem", json.loads(answer)) == []
    sent += 2
    assert sent >= 200, sent
    # nothing was stored, and the server still works
    assert snapshot(bl) == before
    status, made = bl.call("POST", "/programs", {"programName": "after"})
    assert status == 201 and made["programName"] == "after"
    status, telemetry = server.admin("GET", "/api/v1/telemetry?source_kind=ven")
    assert status == 200 and telemetry == []


def test_bad_query_parameters_and_ids_get_problems(setup):
    _, bl, program, _ = setup
    for path, status_wanted in (
        ("/programs?limit=51", 400),
        ("/programs?limit=-1", 400),
        ("/programs?skip=abc", 400),
        ("/events?active=maybe", 400),
        ("/events?programID=a%20b", 400),
        ("/programs/not%20an%20id", 400),
        ("/programs/123456789012345678901", 404),
        ("/events/999", 404),
        ("/nothing-here", 404),
    ):
        status, body = bl.call("GET", path)
        assert status == status_wanted, (path, body)
        assert spec_errors("problem", body) == [], body
    status, body = bl.call("PATCH", f"/programs/{program['id']}", {"programName": "x"})
    assert status == 405 and body["status"] == 405
