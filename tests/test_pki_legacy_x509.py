"""The legacy X.509 signer: what we produce for the MD5/SHA-1 profiles, cryptography parses
and verifies, with the TBSCertificate cryptography built (tests/test_vectors_pki.py compares
the result with ntp-keygen's certificates)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from cryptography.x509.oid import NameOID

from ntpauto.pki.legacy_x509 import (
    sign_certificate,
    sign_tbs,
    tbs_certificate,
    tbs_extensions,
)
from ntpauto.pki.profiles import DSA_SHA, DSA_SHA1, RSA_MD5, RSA_SHA1, RSA_SHA256


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    """A 1024-bit DSA key."""
    return dsa.generate_private_key(key_size=1024)


def _builder(key) -> x509.CertificateBuilder:
    """A certificate with the reference's extensions, not yet signed."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice@alice")])
    start = datetime.datetime(2026, 11, 23, 15, 28, 35, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(4004436515)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.11")]),
                       critical=False)
    )


@pytest.mark.parametrize(("profile", "hash_type"), [(RSA_MD5, hashes.MD5),
                                                    (RSA_SHA1, hashes.SHA1)])
def test_rsa_certificates_parse_and_verify_with_cryptography(profile, hash_type, rsa_key):
    """An MD5/SHA-1 certificate we sign is parsed by cryptography, has the profile's signature
    algorithm and verifies over its TBS with PKCS#1 v1.5."""
    der = sign_certificate(_builder(rsa_key), rsa_key, profile)
    cert = x509.load_der_x509_certificate(der)
    assert cert.signature_algorithm_oid.dotted_string == profile.oid
    rsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                hash_type())
    assert cert.serial_number == 4004436515


def test_only_the_signature_algorithm_differs_from_cryptographys_own(rsa_key):
    """The TBSCertificate we sign is the one cryptography signs itself for SHA-256, but for
    the signature AlgorithmIdentifier; and for RSA-SHA256 the DER route gives cryptography's
    very certificate (PKCS#1 v1.5 is deterministic)."""
    own = _builder(rsa_key).sign(rsa_key, hashes.SHA256())
    ours = x509.load_der_x509_certificate(sign_certificate(_builder(rsa_key), rsa_key,
                                                           RSA_MD5))
    md5_rsa = bytes.fromhex("300d06092a864886f70d0101040500")
    sha256_rsa = bytes.fromhex("300d06092a864886f70d01010b0500")
    assert ours.tbs_certificate_bytes == own.tbs_certificate_bytes.replace(sha256_rsa, md5_rsa)
    assert sign_tbs(tbs_certificate(_builder(rsa_key)), rsa_key, RSA_SHA256) \
        == own.public_bytes(serialization.Encoding.DER)


def test_dsa_sha_certificate_uses_the_oiw_oid(dsa_key):
    """DSA-SHA (OID 1.3.14.3.2.13, which OpenSSL 3+ cannot emit) takes the DER route; the
    result parses and verifies with SHA-1."""
    der = sign_certificate(_builder(dsa_key), dsa_key, DSA_SHA)
    cert = x509.load_der_x509_certificate(der)
    assert cert.signature_algorithm_oid.dotted_string == "1.3.14.3.2.13"
    dsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, hashes.SHA1())


def test_dsa_sha1_certificate_verifies(dsa_key):
    """A dsaWithSHA1 certificate verifies with cryptography."""
    cert = x509.load_der_x509_certificate(sign_certificate(_builder(dsa_key), dsa_key,
                                                           DSA_SHA1))
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.10040.4.3"
    dsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, hashes.SHA1())


def test_wrong_key_type_is_refused(rsa_key, dsa_key):
    """A DSA profile with an RSA key (and vice versa) raises TypeError."""
    with pytest.raises(TypeError):
        sign_certificate(_builder(rsa_key), rsa_key, DSA_SHA1)
    with pytest.raises(TypeError):
        sign_tbs(tbs_certificate(_builder(dsa_key)), dsa_key, RSA_MD5)


def test_tbs_extensions_keep_order_criticality_and_raw_value(rsa_key):
    """Extensions come back in order with their criticality and raw extnValue octets."""
    tbs = tbs_certificate(_builder(rsa_key))
    assert tbs_extensions(tbs) == (
        ("2.5.29.19", True, bytes.fromhex("30030101ff")),
        ("2.5.29.37", False, bytes.fromhex("300b06092b060105050730010b")),
    )
