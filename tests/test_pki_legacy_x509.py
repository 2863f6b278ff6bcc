"""The legacy X.509 signer and the DER helpers: what we produce, cryptography parses and
verifies; pyOpenSSL and the DER route agree (see the module docstring for why both)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from cryptography.x509.oid import NameOID

from ntpauto.pki import legacy_x509
from ntpauto.pki.legacy_x509 import (
    DerError,
    decode_oid,
    der_children,
    der_integer,
    der_oid,
    der_sequence,
    read_tlv,
    resign_der,
    resign_pyopenssl,
    sign_certificate,
    tbs_extensions,
)
from ntpauto.pki.profiles import DSA_SHA, DSA_SHA1, RSA_MD5, RSA_SHA1


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    """A 1024-bit DSA key."""
    return dsa.generate_private_key(key_size=1024)


def _placeholder(key) -> x509.Certificate:
    """A SHA-256-signed certificate with the reference's extensions."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice@alice")])
    start = datetime.datetime(2026, 11, 23, 15, 28, 35, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(4004436515)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.11")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(("value", "encoded"), [
    (0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"), (256, "02020100"),
    (4004436515, "020500eeaeda23"),
])
def test_der_integer(value, encoded):
    """Minimal two's complement INTEGERs, with a leading zero when the top bit is set."""
    assert der_integer(value).hex() == encoded


def test_der_integer_refuses_negative_values():
    """Only non-negative INTEGERs are written."""
    with pytest.raises(ValueError):
        der_integer(-1)


@pytest.mark.parametrize("oid", ["1.2.840.113549.1.1.4", "1.3.14.3.2.13", "2.5.29.19",
                                 "1.3.6.1.5.5.7.48.1.11", "2.999.3"])
def test_oid_round_trip(oid):
    """OIDs encode as DER and decode back."""
    encoded = der_oid(oid)
    tag, start, end = read_tlv(encoded)
    assert tag == 0x06 and end == len(encoded)
    assert decode_oid(encoded[start:]) == oid


def test_known_oid_encoding():
    """md5WithRSAEncryption is 06 09 2a 86 48 86 f7 0d 01 01 04."""
    assert der_oid("1.2.840.113549.1.1.4").hex() == "06092a864886f70d010104"


def test_long_form_lengths_and_children():
    """Contents of 200 octets get a long-form length; children split back exactly."""
    items = [der_integer(1 << 1000), der_integer(5)]
    sequence = der_sequence(*items)
    assert sequence[:3].hex() == "3081" + f"{len(sequence) - 3:02x}"
    tag, start, end = read_tlv(sequence)
    assert der_children(sequence[start:end]) == items


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x05\x02\x01", b"\x30\x80\x00\x00",
                                  b"\x1f\x01\x00", b"\x30\x85\x01\x02\x03\x04\x05"])
def test_read_tlv_rejects_malformed_der(data):
    """Truncated data, indefinite or oversized lengths and multi-octet tags raise DerError."""
    with pytest.raises(DerError):
        read_tlv(data)


@pytest.mark.parametrize(("profile", "hash_type"), [(RSA_MD5, hashes.MD5),
                                                    (RSA_SHA1, hashes.SHA1)])
def test_rsa_certificates_parse_and_verify_with_cryptography(profile, hash_type, rsa_key):
    """An MD5/SHA-1 certificate we sign is parsed by cryptography, has the profile's signature
    algorithm and verifies over its TBS with PKCS#1 v1.5."""
    der = sign_certificate(_placeholder(rsa_key), rsa_key, profile)
    cert = x509.load_der_x509_certificate(der)
    assert cert.signature_algorithm_oid.dotted_string == profile.oid
    rsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                hash_type())
    assert cert.serial_number == 4004436515


def test_pyopenssl_can_sign_md5_on_this_build(rsa_key):
    """Pins the environment fact the module docstring states: pyOpenSSL signs X.509 with MD5
    here (OpenSSL's default provider does not refuse it)."""
    der = resign_pyopenssl(_placeholder(rsa_key), rsa_key, "md5")
    cert = x509.load_der_x509_certificate(der)
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.4"


@pytest.mark.parametrize("profile", [RSA_MD5, RSA_SHA1, DSA_SHA1], ids=lambda p: p.name)
def test_pyopenssl_and_der_routes_give_the_same_tbs(profile, rsa_key, dsa_key):
    """Both re-signing routes produce byte-identical TBSCertificates (and for RSA, whose
    PKCS#1 v1.5 signatures are deterministic, identical certificates)."""
    key = rsa_key if profile.key_type == "RSA" else dsa_key
    placeholder = _placeholder(key)
    digest = legacy_x509.PYOPENSSL_OIDS[profile.oid]
    by_openssl = x509.load_der_x509_certificate(resign_pyopenssl(placeholder, key, digest))
    by_der_bytes = resign_der(placeholder, key, profile.oid, profile.key_type,
                              profile.hash_algorithm())
    by_der = x509.load_der_x509_certificate(by_der_bytes)
    assert by_openssl.tbs_certificate_bytes == by_der.tbs_certificate_bytes
    if profile.key_type == "RSA":
        assert resign_pyopenssl(placeholder, key, digest) == by_der_bytes


def test_dsa_sha_certificate_uses_the_oiw_oid(dsa_key):
    """DSA-SHA (OID 1.3.14.3.2.13, which OpenSSL 3+ cannot emit) takes the DER route; the
    result parses and verifies with SHA-1."""
    der = sign_certificate(_placeholder(dsa_key), dsa_key, DSA_SHA)
    cert = x509.load_der_x509_certificate(der)
    assert cert.signature_algorithm_oid.dotted_string == "1.3.14.3.2.13"
    dsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, hashes.SHA1())


def test_dsa_sha1_certificate_verifies(dsa_key):
    """A dsaWithSHA1 certificate verifies with cryptography."""
    cert = x509.load_der_x509_certificate(sign_certificate(_placeholder(dsa_key), dsa_key,
                                                           DSA_SHA1))
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.10040.4.3"
    dsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, hashes.SHA1())


def test_wrong_key_type_is_refused(rsa_key, dsa_key):
    """A DSA profile with an RSA key (and vice versa) raises TypeError."""
    with pytest.raises(TypeError):
        sign_certificate(_placeholder(rsa_key), rsa_key, DSA_SHA1)
    with pytest.raises(TypeError):
        resign_der(_placeholder(dsa_key), dsa_key, RSA_MD5.oid, "RSA", hashes.MD5())


def test_tbs_extensions_keep_order_criticality_and_raw_value(rsa_key):
    """Extensions come back in order with their criticality and raw extnValue octets."""
    tbs = _placeholder(rsa_key).tbs_certificate_bytes
    assert tbs_extensions(tbs) == (
        ("2.5.29.19", True, bytes.fromhex("30030101ff")),
        ("2.5.29.37", False, bytes.fromhex("300b06092b060105050730010b")),
    )
