"""Codecs for the value part of the Autokey messages whose value is not a certificate or an
identity-scheme structure: ASSOC host name, AUTO values, LEAP values, COOK request (public
key) and COOK response (encrypted cookie).

RFC 5906 sections 10.2-10.6 (message formats) and interop.md sections 4.2, 4.3, 5.1,
5.4 and 5.5.  Decoders raise :class:`~ntpauto.events.FieldError` with the event the
reference reports.

reference: ntpd/ntp_crypto.c crypto_xmit() / crypto_recv() (ASSOC, AUTO, LEAP, COOK cases),
crypto_setup() (``i2d_PublicKey``: PKCS#1 RSAPublicKey, not SubjectPublicKeyInfo),
crypto_encrypt() and the COOK response case of crypto_recv() (``RSA_PKCS1_OAEP_PADDING``:
OAEP with SHA-1 and MGF1-SHA-1, empty label).
"""

from __future__ import annotations

import struct

from attrs import frozen
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ntpauto.events import Event, FieldError

MAX_HOSTNAME = 512
"""reference: MAXHOSTNAME, the longest ASSOC name accepted (and CERT name served)."""
AUTO_VALUE_LEN = 8
LEAP_VALUE_LEN = 12
COOKIE_LEN = 4

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(),
                    label=None)
"""OpenSSL's ``RSA_PKCS1_OAEP_PADDING``: RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label."""

_AUTO = struct.Struct("!Ii")
_LEAP = struct.Struct("!III")
_COOKIE = struct.Struct("!I")


# ASSOC -------------------------------------------------------------------------------------

def encode_assoc_name(name: str) -> bytes:
    """The ASSOC value: the host name (certificate subject CN, e.g. ``"alice@group"``) in
    ASCII with no terminating NUL."""
    value = name.encode("ascii")
    if not 1 <= len(value) <= MAX_HOSTNAME:
        raise ValueError(f"host name of {len(value)} octets is outside 1..{MAX_HOSTNAME}")
    return value


def decode_assoc_name(value: bytes) -> str:
    """The peer host name from an ASSOC value: 1..512 octets of ASCII (``Event.LEN``)."""
    if not 1 <= len(value) <= MAX_HOSTNAME:
        raise FieldError(Event.LEN, f"ASSOC name of {len(value)} octets")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FieldError(Event.LEN, "ASSOC name is not ASCII") from exc


# AUTO --------------------------------------------------------------------------------------

@frozen
class AutoValue:
    """Autokey values: the final key ID of a key list and its last index N.

    On the wire the key ID comes first, then N (reference: ``struct autokey {key, seq}``).
    N is a signed 32-bit integer in the reference (``int32 seq``).
    """

    keyid: int
    seq: int

    def encode(self) -> bytes:
        """The 8-octet AUTO response value."""
        return _AUTO.pack(self.keyid, self.seq)

    @classmethod
    def decode(cls, value: bytes) -> AutoValue:
        """Parse an AUTO response value; it must be exactly 8 octets (``Event.LEN``)."""
        if len(value) != AUTO_VALUE_LEN:
            raise FieldError(Event.LEN, f"AUTO value of {len(value)} octets, not 8")
        return cls(*_AUTO.unpack(value))


# LEAP --------------------------------------------------------------------------------------

@frozen
class LeapValue:
    """Leapsecond values: TAI-UTC offset, NTP seconds of the current leap era's start, and
    the expiration (NTP seconds).  All zero when the sender has no usable table."""

    tai_offset: int
    era_start: int
    expire: int

    def encode(self) -> bytes:
        """The 12-octet LEAP response value."""
        return _LEAP.pack(self.tai_offset, self.era_start, self.expire)

    @classmethod
    def decode(cls, value: bytes) -> LeapValue:
        """Parse a LEAP response value; it must be exactly 12 octets (``Event.LEN``; the
        reference silently ignores such a response)."""
        if len(value) != LEAP_VALUE_LEN:
            raise FieldError(Event.LEN, f"LEAP value of {len(value)} octets, not 12")
        return cls(*_LEAP.unpack(value))


# COOK request: the requester's RSA host public key ---------------------------------------

def encode_public_key(public_key: rsa.RSAPublicKey) -> bytes:
    """The COOK request value: PKCS#1 RSAPublicKey DER (SEQUENCE {n, e})."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TypeError("the Autokey host key must be RSA")
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.PKCS1)


def decode_public_key(value: bytes) -> rsa.RSAPublicKey:
    """Parse a COOK request value as a PKCS#1 RSAPublicKey (``Event.PUB`` otherwise;
    SubjectPublicKeyInfo and non-RSA keys are refused, as ``d2i_PublicKey(EVP_PKEY_RSA)``
    does)."""
    try:
        key = serialization.load_der_public_key(value)
    except (ValueError, TypeError) as exc:
        raise FieldError(Event.PUB, "COOK value is not a DER public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise FieldError(Event.PUB, "COOK value is not an RSA key")
    if encode_public_key(key) != value:
        raise FieldError(Event.PUB, "COOK value is not a PKCS#1 RSAPublicKey")
    return key


def modulus_octets(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> int:
    """Octets of the RSA modulus (the reference's ``EVP_PKEY_size``)."""
    return (key.key_size + 7) // 8


# COOK response: the cookie encrypted to the requester's host key -------------------------

def encrypt_cookie(cookie: int, public_key: rsa.RSAPublicKey) -> bytes:
    """The COOK response value: the 32-bit cookie, big-endian, RSA-OAEP encrypted to the
    requester's host key (ciphertext length = modulus octets)."""
    return public_key.encrypt(_COOKIE.pack(cookie), OAEP)


def decrypt_cookie(ciphertext: bytes, private_key: rsa.RSAPrivateKey) -> int:
    """Recover the cookie from a COOK response value with our host key.

    ``Event.CKY`` when the value length differs from our modulus size, decryption fails, or
    the plaintext is not exactly 4 octets.
    """
    size = modulus_octets(private_key)
    if len(ciphertext) != size:
        raise FieldError(Event.CKY, f"COOK value of {len(ciphertext)} octets, modulus {size}")
    try:
        plain = private_key.decrypt(ciphertext, OAEP)
    except ValueError as exc:
        raise FieldError(Event.CKY, "COOK value does not decrypt") from exc
    if len(plain) != COOKIE_LEN:
        raise FieldError(Event.CKY, f"decrypted cookie of {len(plain)} octets, not 4")
    return _COOKIE.unpack(plain)[0]
