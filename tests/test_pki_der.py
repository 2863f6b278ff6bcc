"""The one DER reader/writer (ntpauto.pki.der): known encodings, round trips, and a strict
reader (what identity responses and certificate fields from peers go through)."""

from __future__ import annotations

import pytest

from ntpauto.pki import der


@pytest.mark.parametrize(("value", "encoded"), [
    (0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"), (256, "02020100"),
    (4004436515, "020500eeaeda23"),
])
def test_integer(value, encoded):
    """Minimal two's complement INTEGERs, with a leading zero when the top bit is set."""
    assert der.integer(value).hex() == encoded


def test_integer_refuses_negative_values():
    """Only non-negative INTEGERs are written."""
    with pytest.raises(ValueError):
        der.integer(-1)


@pytest.mark.parametrize("oid", ["1.2.840.113549.1.1.4", "1.3.14.3.2.13", "2.5.29.19",
                                 "1.3.6.1.5.5.7.48.1.11", "2.999.3"])
def test_oid_round_trip(oid):
    """OIDs encode as DER and decode back."""
    encoded = der.oid(oid)
    tag, start, end = der.read_tlv(encoded)
    assert tag == der.TAG_OID and end == len(encoded)
    assert der.decode_oid(encoded[start:]) == oid
    assert der.decode_oid(der.content(encoded, der.TAG_OID)) == oid


def test_known_oid_encoding():
    """md5WithRSAEncryption is 06 09 2a 86 48 86 f7 0d 01 01 04."""
    assert der.oid("1.2.840.113549.1.1.4").hex() == "06092a864886f70d010104"


def test_long_form_lengths_and_children():
    """Contents of 200 octets get a long-form length; children split back exactly."""
    items = [der.integer(1 << 1000), der.integer(5)]
    sequence = der.sequence(*items)
    assert sequence[:3].hex() == "3081" + f"{len(sequence) - 3:02x}"
    assert der.children(der.content(sequence, der.TAG_SEQUENCE)) == items
    assert der.encode_integers(1 << 1000, 5) == sequence


@pytest.mark.parametrize("data", [
    b"", b"\x30", b"\x30\x05\x02\x01",     # truncated
    b"\x30\x80\x00\x00",                     # indefinite length
    b"\x1f\x01\x00",                         # multi-octet tag
    b"\x30\x85\x01\x02\x03\x04\x05",         # oversized length
    b"\x30\x81\x03\x02\x01\x01",             # non-minimal long form
    b"\x30\x82\x00\x83" + bytes(0x83),       # long form with a leading zero octet
])
def test_read_tlv_rejects_malformed_der(data):
    """Truncated data, indefinite, oversized or non-minimal lengths and multi-octet tags
    raise DerError (a ValueError)."""
    with pytest.raises(der.DerError):
        der.read_tlv(data)


def test_content_checks_tag_and_trailing_octets():
    value = der.octet_string(b"abc")
    assert der.content(value) == der.content(value, der.TAG_OCTET_STRING) == b"abc"
    with pytest.raises(der.DerError, match="expected 0x30"):
        der.content(value, der.TAG_SEQUENCE)
    with pytest.raises(der.DerError, match="after"):
        der.content(value + b"\x00")


def test_bit_string_and_null():
    assert der.bit_string(b"\xff").hex() == "030200ff"
    assert der.null().hex() == "0500"
    assert der.tlv(der.TAG_BOOLEAN, b"\xff").hex() == "0101ff"


@pytest.mark.parametrize(("data", "value"), [("020100", 0), ("02020080", 128),
                                             ("020500eeaeda23", 4004436515)])
def test_decode_integer(data, value):
    """One non-negative INTEGER read back."""
    assert der.decode_integer(bytes.fromhex(data)) == value


@pytest.mark.parametrize("data", ["0200", "0201ff", "02020001", "0401", "02010100", "0301"])
def test_decode_integer_is_strict(data):
    """Empty, negative, non-minimal, another tag, trailing octets, truncated: DerError."""
    with pytest.raises(der.DerError):
        der.decode_integer(bytes.fromhex(data))


def test_decode_algorithm():
    """AlgorithmIdentifier: the OID and the parameters TLV, or None without parameters; a
    SEQUENCE of anything else is refused."""
    params = der.encode_integers(23, 11, 4)
    assert der.decode_algorithm(der.sequence(der.oid("1.2.840.10040.4.1"), params)) == \
        ("1.2.840.10040.4.1", params)
    assert der.decode_algorithm(der.sequence(der.oid("1.2.840.113549.2.9"), der.null())) == \
        ("1.2.840.113549.2.9", der.null())
    assert der.decode_algorithm(der.sequence(der.oid("1.2.840.113549.2.7"))) == \
        ("1.2.840.113549.2.7", None)
    for bad in (der.sequence(), der.sequence(der.integer(1)),
                der.sequence(der.oid("1.2.3"), der.null(), der.null()), der.oid("1.2.3")):
        with pytest.raises(der.DerError):
            der.decode_algorithm(bad)
