"""Interoperability with chrony, on loopback: chronyd as a client of our server and as the
server of our client association, without and with MD5 and SHA1 symmetric keys.

chronyd runs with ``-x`` (never touches the system clock) and ``-d`` (foreground), with its
own configuration, pid, drift and log files in the test's temporary directory, ``cmdport 0``
and a free high port.  Both sides read the same system clock, so the true offset is 0: each
side's measured offset must be within 1 ms of it.  Waits poll the state with a deadline.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ntpauto.config import ListenConfig, parse_config
from ntpauto.service import NTPAutokeyService

CHRONYD_PLACES = ("/opt/chrony/usr/sbin/chronyd", "/usr/sbin/chronyd")
"""Where chronyd is looked for after ``$CHRONYD`` and ``PATH`` (.ci/run unpacks the first)."""
CHRONYD = os.environ.get("CHRONYD") or shutil.which("chronyd") or next(
    (path for path in CHRONYD_PLACES if os.access(path, os.X_OK)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHRONYD is None, reason="needs chronyd: not on PATH nor in "
                       + ", ".join(CHRONYD_PLACES) + " (.ci/run unpacks it)"),
]

SECRETS = {
    "md5": (1, "MD5", "0123456789abcdef0123456789abcdef"),
    "sha1": (2, "SHA1", "00112233445566778899aabbccddeeff01234567"),
}
"""Key ID, type and hex secret; the same octets in both implementations' key files."""

AUTH_CASES = [None, "md5", "sha1"]
TOLERANCE = 0.001
DEADLINE = 20.0


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spin(until: Callable[[], Any], timeout: float, what: str,
         diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Run the global reactor until ``until()`` returns something true (or fail)."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        result = until()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{diagnostics()}")
        reactor.iterate(0.02)


@attrs.define
class Chrony:
    """A running chronyd and its files."""

    process: subprocess.Popen
    directory: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def measured_offsets(self) -> list[float]:
        """Offsets of our server as measured by chronyd (measurements.log, seconds)."""
        path = self.directory / "measurements.log"
        if not path.exists():
            return []
        offsets = []
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) > 12 and fields[2] == "127.0.0.1":
                offsets.append(float(fields[11]))
        return offsets


@pytest.fixture
def chronyd(tmp_path: Path) -> Iterator[Callable[..., Chrony]]:
    """Start chronyd with extra config lines; stopped (and waited for) at teardown."""
    running: list[Chrony] = []

    def start(lines: list[str], auth: str | None) -> Chrony:
        directory = tmp_path / "chrony"
        directory.mkdir()
        keyfile = directory / "chrony.keys"
        keyfile.write_text("".join(f"{keyid} {kind} HEX:{secret}\n"
                                   for keyid, kind, secret in SECRETS.values()))
        conf = directory / "chrony.conf"
        conf.write_text("\n".join([
            "cmdport 0",
            f"pidfile {directory / 'chronyd.pid'}",
            f"driftfile {directory / 'chrony.drift'}",
            f"logdir {directory}",
            "log measurements",
            f"keyfile {keyfile}",
            *lines,
        ]) + "\n")
        log = directory / "chronyd.out"
        user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
        with open(log, "wb") as out:
            process = subprocess.Popen([CHRONYD, "-x", "-d", *user, "-f", str(conf)],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        chrony = Chrony(process, directory, log)
        running.append(chrony)
        return chrony

    yield start
    for chrony in running:
        if chrony.process.poll() is None:
            chrony.process.terminate()
            try:
                chrony.process.wait(10)
            except subprocess.TimeoutExpired:
                chrony.process.kill()
                chrony.process.wait(10)


def our_keys(tmp_path: Path) -> Path:
    """Our ntp.keys with the same secrets as chrony's key file."""
    path = tmp_path / "ntp.keys"
    path.write_text("".join(f"{keyid} {kind} {secret}\n"
                            for keyid, kind, secret in SECRETS.values()))
    return path


def start_service(config_text: str, path: Path, port: int) -> NTPAutokeyService:
    """Our node on 127.0.0.1:``port`` with the real reactor and system clock."""
    path.write_text(config_text)
    config = attrs.evolve(parse_config(config_text, str(path)), port=port,
                          listen=(ListenConfig("127.0.0.1"),))
    service = NTPAutokeyService(config)
    service.privilegedStartService()
    service.startService()
    return service


def record_lengths(service: NTPAutokeyService) -> list[int]:
    """Note the length of every datagram the service receives from now on."""
    lengths: list[int] = []
    protocol = service.protocol
    original = protocol.datagramReceived

    def recording(data: bytes, addr: Any) -> None:
        lengths.append(len(data))
        original(data, addr)

    protocol.datagramReceived = recording  # type: ignore[method-assign]
    return lengths


def expected_length(auth: str | None) -> int:
    """Header plus MAC: 48, 48 + 4 + 16 (MD5) or 48 + 4 + 20 (SHA1)."""
    return {None: 48, "md5": 68, "sha1": 72}[auth]


def stop_service(service: NTPAutokeyService) -> None:
    done: list[Any] = []
    service.stopService().addBoth(done.append)
    spin(lambda: done, 10, "the service to stop")


@pytest.mark.parametrize("auth", AUTH_CASES, ids=lambda a: a or "none")
def test_chronyd_client_of_our_server(tmp_path: Path, chronyd, auth: str | None) -> None:
    """chronyd polling our stratum-1 server measures an offset within 1 ms of zero; with a
    key every reply it accepts was authenticated and we saw no bad MAC."""
    keys = our_keys(tmp_path)
    port = free_udp_port()
    service = start_service(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 0\n"
        f"keys {keys}\ntrustedkey 1 2\n", tmp_path / "ntp.conf", port)
    lengths = record_lengths(service)
    try:
        key = f" key {SECRETS[auth][0]}" if auth else ""
        chrony = chronyd(["port 0",
                          f"server 127.0.0.1 port {port} minpoll -4 maxpoll -4 iburst{key}"],
                         auth)
        offsets = spin(lambda: len(chrony.measured_offsets()) >= 12 and chrony.measured_offsets(),
                       DEADLINE, "chronyd measurements", chrony.output)
    finally:
        stop_service(service)
    assert set(lengths) == {expected_length(auth)}, lengths
    median = statistics.median(offsets[-12:])
    assert abs(median) < TOLERANCE, offsets
    counters = service.engine.counters
    assert counters["served"] >= 12
    assert counters["badauth"] == 0
    assert counters["internal_error"] == 0


def four_samples(service: NTPAutokeyService, chrony: Chrony) -> dict[str, Any]:
    """The service's one association once it has four samples from chronyd (then the
    service is stopped)."""

    def association() -> dict[str, Any] | None:
        # iburst: the burst's answers enter the clock filter without shifting the reach
        # register, so count samples rather than reach bits.
        [assoc] = service.engine.status()["associations"]
        if assoc["reach"] and service.engine.counters["samples"] >= 4:
            return assoc
        return None

    try:
        return spin(association, DEADLINE, "four samples from chronyd",
                    lambda: f"{service.engine.status()}\n{chrony.output()}")
    finally:
        stop_service(service)


@pytest.mark.parametrize("auth", AUTH_CASES, ids=lambda a: a or "none")
def test_our_client_of_chronyd(tmp_path: Path, chronyd, auth: str | None) -> None:
    """Our client association with chronyd as its server (``local stratum 1``) measures an
    offset within 1 ms of zero, authenticated with the configured key when there is one."""
    chrony_port = free_udp_port()
    chrony = chronyd([f"port {chrony_port}", "bindaddress 127.0.0.1", "allow 127.0.0.1",
                      "local stratum 1"], auth)
    keys = our_keys(tmp_path)
    key = f" key {SECRETS[auth][0]}" if auth else ""
    service = start_service(
        f"server 127.0.0.1 port {chrony_port} minpoll 3 iburst{key}\n"
        f"keys {keys}\ntrustedkey 1 2\n", tmp_path / "ntp.conf", 0)
    lengths = record_lengths(service)
    assoc = four_samples(service, chrony)
    assert lengths and set(lengths) == {expected_length(auth)}, lengths
    assert abs(assoc["offset"]) < TOLERANCE, assoc
    assert assoc["stratum"] == 1
    counters = service.engine.counters
    assert counters["badauth"] == 0, counters
    assert counters["internal_error"] == 0


def test_chronyd_with_wrong_key_is_refused(tmp_path: Path, chronyd) -> None:
    """chronyd signing with a key whose secret differs from ours gets crypto-NAKs, never a
    measurement."""
    keys = tmp_path / "ntp.keys"
    keys.write_text("1 MD5 not-the-same-secret\n")
    port = free_udp_port()
    service = start_service(
        f"server 127.127.1.0\nfudge 127.127.1.0 stratum 0\nkeys {keys}\ntrustedkey 1\n",
        tmp_path / "ntp.conf", port)
    try:
        chrony = chronyd(["port 0",
                          f"server 127.0.0.1 port {port} minpoll -4 maxpoll -4 iburst key 1"],
                         "md5")
        spin(lambda: service.engine.counters["badauth"] >= 8, DEADLINE,
             "eight bad MACs from chronyd", chrony.output)
    finally:
        stop_service(service)
    assert chrony.measured_offsets() == []


def test_our_client_with_wrong_key_takes_no_sample(tmp_path: Path, chronyd) -> None:
    """Our association signing with a secret chronyd does not share never takes a sample
    (chronyd drops such requests or answers with a crypto-NAK).  By the fourth request the
    answers to the first three would long have arrived."""
    chrony_port = free_udp_port()
    chrony = chronyd([f"port {chrony_port}", "bindaddress 127.0.0.1", "allow 127.0.0.1",
                      "local stratum 1"], "md5")
    keys = tmp_path / "ntp.keys"
    keys.write_text("1 MD5 not-the-same-secret\n")
    service = start_service(
        f"server 127.0.0.1 port {chrony_port} minpoll 3 iburst key 1\n"
        f"keys {keys}\ntrustedkey 1\n", tmp_path / "ntp.conf", 0)
    try:
        spin(lambda: service.engine.counters["sent"] >= 4, DEADLINE,
             "four requests to chronyd", chrony.output)
    finally:
        stop_service(service)
    assert service.engine.counters["samples"] == 0, service.engine.counters
    [assoc] = service.engine.status()["associations"] or [{"reach": 0}]
    assert assoc["reach"] == 0
