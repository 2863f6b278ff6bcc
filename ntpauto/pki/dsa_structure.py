"""The DSA "cuckoo" structures in which ntp-keygen keeps the IFF and MV parameters, read and
written without ``cryptography``'s DSA loader.

reference: interop.md 6.1, 6.3, 6.4; OpenSSL crypto/dsa/dsa_asn1.c (DSAPrivateKey),
crypto/dsa/dsa_ameth.c (dsa_priv_decode: PKCS#8, public value recomputed as g^x mod p).

The five slots hold values that are not a DSA key (IFF: p, q, g, v, b; MV client keys:
q = g = 1; :mod:`ntpauto.identity.iff`, :mod:`ntpauto.identity.mv`), and ``cryptography``
51 refuses to load such keys with no way to skip the check, so they are decoded here:

* traditional ``DSA PRIVATE KEY``: ``SEQUENCE { 0, p, q, g, pub, priv }``, plain or in
  OpenSSL's legacy PEM encryption (:mod:`ntpauto.pki.pem_encryption`);
* PKCS#8 ``PRIVATE KEY`` / ``ENCRYPTED PRIVATE KEY`` (PBES2), what the reference's
  ntp-keygen writes: ``SEQUENCE { 0, SEQUENCE { id-dsa, SEQUENCE { p, q, g } },
  OCTET STRING { INTEGER priv } }``.  There is no field for the public value: it becomes
  g^priv mod p, as OpenSSL computes it on load (so the IFF and MV public values are lost).

We write only the traditional layout, which keeps the public value and which the reference's
OpenSSL reads (encrypted: ``DEK-Info: AES-256-CBC``).
"""

from __future__ import annotations

import attrs

from ntpauto.pki import der
from ntpauto.pki.pem_encryption import decode_pem, encode_pem

__all__ = [
    "MAX_BITS",
    "TRADITIONAL_LABEL",
    "DSAStructure",
    "NotDSAStructure",
    "dump_pem",
    "load_pem",
]

TRADITIONAL_LABEL = "DSA PRIVATE KEY"
_PKCS8_LABELS = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
_ID_DSA = "1.2.840.10040.4.1"
MAX_BITS = 16384
"""Larger values are refused (OpenSSL's DSA stops at 10000 bits), so that recomputing a
PKCS#8 file's public value stays cheap whatever the file holds."""


class NotDSAStructure(Exception):
    """The PEM block decodes to a key of another algorithm (a PKCS#8 RSA key, say): the
    caller hands it to ``cryptography`` instead."""


@attrs.frozen(repr=False)
class DSAStructure:
    """The five slots of a DSA private key structure as ntp-keygen fills them:
    ``p``, ``q``, ``g`` (the domain parameters' slots), ``pub`` and ``priv`` (the public and
    private value's; ``pub`` is g^priv mod p when read from PKCS#8).  ``repr`` shows sizes,
    never values."""

    p: int
    q: int
    g: int
    pub: int
    priv: int

    def __repr__(self) -> str:
        return f"<DSAStructure p {self.p.bit_length()} bits, q {self.q.bit_length()} bits>"

    def to_der(self) -> bytes:
        """The traditional DER ``SEQUENCE { 0, p, q, g, pub, priv }``."""
        return der.encode_integers(0, self.p, self.q, self.g, self.pub, self.priv)


def _checked(values: tuple[int, ...]) -> tuple[int, ...]:
    if any(value.bit_length() > MAX_BITS for value in values):
        raise der.DerError(f"a DSA structure value longer than {MAX_BITS} bits")
    return values


def _from_traditional(data: bytes) -> DSAStructure:
    version, p, q, g, pub, priv = _checked(der.decode_integers(data, 6))
    if version != 0:
        raise der.DerError(f"DSAPrivateKey version {version}, expected 0")
    return DSAStructure(p, q, g, pub, priv)


def _from_pkcs8(data: bytes) -> DSAStructure:
    items = der.children(der.content(data, der.TAG_SEQUENCE))
    if len(items) != 3:
        raise der.DerError("PrivateKeyInfo is not {version, algorithm, key}")
    if der.decode_integer(items[0]) != 0:
        raise der.DerError("PrivateKeyInfo version is not 0")
    algorithm, params = der.decode_algorithm(items[1])
    if algorithm != _ID_DSA:
        raise NotDSAStructure(algorithm)
    if params is None:
        raise der.DerError("DSA PrivateKeyInfo without Dss-Parms")
    p, q, g = _checked(der.decode_integers(params, 3))
    (priv,) = _checked((der.decode_integer(der.content(items[2], der.TAG_OCTET_STRING)),))
    if p < 2:
        raise der.DerError("DSA p below 2")
    return DSAStructure(p, q, g, pow(g, priv, p), priv)


def load_pem(label: str, body: str, password: bytes | None) -> DSAStructure:
    """The structure in the PEM block ``label`` (``DSA PRIVATE KEY``, ``PRIVATE KEY`` or
    ``ENCRYPTED PRIVATE KEY``) whose text between the BEGIN and END lines is ``body``, decrypted
    with ``password`` when encrypted.  Raises the :class:`~ntpauto.pki.pem_encryption.PemError`
    subclasses, and :class:`NotDSAStructure` for a PKCS#8 key of another algorithm or another
    label."""
    if label == TRADITIONAL_LABEL:
        return decode_pem(label, body, password, _from_traditional)
    if label in _PKCS8_LABELS:
        return decode_pem(label, body, password, _from_pkcs8)
    raise NotDSAStructure(label)


def dump_pem(structure: DSAStructure, password: bytes | None = None) -> bytes:
    """Traditional ``DSA PRIVATE KEY`` PEM of ``structure`` (all five values kept), encrypted
    with ``password`` when given (legacy PEM, AES-256-CBC): what OpenSSL's
    PEM_write_bio_DSAPrivateKey writes."""
    return encode_pem(TRADITIONAL_LABEL, structure.to_der(), password)
