"""CASES.md, the wire: datagram framing, versions, extension-field and MAC layouts, control
packets, outbound padding.  Every input goes through :meth:`Engine.receive` (the real parser)
and the test asserts no reply, no association change and the drop counter."""

from __future__ import annotations

import struct

import pytest

from ntpauto.autokey.fields import pad4
from ntpauto.wire.packet import MAX_PACKET, MODE_CONTROL, MODE_PRIVATE, parse
from tests.security.helpers import (
    ALICE,
    BRENDA,
    OTHER,
    AutokeyRig,
    ClientRig,
    header_bytes,
    request,
    send,
    server_engine,
)

WORD = struct.Struct("!I")


def assert_dropped(engine, data, counter, source=(OTHER, 40000)):
    """``data`` gets no reply, mobilises nothing and moves exactly ``counter``."""
    before = set(engine.associations)
    out, delta = send(engine, data, source)
    assert out == []
    assert delta == {counter: 1}, delta
    assert set(engine.associations) == before


def test_case_01_short_datagrams():
    """1. Datagram < 48 bytes (0, 1, 47) → drop (badlength) (RFC5905 §7.3).
    Every length 0..47, of a client request and of garbage."""
    engine = server_engine()
    for size in range(48):
        assert_dropped(engine, request()[:size], "badlength")
        assert_dropped(engine, bytes([0xE3]) * size, "badlength")


def test_case_02_trailer_not_multiple_of_4():
    """2. 48-byte header + 2 or 6 trailing bytes (not a multiple of 4) → drop (badlength).
    Every trailer length 1..127 that is not a multiple of 4, for client and server packets."""
    engine = server_engine()
    for mode in (3, 1, 4, 5):
        for extra in range(1, 128):
            if extra % 4:
                assert_dropped(engine, header_bytes(mode=mode) + bytes(extra), "badlength")


@pytest.mark.parametrize("trailer", [8, 12, 16])
def test_case_03_trailer_neither_mac_nor_field(trailer):
    """3. 48 + 8 bytes (8-byte trailer, neither MAC nor valid EF) → drop (badlength)
    (RFC5906 §10.).  Every multiple of 4 up to 24 that is not a MAC length (4, 20, 24)."""
    engine = server_engine(keys="1 MD5 sharedsecret\n")
    for mode in (3, 1, 4, 5):
        data = header_bytes(mode=mode) + WORD.pack(1) + bytes(trailer - 4)
        assert_dropped(engine, data, "badlength")


def test_case_03_every_valid_layout_is_not_badlength():
    """The complement of case 3: 4 (crypto-NAK), 20 and 24 are framed, never badlength."""
    engine = server_engine(keys="1 MD5 sharedsecret\n")
    for trailer in (4, 20, 24):
        _, delta = send(engine, request() + WORD.pack(1) + bytes(trailer - 4))
        assert "badlength" not in delta


@pytest.mark.parametrize("size", [48, 52, 68, 72, 100, 47])
def test_case_04_source_port_zero(size):
    """4. UDP source port 0 → drop (badlength).  Every client request size, including those
    of the fast server path (48, 68, 72)."""
    engine = server_engine(keys="1 MD5 sharedsecret\n")
    data = request() + (WORD.pack(1) + bytes(size - 52) if size > 48 else b"")
    assert_dropped(engine, data[:size], "badlength", source=(OTHER, 0))


@pytest.mark.parametrize("version", range(8))
@pytest.mark.parametrize("mode", range(8))
def test_case_05_versions_and_mode_0(version, mode):
    """5. Version 0, 5, 6, 7 → drop; version 1 with mode 0 accepted as client; version 4
    with mode 0 → drop (badlength).  Every (version, mode) pair: versions 0 and 5..7 are
    badlength in every mode; mode 0 is a client request only in version 1."""
    engine = server_engine()
    data = request(mode=mode, version=version)
    out, delta = send(engine, data)
    if mode in (MODE_CONTROL, MODE_PRIVATE):
        # Control and private packets have their own header (mode 6 has its own parser and
        # counters): a bad version is never answered.
        if version == 0 or version > 4:
            assert out == [] and delta, delta
    elif version == 0 or version > 4 or (mode == 0 and version != 1):
        assert out == [] and delta == {"badlength": 1}, delta
    elif mode == 0:
        [reply] = out
        assert parse(reply.data).header.mode == 4 and delta == {"served": 1}
    else:
        assert "badlength" not in delta


def field_packet(length_word: int, body: int, mac: bool = True) -> bytes:
    """Header + one field of ``body`` octets whose Length word says ``length_word`` (+ a
    24-octet MAC so that the field is read as a field)."""
    word = 0x02010000 | (length_word & 0xFFFF)
    return request() + WORD.pack(word) + bytes(body - 4) + (WORD.pack(70000) + bytes(20)
                                                            if mac else b"")


def test_case_07_field_length_zero_terminates():
    """7. EF length field 0 → drop (badlength); must not loop forever.  Length words 0..3,
    alone, before a MAC and after a good field."""
    engine = server_engine()
    for length in range(4):
        for body in (28, 32, 100):
            assert_dropped(engine, field_packet(length, body), "badlength")
            assert_dropped(engine, field_packet(length, body, mac=False), "badlength")
        good = WORD.pack(0x02040008) + WORD.pack(0)
        assert_dropped(engine, request() + good + WORD.pack(0x02010000 | length)
                       + bytes(24) + bytes(24), "badlength")


def test_case_08_field_length_not_multiple_of_4():
    """8. EF length 6 or 22 (not a multiple of 4) → drop (badlength) (RFC5906 §10.).
    Every Length word 1..84 that is not a multiple of 4, in an 84-octet trailer."""
    engine = server_engine()
    for length in range(1, 85):
        if length % 4:
            assert_dropped(engine, field_packet(length, 60), "badlength")


def test_case_09_field_length_past_the_packet():
    """9. EF length 0xFFFF, or larger than the bytes left → drop (badlength / XEVNT_LEN)
    (CVE-2015-7691/7692/7702.).  Every multiple of 4 from one word past the end to 512
    octets past it, and 0xFFFC/0xFFFF; and datagrams over the receive buffer."""
    engine = server_engine()
    body = 40
    remaining = body + 24
    for length in list(range(remaining + 4, remaining + 512, 4)) + [0xFFFC, 0xFFFF]:
        assert_dropped(engine, field_packet(length, body), "badlength")
    for size in (MAX_PACKET + 4, MAX_PACKET + 400, 65000):
        assert_dropped(engine, request() + bytes(size - 48), "badlength")


def test_case_44_autokey_reply_without_mac_or_with_symmetric_key_id(vectors):
    """44. Autokey association receives a reply with **no MAC**, or with key ID ≤ 65535 →
    drop (badauth) (CVE-2015-1798).  No MAC, and key IDs 0 (crypto-NAK aside), 1, 65535
    with a 16-octet digest: badauth, TEST5, nothing changes."""
    rig = AutokeyRig(vectors, until=lambda s: s & 0x7F00 == 0x7F00)
    status, peer = rig.state.status, rig.engine.sys.peer
    rig.poll()
    whole = rig.reply_bytes()
    for data in (whole[:48],):
        org = rig.assoc.org
        _, delta = rig.deliver(data)
        assert delta == {"badauth": 1}
        assert rig.assoc.flash & 0x10 and rig.assoc.org == org
    for keyid in (1, 2, 65535):
        _, delta = rig.deliver(whole[:48] + WORD.pack(keyid) + bytes(16))
        assert delta == {"badauth": 1}
    assert rig.state.status == status and rig.engine.sys.peer == peer


def test_case_45_autokey_mac_shorter_than_20(vectors):
    """45. Autokey MAC shorter than 20 bytes (e.g. 12) → drop (badauth).  A key ID alone
    (4 octets) is badauth; 8, 12 and 16 octets cannot be framed and are badlength: either
    way dropped with nothing changed."""
    rig = AutokeyRig(vectors, until=lambda s: s & 0x7F00 == 0x7F00)
    status = rig.state.status
    rig.poll()
    whole = rig.reply_bytes()
    keyid = whole[48:52]
    for size, counter in ((4, "badauth"), (8, "badlength"), (12, "badlength"),
                          (16, "badlength")):
        xmt = rig.assoc.xmt
        _, delta = rig.deliver(whole[:48] + keyid + whole[52:48 + size])
        assert delta == {counter: 1}, (size, delta)
        assert rig.assoc.xmt == xmt
    assert rig.state.status == status
    _, delta = rig.deliver(whole)  # the genuine reply still counts afterwards
    assert delta.get("samples") == 1


@pytest.mark.parametrize("mode", [MODE_CONTROL, MODE_PRIVATE])
def test_case_63_control_error_responses_never_answered(mode):
    """63. Mode-7 or mode-6 *error response* addressed to us → never reply (no ping-pong)
    (CVE-2009-3563).  Responses with and without the error bit, every version 1..4, from a
    server's port and a client's."""
    engine = server_engine()
    for version in range(1, 5):
        for flags in (0x80, 0xC0, 0xA0, 0xE0):  # R set: responses
            first = (version << 3) | mode
            data = bytes([first, flags | 0x01]) + bytes(10)
            if mode == MODE_PRIVATE:
                data = bytes([0x80 | first, 0x00, 0x03, 0x7A ^ flags]) + bytes(44)
            for source in ((OTHER, 123), (OTHER, 40000)):
                out, delta = send(engine, data, source)
                assert out == [], (version, flags)
                assert delta.get("control" if mode == MODE_CONTROL else "mode7") == 1, delta


def padding_of(data: bytes) -> list[bytes]:
    """The padding octets after each field's value and signature."""
    out = []
    for item in parse(data).fields:
        raw = item.data
        if len(raw) < 24:
            continue
        vlen = WORD.unpack_from(raw, 16)[0]
        out.append(raw[20 + vlen:20 + pad4(vlen)])
        sig_at = 20 + pad4(vlen)
        slen = WORD.unpack_from(raw, sig_at)[0]
        out.append(raw[sig_at + 4 + slen:sig_at + 4 + pad4(slen)])
    return out


@pytest.mark.parametrize("scenario", ["tc-rsa-md5", "tc-dsa-sha1", "gq"])
def test_case_65_outbound_padding_is_zero(vectors, scenario):
    """65. All outbound EF padding bytes are zero → byte-level check.  Every field of every
    packet of client and server in full dances (names of 11 and 12 octets, DSA signatures
    of odd lengths, GQ values)."""
    rig = AutokeyRig(vectors, scenario=scenario, until=lambda s: s & 0x7F00 == 0x7F00)
    rig.frozen = False
    rig.net.run(120)
    padded = 0
    for delivery in rig.net.capture:
        if delivery.source[0] in (ALICE, BRENDA):
            for pad in padding_of(delivery.data):
                assert pad == bytes(len(pad)), delivery
                padded += len(pad) > 0
    assert padded >= 2


def test_case_65_symmetric_padding(vectors):
    """65, symmetric mode: both peers' fields (queued responses before requests)."""
    from ntpauto.testing import SimulatedNetwork
    from tests.security.helpers import EPOCH, vector_host

    net = SimulatedNetwork(seed=5, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=vector_host(vectors, "sym", "alice"))
    net.add_host("10.0.0.3", f"peer {ALICE} autokey iburst minpoll 4\n",
                 autokey=vector_host(vectors, "sym", "carol"))
    net.run(300)
    pads = [p for d in net.capture for p in padding_of(d.data)]
    assert pads and all(p == bytes(len(p)) for p in pads)


def test_client_rig_replies_are_samples():
    """The ClientRig's replies are accepted (the on-wire cases rely on it)."""
    rig = ClientRig()
    rig.poll()
    _, delta = rig.deliver(rig.reply().encode())
    assert delta == {"samples": 1}
