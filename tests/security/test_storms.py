"""Replay and reset storms (issue 7 item 6): after a complete dance, hundreds of crypto-NAKs
with wrong origins, replayed AUTO/COOK/CERT responses and protocol-error bait (E-bit
responses, wrong association IDs, unknown response codes), from the server's address and
from others, off-path (wrong origins) and on-path (the right origin and key ID, copied from
the request they answer), do not reset a healthy association or cost it synchronisation."""

from __future__ import annotations

import random
import struct

import pytest

from ntpauto.auth.autokey import mac, session_key
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, LEAP, Field, decode
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import Header, parse
from ntpauto.wire.timestamps import unix_to_ntp
from tests.security.helpers import ALICE, BRENDA, EPOCH, vector_host

WORD = struct.Struct("!I")
PROGRESS = 0x7F00
CAROL = "10.0.0.3"
SOURCES = [(ALICE, 123), (ALICE, 40000), ("192.0.2.7", 123), ("10.0.0.9", 123)]


def bait_fields(rng: random.Random, associd: int, peer: int, replayed: list[Field]) -> list:
    """One packet's worth of protocol-error bait or replayed responses."""
    choice = rng.randrange(6)
    if choice == 0:  # E-bit response
        code = rng.choice((ASSOC, CERT, COOK, AUTO, LEAP, 7, 8))
        return [Field.short_form(code, rng.choice((associd, peer)), response=True,
                                 error=True)]
    if choice == 1:  # ASSOC response with another association ID
        return [Field(code=ASSOC, response=True, associd=peer ^ rng.randrange(1, 65536),
                      filestamp=0x80003, value=b"alice@alice")]
    if choice == 2:  # unknown response code (0x820A, ...)
        return [Field(code=rng.choice((0x0A, 0x0B, 0x40, 0xFF)), response=True,
                      associd=associd, timestamp=1, value=b"bait")]
    if choice == 3:  # signed response for another association
        f = rng.choice(replayed)
        return [Field(code=f.code, response=True, associd=associd ^ 0x5A5A,
                      timestamp=f.timestamp, filestamp=f.filestamp, value=f.value,
                      signature=f.signature)]
    return [rng.choice(replayed)]  # replayed genuine AUTO/COOK/CERT/... response


def packet(header: Header, fields: list[Field], src: str, dst: str, keyid: int,
           digest: str = "md5") -> bytes:
    data = header.encode() + b"".join(f.encode() for f in fields)
    return data + mac(session_key(src, dst, keyid, 0, digest), keyid, data, digest)


def responses_in(capture, source: str) -> list[Field]:
    out = []
    for d in capture:
        if d.source[0] == source:
            out += [f for f in (decode(x.data) for x in parse(d.data).fields) if f.response]
    return out


def snapshot(engine, assoc) -> tuple:
    state = assoc.autokey.state
    return state.status, state.cookie, state.peer_associd, engine.sys.peer


@pytest.fixture
def healthy_client(vectors):
    """brenda's client association with alice after the whole dance, synchronised."""
    net = SimulatedNetwork(seed=21, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n",
                 autokey=vector_host(vectors, "tc-rsa-md5", "alice"))
    brenda = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4 maxpoll 4\n",
                          autokey=vector_host(vectors, "tc-rsa-md5", "brenda"), offset=0.05)
    net.run(300)
    [assoc] = brenda.engine.associations.values()
    assert assoc.autokey.state.status & PROGRESS == PROGRESS
    assert brenda.engine.sys.peer == assoc.associd
    return net, brenda, assoc


def test_off_path_storm_client(healthy_client):
    """600 packets over 5 minutes, from alice's address and others, none with the right
    origin: crypto-NAKs, replayed responses and bait.  All are dropped (bogusorg, noassoc,
    badauth), nothing is reset, brenda stays synchronised and keeps taking samples."""
    net, brenda, assoc = healthy_client
    engine = brenda.engine
    rng = random.Random(1)
    before = snapshot(engine, assoc)
    counters = engine.counters
    resets, samples = counters["autokey_resets"], counters["samples"]
    drops = counters["bogusorg"] + counters["noassoc"] + counters["badauth"] + \
        counters["oldpkt"]
    replayed = responses_in(net.capture, ALICE)
    old_replies = [d.data for d in net.capture if d.source[0] == ALICE]
    assert {f.code for f in replayed} >= {ASSOC, CERT, COOK}
    state = assoc.autokey.state
    for i in range(600):
        now = unix_to_ntp(EPOCH + net.reactor.seconds())
        source = rng.choice(SOURCES)
        kind = i % 3
        if kind == 0:  # crypto-NAK, wrong origin
            origin = rng.choice((0, assoc.xmt ^ 1, rng.getrandbits(64), assoc.org))
            data = Header(0, 4, 4, 1, 4, -20, 0, 0, b"LOCL", now, origin, now, now + i
                          ).encode() + WORD.pack(0)
        elif kind == 1:  # a whole old reply, replayed
            data = rng.choice(old_replies)
        else:  # bait with a wrong origin, MACed with cookie 0
            header = Header(0, 4, 4, 1, 4, -20, 0, 0, b"LOCL", now, rng.getrandbits(64),
                            now, now + i)
            data = packet(header, bait_fields(rng, state.associd, state.peer_associd,
                                              replayed),
                          source[0], BRENDA, rng.randrange(65536, 1 << 32))
        net.inject(data, source, (BRENDA, 123), delay=0.5 * (i % 50))
        if i % 50 == 49:
            net.run(25)
    net.run(60)
    after = counters["bogusorg"] + counters["noassoc"] + counters["badauth"] + \
        counters["oldpkt"]
    assert after - drops >= 600
    assert counters["autokey_resets"] == resets and counters["cryptonak"] == 0
    assert snapshot(engine, assoc) == before
    assert counters["samples"] > samples + 10
    assert engine.sys.peer == assoc.associd


def test_on_path_storm_client(healthy_client):
    """An on-path attacker answers every request of brenda before alice does, with the
    request's origin and key ID: E-bit responses, wrong association IDs, unknown codes and
    replayed responses.  A reply with fields to a request without any is refused
    (autokey_unsolicited) before the state machine, and does not use up the request: the
    genuine reply still gives its sample."""
    net, brenda, assoc = healthy_client
    engine = brenda.engine
    counters = engine.counters
    rng = random.Random(2)
    before = snapshot(engine, assoc)
    resets, samples = counters["autokey_resets"], counters["samples"]
    replayed = responses_in(net.capture, ALICE)
    state = assoc.autokey.state
    sent = []

    def attacker(data, source, destination):
        if source[0] != BRENDA or not sent_ok(data):
            return data
        request = parse(data).header
        for _ in range(3):
            now = unix_to_ntp(EPOCH + net.reactor.seconds())
            header = Header(0, 4, 4, 1, 4, -20, 0, 0, b"LOCL", now, request.transmit, now,
                            now + rng.randrange(1, 1000))
            bait = packet(header, bait_fields(rng, state.associd, state.peer_associd,
                                              replayed),
                          ALICE, BRENDA, parse(data).keyid)
            sent.append(bait)
            net.inject(bait, (ALICE, 123), (BRENDA, 123), delay=0.001)
        return data

    def sent_ok(data):
        return parse(data).keyid is not None

    net.add_interceptor(attacker)
    net.run(600)
    assert len(sent) >= 100
    assert counters["autokey_unsolicited"] >= len(sent) * 0.9
    assert counters["autokey_resets"] == resets
    assert snapshot(engine, assoc) == before
    assert counters["samples"] >= samples + 30  # every poll still gives its sample
    assert engine.sys.peer == assoc.associd


def test_storm_symmetric_resets_are_rate_limited(vectors):
    """Symmetric peers exchange requests and responses both ways, so bait that reaches the
    state machine (right origin: on-path) is a protocol error, as in the reference; the
    resets are rate-limited to one per poll interval, and the pair recovers its dance
    and synchronisation once the storm stops."""
    net = SimulatedNetwork(seed=23, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=vector_host(vectors, "sym", "alice"))
    carol = net.add_host(CAROL, f"peer {ALICE} autokey iburst minpoll 4 maxpoll 4\n",
                         autokey=vector_host(vectors, "sym", "carol"))
    net.run(400)
    [assoc] = carol.engine.associations.values()
    assert assoc.autokey.state.status & PROGRESS == PROGRESS
    counters = carol.engine.counters
    resets = counters["autokey_resets"]
    rng = random.Random(3)
    start = net.reactor.seconds()
    for i in range(400):  # 400 bait packets in 100 s, each echoing carol's last transmit
        now = unix_to_ntp(EPOCH + net.reactor.seconds())
        header = Header(0, 4, 2, 1, 4, -20, 0, 0, b"LOCL", now, assoc.xmt, now,
                        now + 1000 + i)
        bad = Field.short_form(rng.choice((COOK, AUTO, 0x0A)), assoc.associd, response=True,
                               error=True)
        carol.engine.receive(packet(header, [bad], ALICE, CAROL, 0x7000_0000 + i),
                             (ALICE, 123), now, net.reactor.seconds(), local=(CAROL, 123))
        net.run(0.25)
    elapsed = net.reactor.seconds() - start
    made = counters["autokey_resets"] - resets
    assert 1 <= made <= elapsed / 16 + 1
    # Only the first answer to each of carol's transmits passes the origin test; the rest
    # are dropped as bogus, and of the proven ones all but one per poll interval limited.
    assert counters["autokey_reset_limited"] + counters["bogusorg"] >= 400 - made - 5
    net.run(600)
    assert assoc.autokey.state.status & PROGRESS == PROGRESS
    assert carol.engine.sys.peer == assoc.associd
