"""Autokey dances between engines on the simulated network, with the reference's keys.

The key files are ntp-keygen's (``tests/vectors/keys``); the simulated clocks start after
their certificates' notBefore.
"""

from __future__ import annotations

import pytest

from ntpauto.autokey.host import load_host
from ntpauto.autokey.status import Flag
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import parse

EPOCH = 1_795_460_000.0  # 2026-11-23 18:53 UTC, inside the vectors' certificate validity
ALICE, BRENDA = "10.0.0.1", "10.0.0.2"
PASSWORDS = {"alice": "alicepw", "brenda": "brendapw", "carol": "carolpw"}


def host(vectors, scenario: str, name: str, **kwargs):
    """Load a host's credentials from the vectors' keys directory."""
    return load_host(vectors / "keys" / scenario / name, host=name,
                     password=PASSWORDS[name], **kwargs)


def server_dance(vectors, scenario: str, seconds: float = 300.0):
    """Alice (trusted host, stratum 1) serves brenda, who runs the client dance.  In PC both
    hosts hold alice's files (the group shares one key and private certificate)."""
    net = SimulatedNetwork(seed=1, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n", autokey=host(vectors, scenario,
                                                                        "alice"))
    client = "alice" if scenario == "pc" else "brenda"
    credentials = load_host(vectors / "keys" / scenario / "brenda", host=client,
                            password=PASSWORDS[client])
    brenda = net.add_host(BRENDA, f"server {ALICE} autokey ident alice iburst minpoll 4\n",
                          autokey=credentials, offset=0.05)
    net.run(seconds)
    [assoc] = brenda.engine.associations.values()
    return net, alice, brenda, assoc


@pytest.mark.parametrize("scenario, word, scheme", [
    ("tc-rsa-md5", 0x87F03, "tc"), ("tc-rsa-sha1", 0x417F03, "tc"),
    ("tc-dsa-sha1", 0x717F03, "tc"), ("pc", 0x87F13, "pc"), ("iff-trad", 0x87F23, "iff"),
    ("gq", 0x87F43, "gq"), ("mv-trad", 0x87F83, "mv")])
def test_server_dance_completes(vectors, scenario, word, scheme):
    """With the reference's own key files every scheme's client dance lights every flag
    (the reference's final words: 0x87F03 TC, 0x87F43 GQ, ...; with DSA ours also gets LEAP
    because our DSA signatures always have the length the reference insists on), and the
    proventic server is used for time."""
    net, alice, brenda, assoc = server_dance(vectors, scenario)
    state = assoc.autokey.state
    assert state.status == word
    assert state.scheme_name == scheme
    assert brenda.engine.sys.peer == assoc.associd
    assert brenda.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    if scenario != "pc":
        assert state.trail == [("alice@alice", "alice@alice")]
        # Brenda's own certificate is now signed by alice (SIGN).
        assert any(e.cert.issuer == "alice@alice"
                   for e in brenda.engine.autokey.host.cache if e.subject == "brenda@alice")


@pytest.mark.parametrize("scenario", ["iff", "mv"])
def test_pkcs8_identity_files_never_verify(vectors, scenario):
    """ntp-keygen's PKCS#8 IFF/MV files lose the public value, so, as with the reference,
    VRFY never lights and the server is never used for time (vectors: RESULTS.md)."""
    net, alice, brenda, assoc = server_dance(vectors, scenario, seconds=200)
    state = assoc.autokey.state
    assert not state.status & Flag.VRFY and not state.proventic
    assert brenda.engine.counters["autokey_id"] > 0
    assert brenda.engine.sys.peer is None


def test_packets_without_fields_use_the_server_cookie(vectors):
    """After the dance, client and server exchange packets without extension fields whose
    MACs use the cookie (so a packet with a wrong MAC is refused)."""
    net, alice, brenda, assoc = server_dance(vectors, "tc-rsa-md5")
    tail = [parse(d.data) for d in net.capture[-6:]]
    assert all(p.fields == () and p.keyid > 65535 for p in tail)
    assert assoc.autokey.state.cookie != 0
    assert brenda.engine.counters["badauth"] == 0


def test_not_proventic_never_used_for_time(vectors):
    """Until PROV lights the association is no selection candidate: a client whose
    certificate trail cannot reach a trusted root never synchronises."""
    net = SimulatedNetwork(seed=2, latency=0.01, epoch=EPOCH)
    # brenda serves (untrusted certificate): alice's trail ends at no trustRoot.
    net.add_host(BRENDA, "localclock stratum 1\n", autokey=host(vectors, "tc-rsa-md5",
                                                                 "brenda"))
    client = net.add_host(ALICE, f"server {BRENDA} autokey iburst minpoll 4\n",
                          autokey=host(vectors, "tc-rsa-md5", "alice"))
    net.run(300)
    [assoc] = client.engine.associations.values()
    assert not assoc.autokey.state.proventic
    assert client.engine.sys.peer is None
    assert assoc.reach  # it does hear the server


def test_tampered_reply_dropped(vectors):
    """A reply altered in flight fails its session-key MAC and is dropped."""
    net = SimulatedNetwork(seed=3, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=host(vectors, "tc-rsa-md5",
                                                                "alice"))
    client = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4\n",
                          autokey=host(vectors, "tc-rsa-md5", "brenda"))

    def flip(data, source, destination):
        if source[0] == ALICE and len(data) > 60:
            return data[:58] + bytes([data[58] ^ 1]) + data[59:]  # a field's timestamp
        return data

    net.add_interceptor(flip)
    net.run(120)
    [assoc] = client.engine.associations.values()
    assert client.engine.counters["badauth"] > 0
    assert assoc.autokey.state.status & Flag.CERT == 0


def test_server_refuses_wrong_mac_with_crypto_nak(vectors):
    """An Autokey request whose MAC does not verify gets a crypto-NAK."""
    net = SimulatedNetwork(seed=4, latency=0.01, epoch=EPOCH)
    server = net.add_host(ALICE, "localclock stratum 1\n",
                          autokey=host(vectors, "tc-rsa-md5", "alice"))
    net.add_host(BRENDA, f"server {ALICE} autokey minpoll 4\n",
                 autokey=host(vectors, "tc-rsa-md5", "brenda"))

    def corrupt(data, source, destination):
        if source[0] == BRENDA:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    net.add_interceptor(corrupt)
    net.run(60)
    assert server.engine.counters["badauth"] > 0
    replies = [parse(d.data) for d in net.capture if d.source[0] == ALICE]
    assert replies and all(p.is_crypto_nak for p in replies)


def test_symmetric_dance_with_xor_cookie(vectors):
    """Carol (symmetric active) and alice (passive, mobilised by carol's authentic ASSOC
    request) both light every flag and end with the same cookie (each one's hcookie XOR the
    other's); carol synchronises to alice."""
    net = SimulatedNetwork(seed=5, latency=0.01, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=host(vectors, "sym", "alice"))
    carol = net.add_host("10.0.0.3", f"peer {ALICE} autokey iburst minpoll 4\n",
                         autokey=host(vectors, "sym", "carol"), offset=0.05)
    net.run(400)
    [passive] = [a for a in alice.engine.associations.values() if a.autokey is not None]
    [active] = carol.engine.associations.values()
    assert passive.ephemeral and passive.hmode == 2
    assert active.autokey.state.status & 0x7F00 == 0x7F00
    assert passive.autokey.state.status & 0x7F00 == 0x7F00
    assert active.autokey.state.cookie == passive.autokey.state.cookie != 0
    assert passive.autokey.state.hcookie ^ active.autokey.state.hcookie == \
        active.autokey.state.cookie
    assert carol.engine.sys.peer == active.associd
    assert carol.engine.sys.offset == pytest.approx(-0.05, abs=0.002)


def symmetric_peers(vectors, carol_clock: str):
    """Alice (stratum 1) and carol (``peer alice autokey minpoll 3 maxpoll 3`` as in the
    reference's ``sym`` capture, after ``carol_clock``) with the capture's keys."""
    net = SimulatedNetwork(seed=5, latency=0.01, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n",
                         autokey=host(vectors, "sym", "alice"))
    carol = net.add_host("10.0.0.3", f"{carol_clock}peer {ALICE} autokey minpoll 3 maxpoll 3\n",
                         autokey=host(vectors, "sym", "carol"), offset=0.05)
    return net, alice, carol


def lit(host) -> bool:
    """Every Autokey association of ``host`` has all of 0x7F00."""
    states = [a.autokey.state for a in host.engine.associations.values() if a.autokey]
    return bool(states) and all(s.status & 0x7F00 == 0x7F00 for s in states)


def test_symmetric_dance_is_paced_by_answers_not_polls(vectors):
    """Each peer answers a packet that asks it something (or moved its dance on) 1.5 s
    later, as the reference does (its capture: 16.5 s from ASSOC to the last LEAP
    response), not at its next poll: both sides light every flag within 20 s at poll 8 s
    (six round trips at the poll took 48 s).  Two packets of one side are never closer
    than 2 s, and once the dance is over the peers go back to their polls."""
    net, alice, carol = symmetric_peers(vectors, "localclock stratum 3\n")
    net.run(20)
    assert lit(alice) and lit(carol)
    for side in (ALICE, "10.0.0.3"):
        times = [d.time for d in net.capture if d.source[0] == side]
        assert min(b - a for a, b in zip(times, times[1:])) >= 2.0
    before = len(net.capture)
    net.run(40)
    assert len(net.capture) - before <= 2 * 6  # one packet per side and 8 s poll


def test_unsynchronised_peer_gets_its_samples_promptly(vectors):
    """Carol has no clock of her own: she can sign nothing (so answer none of alice's CERT
    requests) until alice's packets have synchronised her.  Alice, synchronised, answers
    her packets promptly meanwhile, at most BCOUNT times a dance, so that both dances end
    within 35 s at poll 8 s (73 s at the poll)."""
    from ntpauto.ntp.peer import BCOUNT

    net, alice, carol = symmetric_peers(vectors, "")
    net.run(35)
    assert lit(alice) and lit(carol)
    [passive] = [a for a in alice.engine.associations.values() if a.autokey]
    assert 0 < passive.autokey.prompt_answers <= BCOUNT


@pytest.mark.parametrize("scenario, word", [("tc-rsa-md5", 0x87F03), ("gq", 0x87F43)])
def test_broadcast_dance(vectors, scenario, word):
    """A broadcast client mobilises on the first broadcast carrying an ASSOC response, runs
    the client dance unicast (CERT, [GQ], COOK, AUTO, then SIGN and LEAP once synchronised;
    no ASSOC request), then only listens: broadcasts pass the autokey test with cookie 0
    and the broadcast address as destination (interop.md 11)."""
    net = SimulatedNetwork(seed=6, latency=0.004, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\nbroadcast 10.0.0.255 autokey minpoll 4\n",
                 autokey=host(vectors, scenario, "alice"))
    client = net.add_host(BRENDA, "broadcastclient\nident alice\n",
                          autokey=host(vectors, scenario, "brenda"), offset=0.05)
    net.run(600)
    [assoc] = client.engine.associations.values()
    assert assoc.hmode == 6 and assoc.volley == 0
    assert assoc.autokey.state.status == word
    assert assoc.caldelay == pytest.approx(0.008, abs=0.001)
    assert client.engine.sys.peer == assoc.associd
    assert client.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    volley = [parse(d.data) for d in net.capture if d.source[0] == BRENDA]
    first_codes = [(f.word >> 16) & 0xFF for p in volley[:1] for f in p.fields]
    assert first_codes == [2]  # the volley starts with CERT, not ASSOC
    late = client.engine.counters["samples"]
    net.run(160)
    assert client.engine.counters["samples"] >= late + 9  # broadcasts keep coming in
    assert len([d for d in net.capture if d.source[0] == BRENDA]) == len(volley)  # listens


def test_forged_broadcast_key_id_is_refused(vectors):
    """A broadcast whose key ID is not on the announced chain fails the autokey test after
    a bounded number of hashes and is not used."""
    from ntpauto.auth.autokey import mac, session_key
    from ntpauto.wire.packet import Header

    net = SimulatedNetwork(seed=7, latency=0.004, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\nbroadcast 10.0.0.255 autokey minpoll 4\n",
                 autokey=host(vectors, "tc-rsa-md5", "alice"))
    client = net.add_host(BRENDA, "broadcastclient\nident alice\n",
                          autokey=host(vectors, "tc-rsa-md5", "brenda"))
    net.run(300)
    [assoc] = client.engine.associations.values()
    before = client.engine.counters["autokey_sequence"]
    forged_keyid = 0x7FFF_FFF1
    header = Header(0, 4, 5, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0,
                    (int(EPOCH) + 2_208_988_800 + 300) << 32).encode()
    key = session_key(ALICE, "10.0.0.255", forged_keyid, 0)
    net.inject(header + mac(key, forged_keyid, header), (ALICE, 123), ("10.0.0.255", 123))
    net.run(0.5)
    assert client.engine.counters["autokey_sequence"] == before + 1
    assert assoc.flash & 0x0080  # TEST8


def test_existing_ntpd_keysdir_from_config(vectors, tmp_path):
    """`crypto` and `keysdir` in ntp.conf load a keys directory made by ntp-keygen as is."""
    from ntpauto.config import parse_config
    from ntpauto.engine import build_engine
    from ntpauto.ntp.clocks import SimulatedClock

    keysdir = vectors / "keys" / "gq" / "alice"
    config = parse_config(f"crypto host alice pw alicepw\nkeysdir {keysdir}\n",
                          str(tmp_path / "ntp.conf"))
    engine = build_engine(config, SimulatedClock(lambda: 0.0))
    assert engine.autokey.host.name == "alice@alice"
    assert engine.autokey.host.status & Flag.GQ  # the GQ server key was found


@pytest.mark.parametrize("breakage, message", [
    ("password", "ntpkey_RSAhost_alice.4004436515: wrong password"),
    ("host", "ntpkey_host_alice"),
    ("certificate", "ntpkey_RSA-MD5cert_brenda.4004436516: the certifi")])
def test_broken_keysdir_stops_the_start(vectors, tmp_path, breakage, message):
    """A wrong password, a missing host key or a certificate that does not match the key is
    an error naming the file."""
    import shutil

    from ntpauto.config import parse_config
    from ntpauto.engine import build_engine
    from ntpauto.ntp.clocks import SimulatedClock

    keysdir = tmp_path / "keys"
    shutil.copytree(vectors / "keys" / "tc-rsa-md5" / "alice", keysdir)
    password = "alicepw"
    if breakage == "password":
        password = "wrong"
    elif breakage == "host":
        (keysdir / "ntpkey_host_alice").unlink()
    else:  # brenda's certificate in alice's place
        brenda = vectors / "keys" / "tc-rsa-md5" / "brenda"
        target = (keysdir / "ntpkey_cert_alice")
        target.unlink()
        cert = next(brenda.glob("ntpkey_RSA-MD5cert_brenda.*"))
        shutil.copy(cert, keysdir / cert.name)
        target.write_text(cert.name)
    config = parse_config(f"crypto host alice pw {password}\nkeysdir {keysdir}\n",
                          str(tmp_path / "ntp.conf"))
    with pytest.raises(Exception) as info:
        build_engine(config, SimulatedClock(lambda: 0.0))
    assert message in str(info.value)


def test_leap_values_from_the_leapfile_reach_dependent_clients(vectors, tmp_path):
    """Alice's leap-seconds.list values (TAI-UTC 37 since 2017) are fetched by brenda with
    LEAP, and brenda forwards them to her own client eileen, who joins once brenda is
    synchronised (a server without leap values advertises no TAI bit and is not asked)."""
    from ntpauto.leapfile import parse_leapfile
    from tests.test_leapfile import leap_text

    table = parse_leapfile(leap_text())
    net = SimulatedNetwork(seed=8, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n",
                 autokey=host(vectors, "tc-rsa-md5", "alice", leap=table))
    brenda = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4\n",
                          autokey=host(vectors, "tc-rsa-md5", "brenda"))
    net.run(300)  # brenda synchronises and signs first, so her word carries TAI
    from ntpauto.autokey.host import generate_host

    eileen_host = generate_host(tmp_path, "eileen", "alice", trusted=False, bits=1024,
                                now=int(EPOCH) + 2_208_988_800 - 3600)
    eileen = net.add_host("10.0.0.5", f"server {BRENDA} autokey iburst minpoll 4\n",
                          autokey=eileen_host)
    net.run(600)
    expected = table.autokey_values(int(EPOCH) + 2_208_988_800)
    assert expected[0] == 37
    def triple(value):
        return (value.tai_offset, value.era_start, value.expire)

    assert triple(brenda.engine.autokey.host.leap_values) == expected
    [to_brenda] = eileen.engine.associations.values()
    assert to_brenda.autokey.state.status & Flag.LEAP
    assert triple(eileen.engine.autokey.host.leap_values) == expected
