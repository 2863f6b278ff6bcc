"""Sign X.509 certificates with the legacy algorithms ``cryptography`` refuses, and the one
tiny DER reader/writer of ntpauto.

Why this module exists: the reference ntp-keygen signs certificates with
md5WithRSAEncryption by default (``-c RSA-MD5``), or sha1WithRSAEncryption, dsaWithSHA1 or
dsaWithSHA, and its ntpd signs certificates in the SIGN exchange with the digest of its own
certificate (interop.md 5.7, 7.3).  ``cryptography``'s ``CertificateBuilder.sign``
refuses MD5 and SHA-1 ("Hash algorithm 'md5' not supported for signatures"), although its
low-level ``private_key.sign(data, PKCS1v15(), MD5())`` still works.

How: ``cryptography`` builds the whole certificate (names, validity, key, extensions) and
signs it with SHA-256 as a placeholder; then the placeholder signature is replaced:

1. pyOpenSSL: ``X509.from_cryptography(cert).sign(pkey, "md5")``.  OpenSSL re-encodes the
   TBSCertificate with the new AlgorithmIdentifier and signs it.  Checked on this build
   (pyOpenSSL 26.4, OpenSSL 4.0 inside cryptography 50): MD5 and SHA-1 signing of X.509 still
   works with the default provider, for RSA and DSA keys.  Those pyOpenSSL X509 methods are
   deprecated (DeprecationWarning, silenced here), so
2. DER fallback: the AlgorithmIdentifier inside the TBSCertificate is replaced with the small
   DER reader/writer below, the new TBS is signed with ``cryptography``'s low-level
   ``sign()``, and Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING signature } is
   assembled.  Used for OIDs OpenSSL 3+ cannot emit (dsaWithSHA, 1.3.14.3.2.13: OpenSSL 1.0's
   EVP_dss, which hashes with SHA-1) and whenever pyOpenSSL's ``X509.sign`` is unavailable.

Both routes produce the same TBSCertificate octets (tests/test_pki_legacy_x509.py pins this,
and that ``cryptography`` parses and verifies the result).  The DER helpers are also used by
:mod:`ntpauto.pki.keyfiles` for the traditional DSA/PKCS#1 structures of identity keys
(interop.md 6.4), so that all hand-made DER lives here.
"""

from __future__ import annotations

import warnings
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

__all__ = [
    "PYOPENSSL_OIDS",
    "DerError",
    "algorithm_identifier",
    "der_bit_string",
    "der_children",
    "der_integer",
    "der_null",
    "der_octet_string",
    "der_oid",
    "der_sequence",
    "der_tlv",
    "decode_oid",
    "read_tlv",
    "replace_tbs_signature_algorithm",
    "resign_der",
    "resign_pyopenssl",
    "sign_certificate",
    "tbs_extensions",
]

OID_MD5_RSA = "1.2.840.113549.1.1.4"
OID_SHA1_RSA = "1.2.840.113549.1.1.5"
OID_DSA_SHA1 = "1.2.840.10040.4.3"

PYOPENSSL_OIDS = {OID_MD5_RSA: "md5", OID_SHA1_RSA: "sha1", OID_DSA_SHA1: "sha1"}
"""Signature OIDs OpenSSL emits itself for (key type, digest); others take the DER route."""

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_BOOLEAN = 0x01
TAG_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate


class DerError(ValueError):
    """Malformed DER (truncated, bad length, unexpected tag)."""


# --- DER writer -------------------------------------------------------------------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER TLV with a single-octet ``tag``."""
    return bytes([tag]) + _der_length(len(content)) + content


def der_integer(value: int) -> bytes:
    """DER INTEGER of a non-negative ``value`` (minimal length, leading zero when needed)."""
    if value < 0:
        raise ValueError("only non-negative INTEGERs are written")
    length = value.bit_length() // 8 + 1  # room for the sign bit
    return der_tlv(TAG_INTEGER, value.to_bytes(length, "big", signed=True))


def der_sequence(*items: bytes) -> bytes:
    """DER SEQUENCE of already encoded ``items``."""
    return der_tlv(TAG_SEQUENCE, b"".join(items))


def der_null() -> bytes:
    """DER NULL."""
    return b"\x05\x00"


def der_octet_string(data: bytes) -> bytes:
    """DER OCTET STRING."""
    return der_tlv(TAG_OCTET_STRING, data)


def der_bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    """DER BIT STRING of whole octets (``unused_bits`` in the last one)."""
    return der_tlv(TAG_BIT_STRING, bytes([unused_bits]) + data)


def der_oid(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER from dotted notation."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"bad OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der_tlv(TAG_OID, bytes(body))


# --- DER reader -------------------------------------------------------------------------


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Parse the TLV at ``offset``: returns ``(tag, content_start, end)``.

    Only single-octet tags and definite lengths (DER) are accepted."""
    if offset + 2 > len(data):
        raise DerError("truncated TLV header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-octet tags are not supported")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise DerError("indefinite or oversized length")
        if position + count > len(data):
            raise DerError("truncated length")
        length = int.from_bytes(data[position:position + count], "big")
        position += count
    end = position + length
    if end > len(data):
        raise DerError("content runs past the end of the data")
    return tag, position, end


def der_children(data: bytes) -> list[bytes]:
    """Split the content octets of a constructed value into its complete child TLVs."""
    children = []
    offset = 0
    while offset < len(data):
        _tag, _start, end = read_tlv(data, offset)
        children.append(data[offset:end])
        offset = end
    return children


def _content(tlv: bytes, expected_tag: int | None = None) -> bytes:
    tag, start, end = read_tlv(tlv)
    if end != len(tlv):
        raise DerError("trailing octets after a TLV")
    if expected_tag is not None and tag != expected_tag:
        raise DerError(f"expected tag 0x{expected_tag:02x}, found 0x{tag:02x}")
    return tlv[start:end]


def decode_oid(content: bytes) -> str:
    """Dotted notation of OBJECT IDENTIFIER content octets."""
    if not content or content[-1] & 0x80:
        raise DerError("bad OID encoding")
    arcs = []
    value = 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


# --- Certificate surgery ----------------------------------------------------------------


def algorithm_identifier(oid: str, key_type: str) -> bytes:
    """AlgorithmIdentifier as OpenSSL writes it: RSA with NULL parameters, DSA without."""
    if key_type == "RSA":
        return der_sequence(der_oid(oid), der_null())
    if key_type == "DSA":
        return der_sequence(der_oid(oid))
    raise ValueError(f"unsupported key type {key_type!r}")


def _tbs_fields(tbs: bytes) -> list[bytes]:
    fields = der_children(_content(tbs, TAG_SEQUENCE))
    if len(fields) < 6:
        raise DerError("TBSCertificate has too few fields")
    return fields


def replace_tbs_signature_algorithm(tbs: bytes, algorithm: bytes) -> bytes:
    """The TBSCertificate ``tbs`` with its ``signature`` AlgorithmIdentifier replaced."""
    fields = _tbs_fields(tbs)
    index = 2 if fields[0][0] == 0xA0 else 1  # after [0] version (if any) and serialNumber
    fields[index] = algorithm
    return der_sequence(*fields)


def tbs_extensions(tbs: bytes) -> tuple[tuple[str, bool, bytes], ...]:
    """The extensions of a TBSCertificate, in order, as ``(oid, critical, extnValue)`` with
    the raw extnValue octets (the content of the OCTET STRING, e.g. ``04 20 ...`` for a
    Subject Key Identifier)."""
    result = []
    for field in _tbs_fields(tbs):
        if field[0] != TAG_EXTENSIONS:
            continue
        for extension in der_children(_content(_content(field), TAG_SEQUENCE)):
            parts = der_children(_content(extension, TAG_SEQUENCE))
            if len(parts) not in (2, 3):
                raise DerError("bad Extension")
            oid = decode_oid(_content(parts[0], TAG_OID))
            critical = False
            if len(parts) == 3:
                flag = _content(parts[1], TAG_BOOLEAN)
                if len(flag) != 1:
                    raise DerError("bad BOOLEAN")
                critical = flag != b"\x00"
            result.append((oid, critical, _content(parts[-1], TAG_OCTET_STRING)))
    return tuple(result)


def _check_key(private_key: Any, key_type: str) -> None:
    expected = rsa.RSAPrivateKey if key_type == "RSA" else dsa.DSAPrivateKey
    if not isinstance(private_key, expected):
        raise TypeError(f"a {key_type} profile needs a {key_type} private key")


def resign_der(
    certificate: x509.Certificate,
    private_key: Any,
    oid: str,
    key_type: str,
    hash_algorithm: hashes.HashAlgorithm,
) -> bytes:
    """DER of ``certificate`` re-signed with signature algorithm ``oid`` (DER route)."""
    _check_key(private_key, key_type)
    algorithm = algorithm_identifier(oid, key_type)
    tbs = replace_tbs_signature_algorithm(certificate.tbs_certificate_bytes, algorithm)
    if key_type == "RSA":
        signature = private_key.sign(tbs, padding.PKCS1v15(), hash_algorithm)
    else:
        signature = private_key.sign(tbs, hash_algorithm)
    return der_sequence(tbs, algorithm, der_bit_string(signature))


def resign_pyopenssl(certificate: x509.Certificate, private_key: Any, digest: str) -> bytes:
    """DER of ``certificate`` re-signed by OpenSSL through pyOpenSSL with ``digest``
    ("md5" or "sha1"); raises ``RuntimeError`` when pyOpenSSL cannot do it here."""
    try:
        from OpenSSL import crypto
    except ImportError as exc:  # pragma: no cover - pyOpenSSL is a dependency
        raise RuntimeError("pyOpenSSL is not installed") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            cert = crypto.X509.from_cryptography(certificate)
            cert.sign(crypto.PKey.from_cryptography_key(private_key), digest)
            return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        except (AttributeError, ValueError, crypto.Error) as exc:
            raise RuntimeError(f"pyOpenSSL cannot sign with {digest}: {exc}") from exc


def sign_certificate(certificate: x509.Certificate, private_key: Any, profile: Any) -> bytes:
    """DER of the placeholder-signed ``certificate`` re-signed with ``profile``
    (an ISignatureProfile with ``oid``), by pyOpenSSL when OpenSSL knows the OID, else by the
    DER route."""
    _check_key(private_key, profile.key_type)
    digest = PYOPENSSL_OIDS.get(profile.oid)
    if digest is not None:
        try:
            der = resign_pyopenssl(certificate, private_key, digest)
        except RuntimeError:
            der = None
        if der is not None:
            signed = x509.load_der_x509_certificate(der)
            if signed.signature_algorithm_oid.dotted_string == profile.oid:
                return der
    return resign_der(
        certificate, private_key, profile.oid, profile.key_type, profile.hash_algorithm()
    )
