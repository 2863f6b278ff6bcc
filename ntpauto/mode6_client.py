"""The client side of mode 6, sans-I/O: requests, fragment reassembly and the answers'
formats (``name=value`` lists with quoted strings, association lists, status words).

The caller owns the socket: it sends :func:`request`'s bytes, feeds every datagram it
receives to :meth:`Response.add` until that returns True, then reads ``data`` and
``status``.  An error response raises :class:`ControlError` with ntpd's error code.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ntpauto.mode6 import (
    ERROR,
    HEADER,
    HEADER_LEN,
    MAX_DATA,
    MORE,
    OP_MASK,
    RESPONSE,
    ControlHeader,
)
from ntpauto.wire.packet import MODE_CONTROL

__all__ = ["ERROR_NAMES", "ControlError", "PeerStatus", "Response", "SELECT_NAMES",
           "parse_associations", "parse_variables", "peer_status", "request"]

ERROR_NAMES = {0: "unspecified error", 1: "permission denied", 2: "bad request format",
               3: "bad opcode", 4: "unknown association", 5: "unknown variable",
               6: "bad variable value", 7: "administratively prohibited"}
SELECT_NAMES = ("reject", "falsetick", "excess", "outlier", "candidate", "backup",
                "sys.peer", "pps.peer")
"""The select field of a peer status word (ntpq's "condition")."""
TALLY = " x.-+#*o"
"""ntpq's tally character for each select code."""
PEER_EVENTS = {1: "mobilize", 2: "demobilize", 3: "unreachable", 4: "reachable",
               5: "restart", 6: "no_reply", 7: "rate_exceeded", 8: "access_denied",
               9: "leap_armed", 10: "sys_peer", 11: "clock_event", 12: "bad_auth",
               13: "popcorn", 14: "interleave_mode", 15: "interleave_error"}
MAX_FRAGMENTS = 64
"""More fragments than this for one response is an error (a runaway or hostile server)."""
VERSION = 2
"""The version ntpq puts in its requests."""


class ControlError(Exception):
    """The server answered with an error, or the response cannot be reassembled."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code


def request(opcode: int, sequence: int, associd: int = 0, data: bytes = b"",
            version: int = VERSION) -> bytes:
    """A mode 6 request, padded to 32 bits (the padding is not counted)."""
    if len(data) > MAX_DATA:
        raise ValueError(f"request data of {len(data)} octets is over {MAX_DATA}")
    header = HEADER.pack((version << 3) | MODE_CONTROL, opcode & OP_MASK, sequence & 0xFFFF,
                         0, associd, 0, len(data))
    return header + data + b"\0" * (-len(data) % 4)


class Response:
    """Reassembles the fragments of the response to one request.

    Datagrams that are not responses to it (other sequence or opcode, not mode 6, truncated)
    are ignored; duplicates and overlapping fragments too, as ntpq does."""

    def __init__(self, opcode: int, sequence: int) -> None:
        self.opcode = opcode
        self.sequence = sequence & 0xFFFF
        self.status = 0
        self.associd = 0
        self._fragments: dict[int, bytes] = {}
        self._end: int | None = None

    def add(self, datagram: bytes) -> bool:
        """Take one received datagram; True once the response is complete."""
        if len(datagram) < HEADER_LEN:
            return False
        header = ControlHeader.decode(datagram)
        if header.mode != MODE_CONTROL or not 1 <= header.version <= 4 \
                or not header.r_e_m_op & RESPONSE or header.sequence != self.sequence \
                or header.opcode != self.opcode:
            return False
        if header.r_e_m_op & ERROR:
            code = (header.status >> 8) & 0xFF
            raise ControlError(code, ERROR_NAMES.get(code, f"error {code}"))
        if len(datagram) < HEADER_LEN + header.count:
            return False
        data = datagram[HEADER_LEN:HEADER_LEN + header.count]
        more = bool(header.r_e_m_op & MORE)
        if more and not data:
            return False
        start, end = header.offset, header.offset + len(data)
        for offset, chunk in self._fragments.items():
            if start < offset + len(chunk) and offset < end:
                return self.complete  # duplicate or overlap: ignored
        if not more:
            if self._end is not None:
                return self.complete
            self._end = end
            self.status = header.status
            self.associd = header.associd
        if len(self._fragments) >= MAX_FRAGMENTS:
            raise ControlError(None, f"more than {MAX_FRAGMENTS} fragments")
        self._fragments[start] = data
        return self.complete

    @property
    def complete(self) -> bool:
        """The last fragment arrived and the fragments cover 0..end without a hole."""
        if self._end is None:
            return False
        position = 0
        for offset in sorted(self._fragments):
            if offset != position:
                return False
            position += len(self._fragments[offset])
        return position == self._end

    @property
    def data(self) -> bytes:
        """The reassembled data (complete responses only)."""
        return b"".join(self._fragments[o] for o in sorted(self._fragments))


def parse_variables(data: bytes) -> list[tuple[str, str]]:
    """``name=value`` items in order (names may repeat, e.g. ``cert``/``until``); quoted
    values are unquoted (commas inside quotes belong to the value); a name alone has the
    value ""."""
    text = data.decode("ascii", "replace").replace("\0", "")
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        elif char in "\r\n" and not quoted:
            continue
        else:
            current.append(char)
    items.append("".join(current))
    pairs = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        pairs.append((name.strip(), value))
    return pairs


def parse_associations(data: bytes) -> list[tuple[int, int]]:
    """(association ID, peer status word) pairs of a READSTAT response for association 0."""
    if len(data) % 4:
        raise ControlError(None, f"association list of {len(data)} octets")
    return [struct.unpack_from("!HH", data, i) for i in range(0, len(data), 4)]


class PeerStatus(NamedTuple):
    """A peer status word, decoded as ntpq's ``associations`` shows it."""

    configured: bool
    reachable: bool
    auth: str
    select: int
    event: int
    count: int

    @property
    def condition(self) -> str:
        return SELECT_NAMES[self.select]

    @property
    def tally(self) -> str:
        return TALLY[self.select]

    @property
    def last_event(self) -> str:
        return PEER_EVENTS.get(self.event, "")


def peer_status(word: int) -> PeerStatus:
    """Decode a 16-bit peer status word."""
    bits = word >> 8
    if not bits & 0x40:
        auth = "none"
    elif bits & 0x20:
        auth = "ok"
    else:
        auth = "bad"
    return PeerStatus(bool(bits & 0x80), bool(bits & 0x10), auth, bits & 7,
                      word & 0x0F, (word >> 4) & 0x0F)
