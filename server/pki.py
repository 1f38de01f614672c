"""Certificate identity (LFDI, SFDI, OpenADR fingerprint) and the development PKI.

The development PKI follows the IEEE 2030.5 certificate profile: a self-signed SERCA, an MCA below it and an MICA
below that; device certificates are ECDSA P-256 with an empty subject, a critical subjectAltName holding a
HardwareModuleName, 2030.5 policy OIDs and notAfter 99991231235959Z. The server gets an EC certificate (2030.5 and
OpenADR ECC suites) and an RSA-2048 one (OpenADR RSA suite) with SAN IP:127.0.0.1 and DNS:localhost. Keys are
written 0600; nothing generated here is ever committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# IEEE 2030.5 object identifiers (IANA PEN 40732)
OID_DEVICE_GENERIC = ObjectIdentifier("1.3.6.1.4.1.40732.1.1")
OID_TEST_CERT = ObjectIdentifier("1.3.6.1.4.1.40732.2.1")
OID_SERVICE_PROVIDER = ObjectIdentifier("1.3.6.1.4.1.40732.2.3")
OID_HARDWARE_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
OID_ANY_POLICY = ObjectIdentifier("2.5.29.32.0")
# hwType for development devices: an arc below our test-certificate policy, marking them as non-production
DEV_HW_TYPE = "1.3.6.1.4.1.40732.2.1.1"
# RFC 5280 GeneralizedTime 99991231235959Z: "no well-defined expiration", which 2030.5 requires of device certs
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------- identity
def certificate_der(cert: x509.Certificate | bytes) -> bytes:
    return cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)


def lfdi(cert: x509.Certificate | bytes) -> str:
    """LFDI: the SHA-256 fingerprint of the DER certificate left-truncated to 160 bits, 40 upper-case hex."""
    return hashlib.sha256(certificate_der(cert)).hexdigest()[:40].upper()


def sfdi_from_lfdi(lfdi_hex: str) -> int:
    """SFDI: the first 36 bits as decimal, followed by a check digit making the digit sum a multiple of 10."""
    value = int(lfdi_hex[:9], 16)
    digit_sum = sum(int(d) for d in str(value))
    return value * 10 + (10 - digit_sum % 10) % 10


def sfdi(cert: x509.Certificate | bytes) -> int:
    return sfdi_from_lfdi(lfdi(cert))


def openadr_fingerprint(cert: x509.Certificate | bytes) -> str:
    """OpenADR VEN/VTN fingerprint: the last 10 bytes of SHA-256 over the DER certificate, colon-separated hex."""
    digest = hashlib.sha256(certificate_der(cert)).digest()
    return ":".join(f"{b:02X}" for b in digest[-10:])


def normalise_lfdi(value: str) -> str:
    """Accept LFDIs with separators or lower case; raise ValueError unless 40 hex digits remain."""
    cleaned = value.replace("-", "").replace(":", "").replace(" ", "").upper()
    if len(cleaned) != 40 or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise ValueError(f"LFDI must be 40 hex digits, got {value!r}")
    return cleaned


# ---------------------------------------------------------------------------------------------- DER helpers
def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return b"\x06" + _der_len(len(body)) + bytes(body)


def hardware_module_name(hw_type: str, serial: bytes) -> bytes:
    """DER of RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }."""
    body = _der_oid(hw_type) + b"\x04" + _der_len(len(serial)) + serial
    return b"\x30" + _der_len(len(body)) + body


# ---------------------------------------------------------------------------------------------- issuing
@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


def _name(cn: str, org: str = "OpenDSO development PKI") -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _ca(
    cn: str,
    issuer: Issued | None,
    path_len: int | None,
    policies: list[ObjectIdentifier],
    rsa_key: bool = False,
) -> Issued:
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(NO_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def issue_device(mica: Issued, serial: bytes | None = None, aggregator: bool = False) -> Issued:
    """A 2030.5 device certificate: P-256, empty subject, HardwareModuleName SAN, no expiry."""
    key = ec.generate_private_key(ec.SECP256R1())
    hw = hardware_module_name(DEV_HW_TYPE, serial or secrets.token_hex(8).encode())
    policies = [OID_DEVICE_GENERIC, OID_TEST_CERT] + ([OID_SERVICE_PROVIDER] if aggregator else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(mica.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(NO_EXPIRY)
        # an empty subject makes the SAN the identity, so RFC 5280 wants it critical
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(OID_HARDWARE_MODULE_NAME, hw)]), critical=True
        )
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(mica.key.public_key()), critical=False
        )
        .sign(mica.key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue_tls_leaf(issuer: Issued, cn: str, hosts: list[str], server: bool, rsa_key: bool = False) -> Issued:
    """A TLS server or client certificate (OpenADR VTN/VEN, the 2030.5 server)."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    # the server is also a TLS client when it POSTs notifications and pushes to VENs: give it both usages
    usages = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    # RSA key exchange (TLS_RSA_*) needs keyEncipherment; ECDHE-ECDSA needs digitalSignature
    key_usage = x509.KeyUsage(True, False, rsa_key, False, not rsa_key, False, False, False, False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


# ---------------------------------------------------------------------------------------------- files
def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # create with 0600 from the start so the key is never briefly world-readable
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    return Issued(cert, key)  # type: ignore[arg-type]


class DevPki:
    """The development PKI kept in one directory: created on first use, reused afterwards."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_bundle = directory / "ca.pem"
        self.clients = directory / "clients"

    def _save(self, stem: str, issued: Issued, chain: Sequence[x509.Certificate] = ()) -> None:
        (self.dir / f"{stem}.pem").write_bytes(b"".join(pem(c) for c in [issued.cert, *chain]))
        write_key(self.dir / f"{stem}.key", issued.key)

    def _load(self, stem: str) -> Issued:
        return load_issued(self.dir / f"{stem}.pem", self.dir / f"{stem}.key")

    def ensure(self, hosts: list[str]) -> list[Path]:
        """Create whatever is missing; return the files written (empty when the PKI was complete)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.clients.mkdir(exist_ok=True)
        made: list[Path] = []
        if not (self.dir / "serca.pem").exists():
            serca = _ca("OpenDSO Dev SERCA", None, None, [OID_ANY_POLICY])
            mca = _ca("OpenDSO Dev MCA", serca, 1, [OID_DEVICE_GENERIC, OID_TEST_CERT, OID_SERVICE_PROVIDER])
            mica = _ca("OpenDSO Dev MICA", mca, 0, [OID_DEVICE_GENERIC, OID_TEST_CERT, OID_SERVICE_PROVIDER])
            rsa_root = _ca("OpenDSO Dev OpenADR RSA Root", None, 0, [OID_ANY_POLICY], rsa_key=True)
            for stem, issued in (("serca", serca), ("mca", mca), ("mica", mica), ("rsa-root", rsa_root)):
                self._save(stem, issued)
                made += [self.dir / f"{stem}.pem", self.dir / f"{stem}.key"]
            (self.dir / "server-ec.pem").unlink(missing_ok=True)
            (self.dir / "server-rsa.pem").unlink(missing_ok=True)
        if not (self.dir / "server-ec.pem").exists():
            mca = self._load("mca")
            self._save("server-ec", issue_tls_leaf(mca, "OpenDSO server", hosts, server=True), [mca.cert])
            made += [self.dir / "server-ec.pem", self.dir / "server-ec.key"]
        if not (self.dir / "server-rsa.pem").exists():
            root = self._load("rsa-root")
            self._save("server-rsa", issue_tls_leaf(root, "OpenDSO server", hosts, server=True, rsa_key=True))
            made += [self.dir / "server-rsa.pem", self.dir / "server-rsa.key"]
        bundle = b"".join(pem(self._load(s).cert) for s in ("serca", "mca", "mica", "rsa-root"))
        if not self.ca_bundle.exists() or self.ca_bundle.read_bytes() != bundle:
            self.ca_bundle.write_bytes(bundle)
            made.append(self.ca_bundle)
        return made

    def _write_client(self, name: str, issued: Issued) -> tuple[Path, Path]:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid client name {name!r}")
        cert_path, key_path = self.clients / f"{name}.pem", self.clients / f"{name}.key"
        cert_path.write_bytes(pem(issued.cert))
        write_key(key_path, issued.key)
        return cert_path, key_path

    def issue_device(self, name: str, aggregator: bool = False) -> dict[str, object]:
        issued = issue_device(self._load("mica"), aggregator=aggregator)
        cert_path, key_path = self._write_client(name, issued)
        return {
            "name": name,
            "lfdi": lfdi(issued.cert),
            "sfdi": sfdi(issued.cert),
            "cert": str(cert_path),
            "key": str(key_path),
            "aggregator": aggregator,
        }

    def issue_ven(self, name: str, use_rsa: bool = False) -> dict[str, object]:
        issuer = self._load("rsa-root" if use_rsa else "mca")
        issued = issue_tls_leaf(issuer, name, [], server=False, rsa_key=use_rsa)
        cert_path, key_path = self._write_client(name, issued)
        return {
            "name": name,
            "fingerprint": openadr_fingerprint(issued.cert),
            "cert": str(cert_path),
            "key": str(key_path),
            "rsa": use_rsa,
        }
