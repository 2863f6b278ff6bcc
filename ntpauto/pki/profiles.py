"""Signature profiles: how Autokey values and certificates are signed (RFC 5906 section 6,
interop.md sections 2 and 5.9).

A profile pairs a key type with a digest, named as ntp-keygen's ``-c`` names it
(``RSA-MD5``, the reference default) and identified on the wire by the OpenSSL NID of the
certificate's signature algorithm (high half of the status word).

* RSA: RSASSA-PKCS1-v1_5 with the profile's digest; the signature is as long as the modulus.
* DSA: DER ``SEQUENCE { r, s }``.  The reference insists that a received signature be exactly
  the maximum DER length for the key (48 octets for a 160-bit q), so :meth:`DSAProfile.sign`
  draws signatures until one has that length; :meth:`DSAProfile.verify` accepts any valid
  length (the length rule belongs to the receive checks).

Built in: RSA-MD5 (NID 8), RSA-SHA1 (65), RSA-SHA224/256/384/512 (671, 668, 669, 670),
DSA-SHA1 (113) and DSA-SHA (66; OpenSSL 1.0's EVP_dss, which hashes with SHA-1 although its
OID 1.3.14.3.2.13 names SHA).  Not provided, because this build cannot compute the digest:
RSA-SHA (NID 42, SHA-0), RSA-MD2 (7), RSA-MDC2 (96) and RSA-RIPEMD160 (119: hashlib has
RIPEMD-160 here but ``cryptography`` 50 has no RIPEMD160 hash to sign with).

The built-in profiles are ``twisted.plugin`` plugins (``ntpauto/plugins/ntpauto_profiles.py``);
:func:`get_profile` and :func:`all_profiles` find them, and third-party ones, with
``getPlugins(ISignatureProfile, ntpauto.plugins)``.

reference: ntpd/ntp_crypto.c crypto_sign-like code paths (EVP_SignFinal / EVP_VerifyFinal,
``EVP_PKEY_size`` for the length check), util/ntp-keygen.c ``-c``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.interfaces import ISignatureProfile

__all__ = [
    "BUILTIN_PROFILES",
    "DSA_SHA",
    "DSA_SHA1",
    "RSA_MD5",
    "RSA_SHA1",
    "RSA_SHA224",
    "RSA_SHA256",
    "RSA_SHA384",
    "RSA_SHA512",
    "SIGNATURE_ALGORITHMS",
    "DSAProfile",
    "RSAProfile",
    "UnsupportedProfile",
    "all_profiles",
    "digest_for_nid",
    "dsa_max_signature_size",
    "get_profile",
    "profile_for_certificate",
    "profile_for_oid",
]

MAX_DSA_DRAWS = 1024
"""Signatures drawn before giving up on a maximum-length DSA signature (each draw succeeds
with probability about 1/4, so failure is practically impossible)."""

SIGNATURE_ALGORITHMS: dict[str, tuple[int, str, str]] = {
    "1.2.840.113549.1.1.2": (7, "RSA-MD2", "md2WithRSAEncryption"),
    "1.2.840.113549.1.1.4": (8, "RSA-MD5", "md5WithRSAEncryption"),
    "1.3.14.3.2.15": (42, "RSA-SHA", "shaWithRSAEncryption"),
    "1.2.840.113549.1.1.5": (65, "RSA-SHA1", "sha1WithRSAEncryption"),
    "1.3.14.3.2.13": (66, "DSA-SHA", "dsaWithSHA"),
    "1.3.14.3.2.27": (70, "DSA-SHA1-old", "dsaWithSHA1-old"),
    "2.5.8.3.100": (96, "RSA-MDC2", "mdc2WithRSA"),
    "1.2.840.10040.4.3": (113, "DSA-SHA1", "dsaWithSHA1"),
    "1.3.14.3.2.29": (115, "RSA-SHA1-2", "sha1WithRSA"),
    "1.3.36.3.3.1.2": (119, "RSA-RIPEMD160", "ripemd160WithRSA"),
    "1.2.840.113549.1.1.11": (668, "RSA-SHA256", "sha256WithRSAEncryption"),
    "1.2.840.113549.1.1.12": (669, "RSA-SHA384", "sha384WithRSAEncryption"),
    "1.2.840.113549.1.1.13": (670, "RSA-SHA512", "sha512WithRSAEncryption"),
    "1.2.840.113549.1.1.14": (671, "RSA-SHA224", "sha224WithRSAEncryption"),
}
"""Signature-algorithm OID -> (OpenSSL NID, short name, long name), including algorithms this
build cannot verify, so that certificates using them still parse and report their NID."""

_DIGEST_NIDS = {4: "md5", 64: "sha1", 672: "sha256", 673: "sha384", 674: "sha512", 675: "sha224"}
"""Plain digest NIDs, which ``EVP_get_digestbynid`` also resolves."""


class UnsupportedProfile(ValueError):
    """No signature profile matches the name, NID or OID asked for."""


@attrs.frozen
class _Profile:
    name: str
    nid: int
    digest_name: str
    signature_name: str
    oid: str
    _hash_factory: type[hashes.HashAlgorithm] = attrs.field(repr=False)

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` HashAlgorithm instance for this profile."""
        return self._hash_factory()

    def verify(self, public_key: Any, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies with ``public_key`` (a public or
        private key of the profile's type); False for any other key or signature."""
        if hasattr(public_key, "public_key"):
            public_key = public_key.public_key()
        try:
            self._verify(public_key, bytes(signature), bytes(data))
        except (InvalidSignature, TypeError, ValueError):
            return False
        return True

    def _verify(self, public_key: Any, signature: bytes, data: bytes) -> None:
        raise NotImplementedError


@implementer(ISignatureProfile, IPlugin)
@attrs.frozen
class RSAProfile(_Profile):
    """RSASSA-PKCS1-v1_5 with the profile's digest."""

    key_type = "RSA"

    def sign(self, private_key: Any, data: bytes) -> bytes:
        """PKCS#1 v1.5 signature of ``data``; as long as the modulus."""
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError(f"{self.name} signs with an RSA private key")
        return private_key.sign(bytes(data), padding.PKCS1v15(), self.hash_algorithm())

    def _verify(self, public_key: Any, signature: bytes, data: bytes) -> None:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise TypeError("not an RSA key")
        public_key.verify(signature, data, padding.PKCS1v15(), self.hash_algorithm())

    def max_signature_size(self, public_key: Any) -> int:
        """Modulus octets (OpenSSL ``EVP_PKEY_size``)."""
        if not isinstance(public_key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
            raise TypeError(f"{self.name} needs an RSA key")
        return (public_key.key_size + 7) // 8


def dsa_signing_odds(q: int) -> float:
    """Chance that one DSA signature has the maximum DER length: both r and s (uniform below
    q) need their top bit, i.e. must reach 2**(|q|-1).  Near 1/4 for q close to 2**|q|, near
    zero for q just above 2**(|q|-1); our key generation keeps q in the upper quarter."""
    half = 1 << (q.bit_length() - 1)
    return ((q - half) / q) ** 2


def dsa_max_signature_size(q_bits: int) -> int:
    """OpenSSL's ``DSA_size``: DER length of ``SEQUENCE { r, s }`` with both INTEGERs at
    their longest (|q| octets plus a sign octet); 48 for a 160-bit q."""

    def tlv(length: int) -> int:
        if length < 0x80:
            return 2 + length
        return 2 + (length.bit_length() + 7) // 8 + length

    integer = tlv((q_bits + 7) // 8 + 1)
    return tlv(2 * integer)


@implementer(ISignatureProfile, IPlugin)
@attrs.frozen
class DSAProfile(_Profile):
    """DSA with the profile's digest; signatures drawn at the maximum DER length."""

    key_type = "DSA"

    def sign(self, private_key: Any, data: bytes) -> bytes:
        """DER signature of ``data`` whose length is :meth:`max_signature_size` (interop.md
        5.9: shorter ones are refused by the reference as "bad signature length")."""
        if not isinstance(private_key, dsa.DSAPrivateKey):
            raise TypeError(f"{self.name} signs with a DSA private key")
        wanted = self.max_signature_size(private_key)
        longest = b""
        for _ in range(MAX_DSA_DRAWS):
            signature = private_key.sign(bytes(data), self.hash_algorithm())
            if len(signature) == wanted:
                return signature
            if len(signature) > len(longest):
                longest = signature
        # A q just above a power of two makes full-length signatures rare (see
        # dsa_signing_odds); the best valid signature is still better than none.
        return longest

    def _verify(self, public_key: Any, signature: bytes, data: bytes) -> None:
        if not isinstance(public_key, dsa.DSAPublicKey):
            raise TypeError("not a DSA key")
        public_key.verify(signature, data, self.hash_algorithm())

    def max_signature_size(self, public_key: Any) -> int:
        """Maximum DER signature length for the key's q (OpenSSL ``DSA_size``)."""
        if not isinstance(public_key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
            raise TypeError(f"{self.name} needs a DSA key")
        return dsa_max_signature_size(public_key.parameters().parameter_numbers().q.bit_length())


def _rsa(name: str, oid: str, digest: str, factory: type[hashes.HashAlgorithm]) -> RSAProfile:
    nid, _short, long_name = SIGNATURE_ALGORITHMS[oid]
    return RSAProfile(name, nid, digest, long_name, oid, factory)


RSA_MD5 = _rsa("RSA-MD5", "1.2.840.113549.1.1.4", "md5", hashes.MD5)
RSA_SHA1 = _rsa("RSA-SHA1", "1.2.840.113549.1.1.5", "sha1", hashes.SHA1)
RSA_SHA224 = _rsa("RSA-SHA224", "1.2.840.113549.1.1.14", "sha224", hashes.SHA224)
RSA_SHA256 = _rsa("RSA-SHA256", "1.2.840.113549.1.1.11", "sha256", hashes.SHA256)
RSA_SHA384 = _rsa("RSA-SHA384", "1.2.840.113549.1.1.12", "sha384", hashes.SHA384)
RSA_SHA512 = _rsa("RSA-SHA512", "1.2.840.113549.1.1.13", "sha512", hashes.SHA512)
DSA_SHA1 = DSAProfile("DSA-SHA1", 113, "sha1", "dsaWithSHA1", "1.2.840.10040.4.3", hashes.SHA1)
DSA_SHA = DSAProfile("DSA-SHA", 66, "sha1", "dsaWithSHA", "1.3.14.3.2.13", hashes.SHA1)

BUILTIN_PROFILES: tuple[RSAProfile | DSAProfile, ...] = (
    RSA_MD5, RSA_SHA1, RSA_SHA224, RSA_SHA256, RSA_SHA384, RSA_SHA512, DSA_SHA1, DSA_SHA,
)
"""The profiles ``ntpauto/plugins/ntpauto_profiles.py`` registers."""


_discovered: tuple[Any, ...] | None = None


def all_profiles(refresh: bool = False) -> tuple[Any, ...]:
    """Every ISignatureProfile plugin in ``ntpauto.plugins`` (built-ins and third-party),
    first one per name and per NID wins, in discovery order.  Discovered once and remembered;
    ``refresh=True`` searches again (after installing a plugin at run time)."""
    global _discovered
    if _discovered is not None and not refresh:
        return _discovered
    from twisted.plugin import getPlugins

    import ntpauto.plugins

    found: list[Any] = []
    names: set[str] = set()
    nids: set[int] = set()
    for profile in getPlugins(ISignatureProfile, ntpauto.plugins):
        if profile.name.upper() in names or profile.nid in nids:
            continue
        names.add(profile.name.upper())
        nids.add(profile.nid)
        found.append(profile)
    _discovered = tuple(found)
    return _discovered


def _match(profiles: Iterable[Any], key: str | int) -> Any | None:
    for profile in profiles:
        if isinstance(key, int):
            if profile.nid == key:
                return profile
        elif key.upper() in (profile.name.upper(), profile.signature_name.upper()) or (
            key == getattr(profile, "oid", None)
        ):
            return profile
    return None


def get_profile(name_or_nid: str | int) -> Any:
    """The profile named ``name_or_nid`` (``-c`` name such as ``RSA-MD5``, case-insensitive,
    or the OpenSSL long name, or the dotted OID) or with that NID; ``UnsupportedProfile``
    when none is registered."""
    key: str | int = name_or_nid
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    profile = _match(all_profiles(), key)
    if profile is None:
        known = ", ".join(p.name for p in all_profiles())
        raise UnsupportedProfile(f"unsupported signature scheme {name_or_nid!r} (known: {known})")
    return profile


def profile_for_oid(oid: str) -> Any:
    """The profile for a signature-algorithm OID; ``UnsupportedProfile`` when none."""
    entry = SIGNATURE_ALGORITHMS.get(oid)
    profile = _match(all_profiles(), entry[0]) if entry else None
    if profile is None:
        profile = _match(all_profiles(), oid)
    if profile is None:
        name = entry[2] if entry else oid
        raise UnsupportedProfile(f"unsupported certificate signature algorithm {name}")
    return profile


def profile_for_certificate(cert: Any) -> Any:
    """The profile that signed ``cert``: a ``cryptography`` Certificate, or any object with a
    ``signature_oid`` attribute (such as :class:`ntpauto.pki.certificates.CertInfo`)."""
    oid = getattr(cert, "signature_oid", None)
    if oid is None:
        oid = cert.signature_algorithm_oid.dotted_string
    return profile_for_oid(oid)


def digest_for_nid(nid: int) -> str | None:
    """Digest name ('md5', 'sha1', ...) a signature NID (as in the high half of a status
    word) selects, or ``None`` when no registered profile can verify with it (the reference's
    "unsupported digest").  Plain digest NIDs (4 = md5, 64 = sha1, ...) resolve too, as they
    do with OpenSSL's ``EVP_get_digestbynid``."""
    profile = _match(all_profiles(), nid)
    if profile is not None:
        return profile.digest_name
    return _DIGEST_NIDS.get(nid)
