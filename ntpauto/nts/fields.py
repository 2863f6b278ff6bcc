"""The NTS extension fields for NTPv4 (RFC 8915 sections 5.3-5.6) in RFC 7822 framing.

Four field types: the Unique Identifier (0x0104), the NTS Cookie (0x0204), the NTS Cookie
Placeholder (0x0304) and the NTS Authenticator and Encrypted Extension Fields (0x0404).  Each
field is a 16-bit type, a 16-bit length that counts the four header octets, and the body,
zero-padded to a multiple of four octets and to at least :data:`MIN_FIELD` octets (RFC 7822
section 3); the last field of a packet without a MAC has at least :data:`MIN_LAST_FIELD`.

The authenticator's body (section 5.6)::

    Nonce Length (16) | Ciphertext Length (16) | Nonce, padded to 4 | Ciphertext, padded to 4
    | Additional Padding (so that nonce and its padding fill at least 16 octets)

The AEAD's associated data is the packet from its first octet up to the authenticator; the
plaintext is the encrypted extension fields (the server's new cookies).

:func:`request_fields` and :func:`response_fields` read a parsed
:class:`~ntpauto.wire.packet.Packet` (NTS-framed by :func:`~ntpauto.wire.packet.parse`) and
raise :class:`NtsFieldError` for anything the protocol forbids.
"""

from __future__ import annotations

import struct

from attrs import frozen

from ntpauto.nts import aead
from ntpauto.nts.records import MAX_COOKIE
from ntpauto.wire.packet import Packet

__all__ = [
    "AUTHENTICATOR", "COOKIE", "COOKIE_PLACEHOLDER", "MAX_COOKIE", "MIN_FIELD",
    "MIN_LAST_FIELD", "MIN_UNIQUE_ID", "NONCE_LENGTH", "UNIQUE_IDENTIFIER", "Authenticator",
    "NtsFieldError", "RequestFields", "ResponseFields", "authenticator", "field",
    "inner_fields", "request_fields", "response_fields", "seal",
]

UNIQUE_IDENTIFIER = 0x0104
COOKIE = 0x0204
COOKIE_PLACEHOLDER = 0x0304
AUTHENTICATOR = 0x0404
"""Field types (RFC 8915 section 7.5)."""
MIN_FIELD = 16
"""Octets of the shortest extension field (RFC 7822 section 3)."""
MIN_LAST_FIELD = 28
"""Octets of the last field of a packet without a MAC (RFC 7822 section 3)."""
MIN_UNIQUE_ID = 32
"""Octets of the shortest unique identifier (RFC 8915 section 5.3), and what we send."""
NONCE_LENGTH = 16
"""Octets of the nonces we send; the nonce and its padding fill at least 16 (section 5.6)."""

_TL = struct.Struct("!HH")


class NtsFieldError(ValueError):
    """NTS fields the protocol does not allow (the packet is dropped and counted)."""


def _pad(body: bytes, minimum: int = 0) -> bytes:
    length = max(len(body) + -len(body) % 4, minimum)
    return body.ljust(length, b"\x00")


def field(kind: int, body: bytes) -> bytes:
    """One extension field: header, ``body`` zero-padded to four and to :data:`MIN_FIELD`."""
    body = _pad(body, MIN_FIELD - 4)
    return _TL.pack(kind, 4 + len(body)) + body


def authenticator(nonce: bytes, ciphertext: bytes, min_length: int = MIN_LAST_FIELD) -> bytes:
    """The NTS Authenticator field holding ``nonce`` and ``ciphertext`` (section 5.6), padded
    to at least ``min_length`` octets."""
    nonce_area, sealed = _pad(nonce), _pad(ciphertext)
    needed = 4 + max(len(nonce_area), NONCE_LENGTH) + len(sealed)  # additional padding
    body = _pad(_TL.pack(len(nonce), len(ciphertext)) + nonce_area + sealed,
                max(min_length - 4, needed))
    return _TL.pack(AUTHENTICATOR, 4 + len(body)) + body


def seal(packet: bytes, key: bytes, nonce: bytes, plaintext: bytes = b"",
         min_length: int = MIN_LAST_FIELD) -> bytes:
    """``packet`` with its authenticator: ``plaintext`` sealed under ``key`` with the packet
    so far as associated data."""
    return packet + authenticator(nonce, aead.encrypt(key, nonce, plaintext, packet),
                                  min_length)


@frozen
class Authenticator:
    """An authenticator field as read: where it starts, its nonce and its ciphertext."""

    offset: int
    nonce: bytes
    ciphertext: bytes

    def open(self, key: bytes, packet: bytes) -> bytes:
        """The plaintext, checked under ``key`` with ``packet`` up to this field as
        associated data; :class:`~ntpauto.nts.aead.AeadError` when it does not verify."""
        return aead.decrypt(key, self.nonce, self.ciphertext, packet[:self.offset])


def _read_authenticator(offset: int, data: bytes) -> Authenticator:
    body = data[4:]
    if len(body) < 4:
        raise NtsFieldError("authenticator without its lengths")
    nonce_length, ciphertext_length = _TL.unpack_from(body)
    padded_nonce = nonce_length + -nonce_length % 4
    padded_ciphertext = ciphertext_length + -ciphertext_length % 4
    if not nonce_length or ciphertext_length < aead.TAG_LENGTH:
        raise NtsFieldError(f"authenticator nonce of {nonce_length} or ciphertext of "
                            f"{ciphertext_length} octets")
    if 4 + max(padded_nonce, NONCE_LENGTH) + padded_ciphertext > len(body):
        raise NtsFieldError("authenticator lengths run past the field (or lack padding)")
    start = 4 + padded_nonce
    return Authenticator(offset, body[4:4 + nonce_length],
                         body[start:start + ciphertext_length])


def _walk(pkt: Packet) -> list[tuple[int, int, bytes]]:
    """(type, offset, field octets) of each field, RFC 7822 sizes checked; the
    authenticator, if any, must be the last."""
    out = []
    last = len(pkt.fields) - 1
    for index, f in enumerate(pkt.fields):
        kind = f.word >> 16
        if len(f.data) < (MIN_LAST_FIELD if index == last else MIN_FIELD):
            raise NtsFieldError(f"extension field of {len(f.data)} octets (RFC 7822)")
        if kind == AUTHENTICATOR and index != last:
            raise NtsFieldError("fields after the authenticator")
        out.append((kind, f.offset, f.data))
    return out


@frozen
class RequestFields:
    """The NTS fields of a client's request (section 5.7)."""

    unique_id: bytes
    cookie: bytes
    placeholders: int
    """Placeholders as long as the cookie (others do not count)."""
    auth: Authenticator


def request_fields(pkt: Packet) -> RequestFields:
    """Exactly one unique identifier of at least 32 octets, one cookie, and the
    authenticator last; placeholders and unknown fields may come between."""
    unique_id = cookie = auth = None
    placeholder_lengths = []
    for kind, offset, data in _walk(pkt):
        length = _TL.unpack_from(data)[1]
        body = data[4:length]
        if kind == UNIQUE_IDENTIFIER:
            if unique_id is not None:
                raise NtsFieldError("more than one unique identifier")
            unique_id = body
        elif kind == COOKIE:
            if cookie is not None:
                raise NtsFieldError("more than one cookie")
            cookie = body
        elif kind == COOKIE_PLACEHOLDER:
            placeholder_lengths.append(len(body))
        elif kind == AUTHENTICATOR:
            auth = _read_authenticator(offset, data)
    if unique_id is None or len(unique_id) < MIN_UNIQUE_ID:
        raise NtsFieldError("no unique identifier of at least 32 octets")
    if cookie is None or len(cookie) > MAX_COOKIE:
        raise NtsFieldError("no cookie" if cookie is None else "cookie too long")
    if auth is None:
        raise NtsFieldError("no authenticator")
    return RequestFields(unique_id, cookie, placeholder_lengths.count(len(cookie)), auth)


@frozen
class ResponseFields:
    """The NTS fields of a server's reply: its unique identifier and its authenticator
    (None in an NTS NAK)."""

    unique_id: bytes | None
    auth: Authenticator | None


def response_fields(pkt: Packet) -> ResponseFields:
    """At most one unique identifier and one authenticator, which comes last; cookies
    outside the authenticator are not taken (section 5.7), other fields are ignored."""
    unique_id = auth = None
    for kind, offset, data in _walk(pkt):
        if kind == UNIQUE_IDENTIFIER:
            if unique_id is not None:
                raise NtsFieldError("more than one unique identifier")
            unique_id = data[4:]
        elif kind == AUTHENTICATOR:
            auth = _read_authenticator(offset, data)
    return ResponseFields(unique_id, auth)


def inner_fields(plaintext: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of the encrypted extension fields in an authenticator's plaintext."""
    out = []
    offset = 0
    while offset < len(plaintext):
        if len(plaintext) - offset < 4:
            raise NtsFieldError("encrypted fields end in the middle of a header")
        kind, length = _TL.unpack_from(plaintext, offset)
        if length < 4 or length % 4 or offset + length > len(plaintext):
            raise NtsFieldError(f"encrypted field of length {length}")
        out.append((kind, plaintext[offset + 4:offset + length]))
        offset += length
    return out
