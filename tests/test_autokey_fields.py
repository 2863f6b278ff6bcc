"""Extension field codec and the Autokey-level receive checks (ntpauto.autokey.fields)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CODE_NAMES,
    COOK,
    LEAP,
    MV,
    NULL,
    Field,
    FieldError,
    decode,
    decode_all,
    pad4,
    signed_octets,
)
from ntpauto.events import Event
from ntpauto.wire.packet import Header, build, parse

# sym capture, packet 0: carol's ASSOC request (name "carol@alice", status word 0x00080003).
ASSOC_HEX = "020100240000fb18eeaee671000800030000000b6361726f6c40616c6963650000000000"


def words(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}I", *values)


def test_message_codes() -> None:
    """Codes NULL=0 ... MV=9 as in include/ntp_crypto.h."""
    assert (NULL, ASSOC, COOK, AUTO, LEAP, MV) == (0, 1, 3, 4, 5, 9)
    assert CODE_NAMES[6] == "SIGN" and len(CODE_NAMES) == 10


def test_encode_matches_reference_assoc_request() -> None:
    """A captured ASSOC request re-encodes from its parts byte for byte (value padded)."""
    f = Field(code=ASSOC, associd=64280, timestamp=4004439665, filestamp=0x00080003,
              value=b"carol@alice")
    assert f.encode().hex() == ASSOC_HEX
    assert f.length == 36 and f.word == 0x02010024 and f.opcode == 0x0201
    assert decode(bytes.fromhex(ASSOC_HEX)) == f


def test_encode_response_with_signature_layout() -> None:
    """R bit, value and signature each zero-padded, S word always present."""
    f = Field(code=COOK, response=True, associd=7, timestamp=10, filestamp=9,
              value=b"\x01\x02\x03", signature=b"\xAA" * 5)
    data = f.encode()
    assert data == (words(0x82030000 | 36, 7, 10, 9, 3) + b"\x01\x02\x03\x00"
                    + words(5) + b"\xAA" * 5 + b"\x00\x00\x00")
    assert f.opcode == 0x8203


def test_encode_empty_value_keeps_signature_word() -> None:
    """An empty value is V = 0 with no octets; the S word is still there (24 octets)."""
    assert Field(code=AUTO, response=True, associd=1).encode() == words(0x82040018, 1, 0, 0, 0, 0)


def test_short_form() -> None:
    """8 octets: header word and association ID (AUTO/LEAP requests, error responses)."""
    assert Field.short_form(AUTO, 53797).encode() == words(0x02040008, 53797)
    assert Field.short_form(COOK, 5, response=True, error=True).encode() == words(
        0xC2030008, 5)
    with pytest.raises(ValueError):
        Field(code=AUTO, short=True, value=b"x").encode()


def test_encode_rejects_oversized_and_bad_words() -> None:
    """Length must fit 16 bits; code 8 bits; stamps 32 bits."""
    with pytest.raises(ValueError):
        Field(code=COOK, value=bytes(65512)).encode()
    with pytest.raises(ValueError):
        Field(code=256)
    with pytest.raises(ValueError):
        Field(code=COOK, timestamp=1 << 32)


def test_signed_octets_exclude_padding() -> None:
    """Signatures cover timestamp || filestamp || V || value, without value padding."""
    f = Field(code=LEAP, response=True, timestamp=1, filestamp=2, value=b"abcde",
              signature=b"s" * 64)
    assert signed_octets(f) == words(1, 2, 5) + b"abcde"


def test_pad4() -> None:
    """Rounded up to a multiple of four."""
    assert [pad4(n) for n in range(6)] == [0, 4, 4, 4, 4, 8]


# Receive-side checks: each case fails exactly one check -----------------------------------

def test_decode_rejects_wrong_version_as_protocol_error() -> None:
    """Version != 2 is treated like the E bit: protocol error (XEVNT_ERR)."""
    data = bytearray(bytes.fromhex(ASSOC_HEX))
    data[0] = 0x03
    with pytest.raises(FieldError) as info:
        decode(bytes(data))
    assert info.value.event is Event.ERR


def test_decode_rejects_length_below_8_as_protocol_error() -> None:
    """Length < 8 is a protocol error too."""
    with pytest.raises(FieldError) as info:
        decode(words(0x02040004, 0))
    assert info.value.event is Event.ERR


def test_decode_rejects_length_beyond_data() -> None:
    """Length larger than the octets available: bad length."""
    with pytest.raises(FieldError) as info:
        decode(words(0x0204000C, 1))
    assert info.value.event is Event.LEN


def test_decode_rejects_zero_value_length() -> None:
    """Any field of >= 24 octets needs V != 0 (requests included)."""
    with pytest.raises(FieldError) as info:
        decode(words(0x02030018, 1, 0, 0, 0, 0))
    assert info.value.event is Event.LEN


def test_decode_rejects_value_longer_than_field() -> None:
    """V must not exceed Length - 24."""
    with pytest.raises(FieldError) as info:
        decode(words(0x0203001C, 1, 0, 0, 5) + b"abcd" + words(0))
    assert info.value.event is Event.LEN


def test_decode_rejects_missing_signature_word() -> None:
    """V fits Length - 24 but the padded value leaves no room for the S word."""
    data = words(0x0203001B, 1, 0, 0, 3) + b"abc\x00" + b"\x00\x00\x00"
    assert len(data) == 27
    with pytest.raises(FieldError) as info:
        decode(data)
    assert info.value.event is Event.LEN


def test_decode_rejects_signature_longer_than_field() -> None:
    """S (padded) must fit in what is left after the S word."""
    with pytest.raises(FieldError) as info:
        decode(words(0x82030020, 1, 2, 3, 4) + b"abcd" + words(5) + b"xxxx")
    assert info.value.event is Event.LEN


def test_decode_reports_error_bit_without_raising() -> None:
    """The E bit is the message layer's business: decode returns it."""
    f = decode(words(0xC2020008, 99))
    assert f.error and f.response and f.short and f.associd == 99


def test_decode_field_of_8_to_23_octets_is_short() -> None:
    """The reference reads only code and association ID of fields shorter than 24."""
    f = decode(words(0x02050010, 42, 0xFFFFFFFF, 0xFFFFFFFF))
    assert f == Field.short_form(LEAP, 42)


def test_decode_ignores_octets_past_length() -> None:
    """``data`` may extend past the field (e.g. the rest of a packet)."""
    f = decode(words(0x02040008, 1) + b"\xFF" * 20)
    assert f == Field.short_form(AUTO, 1)


def test_decode_all_stops_at_first_bad_field_with_offset() -> None:
    """The scan raises at the first failing field and reports its packet offset."""
    header = Header(0, 4, 3, 0, 3, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, 0)
    good = Field.short_form(AUTO, 1).encode()
    bad = words(0x03040008, 1)  # version 3
    wire = build(header, [good, bad]) + bytes(20)
    packet = parse(wire)
    assert len(packet.fields) == 2
    with pytest.raises(FieldError) as info:
        decode_all(packet)
    assert info.value.event is Event.ERR and info.value.offset == 56
    ok = parse(build(header, [good, good]) + bytes(20))
    assert decode_all(ok) == [Field.short_form(AUTO, 1)] * 2


# Round trips ---------------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)

full_fields = st.builds(
    Field,
    code=st.integers(0, 255),
    response=st.booleans(),
    error=st.booleans(),
    associd=u32,
    timestamp=u32,
    filestamp=u32,
    value=st.binary(min_size=1, max_size=600),
    signature=st.binary(max_size=300),
)

short_fields = st.builds(
    Field.short_form, st.integers(0, 255), u32, response=st.booleans(), error=st.booleans())


@given(full_fields)
def test_full_field_round_trip(f: Field) -> None:
    """decode(encode(f)) == f, the length is canonical and padding is zero."""
    data = f.encode()
    assert len(data) == f.length == 24 + pad4(len(f.value)) + pad4(len(f.signature))
    assert decode(data) == f
    pad_at = 20 + len(f.value)
    assert data[pad_at:20 + pad4(len(f.value))] == bytes(pad4(len(f.value)) - len(f.value))


@given(short_fields)
def test_short_field_round_trip(f: Field) -> None:
    """The 8-octet form survives a round trip."""
    data = f.encode()
    assert len(data) == 8
    assert decode(data) == f


@given(full_fields, st.binary(max_size=40))
def test_decode_of_encoding_plus_trailer(f: Field, trailer: bytes) -> None:
    """Octets after the field (e.g. a MAC) never change what decodes."""
    assert decode(f.encode() + trailer) == f


@given(st.binary(min_size=0, max_size=64))
def test_decode_arbitrary_bytes_only_raises_field_error(data: bytes) -> None:
    """Garbage never escapes as anything but FieldError (or decodes to a valid field)."""
    try:
        f = decode(data)
    except FieldError as exc:
        assert exc.event in (Event.LEN, Event.ERR)
    else:
        assert f.encode() == data[:f.length] or f.short
