"""The amplification limit: a reply to a source that has not completed a normal exchange (its
request does not echo one of our recent replies) is never larger than the request; a source
that echoes gets the full response; reference-shaped and our own clients still finish."""

from __future__ import annotations

import json
import random
from pathlib import Path

import attrs
import pytest

from ntpauto.auth.autokey import mac, server_reply_key, session_key, verify_mac
from ntpauto.autokey.amplification import ECHO_BITS, echo_key, echo_window, echoes, tagged
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, GQ, LEAP, Field, decode
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.status import Flag
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

CLIENT = ("192.0.2.10", 123)
SERVER = ("192.0.2.1", 123)
T0 = 1000.0
EPOCH = 1_795_460_000.0
KEYID = 0x1234_5678


# --- the echo tag ---------------------------------------------------------------------------


def stamp(i: int) -> bytes:
    return (0xEEAE_0000_0000_0000 + i).to_bytes(8, "big")


def test_a_tagged_timestamp_echoes_its_key_only_while_recent():
    key = echo_key(0x1234_5678, CLIENT[0], SERVER[0])
    assert key != echo_key(0x1234_5679, CLIENT[0], SERVER[0])  # another seed
    assert key != echo_key(0x1234_5678, "192.0.2.11", SERVER[0])  # another client
    transmit = 0xEEAE_1234_5678_9ABC
    reply = tagged(transmit, key)
    origin = reply.to_bytes(8, "big")
    assert reply >> ECHO_BITS == transmit >> ECHO_BITS  # only the low bits are the tag
    later = transmit + (31 << 32)
    assert echoes(origin, key, later, 4)  # 31 s later, within two polls of 16 s
    assert not echoes(origin, key ^ 1 << 7, later, 4)
    assert not echoes(bytes(8), key, later, 4)
    assert not echoes((reply ^ 1).to_bytes(8, "big"), key, later, 4)
    assert not echoes(origin, key, transmit + (33 << 32), 4)  # too old for a 16 s poll
    assert echoes(origin, key, transmit + (33 << 32), 6) and echo_window(6) == 128
    assert echo_window(0) == 32 and echo_window(30) == 2 << 17
    assert not echoes(origin, key, transmit - (2 << 32), 4)  # from the future


def test_guessed_origins_echo_about_once_in_4096():
    """A spoofer's guesses of a recent timestamp: the odds are the tag's size."""
    rng = random.Random(11)
    key = echo_key(7, CLIENT[0], SERVER[0])
    now = 0xEEAE_0000_0000_0000
    hits = sum(echoes((now - rng.randrange(1 << 36)).to_bytes(8, "big"), key, now, 4)
               for _ in range(1 << 16))
    assert 4 <= hits <= 40  # 16 expected


def test_the_first_stages_autokey_replies_are_tagged(tc):
    """Replies to time requests under a session key carry the tag: their echo proves the
    source to the field requests that follow (test below)."""
    engine, _alice, _brenda = tc
    cookie = engine.autokey.responder.server_cookie(CLIENT[0], SERVER[0], engine.crypto_now())
    head = Header(3, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 0xEEAE_0000_0000_0009)
    data = head.encode() + mac(session_key(CLIENT[0], SERVER[0], KEYID, cookie), KEYID,
                               head.encode())
    reply = exchange(engine, data)
    assert engine.counters["rx_client"] == 0  # the first stage answered
    rx = unix_to_ntp(engine.clock.now())
    assert engine.session_keys.echoed(CLIENT[0], SERVER[0], reply[40:48], rx, 6)
    assert not engine.session_keys.echoed("192.0.2.11", SERVER[0], reply[40:48], rx, 6)


# --- the engine -----------------------------------------------------------------------------


def creds(vectors: Path, scenario: str, name: str, password: str) -> HostCredentials:
    return load_host(vectors / "keys" / scenario / name, host=name, password=password)


def server(host: HostCredentials, text: str = "localclock stratum 1\n", *,
           epoch: float = EPOCH, address: str = SERVER[0]) -> Engine:
    """A synchronised server engine whose host has signed its values; its clock moves on
    by 0.5 s at each :func:`exchange` (so every reply has its own transmit timestamp)."""
    elapsed = [T0]
    engine = Engine(parse_config(text), SimulatedClock(lambda: elapsed[0], epoch=epoch),
                    autokey=AutokeyNode(host), local_address=address)
    engine.elapsed = elapsed  # type: ignore[attr-defined]
    engine.start(T0)
    engine.sys = attrs.evolve(engine.sys, leap=0, stratum=1, refid=b"LOCL")
    host.signature_update(engine.crypto_now())
    return engine


def request(f: Field | None, *, origin: bytes = bytes(8), client: str = CLIENT[0],
            server_address: str = SERVER[0], keyid: int = KEYID, transmit: int = 1) -> bytes:
    head = bytearray(Header(3, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                            0xEEAE_0000_0000_0000 + transmit).encode())
    head[24:32] = origin
    data = bytes(head) + (f.encode() if f is not None else b"")
    return data + mac(session_key(client, server_address, keyid, 0), keyid, data)


def exchange(engine: Engine, data: bytes, client=CLIENT) -> bytes:
    engine.elapsed[0] += 0.5  # type: ignore[attr-defined]
    [reply] = engine.receive(data, client, unix_to_ntp(engine.clock.now()),
                             engine.elapsed[0], (engine.local_address, 123))  # type: ignore
    return reply.data


def response_of(reply: bytes) -> Field:
    [f] = [decode(e.data) for e in parse(reply).fields]
    return f


@pytest.fixture
def tc(vectors):
    alice = creds(vectors, "tc-rsa-md5", "alice", "alicepw")
    brenda = creds(vectors, "tc-rsa-md5", "brenda", "brendapw")
    brenda.signature_update(unix_to_ntp(EPOCH) >> 32)
    return server(alice), alice, brenda


def test_unproven_cert_request_gets_the_empty_response(tc):
    """A CERT request from a source that never saw our replies: an 8-octet CERT response
    with no value, not larger than the request, MACed so the client takes it (cookie 0);
    no private-key work is done."""
    engine, alice, _ = tc
    operations = sum(engine.autokey.responder.key_operations.values())
    data = request(Field(code=CERT, associd=7, value=alice.name.encode()))
    reply = exchange(engine, data)
    assert len(reply) <= len(data)
    f = response_of(reply)
    assert (f.code, f.response, f.error, f.short, f.associd) == (CERT, True, False, True, 7)
    packet = parse(reply)
    key = server_reply_key(SERVER[0], CLIENT[0], KEYID, 0, has_fields=True)
    assert packet.keyid == KEYID and verify_mac(key, packet.authenticated_part,
                                                packet.digest)
    assert engine.counters["autokey_amplification"] == 1
    assert sum(engine.autokey.responder.key_operations.values()) == operations


def test_echoing_the_reply_gets_the_full_response(tc):
    """The next request echoes the empty reply's transmit timestamp: the certificate."""
    engine, alice, _ = tc
    cert = Field(code=CERT, associd=7, value=alice.name.encode())
    first = exchange(engine, request(cert))
    data = request(cert, origin=first[40:48], transmit=2)
    reply = exchange(engine, data)
    assert len(reply) > len(data) + 300
    f = response_of(reply)
    assert f.value == alice.certificate.der and f.signature
    # A forged origin does not count: the next one is cut again.
    data = request(cert, origin=stamp(44), transmit=3)
    assert len(exchange(engine, data)) <= len(data)


@pytest.mark.parametrize("text", ["localclock stratum 1\n",
                                  "localclock stratum 1\nrestrict default limited kod\n"])
def test_a_field_request_after_time_requests_gets_the_full_response(tc, text):
    """After the dance a client asks for time (requests without fields, answered by the
    server's first stage) and later for a field (SIGN, LEAP, a refreshed CERT) echoing the
    last time reply: answered in full, not cut to the empty response."""
    _, alice, _ = tc
    engine = server(alice, text)
    cookie = engine.autokey.responder.server_cookie(CLIENT[0], SERVER[0], engine.crypto_now())
    origin = bytes(8)
    for i in range(3):
        head = bytearray(Header(3, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                                0xEEAE_0000_0000_0000 + 10 + i).encode())
        head[24:32] = origin
        data = bytes(head) + mac(session_key(CLIENT[0], SERVER[0], KEYID, cookie), KEYID,
                                 bytes(head))
        before = engine.counters["rx_client"]
        origin = exchange(engine, data)[40:48]
        assert engine.counters["rx_client"] == before  # the first stage answered
    cert = request(Field(code=CERT, associd=7, value=alice.name.encode()), origin=origin,
                   transmit=20)
    assert response_of(exchange(engine, cert)).value == alice.certificate.der
    assert engine.counters["autokey_amplification"] == 0


def test_bad_mac_gets_a_crypto_nak_not_the_empty_response(tc):
    engine, alice, _ = tc
    data = bytearray(request(Field(code=CERT, associd=7, value=alice.name.encode())))
    data[-1] ^= 1
    reply = exchange(engine, bytes(data))
    assert len(reply) == 52 and reply.endswith(b"\0\0\0\0")
    assert engine.counters["badauth"] == 1


def test_no_reply_to_an_unproven_source_is_larger_than_its_request(tc):
    """Spoofed requests of every kind with random origins: never a larger reply."""
    engine, alice, brenda = tc
    rng = random.Random(7)
    kinds = [Field.short_form(ASSOC, 3), Field(code=CERT, associd=3, value=b"alice@alice"),
             brenda.cook_request(3), brenda.sign_request(3), Field.short_form(AUTO, 3),
             Field.short_form(LEAP, 3), brenda.assoc_field(3, response=False),
             Field(code=GQ, associd=3, value=b"\x01" * 32)]
    for i in range(200):
        f = kinds[i % len(kinds)]
        client = f"198.51.100.{rng.randrange(1, 255)}"
        data = request(f, origin=rng.randbytes(8), client=client, transmit=i)
        engine.elapsed[0] += 0.01  # type: ignore[attr-defined]
        replies = engine.receive(data, (client, 123), unix_to_ntp(engine.clock.now()),
                                 engine.elapsed[0], SERVER)  # type: ignore[attr-defined]
        assert all(len(r.data) <= len(data) for r in replies), f.name
    assert engine.counters["autokey_amplification"] > 50


def test_amplification_allow_lifts_the_limit(vectors):
    alice = creds(vectors, "tc-rsa-md5", "alice", "alicepw")
    engine = server(alice, "localclock stratum 1\namplification allow\n")
    data = request(Field(code=CERT, associd=7, value=alice.name.encode()))
    assert len(exchange(engine, data)) > len(data) + 300
    assert engine.counters["autokey_amplification"] == 0


# --- whole dances ---------------------------------------------------------------------------


def captured(vectors: Path, scenario: str) -> list[dict]:
    return json.loads((vectors / "pcap" / scenario / "packets.json").read_text())


@pytest.mark.parametrize("scenario", ["tc-rsa-md5", "gq", "mv-trad"])
def test_reference_shaped_client_completes(vectors, scenario):
    """The reference client's requests as captured, sent to our server with the origin a
    reference client puts there (the transmit timestamp of the last reply it received,
    which the captures show from the second request on) and re-MACed: every response is
    full, also after requests without fields (the first stage of our server answers them
    and records its replies' transmit timestamps as the full path does).
    The same requests with the captured origins (echoing someone else's replies) never get
    a reply larger than the request."""
    packets = captured(vectors, scenario)
    keys = vectors / "pcap" / scenario / "keys" / "alice"
    alice = load_host(keys, host="alice", password="alicepw")
    client, address = packets[0]["src"], packets[0]["dst"]
    engine = server(alice, epoch=packets[0]["time"], address=address)
    requests = [p for p in packets if p["src"] == client and p["mode"] == 3]
    origin = bytes(8)
    full = empties = 0
    for p in requests:
        raw = bytes.fromhex(p["raw"])
        fields = [decode(raw[e["offset"]:e["offset"] + e["len"]]) for e in p["exts"]]
        for _attempt in range(2):
            data = _reference_request(raw, fields, p["mac"]["keyid"], origin, client, address,
                                      engine)
            reply = exchange(engine, data, (client, 123))
            assert not reply.endswith(b"\0\0\0\0")  # never a crypto-NAK
            origin = reply[40:48]
            if not fields:
                break
            f = response_of(reply)
            assert not f.error and f.code == fields[0].code, f
            if f.short:  # the empty response: no value (each request here has one)
                empties += 1
                continue
            full += 1
            break
        else:
            raise AssertionError(f"{fields[0].name} never answered in full")
    assert empties == 0 and full == sum(1 for p in requests if p["exts"]) >= 5
    assert engine.counters["autokey_amplification"] == empties
    # The captured origins echo the reference server, not us: limited throughout.
    spoofed = server(load_host(keys, host="alice", password="alicepw"),
                     epoch=packets[0]["time"], address=address)
    for p in requests:
        raw = bytes.fromhex(p["raw"])
        fields = [decode(raw[e["offset"]:e["offset"] + e["len"]]) for e in p["exts"]]
        data = _reference_request(raw, fields, p["mac"]["keyid"], raw[24:32], client, address,
                                  spoofed)
        assert len(exchange(spoofed, data, (client, 123))) <= len(data)


def _reference_request(raw: bytes, fields: list[Field], keyid: int, origin: bytes,
                       client: str, address: str, engine: Engine) -> bytes:
    """A captured request with ``origin`` in place, MACed as the reference client does:
    cookie 0 with fields, else the cookie our server (``engine``) gave (COOK)."""
    head = raw[:24] + origin + raw[32:48]
    data = head + b"".join(f.encode() for f in fields)
    cookie = 0 if fields else engine.autokey.responder.server_cookie(
        client, address, engine.crypto_now())
    return data + mac(session_key(client, address, keyid, cookie), keyid, data)


@pytest.mark.parametrize("text", ["", "amplification allow\n"])
def test_our_client_dance_completes(vectors, text):
    """Our own client (SimulatedNetwork, GQ) lights every flag with the limit on and off;
    with it on, at most a couple of responses were cut, never one larger than its request
    to a source that had not echoed."""
    net = SimulatedNetwork(seed=3, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n" + text,
                         autokey=creds(vectors, "gq", "alice", "alicepw"))
    brenda = net.add_host("10.0.0.2", "server 10.0.0.1 autokey ident alice iburst minpoll 4\n",
                          autokey=creds(vectors, "gq", "brenda", "brendapw"), offset=0.02)
    net.run(300)
    [assoc] = brenda.engine.associations.values()
    state = assoc.autokey.state
    assert state.status & Flag.LEAP and state.proventic
    assert brenda.engine.sys.peer == assoc.associd
    cut = alice.engine.counters["autokey_amplification"]
    assert cut <= 2 if not text else cut == 0


@pytest.mark.parametrize("scheme", ["tc", "iff"])
def test_group_client_with_a_shorter_name_completes(tmp_path, scheme):
    """A ``host@group`` client whose name is shorter than the server's (``bo@alice`` of
    ``alice@alice``, as in ``ntpauto demo``): the full ASSOC response is larger than the
    request, and the group gate drops an ASSOC response without a name, so the first answer
    is the bare header under cookie 0; the client takes its timestamps, echoes them, gets
    the full ASSOC response and finishes the dance."""
    from tests.autokey_groups import EPOCH as GROUP_EPOCH
    from tests.autokey_groups import make_group

    keys = make_group(tmp_path, scheme, ("alice", "bo"), trusted=("alice",),
                      servers=("alice",))
    net = SimulatedNetwork(seed=5, latency=0.01, jitter=0.002, epoch=GROUP_EPOCH)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n",
                         autokey=keys.credentials("alice"))
    bo = net.add_host("10.0.0.2", keys.server_line("10.0.0.1"),
                      autokey=keys.credentials("bo"), offset=0.02)
    net.run(120)
    [assoc] = bo.engine.associations.values()
    state = assoc.autokey.state
    assert state.proventic and state.status & Flag.LEAP
    assert bo.engine.sys.peer == assoc.associd
    assert alice.engine.counters["autokey_amplification"] >= 1  # the first ASSOC was cut
    assert bo.engine.counters["declined"] == 0


def test_cut_assoc_answer_is_the_header_under_cookie_0(tc):
    """The cut answer to an ASSOC request (server name longer than the client's) from an
    unproven source: no extension field, never larger than the request, MACed under the
    cookie-0 reply key a client verifies before COOK."""
    engine, _alice, _brenda = tc
    data = request(Field(code=ASSOC, associd=7, value=b"b@alice"))
    reply = exchange(engine, data)
    assert len(reply) == 48 + 20 < len(data)
    packet = parse(reply)
    assert not packet.fields and packet.keyid == KEYID
    key = server_reply_key(SERVER[0], CLIENT[0], KEYID, 0, has_fields=False)
    assert verify_mac(key, packet.authenticated_part, packet.digest)
    assert engine.counters["autokey_amplification"] == 1
