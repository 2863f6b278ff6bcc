"""Autokey dances between engines on the simulated network, with the reference's keys.

The key files are ntp-keygen's (``../shared/vectors/keys``); the simulated clocks start after
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


def server_dance(vectors, scenario: str, seconds: float = 300.0, **client_kwargs):
    """Alice (trusted host, stratum 1) serves brenda, who runs the client dance."""
    net = SimulatedNetwork(seed=1, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(ALICE, "localclock stratum 1\n", autokey=host(vectors, scenario,
                                                                        "alice"))
    brenda = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4\n",
                          autokey=host(vectors, scenario, "brenda", **client_kwargs),
                          offset=0.05)
    net.run(seconds)
    [assoc] = brenda.engine.associations.values()
    return net, alice, brenda, assoc


@pytest.mark.parametrize("scenario, nid", [("tc-rsa-md5", 8), ("tc-rsa-sha1", 65)])
def test_tc_server_dance_completes(vectors, scenario, nid):
    """The TC client dance lights every flag, as the reference's final word shows
    (0x87F03 for RSA-MD5), and the proventic server is used for time."""
    net, alice, brenda, assoc = server_dance(vectors, scenario)
    state = assoc.autokey.state
    assert state.status == (nid << 16) | 0x7F03
    assert state.trail == [("alice@alice", "alice@alice")]
    assert brenda.engine.sys.peer == assoc.associd
    assert brenda.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    # Brenda's own certificate is now signed by alice (SIGN).
    assert any(e.cert.issuer == "alice@alice"
               for e in brenda.engine.autokey.host.cache if e.subject == "brenda@alice")


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
