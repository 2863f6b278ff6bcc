"""ntpauto.client.query against real ntpauto servers on loopback (127.0.0.1, port 0): plain,
symmetric key, Autokey with every identity scheme, and each typed failure.

The servers and the queries read simulated clocks that start at the key files' epoch
(tests/autokey_groups.py), so that the certificates are valid whatever the date; the
datagrams are real.  Servers are shared by the module; each Autokey dance takes a few
milliseconds once its requests go back to back.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import reactor

from ntpauto.cli import main
from ntpauto.client import (
    AutokeyKeys,
    CertificateExpired,
    CertificateUntrusted,
    CryptoNAK,
    IdentityFailed,
    KissOfDeath,
    PortUnreachable,
    Sample,
    ServerUnsynchronised,
    query,
)
from ntpauto.client.oneshot import query_outcome
from ntpauto.config import parse_config
from ntpauto.identity import iff
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from ntpauto.verdict import Check
from tests.autokey_groups import (
    EPOCH,
    FILESTAMP,
    SCHEMES,
    GroupKeys,
    make_group,
    password,
    write_client_parameters,
    write_host,
)
from tests.test_daemons_autokey import env
from tests.test_service import in_thread, spin, stop

YEAR = 365 * 86400
STARTED = reactor.seconds()


def clock() -> SimulatedClock:
    """A clock at the key files' epoch, advancing with real time (all of them read the
    same time)."""
    return SimulatedClock(lambda: reactor.seconds() - STARTED, epoch=EPOCH)


def serve(text: str, directory: Path) -> NTPAutokeyService:
    """A stratum-1 ntpauto server on 127.0.0.1 port 0 running ``text`` (after its local
    clock line), synchronised (so that it signs) before it is returned."""
    config = parse_config("interface listen 127.0.0.1\nlocalclock stratum 1\n" + text,
                          str(directory / "ntp.conf"))
    service = NTPAutokeyService(attrs.evolve(config, port=0), clock=clock(),
                                identity_worker=False)
    service.startService()
    spin(lambda: service.engine.sys.peer is not None)
    return service


def autokey_server(keys: GroupKeys, name: str = "alice") -> NTPAutokeyService:
    owner = keys.owner(name)
    ident = f"ident {keys.group}\n" if keys.identity else ""
    return serve(f"crypto host {owner} pw {password(owner)}\nkeysdir {keys.keysdir(name)}\n"
                 + ident, keys.root)


def client_keys(keys: GroupKeys, name: str = "brenda", ident: str | None = "") -> AutokeyKeys:
    """``name``'s key material (``ident`` "": the group, for the identity schemes)."""
    owner = keys.owner(name)
    if ident == "":
        ident = keys.group if keys.identity else None
    return AutokeyKeys(keys.keysdir(name), host=owner, password=password(owner), ident=ident)


def result(d: Any) -> Any:
    """Run the reactor until ``d`` fires; its result (a Failure's exception, raised)."""
    box: list[Any] = []
    d.addBoth(box.append)
    spin(lambda: bool(box))
    outcome = box[0]
    if hasattr(outcome, "raiseException"):
        outcome.raiseException()
    return outcome


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GroupKeys]:
    """A two-host group per scheme: alice (trusted, the server) and brenda."""
    root = tmp_path_factory.mktemp("groups")
    return {scheme: make_group(root / scheme, scheme, ("alice", "brenda"), trusted=("alice",),
                               servers=("alice",)) for scheme in SCHEMES}


@pytest.fixture(scope="module")
def servers(groups: dict[str, GroupKeys]) -> Iterator[dict[str, NTPAutokeyService]]:
    running = {scheme: autokey_server(keys) for scheme, keys in groups.items()}
    yield running
    for service in running.values():
        stop(service)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NTPAutokeyService]:
    """A server with symmetric key 7 (MD5) trusted, answering plain queries too."""
    directory = tmp_path_factory.mktemp("plain")
    (directory / "ntp.keys").write_text("7 MD5 sesame\n8 SHA1 0123456789abcdef0123\n")
    service = serve(f"keys {directory / 'ntp.keys'}\ntrustedkey 7 8\n", directory)
    yield service
    stop(service)


def test_plain_query(plain: NTPAutokeyService) -> None:
    """A plain query: the server's stratum, refid and time, no authentication."""
    sample = result(query(reactor, *plain.address, clock=clock()))
    assert isinstance(sample, Sample)
    assert (sample.stratum, sample.refid, sample.leap, sample.leap_text) == \
        (1, "LOCL", 0, "none")
    assert sample.authentication == "none" and sample.keyid is None and sample.autokey is None
    assert abs(sample.offset) < 0.05 and 0 <= sample.delay < 0.5
    assert abs(sample.server_time - clock().now()) < 1.0


@pytest.mark.parametrize("keyid", [7, 8])
def test_symmetric_key_query(plain: NTPAutokeyService, tmp_path: Path, keyid: int) -> None:
    """A query under a symmetric key (MD5, SHA1) the server trusts: authenticated with it."""
    keys = tmp_path / "client.keys"
    keys.write_text("7 MD5 sesame\n8 SHA1 0123456789abcdef0123\n")
    sample = result(query(reactor, *plain.address, key=keyid, keys=keys, clock=clock()))
    assert (sample.authentication, sample.keyid) == ("key", keyid)


def test_crypto_nak(plain: NTPAutokeyService, tmp_path: Path) -> None:
    """A key the server does not hold gets a crypto-NAK, reported as CryptoNAK."""
    keys = tmp_path / "client.keys"
    keys.write_text("9 MD5 other\n")
    with pytest.raises(CryptoNAK, match="crypto-NAK"):
        result(query(reactor, *plain.address, key=9, keys=keys, clock=clock()))


def test_unsynchronised_server(tmp_path: Path) -> None:
    """A server with no time source answers with leap 3 and kiss code INIT: the query says
    the server is not synchronised (the engine takes no sample from such a reply)."""
    config = parse_config("interface listen 127.0.0.1\n", str(tmp_path / "ntp.conf"))
    server = NTPAutokeyService(attrs.evolve(config, port=0), clock=clock())
    server.startService()
    try:
        with pytest.raises(ServerUnsynchronised, match=r"leap 3, stratum 0, INIT\)$"):
            result(query(reactor, *server.address, clock=clock()))
    finally:
        stop(server)


def test_port_unreachable() -> None:
    """Nothing listens on the port: PortUnreachable as soon as the ICMP error comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(PortUnreachable, match="port unreachable"):
        result(query(reactor, "127.0.0.1", port, timeout=5.0, clock=clock()))
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_autokey_query(groups: dict[str, GroupKeys], servers: dict[str, NTPAutokeyService],
                       scheme: str) -> None:
    """The whole client dance against a server of each scheme, back to back: the sample is
    keyed with the server's cookie and the proof names the trail and the scheme."""
    keys = groups[scheme]
    started = time.perf_counter()
    outcome = result(query_outcome(reactor, *servers[scheme].address,
                                   autokey=client_keys(keys), clock=clock()))
    elapsed = time.perf_counter() - started
    proof = outcome.sample.autokey
    assert outcome.sample.authentication == "autokey"
    assert proof.server == "alice@alice" and proof.scheme == scheme
    assert proof.cookie and {"PROV", "COOK"} <= set(proof.flags)
    assert (proof.digest, proof.signature) == ("md5", "RSA-SHA256")
    if scheme == "pc":
        assert proof.trail == () and proof.trusted_host is None
    else:
        [link] = proof.trail
        assert (link.subject, link.issuer, link.trusted) == ("alice@alice", "alice@alice", True)
        assert link.key_bits == 1024 and link.signature == "RSA-SHA256"
        assert proof.trusted_host == "alice@alice"
    # ASSOC, CERT, the identity exchange (IFF, GQ, MV), COOK, then the time request.
    expected = {"tc": 4, "pc": 3}.get(scheme, 5)
    assert (outcome.requests, outcome.paced) == (expected, None)
    assert elapsed < 1.0


def test_autokey_without_ident_is_tc(groups: dict[str, GroupKeys],
                                     servers: dict[str, NTPAutokeyService]) -> None:
    """Without an identity group the client proves nothing beyond the trail (TC), even
    against an IFF server, and says so."""
    keys = groups["iff"]
    sample = result(query(reactor, *servers["iff"].address,
                          autokey=client_keys(keys, ident=None), clock=clock()))
    assert sample.autokey.scheme == "tc"


def test_identity_without_parameters(groups: dict[str, GroupKeys],
                                     servers: dict[str, NTPAutokeyService],
                                     tmp_path: Path) -> None:
    """A client of the group without IFF client parameters cannot check the server's
    identity: IdentityFailed as soon as it would send the NULL request."""
    keys = groups["iff"]
    folder = tmp_path / "brenda"
    shutil.copytree(keys.keysdir("brenda"), folder, symlinks=True)
    for path in folder.glob("ntpkey_iff*"):
        path.unlink()
    mine = AutokeyKeys(folder, host="brenda", password=password("brenda"), ident="alice")
    with pytest.raises(IdentityFailed, match="IFF; we hold no client parameters"):
        result(query(reactor, *servers["iff"].address, autokey=mine, clock=clock()))


@pytest.mark.parametrize("longer, ending", [
    (False, "iff proof of alice@alice does not verify"),
    (True, "IFF field with the error bit (0xc207)")])
def test_identity_proof_fails(groups: dict[str, GroupKeys],
                              servers: dict[str, NTPAutokeyService], tmp_path: Path,
                              longer: bool, ending: str) -> None:
    """Client parameters of another IFF group: the server answers our challenge and its proof
    does not verify; or, with a q eight octets longer than the server's, the challenge is
    longer than its q and the server refuses it with an error response.  Either way
    IdentityFailed."""
    keys = groups["iff"]
    folder = tmp_path / "brenda"
    shutil.copytree(keys.keysdir("brenda"), folder, symlinks=True)
    for path in folder.glob("ntpkey_iff*"):
        path.unlink()
    while True:
        params = iff.generate_iff(iff.REFERENCE_BITS)
        if params.q < keys.params.q:  # our challenges are then always under the server's q
            break
    if longer:
        params = attrs.evolve(params, q=params.q << 64)
    write_client_parameters(folder, "iff", params, "brenda")
    mine = AutokeyKeys(folder, host="brenda", password=password("brenda"), ident="alice")
    with pytest.raises(IdentityFailed) as caught:
        result(query(reactor, *servers["iff"].address, autokey=mine, clock=clock()))
    assert str(caught.value).endswith(ending)
    assert caught.value.verdict.check is (Check.FIELD if longer else Check.IDENTITY)


def test_untrusted_certificate(groups: dict[str, GroupKeys], tmp_path: Path) -> None:
    """A server whose certificate is self-signed without trustRoot (brenda of the TC group):
    no trail to a trusted host (an ntpauto server never serves such a certificate, so its
    CERT responses are empty): CertificateUntrusted."""
    keys = groups["tc"]
    server = autokey_server(keys, "brenda")
    try:
        with pytest.raises(CertificateUntrusted, match="no certificate for brenda@alice"):
            result(query(reactor, *server.address, autokey=client_keys(keys, "alice"),
                         clock=clock()))
    finally:
        stop(server)


def test_expired_certificate(groups: dict[str, GroupKeys], tmp_path: Path) -> None:
    """A trusted server whose certificate expired a year ago: the dance completes (an
    unsynchronised client cannot check validity, as the reference), then the certificate is
    checked at the server's proven time: CertificateExpired."""
    folder = tmp_path / "carol"
    write_host(folder, "carol", trusted=True, filestamp=FILESTAMP - 2 * YEAR)
    server = serve(f"crypto host carol pw {password('carol')}\nkeysdir {folder}\n", tmp_path)
    try:
        with pytest.raises(CertificateExpired, match="carol@alice"):
            result(query(reactor, *server.address, autokey=client_keys(groups["tc"]),
                         clock=clock()))
    finally:
        stop(server)


def test_rate_kiss(tmp_path: Path) -> None:
    """A server that rate-limits with kiss-o'-death: the second query within its guard time
    gets the RATE kiss, which a plain query cannot wait out within its timeout."""
    server = serve("restrict default limited kod\n", tmp_path)
    try:
        result(query(reactor, *server.address, clock=clock(), timeout=3.0))
        with pytest.raises(KissOfDeath) as caught:
            result(query(reactor, *server.address, clock=clock(), timeout=3.0))
    finally:
        stop(server)
    assert caught.value.code == "RATE"
    assert str(caught.value).endswith("kiss-o'-death RATE")


# -- ntpauto query --autokey ------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["query", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def autokey_argv(keys: GroupKeys, address: tuple[str, int], name: str = "brenda") -> list[str]:
    mine = client_keys(keys, name)
    argv = [address[0], "--port", str(address[1]), "--autokey", "--keysdir",
            str(mine.keysdir), "--host", str(mine.host), "--password", str(mine.password)]
    return argv + (["--ident", mine.ident] if mine.ident else [])


def test_cli_autokey_query(groups: dict[str, GroupKeys], servers: dict[str, NTPAutokeyService],
                           capsys: pytest.CaptureFixture[str]) -> None:
    """``ntpauto query --autokey`` prints the time and what the dance proved."""
    status, out, err = cli(capsys, *autokey_argv(groups["iff"], servers["iff"].address))
    assert (status, err) == (0, "")
    lines = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert lines["authentic"] == "yes: Autokey"
    assert lines["identity"] == "IFF"
    assert lines["trail"] == "alice@alice (trusted host alice@alice)"
    assert lines["certificate"].startswith("alice@alice (issuer alice@alice, trusted; "
                                           "RSA-SHA256, 1024-bit key; valid 2026-11-23 to")
    assert lines["signature"] == "RSA-SHA256 (session keys MD5)"
    assert lines["cookie"] == "received"
    assert lines["exchange"].startswith("5 requests, ")
    assert "paced" not in lines
    assert lines["time"].startswith("2026-") and lines["time"].endswith(" UTC")


def test_cli_autokey_json(groups: dict[str, GroupKeys], servers: dict[str, NTPAutokeyService],
                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` gives the sample and the proof for scripts."""
    status, out, _ = cli(capsys, *autokey_argv(groups["gq"], servers["gq"].address), "--json")
    document = json.loads(out)
    assert status == 0
    assert document["authentication"] == "autokey" and document["stratum"] == 1
    proof = document["autokey"]
    assert (proof["scheme"], proof["server"], proof["cookie"]) == ("gq", "alice@alice", True)
    assert proof["trail"][0]["subject"] == "alice@alice" and proof["trail"][0]["trusted"]
    assert proof["trail"][0]["not_after"].startswith("2027-11-23T")
    assert document["requests"] == 5 and document["paced"] is None


def test_cli_autokey_failure(groups: dict[str, GroupKeys],
                             servers: dict[str, NTPAutokeyService],
                             capsys: pytest.CaptureFixture[str]) -> None:
    """A query that cannot start is one line and status 1: a wrong password names the key
    file it cannot read."""
    keys = groups["tc"]
    argv = autokey_argv(keys, servers["tc"].address)
    status, out, err = cli(capsys, *argv[:-1], "wrong")
    assert (status, out) == (1, "")
    assert err.startswith("ntpauto query: ") and "ntpkey_" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--ident", "alice"], "--ident needs --autokey"),
    (["--keysdir", "."], "--keysdir needs --autokey"),
    (["--autokey", "--key", "1"], "--autokey does not go with --key"),
])
def test_cli_autokey_arguments(capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    status, _, err = cli(capsys, "127.0.0.1", *argv)
    assert status == 1 and message in err and err.count("\n") == 1


def test_cli_autokey_in_a_process(groups: dict[str, GroupKeys],
                                  servers: dict[str, NTPAutokeyService]) -> None:
    """The console command, in a process of its own, against the server in this one."""
    argv = autokey_argv(groups["mv"], servers["mv"].address)
    command = [sys.executable, "-m", "ntpauto.cli", "query", *argv, "--json"]
    done = in_thread(lambda: subprocess.run(command, capture_output=True, text=True,
                                            timeout=60, env=env()))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["autokey"]["scheme"] == "mv"
