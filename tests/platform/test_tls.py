"""The mutual-TLS protocol listener: suites, client-certificate enforcement, identity from the certificate."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from support import LiveServer, dso_json, free_port

from server import pki
from server.app import create_protocol_app, open_runtime
from server.config import load_settings
from server.runtime import IDENTITY
from server.tls import server_context

SUITES = [
    "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "AES128-SHA256",
]


@pytest.fixture(scope="module")
def server(shared_server) -> LiveServer:
    return shared_server


@pytest.fixture(scope="module")
def device(server) -> dict:
    return server.issue_device("tls-dev")


@pytest.fixture(scope="module")
def foreign_device(tmp_path_factory) -> dict:
    other = tmp_path_factory.mktemp("foreign") / "dso"
    dso_json("init", str(other), "--json")
    return dso_json("certs", "device", "intruder", "--json", "-c", str(other))


def s_client(server: LiveServer, *extra: str) -> str:
    if not shutil.which("openssl"):
        pytest.fail("openssl command not found")
    proc = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-CAfile",
            server.ca,
            "-ign_eof",
            *extra,
        ],
        input=b"GET /no-such-resource HTTP/1.0\r\n\r\n",
        capture_output=True,
        timeout=30,
    )
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def test_openssl_ccm8_handshake_with_device_certificate(server, device):
    out = s_client(
        server,
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES128-CCM8",
        "-cert",
        device["cert"],
        "-key",
        device["key"],
    )
    assert "Cipher is ECDHE-ECDSA-AES128-CCM8" in out
    assert "Verify return code: 0 (ok)" in out
    assert "HTTP/1.0 404" in out  # the handshake completed and a request was served


def test_openssl_without_client_certificate_is_refused(server):
    out = s_client(server, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM8")
    assert "HTTP/1." not in out


def test_openssl_with_foreign_ca_certificate_is_refused(server, foreign_device):
    out = s_client(server, "-tls1_2", "-cert", foreign_device["cert"], "-key", foreign_device["key"])
    assert "HTTP/1." not in out


@pytest.mark.parametrize("suite", SUITES)
def test_each_tls12_suite_serves_requests(server, device, suite):
    ctx = server.client_context(device["cert"], device["key"], ciphers=suite, tls12=True)
    with ssl_socket(server, ctx) as sock:
        assert sock.cipher()[0] == suite
        assert sock.version() == "TLSv1.2"


def test_tls13_is_offered(server, device):
    ctx = server.client_context(device["cert"], device["key"])
    with ssl_socket(server, ctx) as sock:
        assert sock.version() == "TLSv1.3"


def test_rsa_suite_gets_the_rsa_certificate_and_ecdsa_suites_the_ec_one(server, device):
    for suite, key_type in (("AES128-SHA256", "RSA"), ("ECDHE-ECDSA-AES128-GCM-SHA256", "EC")):
        ctx = server.client_context(device["cert"], device["key"], ciphers=suite, tls12=True)
        with ssl_socket(server, ctx) as sock:
            cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
            assert type(cert.public_key()).__name__.startswith(key_type)


def test_python_client_without_certificate_gets_no_http_answer(server):
    ctx = server.client_context()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        status, _, _ = server.request(ctx, "GET", "/no-such-resource")
        # TLS 1.3 reports the missing certificate only on the first read
        raise AssertionError(f"got HTTP {status} without a client certificate")


def ssl_socket(server: LiveServer, ctx: ssl.SSLContext):
    import socket

    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


# ------------------------------------------------------------------------------------------------ identity
async def _run_identity_app(settings, ctx_client, headers=None):
    """The real protocol app with one extra route that echoes the identity middleware's result."""
    rt = await open_runtime(settings)
    app = create_protocol_app(rt)

    async def whoami(request: web.Request) -> web.Response:
        ident = request[IDENTITY]
        return web.json_response(
            {
                "lfdi": ident.lfdi,
                "sfdi": ident.sfdi,
                "fingerprint": ident.fingerprint,
                "via_proxy": ident.via_proxy,
            }
        )

    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(settings)).start()
    try:
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"https://127.0.0.1:{port}/whoami", ssl=ctx_client, headers=headers or {}) as resp,
        ):
            return resp.status, (await resp.json() if resp.status == 200 else await resp.text())
    finally:
        await runner.cleanup()
        await rt.store.close()


def test_request_identity_is_derived_from_the_peer_certificate(server, device):
    settings = load_settings(server.config)
    ctx = server.client_context(device["cert"], device["key"])
    status, body = asyncio.run(_run_identity_app(settings, ctx))
    assert status == 200
    der = x509.load_pem_x509_certificate(Path(device["cert"]).read_bytes())
    assert body == {
        "lfdi": device["lfdi"],
        "sfdi": device["sfdi"],
        "fingerprint": pki.openadr_fingerprint(der),
        "via_proxy": False,
    }


def test_proxy_identity_header_is_used_only_from_trusted_proxies(server, device):
    cert_pem = Path(device["cert"]).read_text()
    header = {"X-Client-Cert": urllib.parse.quote(cert_pem)}
    no_cert = server.client_context()
    trusted = load_settings(
        server.config,
        env={
            "DSO_SERVER__PROXY_IDENTITY_HEADER": "X-Client-Cert",
            "DSO_SERVER__TRUSTED_PROXIES": "127.0.0.0/8",
        },
    )
    status, body = asyncio.run(_run_identity_app(trusted, no_cert, header))
    assert status == 200 and body["lfdi"] == device["lfdi"] and body["via_proxy"] is True
    # a trusted proxy that forwards no certificate: refused
    status, _ = asyncio.run(_run_identity_app(trusted, no_cert))
    assert status == 403
    # the header from an address that is not a configured proxy is ignored: no certificate, no entry
    untrusted = load_settings(
        server.config,
        env={
            "DSO_SERVER__PROXY_IDENTITY_HEADER": "X-Client-Cert",
            "DSO_SERVER__TRUSTED_PROXIES": "10.0.0.0/8",
        },
    )
    status, _ = asyncio.run(_run_identity_app(untrusted, no_cert, header))
    assert status == 403


def test_expired_client_certificate_is_refused(server, tmp_path):
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec as ec_keys

    mica = pki.load_issued(Path(server.home) / "pki" / "mica.pem", Path(server.home) / "pki" / "mica.key")
    key = ec_keys.generate_private_key(ec_keys.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(mica.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.OtherName(
                        pki.OID_HARDWARE_MODULE_NAME, pki.hardware_module_name(pki.DEV_HW_TYPE, b"expired")
                    )
                ]
            ),
            critical=True,
        )
        .sign(mica.key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "expired.pem", tmp_path / "expired.key"
    cert_path.write_bytes(pki.pem(cert))
    pki.write_key(key_path, key)
    out = s_client(server, "-tls1_2", "-cert", str(cert_path), "-key", str(key_path))
    assert "HTTP/1." not in out
    # the same chain with a valid certificate is served, so the refusal is about the expiry
    good = server.issue_device("not-expired")
    assert "HTTP/1.0 404" in s_client(server, "-tls1_2", "-cert", good["cert"], "-key", good["key"])


def test_tls13_session_resumption_still_works_with_one_ticket(server, device):
    """The server issues one TLS 1.3 ticket per handshake; a client can resume with it (and gets a new one)."""
    ctx = server.client_context(device["cert"], device["key"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with ssl_socket(server, ctx) as first:
        first.sendall(b"GET /dcap HTTP/1.1\r\nHost: x\r\n\r\n")
        first.recv(65536)  # tickets arrive after the handshake; reading lets the client store them
        session = first.session
    assert session is not None and session.has_ticket
    import socket

    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as again:
        assert again.session_reused
