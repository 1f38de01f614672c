"""TLS contexts for the protocol listener and the client identity taken from a connection.

One context serves 2030.5 and OpenADR: an EC P-256 and an RSA-2048 certificate are both loaded and OpenSSL picks
per negotiated suite. TLS 1.2 suites: ECDHE-ECDSA-AES128-CCM8 (2030.5), ECDHE-ECDSA-AES128-GCM-SHA256 (what common
clients offer), ECDHE-ECDSA-AES128-SHA256 and AES128-SHA256 (OpenADR ECC and RSA). TLS 1.3 keeps OpenSSL's suites.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.config import Settings
from server.core.identity import ClientIdentity

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256:AES128-SHA256"
)


def trust_files(settings: Settings) -> list[str]:
    return [str(settings.path(settings.pki.ca)), *(str(settings.path(p)) for p in settings.pki.trust)]


def server_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_cert_chain(settings.path(settings.pki.server_cert), settings.path(settings.pki.server_key))
    rsa_cert = settings.path(settings.pki.server_rsa_cert)
    if rsa_cert.exists():
        ctx.load_cert_chain(rsa_cert, settings.path(settings.pki.server_rsa_key))
    for path in trust_files(settings):
        ctx.load_verify_locations(cafile=path)
    # Behind a TLS-terminating proxy the proxy may connect without a certificate; identity then comes from its
    # header and the middleware refuses everyone else. Otherwise no handshake completes without a client cert.
    ctx.verify_mode = ssl.CERT_OPTIONAL if proxy_mode(settings) else ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # TLS 1.3: one session ticket per handshake instead of OpenSSL's default two. Resumption still works (a
    # resumed handshake issues a fresh ticket); the second ticket only serves clients opening parallel
    # connections, which VENs and 2030.5 clients do not, and each ticket costs ~0.15 ms of server CPU.
    ctx.num_tickets = 1
    return ctx


def openadr3_context(settings: Settings) -> ssl.SSLContext:
    """The OpenADR 3 listener: the same certificates and suites, no client certificate (clients bring bearer
    tokens, as the 3.x specification has them)."""
    ctx = server_context(settings)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def proxy_mode(settings: Settings) -> bool:
    return bool(settings.server.proxy_identity_header and settings.server.trusted_proxies)


def _is_trusted_proxy(remote: str | None, proxies: list[str]) -> bool:
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(p, strict=False) for p in proxies)


def _identity_from_header(value: str) -> ClientIdentity | None:
    """The header carries the URL-escaped PEM certificate (nginx ``$ssl_client_escaped_cert`` style)."""
    try:
        cert = x509.load_pem_x509_certificate(urllib.parse.unquote(value).encode())
    except ValueError:
        return None
    return ClientIdentity.from_der(cert.public_bytes(serialization.Encoding.DER), via_proxy=True)


def identity_of(request: web.Request, settings: Settings) -> ClientIdentity | None:
    """The caller's identity, or None when it has none we accept."""
    if proxy_mode(settings) and _is_trusted_proxy(request.remote, settings.server.trusted_proxies):
        header = request.headers.get(settings.server.proxy_identity_header)
        return _identity_from_header(header) if header else None
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    return ClientIdentity.from_der(der) if der else None
