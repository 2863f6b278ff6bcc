"""NTP secure groups and Autokey error recovery between engines on the simulated network,
with keys made by ntpauto itself (tests/autokey_groups.py).

RFC 5906 section 6 and figure 5: Alice and Carol are the trusted hosts of group "alice",
Brenda and Denise their clients (stratum 2, holding the group's server key), Eileen a client of
both (stratum 3) whose certificate trails run through the dependent servers' CA-signed
certificates.  Section 11.5 (and interop.md 8.5): what a man in the middle, replays,
crypto-NAKs, a server seed refresh and a clock step do to an association.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from twisted.internet import task

from ntpauto.auth.autokey import mac, session_key
from ntpauto.autokey.cookie import ServerSeed
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, LEAP, SIGN, Field, decode
from ntpauto.autokey.host import load_host
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.status import Flag, word_nid
from ntpauto.autokey.values import encrypt_cookie
from ntpauto.ntp.peer import Association, Flash
from ntpauto.testing import SimulatedHost, SimulatedNetwork
from ntpauto.wire.packet import LEAP_UNSYNC, MODE_SERVER, Header, parse
from tests.autokey_groups import (
    ADDRESS,
    EPOCH,
    GroupKeys,
    figure5,
    identity_parameters,
    make_group,
    password,
    write_host,
)

ALICE, BRENDA, CAROL = ADDRESS["alice"], ADDRESS["brenda"], ADDRESS["carol"]
DENISE, EILEEN = ADDRESS["denise"], ADDRESS["eileen"]
STRANGER = "10.0.0.66"
NID_RSA_SHA256 = 668
SCHEME_BIT = {"tc": 0, "pc": Flag.PRIV, "iff": Flag.IFF, "gq": Flag.GQ, "mv": Flag.MV}
OFFSETS = {"brenda": 0.03, "denise": 0.03, "eileen": 0.1}
"""Clock errors: the dependent servers run 30 ms ahead of their trusted hosts, Eileen 100 ms
(70 ms ahead of her sources)."""
SECOND = 1 << 32
"""One second in a 64-bit NTP timestamp."""

# ---------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def group_keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], GroupKeys]:
    """The keys directories of one secure group per scheme, made once for the module."""
    made: dict[str, GroupKeys] = {}

    def get(scheme: str) -> GroupKeys:
        if scheme not in made:
            made[scheme] = make_group(tmp_path_factory.mktemp(scheme), scheme)
        return made[scheme]

    return get


def only_association(host: SimulatedHost) -> Association:
    """The host's single association."""
    [assoc] = host.engine.associations.values()
    return assoc


def client_server(keys: GroupKeys, *, seed: int, server_node: AutokeyNode | None = None,
                  client_keys: GroupKeys | None = None, client_offset: float = 0.05
                  ) -> tuple[SimulatedNetwork, SimulatedHost, SimulatedHost]:
    """Alice (trusted host, own clock) serving Brenda, who runs the client dance."""
    net = SimulatedNetwork(seed=seed, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=server_node or keys.credentials("alice"))
    brenda = net.add_host(BRENDA, keys.server_line(ALICE),
                          autokey=(client_keys or keys).credentials("brenda"),
                          offset=client_offset)
    return net, alice, brenda


def fields_of(data: bytes) -> list[Field]:
    """The decoded extension fields of a datagram."""
    return [decode(f.data) for f in parse(data).fields]


def sent_codes(net: SimulatedNetwork, source: str, *, response: bool) -> set[int]:
    """Codes of the Autokey requests (or responses) ``source`` put on the wire."""
    return {f.code for d in net.capture if d.source[0] == source
            for f in fields_of(d.data) if f.response == response}


def remac(data: bytes, fields: list[Field], src: str, dst: str, *, cookie: int = 0,
          header: bytes | None = None) -> bytes:
    """``data`` with its extension fields replaced by ``fields`` and a MAC that verifies
    under the same key ID: cookie 0 when there are fields (anybody can compute it,
    interop.md 3.2), else ``cookie``."""
    pkt = parse(data)
    body = (header or data[:48]) + b"".join(f.encode() for f in fields)
    key = session_key(src, dst, pkt.keyid, 0 if fields else cookie)
    return body + mac(key, pkt.keyid, body)


def crypto_nak(origin: int, transmit: int) -> bytes:
    """A mode-4 crypto-NAK: a server header and a MAC of key ID 0 alone."""
    header = Header(0, 4, MODE_SERVER, 1, 4, -20, 0, 0, b"LOCL", transmit - SECOND, origin,
                    transmit, transmit)
    return header.encode() + b"\x00\x00\x00\x00"


def all_lit(status: int) -> bool:
    """Every progress bit CERT..LEAP is lit."""
    return status & Flag.ALL == Flag.ALL


# --------------------------------------------------------------------------- figure 5


@pytest.mark.parametrize("scheme", ["tc", "pc", "iff", "gq", "mv"])
def test_figure5_secure_group(group_keys, scheme):
    """Every association of figure 5 lights CERT VRFY PROV COOK AUTO SIGN LEAP and its
    scheme's bit; Eileen, who first loops at the CERT step (her servers' certificates are not
    signed yet), ends with trails through Brenda's certificate issued by Alice and Denise's
    issued by Carol, to the trusted roots; every client is synchronised to its proventic
    sources (stratum and offset)."""
    keys = group_keys(scheme)
    fig = figure5(keys, offsets=OFFSETS)
    fig.net.run(600)

    for client, server, assoc in fig.autokey_associations():
        state = assoc.autokey.state
        assert all_lit(state.status), (client, server, state.flags)
        assert state.status & Flag.SCHEME_MASK == SCHEME_BIT[scheme], (client, server)
        assert word_nid(state.status) == NID_RSA_SHA256
        assert state.scheme_name == scheme
        assert state.proventic and state.cookie != 0
        assert fig[client].engine.counters["autokey_resets"] == 0

    eileen = fig["eileen"].engine
    if scheme == "pc":
        # One shared private certificate: no CERT, identity or SIGN exchange at all.
        for name in ("brenda", "denise", "eileen"):
            assert sent_codes(fig.net, ADDRESS[name], response=False) <= {ASSOC, COOK, LEAP}
        assert all(a.autokey.state.trail == [] for _, _, a in fig.autokey_associations())
    else:
        assert fig.association("brenda", "alice").autokey.state.trail == [
            ("alice@alice", "alice@alice")]
        assert fig.association("denise", "carol").autokey.state.trail == [
            ("carol@alice", "carol@alice")]
        assert fig.association("eileen", "brenda").autokey.state.trail == [
            ("brenda@alice", "alice@alice"), ("alice@alice", "alice@alice")]
        assert fig.association("eileen", "denise").autokey.state.trail == [
            ("denise@alice", "carol@alice"), ("carol@alice", "carol@alice")]
        # Figure 5 step 2: Eileen looped (empty CERT responses) until step 4 was done.
        assert eileen.counters["autokey_crt"] > 0
        # Step 4: the dependent servers' certificates signed by their trusted hosts, and
        # Eileen's by both of her servers.
        for name, issuer in (("brenda", "alice@alice"), ("denise", "carol@alice")):
            cache = fig[name].engine.autokey.host.cache
            assert any(e.subject == f"{name}@alice" and e.cert.issuer == issuer
                       for e in cache)
        issuers = {e.cert.issuer for e in eileen.autokey.host.cache
                   if e.subject == "eileen@alice"}
        assert issuers == {"eileen@alice", "brenda@alice", "denise@alice"}
        if keys.identity:
            assert sent_codes(fig.net, EILEEN, response=False) >= {
                ASSOC, CERT, COOK, SIGN, {"iff": 7, "gq": 8, "mv": 9}[scheme]}

    strata = {name: fig[name].engine.sys.stratum for name in fig.hosts}
    assert strata == {"alice": 1, "carol": 1, "brenda": 2, "denise": 2, "eileen": 3}
    for client, server in (("brenda", "alice"), ("denise", "carol")):
        assert fig[client].engine.sys.peer == fig.association(client, server).associd
        assert fig[client].engine.sys.offset == pytest.approx(-0.03, abs=0.002)
    assert eileen.sys.peer in {fig.association("eileen", s).associd
                               for s in ("brenda", "denise")}
    assert eileen.sys.offset == pytest.approx(-0.07, abs=0.003)


def test_packets_without_fields_pass_only_the_autokey_test(group_keys):
    """Once the dance is done the packets carry no fields; a reply whose MAC was altered, or
    whose key ID was changed (even with a MAC that verifies under the right cookie), is
    dropped: Brenda's association stops being reached while Eileen keeps Denise, and no
    association is reset."""
    fig = figure5(group_keys("iff"), offsets=OFFSETS)
    fig.net.run(600)
    eileen = fig["eileen"].engine
    via_brenda = fig.association("eileen", "brenda")
    via_denise = fig.association("eileen", "denise")
    cookie = via_brenda.autokey.state.cookie
    mode = {"attack": None}
    tampered: list[bytes] = []

    def tamper(data, source, destination):
        if source[0] != BRENDA or destination[0] != EILEEN or mode["attack"] is None:
            return data
        assert parse(data).fields == ()  # the dance is over: no fields any more
        tampered.append(data)
        if mode["attack"] == "mac":
            return data[:-1] + bytes([data[-1] ^ 0x01])
        forged = parse(data).keyid ^ 0x0100  # another Autokey key ID, MAC made for it
        body = data[:48]
        return body + mac(session_key(BRENDA, EILEEN, forged, cookie), forged, body)

    fig.net.add_interceptor(tamper)
    before = dict(eileen.counters)
    mode["attack"] = "mac"
    fig.net.run(80)
    assert eileen.counters["badauth"] - before.get("badauth", 0) == len(tampered) >= 4
    assert via_brenda.reach & 0x0F == 0 and via_denise.reach & 0x0F == 0x0F

    mode["attack"] = "keyid"
    sequence = eileen.counters["autokey_sequence"]
    count = len(tampered)
    last_sample = via_brenda.filter.updated
    fig.net.run(80)
    assert eileen.counters["autokey_sequence"] - sequence == len(tampered) - count >= 4
    assert via_brenda.flash & Flash.TEST8
    assert via_brenda.reach & 0x1F == 0
    # No forged packet became a sample; Eileen stays synchronised (Denise keeps answering).
    assert not [s for s in via_brenda.filter.stages()
                if s.epoch > last_sample and s.dispersion < 16.0]
    assert eileen.sys.peer in (via_denise.associd, via_brenda.associd)
    assert eileen.sys.stratum == 3
    assert eileen.counters["autokey_resets"] == 0
    assert all_lit(via_brenda.autokey.state.status)

    mode["attack"] = None
    fig.net.run(80)
    assert via_brenda.reach & 0x0F == 0x0F


def test_unsigned_field_cannot_carry_forged_time(group_keys):
    """A man in the middle who shifts the timestamps of Alice's replies by one second and
    adds a copy of Alice's (unsigned) ASSOC response can MAC them with cookie 0; such a reply
    proves nothing, so Brenda must not take its time (her offset stays near -50 ms)."""
    keys = group_keys("iff")
    net, alice, brenda = client_server(keys, seed=11)
    net.run(300)
    assoc = only_association(brenda)
    assert all_lit(assoc.autokey.state.status)
    assert brenda.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    assoc_response = alice.engine.autokey.host.assoc_field(assoc.autokey.state.peer_associd,
                                                           response=True)

    def shift(data, source, destination):
        if source[0] != ALICE or parse(data).fields:
            return data
        header = parse(data).header
        later = header._replace(receive=header.receive + SECOND,
                                transmit=header.transmit + SECOND).encode()
        return remac(data, [assoc_response], ALICE, BRENDA, header=later)

    net.add_interceptor(shift)
    net.run(300)
    assert brenda.engine.sys.offset == pytest.approx(-0.05, abs=0.002)


# ------------------------------------------------------------------- negative scenarios


@pytest.mark.parametrize("scheme", ["iff", "gq", "mv"])
def test_wrong_group_key_never_verifies(group_keys, tmp_path, scheme):
    """Brenda's client parameters come from another trusted authority (same group name and
    filestamp, another group key): VRFY never lights (she never gets to ask for a cookie),
    the identity check fails on every attempt and Alice is never used for time."""
    keys = group_keys(scheme)
    other = make_group(tmp_path / "other", scheme, ("brenda",), servers=(),
                       params=identity_parameters(scheme))
    net, alice, brenda = client_server(keys, seed=12, client_keys=other)
    net.run(400)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    counters = brenda.engine.counters
    assert not state.status & (Flag.VRFY | Flag.PROV) and not state.proventic
    requests = sent_codes(net, BRENDA, response=False)
    assert {"iff": 7, "gq": 8, "mv": 9}[scheme] in requests  # the trail itself was fine
    assert COOK not in requests
    assert counters["autokey_id"] + counters["autokey_protocol_error"] >= 5, dict(counters)
    assert assoc.reach  # Alice answers...
    assert brenda.engine.sys.peer is None  # ...but is never used for time
    assert brenda.engine.sys.leap == LEAP_UNSYNC


def test_mitm_certificate_swap_is_caught_by_the_signature(group_keys, tmp_path):
    """Mallory swaps the certificate in Alice's CERT responses for her own self-signed,
    trusted "alice@alice": the forged root ends the trail (CERT lights, as trust is by EKU),
    but it brings Mallory's key, so Alice's signed identity responses fail the signature
    check: VRFY and PROV never light and Alice is never used for time."""
    keys = group_keys("iff")
    write_host(tmp_path / "mallory", "alice", trusted=True)
    mallory = load_host(tmp_path / "mallory", host="alice", password=password("alice"))
    net, alice, brenda = client_server(keys, seed=13)
    swapped = []

    def swap(data, source, destination):
        if source[0] != ALICE:
            return data
        fields = fields_of(data)
        if not any(f.code == CERT and f.response and not f.short for f in fields):
            return data
        swapped.append(data)
        fields = [mallory.sign_field(attrs.evolve(f, value=mallory.certificate.der))
                  if f.code == CERT else f for f in fields]
        return remac(data, fields, ALICE, BRENDA)

    net.add_interceptor(swap)
    net.run(400)
    state = only_association(brenda).autokey.state
    assert swapped
    assert state.status & Flag.CERT and state.trail == [("alice@alice", "alice@alice")]
    assert state.peer_certificate.der == mallory.certificate.der
    assert not state.status & (Flag.VRFY | Flag.PROV | Flag.COOK)
    assert brenda.engine.counters["autokey_sig"] >= 5
    assert brenda.engine.sys.peer is None


def test_mitm_cookie_swap_fails_the_signature_and_recovers(group_keys):
    """Mallory replaces the encrypted cookie of Alice's COOK responses with one of her own
    (encrypted to Brenda's public key, so it decrypts fine): the signature over the value
    fails, COOK (and PROV) never light while she does it; once she stops, the next COOK
    response completes the dance with Alice's real cookie."""
    keys = group_keys("iff")
    net, alice, brenda = client_server(keys, seed=14)
    public = brenda.engine.autokey.host.host_key.public_key()
    mode = {"attack": True}
    swapped = []

    def swap(data, source, destination):
        if source[0] != ALICE or not mode["attack"]:
            return data
        fields = fields_of(data)
        if not any(f.code == COOK and f.response and not f.short for f in fields):
            return data
        swapped.append(data)
        fields = [attrs.evolve(f, value=encrypt_cookie(0x0BADC0DE, public))
                  if f.code == COOK else f for f in fields]
        return remac(data, fields, ALICE, BRENDA)

    net.add_interceptor(swap)
    net.run(300)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    assert len(swapped) >= 5
    assert state.status & Flag.VRFY and not state.status & (Flag.COOK | Flag.PROV)
    assert state.cookie == 0
    assert brenda.engine.counters["autokey_sig"] == len(swapped)
    assert brenda.engine.sys.peer is None

    mode["attack"] = False
    net.run(200)
    assert all_lit(state.status)
    responder = alice.engine.autokey.responder
    assert state.cookie == responder.server_cookie(BRENDA, ALICE, 0)
    assert brenda.engine.sys.peer == assoc.associd
    assert brenda.engine.counters["autokey_resets"] == 0


def test_replayed_cook_response_is_ignored(group_keys):
    """After the dance, an old COOK response replayed as it was fails the on-wire origin
    test (TEST2), and one slipped into a fresh reply is refused as a response to a request
    that was not sent (unsolicited): neither resets the association or changes its cookie."""
    keys = group_keys("iff")
    net, alice, brenda = client_server(keys, seed=15)
    net.run(300)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    assert all_lit(state.status)
    [old] = [d.data for d in net.capture if d.source[0] == ALICE
             and any(f.code == COOK for f in fields_of(d.data))]
    cookie, status = state.cookie, state.status
    counters = brenda.engine.counters
    bogus = counters["bogusorg"]

    net.inject(old, (ALICE, 123), (BRENDA, 123))
    net.run(1)
    assert counters["bogusorg"] == bogus + 1

    [cook_response] = [f for f in fields_of(old) if f.code == COOK]
    slipped = []

    def slip(data, source, destination):
        if source[0] != ALICE or slipped or parse(data).fields:
            return data
        slipped.append(data)
        return remac(data, [cook_response], ALICE, BRENDA)

    net.add_interceptor(slip)
    net.run(60)
    # Refused before the state machine: a reply with fields to a request without any.
    assert slipped and counters["autokey_unsolicited"] == 1
    assert (state.cookie, state.status) == (cookie, status)
    assert counters["autokey_resets"] == 0 and counters["cryptonak"] == 0
    net.run(120)
    assert brenda.engine.sys.peer == assoc.associd and counters["badauth"] == 0


def test_replayed_auto_response_is_ignored(group_keys):
    """Symmetric peers: after Alice's poll interval grows her key list is renewed and her
    new, signed autokey values are pushed to Carol; an old AUTO response slipped into a later
    packet is refused for its older Timestamp, and the association keeps its values."""
    keys = group_keys("iff")
    net = SimulatedNetwork(seed=16, latency=0.01, jitter=0.002, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=keys.credentials("alice"))
    carol = net.add_host(CAROL, f"peer {ALICE} autokey ident alice iburst minpoll 4 "
                                "maxpoll 5\n", autokey=keys.credentials("carol"), offset=0.05)
    net.run(900)
    active = only_association(carol)
    state = active.autokey.state
    assert all_lit(state.status) and carol.engine.sys.peer == active.associd
    autos = [f for d in net.capture if d.source[0] == ALICE
             for f in fields_of(d.data) if f.code == AUTO and f.response]
    stamps = sorted({f.timestamp for f in autos})
    assert len(stamps) >= 2, "Alice announced only one key list"
    assert state.auto_timestamp == stamps[-1]
    [old] = [f for f in autos if f.timestamp == stamps[0]][:1]
    values = state.autokey
    slipped = []

    def slip(data, source, destination):
        if source[0] != ALICE or slipped or parse(data).fields:
            return data
        slipped.append(data)
        return remac(data, [attrs.evolve(old, associd=active.associd)], ALICE, CAROL)

    counters = carol.engine.counters
    tsp, resets = counters["autokey_tsp"], counters["autokey_resets"]
    net.add_interceptor(slip)
    net.run(100)
    assert slipped and counters["autokey_tsp"] == tsp + 1
    assert state.autokey == values and state.auto_timestamp == stamps[-1]
    assert all_lit(state.status) and counters["autokey_resets"] == resets
    assert carol.engine.sys.peer == active.associd


def test_crypto_nak_from_stranger_or_wrong_origin_is_ignored(group_keys):
    """Crypto-NAKs that do not answer Brenda's latest request change nothing: one from a
    host she has no association with, one from Alice's address with the wrong origin, one
    with origin 0 (CASES 48, 52); the genuine reply that follows is still taken."""
    keys = group_keys("iff")
    net, alice, brenda = client_server(keys, seed=17)
    net.run(300)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    assert all_lit(state.status)
    counters = brenda.engine.counters
    before = dict(counters)
    status, cookie = state.status, state.cookie
    injected = []

    def nak_before_reply(data, source, destination):
        if source[0] == BRENDA and len(injected) < 3:
            transmit = parse(data).header.transmit
            origin, sender = [(transmit, STRANGER), (transmit + 1, ALICE), (0, ALICE)][
                len(injected)]
            injected.append(sender)
            net.inject(crypto_nak(origin, transmit), (sender, 123), (BRENDA, 123),
                       delay=0.001)
        return data

    net.add_interceptor(nak_before_reply)
    samples = counters["samples"]
    net.run(100)
    assert injected == [STRANGER, ALICE, ALICE]
    assert counters["noassoc"] == before.get("noassoc", 0) + 1
    assert counters["bogusorg"] == before.get("bogusorg", 0) + 2
    assert counters["cryptonak"] == 0 and counters["autokey_resets"] == 0
    assert (state.status, state.cookie) == (status, cookie)
    assert counters["samples"] >= samples + 4  # the genuine replies were all taken
    assert brenda.engine.sys.peer == assoc.associd


def test_server_seed_refresh_restarts_the_dance(group_keys):
    """Alice refreshes her server seed every 512 s (``crypto revoke 9``): Brenda's next
    request fails Alice's MAC check, Alice answers with a crypto-NAK, Brenda resets and
    completes the dance again with the new cookie; nothing else is reset."""
    keys = group_keys("iff")
    credentials = keys.credentials("alice")
    responder = Responder(credentials, ServerSeed(revoke=1 << 9))
    net, alice, brenda = client_server(keys, seed=18,
                                       server_node=AutokeyNode(credentials, responder))
    net.run(300)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    assert all_lit(state.status)
    first = state.cookie
    assert first == responder.server_cookie(BRENDA, ALICE, 0)
    deadline = responder.seed.deadline
    assert deadline is not None

    net.run(400)  # the seed's interval ends in here
    counters = brenda.engine.counters
    assert responder.seed.deadline > deadline
    assert alice.engine.counters["badauth"] == 1
    assert counters["cryptonak"] == 1 and counters["autokey_resets"] == 1
    assert all_lit(state.status) and state.proventic
    assert state.cookie == responder.server_cookie(BRENDA, ALICE, 0) != first
    assert brenda.engine.sys.peer == assoc.associd
    restart = [f.code for d in net.capture if d.source[0] == BRENDA
               for f in fields_of(d.data)]
    assert restart.count(ASSOC) == 2 and restart.count(COOK) == 2


def step_eileen(fig, offset: float) -> None:
    """What the engine does on a discipline STEP: the clock is stepped, then every
    association is cleared (SystemProcess.clock_stepped)."""
    host = fig["eileen"]
    host.clock.step(offset)
    host.engine.system.clock_stepped(offset, fig.net.reactor.seconds())


def test_clock_step_restarts_every_autokey_association(group_keys):
    """A clock step clears every Autokey association at once (RFC 5906 11.5: a general
    reset) and makes the host unsynchronised; both of Eileen's dances then run again through
    the trails to Alice and Carol, her values are re-signed, and she synchronises to her
    proventic sources at her corrected offset."""
    fig = figure5(group_keys("iff"), offsets=OFFSETS)
    fig.net.run(600)
    eileen = fig["eileen"].engine
    signed = eileen.autokey.host.update
    associations = [a for c, _, a in fig.autokey_associations() if c == "eileen"]
    assert all(all_lit(a.autokey.state.status) for a in associations)

    step_eileen(fig, -0.1)
    assert eileen.counters["steps"] == 1 and eileen.counters["autokey_resets"] == 2
    assert all(a.autokey.state.status == 0 and a.autokey.state.cookie == 0
               for a in associations)
    assert eileen.sys.leap == LEAP_UNSYNC and eileen.sys.refid == b"STEP"
    since = len(fig.net.capture)

    fig.net.run(600)
    assert eileen.counters["autokey_resets"] == 2
    # Unsynchronised again: her first CERT requests after the step carry Timestamp 0.
    first = next(f for d in fig.net.capture[since:] if d.source[0] == EILEEN
                 for f in fields_of(d.data) if f.code == CERT)
    assert first.timestamp == 0
    for assoc in associations:
        state = assoc.autokey.state
        assert all_lit(state.status) and state.proventic
        assert len(state.trail) == 2 and state.trail[-1][0] in {"alice@alice", "carol@alice"}
    assert eileen.autokey.host.update > signed
    assert eileen.sys.stratum == 3
    assert eileen.sys.offset == pytest.approx(0.03, abs=0.003)
    for name in ("brenda", "denise"):
        assert fig[name].engine.counters["autokey_resets"] == 0


def test_discipline_step_restarts_the_dance(group_keys):
    """With the discipline on, a client 0.5 s off steps its clock at its first clock update
    (once Alice is proventic); the step resets the association, which runs the dance again;
    SIGN and LEAP follow once the discipline, after measuring the frequency for the stepout
    interval (900 s), synchronises the clock again."""
    keys = group_keys("tc")
    net = SimulatedNetwork(seed=19, latency=0.01, jitter=0.002, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=keys.credentials("alice"))
    brenda = net.add_host(BRENDA, "enable ntp\n" + keys.server_line(ALICE),
                          autokey=keys.credentials("brenda"), offset=0.5)
    net.run(300)
    assoc = only_association(brenda)
    state = assoc.autokey.state
    counters = brenda.engine.counters
    assert counters["steps"] == 1 and brenda.clock.steps == [pytest.approx(-0.5, abs=0.003)]
    assert counters["autokey_resets"] == 1
    assert state.proventic and not state.status & (Flag.SIGN | Flag.LEAP)
    assert brenda.engine.sys.leap == LEAP_UNSYNC
    net.run(1200)
    assert counters["steps"] == 1 and counters["autokey_resets"] == 1
    assert all_lit(state.status)
    assert brenda.engine.sys.peer == assoc.associd
    assert abs(brenda.true_offset) < 0.003


def test_clock_step_restarts_the_refresh_timer(group_keys):
    """The reset of a clock step restarts the 2**19-s refresh timer from the time of the
    step: on a host whose monotonic clock is past 2**19 s, the associations are reset once
    by the step and not again by the first packet after it."""
    reactor = task.Clock()
    reactor.advance(1 << 20)
    net = SimulatedNetwork(seed=20, latency=0.01, jitter=0.002, epoch=EPOCH - (1 << 20),
                           clock=reactor)
    fig = figure5(group_keys("iff"), offsets=OFFSETS, net=net)
    fig.net.run(600)
    eileen = fig["eileen"].engine
    assert all(all_lit(a.autokey.state.status) for c, _, a in fig.autokey_associations())

    step_eileen(fig, -0.1)
    stepped = [a for c, _, a in fig.autokey_associations() if c == "eileen"]
    assert [a.autokey.state.reset_at for a in stepped] == [int(reactor.seconds())] * 2
    fig.net.run(600)
    assert eileen.counters["autokey_resets"] == 2
