"""Tests for the engine's stateless server path, restrictions and drops, driven directly."""

from __future__ import annotations

import pytest

from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.config import parse_config
from ntpauto.engine import Engine, build_engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.wire.packet import Header, parse
from ntpauto.wire.timestamps import ts_diff, unix_to_ntp

CLIENT = ("192.0.2.10", 40000)
T0 = 1000.0


def engine_for(text: str, keys: str | None = None) -> Engine:
    """A started engine whose clock reads true time (a simulated clock at offset 0)."""
    clock = SimulatedClock(lambda: T0, epoch=1_795_000_000.0)
    store = None
    if keys:
        parsed = parse_keys(keys)
        store = KeyStore(parsed, parsed.keys())
    engine = Engine(parse_config(text), clock, keys=store)
    engine.start(T0)
    return engine


def request(mode: int = 3, version: int = 4, transmit: int = 0xEEAE_0000_1234_5678,
            poll: int = 6) -> bytes:
    """A client request header."""
    return Header(0, version, mode, 0, poll, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                  transmit).encode()


def serve(engine: Engine, data: bytes, source=CLIENT):
    rx = unix_to_ntp(engine.clock.now())
    return engine.receive(data, source, rx, T0)


def test_primary_server_reply():
    """A stratum-1 server echoes the client's transmit as origin and stamps rx/tx."""
    engine = engine_for("localclock stratum 1\n")
    [reply] = serve(engine, request())
    header = parse(reply.data).header
    assert reply.address == CLIENT
    assert (header.mode, header.stratum, header.refid, header.leap) == (4, 1, b"LOCL", 0)
    assert header.origin == 0xEEAE_0000_1234_5678
    assert header.poll == 6 and header.version == 4
    assert ts_diff(header.transmit, header.receive) >= 0
    assert engine.counters["served"] == 1


def test_unsynchronised_server_replies_with_init():
    """Before it has a source the server answers leap 3, stratum 0, refid INIT (as ntpd)."""
    engine = engine_for("restrict default\n")
    [reply] = serve(engine, request())
    header = parse(reply.data).header
    assert (header.leap, header.stratum, header.refid) == (3, 0, b"INIT")


def test_version_1_mode_0_is_a_client():
    """An NTPv1 packet with mode 0 is answered as a client request."""
    engine = engine_for("localclock stratum 1\n")
    [reply] = serve(engine, request(mode=0, version=1))
    assert parse(reply.data).header.mode == 4


@pytest.mark.parametrize("version", [2, 3, 4])
def test_mode_0_otherwise_dropped(version):
    """Mode 0 is only accepted from version 1."""
    engine = engine_for("localclock stratum 1\n")
    assert serve(engine, request(mode=0, version=version)) == []
    assert engine.counters["badlength"] == 1


@pytest.mark.parametrize("mode, counter", [(6, "control_response"), (7, "mode7")])
def test_control_responses_and_mode_7_never_answered(mode, counter):
    """A mode 6 response (R bit) gets no reply (no ping-pong), nor does mode 7; mode 6
    requests are tests/test_mode6.py's."""
    engine = engine_for("localclock stratum 1\n")
    packet = bytearray(request(mode=mode))
    packet[1] = 0x80 | 2  # R bit, READVAR
    assert serve(engine, bytes(packet)) == []
    assert engine.counters[counter] == 1


def test_source_port_zero_dropped():
    """A datagram from UDP port 0 is dropped."""
    engine = engine_for("localclock stratum 1\n")
    assert serve(engine, request(), source=("192.0.2.10", 0)) == []
    assert engine.counters["badlength"] == 1


@pytest.mark.parametrize("size", [0, 1, 47])
def test_short_datagram_counted(size):
    """Short datagrams are counted as badlength and never answered."""
    engine = engine_for("localclock stratum 1\n")
    assert serve(engine, bytes(size)) == []
    assert engine.counters["badlength"] == 1


def test_unsolicited_server_packet_dropped():
    """A mode-4 packet from a host we have no association with is counted and dropped."""
    engine = engine_for("localclock stratum 1\n")
    assert serve(engine, request(mode=4)) == []
    assert engine.counters["noassoc"] == 1


@pytest.mark.parametrize("flags, counter", [("ignore", "restricted"),
                                            ("noserve", "restricted"),
                                            ("notrust", "restricted")])
def test_restrictions(flags, counter):
    """restrict ignore/noserve/notrust drop an unauthenticated request."""
    engine = engine_for(f"localclock stratum 1\nrestrict default {flags}\n")
    assert serve(engine, request()) == []
    assert engine.counters[counter] == 1


def test_restrict_most_specific_wins():
    """A per-network rule overrides the default."""
    engine = engine_for("localclock stratum 1\nrestrict default ignore\n"
                        "restrict 192.0.2.0 mask 255.255.255.0\n")
    assert len(serve(engine, request())) == 1
    assert serve(engine, request(), source=("198.51.100.1", 123)) == []


def test_limited_without_kod_drops_silently():
    """Rate-limited sources get nothing when kod is not set."""
    engine = engine_for("localclock stratum 1\nrestrict default limited\n")
    results = [serve(engine, request(transmit=i + 1)) for i in range(3)]
    assert results[0] and not results[1] and not results[2]  # same instant: < minimum
    assert engine.counters["limited"] == 2 and engine.counters["kodsent"] == 0


def test_limited_with_kod_sends_rate():
    """With kod the limited source gets a RATE kiss echoing its transmit timestamp."""
    engine = engine_for("localclock stratum 1\nrestrict default limited kod\n")
    serve(engine, request(transmit=1))
    [kod] = serve(engine, request(transmit=2))
    header = parse(kod.data).header
    assert (header.stratum, header.refid, header.leap, header.origin) == (0, b"RATE", 3, 2)


def test_authenticated_request_gets_authenticated_reply():
    """A request with a trusted key is answered with a MAC under the same key."""
    keys = "5 SHA1 0123456789abcdef0123456789abcdef01234567\n"
    engine = engine_for("localclock stratum 1\n", keys)
    data = request()
    data += engine.keys.sign(5, data)
    [reply] = serve(engine, data)
    pkt = parse(reply.data)
    assert pkt.keyid == 5
    assert engine.keys.verify(5, pkt.authenticated_part, pkt.digest)


def test_bad_mac_gets_crypto_nak():
    """A request whose MAC fails is answered with a crypto-NAK and counted."""
    engine = engine_for("localclock stratum 1\n", "5 MD5 secret\n")
    data = request() + (5).to_bytes(4, "big") + bytes(16)
    [reply] = serve(engine, data)
    assert parse(reply.data).is_crypto_nak
    assert engine.counters["badauth"] == 1


def test_unknown_key_gets_crypto_nak():
    """A key we do not have is an authentication failure."""
    engine = engine_for("localclock stratum 1\n")
    data = request() + (77).to_bytes(4, "big") + bytes(16)
    [reply] = serve(engine, data)
    assert parse(reply.data).is_crypto_nak


def test_build_engine_missing_keys_file(tmp_path):
    """A keys directive naming a missing file is an error naming the path."""
    config = parse_config(f"keys {tmp_path}/nope.keys\n", str(tmp_path / "ntp.conf"))
    with pytest.raises(Exception) as info:
        build_engine(config, SimulatedClock(lambda: 0.0))
    assert "nope.keys" in str(info.value)


def test_build_engine_missing_leapfile(tmp_path):
    """A leapfile directive naming a missing file is an error naming the path."""
    config = parse_config(f"leapfile {tmp_path}/leap.list\n", str(tmp_path / "ntp.conf"))
    with pytest.raises(Exception) as info:
        build_engine(config, SimulatedClock(lambda: 0.0))
    assert "leap.list" in str(info.value)


def test_engine_status_shape():
    """status() reports system variables, associations and counters."""
    engine = engine_for("localclock stratum 1\n")
    status = engine.status()
    assert status["system"]["stratum"] == 1 and status["system"]["refid"] == "LOCL"
    [assoc] = status["associations"]
    assert assoc["refclock"] and assoc["system_peer"]


def test_restrict_default_covers_ipv6_and_ipv6_masks():
    """`restrict default` applies to IPv6 sources too; IPv6 masks are honoured."""
    engine = engine_for("localclock stratum 1\nrestrict default ignore\n"
                        "restrict 2001:db8:: mask ffff:ffff::\n")
    assert serve(engine, request(), source=("2001:db9::1", 123)) == []
    assert len(serve(engine, request(), source=("2001:db8:1::1", 123))) == 1


def kisses(replies) -> list:
    return [parse(r[0].data).header for r in replies if r]


@pytest.mark.parametrize("data", [request(), request(mode=0, version=1)],
                         ids=["first-stage", "full-path"])
def test_flood_of_limited_packets_gets_one_kod_per_interval(data):
    """A source sending 20 packets a second for a minute gets one RATE kiss per `discard
    average` interval (8 s), as ntpd (ntp_monitor.c): the first limited packet and then one
    each time its bucket drained below the limit; the others are dropped, counted."""
    engine = engine_for("localclock stratum 1\nrestrict default limited kod\n")
    rx = unix_to_ntp(engine.clock.now())
    times = [T0 + 0.05 * i for i in range(1200)]
    replies = [engine.receive(data, CLIENT, rx, t) for t in times]
    sent = [t for t, r in zip(times, replies, strict=True) if r]
    assert len(replies[0]) == 1 and parse(replies[0][0].data).header.stratum == 1
    kissed = sent[1:]
    assert all(h.refid == b"RATE" for h in kisses(replies[1:]))
    assert 7 <= len(kissed) <= 8  # 60 s / 8 s
    assert all(b - a >= 8.0 for a, b in zip(kissed, kissed[1:], strict=False))
    counters = engine.counters
    assert counters["limited"] == 1199 and counters["kodsent"] == len(kissed)
    assert counters["kod_withheld"] == 1199 - len(kissed)


def test_kissed_client_that_backs_off_is_served_again():
    """After a kiss the bucket is over the limit by one headway: a client that slows down
    to twice the average interval is served again at its next request."""
    engine = engine_for("localclock stratum 1\nrestrict default limited kod\n")
    rx = unix_to_ntp(engine.clock.now())
    serve_at = [engine.receive(request(), CLIENT, rx, T0 + t) for t in (0, 0.1, 16.1, 32.1)]
    assert [len(r) for r in serve_at] == [1, 1, 1, 1]
    assert [parse(r[0].data).header.stratum for r in serve_at] == [1, 0, 1, 1]


def test_kod_limit_is_per_source():
    """Another source's flood does not use up this source's kiss."""
    engine = engine_for("localclock stratum 1\nrestrict default limited kod\n")
    rx = unix_to_ntp(engine.clock.now())
    other = ("192.0.2.99", 123)
    for i in range(100):
        engine.receive(request(), other, rx, T0 + 0.01 * i)
    first = engine.receive(request(), CLIENT, rx, T0 + 1)
    [kiss] = engine.receive(request(), CLIENT, rx, T0 + 1.01)
    assert len(first) == 1 and parse(kiss.data).header.refid == b"RATE"


def test_three_extension_fields_dropped_and_counted():
    """A client request with three extension fields is dropped before any field is looked
    at and counted under toomanyfields (metrics: a drop reason)."""
    from ntpauto.metrics import collect

    engine = engine_for("localclock stratum 1\n")
    field = (0x02020000 | 28).to_bytes(4, "big") + bytes(24)
    for count, answered in ((1, 1), (2, 1), (3, 0), (7, 0)):
        data = request() + field * count + (70000).to_bytes(4, "big") + bytes(16)
        assert len(serve(engine, data)) == answered
    assert engine.counters["toomanyfields"] == 2
    [sample] = [s for family in collect(engine) for s in family.samples
                if s.name == "ntpauto_packets_dropped_total"
                and s.labels == {"reason": "toomanyfields"}]
    assert sample.value == 2
