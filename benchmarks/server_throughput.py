"""Server throughput: ntpauto's stateless server against a bare Twisted UDP echo server.

One run, one process tree, loopback only.  Each server runs in its own subprocess (this
script with ``--serve``); all are started first, then measured in turn, round after round
(``--rounds``, default 5), by the same windowed load generator: ``W`` requests outstanding,
a new one sent for each reply, a bounded number of requests and a bounded time per target.
Interleaving the targets keeps a slow spell of a shared machine from landing on one target
only; each ratio is the median of the per-round ratios.  Targets:

* ``echo``     a Twisted ``DatagramProtocol`` that writes every datagram back, on Twisted's
               own UDP port (``reactor.listenUDP``);
* ``ntp``      ``NTPAutokeyService`` (the default stratum-1 configuration) answering plain
               48-octet client requests;
* ``ntp-md5``  the same service answering client requests carrying an MD5 MAC (key 1), which
               it verifies and signs its replies with;
* ``ntp-autokey`` the service with Autokey credentials answering requests under Autokey
               session keys without extension fields (cookie from a COOK exchange first).
* ``ntp-nts``  the service serving NTS (RFC 8915) answering NTS-protected requests as a
               client sends them once its jar is full: a unique identifier, a cookie, no
               placeholder, the authenticator; each reply opens the cookie, checks the
               authenticator and seals one new cookie.  The load generator makes its
               cookies with the server's cookie secret (``ntsdumpdir``, shared as a farm
               shares it) instead of running NTS-KE.

The NTP targets listen as the daemon does, on :class:`ntpauto.protocol.NTPPort`: Twisted's UDP
port with a read loop of ours that answers the common requests without a call per layer
(Twisted's ``doRead`` calls ``datagramReceived`` per datagram), worth about 0.5 us a reply.

``--interface 0.0.0.0`` binds the NTP targets to the wildcard address (the load still goes
to 127.0.0.1): each datagram's destination is then read with ``recvmsg`` and the reply sent
from it with ``sendmsg`` (:mod:`ntpauto.udpsocket`), which this measures.

Prints per target the median replies per second, the median ratio to the echo server with
the range of the per-round ratios, and the server process's median CPU time per reply (from
/proc: the part of the cost that is the server's own).  Goals: ``ntp`` at least 70 % of
echo, ``ntp-md5`` and ``ntp-autokey`` at least 65 % (issue 7; the reference ntpd reaches
about that here).  ``--check`` exits 1 when a goal is missed.

    .venv/bin/python benchmarks/server_throughput.py [--requests N] [--window W]
        [--interface ADDRESS]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = ("echo", "ntp", "ntp-md5", "ntp-autokey", "ntp-nts")
GOALS = {"ntp": 0.70, "ntp-md5": 0.65, "ntp-autokey": 0.65}
MD5_KEY = "1 MD5 benchmarksecret\n"


# -- the servers (child processes) --------------------------------------------------------


def serve(kind: str, keys_file: str | None, interface: str) -> None:
    """Run one server on ``interface`` (the echo server: 127.0.0.1) port 0; print ``PORT n``
    once listening."""
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    if kind == "echo":
        class Echo(DatagramProtocol):
            noisy = False

            def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.write(data, addr)

        port = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
        number = port.getHost().port
    else:
        import attrs

        from ntpauto.config import ListenConfig, default_config
        from ntpauto.service import NTPAutokeyService

        config = attrs.evolve(default_config(port=0), listen=(ListenConfig(interface),))
        if kind == "ntp-md5":
            config = attrs.evolve(config, keys_file=keys_file, trusted_keys=frozenset({1}))
        if kind == "ntp-autokey":
            from ntpauto.autokey.host import generate_host
            from ntpauto.config import CryptoConfig

            keysdir = tempfile.mkdtemp(prefix="ntpauto-bench-")
            generate_host(keysdir, "bench", bits=1024, password="bench")
            config = attrs.evolve(config, crypto=CryptoConfig(host="bench", pw="bench"),
                                  keysdir=keysdir)
        if kind == "ntp-nts":
            from ntpauto.nts.certs import write_test_pki

            pki = write_test_pki(keys_file, ["127.0.0.1"])
            config = attrs.evolve(config, nts_server_cert=pki.cert, nts_server_key=pki.key,
                                  nts_port=0, nts_dump_dir=keys_file)
        service = NTPAutokeyService(config)
        service.privilegedStartService()
        service.startService()
        number = service.address[1]
    sys.stdout.write(f"PORT {number}\n")
    sys.stdout.flush()
    reactor.run()


def start_server(kind: str, keys_file: str, interface: str) -> tuple[subprocess.Popen, int]:
    """Start a server subprocess and read the port it bound."""
    argv = [sys.executable, __file__, "--serve", kind, "--interface", interface]
    if kind == "ntp-md5":
        argv += ["--keys", keys_file]
    if kind == "ntp-nts":
        argv += ["--keys", os.path.dirname(keys_file)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=env, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return process, int(line.split()[1])


# -- the load generator -------------------------------------------------------------------


def autokey_requests(port: int, count: int) -> list[bytes]:
    """Client requests under Autokey session keys without extension fields.  First the
    client's side of a dance gets the server's cookie for 127.0.0.1: an ASSOC exchange, then
    a COOK request (our own RSA key) whose origin echoes the ASSOC reply, as every client's
    does (the server's amplification limit answers only such a request in full).  Then each
    request carries its own key ID and a MAC under that cookie."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ntpauto.auth.autokey import mac, session_key
    from ntpauto.autokey.fields import ASSOC, COOK, Field, decode
    from ntpauto.autokey.values import decrypt_cookie, encode_assoc_name, encode_public_key
    from ntpauto.wire.packet import Header, parse
    from ntpauto.wire.timestamps import unix_to_ntp

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    address = "127.0.0.1"
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, unix_to_ntp(time.time()))
    keyid = 0x10000001

    def exchange(sock: socket.socket, field: Field, origin: int) -> object:
        data = header._replace(origin=origin).encode() + field.encode()
        data += mac(session_key(address, address, keyid, 0), keyid, data)
        sock.sendto(data, (address, port))
        return parse(sock.recv(4096))

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        sock.settimeout(5)
        assoc = exchange(sock, Field(code=ASSOC, value=encode_assoc_name("bench")), 0)
        reply = exchange(sock, Field(code=COOK, value=encode_public_key(key.public_key())),
                         assoc.header.transmit)
    cookie = decrypt_cookie(decode(reply.fields[0].data).value, key)
    base = unix_to_ntp(time.time())
    requests = []
    for i in range(count):
        keyid = 0x20000000 + i
        data = header._replace(transmit=base + (i << 12)).encode()
        requests.append(data + mac(session_key(address, address, keyid, cookie), keyid, data))
    return requests


def nts_requests(directory: str, count: int) -> list[bytes]:
    """NTS-protected client requests with cookies sealed under the server's secret (in
    ``directory``, its ``ntsdumpdir``): each from a session whose jar is full, so none
    carries a placeholder (one new cookie per reply)."""
    import os as _os

    from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
    from ntpauto.nts.cookies import CookieKeys, load_or_create_secret
    from ntpauto.nts.records import KeResponse
    from ntpauto.nts.session import NtsSession
    from ntpauto.wire.packet import Header
    from ntpauto.wire.timestamps import unix_to_ntp

    sealer = CookieKeys(load_or_create_secret(directory))
    keys = SessionKeys(AEAD_AES_SIV_CMAC_256, _os.urandom(32), _os.urandom(32))
    cookie = sealer.seal(keys, time.time())
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 0)
    base = unix_to_ntp(time.time())
    requests = []
    for i in range(count):
        session = NtsSession("127.0.0.1", 4460)
        session.keyed(KeResponse(keys.aead, (cookie,) * 8), keys, 0.0)
        requests.append(session.request(header._replace(transmit=base + (i << 12)).encode()))
    return requests


def make_requests(count: int, md5: bool) -> list[bytes]:
    """Distinct client requests (different transmit timestamps), MD5-signed if asked."""
    from ntpauto.auth.keys import KeyStore, parse_keys
    from ntpauto.cli.query import make_request
    from ntpauto.wire.timestamps import unix_to_ntp

    store = KeyStore(parse_keys(MD5_KEY), trusted=[1]) if md5 else None
    base = unix_to_ntp(time.time())
    return [make_request(base + (i << 12), 4, store, 1 if md5 else None)
            for i in range(count)]


def check_reply(kind: str, data: bytes) -> None:
    """Make sure the server does the work we think it does."""
    if kind == "echo":
        return
    from ntpauto.wire.packet import MODE_SERVER, parse

    packet = parse(data)
    assert packet.header.mode == MODE_SERVER and packet.header.stratum == 1, packet.header
    if kind == "ntp-md5":
        assert packet.keyid == 1 and len(packet.digest) == 16, "reply is not MD5-signed"
    if kind == "ntp-autokey":
        assert packet.keyid > 65535 and len(packet.digest) == 16, "no Autokey MAC"
    if kind == "ntp-nts":
        assert packet.nts and len(packet.fields) == 2, "no NTS reply"


def load(port: int, requests: list[bytes], total: int, window: int,
         max_seconds: float) -> tuple[int, int, float]:
    """Keep ``window`` requests outstanding until ``total`` replies or ``max_seconds``.

    Returns (replies, sent, elapsed seconds).  Lost datagrams are replaced after a quiet
    100 ms so that the window never shrinks for good.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    pool = len(requests)
    sent = replies = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    for _ in range(min(window, total)):
        sock.send(requests[sent % pool])
        sent += 1
    try:
        while replies < total:
            now = time.perf_counter()
            if now > deadline:
                break
            if not selector.select(0.1):
                # Quiet: assume the window was lost and refill it.
                for _ in range(window):
                    sock.send(requests[sent % pool])
                    sent += 1
                continue
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
                replies += 1
                if sent < total:
                    sock.send(requests[sent % pool])
                    sent += 1
    finally:
        elapsed = time.perf_counter() - start
        selector.close()
        sock.close()
    return replies, sent, elapsed


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Target:
    """One server subprocess, its port and the requests the load generator sends it."""

    def __init__(self, kind: str, keys_file: str, interface: str) -> None:
        self.kind = kind
        self.process, self.port = start_server(kind, keys_file, interface)
        try:
            if kind == "ntp-autokey":
                self.requests = autokey_requests(self.port, 4096)
            elif kind == "ntp-nts":
                self.requests = nts_requests(os.path.dirname(keys_file), 4096)
            else:
                self.requests = make_requests(4096, md5=(kind == "ntp-md5"))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.settimeout(5)
                probe.sendto(self.requests[0], ("127.0.0.1", self.port))
                check_reply(kind, probe.recv(2048))
        except BaseException:
            self.stop()
            raise

    def measure(self, count: int, window: int, max_seconds: float) -> dict[str, float]:
        """One measurement: ``count`` replies (or ``max_seconds``) after a short warm-up."""
        load(self.port, self.requests, min(2000, count), window, 5.0)
        cpu_before = cpu_seconds(self.process.pid)
        replies, sent, elapsed = load(self.port, self.requests, count, window, max_seconds)
        cpu_after = cpu_seconds(self.process.pid)
        cpu_us = None
        if cpu_before is not None and cpu_after is not None and replies:
            cpu_us = (cpu_after - cpu_before) / replies * 1e6
        return {"replies": replies, "sent": sent, "seconds": elapsed,
                "rate": replies / elapsed if elapsed else 0.0, "server_cpu_us": cpu_us}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def run_rounds(keys_file: str, args: argparse.Namespace) -> dict[str, dict]:
    """Start every server (idle ones cost nothing), then measure them in turn, round after
    round, so that each round's targets see the same machine; per target the median rate
    and CPU over the rounds and the median of its per-round ratios to the echo server."""
    targets: list[Target] = []
    try:
        for kind in TARGETS:
            targets.append(Target(kind, keys_file, args.interface))
        per_round = max(1, args.requests // args.rounds)
        rounds = []
        for i in range(args.rounds):
            order = targets[i % len(targets):] + targets[:i % len(targets)]  # rotated
            rounds.append({t.kind: t.measure(per_round, args.window, args.max_seconds)
                           for t in order})
    finally:
        for target in targets:
            target.stop()
    results: dict[str, dict] = {}
    for kind in TARGETS:
        samples = [r[kind] for r in rounds]
        cpu = [s["server_cpu_us"] for s in samples if s["server_cpu_us"] is not None]
        results[kind] = {
            "replies": sum(s["replies"] for s in samples),
            "sent": sum(s["sent"] for s in samples),
            "seconds": sum(s["seconds"] for s in samples),
            "rate": statistics.median(s["rate"] for s in samples),
            "server_cpu_us": statistics.median(cpu) if cpu else None,
            "ratio": statistics.median(
                r[kind]["rate"] / r["echo"]["rate"] if r["echo"]["rate"] else 0.0
                for r in rounds),
            "ratios": [r[kind]["rate"] / r["echo"]["rate"] if r["echo"]["rate"] else 0.0
                       for r in rounds],
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200000,
                        help="replies to wait for per target, over all rounds "
                             "(default 200000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds, each measuring every target in turn (default 5)")
    parser.add_argument("--window", type=int, default=32,
                        help="requests outstanding (default 32)")
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="time limit per target and round (default 15)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="address the NTP targets listen on (default 127.0.0.1; "
                             "0.0.0.0: the wildcard)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    parser.add_argument("--serve", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.keys, args.interface)
        return 0

    with tempfile.TemporaryDirectory(prefix="ntpauto-bench-") as directory:
        keys_file = os.path.join(directory, "ntp.keys")
        Path(keys_file).write_text(MD5_KEY)
        results = run_rounds(keys_file, args)
    missed = [kind for kind, goal in GOALS.items() if results[kind]["ratio"] < goal]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'target':<11} {'replies':>8} {'sent':>8} {'seconds':>8} {'replies/s':>10} "
              f"{'vs echo':>8} {'rounds':>13} {'cpu us':>7}  goal")
        for kind, result in results.items():
            goal = GOALS.get(kind)
            verdict = "" if goal is None else (
                f">= {goal:.0%} {'ok' if result['ratio'] >= goal else 'MISSED'}")
            cpu = result["server_cpu_us"]
            cpu_text = "?" if cpu is None else f"{cpu:.2f}"
            spread = f"{min(result['ratios']):.0%}-{max(result['ratios']):.0%}"
            print(f"{kind:<11} {result['replies']:>8} {result['sent']:>8} "
                  f"{result['seconds']:>8.2f} {result['rate']:>10.0f} "
                  f"{result['ratio']:>8.1%} {spread:>13} {cpu_text:>7}  {verdict}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
