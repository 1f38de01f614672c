"""XML signatures for OpenADR 2.0b (XMLDSig) with ReplayProtect: a lean, strict implementation on lxml + cryptography.

A signed 2.0b message carries a detached ``ds:Signature`` as the sibling before ``oadrSignedObject`` inside
``oadrPayload``::

    oadrPayload
      ds:Signature
        ds:SignedInfo   CanonicalizationMethod, SignatureMethod,
                        Reference URI="#oadrSignedObject" (c14n transform, digest)
                        Reference URI="#prop"             (c14n transform, digest)
        ds:SignatureValue
        ds:KeyInfo/ds:X509Data/ds:X509Certificate       the signer's certificate
        ds:Object Id="prop"/ds:SignatureProperties/ds:SignatureProperty/dsp:ReplayProtect (timestamp, nonce)
      oadrSignedObject oadr:Id="oadrSignedObject"

This is the layout openleadr (and signxml's detached method, which the first version of this module used) produce
and expect. Verification, in order (any failure -> ``SignatureRejected`` with the reason):

1. the certificate in KeyInfo is readable and has the OpenADR fingerprint of the TLS client certificate (a
   KeyValue / DEREncodedKeyValue next to it must be the same public key);
2. SignedInfo is canonicalised with its CanonicalizationMethod and the SignatureValue is checked with the
   certificate's key (RSA PKCS#1 v1.5 or ECDSA; SHA-2/SHA-3; SHA-1 and other methods are refused);
3. the references are read back from the canonical bytes that were verified (what is used is what was signed):
   exactly two, each a same-document ``#Id`` that resolves to exactly one element (an ambiguous Id is refused),
   with at most one canonicalisation transform and an accepted digest method, and each digest must match;
4. one reference must be the very ``oadrSignedObject`` the VTN then handles, and a referenced element must hold
   ``dsp:ReplayProtect`` whose timestamp is within the replay window; its nonce is returned so the caller records
   it durably (a nonce seen before is a replay).

Canonicalisation uses lxml's C14N of the element in its document (the inherited namespace declarations included,
as C14N 1.0 of a document subset requires and as signxml computes it). Comments never reach this module: the
hardened parser drops them.

The VTN's signing key and certificate are loaded once at start-up into ``Signer`` (openleadr re-reads and re-parses
its private key for every message); each reply costs two small C14N digests and one private-key operation.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from server import pki
from server.openadr import codec

DS = "http://www.w3.org/2000/09/xmldsig#"
DSIG11 = "http://www.w3.org/2009/xmldsig11#"
EC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"

# OpenADR 2.0b signs with inclusive C14N 1.0; this is what we sign with
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
# canonicalisation URI -> (exclusive, with comments); C14N 1.1 is not offered (lxml has no 1.1)
C14N_METHODS = {
    C14N: (False, False),
    C14N + "#WithComments": (False, True),
    EC_NS: (True, False),
    EC_NS + "WithComments": (True, True),
}
_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_MORE3 = "http://www.w3.org/2007/05/xmldsig-more#"
DIGESTS = {
    _MORE + "sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    _MORE + "sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    _MORE3 + "sha3-224": "sha3_224",
    _MORE3 + "sha3-256": "sha3_256",
    _MORE3 + "sha3-384": "sha3_384",
    _MORE3 + "sha3-512": "sha3_512",
}
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_224": hashes.SHA3_224,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}
# SignatureMethod URI -> (key type, hash); no SHA-1, DSA, HMAC or RSA-PSS
SIGNATURE_METHODS: dict[str, tuple[str, str]] = {
    **{f"{_MORE}rsa-{h}": ("rsa", h) for h in ("sha224", "sha256", "sha384", "sha512")},
    **{f"{_MORE}ecdsa-{h}": ("ec", h) for h in ("sha224", "sha256", "sha384", "sha512")},
    **{
        f"http://www.w3.org/2021/04/xmldsig-more#ecdsa-sha3-{n}": ("ec", f"sha3_{n}")
        for n in ("224", "256", "384", "512")
    },
}
RSA_SHA256 = _MORE + "rsa-sha256"
ECDSA_SHA256 = _MORE + "ecdsa-sha256"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


def _ds(tag: str) -> str:
    return f"{{{DS}}}{tag}"


SIGNATURE = _ds("Signature")
SIGNED_OBJECT = codec.q("oadr", "oadrSignedObject")
REPLAY_PROTECT = codec.q("dsp", "ReplayProtect")
_NS = {"ds": DS, "dsig11": DSIG11, "ec": EC_NS, "dsp": codec.NS["dsp"]}
# the canonical SignedInfo is re-read with the same hardened settings as request bodies
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@functools.lru_cache(maxsize=64)
def _c(path: str) -> str:
    """``ds:KeyInfo/ds:X509Data`` -> Clark notation (lxml then skips its per-call prefix mapping)."""
    return re.sub(r"\b([a-z0-9]+):(?=[A-Za-z])", lambda m: f"{{{_NS[m.group(1)]}}}", path)


@functools.lru_cache(maxsize=64)
def _steps(path: str) -> tuple[str, ...]:
    """``ds:X509Data/ds:X509Certificate`` -> its child steps in Clark notation."""
    return tuple(_c(step) for step in path.split("/"))


def _iter(el: etree._Element, steps: tuple[str, ...]) -> Iterator[etree._Element]:
    if len(steps) == 1:
        return el.iterchildren(steps[0])
    return (found for child in el.iterchildren(steps[0]) for found in _iter(child, steps[1:]))


# lxml's find/findall run its ElementPath engine in Python for every call; a signed message is looked into a few
# dozen times, so child steps are walked with iterchildren (C) instead -- the same elements in the same order
def _find(el: etree._Element, path: str) -> etree._Element | None:
    """The first element at ``path`` (child steps only) below ``el``, as ``el.find`` returns it."""
    return next(_iter(el, _steps(path)), None)


def _findall(el: etree._Element, path: str) -> list[etree._Element]:
    return list(_iter(el, _steps(path)))


class SignatureRejected(Exception):
    """A VEN's signature is missing (when required), broken, from another certificate, stale or replayed."""


@dataclass
class Verified:
    fingerprint: str
    nonce: str
    timestamp: dt.datetime


def c14n(
    el: etree._Element,
    exclusive: bool = False,
    with_comments: bool = False,
    prefixes: list[str] | None = None,
) -> bytes:
    """Canonical form of ``el`` in its document (inherited namespace declarations included when inclusive)."""
    return etree.tostring(
        el, method="c14n", exclusive=exclusive, with_comments=with_comments, inclusive_ns_prefixes=prefixes
    )


def _b64(value: str | None) -> bytes:
    try:
        return base64.b64decode("".join((value or "").split()), validate=True)
    except ValueError:
        raise SignatureRejected("malformed base64 in the signature") from None


@dataclass(frozen=True)
class _SignerCert:
    fingerprint: str
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    spki: bytes  # SubjectPublicKeyInfo DER, to compare a KeyValue against


@functools.lru_cache(maxsize=1024)
def _certificate(b64_text: str) -> _SignerCert:
    """The certificate of a KeyInfo, parsed once per distinct certificate (bounded; pure function of the text)."""
    der = _b64(b64_text)
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
    except ValueError:
        raise SignatureRejected("signature KeyInfo holds no readable certificate") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SignatureRejected("the signing certificate has neither an RSA nor an EC key")
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _SignerCert(pki.openadr_fingerprint(der), key, spki)


def _int(el: etree._Element | None) -> int:
    if el is None:
        raise SignatureRejected("incomplete KeyValue in the signature")
    return int.from_bytes(_b64(el.text), "big")


def _check_key_values(key_info: etree._Element, signer: _SignerCert) -> None:
    """A KeyValue or DEREncodedKeyValue next to the certificate must be the certificate's key (no ambiguity)."""
    for der_el in key_info.iterchildren(f"{{{DSIG11}}}DEREncodedKeyValue"):
        if _b64(der_el.text) != signer.spki:
            raise SignatureRejected("DEREncodedKeyValue and X509Certificate hold different keys")
    for kv in key_info.iterchildren(_ds("KeyValue")):
        rsa_kv = _find(kv, "ds:RSAKeyValue")
        ec_kv = _find(kv, "dsig11:ECKeyValue")
        if rsa_kv is not None and isinstance(signer.key, rsa.RSAPublicKey):
            numbers = signer.key.public_numbers()
            same = (_int(_find(rsa_kv, "ds:Modulus")), _int(_find(rsa_kv, "ds:Exponent"))) == (
                numbers.n,
                numbers.e,
            )
        elif ec_kv is not None and isinstance(signer.key, ec.EllipticCurvePublicKey):
            point = signer.key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            same = _b64(_text(ec_kv, "dsig11:PublicKey")) == point
        else:
            same = False
        if not same:
            raise SignatureRejected("KeyValue and X509Certificate hold different keys")


def _text(el: etree._Element, path: str) -> str | None:
    found = _find(el, path)
    return None if found is None else found.text


def _c14n_method(el: etree._Element | None) -> tuple[bool, bool, list[str] | None]:
    algorithm = el.get("Algorithm") if el is not None else None
    if el is None or algorithm not in C14N_METHODS:
        raise SignatureRejected(f"unsupported canonicalization {algorithm!r}")
    exclusive, comments = C14N_METHODS[algorithm]
    prefixes = None
    if exclusive:
        inclusive = _find(el, "ec:InclusiveNamespaces")
        if inclusive is not None and inclusive.get("PrefixList"):
            prefixes = inclusive.get("PrefixList", "").split()
    return exclusive, comments, prefixes


def _check_signature_value(signer: _SignerCert, method: str | None, value: bytes, data: bytes) -> None:
    if method not in SIGNATURE_METHODS:
        raise SignatureRejected(f"unsupported signature method {method!r}")
    kind, hash_name = SIGNATURE_METHODS[method]
    algorithm = _HASHES[hash_name]()
    try:
        if kind == "rsa":
            if not isinstance(signer.key, rsa.RSAPublicKey):
                raise SignatureRejected("signature method is RSA but the certificate's key is not")
            signer.key.verify(value, data, padding.PKCS1v15(), algorithm)
        else:
            if not isinstance(signer.key, ec.EllipticCurvePublicKey):
                raise SignatureRejected("signature method is ECDSA but the certificate's key is not")
            size = (signer.key.curve.key_size + 7) // 8
            if len(value) != 2 * size:  # XMLDSig carries ECDSA as r || s, each of the curve's size
                raise SignatureRejected(f"ECDSA SignatureValue must be {2 * size} bytes, got {len(value)}")
            der = encode_dss_signature(
                int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big")
            )
            signer.key.verify(der, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise SignatureRejected(
            "XML signature does not verify: SignatureValue does not match SignedInfo"
        ) from None


_ID_NAMES = frozenset({"Id", "ID", "id"})


def _id_index(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every element carrying an Id/ID/id attribute (in any namespace, as signxml resolves them), by value."""
    index: dict[str, list[etree._Element]] = {}
    for el in root.iter():
        for name, value in el.items():
            if name.rpartition("}")[2] in _ID_NAMES:
                index.setdefault(value, []).append(el)
    return index


def _resolve(index: dict[str, list[etree._Element]], uri: str | None) -> etree._Element:
    if not uri or not uri.startswith("#") or len(uri) < 2 or uri.startswith("#xpointer("):
        raise SignatureRejected(f"unsupported reference URI {uri!r} (only same-document #Id references)")
    found = index.get(uri[1:], [])
    if len(found) != 1:
        raise SignatureRejected(f"reference {uri} resolves to {len(found)} elements")
    return found[0]


def _check_reference(
    index: dict[str, list[etree._Element]], sig: etree._Element, ref: etree._Element
) -> etree._Element:
    """Digest of one Reference; returns the element it covers."""
    uri = ref.get("URI")
    target = _resolve(index, uri)
    if target is sig or any(d is sig for d in target.iterdescendants(SIGNATURE)):
        # it would need the enveloped-signature transform, which no OpenADR signature uses
        raise SignatureRejected(f"reference {uri} covers the Signature itself")
    transforms = _findall(ref, "ds:Transforms/ds:Transform")
    if len(transforms) > 1:
        raise SignatureRejected(f"reference {uri}: only one canonicalization transform is supported")
    exclusive, comments, prefixes = _c14n_method(transforms[0]) if transforms else (False, False, None)
    digest_name = DIGESTS.get(_attr(_find(ref, "ds:DigestMethod"), "Algorithm") or "")
    if digest_name is None:
        raise SignatureRejected(f"reference {uri}: unsupported digest method")
    expected = _b64(_text(ref, "ds:DigestValue"))
    if not hmac.compare_digest(
        hashlib.new(digest_name, c14n(target, exclusive, comments, prefixes)).digest(), expected
    ):
        raise SignatureRejected(f"XML signature does not verify: digest mismatch for reference {uri}")
    return target


def _attr(el: etree._Element | None, name: str) -> str | None:
    return None if el is None else el.get(name)


def verify(root: etree._Element, tls_fingerprint: str, window: dt.timedelta) -> Verified:
    """Check the detached signature of ``root`` (an oadrPayload); does not check the nonce cache."""
    sig = next(root.iterchildren(SIGNATURE), None)
    if sig is None:
        raise SignatureRejected("message is not signed")
    signed_object = next(root.iterchildren(SIGNED_OBJECT), None)
    key_info = _find(sig, "ds:KeyInfo")
    cert_el = _find(key_info, "ds:X509Data/ds:X509Certificate") if key_info is not None else None
    if key_info is None or cert_el is None or not cert_el.text:
        raise SignatureRejected("signature has no X509Certificate in KeyInfo")
    signer = _certificate(cert_el.text)
    if signer.fingerprint != tls_fingerprint:
        raise SignatureRejected(
            f"message signed with certificate {signer.fingerprint}, but the TLS client "
            f"certificate is {tls_fingerprint}"
        )
    _check_key_values(key_info, signer)
    signed_info = _find(sig, "ds:SignedInfo")
    if signed_info is None:
        raise SignatureRejected("signature has no SignedInfo")
    exclusive, comments, prefixes = _c14n_method(_find(signed_info, "ds:CanonicalizationMethod"))
    canonical = c14n(signed_info, exclusive, comments, prefixes)
    _check_signature_value(
        signer,
        _attr(_find(signed_info, "ds:SignatureMethod"), "Algorithm"),
        _b64(_text(sig, "ds:SignatureValue")),
        canonical,
    )
    # from here on only what was signed is read: the references come from the verified canonical bytes
    references = _findall(etree.fromstring(canonical, _PARSER), "ds:Reference")
    if len(references) != 2:
        raise SignatureRejected(f"expected 2 signed references, found {len(references)}")
    index = _id_index(root)
    covered = [_check_reference(index, sig, ref) for ref in references]
    if signed_object is None or not any(t is signed_object for t in covered):
        raise SignatureRejected("signature does not cover oadrSignedObject")
    replay = next((rp for t in covered for rp in t.iter(REPLAY_PROTECT)), None)
    nonce = _text(replay, "dsp:nonce") if replay is not None else None
    timestamp = _text(replay, "dsp:timestamp") if replay is not None else None
    nonce, timestamp = (nonce or "").strip(), (timestamp or "").strip()
    if not nonce or not timestamp:
        raise SignatureRejected("signature has no signed ReplayProtect nonce and timestamp")
    try:
        when = codec.parse_dt(timestamp)
    except ValueError:
        raise SignatureRejected(f"ReplayProtect timestamp {timestamp!r} is not a date-time") from None
    assert when is not None
    now = dt.datetime.now(dt.UTC)
    if when < now - window or when > now + window:
        raise SignatureRejected(
            f"ReplayProtect timestamp {timestamp} is outside the {window.total_seconds():.0f} s window"
        )
    return Verified(signer.fingerprint, nonce, when)


class Signer:
    """The VTN's signing identity, loaded once."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        pem = cert_path.read_bytes()
        self.cert = x509.load_pem_x509_certificates(pem)[0]
        der = self.cert.public_bytes(serialization.Encoding.DER)
        b64 = base64.b64encode(der).decode()
        # PEM-style 64-character lines, as signxml and openleadr write the certificate
        self.cert_b64 = "".join(b64[i : i + 64] + "\n" for i in range(0, len(b64), 64))
        self.fingerprint = pki.openadr_fingerprint(self.cert)
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            self.method = ECDSA_SHA256
            self._size = (key.curve.key_size + 7) // 8
        elif isinstance(key, rsa.RSAPrivateKey):
            self.method = RSA_SHA256
        else:
            raise ValueError(f"{key_path}: only RSA and EC keys can sign OpenADR messages")
        self.key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = key
        self._template: etree._Element | None = None
        self._pieces()
        self._check_seal()

    def _signature_value(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(self._size, "big") + s.to_bytes(self._size, "big")
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def _skeleton(self) -> etree._Element:
        """The Signature with everything that does not change between replies (built once, copied per reply)."""
        sig = etree.Element(SIGNATURE, nsmap={"ds": DS})
        info = etree.SubElement(sig, _ds("SignedInfo"))
        etree.SubElement(info, _ds("CanonicalizationMethod"), Algorithm=C14N)
        etree.SubElement(info, _ds("SignatureMethod"), Algorithm=self.method)
        for uri in ("#oadrSignedObject", "#prop"):
            ref = etree.SubElement(info, _ds("Reference"), URI=uri)
            etree.SubElement(etree.SubElement(ref, _ds("Transforms")), _ds("Transform"), Algorithm=C14N)
            etree.SubElement(ref, _ds("DigestMethod"), Algorithm=SHA256)
            etree.SubElement(ref, _ds("DigestValue"))
        etree.SubElement(sig, _ds("SignatureValue"))
        x509_data = etree.SubElement(etree.SubElement(sig, _ds("KeyInfo")), _ds("X509Data"))
        etree.SubElement(x509_data, _ds("X509Certificate")).text = self.cert_b64
        obj = etree.SubElement(sig, _ds("Object"), Id="prop")
        prop = etree.SubElement(
            etree.SubElement(obj, _ds("SignatureProperties")),
            _ds("SignatureProperty"),
            Id="replayProtect",
            Target="#oadrSignedObject",
        )
        replay = etree.SubElement(prop, REPLAY_PROTECT, nsmap={"dsp": codec.NS["dsp"]})
        etree.SubElement(replay, codec.q("dsp", "timestamp"))
        etree.SubElement(replay, codec.q("dsp", "nonce"))
        return sig

    def sign(
        self, root: etree._Element, timestamp: str | None = None, nonce: str | None = None
    ) -> etree._Element:
        """Insert a detached signature (with ReplayProtect) before oadrSignedObject; returns ``root``.

        The tree-building reference implementation: ``seal`` produces the same bytes from pre-split templates and
        is checked against this at start-up. ``timestamp`` and ``nonce`` are fresh unless given (that check)."""
        signed = root.find(SIGNED_OBJECT)
        if signed is None:
            raise ValueError("nothing to sign: no oadrSignedObject")
        if self._template is None:
            self._template = self._skeleton()
        sig = copy.deepcopy(self._template)
        info, value, _key_info, obj = sig
        replay = obj[0][0][0]
        replay[0].text = timestamp or codec.fmt_dt(dt.datetime.now(dt.UTC))
        replay[1].text = nonce or uuid.uuid4().hex
        # in the document before canonicalising: inclusive C14N takes the in-scope namespaces into account
        root.insert(0, sig)
        for ref, target in ((info[2], signed), (info[3], obj)):
            ref[2].text = base64.b64encode(hashlib.sha256(c14n(target)).digest()).decode()
        value.text = base64.b64encode(self._signature_value(c14n(info))).decode()
        return root

    # ------------------------------------------------------------------ the per-reply fast path
    # A reply's Signature differs from the next one's only in four values: the two DigestValues, the
    # SignatureValue and the ReplayProtect timestamp and nonce. Everything around them -- in the serialised
    # document and in the canonical forms of SignedInfo and of the ReplayProtect Object, which are what is hashed
    # and signed -- is fixed. So the skeleton is serialised and canonicalised once, in a document shaped exactly
    # like a reply, with marker values, and split at the markers; a reply then joins the pieces around its own
    # values. The values never need escaping (base64, hex, an xs:dateTime), so the joined bytes are what lxml
    # would have produced; ``_check_seal`` proves that at start-up against ``sign``. Every reply still gets a
    # fresh timestamp, a fresh nonce and its own private-key signature: only serialisation work is saved.
    _MARKS = ("QQDIGESTZEROQQ", "QQDIGESTONEQQ", "QQSIGNATUREVALUEQQ", "QQTIMESTAMPQQ", "QQNONCEQQ")

    def _pieces(self) -> None:
        d0, d1, value_mark, ts, nonce = self._MARKS
        root = codec.envelope(codec.response(200, "OK", None, "template"))
        self.sign(root, timestamp=ts, nonce=nonce)
        sig = root[0]
        info, value, _key_info, obj = sig
        info[2][2].text, info[3][2].text, value.text = d0, d1, value_mark
        unsigned = codec.serialise(codec.envelope(codec.response(200, "OK", None, "template")))
        head = unsigned[: unsigned.index(b"<oadr:oadrSignedObject")]
        document = codec.serialise(root)
        if not document.startswith(head):
            raise RuntimeError("signature template: the signed document does not start like the unsigned one")
        self._head = head
        self._sig_pieces = _split(
            document[len(head) : document.index(b"<oadr:oadrSignedObject")], self._MARKS
        )
        self._info_pieces = _split(c14n(info), (d0, d1))
        self._obj_pieces = _split(c14n(obj), (ts, nonce))

    def object_digest(self, root: etree._Element) -> bytes:
        """SHA-256 of the canonical oadrSignedObject of an (unsigned) envelope: the first reference's digest."""
        signed = root.find(SIGNED_OBJECT)
        if signed is None:
            raise ValueError("nothing to sign: no oadrSignedObject")
        return hashlib.sha256(c14n(signed)).digest()

    def seal(
        self, unsigned: bytes, object_digest: bytes, timestamp: str | None = None, nonce: str | None = None
    ) -> bytes:
        """The signed form of ``unsigned`` (a serialised envelope, as ``codec.serialise`` writes it) whose
        canonical oadrSignedObject has SHA-256 ``object_digest``: byte for byte what ``sign`` then
        ``codec.serialise`` give."""
        if not unsigned.startswith(self._head):
            raise ValueError("not a serialised oadrPayload envelope")
        when = (timestamp or codec.fmt_dt(dt.datetime.now(dt.UTC))).encode()
        once = (nonce or uuid.uuid4().hex).encode()
        o0, o1, o2 = self._obj_pieces
        d0 = base64.b64encode(object_digest)
        d1 = base64.b64encode(hashlib.sha256(b"".join((o0, when, o1, once, o2))).digest())
        i0, i1, i2 = self._info_pieces
        value = base64.b64encode(self._signature_value(b"".join((i0, d0, i1, d1, i2))))
        s = self._sig_pieces
        signature = b"".join((s[0], d0, s[1], d1, s[2], value, s[3], when, s[4], once, s[5]))
        head = self._head
        return b"".join((head, signature, unsigned[len(head) :]))

    def seal_tree(self, root: etree._Element) -> bytes:
        """``seal`` of an unsigned envelope element."""
        return self.seal(codec.serialise(root), self.object_digest(root))

    def _check_seal(self) -> None:
        """The template path must give exactly the tree-built bytes (run once at start-up)."""
        timestamp, nonce = "2012-07-01T00:00:00.123456Z", "0123456789abcdef0123456789abcdef"
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            # ECDSA signatures are randomised: compare with the SignatureValue blanked out
            def blank(doc: bytes) -> bytes:
                return re.sub(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>", b"", doc)
        else:

            def blank(doc: bytes) -> bytes:
                return doc

        tree = codec.envelope(codec.response(200, "OK & <fine>", "r-1", "ven-1"))
        fast = self.seal(codec.serialise(tree), self.object_digest(tree), timestamp, nonce)
        slow = codec.serialise(self.sign(tree, timestamp, nonce))
        if blank(fast) != blank(slow):
            raise RuntimeError("signature template: the template path differs from the tree-built signature")


def _split(data: bytes, marks: tuple[str, ...]) -> tuple[bytes, ...]:
    """``data`` cut at each of ``marks`` (in this order, each exactly once)."""
    pieces = []
    for mark in marks:
        before, found, data = data.partition(mark.encode())
        if not found or mark.encode() in data:
            raise RuntimeError(f"signature template: marker {mark} not found exactly once")
        pieces.append(before)
    pieces.append(data)
    return tuple(pieces)


def replay_protect() -> etree._Element:
    el = etree.Element(REPLAY_PROTECT, nsmap={"dsp": codec.NS["dsp"]})
    etree.SubElement(el, codec.q("dsp", "timestamp")).text = codec.fmt_dt(dt.datetime.now(dt.UTC))
    etree.SubElement(el, codec.q("dsp", "nonce")).text = uuid.uuid4().hex
    return el
