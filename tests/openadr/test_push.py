"""Push mode: a test VEN endpoint (HTTPS on loopback, trusting the dev CA) registers with oadrHttpPullModel=false
and an oadrTransportAddress; the VTN POSTs oadrDistributeEvent to it and records the oadrCreatedEvent the VEN
returns. A VEN endpoint that fails first gets the message again after back-off."""

from __future__ import annotations

import asyncio

import pytest
from support import LiveServer
from support.openadr import FAST_ENV, PushEndpoint, SchemaWatch, admin, enroll, response_code, wait_for

from server.openadr import codec

pytestmark = pytest.mark.asyncio


async def test_event_pushed_to_ven_endpoint_with_retry(tmp_path):
    server = LiveServer(tmp_path / "dso", extra_env={**FAST_ENV, "DSO_OPENADR__SIGN_REPLIES": "true"})
    await asyncio.to_thread(server.init)
    # a TLS client certificate for the VTN's push connections (the dev server certificate is serverAuth only)
    push_identity = await asyncio.to_thread(server.issue_ven, "vtn-push-client")
    server.extra_env.update(
        DSO_OPENADR__PUSH_CERT=push_identity["cert"], DSO_OPENADR__PUSH_KEY=push_identity["key"]
    )
    await asyncio.to_thread(server.start)
    watch = SchemaWatch()
    ven = await asyncio.to_thread(enroll, server, "push-ven", False, True)
    endpoint = PushEndpoint(server, ven, watch)
    await endpoint.start()
    try:
        assert response_code(await endpoint.register()) == 200
        # first the VTN's own oadrRegisterReport is pushed, to the EiReport service
        await wait_for(lambda: endpoint.received, 10, "first push")
        assert endpoint.received[0][0] == "EiReport"
        assert codec.local(endpoint.received[0][1]) == "oadrRegisterReport"
        assert endpoint.peer_fingerprints == {push_identity["fingerprint"]}

        endpoint.fail_next = 1  # the endpoint is down once: the message must come again
        status, event = await admin(
            server,
            "POST",
            "/api/v1/openadr/events",
            {"signal": "LOAD_DISPATCH", "level": 5.5, "duration_s": 600, "vens": ["push-ven"]},
        )
        assert status == 201

        def distributed():
            got = [m for s, m in endpoint.received if codec.local(m) == "oadrDistributeEvent"]
            return got if len(got) >= 2 else None

        pushed = await wait_for(distributed, 15, "oadrDistributeEvent pushed twice (after a 503)")
        assert [s for s, m in endpoint.received][1:] == ["EiEvent", "EiEvent"]
        assert codec.text(pushed[-1], ".//ei:signalName") == "LOAD_DISPATCH"
        assert codec.text(pushed[-1], ".//ei:venID") == ven["ven_id"]

        async def opted_in():
            _, e = await admin(server, "GET", f"/api/v1/openadr/events/{event['id']}")
            return e["responses"]

        responses = await wait_for(opted_in, 10, "optIn from the pushed answer")
        assert responses[0]["ven"] == "push-ven" and responses[0]["opt_type"] == "optIn"
        status, info = await admin(server, "GET", "/api/v1/vens/push-ven")
        assert info["queued"] == 0
        watch.assert_clean()
    finally:
        await endpoint.stop()
        await asyncio.to_thread(server.stop)
