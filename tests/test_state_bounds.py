"""Per-source state is capped: a flood of 10^5 distinct sources (Autokey requests, plain
requests under ``limited``, symmetric active and broadcast packets that mobilise
associations) and of 10^5 distinct certificates leaves memory flat after warm-up
(tracemalloc), and every table stays within its cap."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from ntpauto.auth.autokey import address_octets, mac, session_key
from ntpauto.autokey.cookie import server_cookie
from ntpauto.autokey.fields import ASSOC, Field
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.config import parse_config
from ntpauto.engine import MAX_EPHEMERAL, Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.ntp.restrict import RateLimiter
from ntpauto.pki.cache import CertificateCache
from ntpauto.wire.packet import Header
from ntpauto.wire.timestamps import unix_to_ntp

EPOCH = 1_795_460_000.0
T0 = 1000.0
SERVER = "192.0.2.1"
FLOOD = 100_000
WARMUP = 30_000
GROWTH_CAP = 1_500_000
"""Bytes the traced heap may grow by over the last 70 000 sources (unbounded per-source
state would be tens of megabytes: ~200 octets a source in each table)."""


def alice(vectors: Path) -> HostCredentials:
    return load_host(vectors / "keys" / "tc-rsa-md5" / "alice", host="alice",
                     password="alicepw")


def source(i: int) -> tuple[str, int]:
    return (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 123)


def header(mode: int, transmit: int) -> bytes:
    return Header(0, 4, mode, 2, 6, -20, 0, 0, b"\xc0\0\2\1", 0, 0, 0,
                  0xEEAE_0000_0000_0000 + transmit).encode()


def flood_packets(count: int, start: int = 0) -> Iterator[tuple[bytes, tuple[str, int]]]:
    """One packet from each of ``count`` distinct sources, in four kinds."""
    assoc = Field(code=ASSOC, associd=9, value=b"brenda@alice").encode()
    for i in range(start, start + count):
        src = source(i)
        kind = i % 4
        if kind == 0:  # Autokey ASSOC request with a valid (cookie 0) MAC
            data = header(3, i) + assoc
            keyid = 0x1000_0000 + i
            yield data + mac(session_key(src[0], SERVER, keyid, 0), keyid, data), src
        elif kind == 1:  # plain client request (limited)
            yield header(3, i), src
        elif kind == 2:  # symmetric active: mobilises a passive association
            yield header(1, i), src
        else:  # broadcast: mobilises a broadcast client association
            yield header(5, i), src


def flooded_engine(vectors: Path) -> Engine:
    elapsed = [T0]
    config = parse_config("localclock stratum 1\nrestrict default limited kod\n"
                          "disable auth\nbroadcastclient\n")
    engine = Engine(config, SimulatedClock(lambda: elapsed[0], epoch=EPOCH),
                    autokey=AutokeyNode(alice(vectors)), local_address=SERVER)
    engine.elapsed = elapsed  # type: ignore[attr-defined]
    engine.start(T0)
    engine.sys = attrs.evolve(engine.sys, leap=0, stratum=1, refid=b"LOCL")
    return engine


def run(engine: Engine, count: int, start: int) -> None:
    elapsed = engine.elapsed  # type: ignore[attr-defined]
    local = (SERVER, 123)
    for data, src in flood_packets(count, start):
        elapsed[0] += 0.0001
        engine.receive(data, src, unix_to_ntp(engine.clock.now()), elapsed[0], local)


def fill_process_caches() -> None:
    """Warm the process-wide bounded caches (server cookies, address octets) to their caps,
    whatever the tests before left in them, as a long-running server's would be: growth
    measured afterwards is then per-source state, not a cache filling up."""
    for cache in (server_cookie, address_octets):
        cache.cache_clear()
    for i in range(max(server_cookie.cache_info().maxsize,
                       address_octets.cache_info().maxsize)):
        server_cookie(source(10 * FLOOD + i)[0], SERVER, 1)


def traced(action) -> int:
    """Bytes the traced heap grew by while ``action()`` ran."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    action()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


@pytest.mark.parametrize("flood, warmup, capacity, cap", [
    pytest.param(FLOOD, WARMUP, None, GROWTH_CAP, marks=pytest.mark.slow, id="1e5-sources"),
    (12_000, 4_000, 500, 300_000),
], ids=["1e5-sources", "1.2e4-sources-small-tables"])
def test_flood_of_distinct_sources_leaves_memory_flat(vectors, flood, warmup, capacity, cap):
    """The full flood (10^5 sources, the daemon's caps; ~20 s under tracemalloc, slow) and
    a quick one with small tables (the same code paths, a few seconds)."""
    engine = flooded_engine(vectors)
    if capacity is not None:
        engine.limiter = RateLimiter(capacity=capacity)
        engine.session_keys.capacity = capacity
    real = ("192.0.2.77", 123)
    engine.receive(header(1, 1), real, unix_to_ntp(engine.clock.now()), T0, (SERVER, 123))
    [peer] = [a for a in engine.associations.values() if a.address == real]
    peer.reach = 1  # it answered: a real peer, which the eviction rule keeps
    tracemalloc.start()  # before the warm-up: what it allocates and later frees is traced
    try:
        fill_process_caches()
        run(engine, warmup, 0)
        growth = traced(lambda: run(engine, flood - warmup, warmup))
    finally:
        tracemalloc.stop()
    assert growth < cap, f"{growth} bytes for {flood - warmup} new sources"
    assert len(engine._by_address) <= MAX_EPHEMERAL
    assert peer.associd in engine.associations
    assert engine.counters["evicted"] > flood // 5
    assert len(engine.limiter) == engine.limiter.capacity
    assert len(engine.session_keys._pairs) <= engine.session_keys.capacity
    assert engine.counters["served"] >= flood // 2  # the flood was served, not dropped


def test_association_table_evicts_never_reached_first(vectors):
    """At the cap, a new passive association evicts the oldest one never reached; when
    every ephemeral association is reached, new sources are declined."""
    engine = flooded_engine(vectors)
    local = (SERVER, 123)
    for i in range(MAX_EPHEMERAL):
        engine.receive(header(1, i), source(i), unix_to_ntp(engine.clock.now()), T0, local)
    assert len(engine._by_address) == MAX_EPHEMERAL
    oldest = next(a for a in engine.associations.values() if a.ephemeral)
    engine.receive(header(1, 9999), source(9999), unix_to_ntp(engine.clock.now()), T0, local)
    assert oldest.associd not in engine.associations
    assert len(engine._by_address) == MAX_EPHEMERAL
    for assoc in engine.associations.values():
        assoc.reach = 1
    declined = engine.counters["declined"]
    engine.receive(header(1, 10_000), source(10_000), unix_to_ntp(engine.clock.now()), T0,
                   local)
    assert engine.counters["declined"] == declined + 1
    assert len(engine._by_address) == MAX_EPHEMERAL


def test_flood_of_distinct_certificates_leaves_memory_flat(vectors):
    """10^5 distinct certificates installed (as CERT responses would): the cache keeps its
    cap and never evicts our own; the heap stays flat after warm-up."""
    host = alice(vectors)
    cache = CertificateCache()
    own = cache.install(host.certificate, 1, own=True)
    template = host.certificate

    def install(start: int, count: int) -> None:
        for i in range(start, start + count):
            cert = attrs.evolve(template, subject=f"host{i}@flood", issuer=f"ca{i}@flood",
                                trusted=False)
            cache.install(cert, i)

    tracemalloc.start()
    try:
        install(0, 1000)
        growth = traced(lambda: install(1000, 99_000))
    finally:
        tracemalloc.stop()
    assert growth < 200_000, growth
    assert len(cache) == cache.max_entries
    assert own in list(cache)


def test_host_signature_cache_follows_the_certificate_cache(vectors):
    """Installing certificates re-signs the cache; the signatures kept never outnumber the
    cached certificates."""
    host = alice(vectors)
    now = unix_to_ntp(EPOCH) >> 32
    host.signature_update(now)
    template = host.certificate
    for i in range(3 * host.cache.max_entries):
        cert = attrs.evolve(template, subject=f"host{i}@flood", issuer=f"host{i}@flood",
                            trusted=True, der=template.der + i.to_bytes(4, "big"))
        host.install_certificate(cert, i + 1, now)
        entry = host.cache.find(cert.subject)
        if entry is not None:
            host.certificate_field(entry, 1)
    assert len(host.cache) <= host.cache.max_entries
    assert len(host._certs) <= len(host.cache)
