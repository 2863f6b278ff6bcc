"""Real daemons: two ``twistd -n ntpautokey`` processes on loopback complete the IFF server
dance with keys made by ``ntpauto keygen``, watched through ``ntpauto status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ntpauto.cli import main as cli_main

pytestmark = pytest.mark.slow

TWISTD = [sys.executable, "-c",
          "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
REPO = Path(__file__).resolve().parents[1]


def free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def keygen(directory: Path, *argv: str) -> str:
    """Run ``ntpauto keygen`` in ``directory`` and return what it wrote to stdout."""
    result = subprocess.run([sys.executable, "-m", "ntpauto.cli", "keygen",
                             "--keysdir", str(directory), *argv],
                            capture_output=True, text=True, check=True, env=env())
    return result.stdout


def env() -> dict[str, str]:
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                           variables.get("PYTHONPATH")]))
    return variables


def start_daemon(tmp_path: Path, name: str, directory: Path,
                 *options: str) -> subprocess.Popen:
    """``twistd -n ntpautokey`` in ``directory`` with ``options`` (default: its ntp.conf),
    logging to ``tmp_path/name.log``."""
    return subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "--logfile", str(tmp_path / f"{name}.log"),
         "ntpautokey", *(options or ("--config", str(directory / "ntp.conf")))],
        cwd=directory, env=env(), stdin=subprocess.DEVNULL)


def wait_for_peer(port: int, flags: set[str],
                  seconds: float = 90) -> tuple[dict | None, dict | None]:
    """The single association and the system variables of the client daemon on
    127.0.0.2 ``port`` once its server is the system peer with ``flags`` lit, or as last
    seen after ``seconds``."""
    deadline = time.monotonic() + seconds
    association = system = None
    while time.monotonic() < deadline:
        time.sleep(0.5)  # polling for progress between real daemons, not a timing test
        document = status("127.0.0.2", port)
        if document is None:
            continue
        [association] = document["associations"]
        system = document["system"]
        if system["peer"] == association["associd"] and \
                flags <= set(association["autokey"]["flags"]):
            break
    return association, system


def iff_pair(tmp_path: Path, brenda_port: int) -> tuple[Path, Path, int]:
    """Keys and ntp.conf for alice@alice (trusted IFF server on 127.0.0.1, a free port) and
    brenda@alice (her client on 127.0.0.2 ``brenda_port``): (alice's directory, brenda's
    directory, alice's port)."""
    alice_dir, brenda_dir = tmp_path / "alice", tmp_path / "brenda"
    alice_dir.mkdir()
    brenda_dir.mkdir()
    keygen(alice_dir, "-T", "-I", "-b", "256", "-m", "1024", "-s", "alice@alice", "-p", "apw")
    (brenda_dir / "ntpkey_iffpar_alice").write_text(
        keygen(alice_dir, "-e", "-s", "alice@alice", "-p", "apw"))
    keygen(brenda_dir, "-H", "-m", "1024", "-s", "brenda@alice", "-p", "bpw")
    alice_port = free_port("127.0.0.1")
    (alice_dir / "ntp.conf").write_text(
        f"interface listen 127.0.0.1\nport {alice_port}\nlocalclock stratum 1\n"
        f"crypto host alice pw apw\nkeysdir {alice_dir}\n")
    (brenda_dir / "ntp.conf").write_text(
        f"interface listen 127.0.0.2\nport {brenda_port}\n"
        f"server 127.0.0.1 port {alice_port} autokey ident alice iburst minpoll 3 maxpoll 3\n"
        f"crypto host brenda pw bpw\nkeysdir {brenda_dir}\n")
    return alice_dir, brenda_dir, alice_port


def status(host: str, port: int) -> dict | None:
    """The daemon's status document (via the CLI over mode 6, as an operator would read
    it), or None while it does not answer."""
    from io import StringIO

    from ntpauto.cli import status as status_cli

    out = StringIO()
    args = cli_main.__globals__["build_parser"]().parse_args(
        ["status", host, "--port", str(port), "--json", "--timeout", "1"])
    if status_cli.run(args, out=out) != 0:
        return None
    return json.loads(out.getvalue())


def test_two_daemons_complete_the_iff_dance(tmp_path):
    """A trusted IFF server (alice) and a client (brenda) in separate twistd processes:
    the client's association lights CERT VRFY PROV COOK (then SIGN) and the proventic
    server becomes its system peer."""
    brenda_port = free_port("127.0.0.2")
    alice_dir, brenda_dir, alice_port = iff_pair(tmp_path, brenda_port)
    daemons = []
    try:
        for name, directory in (("alice", alice_dir), ("brenda", brenda_dir)):
            daemons.append(start_daemon(tmp_path, name, directory))
        association, system = wait_for_peer(brenda_port, {"SIGN"})
        log = (tmp_path / "brenda.log").read_text()
        assert association is not None, log
        flags = association["autokey"]["flags"]
        assert {"IFF", "CERT", "VRFY", "PROV", "COOK", "SIGN"} <= set(flags), log
        assert association["autokey"]["scheme"] == "iff"
        assert association["autokey"]["trail"] == [["alice@alice", "alice@alice"]]
        assert system["peer"] == association["associd"] and system["stratum"] == 2
        assert "Autokey status" in log  # transitions are logged per association
        for name in ("alice", "brenda"):  # no private value ever reaches the logs
            text = (tmp_path / f"{name}.log").read_text()
            assert "PRIVATE KEY" not in text and "apw" not in text and "bpw" not in text
        server = status("127.0.0.1", alice_port)
        assert server is not None
        assert server["system"]["autokey"]["host"] == "alice@alice"
        # Alice's IFF responses came from her identity worker process, not her reactor.
        assert server["counters"].get("autokey_offloaded", 0) >= 1, server["counters"]
        assert "identity worker started" in (tmp_path / "alice.log").read_text()
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(timeout=20)


def test_newcomer_default_daemon_serves_autokey(tmp_path):
    """The README's first command: ``twistd -n ntpautokey`` with no config generates its
    host key and certificate into ./ntpkeys (the key 0600) and serves Autokey: a client
    daemon completes the TC dance with it and takes it as system peer."""
    import socket

    server_dir, client_dir = tmp_path / "newcomer", tmp_path / "client"
    server_dir.mkdir()
    client_dir.mkdir()
    host = socket.gethostname()
    port, client_port = free_port("127.0.0.1"), free_port("127.0.0.2")
    keygen(client_dir, "-H", "-m", "1024", "-s", "client", "-p", "cpw")
    (client_dir / "ntp.conf").write_text(
        f"interface listen 127.0.0.2\nport {client_port}\n"
        f"server 127.0.0.1 port {port} autokey iburst minpoll 3 maxpoll 3\n"
        f"crypto host client pw cpw\nkeysdir {client_dir}\n")
    daemons = [start_daemon(tmp_path, "newcomer", server_dir, "--port", str(port))]
    try:
        daemons.append(start_daemon(tmp_path, "client", client_dir))
        association, system = wait_for_peer(client_port, {"PROV", "COOK"})
        log = (tmp_path / "client.log").read_text()
        assert association is not None, log
        assert {"CERT", "PROV", "COOK"} <= set(association["autokey"]["flags"]), log
        assert association["autokey"]["trail"] == [[host, host]]
        assert system["peer"] == association["associd"]
        keys = server_dir / "ntpkeys"
        host_key = (keys / f"ntpkey_host_{host}").resolve()
        assert host_key.stat().st_mode & 0o777 == 0o600
        assert (keys / f"ntpkey_cert_{host}").exists()
        newcomer_log = (tmp_path / "newcomer.log").read_text()
        assert "generated the Autokey host key and certificate" in newcomer_log
        assert "PRIVATE KEY" not in newcomer_log
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(timeout=20)
