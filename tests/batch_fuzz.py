"""Random datagrams through the batched path's C core, for tests/test_batch_sanitizers.py
(run there in a child process with the core built under AddressSanitizer and
UndefinedBehaviorSanitizer): ``Core.answer`` on random octets and addresses, ``Core.serve``
on a loopback socket fed by eight client addresses, and the rate limiter's table past its
capacity.  Some datagrams go to a wildcard socket (their destination in ancillary data).
Any memory error or undefined behaviour ends the process with the sanitizer's
report; otherwise it prints ``fuzzed N datagrams``.

    python tests/batch_fuzz.py [ROUNDS] [SEED]
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time

from ntpauto import _batch


def datagram(rng: random.Random) -> bytes:
    """Random octets of the sizes that matter, most with a client-like first octet and some
    with key IDs the core knows."""
    size = rng.choice([0, 1, 12, 47, 48, 49, 67, 68, 71, 72, 73, 100, 1000,
                       rng.randrange(0, 3000)])
    data = bytearray(rng.randbytes(size))
    if size and rng.random() < 0.7:
        data[0] = rng.randrange(4) << 6 | rng.randrange(8) << 3 | rng.choice([3, 3, 3, 1, 6])
    if size >= 52 and rng.random() < 0.5:
        keyid = rng.choice([0, 1, 2, 3, 5, 0x1234_5678, rng.getrandbits(32)])
        data[48:52] = struct.pack("!I", keyid)
    return bytes(data)


def core_under_test(rng: random.Random) -> tuple[_batch.Core, _batch.Limiter]:
    core = _batch.Core(8192, nap=0.0, nap_below=0)
    limiter = _batch.Limiter(8.0, 64.0, 1.0, 50)
    core.set_header(0, 1, bytes(21), 0.0, float("inf"))
    keys = [(1, _batch.MD5, b"k" * 20), (2, _batch.SHA1, b"s" * 20), (3, 0, b"c" * 16)]
    keys += [(keyid, _batch.MD5, rng.randbytes(rng.randrange(0, 80))) for keyid in range(4, 70)]
    core.set_keys(keys)
    core.set_autokey(_batch.MD5, bytes(4))
    limited = _batch.SERVE | _batch.LIMITED | _batch.KOD
    core.set_rules(limited, _batch.SERVE, [(bytes([127, 0, 0, 3]), 32, 0),
                                           (bytes([127, 0, 0, 0]), 30, _batch.SERVE),
                                           (bytes(16), 3, limited)], limiter)
    core.set_generation(3)
    for _ in range(200):
        core.learn_pair(rng.randbytes(4), rng.choice([bytes(4), bytes([127, 0, 0, 1])]),
                        rng.randbytes(4), rng.getrandbits(32),
                        rng.choice([2, 3]), 0, 2**32 - 1)
    return core, limiter


def fuzz(rounds: int, seed: int) -> int:
    """Run the rounds; the number of datagrams sent."""
    rng = random.Random(seed)
    core, limiter = core_under_test(rng)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wildcard:
        server.bind(("127.0.0.1", 0))
        wildcard.bind(("0.0.0.0", 0))  # each datagram's destination in its ancillary data
        wildcard.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_PKTINFO", 8), 1)
        assert core.use_kernel_stamps(server.fileno())
        assert core.use_kernel_stamps(wildcard.fileno())
        targets = [server.getsockname(), ("127.0.0.1", wildcard.getsockname()[1]),
                   ("127.0.0.3", wildcard.getsockname()[1])]
        clients = []
        try:
            for i in range(8):
                client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                clients.append(client)
                client.bind((f"127.0.0.{2 + i}", 0))
                client.setblocking(False)
            for _ in range(rounds):
                for _ in range(rng.randrange(1, 80)):
                    data = datagram(rng)
                    reply = core.answer(data, rng.randbytes(rng.choice([4, 16])),
                                        rng.randrange(0, 3))
                    assert reply is None or isinstance(reply, bytes)
                    try:
                        rng.choice(clients).sendto(data, rng.choice(targets))
                        sent += 1
                    except OSError:
                        pass
                if rng.random() < 0.05:
                    core.set_generation(rng.choice([2, 3]))
                for sock in (server, wildcard):
                    core.serve(sock.fileno(), rng.choice([0, 1, 100, 1 << 20]))
                for client in clients:
                    try:
                        while client.recv(4096):
                            pass
                    except OSError:
                        pass
        finally:
            for client in clients:
                client.close()
    start = time.time()
    for i in range(20 * rounds):
        limiter.check(rng.randbytes(rng.choice([1, 4, 16])), start + i * rng.random() * 0.01)
    assert len(limiter) == 50
    return sent


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int.from_bytes(os.urandom(4), "big")
    print(f"fuzzed {fuzz(rounds, seed)} datagrams (seed {seed})")
