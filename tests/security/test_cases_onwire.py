"""CASES.md, the on-wire protocol of a client association: crypto-NAKs, replays, origins,
kiss codes, unsynchronised and distant servers, bad-MAC broadcasts.  Replies go through
:meth:`Engine.receive`; each test asserts the counter and that a dropped reply changes
nothing."""

from __future__ import annotations

import struct

import pytest

from ntpauto.ntp.peer import Flash
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.timestamps import to_short
from tests.security.helpers import KEYS, OTHER, SERVER, AutokeyRig, ClientRig

WORD = struct.Struct("!I")
NAK = WORD.pack(0)


def wrong_origins(xmt: int) -> list[int]:
    return [0, xmt - 1, xmt + 1, xmt ^ (1 << 63), 0xDEADBEEF, (1 << 64) - 1]


def test_case_48_crypto_nak_with_wrong_origin():
    """48. Crypto-NAK with the wrong origin to an existing association → drop (TEST2)
    (CVE-2016-1547).  Every kind of wrong origin, keyed and plain associations; the right
    origin is then taken (cryptonak, TEST9)."""
    rig = ClientRig(options="key 1 minpoll 4", keys=KEYS)
    rig.synchronise(3)
    rig.poll()
    before = rig.state()
    for origin in wrong_origins(rig.assoc.xmt):
        _, delta = rig.deliver(rig.reply(origin=origin).encode() + NAK)
        assert delta == {"bogusorg": 1}
        assert rig.state() == before
    _, delta = rig.deliver(rig.reply().encode() + NAK)
    assert delta == {"cryptonak": 1} and rig.assoc.flash & 0x100


def test_case_48_crypto_nak_wrong_origin_keeps_autokey(vectors):
    """48 for an Autokey association: a wrong-origin crypto-NAK resets nothing."""
    rig = AutokeyRig(vectors, until=lambda s: s & 0x7F00 == 0x7F00)
    status = rig.state.status
    rig.poll()
    for origin in wrong_origins(rig.assoc.xmt):
        header = rig.reply_bytes(origin=origin)[:48]
        _, delta = rig.deliver(header + NAK)
        assert delta == {"bogusorg": 1}
    assert rig.state.status == status and rig.engine.counters["autokey_resets"] == 0


def test_case_50_replayed_transmit_timestamp():
    """50. Reply with a transmit timestamp equal to the previous one (replay) → drop
    (TEST1, `oldpkt`) (RFC5905 §8.).  The previous reply replayed whole, and its transmit
    timestamp in a reply that otherwise answers the new request."""
    rig = ClientRig()
    rig.poll()
    first = rig.reply()
    rig.deliver(first.encode())
    _, delta = rig.deliver(first.encode())
    assert delta == {"oldpkt": 1}
    rig.poll()
    before = rig.state()
    _, delta = rig.deliver(rig.reply(transmit=first.transmit).encode())
    assert delta == {"oldpkt": 1} and rig.assoc.flash & 0x01
    assert rig.state() == before


def test_case_51_bogus_origin_changes_nothing():
    """51. Reply with an origin ≠ our last transmit → drop (TEST2, `bogusorg`); must not
    change state or poll (CVE-2015-1799.).  Many wrong origins, also kisses (DENY, RATE)
    and unsynchronised replies, which must not act either."""
    rig = ClientRig()
    rig.synchronise(4)
    rig.poll()
    before = rig.state()
    for origin in wrong_origins(rig.assoc.xmt):
        for extra in ({}, {"stratum": 0, "refid": b"DENY"}, {"stratum": 0, "refid": b"RATE",
                                                             "poll": 17}, {"leap": 3}):
            _, delta = rig.deliver(rig.reply(origin=origin, **extra).encode())
            assert delta == {"bogusorg": 1}
            assert rig.state() == before
    assert rig.engine.associations


def test_case_52_zero_origin_in_client_mode():
    """52. Reply with origin = 0 in client mode → drop (TEST2) (CVE-2015-8138,
    CVE-2016-7431, CVE-2016-9042).  Also before the first request was answered and with
    a zero receive timestamp."""
    rig = ClientRig()
    rig.poll()
    for extra in ({}, {"receive": 0}, {"transmit": 1}):
        before = rig.state()
        _, delta = rig.deliver(rig.reply(origin=0, **extra).encode())
        assert delta == {"bogusorg": 1}
        assert rig.state() == before


def test_case_54_zero_transmit_timestamp():
    """54. Transmit timestamp 0 → TEST3 drop."""
    rig = ClientRig()
    rig.poll()
    before = rig.state()
    _, delta = rig.deliver(rig.reply(transmit=0).encode())
    assert delta == {"badxmt": 1} and rig.assoc.flash & 0x04
    assert rig.state() == before


@pytest.mark.parametrize("maxpoll", [10, 17])
def test_case_56_rate_kiss_with_huge_poll(maxpoll):
    """56. KoD RATE with ppoll = 255 → clamp poll to ≤ 17, no assert (Sec 3767).  Every poll
    octet 0..255 (signed -128..127 on the wire)."""
    rig = ClientRig(options=f"minpoll 4 maxpoll {maxpoll}")
    for octet in range(256):
        rig.poll()
        poll = octet - 256 if octet > 127 else octet
        _, delta = rig.deliver(rig.reply(stratum=0, refid=b"RATE", poll=poll).encode())
        assert delta == {"kod": 1}
        assert 4 <= rig.assoc.hpoll <= min(17, maxpoll)
        assert rig.assoc.nextdate - rig.now <= 2.0**17


@pytest.mark.parametrize("code", [b"DENY", b"RSTR"])
def test_case_57_deny_and_rstr_demobilise(code):
    """57. KoD "DENY" or "RSTR" with a valid origin → demobilize and stop sending to that
    server (RFC MUST)."""
    rig = ClientRig()
    rig.synchronise(2)
    rig.poll()
    _, delta = rig.deliver(rig.reply(stratum=0, refid=code).encode())
    assert delta == {"kod": 1, "demobilised": 1}
    assert not rig.engine.associations
    assert rig.engine.fire_timers(rig.now + 10_000) == []


@pytest.mark.parametrize("code", [b"XABC", b"XRAT", b"INIT", b"STEP", b"ACST", b"\0\0\0\0"])
def test_case_57_other_kiss_codes_ignored(code):
    """57. "X…" codes ignored (RFC5905 §7.4): the association stays, gives no sample and
    keeps polling at its own rate."""
    rig = ClientRig()
    rig.poll()
    hpoll = rig.assoc.hpoll
    _, delta = rig.deliver(rig.reply(stratum=0, refid=code).encode())
    assert delta == {"unsync": 1}
    assert rig.engine.associations and rig.assoc.hpoll == hpoll
    assert rig.poll()


@pytest.mark.parametrize("changes", [
    {"leap": 3}, {"stratum": 16}, {"stratum": 17}, {"stratum": 255},
    {"stratum": 0, "refid": b"LOCL"}, {"leap": 3, "stratum": 2}])
def test_case_58_unsynchronised_reply(changes):
    """58. Stratum 0 or 16, or leap = 3 in a non-KoD reply → TEST6, not used for sync.
    Stratum 16..255 too; a stratum-0 reply whose refid is no kiss code is not a sample."""
    rig = ClientRig()
    for _ in range(8):
        rig.poll()
        _, delta = rig.deliver(rig.reply(**changes).encode())
        assert delta == {"unsync": 1}
    assert not rig.assoc.has_sample and rig.engine.sys.peer is None
    assert rig.engine.counters["samples"] == 0


@pytest.mark.parametrize("delay, disp", [
    (32.0, 0.0), (0.0, 16.0), (16.0, 8.0), (31.9999, 0.001), (65535.0, 65535.0)])
def test_case_59_root_distance_too_large(delay, disp):
    """59. rootdelay/2 + rootdisp ≥ 16 s → TEST7 (baddist).  The boundary and beyond; just
    under it is a sample."""
    rig = ClientRig()
    rig.poll()
    header = rig.reply(root_delay=to_short(delay), root_dispersion=to_short(disp))
    _, delta = rig.deliver(header.encode())
    assert delta == {"baddist": 1} and rig.assoc.flash & Flash.TEST7
    rig.poll()
    _, delta = rig.deliver(rig.reply(root_delay=to_short(31.9), root_dispersion=0).encode())
    assert delta == {"samples": 1}


def broadcast_pair(keyed: bool = True):
    net = SimulatedNetwork(seed=9, latency=0.004)
    key = " key 1" if keyed else ""
    net.add_host(SERVER, f"localclock stratum 1\nbroadcast 10.0.0.255{key} minpoll 4\n",
                 keys=KEYS)
    client = net.add_host("10.0.0.2", "broadcastclient\nbroadcastdelay 0.004\n", keys=KEYS)
    net.run(400)
    return net, client


def test_case_61_one_bad_mac_broadcast():
    """61. One bad-MAC broadcast packet → drop that packet only; keep the association
    (CVE-2015-7979.).  Bad MACs, crypto-NAKs and unknown keys: each dropped (badauth), the
    association stays selected and takes the next good broadcast."""
    net, client = broadcast_pair()
    engine = client.engine
    [assoc] = engine.associations.values()
    assert engine.sys.peer == assoc.associd
    good = [d.data for d in net.capture if d.source[0] == SERVER][-1]
    forged = [good[:-1] + bytes([good[-1] ^ 1]), good[:52] + bytes(16),
              good[:48] + WORD.pack(9) + good[52:], good[:48] + NAK]
    for data in forged:
        before = engine.counters["badauth"] + engine.counters["bogusorg"]
        net.inject(data, (SERVER, 123), ("10.0.0.255", 123))
        net.run(0.1)
        assert engine.counters["badauth"] + engine.counters["bogusorg"] == before + 1
        assert assoc.associd in engine.associations
    samples = engine.counters["samples"]
    net.run(40)
    assert engine.counters["samples"] > samples and engine.sys.peer == assoc.associd


def test_case_61_autokey_broadcast(vectors):
    """61 with Autokey broadcasts: a forged MAC drops the packet only."""
    from tests.security.helpers import EPOCH, vector_host

    net = SimulatedNetwork(seed=6, latency=0.004, epoch=EPOCH)
    net.add_host(SERVER, "localclock stratum 1\nbroadcast 10.0.0.255 autokey minpoll 4\n",
                 autokey=vector_host(vectors, "tc-rsa-md5", "alice"))
    client = net.add_host("10.0.0.2", "broadcastclient\nident alice\n",
                          autokey=vector_host(vectors, "tc-rsa-md5", "brenda"))
    net.run(400)
    engine = client.engine
    [assoc] = engine.associations.values()
    status = assoc.autokey.state.status
    assert engine.sys.peer == assoc.associd
    good = [d.data for d in net.capture if d.source[0] == SERVER][-1]
    for source in ((SERVER, 123), (OTHER, 123)):
        net.inject(good[:-1] + bytes([good[-1] ^ 1]), source, ("10.0.0.255", 123))
    net.run(0.1)
    assert engine.counters["badauth"] >= 1
    assert assoc.autokey.state.status == status and engine.sys.peer == assoc.associd
    samples = engine.counters["samples"]
    net.run(40)
    assert engine.counters["samples"] > samples
