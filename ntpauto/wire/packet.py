"""The NTP packet: header codec, extension-field framing and MAC detection.

RFC 5905 section 7.3 (header) and interop.md section 1.2 (how the reference separates
extension fields from the MAC)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |LI | VN  |Mode |    Stratum     |     Poll      |  Precision   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Root Delay                            |
    |                         Root Dispersion                       |
    |                          Reference ID                         |
    |                     Reference Timestamp (64)                  |
    |                      Origin Timestamp (64)                    |
    |                      Receive Timestamp (64)                   |
    |                      Transmit Timestamp (64)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .                    Extension Field(s) (optional)              .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                          Key Identifier                       |
    |                        Digest (128 or 160)                    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The parser is pure: ``parse(bytes) -> Packet`` or :class:`MalformedPacket` with the reason
(the counter name the engine increments).  It knows two framings: Autokey's (at most
:data:`MAX_FIELDS` fields, then maybe a MAC) and NTS's (RFC 8915 section 5, RFC 7822: at
most :data:`NTS_MAX_FIELDS` fields and no MAC), told apart by the field types
(:data:`NTS_ONLY_TYPES` among the first two fields and no MAC make a packet NTS-framed,
:attr:`Packet.nts`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER_LEN = 48
MAX_PACKET = 48 + 2048 + 24
"""reference: the receive buffer; anything longer is dropped whole."""
MAX_EXTENSION_END = MAX_PACKET - 24
MAX_FIELDS = 2
"""Extension fields an Autokey (or unknown) packet may carry; a packet with more is dropped
(counter ``toomanyfields``) before the next is framed.  Autokey never sends more: the
reference builds at most the response to the peer's queued request and one request of its
own (interop.md 8.1, confirmed in every capture), and ntpauto's associations follow the same
rule.  Without the cap a 2120-octet datagram could frame 500 four-octet fields."""
NTS_MAX_FIELDS = 10
"""Extension fields an NTS packet may carry: the unique identifier, the cookie, at most seven
cookie placeholders (a client asks for eight cookies at most, RFC 8915 section 5.7) and the
authenticator."""
NTS_ONLY_TYPES = frozenset({0x0104, 0x0304, 0x0404})
"""Field types of NTS that no Autokey field can have (RFC 8915 section 5: unique identifier,
cookie placeholder, authenticator): Autokey carries version 2 in the first octet's low six
bits (interop.md 1.3).  The NTS Cookie's 0x0204 is also the Autokey AUTO request, so it does
not decide the framing.  A packet with one of these among its first two fields is NTS-framed
unless it ends in a MAC, which NTS packets never have (then it is framed as Autokey's, two
fields at most)."""
CRYPTO_NAK_LEN = 4
CRYPTO_NAK = b"\x00" * CRYPTO_NAK_LEN
"""The MAC of a reply to a request that failed authentication: key ID 0, no digest."""
MAC_LENGTHS = (4, 20, 24)
"""Key ID alone (crypto-NAK), key ID + 16-octet digest (MD5, AES-CMAC), + 20 (SHA-1)."""

# Modes (RFC 5905 figure 10).
MODE_RESERVED = 0
MODE_ACTIVE = 1
MODE_PASSIVE = 2
MODE_CLIENT = 3
MODE_SERVER = 4
MODE_BROADCAST = 5
MODE_CONTROL = 6
MODE_PRIVATE = 7

LEAP_NONE = 0
LEAP_ADD = 1
LEAP_DEL = 2
LEAP_UNSYNC = 3

# Kiss codes (RFC 5905 section 7.4), carried in the refid of a stratum-0 packet.
KISS_RATE = b"RATE"
KISS_DENY = b"DENY"
KISS_RSTR = b"RSTR"
KISS_CRYP = b"CRYP"
KISS_INIT = b"INIT"
KISS_STEP = b"STEP"
KISS_NTSN = b"NTSN"
"""The NTS NAK (RFC 8915 section 5.7): the server cannot open the cookie or verify the
request."""

_HEADER = struct.Struct("!BBbbII4sQQQQ")
_WORD = struct.Struct("!I")


class MalformedPacket(ValueError):
    """The datagram is not a well-formed NTP packet; ``reason`` names the drop counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Header(NamedTuple):
    """The 48-octet NTP header; timestamps are raw 64-bit integers, root values raw 16.16."""

    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: int
    root_dispersion: int
    refid: bytes
    reference: int
    origin: int
    receive: int
    transmit: int

    def encode(self) -> bytes:
        """The 48 octets on the wire."""
        return _HEADER.pack(
            ((self.leap & 3) << 6) | ((self.version & 7) << 3) | (self.mode & 7),
            self.stratum & 0xFF,
            self.poll,
            self.precision,
            self.root_delay & 0xFFFFFFFF,
            self.root_dispersion & 0xFFFFFFFF,
            self.refid,
            self.reference,
            self.origin,
            self.receive,
            self.transmit,
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Decode the first 48 octets of ``data`` (no validity checks)."""
        (lvm, stratum, poll, precision, rdelay, rdisp, refid, ref, org, rec,
         xmt) = _HEADER.unpack_from(data)
        return cls(lvm >> 6, (lvm >> 3) & 7, lvm & 7, stratum, poll, precision, rdelay, rdisp,
                   refid, ref, org, rec, xmt)

    @property
    def is_kiss(self) -> bool:
        """A kiss-o'-death packet: stratum 0 with the kiss code in the refid."""
        return self.stratum == 0

    @property
    def kiss_code(self) -> str:
        """The refid as ASCII, meaningful when :attr:`is_kiss`."""
        return self.refid.decode("ascii", "replace").rstrip("\x00")


class ExtensionField(NamedTuple):
    """One extension field as framed on the wire: its offset and its octets."""

    offset: int
    data: bytes

    @property
    def word(self) -> int:
        """The first 32-bit word: R, E, version, code and length (interop.md 1.3)."""
        return _WORD.unpack_from(self.data)[0]


class Packet(NamedTuple):
    """A parsed datagram: header, extension fields and MAC (if any)."""

    header: Header
    fields: tuple[ExtensionField, ...]
    keyid: int | None
    digest: bytes
    mac_offset: int
    data: bytes
    nts: bool = False
    """NTS framing: a field of :data:`NTS_ONLY_TYPES` (the fields are NTS's, there is no
    MAC)."""

    @property
    def has_mac(self) -> bool:
        return self.keyid is not None

    @property
    def is_crypto_nak(self) -> bool:
        """A MAC of a key ID alone (4 octets): RFC 5905/5906 crypto-NAK."""
        return self.keyid is not None and not self.digest

    @property
    def authenticated_part(self) -> bytes:
        """The octets the MAC covers: header and extension fields."""
        return self.data[: self.mac_offset]


def parse(data: bytes) -> Packet:
    """Parse a datagram, raising :class:`MalformedPacket` when it must be dropped."""
    size = len(data)
    if size < HEADER_LEN:
        raise MalformedPacket("badlength", f"{size} octets is shorter than the header")
    if size > MAX_PACKET:
        raise MalformedPacket("badlength", f"{size} octets is over {MAX_PACKET}")
    header = Header.decode(data)
    if header.version == 0 or header.version > 4:
        raise MalformedPacket("badlength", f"unsupported version {header.version}")
    if size == HEADER_LEN:
        return Packet(header, (), None, b"", size, data)
    fields: list[ExtensionField] = []
    offset = HEADER_LEN
    rem = size - offset
    nts = False
    cap = MAX_FIELDS
    while rem > 0:
        if rem % 4 or rem < 4:
            raise MalformedPacket("badlength", f"{rem} trailing octets at {offset}")
        if rem <= 24:
            if rem not in MAC_LENGTHS:
                raise MalformedPacket("badlength", f"MAC of {rem} octets")
            if len(fields) > MAX_FIELDS:  # NTS fields never come with a MAC
                raise MalformedPacket("toomanyfields", f"more than {MAX_FIELDS} extension "
                                      "fields before a MAC")
            keyid = _WORD.unpack_from(data, offset)[0]
            return Packet(header, tuple(fields), keyid, data[offset + 4:], offset, data)
        if len(fields) == cap:
            raise MalformedPacket("toomanyfields", f"more than {cap} extension fields")
        word = _WORD.unpack_from(data, offset)[0]
        length = word & 0xFFFF
        if length % 4 or length < 4 or offset + length > size:
            raise MalformedPacket("badlength", f"extension field length {length} at {offset}")
        if not nts and word >> 16 in NTS_ONLY_TYPES and len(fields) < MAX_FIELDS:
            nts, cap = True, NTS_MAX_FIELDS
        fields.append(ExtensionField(offset, data[offset:offset + length]))
        offset += length
        rem -= length
    # Extension fields reach the end of the packet: no MAC.
    return Packet(header, tuple(fields), None, b"", size, data, nts)


def build(header: Header, fields: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    """Header plus extension fields, omitting any field that would end past the reference's
    limit (2096 octets), as the reference does."""
    out = header.encode()
    for field in fields:
        if len(out) + len(field) > MAX_EXTENSION_END:
            continue
        out += field
    return out


class Datagram(NamedTuple):
    """A datagram for the transport to send."""

    data: bytes
    address: tuple[str, int]
