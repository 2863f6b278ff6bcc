"""A real daemon under a clogging flood on loopback (a script, not a test; issue 7).

One ``twistd -n ntpautokey`` subprocess serves Autokey (GQ-2048 identity, RSA-2048 host
key, generated into a temporary keys directory) on 127.0.0.1 at a high port, with
``restrict default limited kod`` and ``discard average 2``.  This process then runs, for
``--seconds`` (default 60):

* 100 legitimate clients on 127.0.1.1-100, half plain, half MD5 symmetric-key, each polling
  every 4-5 s (inside the ``discard`` limit);
* one Autokey client on 127.0.3.1: ntpauto's own engine (sans-I/O, driven from this loop)
  running the full client dance (TC trail, COOK, AUTO, SIGN, LEAP);
* flooders (``--flooders``, default 400, on 127.0.2.x and 127.0.4.x) sending ``--factor``
  (default 10) times the legitimate packet rate: half malformed packets (random octets,
  truncated headers, broken extension fields), half expensive Autokey requests (COOK with a
  2048-bit key, SIGN of a group member's certificate, CERT, GQ challenges).  The flooders on
  even addresses echo our replies' transmit timestamps (a real-address attacker: it passes
  the amplification limit and meets ``limited`` and the private-key budget), the odd ones
  do not (spoofed sources).

It prints legitimate requests sent and replies received, the datagrams the kernel dropped
at the daemon's socket (its ``kernel_drops`` metric; ``--rcvbuf`` sets the daemon's receive
buffer, 0 the system's default), the p99 reply latency, the
Autokey client's status word and when each of its changes came (the dance's timeline: a
step refused under the flood shows as a gap of one poll), the
private-key operations the daemon did per second (signed COOK/SIGN/GQ responses seen),
bytes in/out per source class, the daemon's RSS before and after and the CPU of the daemon
and of its identity worker process.  Everything is bounded: packet counts by rate x time,
the run by ``--seconds``, the daemon is stopped at the end.  Loopback only.

Run: ``.venv/bin/python benchmarks/flood.py [--seconds 60] [--factor 10] [--rcvbuf BYTES]``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ntpauto.auth.autokey import mac, session_key  # noqa: E402
from ntpauto.auth.keys import KeyStore, parse_keys  # noqa: E402
from ntpauto.autokey.fields import CERT, COOK, GQ, SIGN, Field, decode  # noqa: E402
from ntpauto.wire.packet import Header, MalformedPacket, parse  # noqa: E402
from ntpauto.wire.timestamps import unix_to_ntp  # noqa: E402

SERVER = "127.0.0.1"
GROUP = "flood"
MD5_KEY = "1 MD5 floodbenchsecret\n"
LEGIT = 100
FLOODERS = 400
POLL = (4.0, 5.0)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((SERVER, 0))
        return sock.getsockname()[1]


def kernel_drops(stats_port: int) -> int:
    """The daemon's ``ntpauto_kernel_drops_total`` (its /metrics endpoint)."""
    url = f"http://{SERVER}:{stats_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = (s for family in text_string_to_metric_families(text) for s in family.samples)
    return int(next(s.value for s in samples if s.name == "ntpauto_kernel_drops_total"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The running child processes of ``pid`` (the daemon's identity worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds of the daemon itself and of its children (the identity worker)."""
    worker = 0.0
    for child in children(pid):
        try:
            worker += cpu_seconds(child)
        except OSError:
            pass
    return cpu_seconds(pid), worker


# -- set-up --------------------------------------------------------------------------------


def make_keys(root: Path) -> dict[str, object]:
    """Server (GQ-2048), Autokey client and a flooding group member, all in group flood."""
    from ntpauto.autokey.host import generate_host

    server = generate_host(root / "server", "floodsrv", GROUP, bits=2048, password="srvpw",
                           identity="gq", identity_bits=2048)
    generate_host(root / "client", "floodcli", GROUP, bits=1024, password="clipw",
                  trusted=False)
    mallory = generate_host(root / "mallory", "mallory", GROUP, bits=2048, password="mpw",
                            trusted=False)
    (root / "ntp.keys").write_text(MD5_KEY)
    (root / "ntp.keys").chmod(0o600)
    return {"server": server, "mallory": mallory}


def start_daemon(root: Path, port: int, stats_port: int,
                 rcvbuf: int | None) -> tuple[subprocess.Popen, Path]:
    conf = root / "ntp.conf"
    conf.write_text(
        (f"rcvbuf {rcvbuf}\n" if rcvbuf is not None else "")
        + f"statsaddress {SERVER}:{stats_port}\n" +
        "localclock stratum 1\n"
        f"keysdir {root / 'server'}\n"
        "crypto host floodsrv pw srvpw\n"
        f"keys {root / 'ntp.keys'}\ntrustedkey 1\n"
        "restrict default limited kod nopeer\n"
        "discard average 2 minimum 1\n"
        f"interface listen {SERVER}\nport {port}\n")
    log = root / "twistd.log"
    twistd = Path(sys.executable).with_name("twistd")
    argv = [str(twistd) if twistd.exists() else "twistd", "-n", "--pidfile", "",
            "--logfile", str(log), "ntpautokey", "--config", str(conf)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, cwd=root)
    return process, log


def wait_ready(port: int, seconds: float = 30.0) -> None:
    probe = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 1).encode()
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.250", 0))
        sock.settimeout(0.5)
        while time.monotonic() < deadline:
            sock.sendto(probe, (SERVER, port))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            if parse(data).header.stratum == 1:  # synchronised: Autokey values signed
                return
            time.sleep(0.5)
    raise RuntimeError("the daemon did not start serving")


# -- traffic -------------------------------------------------------------------------------


class Source:
    """One socket bound to a loopback address, with its byte counts."""

    def __init__(self, address: str, kind: str, selector: selectors.BaseSelector) -> None:
        self.address = address
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ, self)
        self.sent_bytes = self.received_bytes = 0
        self.outstanding: dict[bytes, float] = {}
        self.last_transmit = bytes(8)

    def send(self, data: bytes, port: int) -> None:
        try:
            self.sock.sendto(data, (SERVER, port))
        except BlockingIOError:
            return
        self.sent_bytes += len(data)


def request_header(origin: bytes = bytes(8)) -> tuple[bytes, bytes]:
    transmit = unix_to_ntp(time.time()).to_bytes(8, "big")
    head = bytearray(Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 0).encode())
    head[24:32] = origin
    head[40:48] = transmit
    return bytes(head), transmit


def autokey(src: str, f: Field, origin: bytes, rng: random.Random) -> bytes:
    head, _ = request_header(origin)
    data = head + f.encode()
    keyid = rng.randrange(0x10000, 0xFFFFFFFF)
    return data + mac(session_key(src, SERVER, keyid, 0), keyid, data)


def malformed(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 200))
    head, _ = request_header()
    if kind == 1:
        return head[:rng.randrange(1, 48)]
    if kind == 2:  # an extension field whose length runs past the packet
        return head + bytes.fromhex("02020400") + rng.randbytes(rng.randrange(8, 40))
    return bytes([0x27]) + head[1:] + rng.randbytes(rng.randrange(0, 12))  # mode 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (60)")
    parser.add_argument("--factor", type=float, default=10.0,
                        help="flood packets per legitimate packet (10)")
    parser.add_argument("--flooders", type=int, default=FLOODERS,
                        help=f"flooding addresses, at most 1000 ({FLOODERS}): many keep each "
                             "under the per-source limit, so the global budget meets them")
    parser.add_argument("--rcvbuf", type=int, default=None,
                        help="the daemon's rcvbuf in bytes (default: its default; 0: the "
                             "system's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if not 1 <= args.flooders <= 1000:
        parser.error("--flooders must be 1 to 1000")
    rng = random.Random(5)
    root = Path(tempfile.mkdtemp(prefix="ntpauto-flood-"))
    port, stats_port = free_port(), free_port(socket.SOCK_STREAM)
    print(f"keys and config in {root}; daemon on {SERVER}:{port}", flush=True)
    creds = make_keys(root)
    process, log = start_daemon(root, port, stats_port, args.rcvbuf)
    try:
        wait_ready(port)
        time.sleep(1.0)
        rss_before, cpu_before = rss_kib(process.pid), cpu_split(process.pid)
        results = run_load(args, port, root, creds, rng)
        rss_after, cpu_after = rss_kib(process.pid), cpu_split(process.pid)
        time.sleep(1.1)  # the daemon reads its socket's drop count once a second at most
        wait_ready(port)  # a read after that second
        results["kernel_drops"] = kernel_drops(stats_port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    report(results, args, rss_before, rss_after,
           (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def run_load(args: argparse.Namespace, port: int, root: Path, creds: dict,
             rng: random.Random) -> dict:
    from ntpauto.config import parse_config
    from ntpauto.engine import build_engine
    from ntpauto.identity.common import make_challenge
    from ntpauto.ntp.clocks import SystemClock

    selector = selectors.DefaultSelector()
    keys = KeyStore(parse_keys(MD5_KEY), trusted=[1])
    legit = [Source(f"127.0.1.{i + 1}", "plain" if i % 2 else "md5", selector)
             for i in range(LEGIT)]
    flooders = [Source(f"127.0.{2 + 2 * (i // 250)}.{i % 250 + 1}",
                       "echoing" if i % 2 == 0 else "spoofed", selector)
                for i in range(args.flooders)]
    client = Source("127.0.3.1", "autokey", selector)
    # The Autokey client: our engine, driven from this loop.
    config = parse_config(f"keysdir {root / 'client'}\ncrypto host floodcli pw clipw\n"
                          f"server {SERVER} port {port} autokey iburst minpoll 4\n"
                          "interface listen 127.0.3.1\n", str(root / "client.conf"))
    engine = build_engine(config, SystemClock())
    mono = time.monotonic
    pending = engine.start(mono())
    server = creds["server"]
    mallory = creds["mallory"]
    gq_modulus = server.server_scheme(GQ).server.n
    mallory.signature_update(unix_to_ntp(time.time()) >> 32)
    expensive = [mallory.cook_request(0), mallory.sign_request(0),
                 Field(code=CERT, value=server.name.encode())]

    legit_rate = LEGIT / sum(POLL) * 2
    # --factor 0: no flood at all (the baseline to compare latency and the dance with).
    flood_interval = 1.0 / (legit_rate * args.factor) if args.factor > 0 else math.inf
    next_poll = {s: mono() + rng.uniform(0, POLL[1]) for s in legit}
    next_flood = mono() if args.factor > 0 else math.inf
    stats: Counter[str] = Counter()
    latencies: list[float] = []
    signed = 0
    start = mono()
    end = start + args.seconds
    steps: list[tuple[float, int]] = []  # (seconds, status) at every change of the status
    while True:
        now = mono()
        if now >= end:
            break
        for data, address in pending:
            client.send(data, address[1])
        pending = []
        for source, due in next_poll.items():
            if due <= now:
                head, transmit = request_header()
                data = head if source.kind == "plain" else head + keys.sign(1, head)
                source.outstanding[transmit] = now
                source.send(data, port)
                stats["legit_sent"] += 1
                next_poll[source] = now + rng.uniform(*POLL)
        while next_flood <= now:
            next_flood += flood_interval
            flooder = rng.choice(flooders)
            if rng.random() < 0.5:
                flooder.send(malformed(rng), port)
                stats["flood_malformed"] += 1
                continue
            choice = rng.randrange(4)
            f = (Field(code=GQ, value=make_challenge(gq_modulus))
                 if choice == 3 else expensive[choice])
            origin = flooder.last_transmit if flooder.kind == "echoing" else rng.randbytes(8)
            flooder.send(autokey(flooder.address, f, origin, rng), port)
            stats["flood_expensive"] += 1
        wakeup = engine.next_wakeup()
        if wakeup is not None and wakeup <= now:
            pending = engine.fire_timers(now)
            continue
        timeout = min([*next_poll.values(), next_flood, end,
                       wakeup if wakeup is not None else end]) - now
        for key, _ in selector.select(max(0.0, timeout)):
            source: Source = key.data
            while True:
                try:
                    data, address = source.sock.recvfrom(4096)
                except BlockingIOError:
                    break
                received = mono()
                source.received_bytes += len(data)
                if source is client:
                    rx = unix_to_ntp(time.time())
                    pending += engine.receive(data, address, rx, received,
                                              ("127.0.3.1", address[1]))
                    continue
                try:
                    packet = parse(data)
                except MalformedPacket:
                    stats["bad_reply"] += 1
                    continue
                source.last_transmit = data[40:48]
                if source in next_poll:
                    sent = source.outstanding.pop(data[24:32], None)
                    if sent is None:
                        stats["legit_unmatched"] += 1
                    elif packet.header.stratum == 0:
                        stats["legit_kod"] += 1
                    else:
                        stats["legit_received"] += 1
                        latencies.append(received - sent)
                    continue
                for raw in packet.fields[:1]:
                    f = decode(raw.data)
                    if f.error:
                        stats["flood_error_responses"] += 1
                    elif f.short:
                        stats["flood_empty_responses"] += 1
                    else:
                        stats["flood_full_responses"] += 1
                        if f.signature and f.code in (COOK, SIGN, GQ):
                            signed += 1
        [assoc] = engine.associations.values()
        status = assoc.autokey.state.status if assoc.autokey else 0
        if not steps or steps[-1][1] != status:
            steps.append((mono() - start, status))
    # Late replies to the last polls.
    for source in legit:
        stats["legit_unanswered_at_end"] += sum(1 for t in source.outstanding.values()
                                                if t > end - 1.0)
        stats["legit_lost"] += sum(1 for t in source.outstanding.values() if t <= end - 1.0)
    [assoc] = engine.associations.values()
    return {"stats": stats, "latencies": sorted(latencies), "signed": signed,
            "elapsed": mono() - start, "legit": legit, "flooders": flooders,
            "client": client, "steps": steps,
            "client_status": assoc.autokey.state.status,
            "client_counters": engine.counters}


def report(results: dict, args: argparse.Namespace, rss_before: int, rss_after: int,
           cpu: tuple[float, float]) -> None:
    stats = results["stats"]
    elapsed = results["elapsed"]
    lat = results["latencies"]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    def per_source(sources: list[Source]) -> str:
        sent = sum(s.sent_bytes for s in sources) / len(sources)
        received = sum(s.received_bytes for s in sources) / len(sources)
        return f"in {sent:9.0f} B  out {received:9.0f} B  (out/in {received / sent:5.2f})" \
            if sent else "-"

    print(f"\nload: {elapsed:.1f} s, flood factor {args.factor:g}")
    print(f"legitimate requests sent        {stats['legit_sent']}")
    print(f"legitimate replies received     {stats['legit_received']}"
          f"  (KoD {stats['legit_kod']}, lost {stats['legit_lost']}, "
          f"in flight at the end {stats['legit_unanswered_at_end']})")
    print(f"reply latency ms                p50 {pct(0.5):.2f}  p99 {pct(0.99):.2f}  "
          f"max {pct(1.0):.2f}")
    print(f"kernel drops at the daemon      {results['kernel_drops']}")
    print(f"flood packets sent              malformed {stats['flood_malformed']}, "
          f"expensive {stats['flood_expensive']}")
    print(f"flood responses                 full {stats['flood_full_responses']}, "
          f"empty (amplification) {stats['flood_empty_responses']}, "
          f"error {stats['flood_error_responses']} (over budget: no reply)")
    print(f"private-key ops for flooders/s  {results['signed'] / elapsed:.2f}")
    print(f"daemon CPU                      {cpu[0]:.1f} s ({cpu[0] / elapsed * 100:.0f} % of "
          f"one core); identity worker {cpu[1]:.1f} s ({cpu[1] / elapsed * 100:.0f} %)")
    print("bytes per source (in = to the daemon, out = from it)")
    legit = results["legit"]
    print(f"  legitimate plain              {per_source([s for s in legit if s.kind == 'plain'])}")
    print(f"  legitimate md5                {per_source([s for s in legit if s.kind == 'md5'])}")
    print(f"  autokey client                {per_source([results['client']])}")
    flooders = results["flooders"]
    print(f"  flooder, echoing              "
          f"{per_source([s for s in flooders if s.kind == 'echoing'])}")
    print(f"  flooder, spoofed              "
          f"{per_source([s for s in flooders if s.kind == 'spoofed'])}")
    # The dance is done when all the client's protocol flags are up (status bits 8-14).
    dance = next((t for t, status in results["steps"] if status & 0x7F00 == 0x7F00), None)
    print(f"autokey client status           {results['client_status']:#x}"
          f" (all flags at {dance:.1f} s)" if dance is not None else
          f"autokey client status           {results['client_status']:#x} (incomplete)")
    timeline = ", ".join(f"{t:.1f} s {status:#x}" for t, status in results["steps"] if status)
    print(f"autokey client steps            {timeline or 'none'}")
    print(f"daemon RSS                      before {rss_before} KiB, after {rss_after} KiB")


if __name__ == "__main__":
    raise SystemExit(main())
