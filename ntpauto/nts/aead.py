"""The AEAD of NTS and the keys the TLS exporter gives it.

AEAD_AES_SIV_CMAC_256 (RFC 5297; IANA AEAD identifier 15) is the algorithm every NTS
implementation supports (RFC 8915 section 5.1): a 32-octet key (two AES-128 keys), a
16-octet synthetic IV that is also the tag, and a nonce of any length.  ``cryptography``'s
:class:`~cryptography.hazmat.primitives.ciphers.aead.AESSIV` does the work; the nonce is the
last associated-data component, as RFC 5297 section 3 defines the nonce-based interface.

Keys come from the TLS 1.3 exporter (RFC 5705, RFC 8446 section 7.5) of the NTS-KE
connection: label ``EXPORTER-network-time-security``, and a five-octet context of the next
protocol (0 for NTPv4), the AEAD identifier, and 0x00 for the client-to-server key or 0x01
for the server-to-client key (RFC 8915 sections 4.3 and 5.1).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from attrs import frozen
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

__all__ = [
    "AEAD_AES_SIV_CMAC_256", "AEAD_NAMES", "EXPORTER_LABEL", "KEY_LENGTHS", "NEXT_PROTOCOL_NTPV4",
    "TAG_LENGTH", "AeadError", "SessionKeys", "decrypt", "encrypt", "export_keys",
    "exporter_context",
]

AEAD_AES_SIV_CMAC_256 = 15
"""IANA AEAD identifier of AES-SIV-CMAC with a 256-bit key (RFC 5297 section 6.1)."""
KEY_LENGTHS = {AEAD_AES_SIV_CMAC_256: 32}
"""Key octets of each AEAD algorithm ntpauto implements."""
AEAD_NAMES = {AEAD_AES_SIV_CMAC_256: "AEAD_AES_SIV_CMAC_256"}
"""IANA names of the AEAD algorithms ntpauto implements."""
TAG_LENGTH = 16
"""The synthetic IV, which leads the ciphertext."""
NEXT_PROTOCOL_NTPV4 = 0
"""NTS next-protocol identifier of NTPv4 (RFC 8915 section 7.6)."""
EXPORTER_LABEL = b"EXPORTER-network-time-security"
"""The disambiguating label of the TLS exporter (RFC 8915 section 4.3)."""
C2S, S2C = 0, 1
"""Last octet of the exporter context: client-to-server, server-to-client key."""


class AeadError(ValueError):
    """The ciphertext does not authenticate under the key, nonce and associated data."""


@frozen(repr=False)
class SessionKeys:
    """The two keys of one NTS-KE exchange and their algorithm; never shown in a repr."""

    aead: int
    c2s: bytes
    s2c: bytes

    def __repr__(self) -> str:
        return f"SessionKeys(aead={self.aead}, c2s=<{len(self.c2s)} octets>, s2c=<...>)"


def exporter_context(aead: int, direction: int,
                     protocol: int = NEXT_PROTOCOL_NTPV4) -> bytes:
    """The exporter context of one key (RFC 8915 section 5.1)."""
    return struct.pack("!HHB", protocol, aead, direction)


def export_keys(export: Callable[[bytes, int, bytes], bytes], aead: int) -> SessionKeys:
    """Both keys from ``export(label, length, context)``, the TLS connection's RFC 5705
    exporter (pyOpenSSL's ``Connection.export_keying_material``)."""
    length = KEY_LENGTHS[aead]
    return SessionKeys(aead, export(EXPORTER_LABEL, length, exporter_context(aead, C2S)),
                       export(EXPORTER_LABEL, length, exporter_context(aead, S2C)))


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, *associated: bytes) -> bytes:
    """AEAD_AES_SIV_CMAC_256 of ``plaintext``: the 16-octet synthetic IV, then the
    ciphertext (RFC 5297 section 2.6).  ``associated`` are the associated-data components
    before the nonce; NTS has one, the packet up to the authenticator field (RFC 8915
    section 5.6)."""
    return AESSIV(key).encrypt(plaintext, [*associated, nonce])


def decrypt(key: bytes, nonce: bytes, ciphertext: bytes, *associated: bytes) -> bytes:
    """The plaintext of :func:`encrypt`'s output, or :class:`AeadError`."""
    if len(ciphertext) < TAG_LENGTH:
        raise AeadError(f"ciphertext of {len(ciphertext)} octets is shorter than the tag")
    try:
        return AESSIV(key).decrypt(ciphertext, [*associated, nonce])
    except InvalidTag:
        raise AeadError("the ciphertext does not authenticate") from None
