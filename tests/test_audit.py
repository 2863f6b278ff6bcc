"""``ntpauto audit`` against ntpauto servers on loopback, one configured strong and one
deliberately weak (a server seed pinned to 0, as the reference's; MD5 everywhere, a 512-bit
key; TC; no amplification limit; mode 6 open), and its findings from observations made up
for the cases a live ntpauto server cannot show (short DSA signatures, an expired leap
table)."""

from __future__ import annotations

import datetime
import io
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.audit.findings import EXIT_STATUS, Severity, assess, exit_status
from ntpauto.audit.probe import Amplification, Observations
from ntpauto.autokey.values import LeapValue
from ntpauto.cli import build_parser
from ntpauto.identity import gq
from ntpauto.pki.certificates import CertInfo, build_self_signed, parse_certificate
from ntpauto.pki.profiles import get_profile
from ntpauto.service import NTPAutokeyService
from ntpauto.wire.packet import Header
from ntpauto.wire.timestamps import unix_to_ntp
from tests.autokey_groups import EPOCH, FILESTAMP, GroupKeys, make_group, password
from tests.conftest import VECTORS
from tests.test_client import serve, stop

WAIT = "0.1"
"""Seconds each probe waits (mode 7 is never answered by ntpauto)."""


@pytest.fixture(scope="module")
def strong(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GroupKeys,
                                                                       NTPAutokeyService]]:
    """GQ with a 2048-bit modulus, 2048-bit RSA-SHA256 keys, SHA1 session keys, mode 6
    closed (restrict noquery), the amplification limit on (the default)."""
    root = tmp_path_factory.mktemp("strong")
    keys = make_group(root, "gq", ("alice", "brenda"), trusted=("alice",),
                      servers=("alice",), params=gq.generate_gq(2048), bits=2048)
    service = serve(f"crypto host alice pw {password('alice')} digest sha1\n"
                    f"keysdir {keys.keysdir('alice')}\nident alice\n"
                    "restrict default noquery\n", root)
    yield keys, service
    stop(service)


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NTPAutokeyService]:
    """The reference's TC keys (tests/vectors: a 512-bit RSA-MD5 certificate), MD5 session
    keys, ``amplification allow``, mode 6 open, and the server seed pinned to 0."""
    root = tmp_path_factory.mktemp("weak")
    keysdir = VECTORS / "keys" / "tc-rsa-md5" / "alice"
    service = serve(f"crypto host alice pw alicepw\nkeysdir {keysdir}\n"
                    "amplification allow\n", root)
    service.engine.autokey.responder.seed.pin(0)
    yield service
    stop(service)


def audit(address: tuple[str, int], *argv: str) -> tuple[int, str, str]:
    """Run ``ntpauto audit`` in this process (its servers keep running meanwhile)."""
    args = build_parser().parse_args(["audit", address[0], "--port", str(address[1]),
                                      "--wait", WAIT, *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def by_topic(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for finding in report["findings"]:
        topics.setdefault(finding["topic"], []).append(finding)
    return topics


def test_weak_server(weak: NTPAutokeyService) -> None:
    """Without keys (the audit names itself for the group mode 6 gives), every weakness is
    found, the predictable cookie worst of all: exit status 5."""
    status, out, err = audit(weak.address, "--json")
    report = json.loads(out)
    topics = by_topic(report)
    assert (status, err) == (EXIT_STATUS[Severity.CRITICAL], "")
    assert report["name"] == "alice@alice" and report["digest"] == "md5"
    [cookie] = topics["cookie"]
    assert cookie["severity"] == "critical" and "H(client, server, 0, 0)" in cookie["reason"]
    assert [f["severity"] for f in topics["signature"]] == ["high"]
    assert "RSA-MD5" in topics["signature"][0]["summary"]
    assert topics["sign-key"][0]["summary"] == "sign key: RSA 512 bits"
    assert topics["sign-key"][0]["severity"] == "high"
    assert topics["digest"][0]["severity"] == "medium"
    assert topics["identity"][0]["summary"] == "identity: TC only"
    assert topics["identity"][0]["severity"] == "high"
    [validity] = topics["certificate"]
    assert validity["summary"] == "alice@alice: signed with RSA-MD5"
    assert validity["severity"] == "high"
    amplification = {f["summary"].split(":")[0]: f for f in topics["amplification"]}
    assert amplification["CERT alice@alice"]["severity"] in ("medium", "high")
    assert amplification["mode 6 read variables"]["severity"] == "high"
    assert amplification["mode 3 time request"]["severity"] == "ok"
    assert amplification["mode 7 MON_GETLIST (monlist)"]["summary"].endswith("not answered")
    assert topics["leap"][0]["summary"] == "no leap-second table"
    assert topics["dance"][0]["severity"] == "ok"


def test_strong_server(strong: tuple[GroupKeys, NTPAutokeyService]) -> None:
    """With the group's keys the audit proves the identity; nothing above low remains:
    SHA1 session keys (the best Autokey allows) and the missing leap table."""
    keys, service = strong
    status, out, err = audit(service.address, "--keysdir", str(keys.keysdir("brenda")),
                             "--host", "brenda", "--password", password("brenda"),
                             "--ident", "alice")
    assert err == ""
    assert status == EXIT_STATUS[Severity.LOW], out
    lines = out.splitlines()
    assert lines[0] == f"audit of 127.0.0.1 port {service.address[1]}"
    assert lines[1] == "Autokey name alice@alice (session keys SHA1)"
    found = [match.groups() for match in map(re.compile(r"  ([A-Z]+) +(.*)").fullmatch,
                                             lines) if match]
    assert {("OK", "identity: GQ proven"), ("OK", "cookie: not the seed-0 value"),
            ("OK", "sign key: RSA 2048 bits"), ("OK", "trail of 1 to trusted host alice@alice"),
            ("OK", "mode 6 read variables: not answered"),
            ("LOW", "session keys and MACs use SHA1")} <= set(found)
    assert {severity for severity, _ in found} <= {"OK", "INFO", "LOW"}
    assert "proven by the dance:" in lines and "  identity    GQ" in lines
    assert lines[-1] == "worst: low (exit status 2)"


def test_strong_server_without_keys(strong: tuple[GroupKeys, NTPAutokeyService]) -> None:
    """Mode 6 closed: without keys the audit needs the group; the identity is then offered
    but not checked."""
    _, service = strong
    status, out, _ = audit(service.address, "--group", "alice", "--json")
    topics = by_topic(json.loads(out))
    assert topics["identity"][0]["summary"] == "identity: GQ offered, not checked"
    assert topics["cookie"][0]["severity"] == "ok"
    assert status == EXIT_STATUS[Severity.LOW]


def test_query_with_sha1(strong: tuple[GroupKeys, NTPAutokeyService]) -> None:
    """``ntpauto query --autokey --digest sha1`` against the SHA1 server; MD5 gets a
    crypto-NAK."""
    keys, service = strong
    argv = ["query", "127.0.0.1", "--port", str(service.address[1]), "--autokey",
            "--keysdir", str(keys.keysdir("brenda")), "--host", "brenda", "--password",
            password("brenda"), "--ident", "alice"]
    for digest, expected in (("sha1", 0), ("md5", 1)):
        args = build_parser().parse_args([*argv, "--digest", digest])
        out, err = io.StringIO(), io.StringIO()
        assert args.func(args, out=out, err=err) == expected
    assert "crypto-NAK" in err.getvalue()


def test_nothing_listening() -> None:
    """No server: one line, exit status 1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, out, err = audit(("127.0.0.1", port))
    assert (status, out) == (1, "")
    assert err == f"ntpauto audit: 127.0.0.1 port {port}: port unreachable (nothing " \
        "listens on that port)\n"


# -- findings from made-up observations ------------------------------------------------------


def observations(**changes: Any) -> Observations:
    now = unix_to_ntp(EPOCH)
    obs = Observations("192.0.2.1", 123, "192.0.2.2",
                       header=Header(0, 4, 4, 2, 6, -20, 0, 0, b"\0\0\0\0", now, 0, now, now),
                       name="alice@alice", status=0x00710002, digest="md5")
    for name, value in changes.items():
        setattr(obs, name, value)
    return obs


def findings(obs: Observations, topic: str) -> list[tuple[Severity, str]]:
    return [(f.severity, f.summary) for f in assess(obs) if f.topic == topic]


def certificate(key: Any, profile: str, start: int, days: int) -> CertInfo:
    return parse_certificate(build_self_signed("alice@alice", key, get_profile(profile),
                                               start, days, trusted=True))


def test_dsa_signatures_of_other_lengths() -> None:
    """A DSA server whose signatures are not all of the maximum length: reference clients
    refuse the shorter ones."""
    key = dsa.generate_private_key(1024)
    profile = get_profile("DSA-SHA1")
    info = certificate(key, "DSA-SHA1", FILESTAMP, 365)
    size = profile.max_signature_size(key.public_key())
    obs = observations(status=(int(profile.nid) << 16) | 0x2,
                       certificates=[(info, FILESTAMP)],
                       signatures=[("CERT", size), ("LEAP", size - 1), ("COOK", size)])
    assert findings(obs, "dsa-signatures") == [
        (Severity.MEDIUM, f"1 of 3 DSA signatures shorter than {size} octets")]
    obs.signatures = [("CERT", size)]
    assert findings(obs, "dsa-signatures")[0][0] is Severity.OK
    assert findings(obs, "signature") == [(Severity.MEDIUM, "signatures: DSA-SHA1")]
    assert findings(obs, "sign-key") == [(Severity.MEDIUM, "sign key: DSA 1024 bits")]


def test_certificate_windows() -> None:
    """At the server's time: expired and not yet valid are high, a month from its end
    medium, over five years low, a year fine; a trail that ends untrusted is high."""
    key = rsa.generate_private_key(65537, 2048)
    year = 365 * 86400
    cases = [(FILESTAMP - 2 * year, 365, Severity.HIGH, "alice@alice: expired"),
             (FILESTAMP + 7200, 365, Severity.HIGH, "alice@alice: not valid yet"),
             (FILESTAMP, 20, Severity.MEDIUM, "alice@alice: expires within 30 days"),
             (FILESTAMP, 10 * 365, Severity.LOW, "alice@alice: valid over five years"),
             (FILESTAMP, 365, Severity.OK, "alice@alice: valid")]
    for start, days, severity, summary in cases:
        obs = observations(certificates=[(certificate(key, "RSA-SHA256", start, days), 0)])
        assert findings(obs, "certificate") == [(severity, summary)]
    untrusted = parse_certificate(build_self_signed("alice@alice", key,
                                                    get_profile("RSA-SHA256"), FILESTAMP))
    obs = observations(certificates=[(untrusted, 0)])
    assert findings(obs, "trail") == [(Severity.HIGH,
                                       "the trail does not reach a trusted host")]


def test_leap_values() -> None:
    """An expired leap table is medium, one about to expire low, a current one fine."""
    ntp_epoch = int(EPOCH) + 2_208_988_800
    expired = LeapValue(37, 3_692_217_600, ntp_epoch - 86400)
    soon = LeapValue(37, 3_692_217_600, ntp_epoch + 86400)
    later = LeapValue(37, 3_692_217_600, ntp_epoch + 200 * 86400)
    assert findings(observations(leap=expired), "leap")[0][0] is Severity.MEDIUM
    assert findings(observations(leap=soon), "leap")[0][0] is Severity.LOW
    expire = datetime.datetime.fromtimestamp(EPOCH + 200 * 86400, datetime.UTC)
    assert findings(observations(leap=later), "leap")[0] == (
        Severity.OK, "leap-second table current")
    assert f"{expire:%Y-%m-%d}" in [f.reason for f in assess(observations(leap=later))
                                    if f.topic == "leap"][0]


@pytest.mark.parametrize("received, severity", [
    (0, Severity.OK), (100, Severity.OK), (150, Severity.LOW), (900, Severity.MEDIUM),
    (1200, Severity.HIGH)])
def test_amplification_thresholds(received: int, severity: Severity) -> None:
    obs = observations(amplification=[Amplification("CERT alice@alice", 100, received)])
    assert findings(obs, "amplification")[0][0] is severity


def test_exit_status_by_worst() -> None:
    """0 for nothing above info, then 2 to 5 (1 is the audit's own failure)."""
    obs = observations(cookie=7, seed_zero_cookie=7)
    assert exit_status(assess(obs)) == 5
    assert [EXIT_STATUS[s] for s in Severity] == [0, 0, 2, 3, 4, 5]
    assert exit_status([]) == 0
