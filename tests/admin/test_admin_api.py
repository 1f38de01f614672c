"""Admin API: bearer token on every call but /healthz, JSON errors, metrics with request counts."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.fixture(scope="module")
def server(shared_server):
    return shared_server


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_admin_api_without_the_token_is_401(server, token):
    status, body = server.admin("GET", "/api/v1/devices", token=token)
    assert status == 401 and "token" in body["error"]
    status, _ = server.admin("POST", "/api/v1/devices", {"lfdi": "AB" * 20}, token=token)
    assert status == 401
    assert server.admin("GET", "/api/v1/devices")[1] == []  # nothing was enrolled


def test_healthz_needs_no_token(server):
    with urllib.request.urlopen(server.info["admin_url"] + "/healthz", timeout=5) as r:
        assert r.status == 200


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"lfdi": "xyz"}, 400, "40 hex"),
        ({}, 400, "missing field 'lfdi'"),
        ({"lfdi": "AB" * 20, "pin": "12"}, 400, "'pin' must be int"),
        ({"lfdi": "AB" * 20, "pin": True}, 400, "'pin' must be int"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_bodies_get_json_errors(server, body, status, needle):
    got, answer = server.admin("POST", "/api/v1/devices", body)
    assert got == status and needle in answer["error"]


def test_non_json_body_and_unknown_paths(server):
    request = urllib.request.Request(
        server.info["admin_url"] + "/api/v1/devices",
        data=b"{not json",
        method="POST",
        headers={"Authorization": f"Bearer {server.info['admin_token']}"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400
    status, body = server.admin("GET", "/api/v1/devices/999999")
    assert status == 404 and "no device" in body["error"]
    status, body = server.admin("GET", "/api/v1/nothing-here")
    assert status == 404 and "error" in body


def test_metrics_count_requests_per_route(server):
    server.admin("GET", "/api/v1/status")
    status, text = server.admin("GET", "/metrics")
    assert status == 200
    assert (
        'dso_http_requests_total{listener="admin",method="GET",route="/api/v1/status",status="200"}' in text
    )


def test_responses_carry_a_request_id(server):
    request = urllib.request.Request(
        server.info["admin_url"] + "/healthz", headers={"X-Request-Id": "abc123"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.headers["X-Request-Id"] == "abc123"


def gauge(text: str, name: str, **labels: str) -> float:
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted + " "))


def test_metrics_carry_fleet_gauges(server):
    before = gauge(server.admin("GET", "/metrics")[1], "dso_fleet_parties", kind="sep2", state="offline")
    assert server.admin("POST", "/api/v1/devices", {"lfdi": "CD" * 20})[0] == 201
    text = server.admin("GET", "/metrics")[1]
    assert gauge(text, "dso_fleet_parties", kind="sep2", state="offline") == before + 1
    for kind, state in [("openadr", "online"), ("openadr", "offline"), ("modbus", "offline")]:
        assert gauge(text, "dso_fleet_parties", kind=kind, state=state) >= 0
    assert "# TYPE dso_deliveries_undelivered gauge" in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/devices/-1"),
        ("GET", "/api/v1/controls/-1"),
        ("DELETE", "/api/v1/curves/-1"),
        ("GET", "/api/v1/openadr/events/-1"),
        ("POST", "/api/v1/deliveries/-1/requeue"),
        ("POST", "/api/v1/alarms/%201/acknowledge"),
        ("GET", "/api/v1/events/+1"),
    ],
)
def test_a_path_id_that_is_not_digits_is_a_400_naming_it(server, method, path):
    status, body = server.admin(method, path)
    assert status == 400 and "id must be an integer" in body["error"], (status, body)
