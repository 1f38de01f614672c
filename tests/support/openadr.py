"""Helpers for the OpenADR tests (no tests here): a live server tuned for short cycles, openleadr VENs with real
certificates, a push VEN endpoint, raw HTTPS posts, schema checks of every body the server emits, bounded waits."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree
from openleadr import OpenADRClient
from openleadr.messaging import create_message

from server import pki
from server.openadr import codec
from support import LiveServer, dso_json, free_port

PREFIX = "/OpenADR2/Simple/2.0b"
FAST_ENV = {
    "DSO_OPENADR__POLL_FREQ_S": "1",
    "DSO_OPENADR__REPORT_GRANULARITY_S": "1",
    "DSO_OPENADR__REPORT_BACK_DURATION_S": "1",
    "DSO_OPENADR__PUSH_INTERVAL_S": "1",
    # the push VENs of the tests listen on loopback
    "DSO_DELIVERY__ALLOW_HTTP_LOOPBACK": "true",
}

logging.getLogger("openleadr").setLevel(logging.WARNING)


def start_server(home: Path, database_url: str = "", **env: str) -> LiveServer:
    return LiveServer(home, database_url=database_url, extra_env={**FAST_ENV, **env}).init().start()


def vtn_fingerprint(server: LiveServer) -> str:
    pem = (Path(server.info["config"]).parent / "pki" / "server-ec.pem").read_bytes()
    from cryptography import x509

    return pki.openadr_fingerprint(x509.load_pem_x509_certificates(pem)[0])


class SchemaWatch:
    """Validates every body the server sends to a client against the official 2.0b schema."""

    def __init__(self) -> None:
        self.bodies = 0
        self.failures: list[str] = []

    def check(self, body: bytes | str) -> etree._Element:
        raw = body.encode() if isinstance(body, str) else body
        self.bodies += 1
        root = etree.fromstring(raw)
        schema = codec.schema()
        if not schema.validate(root):
            self.failures.append(f"{schema.error_log.last_error}: {raw[:300]!r}")
        return root

    def assert_clean(self) -> None:
        assert self.bodies > 0
        assert not self.failures, self.failures


def enroll(server: LiveServer, name: str, rsa: bool = False, push: bool = False) -> dict[str, Any]:
    """A real VEN certificate (`dso certs ven`) enrolled by staff (`dso ven enroll`)."""
    cert = server.issue_ven(name, rsa=rsa)
    ven = dso_json(
        "ven",
        "enroll",
        "--name",
        name,
        "--fingerprint",
        cert["fingerprint"],
        "--json",
        "-c",
        server.config,
        *(["--push"] if push else []),
    )
    assert ven["fingerprint"] == cert["fingerprint"] and ven["push_enabled"] == push
    return {**cert, **ven}


def client(
    server: LiveServer, ven: dict[str, Any], watch: SchemaWatch, sign: bool = True, verify_vtn: bool = False
) -> OpenADRClient:
    c = OpenADRClient(
        ven_name=ven["name"],
        vtn_url=server.url + PREFIX,
        cert=ven["cert"],
        key=ven["key"],
        ca_file=server.ca,
        show_fingerprint=False,
        disable_signature=not sign,
        vtn_fingerprint=vtn_fingerprint(server) if verify_vtn else None,
    )
    c.add_hook("after_receive_xml", watch.check)
    return c


def tls(server: LiveServer, ven: dict[str, Any] | None) -> ssl.SSLContext:
    return server.client_context(ven["cert"], ven["key"]) if ven else server.client_context()


def post(
    server: LiveServer, ven: dict[str, Any], service: str, body: bytes, watch: SchemaWatch | None = None
) -> tuple[int, bytes]:
    status, _headers, answer = server.request(
        tls(server, ven), "POST", f"{PREFIX}/{service}", body, {"Content-Type": "application/xml"}
    )
    if watch is not None and status == 200:
        watch.check(answer)
    return status, answer


def response_code(answer: bytes) -> int:
    root = etree.fromstring(answer)
    return int(root.find(".//ei:responseCode", codec.NS).text)


def message_type(answer: bytes) -> str:
    root = etree.fromstring(answer)
    return etree.QName(root.find("oadr:oadrSignedObject", codec.NS)[0]).localname


async def wait_for(predicate: Callable[[], Any], within: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def admin(server: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The admin API without blocking the event loop the openleadr VENs run on."""
    return await asyncio.to_thread(server.admin, method, path, body)


class RawVen:
    """A VEN speaking raw messages built with openleadr's message builder (optionally signed)."""

    def __init__(self, server, name: str, watch: SchemaWatch, enrolled: bool = True) -> None:
        self.server, self.watch, self.name = server, watch, name
        self.ven = enroll(server, name) if enrolled else server.issue_ven(name)
        self.ven_id: str | None = None
        self.registration_id: str | None = None

    def msg(self, kind: str, sign: bool = False, **payload: Any) -> bytes:
        keys = (
            {"cert": open(self.ven["cert"], "rb").read(), "key": open(self.ven["key"], "rb").read()}
            if sign
            else {}
        )
        return create_message(kind, **keys, **payload).encode()

    def send(self, service: str, body: bytes) -> tuple[int, bytes]:
        return post(self.server, self.ven, service, body, self.watch)

    def register(self, **extra: Any) -> bytes:
        payload = {
            "request_id": "r1",
            "ven_name": self.name,
            "ven_id": None,
            "http_pull_model": True,
            "xml_signature": False,
            "report_only": False,
            "profile_name": "2.0b",
            "transport_name": "simpleHttp",
            "transport_address": None,
            "registration_id": None,
            **extra,
        }
        status, answer = self.send("EiRegisterParty", self.msg("oadrCreatePartyRegistration", **payload))
        assert status == 200
        root = etree.fromstring(answer)
        self.ven_id = codec.text(root, ".//ei:venID")
        self.registration_id = codec.text(root, ".//ei:registrationID")
        return answer

    def poll(self) -> tuple[str, bytes]:
        status, answer = self.send("OadrPoll", self.msg("oadrPoll", ven_id=self.ven_id))
        assert status == 200
        return message_type(answer), answer


class PushEndpoint:
    """A minimal push VEN: answers oadrDistributeEvent with oadrCreatedEvent (optIn to every event in it), or
    fails on demand."""

    def __init__(self, server, ven: dict, watch: SchemaWatch) -> None:
        self.server, self.ven, self.watch = server, ven, watch
        self.received: list[tuple[str, etree._Element]] = []
        self.fail_next = 0
        self.peer_fingerprints: set[str] = set()
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def register(self) -> bytes:
        """Register its VEN with the VTN for push (oadrHttpPullModel false, this endpoint as its transport
        address); returns the VTN's answer."""
        register = create_message(
            "oadrCreatePartyRegistration",
            request_id="r1",
            ven_name=self.ven["name"],
            ven_id=None,
            http_pull_model=False,
            xml_signature=False,
            report_only=False,
            profile_name="2.0b",
            transport_name="simpleHttp",
            transport_address=self.address,
            registration_id=None,
        )
        status, answer = await asyncio.to_thread(
            post, self.server, self.ven, "EiRegisterParty", register.encode(), self.watch
        )
        assert status == 200
        return answer

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
        descriptors = msg.findall("oadr:oadrEvent/ei:eiEvent/ei:eventDescriptor", codec.NS)
        answer = create_message(
            "oadrCreatedEvent",
            ven_id=self.ven["ven_id"],
            response={"response_code": 200, "response_description": "OK", "request_id": "p"},
            event_responses=[
                {
                    "response_code": 200,
                    "response_description": "OK",
                    "request_id": "p",
                    "event_id": codec.text(d, "ei:eventID"),
                    "modification_number": int(codec.text(d, "ei:modificationNumber")),
                    "opt_type": "optIn",
                }
                for d in descriptors
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
