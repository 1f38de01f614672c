"""XML signatures for OpenADR 2.0b (XMLDSig via signxml) with ReplayProtect.

A signed 2.0b message carries a detached ``ds:Signature`` as the sibling before ``oadrSignedObject`` inside
``oadrPayload``. It has two references: ``#oadrSignedObject`` and a SignatureProperties object holding
``dsp:ReplayProtect`` (timestamp + nonce). We verify both references against the certificate in ``KeyInfo``,
require that certificate to be the one the VEN used for TLS (same OpenADR fingerprint), refuse stale timestamps and
nonces already seen (remembered in the database so every server process shares them).

The VTN's signing key and certificate are loaded once at start-up into ``Signer`` (openleadr re-reads and re-parses
its private key for every message, which is what makes its signed path slow).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration

from server import pki
from server.openadr import codec

# OpenADR 2.0b mandates inclusive C14N 1.0 for the signature
C14N = CanonicalizationMethod.CANONICAL_XML_1_0
VERIFY_CONFIG = SignatureConfiguration(expect_references=2)


class SignatureRejected(Exception):
    """A VEN's signature is missing (when required), broken, from another certificate, stale or replayed."""


@dataclass
class Verified:
    fingerprint: str
    nonce: str
    timestamp: dt.datetime


def verify(root: etree._Element, tls_fingerprint: str, window: dt.timedelta) -> Verified:
    """Check the detached signature of ``root`` (an oadrPayload); does not check the nonce cache."""
    sig = root.find(codec.q("ds", "Signature"))
    if sig is None:
        raise SignatureRejected("message is not signed")
    cert_el = sig.find(".//ds:X509Certificate", codec.NS)
    if cert_el is None or not cert_el.text:
        raise SignatureRejected("signature has no X509Certificate in KeyInfo")
    try:
        der = _b64(cert_el.text)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise SignatureRejected("signature KeyInfo holds no readable certificate") from None
    fingerprint = pki.openadr_fingerprint(der)
    if fingerprint != tls_fingerprint:
        raise SignatureRejected(f"message signed with certificate {fingerprint}, but the TLS client certificate "
                                f"is {tls_fingerprint}")
    try:
        # the whole payload, ds:Signature included, was validated against the 2.0b schemas (which import
        # XMLDSig) before we get here, so signxml need not validate the signature element again
        results = XMLVerifier().verify(root, x509_cert=cert, expect_config=VERIFY_CONFIG, validate_schema=False)
    except (InvalidSignature, InvalidInput) as exc:
        raise SignatureRejected(f"XML signature does not verify: {exc}") from None
    signed_tags = {r.signed_xml.tag for r in results if r.signed_xml is not None}  # type: ignore[union-attr]
    if codec.q("oadr", "oadrSignedObject") not in signed_tags:
        raise SignatureRejected("signature does not cover oadrSignedObject")
    nonce = timestamp = None
    for r in results:  # type: ignore[union-attr]
        el = r.signed_xml
        if el is None:
            continue
        nonce = nonce or codec.text(el, ".//dsp:nonce")
        timestamp = timestamp or codec.text(el, ".//dsp:timestamp")
    if not nonce or not timestamp:
        raise SignatureRejected("signature has no signed ReplayProtect nonce and timestamp")
    try:
        when = codec.parse_dt(timestamp)
    except ValueError:
        raise SignatureRejected(f"ReplayProtect timestamp {timestamp!r} is not a date-time") from None
    assert when is not None
    now = dt.datetime.now(dt.UTC)
    if when < now - window or when > now + window:
        raise SignatureRejected(f"ReplayProtect timestamp {timestamp} is outside the {window.total_seconds():.0f} s "
                                "window")
    return Verified(fingerprint, nonce, when)


def _b64(value: str) -> bytes:
    import base64

    return base64.b64decode("".join(value.split()), validate=True)


class Signer:
    """The VTN's signing identity, loaded once."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        pem = cert_path.read_bytes()
        self.cert = x509.load_pem_x509_certificates(pem)[0]
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        self.fingerprint = pki.openadr_fingerprint(self.cert)
        self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            self.method = SignatureMethod.ECDSA_SHA256
        elif isinstance(self.key, rsa.RSAPrivateKey):
            self.method = SignatureMethod.RSA_SHA256
        else:
            raise ValueError(f"{key_path}: only RSA and EC keys can sign OpenADR messages")

    def sign(self, root: etree._Element) -> etree._Element:
        """Insert a detached signature (with ReplayProtect) before oadrSignedObject; returns ``root``."""
        signed = root.find(codec.q("oadr", "oadrSignedObject"))
        signer = XMLSigner(method=methods.detached, signature_algorithm=self.method, c14n_algorithm=C14N)
        # the Signature must itself declare the envelope's namespace, or its inclusive C14N differs in place
        signer.namespaces["oadr"] = codec.NS["oadr"]
        signature = signer.sign(signed, key=self.key, cert=[self.cert_pem], reference_uri="#oadrSignedObject",
                                signature_properties=replay_protect())
        root.insert(0, signature)
        return root


def replay_protect() -> etree._Element:
    el = etree.Element(codec.q("dsp", "ReplayProtect"), nsmap={"dsp": codec.NS["dsp"]})
    el.set("Id", "replayProtect")
    el.set("Target", "#oadrSignedObject")
    etree.SubElement(el, codec.q("dsp", "timestamp")).text = codec.fmt_dt(dt.datetime.now(dt.UTC))
    etree.SubElement(el, codec.q("dsp", "nonce")).text = uuid.uuid4().hex
    return el
