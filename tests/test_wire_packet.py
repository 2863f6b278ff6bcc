"""Tests for ntpauto.wire.packet: header codec, extension-field framing, MAC detection."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntpauto.wire.packet import (
    MAX_FIELDS,
    MAX_PACKET,
    Header,
    MalformedPacket,
    build,
    parse,
)


def header(**kw):
    """A valid client header with overridable fields."""
    values = dict(leap=0, version=4, mode=3, stratum=0, poll=6, precision=-20, root_delay=0,
                  root_dispersion=0, refid=b"\0\0\0\0", reference=0, origin=0, receive=0,
                  transmit=0x1234567890ABCDEF)
    values.update(kw)
    return Header(**values)


def test_header_known_bytes():
    """The first octet packs LI, VN and mode; timestamps are big-endian 64-bit."""
    data = header(leap=3, version=4, mode=3).encode()
    assert len(data) == 48
    assert data[0] == 0xE3
    assert data[40:48] == bytes.fromhex("1234567890abcdef")


@given(st.builds(
    Header, leap=st.integers(0, 3), version=st.integers(1, 4), mode=st.integers(0, 7),
    stratum=st.integers(0, 255), poll=st.integers(-128, 127),
    precision=st.integers(-128, 127), root_delay=st.integers(0, 2**32 - 1),
    root_dispersion=st.integers(0, 2**32 - 1), refid=st.binary(min_size=4, max_size=4),
    reference=st.integers(0, 2**64 - 1), origin=st.integers(0, 2**64 - 1),
    receive=st.integers(0, 2**64 - 1), transmit=st.integers(0, 2**64 - 1)))
def test_header_round_trip(h):
    """Every header decodes to itself."""
    assert Header.decode(h.encode()) == h


def test_captured_packets_parse_and_reencode(vectors):
    """Every packet the reference captured parses: header, fields and MAC as recorded."""
    count = 0
    for path in sorted((vectors / "pcap").glob("*/packets.json")):
        for record in json.loads(path.read_text()):
            raw = bytes.fromhex(record["raw"])
            pkt = parse(raw)
            assert pkt.header.encode() == raw[:48]
            assert [f.offset for f in pkt.fields] == [e["offset"] for e in record["exts"]]
            assert pkt.keyid == record["mac"]["keyid"]
            assert pkt.digest.hex() == record["mac"]["digest"]
            assert build(pkt.header, [f.data for f in pkt.fields]) == pkt.authenticated_part
            count += 1
    assert count > 300


def test_plain_packet_without_mac():
    """A 48-octet packet has no fields and no MAC."""
    pkt = parse(header().encode())
    assert pkt.fields == () and pkt.keyid is None and not pkt.has_mac


@pytest.mark.parametrize("mac_len", [4, 20, 24])
def test_mac_lengths(mac_len):
    """MACs of 4 (crypto-NAK), 20 (MD5) and 24 (SHA-1) octets are recognised."""
    mac = (7).to_bytes(4, "big") + bytes(mac_len - 4)
    pkt = parse(header().encode() + mac)
    assert pkt.keyid == 7 and len(pkt.digest) == mac_len - 4
    assert pkt.is_crypto_nak == (mac_len == 4)


def test_crypto_nak():
    """Four zero octets after the header is a crypto-NAK."""
    pkt = parse(header().encode() + bytes(4))
    assert pkt.is_crypto_nak and pkt.keyid == 0


def ext(length, declared=None):
    """An extension field of ``length`` octets whose length word says ``declared``."""
    declared = length if declared is None else declared
    return (0x02010000 | declared).to_bytes(4, "big") + bytes(length - 4)


def test_extension_then_mac():
    """A field followed by a 20-octet MAC is split correctly (interop.md 1.2)."""
    data = header().encode() + ext(36) + (70000).to_bytes(4, "big") + bytes(16)
    pkt = parse(data)
    assert len(pkt.fields) == 1 and pkt.fields[0].offset == 48
    assert pkt.fields[0].word >> 16 == 0x0201
    assert pkt.keyid == 70000 and pkt.mac_offset == 84


def test_short_field_then_mac():
    """An 8-octet field (AUTO request) is a field when more than 24 octets remain."""
    data = header().encode() + ext(8) + (70000).to_bytes(4, "big") + bytes(16)
    pkt = parse(data)
    assert [len(f.data) for f in pkt.fields] == [8]


def test_fields_without_mac():
    """Fields may run to the end of the packet with no MAC."""
    pkt = parse(header().encode() + ext(28))
    assert len(pkt.fields) == 1 and pkt.keyid is None


@pytest.mark.parametrize("mac", [b"", (70000).to_bytes(4, "big") + bytes(16)])
def test_field_cap(mac):
    """Two fields (what Autokey sends at most) parse; a third is never framed: the packet is
    dropped with reason toomanyfields, even when the third would be malformed."""
    assert MAX_FIELDS == 2
    two = parse(header().encode() + ext(8) + ext(28) + mac)
    assert [len(f.data) for f in two.fields] == [8, 28]
    for third in (ext(28), ext(28, declared=0), ext(28, declared=0xFFFF)):
        with pytest.raises(MalformedPacket) as info:
            parse(header().encode() + ext(8) + ext(28) + third + mac)
        assert info.value.reason == "toomanyfields"


def test_field_cap_bounds_a_packet_of_tiny_fields():
    """A 2120-octet datagram of 4-octet fields (513 of them) costs two fields' framing."""
    data = header().encode() + ext(4) * ((MAX_PACKET - 48 - 20) // 4) + bytes(20)
    with pytest.raises(MalformedPacket) as info:
        parse(data)
    assert info.value.reason == "toomanyfields"


@pytest.mark.parametrize("tail, why", [
    (b"", "short"),
    (bytes(2), "2 trailing octets"),
    (bytes(6), "6 trailing octets"),
    (bytes(8), "8-octet trailer: neither MAC nor field"),
    (bytes(12), "12-octet MAC"),
    (bytes(16), "16-octet MAC"),
    (ext(28, declared=0), "field length 0"),
    (ext(28, declared=6), "field length not a multiple of 4"),
    (ext(28, declared=22) + bytes(4), "field length 22"),
    (ext(28, declared=0xFFFF), "field length over the packet"),
    (ext(28, declared=40), "field length past the end"),
])
def test_malformed_lengths_dropped(tail, why):
    """Every malformed length of interop.md 1.2 / 10 is a badlength drop."""
    data = header().encode()[: 47 if why == "short" else 48] + tail
    with pytest.raises(MalformedPacket) as info:
        parse(data)
    assert info.value.reason == "badlength"


@pytest.mark.parametrize("size", [0, 1, 47])
def test_short_datagrams(size):
    """Datagrams shorter than the header are dropped."""
    with pytest.raises(MalformedPacket):
        parse(bytes(size))


def test_oversized_dropped_whole():
    """Packets over 2120 octets are dropped whatever they hold."""
    data = header().encode() + ext(MAX_PACKET - 48 - 20) + bytes(24)
    assert len(data) > MAX_PACKET
    with pytest.raises(MalformedPacket):
        parse(data)


@pytest.mark.parametrize("version", [0, 5, 6, 7])
def test_bad_versions(version):
    """Versions 0 and 5-7 are dropped."""
    with pytest.raises(MalformedPacket):
        parse(header(version=version).encode())


def test_kiss_code():
    """A stratum-0 packet carries its kiss code in the refid."""
    h = Header.decode(header(stratum=0, refid=b"RATE").encode())
    assert h.is_kiss and h.kiss_code == "RATE"


def test_build_omits_fields_past_limit():
    """Like the reference, a field that would end past octet 2096 is left out."""
    big = ext(2048)
    data = build(header(), [big, ext(8)])
    assert len(data) == 48 + 2048


@given(st.binary(max_size=300))
def test_parser_never_raises_anything_else(tail):
    """Arbitrary trailers give a packet or MalformedPacket, never another exception."""
    try:
        parse(header().encode() + tail)
    except MalformedPacket:
        pass
