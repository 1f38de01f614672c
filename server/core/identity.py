"""Who is calling: derived from the TLS peer certificate (or a trusted proxy's header), never from a body."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509

from server import pki


@dataclass(frozen=True)
class ClientIdentity:
    lfdi: str  # 40 upper-case hex
    sfdi: int
    fingerprint: str  # OpenADR form: last 10 bytes of SHA-256, colon hex
    subject: str
    via_proxy: bool = False

    @classmethod
    def from_der(cls, der: bytes, via_proxy: bool = False) -> ClientIdentity:
        # a connection's certificate is the same on every request: parse and hash it once
        return _identity(der, via_proxy)

    @classmethod
    def _build(cls, der: bytes, via_proxy: bool) -> ClientIdentity:
        cert = x509.load_der_x509_certificate(der)
        lfdi = pki.lfdi(der)
        return cls(
            lfdi=lfdi,
            sfdi=pki.sfdi_from_lfdi(lfdi),
            fingerprint=pki.openadr_fingerprint(der),
            subject=cert.subject.rfc4514_string(),
            via_proxy=via_proxy,
        )


@functools.lru_cache(maxsize=4096)
def _identity(der: bytes, via_proxy: bool) -> ClientIdentity:
    """Bounded cache keyed by the certificate bytes; the result depends on nothing else, so it cannot go stale."""
    return ClientIdentity._build(der, via_proxy)
