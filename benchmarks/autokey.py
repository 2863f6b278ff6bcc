"""Throughput of the Autokey session-key primitives (a script, not a test).

Run: ``.venv/bin/python benchmarks/autokey.py [seconds-per-case]``.  Each case is timed with
``time.perf_counter`` loops in one process; the hashlib MD5 rows are the floor that the
pure-Python layers above them are compared with, and the last row the MD5 ntpauto uses
(CPython's built-in, faster than hashlib's OpenSSL one at these sizes).  RFC 5906
sections 4-6, interop.md 3-4.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ntpauto.auth.autokey import (  # noqa: E402
    KeyList,
    autokey_test,
    session_key,
    sign_packet,
    verify_packet,
)
from ntpauto.auth.digest import md5 as digest_md5  # noqa: E402
from ntpauto.autokey.cookie import server_cookie  # noqa: E402
from ntpauto.wire.packet import Header, parse  # noqa: E402

SRC, DST = "192.0.2.1", "192.0.2.2"
COOKIE = 0x4B1B440E


def measure(func: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run ``func`` in batches until ``seconds`` have elapsed; return (calls, elapsed)."""
    batch = 1
    while True:  # calibrate a batch that takes ~1/20 of the budget
        start = time.perf_counter()
        for _ in range(batch):
            func()
        if time.perf_counter() - start > seconds / 20 or batch >= 1 << 20:
            break
        batch *= 2
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            func()
        calls += batch
    return calls, elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    rng = random.Random(1)

    header = Header(0, 4, 1, 2, 3, -20, 0, 0, b"LOCL", 0, 0, 0, 0x1234_5678_9ABC_DEF0).encode()
    keylist = KeyList.generate(SRC, DST, COOKIE, now=4_000_000_000, poll=3, rng=rng)
    keyid = keylist.keys[-1]
    wire = sign_packet(header, SRC, DST, keyid, COOKIE)
    packet = parse(wire)
    block16 = bytes(16)
    key = session_key(SRC, DST, keyid, COOKIE)

    def gen_keylist() -> object:
        return KeyList.generate(SRC, DST, COOKIE, now=4_000_000_000, poll=3, rng=rng)

    def one_autokey_test() -> object:
        return autokey_test(SRC, DST, keyid, COOKIE, pkeyid=keylist.final,
                            final=keylist.final, seq=99)

    def sign() -> object:
        return sign_packet(header, SRC, DST, keyid, COOKIE)

    def verify() -> object:
        return verify_packet(packet, SRC, DST, COOKIE)

    def parse_and_verify() -> object:
        return verify_packet(parse(wire), SRC, DST, COOKIE)

    def cookie() -> object:
        return server_cookie(SRC, DST, 0x5EED5EED)

    def md5_block() -> object:
        return hashlib.md5(block16).digest()

    def md5_mac() -> object:
        return hashlib.md5(key + header).digest()

    def builtin_md5_mac() -> object:
        return digest_md5(key + header).digest()

    cases: list[tuple[str, Callable[[], object], int]] = [
        ("key list generation (100 keys)", gen_keylist, 100),
        ("autokey test (1 hash, per packet)", one_autokey_test, 1),
        ("MAC sign, 48-octet packet", sign, 2),
        ("MAC verify, parsed packet", verify, 2),
        ("parse + MAC verify, 68 octets", parse_and_verify, 2),
        ("server cookie", cookie, 1),
        ("floor: hashlib MD5, 16 octets", md5_block, 1),
        ("floor: hashlib MD5, 16+48 octets", md5_mac, 1),
        ("ntpauto's MD5 (built-in), 16+48", builtin_md5_mac, 1),
    ]
    cases += signature_cases()
    print(f"{'case':<36} {'ops/s':>12} {'us/op':>9} {'MD5s/op':>8}")
    print("-" * 68)
    for name, func, md5s in cases:
        calls, elapsed = measure(func, seconds)
        print(f"{name:<36} {calls / elapsed:>12,.0f} {1e6 * elapsed / calls:>9.2f} {md5s:>8}")


def signature_cases() -> list[tuple[str, Callable[[], object], int]]:
    """Sign and verify of a 64-octet signed value (an AUTO response's octets) per profile, at
    1024 bits (cryptography generates no smaller keys) and at our default 2048 bits."""
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    from ntpauto.pki.profiles import BUILTIN_PROFILES

    data = bytes(range(64))
    keys = {("RSA", 1024): rsa.generate_private_key(public_exponent=65537, key_size=1024),
            ("RSA", 2048): rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ("DSA", 1024): dsa.generate_private_key(key_size=1024)}
    cases: list[tuple[str, Callable[[], object], int]] = []
    for profile in BUILTIN_PROFILES:
        for (key_type, bits), key in keys.items():
            if key_type != profile.key_type:
                continue
            signature = profile.sign(key, data)
            public = key.public_key()

            def sign(profile=profile, key=key) -> object:
                return profile.sign(key, data)

            def verify(profile=profile, public=public, signature=signature) -> object:
                return profile.verify(public, signature, data)

            cases.append((f"sign {profile.name} {bits}", sign, 0))
            cases.append((f"verify {profile.name} {bits}", verify, 0))
    return cases


if __name__ == "__main__":
    main()
