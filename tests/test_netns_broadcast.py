"""Real broadcast Autokey between two network namespaces joined by a veth pair.

The set-up of the reference's ``bcast-tc``/``bcast-gq`` captures (vectors README): alice
198.18.0.1/24 sends ``broadcast 198.18.0.255 autokey``; brenda 198.18.0.2/24 is a
``broadcastclient``.  Brenda listens on her unicast address first (the source of her volley and
of its session keys) and on the broadcast address, so each broadcast reaches the engine with
``local`` = 198.18.0.255, the destination address in the broadcast session keys.  Two
``twistd -n ntpautokey`` processes, one per namespace, watched through ``ntpauto status``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TWISTD = [sys.executable, "-c",
          "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
REPO = Path(__file__).resolve().parents[1]

ALICE, BRENDA, BROADCAST = "198.18.0.1", "198.18.0.2", "198.18.0.255"
NTP_PORT = 123  # each namespace has its own port space, so the real port is free
DEADLINE = 90.0
DANCE_FLAGS = {"CERT", "VRFY", "PROV", "COOK", "AUTO", "SIGN", "LEAP"}
CALIBRATED = f"broadcast client {ALICE}: delay calibrated"
"""Logged when the broadcast client's volley ends (every flag lit, delay measured)."""

SNIFFER = r"""
import json, socket, struct, sys, time
# A raw UDP socket bound to the broadcast address sees a copy of every UDP datagram sent to
# it, beside the daemon's own socket on the same address and port.
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
sock.bind((sys.argv[1], 0))
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        packet = sock.recv(65535)
    except TimeoutError:
        break
    header = (packet[0] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", packet, header)
    payload = packet[header + 8:]
    if dport == int(sys.argv[2]) and payload and payload[0] & 7 == 5:
        print(json.dumps({"source": socket.inet_ntoa(packet[12:16]),
                          "destination": socket.inet_ntoa(packet[16:20]),
                          "sport": sport, "dport": dport, "mode": payload[0] & 7,
                          "length": len(payload)}))
        break
"""
"""Run inside brenda's namespace: print the first NTP broadcast (mode 5) sent to argv[1]."""


@dataclass
class Namespaces:
    """Two namespaces joined by a veth pair: alice's side ``a`` and brenda's side ``b``."""

    a: str
    b: str


def env() -> dict[str, str]:
    """Our environment with the repository first on PYTHONPATH."""
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                           variables.get("PYTHONPATH")]))
    return variables


def keygen(directory: Path, *argv: str) -> str:
    """Run ``ntpauto keygen`` in ``directory`` and return what it wrote to stdout."""
    result = subprocess.run([sys.executable, "-m", "ntpauto.cli", "keygen",
                             "--keysdir", str(directory), *argv],
                            capture_output=True, text=True, check=True, env=env(),
                            stdin=subprocess.DEVNULL)
    return result.stdout


def status(space: str, address: str) -> dict | None:
    """The status document of the daemon at ``address`` in namespace ``space``, read by
    ``ntpauto status --json`` (mode 6) run in that namespace; None while it does not answer."""
    result = subprocess.run(["ip", "netns", "exec", space, sys.executable, "-m", "ntpauto.cli",
                             "status", address, "--port", str(NTP_PORT), "--json",
                             "--timeout", "1"], capture_output=True, text=True, env=env(),
                            stdin=subprocess.DEVNULL, timeout=30)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ip(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGV`` and raise (with its stderr) if it fails."""
    result = subprocess.run(["ip", *argv], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode:
        raise RuntimeError(f"ip {' '.join(argv)}: {result.stderr.strip()}")
    return result


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    """``ntpauto-a-*`` (198.18.0.1/24) and ``ntpauto-b-*`` (198.18.0.2/24) joined by a veth
    pair, links and ``lo`` up; deleted afterwards.  Skips only when namespaces cannot be
    made here (not root, no iproute2, or ``ip netns add`` refused)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (the ip command) is not installed")
    token = f"{os.getpid()}-{secrets.token_hex(2)}"
    spaces = Namespaces(f"ntpauto-a-{token}", f"ntpauto-b-{token}")
    veth_a, veth_b = f"nta{secrets.token_hex(4)}", f"ntb{secrets.token_hex(4)}"
    made: list[str] = []
    try:
        for name in (spaces.a, spaces.b):
            try:
                ip("netns", "add", name)
            except RuntimeError as e:
                pytest.skip(f"cannot create a network namespace: {e}")
            made.append(name)
        ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        ip("link", "set", veth_a, "netns", spaces.a)
        ip("link", "set", veth_b, "netns", spaces.b)
        for name, veth, address in ((spaces.a, veth_a, ALICE), (spaces.b, veth_b, BRENDA)):
            ip("-n", name, "addr", "add", f"{address}/24", "broadcast", BROADCAST,
               "dev", veth)
            ip("-n", name, "link", "set", veth, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield spaces
    finally:
        # A veth still in this namespace (set-up failed half-way) goes with its peer.
        subprocess.run(["ip", "link", "delete", veth_a], capture_output=True,
                       stdin=subprocess.DEVNULL)
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True,
                           stdin=subprocess.DEVNULL)


def in_namespace(name: str, argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside namespace ``name`` (``ip netns exec`` execs it: same pid)."""
    return subprocess.Popen(["ip", "netns", "exec", name, *argv], env=env(),
                            stdin=subprocess.DEVNULL, **kwargs)


def stop(processes: list[subprocess.Popen]) -> None:
    """Terminate what we started (kill what does not stop)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def make_keys(tmp_path: Path, scheme: str) -> tuple[Path, Path]:
    """Alice: a trusted host (TC, or also a GQ group key); brenda: a plain host key."""
    alice_dir, brenda_dir = tmp_path / "alice", tmp_path / "brenda"
    alice_dir.mkdir()
    brenda_dir.mkdir()
    identity = ["-G", "-b", "256"] if scheme == "gq" else []
    keygen(alice_dir, "-T", *identity, "-m", "1024", "-s", "alice@alice", "-p", "apw")
    if scheme == "gq":
        (brenda_dir / "ntpkey_gqpar_alice").write_text(
            keygen(alice_dir, "-e", "-s", "alice@alice", "-p", "apw"))
    keygen(brenda_dir, "-H", "-m", "1024", "-s", "brenda@alice", "-p", "bpw")
    return alice_dir, brenda_dir


def read_log(path: Path) -> str:
    return path.read_text() if path.exists() else f"(no {path.name})"


@pytest.mark.parametrize("scheme", ["tc", "gq"])
def test_broadcast_autokey_across_namespaces(namespaces, tmp_path, scheme):
    """Brenda mobilises a broadcast client on alice's broadcasts to 198.18.0.255, completes
    the dance unicast (CERT VRFY PROV COOK AUTO SIGN LEAP), takes alice as system peer at
    stratum 2 and then only listens: broadcasts keep arriving, brenda sends nothing more."""
    alice_dir, brenda_dir = make_keys(tmp_path, scheme)
    (alice_dir / "ntp.conf").write_text(
        f"interface listen {ALICE}\nlocalclock stratum 1\n"
        f"broadcast {BROADCAST} autokey minpoll 3\n"
        f"crypto host alice pw apw\nkeysdir {alice_dir}\n")
    ident = "ident alice\n" if scheme == "gq" else ""
    (brenda_dir / "ntp.conf").write_text(
        f"interface listen {BRENDA}\ninterface listen {BROADCAST}\n"
        f"broadcastclient\n{ident}crypto host brenda pw bpw\nkeysdir {brenda_dir}\n")
    logs = {"alice": tmp_path / "alice.log", "brenda": tmp_path / "brenda.log"}
    processes: list[subprocess.Popen] = []
    try:
        for name, space, directory in (("alice", namespaces.a, alice_dir),
                                       ("brenda", namespaces.b, brenda_dir)):
            processes.append(in_namespace(space, [
                *TWISTD, "-n", "--pidfile=", "--logfile", str(logs[name]), "ntpautokey",
                "--config", str(directory / "ntp.conf")], cwd=directory))
        sniffer = in_namespace(namespaces.b, [
            sys.executable, "-c", SNIFFER, BROADCAST, str(NTP_PORT), str(DEADLINE)],
            stdout=subprocess.PIPE, text=True)
        processes.append(sniffer)

        start = time.monotonic()
        deadline = start + DEADLINE
        association = system = document = None
        while time.monotonic() < deadline:
            time.sleep(0.5)  # polling real daemons for progress, not a timing test
            for name, process in zip(("alice", "brenda"), processes):
                assert process.poll() is None, f"{name} exited\n{read_log(logs[name])}"
            document = status(namespaces.b, BRENDA)
            if document is None or not document["associations"]:
                continue
            [association] = document["associations"]
            system = document["system"]
            if system["peer"] == association["associd"] and \
                    DANCE_FLAGS <= set(association["autokey"]["flags"]) and \
                    CALIBRATED in read_log(logs["brenda"]):
                break
        danced = time.monotonic() - start
        log = read_log(logs["brenda"])
        assert association is not None, f"no association after {DEADLINE} s\n{log}"
        assert association["mode"] == "bclient"
        assert association["address"] == ALICE and association["ephemeral"]
        autokey = association["autokey"]
        assert DANCE_FLAGS <= set(autokey["flags"]), (autokey, log)
        assert autokey["scheme"] == scheme
        assert autokey["trail"] == [["alice@alice", "alice@alice"]]
        assert system["peer"] == association["associd"] and system["stratum"] == 2, system
        assert "Autokey status" in log

        # The volley ended (the delay is calibrated, logged in the same reactor turn): from now
        # on brenda only listens, and more broadcasts are used.
        assert CALIBRATED in log, log
        document = status(namespaces.b, BRENDA)
        sent, samples = document["counters"]["sent"], document["counters"]["samples"]
        assert sent > 0
        while time.monotonic() < deadline + 30:
            time.sleep(0.5)  # as above
            document = status(namespaces.b, BRENDA)
            if document["counters"]["samples"] >= samples + 2:
                break
        [association] = document["associations"]
        assert document["counters"]["samples"] >= samples + 2, document["counters"]
        assert document["counters"]["sent"] == sent, "brenda kept sending after the volley"
        assert association["reach"] != 0 and association["system_peer"]

        # The broadcasts really went to the broadcast address, from alice's address.
        out, _ = sniffer.communicate(timeout=DEADLINE + 10)
        assert out.strip(), "no NTP broadcast seen on 198.18.0.255"
        seen = json.loads(out)
        assert seen == {"source": ALICE, "destination": BROADCAST, "sport": NTP_PORT,
                        "dport": NTP_PORT, "mode": 5, "length": seen["length"]}
        assert seen["length"] > 48  # with a MAC (and fields): an Autokey broadcast
        alice = status(namespaces.a, ALICE)
        [broadcast] = [a for a in alice["associations"] if a["mode"] == "broadcast"]
        assert broadcast["address"] == BROADCAST
        assert alice["counters"]["sent"] >= 3
        print(f"{scheme}: dance complete after {danced:.1f} s, "
              f"{document['counters']['samples']} samples, brenda sent {sent}")
    finally:
        stop(processes)
