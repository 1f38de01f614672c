"""Push mode: a test VEN endpoint (HTTPS on loopback, trusting the dev CA) registers with oadrHttpPullModel=false
and an oadrTransportAddress; the VTN POSTs oadrDistributeEvent to it and records the oadrCreatedEvent the VEN
returns. A VEN endpoint that fails first gets the message again after back-off."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from lxml import etree
from openleadr.messaging import create_message
from support import LiveServer, free_port
from support.openadr import FAST_ENV, SchemaWatch, admin, enroll, post, response_code, wait_for

from server import pki
from server.openadr import codec

pytestmark = pytest.mark.asyncio


class PushEndpoint:
    """A minimal push VEN: answers oadrDistributeEvent with oadrCreatedEvent (optIn), or fails on demand."""

    def __init__(self, server, ven: dict, watch: SchemaWatch) -> None:
        self.server, self.ven, self.watch = server, ven, watch
        self.received: list[tuple[str, etree._Element]] = []
        self.fail_next = 0
        self.peer_fingerprints: set[str] = set()
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def ssl_context(self) -> ssl.SSLContext:
        directory = Path(self.server.info["config"]).parent / "pki"
        issued = pki.issue_tls_leaf(
            pki.load_issued(directory / "mca.pem", directory / "mca.key"),
            "push-ven",
            ["127.0.0.1"],
            server=True,
        )
        cert, key = directory / "push-ven.pem", directory / "push-ven.key"
        cert.write_bytes(pki.pem(issued.cert))
        pki.write_key(key, issued.key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(self.server.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # the VTN must authenticate itself too
        return ctx

    async def handle(self, request: web.Request) -> web.Response:
        der = request.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self.peer_fingerprints.add(pki.openadr_fingerprint(der))
        body = await request.read()
        root = self.watch.check(body)
        msg = root.find("oadr:oadrSignedObject", codec.NS)[0]
        self.received.append((request.match_info["service"], msg))
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503)
        if codec.local(msg) != "oadrDistributeEvent":
            ok = create_message(
                "oadrResponse",
                ven_id=self.ven["ven_id"],
                response={"response_code": 200, "response_description": "OK", "request_id": "p"},
            )
            return web.Response(body=ok.encode(), content_type="application/xml")
        event_id = codec.text(msg, ".//ei:eventID")
        modification = int(codec.text(msg, ".//ei:modificationNumber"))
        answer = create_message(
            "oadrCreatedEvent",
            ven_id=self.ven["ven_id"],
            response={"response_code": 200, "response_description": "OK", "request_id": "p"},
            event_responses=[
                {
                    "response_code": 200,
                    "response_description": "OK",
                    "request_id": "p",
                    "event_id": event_id,
                    "modification_number": modification,
                    "opt_type": "optIn",
                }
            ],
        )
        return web.Response(body=answer.encode(), content_type="application/xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/OpenADR2/Simple/2.0b/{service}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl_context()).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


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
        register = create_message(
            "oadrCreatePartyRegistration",
            request_id="r1",
            ven_name="push-ven",
            ven_id=None,
            http_pull_model=False,
            xml_signature=False,
            report_only=False,
            profile_name="2.0b",
            transport_name="simpleHttp",
            transport_address=endpoint.address,
            registration_id=None,
        )
        status, answer = await asyncio.to_thread(
            post, server, ven, "EiRegisterParty", register.encode(), watch
        )
        assert response_code(answer) == 200
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
