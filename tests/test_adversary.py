"""The adversary of the testing kit (ntpauto.adversary, docs/adversary.md) against every
identity scheme and every dance, and the forger itself.

* The matrix: for TC, PC, IFF, GQ and MV, and the victim as a server dance's client, as the
  server, as the symmetric active and passive peer, as a broadcast client and as the
  broadcast server (tests/adversary_scenarios.py), the forger runs once per scenario (TC:
  every case; the other schemes: one case per role, code, direction and kind, drawn at
  random) and each invariant is a test of its own.  Every cell of the matrix is covered.
* Each attack kind: the forger really produces what it claims (its cookie-0 MAC verifies,
  its replay is byte-identical to a captured packet, its identity values are 0, 1 and the
  modulus, ...), and a victim with a check taken out is caught, so the matrix cannot pass
  vacuously.
* The holes the matrix found, each reproduced by one case.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from itertools import product
from pathlib import Path

import attrs
import pytest

from ntpauto.adversary import (
    CODES,
    DIRECTIONS,
    INVARIANTS,
    KINDS,
    ROLES,
    Adversary,
    Case,
    DanceIncomplete,
    Forger,
    Report,
    Target,
)
from ntpauto.adversary.runner import check_dance
from ntpauto.auth.autokey import session_key, verify_mac
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, GQ, IFF, LEAP, MV, SIGN, decode
from ntpauto.autokey.fields import signed_octets as signed
from ntpauto.config import load_config
from ntpauto.engine import load_autokey
from ntpauto.identity.common import decode_der_integers, octet_length
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import parse
from tests.adversary_scenarios import ALICE, BRENDA, DANCES, group, scenario
from tests.autokey_groups import EPOCH, SCHEMES, GroupKeys

REPO = Path(__file__).resolve().parents[1]
STRANGER = "172.16.9.9"
FULL = ("tc",)
"""Schemes attacked with every case; the others get one case per cell."""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], GroupKeys]:
    """The keys of one three-host group per scheme, made once for the module."""
    return functools.cache(lambda scheme: group(tmp_path_factory.mktemp(scheme), scheme))


@pytest.fixture(scope="module")
def reports(keys) -> Callable[[str, str], Report]:
    """The adversary's report on each scenario, run once for the module."""

    @functools.cache
    def get(scheme: str, dance: str) -> Report:
        adversary = Adversary(scenario(keys(scheme), dance), require_dance=False,
                              seed=SCHEMES.index(scheme) * 10 + DANCES.index(dance))
        return adversary.run(per_cell=None if scheme in FULL else 1,
                             label=f"{scheme} {dance}")

    return get


def forger_for(keys, scheme: str, dance: str) -> tuple[Target, Forger]:
    """The scenario built, and a forger that has seen its traffic."""
    target = scenario(keys(scheme), dance)()
    forger = Forger(target.net, target.victim, target.peer)
    forger.observe()
    return target, forger


# ------------------------------------------------------------------ the matrix


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dance", DANCES)
def test_dance_completes(keys, scheme, dance):
    """Every scenario's dance lights every flag before the forger starts."""
    check_dance(scenario(keys(scheme), dance)())


@pytest.mark.parametrize("invariant", INVARIANTS)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dance", DANCES)
def test_invariant_holds(reports, scheme, dance, invariant):
    """No forged packet breaks ``invariant`` of the victim in this scenario."""
    report = reports(scheme, dance)
    broken = [f for f in report.broken if f.invariant == invariant]
    assert not broken, f"{len(broken)} broken:\n" + "\n".join(str(f) for f in broken[:12])


def test_every_cell_and_invariant_is_covered(reports):
    """Across the suite every (role, code, direction, kind) cell was tried, in each scenario
    from the peer's address and from strangers', and every invariant was checked many
    times: the table below is what the tests assert."""
    total = Report(label="test suite")
    for scheme, dance in product(SCHEMES, DANCES):
        report = reports(scheme, dance)
        assert report.cases >= 900
        total.extend(report)
    cells = set(product(ROLES, CODES, DIRECTIONS, KINDS))
    assert cells <= total.cells()
    assert {f.case.source for f in total.findings} == {"peer", "stranger"}
    checked = {name: sum(1 for f in total.findings if f.invariant == name)
               for name in INVARIANTS}
    assert min(checked.values()) >= 100, checked
    print(f"{total.cases} cases, {len(total.broken)} broken findings")
    print(total.table())


# ------------------------------------------------------------------ the forger


def test_cookie0_mac_verifies(keys):
    """A cookie-0 case's MAC verifies under the session key anybody computes, H(src, dst,
    key ID, 0), as the victim computes it for a packet with fields; the public-cookie
    variant's under its public value instead."""
    target, forger = forger_for(keys, "tc", "active")
    digest = "md5"
    for role, code in product(("server", "active", "passive", "broadcast"), (ASSOC, COOK)):
        forged = forger.forge(Case(role, code, "response", "cookie-0", "fields", "peer"),
                              STRANGER)
        [data] = forged.datagrams
        pkt = parse(data)
        key = session_key(forged.source[0], forged.local[0], pkt.keyid, 0, digest)
        assert pkt.fields and verify_mac(key, pkt.authenticated_part, pkt.digest, digest)
        public = forger.forge(Case(role, code, "response", "cookie-0", "public-cookie",
                                   "peer"), STRANGER)
        pkt = parse(public.datagrams[0])
        assert not verify_mac(session_key(public.source[0], public.local[0], pkt.keyid, 0,
                                          digest), pkt.authenticated_part, pkt.digest, digest)
    # The victim's own check: a cookie-0 MAC is verified as "not applicable", not failed.
    [assoc] = target.net.hosts[target.victim].engine.associations.values()
    forged = forger.forge(Case("passive", CERT, "request", "cookie-0", "fields", "peer"),
                          STRANGER)
    verdict = assoc.autokey.mac_verdict(parse(forged.datagrams[0]), src=target.peer,
                                        dst=target.victim)
    assert not verdict.failed and not verdict.verified


def test_no_mac_and_crypto_nak(keys):
    """``no-mac`` sends no MAC at all, or a crypto-NAK (key ID 0 alone); the error and NAK
    variants are sent twice, with different transmit timestamps."""
    _, forger = forger_for(keys, "tc", "client")
    none = forger.forge(Case("server", None, "request", "no-mac", "none", "peer"), STRANGER)
    assert parse(none.datagrams[0]).keyid is None
    nak = forger.forge(Case("server", None, "request", "no-mac", "crypto-nak", "peer"),
                       STRANGER)
    assert len(nak.datagrams) == 2 and all(parse(d).is_crypto_nak for d in nak.datagrams)
    assert len({parse(d).header.transmit for d in nak.datagrams}) == 2
    error = forger.forge(Case("server", COOK, "response", "cookie-0", "error", "peer"),
                         STRANGER)
    assert [decode(parse(d).fields[0].data).error for d in error.datagrams] == [True, True]


def test_replays_are_genuine(keys):
    """A packet replay is byte-identical to a datagram the network delivered; a field replay
    carries a genuine field unchanged."""
    target, forger = forger_for(keys, "iff", "bclient")
    delivered = {d.data for d in target.net.capture if not d.dropped}
    for code in (ASSOC, AUTO, None):
        forged = forger.forge(Case("broadcast", code, "response", "replay", "packet", "peer"),
                              STRANGER)
        assert forged.datagrams[0] in delivered
    genuine = {decode(f.data) for d in delivered for f in parse(d).fields}
    for code in (CERT, COOK, AUTO, LEAP, SIGN, IFF):
        forged = forger.forge(Case("broadcast", code, "response", "replay", "field", "peer"),
                              STRANGER)
        [field] = [decode(f.data) for f in parse(forged.datagrams[0]).fields]
        assert field in genuine and field.code == code


def test_junk_signatures(keys):
    """Junk signatures have the peer's signature length and do not verify; a transplanted
    one is a genuine signature of the peer over another value."""
    target, forger = forger_for(keys, "gq", "client")
    peer = target.net.hosts[target.peer].engine.autokey.host
    size = peer.profile.max_signature_size(peer.certificate.public_key)
    genuine = {decode(f.data).signature for d in target.net.capture for f in parse(d.data).fields
               if d.source[0] == target.peer}
    for variant in ("random", "transplant"):
        forged = forger.forge(Case("server", COOK, "response", "junk-signature", variant,
                                   "peer"), STRANGER)
        [field] = [decode(f.data) for f in parse(forged.datagrams[0]).fields]
        assert len(field.signature) == size
        assert not peer.profile.verify(peer.certificate.public_key, field.signature,
                                       signed(field))
        assert (field.signature in genuine) == (variant == "transplant")


@pytest.mark.parametrize("scheme, code", [("iff", IFF), ("gq", GQ), ("mv", MV)])
def test_identity_values_are_degenerate_and_refused(keys, scheme, code):
    """The identity values are 0, 1, the modulus M and 2M: as challenges (L octets, or more
    for 2M) and as response integers; the victim's own scheme refuses every response."""
    target, forger = forger_for(keys, scheme, "client")
    modulus = forger.public.identity_modulus(code)
    host = target.net.hosts[target.victim].engine.autokey.host
    client = host.client_scheme(scheme, host.group)
    [assoc] = target.net.hosts[target.victim].engine.associations.values()
    client = client.for_peer(assoc.autokey.state.peer_certificate)
    challenge = client.make_challenge()
    for variant, number in (("zero", 0), ("one", 1), ("modulus", modulus),
                            ("modulus-multiple", 2 * modulus)):
        def field(direction: str, variant: str = variant):
            forged = forger.forge(Case("client", code, direction, "identity-values", variant,
                                       "peer"), STRANGER)
            return decode(parse(forged.datagrams[0]).fields[0].data)

        request = field("request")
        assert int.from_bytes(request.value, "big") == number
        assert len(request.value) == max(octet_length(modulus), octet_length(number))
        response = field("response")
        integers = decode_der_integers(response.value)
        assert set(integers) == {number}
        assert client.verify_response(challenge, response.value) is False


def test_stale_and_equal_timestamps(keys):
    """``timestamps``: a field Timestamp one older than, or equal to, the last genuine one
    of its code (with another value); a transmit timestamp equal to, or a second older
    than, the peer's last one to the victim."""
    target, forger = forger_for(keys, "tc", "bclient")
    genuine = forger.knows.field(AUTO, True)
    for variant, stamp in (("field-stale", genuine.timestamp - 1),
                           ("field-equal", genuine.timestamp)):
        forged = forger.forge(Case("broadcast", AUTO, "response", "timestamps", variant,
                                   "peer"), STRANGER)
        [field] = [decode(f.data) for f in parse(forged.datagrams[0]).fields]
        assert field.timestamp == stamp and field.value != genuine.value
    now = target.net.reactor.seconds()
    last = max(parse(d.data).header.transmit for d in target.net.capture
               if d.source[0] == target.peer and parse(d.data).header.mode == 5
               and d.arrival is not None and d.arrival <= now)
    equal = forger.forge(Case("broadcast", None, "request", "timestamps", "header-equal",
                              "peer"), STRANGER)
    stale = forger.forge(Case("broadcast", None, "request", "timestamps", "header-stale",
                              "peer"), STRANGER)
    assert parse(equal.datagrams[0]).header.transmit == last
    assert parse(stale.datagrams[0]).header.transmit == last - (1 << 32)


def test_wrong_association_ids(keys):
    """``wrong-associd`` takes a genuine field and changes only its association ID."""
    _, forger = forger_for(keys, "tc", "client")
    genuine = forger.knows.field(COOK, True)
    for variant in ("other", "zero"):
        forged = forger.forge(Case("server", COOK, "response", "wrong-associd", variant,
                                   "peer"), STRANGER)
        [field] = [decode(f.data) for f in parse(forged.datagrams[0]).fields]
        assert field == attrs.evolve(genuine, associd=field.associd)
        assert (field.associd == 0) == (variant == "zero") and field.associd != genuine.associd


def test_forger_is_off_path(keys):
    """A forged reply echoes only a transmit timestamp of the victim's that the peer has
    already answered: never that of a request still on its way."""
    target, forger = forger_for(keys, "tc", "client")
    net = target.net
    [assoc] = net.hosts[target.victim].engine.associations.values()
    net.run(assoc.nextdate - net.reactor.seconds() + 0.001)  # a request out, unanswered
    assert assoc.xmt
    forger.observe()
    forged = forger.forge(Case("server", None, "request", "cookie-0", "fields", "peer"),
                          STRANGER)
    origin = parse(forged.datagrams[0]).header.origin
    answered = {parse(d.data).header.origin for d in net.capture
                if d.source[0] == target.peer and d.arrival <= net.reactor.seconds()}
    assert origin != assoc.xmt and origin in answered


def test_a_victim_without_freshness_is_caught(keys, monkeypatch):
    """With the freshness check taken out, an AUTO response with the Timestamp of the last
    accepted one (another value) in a forged broadcast gets its (junk) signature checked:
    the adversary reports signed-fresh broken."""
    from ntpauto.autokey.association import AutokeyAssociation

    case = Case("broadcast", AUTO, "response", "timestamps", "field-equal", "peer")
    adversary = Adversary(scenario(keys("tc"), "bclient"))
    assert all(f.held for f in adversary.attack(case))
    monkeypatch.setattr(AutokeyAssociation, "_fresh", lambda self, kind, f: None)
    [fresh] = [f for f in adversary.attack(case) if f.invariant == "signed-fresh"]
    assert not fresh.held and "signature check" in fresh.detail


def test_a_victim_without_the_autokey_test_is_caught(keys, monkeypatch):
    """With the autokey test and the broadcast spacing taken out, a forged broadcast under
    cookie 0 becomes a time sample: the adversary reports no-sample broken."""
    from ntpauto import receive
    from ntpauto.autokey.session import AutokeySession
    from ntpauto.verdict import Check, Verdict

    case = Case("broadcast", None, "request", "cookie-0", "fields", "peer")
    adversary = Adversary(scenario(keys("tc"), "bclient"))
    assert all(f.held for f in adversary.attack(case))
    monkeypatch.setattr(receive, "BROADCAST_SPACING", 0.0)
    monkeypatch.setattr(AutokeySession, "key_verdict",
                        lambda self, *a, **k: Verdict.ok(Check.AUTOKEY, "taken out"))
    [sample] = [f for f in adversary.attack(case) if f.invariant == "no-sample"]
    assert not sample.held and "sample(s) taken" in sample.detail


def test_incomplete_dance_is_refused(keys):
    """A victim whose dance has not completed is refused unless asked for."""
    tc = keys("tc")
    net = SimulatedNetwork(seed=1, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=tc.credentials("alice"))
    net.add_host(BRENDA, tc.server_line(ALICE), autokey=tc.credentials("brenda"))
    net.run(3)  # ASSOC only
    target = Target(net, BRENDA, ALICE)
    with pytest.raises(DanceIncomplete, match="has not completed its dance"):
        Adversary(target).run(per_cell=1)
    report = Adversary(target, require_dance=False).run(
        [Case("server", ASSOC, "response", "cookie-0", "fields", "stranger")])
    assert report.cases == 1 and report.rebuilds == 0


def test_users_own_configuration(keys, tmp_path):
    """docs/adversary.md's recipe: hosts built from ntp.conf files with load_autokey, the
    adversary on them; the report's table has a row per invariant."""
    tc = keys("tc")
    files = {}
    for name, extra in (("alice", "localclock stratum 1\n"),
                        ("brenda", f"server {ALICE} autokey iburst minpoll 4\n")):
        files[name] = tmp_path / f"{name}.conf"
        files[name].write_text(f"crypto host {name} pw {name}pw\n"
                               f"keysdir {tc.keysdir(name)}\n{extra}")

    def add(net, address, path, **kwargs):
        config = load_config(path)
        return net.add_host(address, config, autokey=load_autokey(config), **kwargs)

    def build():
        net = SimulatedNetwork(seed=1, latency=0.01, epoch=EPOCH)
        add(net, ALICE, files["alice"])
        add(net, BRENDA, files["brenda"])
        net.run(300)
        return Target(net, victim=BRENDA, peer=ALICE)

    report = Adversary(build).run(per_cell=1)
    assert report.cases > 900
    table = report.table()
    assert all(line.split()[0] in INVARIANTS for line in table.splitlines()[1:])
    assert "no-sample" in report.summary()


def test_matrix_script(tmp_path):
    """benchmarks/adversary.py prints the invariants x attack kinds table."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "adversary.py"), "--schemes", "tc",
         "--dances", "client", "--per-cell", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "Invariants x attack kinds" in result.stdout, result.stderr
    assert "tc   client" in result.stdout
    for invariant in INVARIANTS:
        assert invariant in result.stdout


# ------------------------------------------------------------------ the holes found


def attack(keys, scheme: str, dance: str, case: Case) -> list:
    """The broken findings of one case against a fresh scenario."""
    adversary = Adversary(scenario(keys(scheme), dance))
    return [f for f in adversary.attack(case) if not f.held]


@pytest.mark.parametrize("case", [
    Case("passive", CERT, "request", "cookie-0", "fields", "peer"),
    Case("passive", COOK, "response", "cookie-0", "error", "peer"),
    Case("passive", None, "request", "no-mac", "crypto-nak", "peer"),
], ids=str)
def test_symmetric_packet_echoing_an_answered_transmit_changes_nothing(keys, case):
    """Symmetric active victim: the forger echoes the victim's last transmit timestamp, which
    the peer has already answered (the origin test still passes, as ``xmt`` stays valid in
    symmetric modes), under a cookie-0 MAC or none.  It must not advance org/rec, update
    the peer's variables, clear AUTO, queue a request or restart the dance."""
    target = scenario(keys("tc"), "active")()
    [assoc] = target.net.hosts[target.victim].engine.associations.values()
    while not answered(target, assoc.xmt):
        target.net.run(0.5)
    broken = [f for f in Adversary(target, settle=0).attack(case) if not f.held]
    assert not broken, "\n".join(map(str, broken))


def answered(target: Target, xmt: int) -> bool:
    """The peer's latest datagram to the victim that arrived echoes ``xmt``."""
    now = target.net.reactor.seconds()
    arrived = [d for d in target.net.capture if d.source[0] == target.peer
               and d.destination[0] == target.victim and d.arrival is not None
               and d.arrival <= now]
    return bool(arrived) and parse(arrived[-1].data).header.origin == xmt


@pytest.mark.parametrize("code", [LEAP, SIGN], ids=["LEAP", "SIGN"])
def test_replayed_signed_value_in_a_forged_broadcast_costs_nothing(keys, code):
    """Broadcast client victim: a forged broadcast from the server's address (cookie-0 MAC,
    fresh transmit) carrying the server's genuine LEAP or SIGN response, unchanged: its
    Timestamp is not newer than the accepted one, so it must be refused before any
    signature work (no re-signing of the host's values, no signature check)."""
    case = Case("broadcast", code, "response", "replay", "field", "peer")
    broken = attack(keys, "tc", "bclient", case)
    assert not broken, "\n".join(map(str, broken))


@pytest.mark.parametrize("case", [
    Case("active", ASSOC, "request", "cookie-0", "fields", "stranger"),
    Case("broadcast", ASSOC, "response", "cookie-0", "fields", "stranger"),
], ids=str)
def test_mobilisation_by_a_forged_packet_costs_no_unbudgeted_work(keys, case):
    """A forged ASSOC request (symmetric active) or ASSOC broadcast from a stranger mobilises
    an association, as RFC 5906 requires; its first transmission must not sign a key list
    outside the private-key budget nor send the stranger more than it sent."""
    dance = "bclient" if case.role == "broadcast" else "server"
    broken = attack(keys, "tc", dance, case)
    assert not broken, "\n".join(map(str, broken))

