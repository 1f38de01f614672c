"""LFDI/SFDI and the 2030.5 certificate profile, cross-checked with the independent ``sep2tools`` package."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sep2tools.cert_id import get_certificate_lfdi, get_lfdi, get_sfdi
from sep2tools.cert_validate import validate_certificate
from support import dso, dso_json

from server import pki


def test_sfdi_matches_the_worked_example_of_ieee_2030_5():
    # IEEE 2030.5 §6.3.4 works this LFDI through to SFDI 16726121139 with check digit 1
    lfdi = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
    assert pki.sfdi_from_lfdi(lfdi) == 167261211391
    assert get_sfdi(lfdi, group=False) == "167261211391"


@pytest.mark.parametrize("prefix", ["000000000", "FFFFFFFFF", "123456789", "0000000A0"])
def test_sfdi_check_digit_makes_the_digit_sum_a_multiple_of_ten(prefix):
    lfdi = prefix + "0" * 31
    value = pki.sfdi_from_lfdi(lfdi)
    assert sum(int(c) for c in str(value)) % 10 == 0
    assert value == int(get_sfdi(lfdi, group=False))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("pki") / "dso"
    dso("init", str(home), "--json")
    return home


def test_dso_certs_device_prints_the_lfdi_and_sfdi_sep2tools_computes(data_dir):
    for i in range(5):
        out = dso_json("certs", "device", f"dev{i}", "--json", "-c", str(data_dir))
        cert_path = Path(out["cert"])
        assert out["lfdi"] == get_certificate_lfdi(cert_path, group=False)
        der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
        assert out["lfdi"] == get_lfdi(hashlib.sha256(der).hexdigest(), group=False)
        assert str(out["sfdi"]) == get_sfdi(out["lfdi"], group=False)


def test_device_certificate_follows_the_2030_5_profile(data_dir):
    out = dso_json("certs", "device", "profile", "--json", "-c", str(data_dir))
    cert = x509.load_pem_x509_certificate(Path(out["cert"]).read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert len(cert.subject) == 0
    assert cert.not_valid_after_utc == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject: the SAN carries the identity
    other = san.value.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in other] == [pki.OID_HARDWARE_MODULE_NAME]
    policies = {
        p.policy_identifier for p in cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    }
    assert pki.OID_DEVICE_GENERIC in policies
    mica = x509.load_pem_x509_certificate((data_dir / "pki" / "mica.pem").read_bytes())
    cert.verify_directly_issued_by(mica)


def test_sep2tools_validator_accepts_our_device_certificate(data_dir, tmp_path):
    out = dso_json("certs", "device", "validated", "--json", "-c", str(data_dir))
    # sep2tools finds the issuer in the same directory
    (tmp_path / "device.pem").write_bytes(Path(out["cert"]).read_bytes())
    (tmp_path / "mica.pem").write_bytes((data_dir / "pki" / "mica.pem").read_bytes())
    assert validate_certificate(tmp_path / "device.pem") is True


def test_hierarchy_serca_mca_mica(data_dir):
    certs = {
        n: x509.load_pem_x509_certificate((data_dir / "pki" / f"{n}.pem").read_bytes())
        for n in ("serca", "mca", "mica")
    }
    certs["serca"].verify_directly_issued_by(certs["serca"])
    certs["mca"].verify_directly_issued_by(certs["serca"])
    certs["mica"].verify_directly_issued_by(certs["mca"])
    for c in certs.values():
        assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificates_name_loopback_and_cover_rsa_and_ec(data_dir):
    for stem, key_type in (("server-ec", ec.EllipticCurvePublicKey), ("server-rsa", None)):
        cert = x509.load_pem_x509_certificates((data_dir / "pki" / f"{stem}.pem").read_bytes())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
        if key_type:
            assert isinstance(cert.public_key(), key_type)
        else:
            assert cert.public_key().key_size == 2048


def test_private_keys_are_written_0600(data_dir):
    dso_json("certs", "ven", "ven-rsa", "--json", "--rsa", "-c", str(data_dir))
    keys = list((data_dir / "pki").rglob("*.key"))
    assert len(keys) >= 8
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_ven_fingerprint_is_last_ten_bytes_of_sha256(data_dir):
    out = dso_json("certs", "ven", "ven-ec", "--json", "-c", str(data_dir))
    der = x509.load_pem_x509_certificate(Path(out["cert"]).read_bytes()).public_bytes(Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    assert out["fingerprint"].replace(":", "") == digest[-20:]
    assert out["fingerprint"].count(":") == 9


def test_init_is_idempotent_and_keeps_the_pki(data_dir):
    before = (data_dir / "pki" / "serca.pem").read_bytes(), (data_dir / "dso.toml").read_text()
    again = dso_json("init", str(data_dir), "--json")
    assert (data_dir / "pki" / "serca.pem").read_bytes() == before[0]
    assert (data_dir / "dso.toml").read_text() == before[1]
    assert set(again) >= {"config", "ca", "server_url", "dcap_url", "openadr_url", "admin_url", "admin_token"}


@pytest.mark.parametrize("bad", ["", "xyz", "00", "G" * 40, "0" * 41])
def test_normalise_lfdi_rejects_non_hex(bad):
    with pytest.raises(ValueError):
        pki.normalise_lfdi(bad)


def test_normalise_lfdi_accepts_grouped_lower_case():
    assert (
        pki.normalise_lfdi("3e4f-45ab-31ed-fe5b-67e3-43e5-e456-2e31-984e-23e5")
        == "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
    )
