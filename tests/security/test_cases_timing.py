"""CASES.md 64: the MAC compare runs in constant time (CVE-2016-1550).

The statistic: calls are timed in batches, the batches of the two input classes
interleaved (in random order) so that load from other processes hits both alike, and the
classes compared by the median of their batch times (robust to the outliers a busy 2-core
machine produces).  The same detector must flag deliberately non-constant-time compares, so
the test can fail."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from ntpauto.auth.digest import digests_equal

SAMPLES = 100_000
"""Calls per input class."""
BATCH = 100
TOLERANCE = 0.10
"""Largest relative difference of the medians still called indistinguishable."""


def relative_gap(compare: Callable[[bytes, bytes], bool], secret: bytes, early: bytes,
                 late: bytes, samples: int = SAMPLES, seed: int = 1) -> float:
    """|median(early) - median(late)| / min(...) over interleaved batches of ``BATCH``."""
    rng = random.Random(seed)
    clock = time.perf_counter_ns
    times: dict[int, list[int]] = {0: [], 1: []}
    inputs = (early, late)
    for _ in range(samples // BATCH):
        order = (0, 1) if rng.random() < 0.5 else (1, 0)
        for which in order:
            other = inputs[which]
            start = clock()
            for _ in range(BATCH):
                compare(secret, other)
            times[which].append(clock() - start)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    return abs(a - b) / min(a, b)


def early_exit_loop(a: bytes, b: bytes) -> bool:
    """A deliberately leaky compare: stops at the first difference."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x != y:
            return False
    return True


def variants(size: int, matching: int) -> tuple[bytes, bytes, bytes]:
    """A secret, a guess matching none of its leading octets, one matching ``matching``."""
    rng = random.Random(size)
    secret = bytes(rng.randrange(256) for _ in range(size))
    none = bytes([secret[0] ^ 0xFF]) + secret[1:]
    many = secret[:matching] + bytes([secret[matching] ^ 0xFF]) + secret[matching + 1:]
    return secret, none, many


def test_case_64_mac_compare_is_constant_time():
    """64. MAC compare → constant time (unit test: timing of 0 vs 15 matching bytes is
    indistinguishable at 10^5 samples) (CVE-2016-1550.).  16-octet digests (MD5/CMAC) and
    20-octet (SHA-1) with the compare the MAC checks use; and the same detector does flag
    an early-exit loop on the digests and a naive ``==`` on long inputs."""
    for size in (16, 20):
        secret, none, fifteen = variants(size, 15)
        assert not digests_equal(secret, none) and not digests_equal(secret, fifteen)
        gap = relative_gap(digests_equal, secret, none, fifteen)
        assert gap < TOLERANCE, f"{size}-octet digests: {gap:.1%} apart"
    # The detector can fail: a Python loop with early exit, on the same digests ...
    secret, none, fifteen = variants(16, 15)
    assert relative_gap(early_exit_loop, secret, none, fifteen) > 3 * TOLERANCE
    # ... and a naive == (memcmp) on long inputs, where the constant-time compare of the
    # same inputs stays indistinguishable.
    secret, none, last = variants(16384, 16383)
    assert relative_gap(lambda x, y: x == y, secret, none, last, samples=20_000) \
        > 3 * TOLERANCE
    assert relative_gap(digests_equal, secret, none, last, samples=20_000) < TOLERANCE
