"""NTS-KE records (ntpauto.nts.records): the wire format, strict and bounded reading, the
server's answer to each kind of request and the client's reading of each kind of response
(RFC 8915 section 4)."""

from __future__ import annotations

import struct

import pytest

from ntpauto.nts import records as r
from ntpauto.nts.records import KeError, Record


def words(*values: int) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def test_request_on_the_wire() -> None:
    """Next Protocol [NTPv4] and AEAD [15], both critical, then End of Message: the octets
    chrony sends."""
    assert r.request() == bytes.fromhex("8001 0002 0000 8004 0002 000f 8000 0000")


def test_reader_takes_a_message_in_any_pieces() -> None:
    data = r.request()
    reader = r.MessageReader()
    got = None
    for i in range(len(data)):
        got = reader.feed(data[i:i + 1])
        assert (got is None) == (i < len(data) - 1)
    assert got == [Record(r.NEXT_PROTOCOL, words(0), True),
                   Record(r.AEAD_ALGORITHM, words(15), True)]
    with pytest.raises(KeError, match="after End of Message"):
        reader.feed(b"\x00")


@pytest.mark.parametrize("data, reason", [
    (bytes.fromhex("0000 0000"), "critical and empty"),
    (bytes.fromhex("8000 0002 0000"), "critical and empty"),
    (bytes.fromhex("8000 0000 00"), "after End of Message"),
    (Record(5, b"x").encode() * (r.MAX_RECORDS + 1), "more than 32 records"),
    (Record(5, bytes(2000)).encode() * 9, "longer than 16384"),
])
def test_reader_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(KeError, match=reason) as info:
        r.MessageReader().feed(data)
    assert info.value.code == r.ERROR_BAD_REQUEST


def test_reader_refuses_an_oversized_record_before_it_arrives() -> None:
    """A header announcing 60000 octets is refused once the buffer passes the limit, not
    after 60000 octets were buffered."""
    reader = r.MessageReader()
    assert reader.feed(bytes.fromhex("0005 ea60") + bytes(8000)) is None
    with pytest.raises(KeError, match="longer than"):
        reader.feed(bytes(9000))


def test_decode_message_needs_the_end() -> None:
    with pytest.raises(KeError, match="ends before"):
        r.decode_message(r.request()[:-4])


def cookies(aead: int) -> list[bytes]:
    return [bytes([i]) * 8 for i in range(8)]


def test_answer_gives_protocol_aead_and_eight_cookies() -> None:
    response = r.answer(r.decode_message(r.request()), cookies)
    assert response[:2] == [Record(r.NEXT_PROTOCOL, words(0), True),
                            Record(r.AEAD_ALGORITHM, words(15), True)]
    assert [c.body for c in response[2:]] == cookies(15)
    assert all(c.type == r.NEW_COOKIE and not c.critical for c in response[2:])


def test_answer_negotiates_port_and_server_when_given() -> None:
    response = r.answer(r.decode_message(r.request()), cookies, port=12300, server="192.0.2.1")
    assert Record(r.PORT, words(12300), True) in response
    assert Record(r.SERVER, b"192.0.2.1", True) in response


def test_answer_takes_the_first_aead_we_implement() -> None:
    request = [Record(r.NEXT_PROTOCOL, words(0), True),
               Record(r.AEAD_ALGORITHM, words(30, 16, 15), True)]
    assert r.answer(request, cookies)[1] == Record(r.AEAD_ALGORITHM, words(15), True)


def test_answer_says_no_protocol_or_no_aead_with_empty_records() -> None:
    """Section 4.1.2 and 4.1.5: nothing we support is an empty record, no cookies."""
    assert r.answer([Record(r.NEXT_PROTOCOL, words(0x8001), True)], cookies) == [
        Record(r.NEXT_PROTOCOL, b"", True)]
    assert r.answer([Record(r.NEXT_PROTOCOL, words(0), True),
                     Record(r.AEAD_ALGORITHM, words(30), True)], cookies) == [
        Record(r.NEXT_PROTOCOL, words(0), True), Record(r.AEAD_ALGORITHM, b"", True)]


NP = Record(r.NEXT_PROTOCOL, words(0), True)
AEAD = Record(r.AEAD_ALGORITHM, words(15), True)


@pytest.mark.parametrize("request_records, reason, code", [
    ([], "no Next Protocol", r.ERROR_BAD_REQUEST),
    ([Record(r.NEXT_PROTOCOL, words(0)), AEAD], "without the critical bit",
     r.ERROR_BAD_REQUEST),
    ([NP, NP, AEAD], "more than one Next Protocol", r.ERROR_BAD_REQUEST),
    ([NP, AEAD, AEAD], "more than one AEAD", r.ERROR_BAD_REQUEST),
    ([Record(r.NEXT_PROTOCOL, b"", True), AEAD], "empty Next Protocol", r.ERROR_BAD_REQUEST),
    ([NP, Record(r.AEAD_ALGORITHM, b"\x00", True)], "not a list of 16-bit",
     r.ERROR_BAD_REQUEST),
    ([NP], "no AEAD Algorithm", r.ERROR_BAD_REQUEST),
    ([NP, AEAD, Record(r.NEW_COOKIE, b"abcd")], "New Cookie for NTPv4 record in a request",
     r.ERROR_BAD_REQUEST),
    ([NP, AEAD, Record(r.ERROR, words(0), True)], "Error record in a request",
     r.ERROR_BAD_REQUEST),
    ([NP, AEAD, Record(0x1234, b"", True)], "unrecognized critical",
     r.ERROR_UNRECOGNIZED_CRITICAL),
])
def test_answer_refuses_bad_requests(request_records, reason, code) -> None:
    with pytest.raises(KeError, match=reason) as info:
        r.answer(request_records, cookies)
    assert info.value.code == code


def test_answer_ignores_unknown_non_critical_records_and_client_wishes() -> None:
    request = [NP, AEAD, Record(0x1234, b"zz"), Record(r.SERVER, b"elsewhere", True),
               Record(r.PORT, words(1), True)]
    assert len(r.answer(request, cookies)) == 10


def test_error_response() -> None:
    assert r.encode_message(r.error_response(1)) == bytes.fromhex("8002 0002 0001 8000 0000")


def response(*extra: Record, cookie_count: int = 8) -> list[Record]:
    return [NP, AEAD, *extra, *(Record(r.NEW_COOKIE, bytes([i]) * 100)
                                for i in range(cookie_count))]


def test_read_response() -> None:
    got = r.read_response(response(Record(r.PORT, words(12300), True),
                                   Record(r.SERVER, b"ntp.example.org", True)))
    assert got.aead == 15 and len(got.cookies) == 8 and got.dropped == 0
    assert (got.server, got.port) == ("ntp.example.org", 12300)
    assert r.read_response(response(Record(r.SERVER, b"::1", True))).server == "::1"


def test_read_response_keeps_eight_usable_cookies() -> None:
    records = [*response(cookie_count=9), Record(r.NEW_COOKIE, bytes(102)),
               Record(r.NEW_COOKIE, bytes(r.MAX_COOKIE + 4)), Record(r.NEW_COOKIE, b"")]
    got = r.read_response(records)
    assert len(got.cookies) == 8 and got.dropped == 4


@pytest.mark.parametrize("records, reason", [
    ([Record(r.ERROR, words(1), True)], "Error 1 \\(bad request\\)"),
    (response(Record(r.WARNING, words(7), True)), "Warning 7"),
    ([Record(r.NEXT_PROTOCOL, b"", True)], "does not offer NTPv4"),
    ([Record(r.NEXT_PROTOCOL, words(0x8001), True), AEAD], "chose next protocol"),
    ([NP, Record(r.AEAD_ALGORITHM, b"", True)], "none of our AEAD"),
    ([NP, Record(r.AEAD_ALGORITHM, words(16), True)], "chose AEAD algorithm"),
    (response(NP), "more than one Next Protocol"),
    (response(AEAD), "more than one AEAD"),
    (response(Record(0x4321, b"", True)), "unrecognized critical"),
    (response(cookie_count=0), "no usable cookie"),
    ([AEAD, Record(r.NEW_COOKIE, bytes(4))], "no Next Protocol"),
    ([NP, Record(r.NEW_COOKIE, bytes(4))], "no AEAD"),
    (response(Record(r.PORT, words(0), True)), "port 0"),
    (response(Record(r.PORT, b"\x00\x01\x02\x03", True)), "not 2"),
    (response(Record(r.SERVER, b"two words", True)), "unusable Server"),
    (response(Record(r.SERVER, b"", True)), "unusable Server"),
])
def test_read_response_refuses(records, reason) -> None:
    with pytest.raises(KeError, match=reason):
        r.read_response(records)


def test_read_response_ignores_unknown_non_critical_records() -> None:
    assert len(r.read_response(response(Record(0x4321, b"??"))).cookies) == 8
