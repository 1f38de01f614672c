"""The XMLDSig implementation in server.openadr.signing, without a server: interoperability with openleadr (and
signxml, which openleadr verifies with) in both directions, and rejection of tampered, re-pointed, ambiguous,
stale and weak-algorithm signatures. Replayed nonces are refused by the transport (tests in test_oadr_bad_input).

Structural attacks are built by editing a genuine signed message and signing its SignedInfo again with the VEN's
own key, so that each test reaches the check it is about instead of failing on the signature value.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree
from openleadr import messaging
from signxml import XMLVerifier
from signxml.verifier import SignatureConfiguration

from server.openadr import codec, signing
from server.pki import DevPki

WINDOW = dt.timedelta(seconds=30)
DS = {"ds": signing.DS, "dsp": codec.NS["dsp"], "oadr": codec.NS["oadr"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("pki")
    dev = DevPki(directory)
    dev.ensure(["localhost"])
    return {
        "dir": directory,
        "ec": dev.issue_ven("sig-ec"),
        "rsa": dev.issue_ven("sig-rsa", use_rsa=True),
        "other": dev.issue_ven("sig-other"),
    }


def ven_message(ven: dict, kind: str = "oadrPoll", **payload) -> bytes:
    """A message signed by openleadr's own VEN code."""
    payload.setdefault("ven_id", "ven-1")
    return messaging.create_message(
        kind, cert=Path(ven["cert"]).read_bytes(), key=Path(ven["key"]).read_bytes(), **payload
    ).encode()


def resign(root: etree._Element, ven: dict) -> etree._Element:
    """Sign SignedInfo again with the VEN's key after an edit (digests are recomputed by the caller if wanted)."""
    key = serialization.load_pem_private_key(Path(ven["key"]).read_bytes(), None)
    info = root.find("ds:Signature/ds:SignedInfo", DS)
    data = signing.c14n(info)
    if isinstance(key, rsa.RSAPrivateKey):
        value = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    root.find("ds:Signature/ds:SignatureValue", DS).text = base64.b64encode(value).decode()
    return root


def redigest(root: etree._Element, index: int, target: etree._Element, algorithm: str = "sha256") -> None:
    ref = root.findall("ds:Signature/ds:SignedInfo/ds:Reference", DS)[index]
    ref.find("ds:DigestValue", DS).text = base64.b64encode(
        hashlib.new(algorithm, signing.c14n(target)).digest()
    ).decode()


def rejected(root: etree._Element, fingerprint: str, match: str) -> None:
    with pytest.raises(signing.SignatureRejected, match=match):
        signing.verify(root, fingerprint, WINDOW)


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_openleadr_signed_messages_verify(pki, kind):
    ven = pki[kind]
    root = codec.parse(ven_message(ven, "oadrQueryRegistration", request_id="q-1"))
    codec.validate(root)
    verified = signing.verify(root, ven["fingerprint"], WINDOW)
    assert verified.fingerprint == ven["fingerprint"] and len(verified.nonce) == 32
    assert abs(verified.timestamp - dt.datetime.now(dt.UTC)) < WINDOW


@pytest.mark.parametrize("stem", ["server-rsa", "server-ec"])
def test_our_signed_replies_verify_in_openleadr_and_signxml(pki, stem):
    signer = signing.Signer(pki["dir"] / f"{stem}.pem", pki["dir"] / f"{stem}.key")
    body = codec.serialise(signer.sign(codec.envelope(codec.response(200, "OK & <fine>", "r-1", "ven-1"))))
    root = codec.parse(body)
    codec.validate(root)  # the signed reply is schema-valid 2.0b
    # exactly what openleadr's VEN does with a signed answer: fingerprint, signature, ReplayProtect
    messaging.validate_xml_signature(etree.fromstring(body), cert_fingerprint=signer.fingerprint)
    kind, payload = messaging.parse_message(body)
    assert kind == "oadrResponse" and payload["response"]["response_description"] == "OK & <fine>"
    results = XMLVerifier().verify(
        etree.fromstring(body),
        x509_cert=signer.cert,
        expect_config=SignatureConfiguration(expect_references=2),
    )
    assert {r.signed_xml.tag for r in results} == {
        codec.q("oadr", "oadrSignedObject"),
        f"{{{signing.DS}}}Object",
    }
    # and our own verifier accepts it
    assert signing.verify(root, signer.fingerprint, WINDOW).fingerprint == signer.fingerprint


@pytest.mark.parametrize("stem", ["server-rsa", "server-ec"])
def test_sealed_replies_are_the_tree_built_ones_and_fresh_each_time(pki, stem):
    """The per-reply path (templates joined around the values) gives the tree-built signature's bytes, and every
    reply has its own ReplayProtect and signature even when the content (and its cached digest) is the same."""
    signer = signing.Signer(pki["dir"] / f"{stem}.pem", pki["dir"] / f"{stem}.key")
    envelope = codec.envelope(codec.response(200, "OK & <fine>", None, "ven-1"))
    unsigned, digest = codec.serialise(envelope), signer.object_digest(envelope)
    bodies = [signer.seal(unsigned, digest) for _ in range(2)]
    seen = []
    for body in bodies:
        root = codec.parse(body)
        codec.validate(root)
        messaging.validate_xml_signature(etree.fromstring(body), cert_fingerprint=signer.fingerprint)
        assert messaging.parse_message(body)[0] == "oadrResponse"
        verified = signing.verify(root, signer.fingerprint, WINDOW)
        seen.append((verified.nonce, root.findtext(".//ds:SignatureValue", namespaces=DS)))
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]
    timestamp, nonce = "2026-01-02T03:04:05.678901Z", "ab" * 16
    sealed = signer.seal(unsigned, digest, timestamp, nonce)
    tree = codec.serialise(
        signer.sign(codec.envelope(codec.response(200, "OK & <fine>", None, "ven-1")), timestamp, nonce)
    )
    if stem == "server-rsa":  # PKCS#1 v1.5 is deterministic: the very same bytes
        assert sealed == tree
    else:  # ECDSA is randomised: the same apart from the signature value
        blank = re.compile(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>")
        assert blank.sub(b"", sealed) == blank.sub(b"", tree)
    # a digest that is not the content's (a stale cache entry would be) does not verify anywhere
    rejected(codec.parse(signer.seal(unsigned, b"\0" * 32)), signer.fingerprint, "digest mismatch")


def test_tampered_content_nonce_or_signed_info_is_rejected(pki):
    ven = pki["ec"]
    body = ven_message(ven, "oadrQueryRegistration", request_id="q-original")
    rejected(codec.parse(body.replace(b"q-original", b"q-evil")), ven["fingerprint"], "digest mismatch")
    root = codec.parse(body)
    nonce = root.find(".//dsp:nonce", DS)
    nonce.text = "0" * 32
    rejected(root, ven["fingerprint"], "digest mismatch for reference #prop")
    root = codec.parse(body)
    root.find(".//ds:DigestValue", DS).text = base64.b64encode(b"\0" * 32).decode()
    rejected(root, ven["fingerprint"], "SignatureValue does not match")


def test_signature_of_another_certificate_is_rejected(pki):
    root = codec.parse(ven_message(pki["other"]))
    rejected(root, pki["ec"]["fingerprint"], "but the TLS client certificate is")
    # swapping in the expected certificate does not help: the signature is not by its key
    root = codec.parse(ven_message(pki["other"]))
    cert = root.find(".//ds:X509Certificate", DS)
    der = x509_der(pki["ec"]["cert"])
    cert.text = base64.b64encode(der).decode()
    rejected(root, pki["ec"]["fingerprint"], "SignatureValue does not match")


def x509_der(path: str) -> bytes:
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes()).public_bytes(serialization.Encoding.DER)


def test_wrapped_signed_object_is_rejected(pki):
    """The signed oadrSignedObject moved into ds:Object and an unsigned one put in its place: the reference still
    resolves and digests, but not to the object the VTN would act on."""
    ven = pki["ec"]
    root = codec.parse(ven_message(ven, "oadrQueryRegistration", request_id="genuine"))
    original = root.find("oadr:oadrSignedObject", DS)
    forged = etree.fromstring(etree.tostring(original).replace(b"genuine", b"forged"))
    del forged.attrib[codec.q("oadr", "Id")]
    obj = root.find("ds:Signature/ds:Object", DS)
    obj.append(original)
    root.append(forged)
    # (moved, its inclusive C14N gains the ds namespace: a wrapper signing the moved form is the worst case)
    redigest(root, 0, original)
    redigest(root, 1, obj)
    resign(root, ven)
    rejected(root, ven["fingerprint"], "does not cover oadrSignedObject")


def test_ambiguous_reference_id_is_rejected(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    decoy = etree.SubElement(root.find("ds:Signature/ds:Object", DS), "decoy", Id="oadrSignedObject")
    decoy.text = "x"
    rejected(root, ven["fingerprint"], "resolves to 2 elements")


def test_reference_to_something_else_is_rejected(pki):
    """Correctly signed, but the references cover the ReplayProtect object only (twice), not the message."""
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    refs = root.findall("ds:Signature/ds:SignedInfo/ds:Reference", DS)
    refs[0].set("URI", "#prop")
    redigest(root, 0, root.find("ds:Signature/ds:Object", DS))
    resign(root, ven)
    rejected(root, ven["fingerprint"], "does not cover oadrSignedObject")


def test_reference_count_must_be_two(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    info = root.find("ds:Signature/ds:SignedInfo", DS)
    info.remove(info.findall("ds:Reference", DS)[1])
    resign(root, ven)
    rejected(root, ven["fingerprint"], "expected 2 signed references, found 1")


def test_sha1_and_unknown_algorithms_are_refused(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    ref = root.find("ds:Signature/ds:SignedInfo/ds:Reference", DS)
    ref.find("ds:DigestMethod", DS).set("Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")
    redigest(root, 0, root.find("oadr:oadrSignedObject", DS), "sha1")
    resign(root, ven)
    rejected(root, ven["fingerprint"], "unsupported digest method")

    root = codec.parse(ven_message(ven))
    root.find(".//ds:SignatureMethod", DS).set(
        "Algorithm", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
    )
    rejected(root, ven["fingerprint"], "unsupported signature method")

    root = codec.parse(ven_message(ven))
    root.find(".//ds:CanonicalizationMethod", DS).set("Algorithm", "http://example.com/c14n")
    rejected(root, ven["fingerprint"], "unsupported canonicalization")


def test_rsa_method_with_ec_key_is_refused(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    root.find(".//ds:SignatureMethod", DS).set("Algorithm", signing.RSA_SHA256)
    resign(root, ven)
    rejected(root, ven["fingerprint"], "RSA but the certificate's key is not")


def test_stale_or_missing_replay_protect_is_rejected(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    root.find(".//dsp:timestamp", DS).text = "2020-01-01T00:00:00Z"
    redigest(root, 1, root.find("ds:Signature/ds:Object", DS))
    resign(root, ven)
    rejected(root, ven["fingerprint"], "outside the 30 s window")

    root = codec.parse(ven_message(ven))
    replay = root.find(".//dsp:ReplayProtect", DS)
    replay.remove(replay.find("dsp:nonce", DS))
    redigest(root, 1, root.find("ds:Signature/ds:Object", DS))
    resign(root, ven)
    rejected(root, ven["fingerprint"], "no signed ReplayProtect")


def test_unsigned_replay_protect_is_not_used(pki):
    """A ReplayProtect outside the signed references (here appended to the unsigned KeyInfo) is not read."""
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    genuine = root.find(".//dsp:ReplayProtect", DS)
    genuine.getparent().remove(genuine)
    redigest(root, 1, root.find("ds:Signature/ds:Object", DS))
    resign(root, ven)
    root.find("ds:Signature/ds:KeyInfo", DS).append(genuine)
    rejected(root, ven["fingerprint"], "no signed ReplayProtect")


def test_key_value_must_match_the_certificate(pki):
    ven = pki["ec"]
    own = serialization.load_pem_private_key(Path(ven["key"]).read_bytes(), None).public_key()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    for key, ok in ((own, True), (other, False)):
        root = codec.parse(ven_message(ven))
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        el = etree.SubElement(
            root.find("ds:Signature/ds:KeyInfo", DS), f"{{{signing.DSIG11}}}DEREncodedKeyValue"
        )
        el.text = base64.b64encode(spki).decode()
        if ok:
            assert signing.verify(root, ven["fingerprint"], WINDOW)
        else:
            rejected(root, ven["fingerprint"], "different keys")


def test_truncated_ecdsa_signature_value_is_rejected(pki):
    ven = pki["ec"]
    root = codec.parse(ven_message(ven))
    value = root.find(".//ds:SignatureValue", DS)
    value.text = base64.b64encode(base64.b64decode(value.text)[:-1]).decode()
    rejected(root, ven["fingerprint"], "must be 64 bytes")
