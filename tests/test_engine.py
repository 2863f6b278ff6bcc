"""Tests for ntpauto.engine on the simulated network (ntpauto.testing).

Each scenario runs real engines with simulated clocks; no wall time passes.
"""

from __future__ import annotations

import pytest

from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import MODE_SERVER, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

SERVER = "10.0.0.1"
CLIENT = "10.0.0.2"
KEYS = "1 MD5 sharedsecret\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n"


def client_of(engine, address):
    """The association of ``engine`` with ``address``."""
    [assoc] = [a for a in engine.associations.values() if a.address[0] == address]
    return assoc


def test_client_converges_to_server_with_discipline():
    """A disciplined client 0.25 s from its server, with 5 ms network jitter, ends within
    1 ms of the server's time and stays there."""
    net = SimulatedNetwork(seed=3, latency=0.01, jitter=0.005)
    server = net.add_host(SERVER, "localclock stratum 1\n", offset=0.25)
    client = net.add_host(CLIENT, f"server {SERVER} iburst minpoll 4 maxpoll 4\nenable ntp\n")
    net.run(3600)
    assert client.engine.discipline.state == "SYNC"
    assert len(client.clock.steps) == 1
    for _ in range(60):
        net.run(60)
        assert abs(client.clock.error() - server.clock.error()) < 0.001


def test_undisciplined_client_measures_but_never_adjusts():
    """Without ``enable ntp`` the offset is measured and the clock is left alone."""
    net = SimulatedNetwork(seed=4, latency=0.01, jitter=0.005)
    net.add_host(SERVER, "localclock stratum 1\n", offset=0.25)
    client = net.add_host(CLIENT, f"server {SERVER} iburst\n")
    net.run(600)
    assert client.engine.discipline is None
    assert client.clock.steps == [] and client.clock.offset == 0.0
    assert client.engine.sys.offset == pytest.approx(0.25, abs=0.003)
    assert client.engine.sys.stratum == 2
    assert client.engine.sys.refid == bytes([10, 0, 0, 1])


def test_iburst_sends_a_burst_at_start():
    """iburst fills the filter with eight packets two seconds apart."""
    net = SimulatedNetwork(seed=5)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} iburst minpoll 6\n")
    net.run(20)
    assert client.engine.counters["sent"] == 8
    assert client_of(client.engine, SERVER).reach == 0x01  # one poll, burst replies in it


def test_falseticker_rejected_among_four():
    """Selection keeps the three agreeing servers and rejects the one 0.5 s off."""
    net = SimulatedNetwork(seed=6, latency=0.005, jitter=0.002)
    servers = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]
    for address, offset in zip(servers, [0.0, 0.001, -0.001, 0.5]):
        net.add_host(address, "localclock stratum 1\n", offset=offset)
    lines = "".join(f"server {s} iburst\n" for s in servers)
    client = net.add_host(CLIENT, lines)
    net.run(900)
    engine = client.engine
    assert engine.sys.peer is not None
    peer = engine.associations[engine.sys.peer]
    assert peer.address[0] != "10.0.1.4"
    assert abs(engine.sys.offset) < 0.002
    from ntpauto.ntp.select import select

    selection = select(engine.system.candidates(net.reactor.seconds()), net.reactor.seconds())
    false_addresses = {engine.associations[c.key].address[0] for c in selection.falsetickers}
    assert false_addresses == {"10.0.1.4"}


def test_symmetric_pair_with_passive_mobilisation():
    """An authenticated symmetric active packet mobilises a passive association; both peers
    measure each other and the unsynchronised one synchronises to the other."""
    net = SimulatedNetwork(seed=7, latency=0.01, jitter=0.002)
    alice = net.add_host("10.0.0.1", "localclock stratum 2\nkeys /x\ntrustedkey 1\n"
                         .replace("keys /x\n", ""), keys=KEYS)
    bob = net.add_host("10.0.0.2", "peer 10.0.0.1 key 1 minpoll 4 iburst\n", keys=KEYS,
                       offset=-0.1)
    net.run(600)
    passive = client_of(alice.engine, "10.0.0.2")
    assert passive.ephemeral and passive.hmode == 2
    active = client_of(bob.engine, "10.0.0.1")
    assert active.reach and passive.reach
    assert bob.engine.sys.peer == active.associd
    assert bob.engine.sys.offset == pytest.approx(0.1, abs=0.002)
    assert bob.engine.sys.stratum == 3
    assert passive.offset == pytest.approx(-0.1, abs=0.002)


def test_unauthenticated_symmetric_active_does_not_mobilise():
    """With auth enabled (the default) an unauthenticated peer gets a stateless passive
    reply and no association."""
    net = SimulatedNetwork(seed=8)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n")
    bob = net.add_host("10.0.0.2", "peer 10.0.0.1 minpoll 4\n")
    net.run(120)
    assert all(a.is_refclock for a in alice.engine.associations.values())
    assert alice.engine.counters["declined"] > 0
    assert bob.engine.sys.stratum == 2  # it still got time from the stateless replies


def test_passive_association_reclaimed_when_peer_goes_away():
    """An ephemeral passive association is demobilised after the peer falls silent."""
    net = SimulatedNetwork(seed=9)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n", keys=KEYS)
    net.add_host("10.0.0.2", "peer 10.0.0.1 key 1 minpoll 4\n", keys=KEYS)
    net.run(120)
    assert len(alice.engine.associations) == 2
    del net.hosts["10.0.0.2"]
    net.run(3600)
    assert len(alice.engine.associations) == 1
    assert alice.engine.counters["demobilised"] == 1


def test_broadcast_client_calibrates_then_follows_broadcasts():
    """A broadcast client runs a client-mode volley, then takes samples from broadcasts."""
    net = SimulatedNetwork(seed=10, latency=0.004)
    server = net.add_host("10.0.0.1", "localclock stratum 1\nbroadcast 10.0.0.255 key 1 "
                          "minpoll 4\n", keys=KEYS)
    client = net.add_host("10.0.0.2", "broadcastclient\n", keys=KEYS, offset=0.05)
    net.run(600)
    assoc = client_of(client.engine, "10.0.0.1")
    assert assoc.hmode == 6 and assoc.caldelay == pytest.approx(0.008, abs=0.001)
    assert client.engine.sys.peer == assoc.associd
    assert client.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    sent_by_client = [d for d in net.capture if d.source[0] == "10.0.0.2"]
    assert 1 <= len(sent_by_client) <= 4  # only the volley
    assert server.engine.wants_broadcast


def test_broadcast_client_ignores_unauthenticated_broadcasts():
    """With auth on, a broadcast without a trusted MAC mobilises nothing."""
    net = SimulatedNetwork(seed=11)
    net.add_host("10.0.0.1", "localclock stratum 1\nbroadcast 10.0.0.255 minpoll 4\n")
    client = net.add_host("10.0.0.2", "broadcastclient\n")
    net.run(200)
    assert not client.engine.associations
    assert client.engine.counters["declined"] > 0


def test_symmetric_key_client_server():
    """Client and server exchange MD5-authenticated packets; replies carry the key."""
    net = SimulatedNetwork(seed=12)
    net.add_host(SERVER, "localclock stratum 1\n", keys=KEYS)
    client = net.add_host(CLIENT, f"server {SERVER} key 2 iburst\n", keys=KEYS)
    net.run(60)
    assert client.engine.sys.stratum == 2
    replies = [parse(d.data) for d in net.capture if d.source[0] == SERVER]
    assert replies and all(p.keyid == 2 and len(p.digest) == 20 for p in replies)


def test_wrong_key_gets_crypto_nak_and_no_time():
    """A request with a MAC the server cannot verify is answered with a crypto-NAK, which
    the client counts and does not use."""
    net = SimulatedNetwork(seed=13)
    net.add_host(SERVER, "localclock stratum 1\n", keys="1 MD5 serverside\n")
    client = net.add_host(CLIENT, f"server {SERVER} key 1 iburst\n", keys="1 MD5 clientside\n")
    net.run(60)
    assert client.engine.counters["cryptonak"] > 0
    assert client.engine.sys.peer is None
    replies = [parse(d.data) for d in net.capture if d.source[0] == SERVER]
    assert all(p.is_crypto_nak for p in replies)


def test_kod_rate_doubles_poll():
    """A rate-limited client receives RATE kisses and doubles its poll interval."""
    net = SimulatedNetwork(seed=14)
    server = net.add_host(SERVER, "localclock stratum 1\nrestrict default limited kod\n"
                          "discard average 6 minimum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 3 maxpoll 10\n")
    net.run(8 * 15)
    assoc = client_of(client.engine, SERVER)
    assert server.engine.counters["kodsent"] >= 1
    assert client.engine.counters["kod"] >= 1
    assert assoc.hpoll >= 4


def test_kod_rate_with_huge_poll_is_clamped():
    """A RATE kiss advertising poll 127 cannot push the poll beyond maxpoll."""
    net = SimulatedNetwork(seed=15)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 4 maxpoll 8\n")
    net.run(1)
    assoc = client_of(client.engine, SERVER)

    def rate_kiss(data, source, destination):
        if source[0] == SERVER:
            h = parse(data).header._replace(stratum=0, refid=b"RATE", poll=127)
            return h.encode()
        return data

    net.add_interceptor(rate_kiss)
    net.run(600)
    assert assoc.hpoll == 8


@pytest.mark.parametrize("code", [b"DENY", b"RSTR"])
def test_kod_deny_demobilises(code):
    """DENY and RSTR kisses with a valid origin end the association: nothing more is sent."""
    net = SimulatedNetwork(seed=16)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 4\n")

    def kiss(data, source, destination):
        if source[0] == SERVER:
            return parse(data).header._replace(stratum=0, refid=code).encode()
        return data

    net.add_interceptor(kiss)
    net.run(100)
    assert not client.engine.associations
    sent = client.engine.counters["sent"]
    net.run(1000)
    assert client.engine.counters["sent"] == sent == 1


def test_kiss_with_wrong_origin_ignored():
    """A DENY kiss that does not answer our packet (bogus origin) changes nothing."""
    net = SimulatedNetwork(seed=17)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 4\n")
    net.run(100)
    forged = Header(0, 4, MODE_SERVER, 0, 4, -20, 0, 0, b"DENY", 0, 12345, 1, 2).encode()
    net.inject(forged, (SERVER, 123), (CLIENT, 123))
    net.run(1)
    assert client.engine.associations
    assert client.engine.counters["bogusorg"] == 1


def test_replayed_reply_dropped():
    """A copy of a server reply delivered again is dropped (TEST1) without state change."""
    net = SimulatedNetwork(seed=18)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 4\n")
    net.run(100)
    [last_reply] = [d for d in net.capture if d.source[0] == SERVER][-1:]
    assoc = client_of(client.engine, SERVER)
    before = (assoc.org, assoc.rec, assoc.reach, assoc.offset)
    net.inject(last_reply.data, (SERVER, 123), (CLIENT, 123))
    net.run(0.5)
    assert client.engine.counters["oldpkt"] == 1
    assert (assoc.org, assoc.rec, assoc.reach, assoc.offset) == before


def test_bogus_origin_dropped_without_state_change():
    """A reply whose origin is not our last transmit is dropped and changes nothing
    (CVE-2015-1799); origin zero likewise."""
    net = SimulatedNetwork(seed=19)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, f"server {SERVER} minpoll 4\n")
    net.run(100)
    assoc = client_of(client.engine, SERVER)
    before = (assoc.org, assoc.rec, assoc.reach, assoc.hpoll, assoc.nextdate)
    for origin in (0, 0xDEADBEEF):
        bogus = Header(0, 4, MODE_SERVER, 1, 4, -20, 0, 0, b"LOCL", 0, origin, 1,
                       unix_to_ntp(1_795_000_200.0)).encode()
        net.inject(bogus, (SERVER, 123), (CLIENT, 123))
    net.run(0.5)
    assert client.engine.counters["bogusorg"] == 2
    assert (assoc.org, assoc.rec, assoc.reach, assoc.hpoll, assoc.nextdate) == before


def test_unsynchronised_server_not_used():
    """A server reporting leap 3 / stratum 16 is reached but never selected (TEST6)."""
    net = SimulatedNetwork(seed=20)
    net.add_host(SERVER, "restrict default\n")  # no time source: unsynchronised
    client = net.add_host(CLIENT, f"server {SERVER} iburst\n")
    net.run(100)
    assert client.engine.sys.peer is None
    assert client.engine.counters["kod"] + client.engine.counters["unsync"] > 0


def test_unreachable_server_backs_off():
    """A server that never answers makes the poll interval grow towards maxpoll."""
    net = SimulatedNetwork(seed=21)
    client = net.add_host(CLIENT, "server 10.9.9.9 minpoll 4 maxpoll 6\n")
    net.run(16 * 40)
    assoc = client_of(client.engine, "10.9.9.9")
    assert assoc.reach == 0 and assoc.hpoll == 6


def test_simulation_is_deterministic():
    """The same seed gives the same packets byte for byte."""
    def run():
        net = SimulatedNetwork(seed=22, latency=0.01, jitter=0.005, loss=0.1, reorder=0.1)
        net.add_host(SERVER, "localclock stratum 1\n")
        net.add_host(CLIENT, f"server {SERVER} iburst minpoll 4\n", offset=0.1)
        net.run(300)
        return [(d.time, d.data) for d in net.capture]

    assert run() == run()
