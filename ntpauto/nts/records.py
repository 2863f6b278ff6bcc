"""NTS-KE records and messages (RFC 8915 section 4), sans-I/O.

A record is a 16-bit word (the critical bit, then a 15-bit type), a 16-bit body length and
the body; a message is records up to and including End of Message (section 4.1.1), which is
critical and empty.  The client sends one message, the server answers with one and both
close the TLS connection.

Parsing is strict and bounded: a message longer than :data:`MAX_MESSAGE` octets or of more
than :data:`MAX_RECORDS` records, anything after End of Message, and an End of Message that
is not critical or not empty are refused as they arrive (:class:`MessageReader`).  Every
failure is a :class:`KeError` that says why, carrying the Error record code the server
answers with (section 4.1.3).

:func:`answer` is the server's reading of a request and its response (records for next
protocol, AEAD algorithm, port and server negotiation, new cookies); :func:`read_response`
is the client's reading of the server's.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence

from attrs import frozen

from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, KEY_LENGTHS, NEXT_PROTOCOL_NTPV4

__all__ = [
    "AEAD_ALGORITHM", "CRITICAL", "END_OF_MESSAGE", "ERROR", "ERROR_BAD_REQUEST",
    "ERROR_INTERNAL", "ERROR_UNRECOGNIZED_CRITICAL", "MAX_COOKIE", "MAX_COOKIES",
    "MAX_MESSAGE", "MAX_RECORDS", "NEW_COOKIE", "NEXT_PROTOCOL", "PORT", "SERVER", "WARNING",
    "KeError", "KeResponse", "MessageReader", "Record", "answer", "decode_message",
    "encode_message", "read_response", "request",
]

END_OF_MESSAGE = 0
NEXT_PROTOCOL = 1
ERROR = 2
WARNING = 3
AEAD_ALGORITHM = 4
NEW_COOKIE = 5
SERVER = 6
PORT = 7
"""Record types (RFC 8915 sections 4.1.1-4.1.8)."""
CRITICAL = 0x8000
"""The critical bit of the record-type word."""
NAMES = {END_OF_MESSAGE: "End of Message", NEXT_PROTOCOL: "NTS Next Protocol Negotiation",
         ERROR: "Error", WARNING: "Warning", AEAD_ALGORITHM: "AEAD Algorithm Negotiation",
         NEW_COOKIE: "New Cookie for NTPv4", SERVER: "NTPv4 Server Negotiation",
         PORT: "NTPv4 Port Negotiation"}

ERROR_UNRECOGNIZED_CRITICAL = 0
ERROR_BAD_REQUEST = 1
ERROR_INTERNAL = 2
"""Error record codes (section 4.1.3)."""
ERROR_NAMES = {ERROR_UNRECOGNIZED_CRITICAL: "unrecognized critical record",
               ERROR_BAD_REQUEST: "bad request", ERROR_INTERNAL: "internal server error"}

MAX_MESSAGE = 16384
"""Octets a message may have (chrony's limit; ours carry a few hundred)."""
MAX_RECORDS = 32
"""Records a message may have: a response has at most 13 (with 8 cookies)."""
MAX_COOKIES = 8
"""Cookies the server gives and the client keeps (section 4.1.6: the server SHOULD send 8)."""
MAX_COOKIE = 256
"""Octets a cookie may have (chrony's limit; ours have 104)."""
MAX_SERVER_NAME = 255
"""Octets of an NTPv4 Server Negotiation body (a DNS name or an address)."""

_HEADER = struct.Struct("!HH")


class KeError(ValueError):
    """An NTS-KE message that cannot be used: ``code`` is the Error record code a server
    answers with (None: a client's reason, or a connection to drop silently)."""

    def __init__(self, message: str, code: int | None = ERROR_BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


@frozen
class Record:
    """One NTS-KE record."""

    type: int
    body: bytes = b""
    critical: bool = False

    def encode(self) -> bytes:
        """The record on the wire."""
        return _HEADER.pack(self.type | (CRITICAL if self.critical else 0),
                            len(self.body)) + self.body

    def words(self) -> list[int]:
        """The body as 16-bit integers (Next Protocol, AEAD, Error, Warning, Port)."""
        if len(self.body) % 2:
            raise KeError(f"{NAMES.get(self.type, self.type)} record of {len(self.body)} "
                          "octets: not a list of 16-bit values")
        return [value for (value,) in struct.iter_unpack("!H", self.body)]

    @property
    def name(self) -> str:
        return NAMES.get(self.type, f"record type {self.type}")


def encode_message(records: Iterable[Record]) -> bytes:
    """The records, then End of Message."""
    return b"".join(r.encode() for r in records) + Record(END_OF_MESSAGE, critical=True).encode()


class MessageReader:
    """Collects one message from a TLS stream, as its octets arrive (:meth:`feed`)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._size = 0
        self._records: list[Record] = []
        self.complete = False

    def feed(self, data: bytes) -> list[Record] | None:
        """Add ``data``; the message's records (without End of Message) once it is
        complete, else None.  Raises :class:`KeError` as soon as the stream breaks a rule."""
        if self.complete:
            if data:
                raise KeError("data after End of Message")
            return self._records
        self._buffer += data
        self._size += len(data)
        if self._size > MAX_MESSAGE:
            raise KeError(f"message longer than {MAX_MESSAGE} octets")
        while len(self._buffer) >= 4:
            word, length = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < 4 + length:
                return None
            record = Record(word & ~CRITICAL, self._buffer[4:4 + length],
                            bool(word & CRITICAL))
            self._buffer = self._buffer[4 + length:]
            if record.type == END_OF_MESSAGE:
                if not record.critical or record.body:
                    raise KeError("End of Message must be critical and empty")
                if self._buffer:
                    raise KeError("data after End of Message")
                self.complete = True
                return self._records
            if len(self._records) == MAX_RECORDS:
                raise KeError(f"more than {MAX_RECORDS} records")
            self._records.append(record)
        return None


def decode_message(data: bytes) -> list[Record]:
    """The records of one whole message (:class:`KeError` when it is not one)."""
    reader = MessageReader()
    records = reader.feed(data)
    if records is None:
        raise KeError("message ends before End of Message")
    return records


def request(aeads: Sequence[int] = (AEAD_AES_SIV_CMAC_256,)) -> bytes:
    """The client's request: NTPv4 as next protocol and the AEAD algorithms it accepts,
    most preferred first (sections 4.1.2, 4.1.5; both critical, as chrony sends them)."""
    return encode_message([
        Record(NEXT_PROTOCOL, struct.pack("!H", NEXT_PROTOCOL_NTPV4), critical=True),
        Record(AEAD_ALGORITHM, b"".join(struct.pack("!H", a) for a in aeads), critical=True),
    ])


# -- the server ----------------------------------------------------------------------------

def answer(records: Sequence[Record], cookies: Callable[[int], list[bytes]], *,
           port: int | None = None, server: str | None = None) -> list[Record]:
    """The server's response to a request's ``records`` (End of Message excluded from
    both): next protocol NTPv4 and the first AEAD algorithm of the client's list that we
    implement, with ``cookies(aead)`` (the new cookies, made with the connection's keys),
    ``port`` and ``server`` negotiation records when given; or the empty record that says
    we support none of what the client offered (sections 4.1.2, 4.1.5).  A request that
    breaks a rule raises :class:`KeError`, whose code the Error record carries
    (:func:`error_response`)."""
    protocols: list[int] | None = None
    aeads: list[int] | None = None
    for record in records:
        kind = record.type
        if kind == NEXT_PROTOCOL:
            if protocols is not None:
                raise KeError("more than one Next Protocol record")
            if not record.critical:
                raise KeError("Next Protocol record without the critical bit")
            protocols = record.words()
            if not protocols:
                raise KeError("empty Next Protocol record")
        elif kind == AEAD_ALGORITHM:
            if aeads is not None:
                raise KeError("more than one AEAD Algorithm record")
            aeads = record.words()
            if not aeads:
                raise KeError("empty AEAD Algorithm record")
        elif kind in (ERROR, WARNING, NEW_COOKIE):
            raise KeError(f"{record.name} record in a request")
        elif kind in (SERVER, PORT):
            continue  # a client's wish (sections 4.1.7, 4.1.8): we name our own
        elif record.critical:
            raise KeError(f"unrecognized critical {record.name}", ERROR_UNRECOGNIZED_CRITICAL)
    if protocols is None:
        raise KeError("no Next Protocol record")
    if NEXT_PROTOCOL_NTPV4 not in protocols:
        return [Record(NEXT_PROTOCOL, critical=True)]
    response = [Record(NEXT_PROTOCOL, struct.pack("!H", NEXT_PROTOCOL_NTPV4), critical=True)]
    if aeads is None:
        raise KeError("no AEAD Algorithm record for NTPv4")
    aead = next((a for a in aeads if a in KEY_LENGTHS), None)
    if aead is None:
        return [*response, Record(AEAD_ALGORITHM, critical=True)]
    response.append(Record(AEAD_ALGORITHM, struct.pack("!H", aead), critical=True))
    if port is not None:
        response.append(Record(PORT, struct.pack("!H", port), critical=True))
    if server is not None:
        response.append(Record(SERVER, server.encode("ascii"), critical=True))
    response.extend(Record(NEW_COOKIE, cookie) for cookie in cookies(aead))
    return response


def error_response(code: int) -> list[Record]:
    """An Error record (section 4.1.3): the whole response to a bad request."""
    return [Record(ERROR, struct.pack("!H", code), critical=True)]


# -- the client ----------------------------------------------------------------------------

@frozen
class KeResponse:
    """What the server's response gave: the AEAD algorithm, its cookies, and the NTP server
    and port to use (None: the NTS-KE server's address, the configured port)."""

    aead: int
    cookies: tuple[bytes, ...]
    server: str | None = None
    port: int | None = None
    dropped: int = 0
    """Cookies beyond :data:`MAX_COOKIES` or of an unusable length, not kept."""


def read_response(records: Sequence[Record],
                  aeads: Sequence[int] = (AEAD_AES_SIV_CMAC_256,)) -> KeResponse:
    """The client's reading of the response to :func:`request` (``aeads`` as requested).
    Raises :class:`KeError` (code None) naming what is wrong: an Error or Warning record,
    a next protocol or AEAD algorithm we did not offer, an unrecognized critical record,
    duplicates, or no usable cookie."""
    protocol: list[int] | None = None
    aead: int | None = None
    cookies: list[bytes] = []
    dropped = 0
    server: str | None = None
    port: int | None = None
    for record in records:
        kind = record.type
        if kind == ERROR:
            code = _single(record)
            raise KeError(f"the server sent Error {code} ({ERROR_NAMES.get(code, 'unknown')})",
                          None)
        if kind == WARNING:
            raise KeError(f"the server sent Warning {_single(record)}", None)
        if kind == NEXT_PROTOCOL:
            if protocol is not None:
                raise KeError("more than one Next Protocol record", None)
            protocol = record.words()
            if protocol != [NEXT_PROTOCOL_NTPV4]:
                raise KeError("the server does not offer NTPv4" if not protocol else
                              f"the server chose next protocol {protocol}", None)
        elif kind == AEAD_ALGORITHM:
            if aead is not None:
                raise KeError("more than one AEAD Algorithm record", None)
            chosen = record.words()
            if len(chosen) != 1 or chosen[0] not in aeads:
                raise KeError("the server supports none of our AEAD algorithms" if not chosen
                              else f"the server chose AEAD algorithm {chosen}", None)
            aead = chosen[0]
        elif kind == NEW_COOKIE:
            body = record.body
            if len(cookies) < MAX_COOKIES and 0 < len(body) <= MAX_COOKIE and not len(body) % 4:
                cookies.append(body)
            else:
                dropped += 1
        elif kind == SERVER:
            if server is not None:
                raise KeError("more than one Server Negotiation record", None)
            server = _server_name(record.body)
        elif kind == PORT:
            if port is not None:
                raise KeError("more than one Port Negotiation record", None)
            port = _single(record)
            if not port:
                raise KeError("the server negotiated port 0", None)
        elif record.critical:
            raise KeError(f"unrecognized critical {record.name} in the response", None)
    if protocol is None:
        raise KeError("no Next Protocol record in the response", None)
    if aead is None:
        raise KeError("no AEAD Algorithm record in the response", None)
    if not cookies:
        raise KeError("the response carries no usable cookie", None)
    return KeResponse(aead, tuple(cookies), server, port, dropped)


def _single(record: Record) -> int:
    words = record.words()
    if len(words) != 1:
        raise KeError(f"{record.name} record of {len(record.body)} octets, not 2", None)
    return words[0]


def _server_name(body: bytes) -> str:
    """An NTPv4 Server Negotiation body: an IPv4 or IPv6 address or a DNS name in ASCII
    (section 4.1.7), printable and without spaces."""
    if not 0 < len(body) <= MAX_SERVER_NAME or not all(0x21 <= b <= 0x7E for b in body):
        raise KeError("unusable Server Negotiation record", None)
    name = body.decode("ascii")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name
