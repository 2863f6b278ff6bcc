"""Autokey extension fields: the generic codec and the Autokey-level receive checks.

RFC 5906 sections 10 and 13 (extension field format) and interop.md sections 1.2-1.6::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |R|E|  Version  |     Code      |             Length            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Association ID                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  <- short form ends here
    |                           Timestamp                           |
    |                           Filestamp                           |
    |                         Value Length                          |
    .                 Value (zero-padded to 4 octets)               .
    |                       Signature Length                        |
    .               Signature (zero-padded to 4 octets)             .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Length = 24 + pad4(V) + pad4(S) for a full field and 8 for the short form; the signature
length word is always present in a full field.  For ASSOC the filestamp slot carries the
sender's status word (:mod:`ntpauto.autokey.status`).

reference: ntpd/ntp_crypto.c crypto_send() / crypto_args() (layout and zero padding),
crypto_recv() top of loop (the receive checks of :func:`decode`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from attrs import field, frozen

from ntpauto.events import Event, FieldError
from ntpauto.wire.packet import Packet

__all__ = [
    "ASSOC", "AUTO", "CERT", "CODE_NAMES", "COOK", "CRYPTO_ERROR", "CRYPTO_RESP", "CRYPTO_VN",
    "Field", "FieldError", "GQ", "IFF", "LEAP", "MAX_FIELD_LEN", "MV", "NULL", "SHORT_LEN",
    "SIGN", "VALUE_LEN", "decode", "decode_all", "pad4", "signed_octets",
]

NULL = 0
ASSOC = 1
CERT = 2
COOK = 3
AUTO = 4
LEAP = 5
SIGN = 6
IFF = 7
GQ = 8
MV = 9

CODE_NAMES = {
    NULL: "NULL", ASSOC: "ASSOC", CERT: "CERT", COOK: "COOK", AUTO: "AUTO", LEAP: "LEAP",
    SIGN: "SIGN", IFF: "IFF", GQ: "GQ", MV: "MV",
}

CRYPTO_VN = 2
"""reference: the only Autokey version (bits 29-24 of the header word)."""
CRYPTO_RESP = 0x80000000
CRYPTO_ERROR = 0x40000000
SHORT_LEN = 8
"""Header word plus association ID: AUTO/LEAP requests, error and "nothing" responses."""
VALUE_LEN = 24
"""reference: VALUE_LEN, a full field with empty value and signature."""
MAX_FIELD_LEN = 0xFFFF

_WORDS2 = struct.Struct("!II")
_HEAD = struct.Struct("!IIIII")
_WORD = struct.Struct("!I")
_STAMPS = struct.Struct("!III")


def pad4(n: int) -> int:
    """``n`` rounded up to a multiple of 4."""
    return (n + 3) & ~3


def _u32(_instance: object, attribute: object, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{getattr(attribute, 'name', '?')}={value} is not a 32-bit word")


@frozen(kw_only=True)
class Field:
    """One Autokey extension field (a value object: build it, :meth:`encode` it).

    ``short`` selects the 8-octet form (header word and association ID only); it then must
    carry no stamps, value or signature.
    """

    code: int = field()
    response: bool = False
    error: bool = False
    version: int = CRYPTO_VN
    associd: int = field(default=0, validator=_u32)
    timestamp: int = field(default=0, validator=_u32)
    filestamp: int = field(default=0, validator=_u32)
    value: bytes = b""
    signature: bytes = b""
    short: bool = False

    @code.validator
    def _check_code(self, _attribute: object, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"field code {value} does not fit in 8 bits")

    @property
    def name(self) -> str:
        """The message name (``"COOK"``), or ``"code<N>"`` for an unknown code."""
        return CODE_NAMES.get(self.code, f"code{self.code}")

    @property
    def length(self) -> int:
        """The Length word: the octets :meth:`encode` produces."""
        if self.short:
            return SHORT_LEN
        return VALUE_LEN + pad4(len(self.value)) + pad4(len(self.signature))

    @property
    def opcode(self) -> int:
        """The upper half of the header word with R and E (e.g. ``0x8203`` for a COOK
        response), as the reference's cryptostats print it."""
        return self.word >> 16

    @property
    def word(self) -> int:
        """The first 32-bit word: R, E, version, code and Length."""
        return ((CRYPTO_RESP if self.response else 0) | (CRYPTO_ERROR if self.error else 0)
                | (self.version & 0x3F) << 24 | self.code << 16 | self.length)

    def encode(self) -> bytes:
        """The field's octets exactly as the reference lays them out (zero padding)."""
        if not 0 <= self.version <= 0x3F:
            raise ValueError(f"version {self.version} does not fit in 6 bits")
        if self.short:
            if self.timestamp or self.filestamp or self.value or self.signature:
                raise ValueError("a short (8-octet) field carries no stamps, value or signature")
            return _WORDS2.pack(self.word, self.associd)
        length = self.length
        if length > MAX_FIELD_LEN:
            raise ValueError(f"field of {length} octets does not fit the 16-bit Length")
        vlen, slen = len(self.value), len(self.signature)
        return b"".join((
            _HEAD.pack(self.word, self.associd, self.timestamp, self.filestamp, vlen),
            self.value, bytes(pad4(vlen) - vlen),
            _WORD.pack(slen),
            self.signature, bytes(pad4(slen) - slen),
        ))

    @classmethod
    def short_form(cls, code: int, associd: int, *, response: bool = False,
                   error: bool = False) -> Field:
        """An 8-octet field: AUTO/LEAP request, error response or empty response."""
        return cls(code=code, associd=associd, response=response, error=error, short=True)


def signed_octets(f: Field) -> bytes:
    """What a field's signature covers: timestamp, filestamp, value length and the value,
    without value padding (interop.md section 5, "General")."""
    return _STAMPS.pack(f.timestamp, f.filestamp, len(f.value)) + f.value


def decode(data: bytes, offset: int | None = None) -> Field:
    """Decode one field (``data`` starts at its header word; octets past Length are ignored),
    applying the reference's Autokey-level receive checks in its order:

    * Length > available octets -> ``Event.LEN`` (reference: "possible attack");
    * Length >= 24: value length V = 0 or V > Length - 24 -> ``Event.LEN`` (for every field of
      24 octets or more, requests included);
    * Length >= 24: the signature length word must be present and the signature must fit
      -> ``Event.LEN``;
    * version != 2 or Length < 8 -> ``Event.ERR`` (the reference treats the field as if its
      E bit were set, which is a protocol error).

    A field of 8 to 23 octets decodes as the short form (anything after the association ID
    is ignored, as the reference does).  The E bit itself is returned in :attr:`Field.error`
    for the message layer to act on.  ``offset`` is only reported in the :class:`FieldError`.
    """
    if len(data) < 4:
        raise FieldError(Event.LEN, f"{len(data)} octets cannot hold a field header", offset)
    (word,) = _WORD.unpack_from(data)
    length = word & 0xFFFF
    version = (word >> 24) & 0x3F
    malformed = version != CRYPTO_VN or length < SHORT_LEN
    if length > len(data):
        raise FieldError(Event.LEN, f"Length {length} exceeds the {len(data)} octets left",
                         offset)
    code = (word >> 16) & 0xFF
    response = bool(word & CRYPTO_RESP)
    error = bool(word & CRYPTO_ERROR)
    if length < VALUE_LEN:
        if malformed:
            raise FieldError(Event.ERR, f"version {version}, Length {length}", offset)
        (associd,) = _WORD.unpack_from(data, 4)
        return Field(code=code, response=response, error=error, associd=associd, short=True)
    _, associd, timestamp, filestamp, vlen = _HEAD.unpack_from(data)
    if vlen == 0 or vlen > length - VALUE_LEN:
        raise FieldError(Event.LEN, f"value length {vlen} in a field of {length}", offset)
    sig_at = 20 + pad4(vlen)
    if sig_at + 4 > length:
        raise FieldError(Event.LEN, f"no signature length word in a field of {length}", offset)
    (slen,) = _WORD.unpack_from(data, sig_at)
    if sig_at + 4 + pad4(slen) > length:
        raise FieldError(Event.LEN, f"signature length {slen} in a field of {length}", offset)
    if malformed:
        raise FieldError(Event.ERR, f"version {version}", offset)
    return Field(
        code=code, response=response, error=error, associd=associd, timestamp=timestamp,
        filestamp=filestamp, value=bytes(data[20:20 + vlen]),
        signature=bytes(data[sig_at + 4:sig_at + 4 + slen]),
    )


def decode_all(packet: Packet | Iterable[tuple[int, bytes]]) -> list[Field]:
    """Decode every extension field of a parsed packet (``Packet.fields``), stopping at the
    first that fails, as the reference's scan does (raises :class:`FieldError`)."""
    items = packet.fields if isinstance(packet, Packet) else packet
    return [decode(data, offset) for offset, data in items]
