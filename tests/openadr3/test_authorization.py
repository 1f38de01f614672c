"""Who may do what on the 3.x API, over real TLS with real tokens: a VEN token sees only its own VEN, resources,
reports and subscriptions (another VEN's are 404, as if they did not exist, and absent from lists), only the
events aimed at it, and cannot write programs or events (403); no token, a forged one, an expired one or one of
a disabled client is 401; the token endpoint refuses wrong secrets (401 invalid_client) and scopes beyond the
role (400 invalid_scope). Every refusal is a Problem body the specification accepts."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse

import pytest
from support import LiveServer
from support.openadr3 import Api, make_client, spec_errors

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def event_body(program_id: str, targets: list[str] | None = None, level: int = 1) -> dict:
    body = {
        "programID": program_id,
        "eventName": "t",
        "intervalPeriod": {"start": NOW.isoformat().replace("+00:00", "Z"), "duration": "PT1H"},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [level]}]}],
    }
    if targets:
        body["targets"] = targets
    return body


def problem(status: int, body) -> None:
    assert isinstance(body, dict) and body["status"] == status, body
    assert spec_errors("problem", body) == [], body


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = (
        LiveServer(
            tmp_path_factory.mktemp("oadr3-authz") / "dso",
            extra_env={"DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true"},
        )
        .init()
        .start()
    )
    try:
        bl_client = make_client(server, "bl", "bl")
        a_client, b_client = make_client(server, "ven-a", "ven"), make_client(server, "ven-b", "ven")
        bl, a, b = Api.login(server, bl_client), Api.login(server, a_client), Api.login(server, b_client)
        objects = {}
        for name, api in (("a", a), ("b", b)):
            status, ven = api.call(
                "POST", "/vens", {"objectType": "VEN_VEN_REQUEST", "venName": f"ven-{name}"}
            )
            assert status == 201, ven
            status, res = api.call(
                "POST",
                "/resources",
                {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "meter", "venID": ven["id"]},
            )
            assert status == 201, res
            objects[name] = {"ven": ven, "resource": res}
        # no members: each event reaches only the VEN it names (members would get every event of the program)
        status, program = bl.call("POST", "/programs", {"programName": "p1"})
        assert status == 201, program
        for name, api in (("a", a), ("b", b)):
            status, event = bl.call("POST", "/events", event_body(program["id"], [f"ven-{name}"]))
            assert status == 201, event
            objects[name]["event"] = event
            status, report = api.call(
                "POST",
                "/reports",
                {
                    "eventID": event["id"],
                    "clientName": f"ven-{name}",
                    "resources": [
                        {
                            "resourceName": "meter",
                            "intervalPeriod": {"start": NOW.isoformat(), "duration": "PT5M"},
                            "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1.0]}]}],
                        }
                    ],
                },
            )
            assert status == 201, report
            objects[name]["report"] = report
            status, sub = api.call(
                "POST",
                "/subscriptions",
                {
                    "clientName": f"ven-{name}",
                    "objectOperations": [
                        {
                            "objects": ["EVENT"],
                            "operations": ["CREATE"],
                            "callbackUrl": "http://127.0.0.1:9/hook",
                        }
                    ],
                },
            )
            assert status == 201, sub
            objects[name]["subscription"] = sub
        yield {
            "server": server,
            "bl": bl,
            "a": a,
            "b": b,
            "objects": objects,
            "clients": (bl_client, a_client),
        }
    finally:
        server.stop()


@pytest.mark.parametrize(
    "path,key",
    [
        ("/vens", "ven"),
        ("/resources", "resource"),
        ("/reports", "report"),
        ("/subscriptions", "subscription"),
    ],
)
def test_a_ven_sees_only_its_own_objects(world, path, key):
    a, objects = world["a"], world["objects"]
    mine, theirs = objects["a"][key]["id"], objects["b"][key]["id"]
    status, listed = a.call("GET", path)
    assert status == 200 and [o["id"] for o in listed] == [mine]
    status, body = a.call("GET", f"{path}/{theirs}")
    problem(404, body)
    status, body = a.call("GET", f"{path}/{mine}")
    assert status == 200 and body["id"] == mine
    # nor can it change or delete another VEN's
    status, body = a.call("DELETE", f"{path}/{theirs}")
    problem(404, body)
    # the business-logic client sees both
    status, listed = world["bl"].call("GET", path)
    assert status == 200 and {o["id"] for o in listed} == {mine, theirs}


def test_a_ven_sees_only_the_events_aimed_at_it(world):
    a, objects = world["a"], world["objects"]
    status, listed = a.call("GET", "/events")
    assert status == 200 and [e["id"] for e in listed] == [objects["a"]["event"]["id"]]
    assert spec_errors("event", listed, many=True) == []
    status, body = a.call("GET", f"/events/{objects['b']['event']['id']}")
    problem(404, body)
    # and cannot report on another VEN's event, nor for another VEN's resource
    status, body = a.call(
        "POST",
        "/reports",
        {
            "eventID": objects["b"]["event"]["id"],
            "clientName": "ven-a",
            "resources": [{"resourceName": "meter", "intervals": []}],
        },
    )
    problem(404, body)
    status, body = a.call(
        "POST",
        "/resources",
        {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "x", "venID": objects["b"]["ven"]["id"]},
    )
    problem(404, body)


def test_a_ven_cannot_write_programs_or_events(world):
    a = world["a"]
    status, body = a.call("POST", "/programs", {"programName": "mine"})
    problem(403, body)
    program_id = world["objects"]["a"]["event"]["programID"]
    status, body = a.call("POST", "/events", event_body(program_id))
    problem(403, body)
    status, body = a.call("DELETE", f"/events/{world['objects']['a']['event']['id']}")
    problem(403, body)
    status, body = a.call("PUT", f"/programs/{program_id}", {"programName": "renamed"})
    problem(403, body)
    # and a business-logic client writes no reports (that scope is the VEN's)
    status, body = world["bl"].call("POST", "/reports", {"eventID": "1", "clientName": "x", "resources": []})
    problem(403, body)


def test_missing_forged_and_disabled_tokens_are_401(world):
    server, a = world["server"], world["a"]
    for token in (None, "forged-token", "x" * 5000):
        api = Api(server, token)
        status, body = api.call("GET", "/events")
        problem(401, body)
    status, _, raw = a.raw("GET", "/events", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    problem(401, json.loads(raw))
    # a disabled client's tokens stop working at once
    extra = make_client(server, "ven-c", "ven")
    c = Api.login(server, extra)
    assert c.call("GET", "/vens")[0] == 200
    status, _ = server.admin("PATCH", "/api/v1/oadr3/clients/ven-c", {"enabled": False})
    assert status == 200
    status, body = c.call("GET", "/vens")
    problem(401, body)
    status, answer = Api(server).token_request(extra["client_id"], extra["client_secret"])
    assert status == 401 and answer["error"] == "invalid_client"


def test_token_endpoint_refusals(world):
    server = world["server"]
    bl_client, ven_client = world["clients"]
    api = Api(server)
    status, answer = api.token_request(ven_client["client_id"], "wrong")
    assert status == 401 and answer["error"] == "invalid_client"
    status, answer = api.token_request("nobody", "wrong")
    assert status == 401 and answer["error"] == "invalid_client"
    status, answer = api.token_request(ven_client["client_id"], ven_client["client_secret"], "write_programs")
    assert status == 400 and answer["error"] == "invalid_scope"
    status, answer = api.token_request(ven_client["client_id"], ven_client["client_secret"], "read_targets")
    assert status == 200 and answer["scope"] == "read_targets" and answer["token_type"] == "Bearer"
    assert spec_errors("clientCredentialResponse", answer) == []
    narrow = Api(server, answer["access_token"])
    status, body = narrow.call("GET", "/vens")  # read_ven_objects was not asked for
    problem(403, body)
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "x", "client_secret": "y"}).encode()
    status, _, raw = api.raw(
        "POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 400 and json.loads(raw)["error"] == "unsupported_grant_type"
    # HTTP Basic credentials (RFC 6749 2.3.1) work like form ones
    import base64

    basic = base64.b64encode(f"{bl_client['client_id']}:{bl_client['client_secret']}".encode()).decode()
    status, _, raw = api.raw(
        "POST",
        "/auth/token",
        b"grant_type=client_credentials",
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
    )
    assert status == 200 and "write_events" in json.loads(raw)["scope"]


def test_an_expired_token_is_401(tmp_path):
    server = LiveServer(tmp_path / "dso", extra_env={"DSO_OPENADR3__TOKEN_TTL_S": "1"}).init().start()
    try:
        api = Api.login(server, make_client(server, "short", "bl"))
        assert api.call("GET", "/programs")[0] == 200
        time.sleep(1.5)
        status, body = api.call("GET", "/programs")
        problem(401, body)
        assert "expired" in body["detail"]
    finally:
        server.stop()
