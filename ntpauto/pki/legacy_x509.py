"""Sign X.509 certificates with the legacy algorithms ``cryptography`` refuses, and read the
raw extensions of a TBSCertificate.

Why this module exists: the reference ntp-keygen signs certificates with
md5WithRSAEncryption by default (``-c RSA-MD5``), or sha1WithRSAEncryption, dsaWithSHA1 or
dsaWithSHA, and its ntpd signs certificates in the SIGN exchange with the digest of its own
certificate (interop.md 5.7, 7.3).  ``cryptography``'s ``CertificateBuilder.sign``
refuses MD5 and SHA-1 ("Hash algorithm 'md5' not supported for signatures"), although its
low-level ``private_key.sign(data, PKCS1v15(), MD5())`` still works.

How (one route for every legacy profile): ``cryptography`` builds the TBSCertificate (names,
validity, key, extensions) and signs it with a throwaway Ed25519 key, a signature that is
discarded (:func:`tbs_certificate`); the AlgorithmIdentifier inside the TBSCertificate is
replaced by the profile's, the new TBS is signed with the issuer's key by ``cryptography``'s
low-level ``sign()`` and Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING signature } is
assembled with :mod:`ntpauto.pki.der` (:func:`sign_tbs`).  No pyOpenSSL: its ``X509.sign``
is deprecated, and OpenSSL 3 cannot emit dsaWithSHA (1.3.14.3.2.13) at all.

tests/test_vectors_pki.py pins the result against ntp-keygen's certificates (byte for byte
for RSA, whose PKCS#1 v1.5 signatures are deterministic; the same TBSCertificate for DSA);
tests/test_pki_legacy_x509.py that ``cryptography`` parses and verifies it.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, padding, rsa

from ntpauto.pki import der

__all__ = [
    "algorithm_identifier",
    "replace_tbs_signature_algorithm",
    "sign_certificate",
    "sign_tbs",
    "tbs_certificate",
    "tbs_extensions",
]

TAG_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate


def algorithm_identifier(oid: str, key_type: str) -> bytes:
    """AlgorithmIdentifier as OpenSSL writes it: RSA with NULL parameters, DSA without."""
    if key_type == "RSA":
        return der.sequence(der.oid(oid), der.null())
    if key_type == "DSA":
        return der.sequence(der.oid(oid))
    raise ValueError(f"unsupported key type {key_type!r}")


def _tbs_fields(tbs: bytes) -> list[bytes]:
    fields = der.children(der.content(tbs, der.TAG_SEQUENCE))
    if len(fields) < 6:
        raise der.DerError("TBSCertificate has too few fields")
    return fields


def replace_tbs_signature_algorithm(tbs: bytes, algorithm: bytes) -> bytes:
    """The TBSCertificate ``tbs`` with its ``signature`` AlgorithmIdentifier replaced."""
    fields = _tbs_fields(tbs)
    index = 2 if fields[0][0] == 0xA0 else 1  # after [0] version (if any) and serialNumber
    fields[index] = algorithm
    return der.sequence(*fields)


def tbs_extensions(tbs: bytes) -> tuple[tuple[str, bool, bytes], ...]:
    """The extensions of a TBSCertificate, in order, as ``(oid, critical, extnValue)`` with
    the raw extnValue octets (the content of the OCTET STRING, e.g. ``04 20 ...`` for a
    Subject Key Identifier)."""
    result = []
    for field in _tbs_fields(tbs):
        if field[0] != TAG_EXTENSIONS:
            continue
        for extension in der.children(der.content(der.content(field), der.TAG_SEQUENCE)):
            parts = der.children(der.content(extension, der.TAG_SEQUENCE))
            if len(parts) not in (2, 3):
                raise der.DerError("bad Extension")
            oid = der.decode_oid(der.content(parts[0], der.TAG_OID))
            critical = False
            if len(parts) == 3:
                flag = der.content(parts[1], der.TAG_BOOLEAN)
                if len(flag) != 1:
                    raise der.DerError("bad BOOLEAN")
                critical = flag != b"\x00"
            result.append((oid, critical, der.content(parts[-1], der.TAG_OCTET_STRING)))
    return tuple(result)


@functools.cache
def _throwaway_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def tbs_certificate(builder: x509.CertificateBuilder) -> bytes:
    """The TBSCertificate ``cryptography`` makes of ``builder`` (its signature
    AlgorithmIdentifier is Ed25519's until :func:`sign_tbs` replaces it)."""
    return builder.sign(_throwaway_key(), None).tbs_certificate_bytes


def sign_tbs(tbs: bytes, private_key: Any, profile: Any) -> bytes:
    """DER of the certificate ``tbs`` signed by ``private_key`` with ``profile`` (an
    ISignatureProfile: ``oid``, ``key_type``, ``hash_algorithm()``), whatever the TBS's own
    AlgorithmIdentifier said; ``TypeError`` for a key of the wrong type."""
    expected = rsa.RSAPrivateKey if profile.key_type == "RSA" else dsa.DSAPrivateKey
    if not isinstance(private_key, expected):
        raise TypeError(f"a {profile.key_type} profile needs a {profile.key_type} private key")
    algorithm = algorithm_identifier(profile.oid, profile.key_type)
    tbs = replace_tbs_signature_algorithm(tbs, algorithm)
    if profile.key_type == "RSA":
        signature = private_key.sign(tbs, padding.PKCS1v15(), profile.hash_algorithm())
    else:
        signature = private_key.sign(tbs, profile.hash_algorithm())
    return der.sequence(tbs, algorithm, der.bit_string(signature))


def sign_certificate(builder: x509.CertificateBuilder, private_key: Any, profile: Any) -> bytes:
    """DER of the certificate ``builder`` describes, signed by ``private_key`` with
    ``profile`` (MD5 and SHA-1 included)."""
    return sign_tbs(tbs_certificate(builder), private_key, profile)
