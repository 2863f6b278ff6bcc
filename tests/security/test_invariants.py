"""The receive pipeline's invariants (docs/security.md), one test each that tries to break
one: forged packets after completed dances, with the reference's keys.  The adversary kit
(ntpauto.adversary, tests/test_adversary.py) runs the whole matrix of modes, codes and
attacks; these tests pin the decisions of ntpauto/receive.py and the state machine one by
one, each against the packet that used to get through."""

from __future__ import annotations

import attrs
import pytest

from ntpauto.auth.autokey import mac, session_key
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, Field, decode
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.status import Flag
from ntpauto.autokey.values import AutoValue
from ntpauto.events import Event
from ntpauto.ntp.peer import MODE_NAMES
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import MODE_ACTIVE, MODE_BROADCAST, MODE_PASSIVE, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp
from tests.security.helpers import EPOCH, vector_host

ALICE, BRENDA, CAROL, MALLORY = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.66"
BCAST = "10.0.0.255"
NOW = 4_004_439_700


def forged(header: Header, fields: list[Field], src: str, dst: str, keyid: int) -> bytes:
    """A packet MACed under the cookie-0 session key: anyone who knows the addresses can."""
    data = header.encode() + b"".join(f.encode() for f in fields)
    return data + mac(session_key(src, dst, keyid, 0), keyid, data)


def state_of(assoc) -> tuple:
    """Everything a forged packet must leave alone on an Autokey association."""
    st = assoc.autokey.state
    return (st.status, st.pkeyid, st.seq, st.cookie, st.autokey, st.trail, st.scheme_name,
            assoc.org, assoc.rec, assoc.xmt, assoc.offset, assoc.filter.updated, assoc.reach)


def broadcast_pair(vectors, seconds: float = 600.0):
    net = SimulatedNetwork(seed=6, latency=0.004, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\nbroadcast 10.0.0.255 autokey "
                                "minpoll 4\n", autokey=vector_host(vectors, "tc-rsa-md5",
                                                                   "alice"))
    client = net.add_host(BRENDA, "broadcastclient\nident alice\n",
                          autokey=vector_host(vectors, "tc-rsa-md5", "brenda"), offset=0.05)
    net.run(seconds)
    [assoc] = client.engine.associations.values()
    assert assoc.autokey.state.volley_complete and assoc.volley == 0
    return net, alice, client, assoc


def now_ntp(net, offset: float = 0.0) -> int:
    return unix_to_ntp(EPOCH + net.reactor.seconds() + offset)


def test_junk_signature_request_in_a_forged_broadcast_gives_no_sample(vectors):
    """The reproduced attack: after a complete broadcast dance, broadcasts from alice's
    address carrying a CERT request with a junk signature, MACed under the cookie-0 key with
    fresh key IDs and transmit times 50 s ahead, moved the client's offset to +50 s (a
    "verified signature" was inferred from the absence of event codes).  Now nothing of the
    association moves and no sample is taken."""
    net, _, client, assoc = broadcast_pair(vectors)
    samples = client.engine.counters["samples"]
    junk = Field(code=CERT, associd=1, timestamp=1, filestamp=1, value=b"x",
                 signature=b"junk")
    for i in range(10):
        before = state_of(assoc)
        header = Header(0, 4, MODE_BROADCAST, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0,
                        now_ntp(net, 50.0 + 16 * i))
        net.inject(forged(header, [junk], ALICE, BCAST, 0x7FFF0000 + i), (ALICE, 123),
                   (BCAST, 123))
        net.inject(forged(header, [], ALICE, BCAST, 0x7FFF1000 + i), (ALICE, 123),
                   (BCAST, 123))
        net.run(0.001)
        assert state_of(assoc) == before
        net.run(15.999)
    assert abs(assoc.offset + 0.05) < 0.002 and abs(client.engine.sys.offset + 0.05) < 0.002
    # The genuine broadcasts kept coming in meanwhile.
    assert client.engine.counters["samples"] > samples


def test_replayed_broadcast_is_refused(vectors):
    """Every genuine broadcast seen so far replayed from alice's address: each is not newer
    than the last accepted (its key ID would still hash forward to the final key), so none
    is taken and nothing moves."""
    net, _, client, assoc = broadcast_pair(vectors)
    genuine = [d.data for d in net.capture if d.source[0] == ALICE and d.destination[0] ==
               BCAST]
    net.keep_capture = False
    before = state_of(assoc)
    samples = client.engine.counters["samples"]
    for data in genuine:
        net.inject(data, (ALICE, 123), (BCAST, 123))
    net.run(0.1)
    assert state_of(assoc) == before
    assert client.engine.counters["samples"] == samples


def test_broadcasts_sooner_than_the_poll_allows_are_not_samples(vectors):
    """Two genuine broadcasts held back and delivered together: the second is authentic and
    newer, but comes sooner than the broadcast poll interval allows (the CVE-2016-7428
    class): it is counted and is no sample."""
    net, _, client, assoc = broadcast_pair(vectors)
    held = []
    net.add_interceptor(lambda data, s, d: (held.append(data), None)[1]
                        if s[0] == ALICE and d[0] == BCAST and len(held) < 2 else data)
    net.run(40)
    assert len(held) == 2
    early = client.engine.counters["bcast_early"]
    samples = client.engine.counters["samples"]
    for data in held:
        client.engine.receive(data, (ALICE, 123), now_ntp(net), net.reactor.seconds(),
                              local=(BCAST, 123))
    assert client.engine.counters["samples"] == samples + 1
    assert client.engine.counters["bcast_early"] == early + 1


def client_server(vectors, seconds: float = 300.0):
    net = SimulatedNetwork(seed=1, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=vector_host(vectors, "tc-rsa-md5", "alice"))
    brenda = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4\n",
                          autokey=vector_host(vectors, "tc-rsa-md5", "brenda"), offset=0.05)
    net.run(seconds)
    [assoc] = brenda.engine.associations.values()
    assert assoc.autokey.state.status & Flag.ALL == Flag.ALL
    return net, alice, brenda, assoc


@pytest.mark.parametrize("code", [ASSOC, CERT, COOK, AUTO, 0x0A])
def test_error_responses_without_our_origin_change_nothing(vectors, code):
    """Error responses (E bit) and crypto-NAKs from alice's address that do not echo
    brenda's last transmit (an off-path forger cannot know it) change nothing: no restart,
    no counter of restarts, the association stays."""
    net, _, brenda, assoc = client_server(vectors)
    before = state_of(assoc)
    resets = brenda.engine.counters["autokey_resets"]
    origin = assoc.xmt ^ 0x1234 if assoc.xmt else 0x1234
    header = Header(0, 4, 4, 1, 4, -20, 0, 0, b"LOCL", 0, origin, now_ntp(net),
                    now_ntp(net))
    error = Field.short_form(code, assoc.associd, response=True, error=True)
    brenda.engine.receive(forged(header, [error], ALICE, BRENDA, 0x7000_0001), (ALICE, 123),
                          now_ntp(net), net.reactor.seconds(), local=(BRENDA, 123))
    brenda.engine.receive(header.encode() + bytes(4), (ALICE, 123), now_ntp(net),
                          net.reactor.seconds(), local=(BRENDA, 123))
    assert state_of(assoc) == before
    assert brenda.engine.counters["autokey_resets"] == resets
    assert assoc.associd in brenda.engine.associations


def symmetric_pair(vectors, seconds: float = 400.0):
    net = SimulatedNetwork(seed=23, latency=0.01, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=vector_host(vectors, "sym", "alice"))
    carol = net.add_host(CAROL, f"peer {ALICE} autokey iburst minpoll 4 maxpoll 4\n",
                         autokey=vector_host(vectors, "sym", "carol"))
    net.run(seconds)
    [active] = carol.engine.associations.values()
    [passive] = [a for a in alice.engine.associations.values() if a.autokey is not None]
    for assoc in (active, passive):
        assert assoc.autokey.state.status & Flag.ALL == Flag.ALL, \
            MODE_NAMES[assoc.hmode]
    return net, alice, carol, active, passive


def test_crypto_nak_with_our_origin_restarts_but_never_removes_a_passive_association(
        vectors):
    """A crypto-NAK that is the first answer to alice's last transmit (on-path, or the peer
    itself) restarts her *ephemeral* passive association's dance, at most once per poll
    interval, and never demobilises it (the reference removes preemptible associations);
    a second NAK echoing the same transmit proves nothing and is dropped."""
    net, alice, _, _, passive = symmetric_pair(vectors)
    net.keep_capture = False

    def nak() -> None:
        header = Header(0, 4, MODE_ACTIVE, 2, 4, -20, 0, 0, b"LOCL", 0, passive.xmt,
                        now_ntp(net), now_ntp(net))
        alice.engine.receive(header.encode() + bytes(4), (CAROL, 123), now_ntp(net),
                             net.reactor.seconds(), local=(ALICE, 123))

    counters = alice.engine.counters
    bogus = counters["bogusorg"]
    alice.engine.poller.transmit(passive, net.reactor.seconds())
    nak()
    nak()
    assert counters["autokey_resets"] == 1 and counters["bogusorg"] == bogus + 1
    alice.engine.poller.transmit(passive, net.reactor.seconds())
    nak()
    assert counters["autokey_resets"] == 1 and counters["autokey_reset_limited"] == 1
    assert passive.associd in alice.engine.associations
    assert counters["demobilised"] == 0


def test_symmetric_origin_zero_forgery_does_not_move_the_exchange(vectors):
    """Once the exchange runs, a packet with origin 0 (which RFC 5905 takes as a peer that
    has not heard from us) from carol's address is no longer the start of an exchange: it
    changes neither org nor anything else of alice's passive association."""
    net, alice, _, _, passive = symmetric_pair(vectors)
    before = state_of(passive)
    header = Header(0, 4, MODE_ACTIVE, 2, 4, -20, 0, 0, b"LOCL", 0, 0, now_ntp(net),
                    now_ntp(net, 1.0))
    request = Field.short_form(AUTO, passive.autokey.state.peer_associd)
    for fields in ([], [request], [carol_assoc_request(vectors)]):
        alice.engine.receive(forged(header, fields, CAROL, ALICE, 0x7100_0000),
                             (CAROL, 123), now_ntp(net), net.reactor.seconds(),
                             local=(ALICE, 123))
    assert state_of(passive) == before
    assert passive.autokey.state.queued_request is None


def carol_assoc_request(vectors) -> Field:
    return vector_host(vectors, "sym", "carol").assoc_field(4242, response=False)


def test_forged_first_packets_mobilise_nothing_invalid(vectors):
    """Symmetric active packets from a stranger: only one whose first field is an ASSOC
    request of a status word we accept mobilises a passive association; a packet carrying a
    response, a request of another kind, or no field, gets a stateless crypto-NAK and leaves
    the table as it was; an ASSOC request with a mismatched word mobilises nothing."""
    net = SimulatedNetwork(seed=3, latency=0.01, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=vector_host(vectors, "sym", "alice"))
    net.run(10)
    carol = vector_host(vectors, "sym", "carol")
    header = Header(0, 4, MODE_ACTIVE, 2, 4, -20, 0, 0, b"LOCL", 0, 0, 0, now_ntp(net))
    bad_word = attrs.evolve(carol.assoc_field(7, response=False), filestamp=0xFFFF0003)
    cases = [[], [Field.short_form(AUTO, 7)], [carol.assoc_field(7, response=True)],
             [Field.short_form(AUTO, 7), carol.assoc_field(7, response=False)], [bad_word]]
    for i, fields in enumerate(cases):
        out = alice.engine.receive(forged(header, fields, MALLORY, ALICE, 0x7200_0000 + i),
                                   (MALLORY, 123), now_ntp(net), net.reactor.seconds(),
                                   local=(ALICE, 123))
        assert not peers(alice), fields
        if fields != [bad_word]:
            assert len(out) == 1 and out[0].data[48:] == bytes(4)  # the crypto-NAK
    good = carol.assoc_field(7, response=False)
    alice.engine.receive(forged(header, [good], MALLORY, ALICE, 0x7200_0100),
                         (MALLORY, 123), now_ntp(net), net.reactor.seconds(),
                         local=(ALICE, 123))
    [passive] = peers(alice)
    assert passive.hmode == MODE_PASSIVE and passive.autokey.state.peer_name == "carol@alice"


def peers(host) -> list:
    """A host's associations with other hosts (not its reference clock)."""
    return [a for a in host.engine.associations.values() if not a.is_refclock]


def to_cert(state: AutokeyAssociation, responder: Responder) -> None:
    """ASSOC then CERT from the responder's host, answering the state's requests."""
    for _ in range(2):
        [request] = state.next_fields(0, synchronized=False)
        response = responder.respond(request, packet_mode=3, now=NOW, client=BRENDA,
                                     server=ALICE)
        assert not state.receive([response], packet_mode=4, now=NOW, proven=True)[0].failed
    assert state.status & Flag.CERT


def test_signed_values_must_be_strictly_newer_across_restarts(vectors, monkeypatch):
    """An AUTO response older than the last accepted one is refused (TSP) before any
    signature work, and still after the dance restarts; the same one re-sent unchanged is
    known; one with the same Timestamp but another value is refused, unverified."""
    alice = vector_host(vectors, "tc-rsa-md5", "alice")
    brenda = vector_host(vectors, "tc-rsa-md5", "brenda")
    alice.signature_update(NOW)
    state = AutokeyAssociation(brenda, associd=9)
    responder = Responder(alice)
    to_cert(state, responder)
    calls = []
    verify = type(state._profile).verify
    monkeypatch.setattr(type(state._profile), "verify",
                        lambda *a: calls.append(1) or verify(*a))
    peer = state.peer_associd
    new = alice.autokey_field(AutoValue(0x11111111, 50), timestamp=NOW, associd=peer)
    old = alice.autokey_field(AutoValue(0x22222222, 50), timestamp=NOW - 10, associd=peer)
    twin = alice.autokey_field(AutoValue(0x33333333, 50), timestamp=NOW, associd=peer)
    assert state.receive([new], packet_mode=4, now=NOW, proven=True)[0].verified
    assert len(calls) == 1
    state.reset()
    to_cert(state, responder)
    calls.clear()
    [verdict] = state.receive([old], packet_mode=4, now=NOW, proven=True)
    assert verdict.failed and verdict.event is Event.TSP
    [verdict] = state.receive([twin], packet_mode=4, now=NOW, proven=True)
    assert verdict.failed and verdict.event is Event.TSP
    assert calls == []  # neither cost a signature verification
    [verdict] = state.receive([new], packet_mode=4, now=NOW, proven=True)
    assert verdict.verified and calls == [] and state.status & Flag.AUTO


def test_symmetric_cook_request_must_be_signed_by_the_peer(vectors):
    """A COOK request is answered with our cookie encrypted to the key it carries: from a
    symmetric peer it is queued only with the peer's valid signature over that key (a
    forger's key, or the peer's key unsigned, is refused and never answered)."""
    from tests.test_autokey_association import exchange, sym_pair

    carol, alice = sym_pair(vectors)
    exchange(carol, alice, 4)
    assert alice.status & Flag.CERT
    alice.next_fields(NOW, synchronized=True)  # answer whatever was queued
    mallory = vector_host(vectors, "tc-rsa-md5", "alice")  # another key pair entirely
    mallory.signature_update(NOW)
    foreign = attrs.evolve(mallory.cook_request(100), associd=100)
    unsigned = attrs.evolve(carol.host.cook_request(100), signature=b"")
    for request in (foreign, unsigned):
        [verdict] = alice.receive([request], packet_mode=MODE_ACTIVE, now=NOW, proven=True)
        assert verdict.failed and alice.queued_request is None
    genuine = carol.host.cook_request(100)
    [verdict] = alice.receive([genuine], packet_mode=MODE_ACTIVE, now=NOW, proven=True)
    assert verdict.verified and alice.queued_request == genuine


def test_certificates_enter_the_cache_only_with_a_complete_trail(vectors):
    """A CERT response is not installed (nor is anything re-signed) until the trail ends at
    a trusted certificate: a certificate that ends nothing costs no private-key work."""
    alice = vector_host(vectors, "tc-rsa-md5", "alice")
    brenda = vector_host(vectors, "tc-rsa-md5", "brenda")
    alice.signature_update(NOW)
    brenda.signature_update(NOW)
    state = AutokeyAssociation(brenda, associd=9)
    responder = Responder(alice)
    [request] = state.next_fields(NOW, synchronized=True)
    state.receive([responder.respond(request, packet_mode=3, now=NOW, client=BRENDA,
                                     server=ALICE)], packet_mode=4, now=NOW, proven=True)
    updates = []
    original = brenda.signature_update
    brenda.signature_update = lambda now: updates.append(now) or original(now)
    cached = len(brenda.cache)
    # Unproven packet: refused before anything.
    [request] = state.next_fields(NOW, synchronized=True)
    response = responder.respond(request, packet_mode=3, now=NOW, client=BRENDA,
                                 server=ALICE)
    [verdict] = state.receive([response], packet_mode=4, now=NOW, proven=False)
    assert verdict.failed and updates == [] and len(brenda.cache) == cached
    [verdict] = state.receive([response], packet_mode=4, now=NOW, proven=True)
    assert verdict.verified and state.status & Flag.CERT
    assert len(updates) == 1


def test_refetch_darkens_auto_only(vectors):
    """Asking for the autokey values again clears the AUTO bit alone: the peer's NID in
    the high half of the status word survives (it was wiped by an enum complement)."""
    host = vector_host(vectors, "tc-rsa-md5", "brenda")
    state = AutokeyAssociation(host, associd=1)
    state._status = 0x00087F03
    assert state.refetch_auto()
    assert state.status == 0x00086F03
    assert not state.refetch_auto()


def test_forged_assoc_responses_mobilise_no_broadcast_client_beyond_the_rules(vectors):
    """Broadcasts from a stranger: one without fields, one whose last field is not an ASSOC
    response, one with a bad MAC, mobilise nothing; a valid ASSOC response broadcast does
    (RFC 5906 section 11.4.2 asks nothing more of it) and its association then only runs
    the unicast volley, which the stranger cannot answer."""
    net = SimulatedNetwork(seed=4, latency=0.004, epoch=EPOCH)
    client = net.add_host(BRENDA, "broadcastclient\nident alice\n",
                          autokey=vector_host(vectors, "tc-rsa-md5", "brenda"))
    net.run(1)
    alice = vector_host(vectors, "tc-rsa-md5", "alice")
    header = Header(0, 4, MODE_BROADCAST, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0, now_ntp(net))
    assoc_response = alice.assoc_field(77, response=True)
    bad_mac = bytearray(forged(header, [assoc_response], MALLORY, BCAST, 0x7300_0002))
    bad_mac[-1] ^= 1
    for data in (forged(header, [], MALLORY, BCAST, 0x7300_0000),
                 forged(header, [Field.short_form(AUTO, 77, response=True)], MALLORY, BCAST,
                        0x7300_0001), bytes(bad_mac)):
        client.engine.receive(data, (MALLORY, 123), now_ntp(net), net.reactor.seconds(),
                              local=(BCAST, 123))
    assert not client.engine.associations
    client.engine.receive(forged(header, [assoc_response], MALLORY, BCAST, 0x7300_0003),
                          (MALLORY, 123), now_ntp(net), net.reactor.seconds(),
                          local=(BCAST, 123))
    [assoc] = client.engine.associations.values()
    assert assoc.volley and not assoc.autokey.state.status & Flag.CERT


def test_parse_of_every_field_in_a_capture_round_trips(vectors):
    """Sanity for the forger's helpers: the decoder reads what the encoder writes."""
    for f in (Field.short_form(AUTO, 5), Field(code=COOK, associd=3, timestamp=1, value=b"x")):
        assert decode(f.encode()) == f
    assert parse(forged(Header(0, 4, 5, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0, 1), [], ALICE,
                        BCAST, 0x70000000)).keyid == 0x70000000


def test_broadcast_client_fetches_lost_autokey_values_itself(vectors):
    """The broadcast announcing alice's new key list is lost: the broadcasts that follow
    fail the autokey test (a forger's would too, so failing changes nothing); after three
    polls with none passing, the client goes back to its client-mode volley by itself, asks
    alice for the values and listens again."""
    net, alice, client, assoc = broadcast_pair(vectors)
    [server] = [a for a in alice.engine.associations.values() if a.hmode == MODE_BROADCAST]
    server.autokey.keylist = None  # the next broadcast starts a new list, announced once
    lost = []

    def drop_announcement(data, source, destination):
        if source[0] == ALICE and destination[0] == BCAST and not lost and any(
                decode(f.data).code == AUTO for f in parse(data).fields):
            lost.append(data)
            return None
        return data

    net.add_interceptor(drop_announcement)
    sequence = client.engine.counters["autokey_sequence"]
    net.run(16 * 3 + 1)
    assert lost and client.engine.counters["autokey_sequence"] > sequence
    samples = client.engine.counters["samples"]
    net.run(16 * 4)
    assert client.engine.counters["autokey_refetch"] == 1
    assert assoc.autokey.state.volley_complete and assoc.volley == 0
    assert assoc.associd in client.engine.associations
    assert client.engine.counters["samples"] > samples + 1
    unicast = [d for d in net.capture if d.source[0] == BRENDA]
    assert any(f.code == AUTO for d in unicast[-4:] for f in map(decode, (
        x.data for x in parse(d.data).fields)))


def test_outgoing_fields_never_make_a_packet_over_the_limit(vectors):
    """A symmetric packet carrying a queued response and a request, each about a kilobyte
    and a half (certificates of a 4096-bit key), would exceed the reference's 2120-octet
    buffer: the field that does not fit is left out, as the reference does."""
    from ntpauto.autokey.serving import AutokeyNode
    from ntpauto.autokey.session import AutokeySession
    from ntpauto.wire.packet import MAX_PACKET

    host = vector_host(vectors, "tc-rsa-md5", "alice")
    host.signature_update(NOW)
    state = AutokeyAssociation(host, associd=5, hmode=MODE_ACTIVE)
    session = AutokeySession(AutokeyNode(host), state)
    big = Field(code=CERT, response=True, associd=5, timestamp=NOW, value=b"c" * 1500,
                signature=b"s" * 64)
    state.next_fields = lambda *a, **k: [big, attrs.evolve(big, response=False)]
    header = Header(0, 4, MODE_ACTIVE, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0, 1).encode()
    data = session.outgoing(header, src=ALICE, dst=CAROL, now=NOW, synced=True, poll=4,
                            peer_leap=0, associd=5)
    assert len(data) <= MAX_PACKET
    assert [decode(f.data).response for f in parse(data).fields] == [True]
    assert session.sent_codes == frozenset()


def test_an_unreachable_system_peer_stops_being_one(vectors):
    """Once the only server stops answering, the poll that finds it unreachable (reach 0:
    eight polls without a packet) selects again: no system peer is left, where the engine
    used to keep it until some other source gave a sample."""
    net, alice, brenda, assoc = client_server(vectors)
    assert brenda.engine.sys.peer == assoc.associd
    net.add_interceptor(lambda data, s, d: None if s[0] == ALICE else data)
    net.run(16 * 9)
    assert assoc.reach == 0
    assert brenda.engine.sys.peer is None


def test_second_answer_with_a_key_on_the_chain_and_a_bad_field_is_handled(vectors):
    """Carol sends twice before alice transmits again: the second packet answers a
    transmit of alice's already answered, so it must prove itself by its key ID first
    (genuine here: carol's next key).  Carried under a cookie-0 MAC with an error field
    added, it passes the key test, fails its field, and is handled like any proven
    protocol error: a rate-limited restart, no exception, no removal."""
    net, alice, carol, active, passive = symmetric_pair(vectors)
    net.add_interceptor(lambda data, s, d: None)  # this test carries the packets
    now = net.reactor.seconds

    def deliver(host, data, source):
        return host.engine.receive(data, (source, 123), unix_to_ntp(host.clock.now()),
                                   now(), local=(host.address, 123))

    deliver(carol, alice.engine.poller.transmit(passive, now()).data, ALICE)
    assert carol.engine.associations[active.associd].org
    first = carol.engine.poller.transmit(active, now()).data
    second = carol.engine.poller.transmit(active, now()).data
    deliver(alice, first, CAROL)
    pkt = parse(second)
    error = Field.short_form(AUTO, passive.autokey.state.peer_associd, response=True,
                             error=True)
    body = second[:48] + error.encode()
    tampered = body + mac(session_key(CAROL, ALICE, pkt.keyid, 0), pkt.keyid, body)
    resets = alice.engine.counters["autokey_resets"]
    deliver(alice, tampered, CAROL)
    assert alice.engine.counters["autokey_resets"] == resets + 1
    assert passive.associd in alice.engine.associations
