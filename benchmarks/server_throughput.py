"""Server throughput: ntpauto against chronyd, in the same run, on loopback.

Each server runs in its own process tree, all started first, then measured in turn, round
after round (``--rounds``, default 5, the order rotated each round), by the same windowed
load generator: ``--window`` requests outstanding from ``--sources`` client addresses
(127.0.0.2, 127.0.0.3, ...), a new request for each reply.  Interleaving the targets keeps a
slow spell of a shared machine from landing on one target only; every figure is the median
over the rounds.  Targets (``--targets``; ``/N`` is ``workers N``, ``/auto`` one per core):

* ``chrony``, ``chrony-md5``: chronyd (``$CHRONYD``, on ``PATH``, or
  ``/opt/chrony/usr/sbin/chronyd``, where .ci/run unpacks it) in the foreground with ``-x``
  (the clock untouched), on its own port, ``local stratum 1``, answering plain and MD5
  (key 1) requests: the anchor;
* ``ntp/N``, ``ntp-md5/N``: ``NTPAutokeyService`` (the default stratum-1 configuration,
  ``workers N``) answering plain and MD5-keyed requests (key 1, verified, the reply signed);
* ``ntp-autokey/N``: the same with Autokey credentials answering requests under session keys
  without extension fields (each source gets its cookie first: ASSOC, then COOK);
* ``ntp-nts/N``: the service serving NTS (RFC 8915) answering NTS-protected requests as a
  client sends them once its jar is full: a unique identifier, a cookie, no placeholder,
  the authenticator; each reply opens the cookie, checks the authenticator and seals one new
  cookie.  The load generator makes its cookies with the server's cookie secret
  (``ntsdumpdir``, shared as a farm shares it) instead of running NTS-KE;
* ``echo``: a Twisted ``DatagramProtocol`` writing every datagram back.

A ``+py`` after a target (``ntp-md5/1+py``) runs it without the batched path
(:mod:`ntpauto.batch`): every datagram read and answered in Python, for the comparison in
the same run (the default targets include ``ntp/1+py`` and ``ntp-md5/1+py``); ``+any``
binds the server to 0.0.0.0 (no ``interface`` line: each datagram's destination read from
the kernel, each reply sent from it).

The load generator is ``loadgen.c``, built with the system's C compiler into a temporary
directory (a Python one when there is none: it is slower than the servers, so it measures
itself; the table says which ran).  It shares the machine's cores with the servers.

Prints per target the replies per second, the ratio to chronyd in the same round (plain to
``chrony``, keyed to ``chrony-md5``) with the range of the rounds' ratios, the requests lost
(sent but never answered), the median and 99th percentile of the reply latency, and the
server's CPU time per reply (its processes', from /proc).  Goals (issue 17): ``ntp-md5/auto``
at least 1.0x chronyd with loss under 0.1 %; ``ntp/1`` and ``ntp-md5/1`` at least 0.75x;
``ntp-autokey`` within 10 % of ``ntp-md5`` with the same workers.  ``--check`` exits 1 when
one is missed.

    .venv/bin/python benchmarks/server_throughput.py [--requests N] [--rounds R]
        [--window W] [--sources S] [--targets ntp/1,chrony,...] [--workers 1,2,auto]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ntpauto.batch import DISABLE_VARIABLE  # noqa: E402 - after the path is set

MD5_SECRET = "benchmarksecret"
MD5_KEY = f"1 MD5 {MD5_SECRET}\n"
CHRONYD_PLACES = ("/opt/chrony/usr/sbin/chronyd", "/usr/sbin/chronyd")
POOL = 4096
"""Distinct requests per target (each with its own transmit timestamp)."""


# -- the servers (child processes) --------------------------------------------------------


def serve(kind: str, workers: int, keys_file: str | None, wildcard: bool = False) -> None:
    """Run one ntpauto (or echo) server on 127.0.0.1 port 0; print ``PORT n`` once
    listening."""
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    if kind == "echo":
        class Echo(DatagramProtocol):
            noisy = False

            def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.write(data, addr)

        number = reactor.listenUDP(0, Echo(), interface="127.0.0.1").getHost().port
    else:
        import attrs

        from ntpauto.config import default_config
        from ntpauto.service import NTPAutokeyService

        config = attrs.evolve(default_config(port=0), workers=workers)
        if wildcard:  # no interface line: the daemon binds 0.0.0.0
            config = attrs.evolve(config, listen=())
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

            directory = os.path.dirname(keys_file)  # type: ignore[arg-type]
            pki = write_test_pki(directory, ["127.0.0.1"])
            config = attrs.evolve(config, nts_server_cert=pki.cert, nts_server_key=pki.key,
                                  nts_port=0, nts_dump_dir=directory)
        service = NTPAutokeyService(config)
        service.privilegedStartService()
        service.startService()
        number = service.address[1]
    sys.stdout.write(f"PORT {number}\n")
    sys.stdout.flush()
    reactor.run()


def find_chronyd() -> str | None:
    return os.environ.get("CHRONYD") or shutil.which("chronyd") or next(
        (p for p in CHRONYD_PLACES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_chronyd(directory: Path) -> tuple[subprocess.Popen, int]:
    """chronyd in the foreground on its own port: ``-x`` (never the clock), ``local stratum
    1`` (a server with no source), answering 127.0.0.0/8, MD5 key 1."""
    chronyd = find_chronyd()
    if chronyd is None:
        raise RuntimeError("no chronyd: set $CHRONYD or run .ci/run's chrony step")
    port = free_port()
    (directory / "chrony.keys").write_text(f"1 MD5 HEX:{MD5_SECRET.encode().hex()}\n")
    (directory / "chrony.conf").write_text("\n".join([
        "cmdport 0", f"pidfile {directory / 'chronyd.pid'}", f"port {port}",
        "bindaddress 127.0.0.1", "allow 127.0.0.0/8", "local stratum 1",
        f"keyfile {directory / 'chrony.keys'}"]) + "\n")
    user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
    process = subprocess.Popen([chronyd, "-x", "-d", *user, "-f", str(directory /
                                                                     "chrony.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    return process, port


def start_server(kind: str, workers: int, keys_file: str, *, python_only: bool = False,
                 wildcard: bool = False) -> tuple[subprocess.Popen, int]:
    """Start an ntpauto (or echo) server process and read the port it bound (``python_only``:
    without the batched path, every datagram read and answered in Python)."""
    argv = [sys.executable, __file__, "--serve", kind, "--serve-workers", str(workers),
            *(["--serve-any"] if wildcard else []),
            "--keys", keys_file]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop(DISABLE_VARIABLE, None)
    if python_only:
        env[DISABLE_VARIABLE] = "1"
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=env, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return process, int(line.split()[1])


# -- requests -------------------------------------------------------------------------------


def source_address(index: int) -> str:
    return f"127.0.0.{2 + index}"


def plain_requests(sources: int, md5: bool) -> list[tuple[int, bytes]]:
    """(source, request) pairs with distinct transmit timestamps, MD5-signed if asked."""
    from ntpauto.auth.keys import KeyStore, parse_keys
    from ntpauto.cli.query import make_request
    from ntpauto.wire.timestamps import unix_to_ntp

    store = KeyStore(parse_keys(MD5_KEY), trusted=[1]) if md5 else None
    base = unix_to_ntp(time.time())
    return [(i % sources, make_request(base + (i << 12), 4, store, 1 if md5 else None))
            for i in range(POOL)]


def autokey_requests(port: int, sources: int) -> list[tuple[int, bytes]]:
    """Requests under Autokey session keys without extension fields.  Each source first gets
    the server's cookie for its address as every client does: an ASSOC exchange, then a
    COOK request (our own RSA key) echoing the ASSOC reply (the amplification limit answers
    only that in full).  Then each request carries its own key ID and a MAC under its
    source's cookie."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ntpauto.auth.autokey import mac, session_key
    from ntpauto.autokey.fields import ASSOC, COOK, Field, decode
    from ntpauto.autokey.values import decrypt_cookie, encode_assoc_name, encode_public_key
    from ntpauto.wire.packet import Header, parse
    from ntpauto.wire.timestamps import unix_to_ntp

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server = "127.0.0.1"
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, unix_to_ntp(time.time()))
    cookies = []
    for index in range(sources):
        client = source_address(index)
        keyid = 0x10000001 + index

        def exchange(sock: socket.socket, field: Field, origin: int) -> object:
            data = header._replace(origin=origin).encode() + field.encode()
            data += mac(session_key(client, server, keyid, 0), keyid, data)  # noqa: B023
            sock.sendto(data, (server, port))
            return parse(sock.recv(4096))

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((client, 0))
            sock.settimeout(5)
            assoc = exchange(sock, Field(code=ASSOC, value=encode_assoc_name("bench")), 0)
            reply = exchange(sock, Field(code=COOK, value=encode_public_key(key.public_key())),
                             assoc.header.transmit)
        cookies.append(decrypt_cookie(decode(reply.fields[0].data).value, key))
    base = unix_to_ntp(time.time())
    requests = []
    for i in range(POOL):
        index, keyid = i % sources, 0x20000000 + i
        data = header._replace(transmit=base + (i << 12)).encode()
        requests.append((index, data + mac(session_key(source_address(index), server, keyid,
                                                       cookies[index]), keyid, data)))
    return requests


def nts_requests(directory: str, sources: int) -> list[tuple[int, bytes]]:
    """NTS-protected client requests with cookies sealed under the server's secret (in
    ``directory``, its ``ntsdumpdir``): each from a session whose jar is full, so none
    carries a placeholder (one new cookie per reply)."""
    from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
    from ntpauto.nts.cookies import CookieKeys, load_or_create_secret
    from ntpauto.nts.records import KeResponse
    from ntpauto.nts.session import NtsSession
    from ntpauto.wire.packet import Header
    from ntpauto.wire.timestamps import unix_to_ntp

    sealer = CookieKeys(load_or_create_secret(directory))
    keys = SessionKeys(AEAD_AES_SIV_CMAC_256, os.urandom(32), os.urandom(32))
    cookie = sealer.seal(keys, time.time())
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 0)
    base = unix_to_ntp(time.time())
    requests = []
    for i in range(POOL):
        session = NtsSession("127.0.0.1", 4460)
        session.keyed(KeResponse(keys.aead, (cookie,) * 8), keys, 0.0)
        requests.append((i % sources, session.request(
            header._replace(transmit=base + (i << 12)).encode())))
    return requests


def check_reply(kind: str, data: bytes) -> None:
    """Make sure the server does the work we think it does."""
    if kind == "echo":
        return
    from ntpauto.wire.packet import MODE_SERVER, parse

    packet = parse(data)
    assert packet.header.mode == MODE_SERVER and packet.header.stratum == 1, packet.header
    if kind.endswith("md5"):
        assert packet.keyid == 1 and len(packet.digest) == 16, "reply is not MD5-signed"
    if kind == "ntp-autokey":
        assert packet.keyid > 65535 and len(packet.digest) == 16, "no Autokey MAC"
    if kind == "ntp-nts":
        assert packet.nts and len(packet.fields) == 2, "no NTS reply"


# -- the load generators --------------------------------------------------------------------


def build_loadgen(directory: Path) -> Path | None:
    """``loadgen.c`` compiled into ``directory``; None without a C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    binary = directory / "loadgen"
    result = subprocess.run([compiler, "-O2", "-o", str(binary),
                             str(Path(__file__).with_name("loadgen.c"))],
                            capture_output=True, text=True)
    return binary if result.returncode == 0 else None


def write_pool(path: Path, requests: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as out:
        for index, data in requests:
            out.write(struct.pack("!BH", index, len(data)) + data)


def c_load(binary: Path, port: int, pool: Path, sources: int, window: int, total: int,
           max_seconds: float) -> dict[str, float]:
    line = subprocess.run([str(binary), str(port), str(pool), str(sources), str(window),
                           str(total), str(max_seconds)], capture_output=True, text=True,
                          check=True).stdout.split()
    replies, late, sent = int(line[0]), int(line[1]), int(line[2])
    return {"replies": replies, "late": late, "sent": sent, "seconds": float(line[3]),
            "p50_us": float(line[4]), "p99_us": float(line[5])}


def python_load(port: int, requests: list[tuple[int, bytes]], sources: int, window: int,
                total: int, max_seconds: float) -> dict[str, float]:
    """The same load as ``loadgen.c`` (latency from the send of each pool entry)."""
    socks = []
    selector = selectors.DefaultSelector()
    for index in range(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source_address(index), 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    by_stamp = {data[40:48]: i for i, (_, data) in enumerate(requests)}
    sent_at = [0.0] * len(requests)
    latencies: list[float] = []
    counts = {"sent": 0, "replies": 0, "late": 0, "next": 0}

    def send_next() -> None:
        i = counts["next"]
        counts["next"] = (i + 1) % len(requests)
        index, data = requests[i]
        sent_at[i] = time.perf_counter()
        socks[index % sources].send(data)
        counts["sent"] += 1

    start = time.perf_counter()
    end, deadline, draining, drain_until = start, start + max_seconds, False, 0.0
    for _ in range(window):
        send_next()
    try:
        while True:
            now = time.perf_counter()
            if not draining and (counts["replies"] >= total or now > deadline):
                draining, end, drain_until = True, now, now + 0.1
            if draining and now > drain_until:
                break
            ready = selector.select(0.1)
            if not ready and not draining:
                for _ in range(window):
                    send_next()
                continue
            for key, _ in ready:
                while True:
                    try:
                        data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                    except BlockingIOError:
                        break
                    if draining:
                        counts["late"] += 1
                        continue
                    counts["replies"] += 1
                    i = by_stamp.get(data[24:32])
                    if i is not None:
                        latencies.append(time.perf_counter() - sent_at[i])
                    if counts["sent"] < total + window:
                        send_next()
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    latencies.sort()
    pick = (lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1e6) \
        if latencies else (lambda q: 0.0)
    return {"replies": counts["replies"], "late": counts["late"], "sent": counts["sent"],
            "seconds": end - start, "p50_us": pick(0.5), "p99_us": pick(0.99)}


# -- targets --------------------------------------------------------------------------------


def tree_cpu(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` and its descendants (Linux /proc),
    None elsewhere."""
    try:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return None
    family, total = {pid}, 0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    total = sum(stats[p][1] for p in family if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


class Target:
    """One server process tree, its port and the requests the load generator sends it."""

    def __init__(self, name: str, keys_file: str, args: argparse.Namespace,
                 scratch: Path) -> None:
        self.name = name
        self.keys_file = keys_file
        target, _, variant = name.partition("+")
        kind, _, workers = target.partition("/")
        self.kind = kind
        self.sources = args.sources
        if kind.startswith("chrony"):
            directory = scratch / name.replace("/", "-")
            directory.mkdir()
            self.process, self.port = start_chronyd(directory)
        else:
            count = 0 if workers == "auto" else int(workers or 1)
            self.process, self.port = start_server(kind, count, keys_file,
                                                   python_only=variant == "py",
                                                   wildcard=variant == "any")
        try:
            self.requests = self._requests()
            self.pool = scratch / f"{name.replace('/', '-')}.pool"
            write_pool(self.pool, self.requests)
            self._probe()
        except BaseException:
            self.stop()
            raise

    def _requests(self) -> list[tuple[int, bytes]]:
        if self.kind == "ntp-autokey":
            return autokey_requests(self.port, self.sources)
        if self.kind == "ntp-nts":
            return nts_requests(os.path.dirname(self.keys_file), self.sources)
        return plain_requests(self.sources, md5=self.kind.endswith("md5"))

    def _probe(self) -> None:
        """One request answered as expected (chronyd: once its local reference is up)."""
        deadline = time.monotonic() + 20
        index, data = self.requests[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((source_address(index), 0))
            probe.settimeout(0.5)
            while True:
                probe.sendto(data, ("127.0.0.1", self.port))
                try:
                    check_reply(self.kind, probe.recv(2048))
                    return
                except (TimeoutError, AssertionError):
                    if time.monotonic() > deadline:
                        raise

    def measure(self, args: argparse.Namespace, per_round: int,
                loadgen: Path | None) -> dict[str, float]:
        """One measurement: ``per_round`` replies (or ``--max-seconds``) after a short
        warm-up."""
        def run(total: int, seconds: float) -> dict[str, float]:
            if loadgen is not None:
                return c_load(loadgen, self.port, self.pool, self.sources, args.window,
                              total, seconds)
            return python_load(self.port, self.requests, self.sources, args.window, total,
                               seconds)

        run(min(5000, per_round), 5.0)
        cpu_before = tree_cpu(self.process.pid)
        result = run(per_round, args.max_seconds)
        cpu_after = tree_cpu(self.process.pid)
        result["rate"] = result["replies"] / result["seconds"] if result["seconds"] else 0.0
        answered = result["replies"] + result["late"]
        result["loss"] = max(result["sent"] - answered, 0) / result["sent"] \
            if result["sent"] else 0.0
        result["server_cpu_us"] = None if cpu_before is None or cpu_after is None \
            or not answered else (cpu_after - cpu_before) / answered * 1e6
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def anchor_of(name: str) -> str:
    """The chronyd target a target is compared with."""
    kind = name.partition("/")[0]
    return "chrony" if kind in ("ntp", "chrony", "echo") else "chrony-md5"


def run_rounds(targets: list[Target], args: argparse.Namespace,
               loadgen: Path | None) -> dict[str, dict]:
    """Measure the targets in turn, round after round (rotated), and summarise each over
    the rounds (medians; loss over everything sent)."""
    per_round = max(1, args.requests // args.rounds)
    rounds = []
    for i in range(args.rounds):
        order = targets[i % len(targets):] + targets[:i % len(targets)]
        rounds.append({t.name: t.measure(args, per_round, loadgen) for t in order})
    results: dict[str, dict] = {}
    for target in targets:
        samples = [r[target.name] for r in rounds]
        anchor = anchor_of(target.name)
        ratios = [r[target.name]["rate"] / r[anchor]["rate"]
                  for r in rounds if anchor in r and r[anchor]["rate"]]
        cpu = [s["server_cpu_us"] for s in samples if s["server_cpu_us"] is not None]
        sent = sum(s["sent"] for s in samples)
        answered = sum(s["replies"] + s["late"] for s in samples)
        results[target.name] = {
            "rate": statistics.median(s["rate"] for s in samples),
            "ratio": statistics.median(ratios) if ratios else None,
            "ratios": ratios,
            "loss": max(sent - answered, 0) / sent if sent else 0.0,
            "p50_us": statistics.median(s["p50_us"] for s in samples),
            "p99_us": statistics.median(s["p99_us"] for s in samples),
            "server_cpu_us": statistics.median(cpu) if cpu else None,
            "sent": sent, "answered": answered,
        }
    return results


def goals(results: dict[str, dict]) -> list[tuple[str, bool]]:
    """(goal, met) for the issue-17 goals that the run's targets allow checking."""
    out = []
    md5_auto = results.get("ntp-md5/auto")
    if md5_auto is not None and md5_auto["ratio"] is not None:
        out.append(("ntp-md5/auto >= 1.0x chronyd, loss < 0.1 %",
                    md5_auto["ratio"] >= 1.0 and md5_auto["loss"] < 0.001))
    for name in ("ntp/1", "ntp-md5/1"):
        result = results.get(name)
        if result is not None and result["ratio"] is not None:
            out.append((f"{name} >= 0.75x chronyd", result["ratio"] >= 0.75))
    for name in [n for n in results if n.startswith("ntp-autokey/")]:
        md5 = results.get("ntp-md5/" + name.partition("/")[2])
        if md5 is not None:
            out.append((f"{name} within 10 % of ntp-md5", results[name]["rate"]
                        >= 0.9 * md5["rate"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500000,
                        help="replies to wait for per target, over all rounds "
                             "(default 500000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds, each measuring every target in turn (default 5)")
    parser.add_argument("--window", type=int, default=64,
                        help="requests outstanding (default 64)")
    parser.add_argument("--sources", type=int, default=64,
                        help="client addresses 127.0.0.2... (default 64)")
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="time limit per target and round (default 15)")
    parser.add_argument("--workers", default="1,auto",
                        help="ntpauto's workers to measure (default 1,auto)")
    parser.add_argument("--targets",
                        help="comma-separated targets (default chrony, chrony-md5 and ntp, "
                             "ntp-md5, ntp-autokey, ntp-nts at each --workers)")
    parser.add_argument("--python-load", action="store_true",
                        help="use the Python load generator even with a C compiler")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--serve-workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--serve-any", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.serve_workers, args.keys, args.serve_any)
        return 0
    names = args.targets.split(",") if args.targets else ["chrony", "chrony-md5"] + [
        f"{kind}/{workers}" for workers in args.workers.split(",")
        for kind in ("ntp", "ntp-md5", "ntp-autokey", "ntp-nts")] + ["ntp/1+py", "ntp-md5/1+py"]
    with tempfile.TemporaryDirectory(prefix="ntpauto-bench-") as directory:
        scratch = Path(directory)
        keys_file = scratch / "ntp.keys"
        keys_file.write_text(MD5_KEY)
        loadgen = None if args.python_load else build_loadgen(scratch)
        targets: list[Target] = []
        try:
            for name in names:
                targets.append(Target(name, str(keys_file), args, scratch))
            results = run_rounds(targets, args, loadgen)
        finally:
            for target in targets:
                target.stop()
    met = goals(results)
    if args.json:
        print(json.dumps({"load_generator": "C" if loadgen else "Python", "results": results,
                          "goals": dict(met)}, indent=2))
    else:
        print(f"load generator: {'loadgen.c' if loadgen else 'Python'}; {args.sources} "
              f"sources, window {args.window}, {args.rounds} rounds; cores "
              f"{os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
        print(f"{'target':<18} {'replies/s':>10} {'vs chronyd':>10} {'rounds':>11} "
              f"{'loss':>7} {'p50 us':>7} {'p99 us':>7} {'cpu us':>7}")
        for name, result in results.items():
            ratio = "-" if result["ratio"] is None else f"{result['ratio']:.2f}x"
            spread = "-" if not result["ratios"] else \
                f"{min(result['ratios']):.2f}-{max(result['ratios']):.2f}"
            cpu = "?" if result["server_cpu_us"] is None else f"{result['server_cpu_us']:.2f}"
            print(f"{name:<18} {result['rate']:>10.0f} {ratio:>10} {spread:>11} "
                  f"{result['loss']:>7.3%} {result['p50_us']:>7.0f} {result['p99_us']:>7.0f} "
                  f"{cpu:>7}")
        for goal, ok in met:
            print(f"goal: {goal}: {'ok' if ok else 'MISSED'}")
    return 1 if args.check and not all(ok for _, ok in met) else 0


if __name__ == "__main__":
    sys.exit(main())
