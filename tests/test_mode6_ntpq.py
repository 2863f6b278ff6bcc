"""A real ``ntpq`` (Debian's NTPsec build) reads a running ntpauto daemon over mode 6.

An Autokey server (alice, 127.0.0.1, a free port) and its IFF client (brenda, 127.0.0.2 port
123, where ntpq asks) run as ``twistd -n ntpautokey`` processes; after the dance ``ntpq -c
rv``, ``-c as``, ``-c "rv ASSOC"`` and ``-p`` show the association and its Autokey flags.

Needs the ntpq script (``/opt/ntpsec/usr/bin/ntpq``, or ``$NTPQ``; .ci/run unpacks it) with
the ``ntp`` library it imports (python3-ntp), and permission to bind 127.0.0.2:123; skipped
where either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_daemons_autokey import env, iff_pair, start_daemon

pytestmark = pytest.mark.slow

NTPQ = os.environ.get("NTPQ") or shutil.which("ntpq") or "/opt/ntpsec/usr/bin/ntpq"
DEADLINE = 90.0
ALL = 0x7F00
"""CERT VRFY PROV COOK AUTO SIGN LEAP."""


def _ntpq_usable() -> bool:
    if not os.path.exists(NTPQ):
        return False
    result = subprocess.run([NTPQ, "--version"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    return result.returncode == 0


def _can_bind(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def ntpq(*commands: str) -> str:
    """Run ntpq against 127.0.0.2 (port 123) with ``-c`` commands; its stdout."""
    argv = [NTPQ, "-n"]
    for command in commands:
        argv += ["-c", command]
    result = subprocess.run([*argv, "127.0.0.2"], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    return result.stdout + result.stderr


def flags(output: str) -> int:
    """The ``flags`` variable of an ntpq ``rv`` display (0 when absent)."""
    match = re.search(r"\bflags=(\w+)", output)
    return int(match.group(1), 0) if match else 0


def until(deadline: float, command: tuple[str, ...], done) -> str:
    """Repeat an ntpq command until ``done(output)`` or the deadline; the last output."""
    while True:
        output = ntpq(*command)
        if done(output) or time.monotonic() > deadline:
            return output
        time.sleep(0.5)  # polling real daemons for progress, not a timing test


@pytest.fixture
def daemons(tmp_path: Path):
    if not _ntpq_usable():
        pytest.skip(f"needs NTPsec's ntpq and python3-ntp: none usable at {NTPQ} "
                    "(.ci/run unpacks it)")
    if not _can_bind(("127.0.0.2", 123)):
        pytest.skip("needs root: cannot bind 127.0.0.2:123")
    alice_dir, brenda_dir, _alice_port = iff_pair(tmp_path, 123)
    processes = []
    try:
        for name, directory in (("alice", alice_dir), ("brenda", brenda_dir)):
            processes.append(start_daemon(tmp_path, name, directory))
        yield tmp_path
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def test_ntpq_reads_the_autokey_association(daemons):
    deadline = time.monotonic() + DEADLINE
    log = lambda: (daemons / "brenda.log").read_text()  # noqa: E731
    listing = until(deadline, ("as",), lambda out: "sys.peer" in out)
    assert "sys.peer" in listing, listing + log()
    # ind assid status conf reach auth condition last_event cnt
    row = next(line.split() for line in listing.splitlines() if "sys.peer" in line)
    associd = row[1]
    assert row[3:6] == ["yes", "yes", "ok"], listing

    peer = until(deadline, (f"rv {associd}",), lambda out: flags(out) & ALL == ALL)
    # ntpq shows the flags in decimal: sha256WithRSAEncryption (NID 668), IFF and every one
    # of CERT VRFY PROV COOK AUTO SIGN LEAP.
    assert flags(peer) == 668 << 16 | ALL | 0x23, peer + log()
    assert 'host="alice@alice"' in peer and "srcadr=127.0.0.1" in peer
    assert 'signature="sha256WithRSAEncryption"' in peer and 'ident="alice"' in peer
    assert "sel_sys.peer" in peer and "filtdelay" in peer

    system = ntpq("rv")
    assert 'host="brenda@alice"' in system and "stratum=2" in system, system
    assert 'digest="md5"' in system and 'cert="' in system
    raw = ntpq("raw", "rv")  # NTPsec's ntpq keeps one value per name unless raw
    assert 'cert="alice@alice alice@alice 0x5"' in raw and "flags=0x29c0003" in raw, raw
    assert raw.count("until=") == raw.count("cert=") >= 3
    assert "until=" in system and flags(system) == 668 << 16 | 0x03  # ENAB TAI
    assert f"peer={associd}" in system

    peers = ntpq("peers")
    line = next((line for line in peers.splitlines() if line.startswith("*127.0.0.1")), None)
    assert line is not None, peers
    fields = line.split()
    assert fields[2:4] == ["1", "u"] and fields[5] == "8", line  # stratum, type, poll
    assert int(fields[6], 8) != 0  # reach, octal

    assert ntpq("rv 0 nosuch").count("UNKNOWNVAR") == 1
    status = subprocess.run([sys.executable, "-m", "ntpauto.cli", "status", "127.0.0.2",
                             "--port", "123"], capture_output=True, text=True, env=env(),
                            timeout=30, stdin=subprocess.DEVNULL)
    assert status.returncode == 0, status.stderr
    assert "scheme iff" in status.stdout and "alice@alice (issuer alice@alice until" in \
        status.stdout
