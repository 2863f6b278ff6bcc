"""The server's one reply path (ntpauto.server): its first stage (``Server.answer``, bytes
to bytes) writes the same bytes and keeps the same counters as the full path (parse, then
``Server.serve``/``serve_autokey``), and passes on (None) everything it does not own."""

from __future__ import annotations

import attrs
import pytest

from ntpauto.auth.autokey import mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.host import load_host
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.wire.packet import CRYPTO_NAK, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

CLIENT = ("192.0.2.10", 40000)
SERVER = ("192.0.2.1", 123)
T0 = 1000.0
EPOCH = 1_795_460_000.0  # inside the vectors' certificate validity
KEYS = "1 MD5 fastpathsecret\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n3 MD5 untrusted\n"


def engine_for(text: str = "localclock stratum 1\n", autokey: AutokeyNode | None = None
               ) -> Engine:
    clock = SimulatedClock(lambda: T0, epoch=EPOCH)
    parsed = parse_keys(KEYS)
    engine = Engine(parse_config(text), clock, keys=KeyStore(parsed, [1, 2]), autokey=autokey)
    engine.start(T0)
    return engine


def request(mode: int = 3, version: int = 4, transmit: int = 0xEEAE_0000_1234_5678) -> bytes:
    return Header(0, version, mode, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit).encode()


def both_paths(engine: Engine, data: bytes, source=CLIENT):
    """(first-stage reply, full-path replies, counters each produced) for one datagram."""
    rx = unix_to_ntp(engine.clock.now())
    before = engine.counters.copy()
    fast = engine.answer_fast(data, source, rx, T0, SERVER)
    fast_counts = engine.counters - before
    before = engine.counters.copy()
    full = engine._receive_slow(data, source, rx, T0, SERVER)
    full_counts = engine.counters - before
    return fast, [d.data for d in full], outcomes(fast_counts), outcomes(full_counts)


def outcomes(counts):
    """The counters both paths keep (the full path also counts packets by mode)."""
    return {k: v for k, v in counts.items()
            if k in ("received", "served", "badauth", "restricted", "limited", "kodsent",
                     "kod_withheld")}


def keyed(keyid: int, data: bytes) -> bytes:
    return data + KeyStore(parse_keys(KEYS), [1, 2, 3]).sign(keyid, data)


@pytest.mark.parametrize("data", [
    request(),
    request(version=3),
    request(version=1),
    keyed(1, request()),
    keyed(2, request()),
    keyed(3, request()),            # untrusted key: crypto-NAK
    keyed(1, request())[:-1] + bytes([keyed(1, request())[-1] ^ 1]),  # bad digest: NAK
    request() + (7).to_bytes(4, "big") + b"\1" * 16,  # unknown key: crypto-NAK
    request() + b"\0" * 20,                            # key ID 0: crypto-NAK
], ids=["plain", "v3", "v1", "md5", "sha1", "untrusted", "bad-digest", "unknown-key",
        "keyid-0"])
def test_same_reply_and_counters_as_the_full_path(data):
    engine = engine_for()
    fast, full, fast_counts, full_counts = both_paths(engine, data)
    assert [fast] == full
    assert fast_counts == full_counts
    assert fast_counts["served"] == 1


@pytest.mark.parametrize("data,source,text", [
    (request(mode=1), CLIENT, "localclock stratum 1\n"),                  # not a client
    (request(mode=0, version=1), CLIENT, "localclock stratum 1\n"),       # v1 mode 0
    (request(version=0), CLIENT, "localclock stratum 1\n"),
    (request(version=5), CLIENT, "localclock stratum 1\n"),
    (request() + b"\0" * 2, CLIENT, "localclock stratum 1\n"),            # odd size
    (request() + b"\0" * 4, CLIENT, "localclock stratum 1\n"),            # key ID alone
    (request(), ("192.0.2.10", 0), "localclock stratum 1\n"),             # source port 0
    (request(), CLIENT, "localclock stratum 1\nrestrict default notrust\n"),
    (request() + (70000).to_bytes(4, "big") + b"\1" * 16, CLIENT,          # Autokey key,
     "localclock stratum 1\n"),                                           # no crypto
])
def test_everything_else_takes_the_full_path(data, source, text):
    """The first stage answers nothing it does not own and counts nothing it passes on."""
    engine = engine_for(text)
    rx = unix_to_ntp(engine.clock.now())
    before = engine.counters.copy()
    assert engine.answer_fast(data, source, rx, T0, SERVER) is None
    assert engine.counters == before


@pytest.mark.parametrize("text,data", [
    ("restrict default nomodify nopeer noquery notrap\n", request()),
    ("restrict default nomodify nopeer noquery notrap\n", keyed(1, request())),
    ("restrict default noserve\n", request()),
    ("restrict default ignore\n", keyed(1, request())),
    ("restrict default limited\n", request()),
    ("restrict default limited kod\n", request()),
    ("restrict default limited kod\n", keyed(2, request())),
], ids=["harmless", "harmless-md5", "noserve", "ignore", "limited", "kod", "kod-sha1"])
def test_restrict_flags_in_the_first_stage(text, data):
    """Restrict flags are applied by the first stage as the full path applies them: flags
    that do not bear on serving change nothing, ignore/noserve drop, limited drops or sends
    one RATE kiss (two engines, as each path counts the packets in its rate limiter)."""
    fast_engine = engine_for("localclock stratum 1\n" + text)
    full_engine = engine_for("localclock stratum 1\n" + text)
    rx = unix_to_ntp(fast_engine.clock.now())
    for i in range(4):  # 0.1 s apart: over the minimum interval from the second on
        before = fast_engine.counters.copy()
        fast = fast_engine.answer_fast(data, CLIENT, rx, T0 + 0.1 * i, SERVER)
        fast_counts = outcomes(fast_engine.counters - before)
        before = full_engine.counters.copy()
        full = full_engine._receive_slow(data, CLIENT, rx, T0 + 0.1 * i, SERVER)
        assert fast is not None
        assert ([fast] if fast else []) == [d.data for d in full]
        assert fast_counts == outcomes(full_engine.counters - before)


def test_reply_header_follows_the_system_variables():
    """The cached reply header is rebuilt when the system variables change."""
    engine = engine_for()
    rx = unix_to_ntp(engine.clock.now())
    assert parse(engine.answer_fast(request(), CLIENT, rx, T0, SERVER)).header.stratum == 1
    engine.sys = attrs.evolve(engine.sys, stratum=5, refid=b"\xc0\x00\x02\x07")
    header = parse(engine.answer_fast(request(), CLIENT, rx, T0, SERVER)).header
    assert (header.stratum, header.refid) == (5, b"\xc0\x00\x02\x07")


def test_root_dispersion_grows_after_the_last_update():
    """15 ppm of the time since the last clock update is added to the root dispersion."""
    engine = engine_for()
    rx = unix_to_ntp(engine.clock.now())
    epoch = engine.sys.epoch
    first = parse(engine.answer_fast(request(), CLIENT, rx, epoch, SERVER)).header
    later = parse(engine.answer_fast(request(), CLIENT, rx, epoch + 1000, SERVER)).header
    # Short format: 1/65536 s units.
    assert (later.root_dispersion - first.root_dispersion) / 65536 == pytest.approx(
        0.015, abs=2 / 65536)


def test_cached_header_root_dispersion_is_exact_at_every_time():
    """The header's system octets are packed once per root-dispersion step (about a second
    at 15 ppm), yet every reply carries what the formula gives at its own time, forwards,
    backwards and across steps."""
    engine = engine_for()
    rx = unix_to_ntp(engine.clock.now())
    sys = engine.sys
    times = [sys.epoch + 0.05 * i for i in range(-20, 400)]
    times += [sys.epoch + 7.3, sys.epoch + 2.0, sys.epoch - 1.0, sys.epoch + 1e6]
    for now in times:
        wire = parse(engine.answer_fast(request(), CLIENT, rx, now, SERVER)).header
        expected = sys.root_dispersion + 15e-6 * max(0.0, now - sys.epoch)
        assert wire.root_dispersion == int(expected * 65536 + 0.5), now
    packs = []
    server = engine.server
    original = server._new_base
    server._new_base = lambda now: packs.append(now) or original(now)
    for i in range(1000):  # 10 s of replies, 100 a second
        engine.answer_fast(request(), CLIENT, rx, sys.epoch + 1e6 + 0.01 * i, SERVER)
    assert len(packs) <= 11


def test_unsynchronised_header_root_dispersion_does_not_grow():
    engine = engine_for("")
    assert engine.sys.leap == 3
    rx = unix_to_ntp(engine.clock.now())
    first = parse(engine.answer_fast(request(), CLIENT, rx, T0, SERVER)).header
    later = parse(engine.answer_fast(request(), CLIENT, rx, T0 + 1e5, SERVER)).header
    assert (first.leap, first.root_dispersion) == (3, later.root_dispersion)


@pytest.fixture
def autokey_engine(vectors):
    host = load_host(vectors / "keys" / "tc-rsa-md5" / "alice", host="alice",
                     password="alicepw")
    return engine_for(autokey=AutokeyNode(host))


def autokey_request(engine: Engine, keyid: int = 0x1234_5678, cookie: int | None = None
                    ) -> bytes:
    if cookie is None:
        cookie = engine.autokey.responder.server_cookie(CLIENT[0], SERVER[0],
                                                        engine.crypto_now())
    data = request()
    return data + mac(session_key(CLIENT[0], SERVER[0], keyid, cookie), keyid, data)


def test_autokey_reply_keyed_with_the_server_cookie(autokey_engine):
    """A request under session key (client, server, key ID, cookie) gets a reply MACed with
    (server, client, key ID, cookie); the full path writes the same bytes."""
    engine = autokey_engine
    data = autokey_request(engine)
    fast, full, fast_counts, full_counts = both_paths(engine, data)
    assert [fast] == full and fast_counts == full_counts
    reply = parse(fast)
    cookie = engine.autokey.responder.server_cookie(CLIENT[0], SERVER[0],
                                                    engine.crypto_now())
    key = session_key(SERVER[0], CLIENT[0], 0x1234_5678, cookie)
    assert fast == reply.authenticated_part + mac(key, 0x1234_5678, reply.authenticated_part)


def test_autokey_wrong_cookie_gets_a_crypto_nak(autokey_engine):
    engine = autokey_engine
    fast, full, fast_counts, _ = both_paths(engine, autokey_request(engine, cookie=1))
    assert [fast] == full
    assert fast.endswith(b"\0\0\0\0") and len(fast) == 52
    assert fast_counts == {"received": 1, "badauth": 1}


def test_autokey_address_families_differ(autokey_engine):
    """An IPv6 client on an IPv4 server address has no session key: crypto-NAK, no error."""
    engine = autokey_engine
    data = request() + (0x1234_5678).to_bytes(4, "big") + b"\1" * 16
    rx = unix_to_ntp(engine.clock.now())
    reply = engine.answer_fast(data, ("2001:db8::5", 40000), rx, T0, SERVER)
    assert reply.endswith(b"\0\0\0\0") and engine.counters["badauth"] == 1


def test_autokey_cookie_follows_a_seed_refresh(vectors):
    """The hot path keeps each client's cookie between requests, but never past the seed's
    refresh: the first request after the revoke interval is answered under the new seed's
    cookie (the old cookie now gets a crypto-NAK, the new one a reply)."""
    from ntpauto.autokey.cookie import ServerSeed
    from ntpauto.autokey.responder import Responder

    host = load_host(vectors / "keys" / "tc-rsa-md5" / "alice", host="alice",
                     password="alicepw")
    node = AutokeyNode(host, Responder(host, ServerSeed(revoke=64)))
    header = request()
    stamp = [5_000_000]

    def ask(cookie: int) -> bytes:
        data = header + mac(session_key(CLIENT[0], SERVER[0], 0x1234_5678, cookie),
                            0x1234_5678, header)
        reply, _ = node.serve_plain(data, header, CLIENT[0], SERVER[0], stamp[0])
        return reply

    old = node.responder.server_cookie(CLIENT[0], SERVER[0], stamp[0])
    assert not ask(old).endswith(CRYPTO_NAK)
    stamp[0] += 63
    assert not ask(old).endswith(CRYPTO_NAK)  # same seed: the cached cookie
    stamp[0] += 1
    assert ask(old).endswith(CRYPTO_NAK)  # the seed was redrawn at the deadline
    new = node.responder.server_cookie(CLIENT[0], SERVER[0], stamp[0])
    assert new != old and not ask(new).endswith(CRYPTO_NAK)


def test_autokey_unsynchronised_server_keeps_its_last_cookie(vectors):
    """Crypto time 0 (the server lost synchronisation) reuses the last seed, fast or not."""
    host = load_host(vectors / "keys" / "tc-rsa-md5" / "alice", host="alice",
                     password="alicepw")
    node = AutokeyNode(host)
    header = request()
    cookie = node.responder.server_cookie(CLIENT[0], SERVER[0], 5_000_000)
    data = header + mac(session_key(CLIENT[0], SERVER[0], 7 << 20, cookie), 7 << 20, header)
    for now in (5_000_001, 0, 5_000_002, 0):
        reply, outcome = node.serve_plain(data, header, CLIENT[0], SERVER[0], now)
        assert outcome == "served" and not reply.endswith(CRYPTO_NAK)


# --- the same bytes as before the one reply path ---------------------------------------


def golden_engine(vectors) -> Engine:
    """An Autokey server whose server seed is drawn from a seeded generator."""
    import random

    from ntpauto.autokey.cookie import ServerSeed
    from ntpauto.autokey.responder import Responder

    host = load_host(vectors / "keys" / "tc-rsa-md5" / "alice", host="alice",
                     password="alicepw")
    engine = engine_for(autokey=AutokeyNode(host, Responder(host, ServerSeed(
        rng=random.Random(7)))))
    host.signature_update(engine.crypto_now())
    return engine


def golden_request(engine: Engine, name: str) -> bytes:
    from ntpauto.autokey.fields import ASSOC, LEAP, NULL, Field

    def with_field(f: Field) -> bytes:
        data = request() + f.encode()
        return data + mac(session_key(CLIENT[0], SERVER[0], 0x1234_5678, 0), 0x1234_5678,
                          data)

    return {
        "plain": lambda: request(), "v1": lambda: request(mode=0, version=1),
        "md5": lambda: keyed(1, request()), "sha1": lambda: keyed(2, request()),
        "bad-md5": lambda: keyed(1, request())[:-1] + b"\0",
        "autokey": lambda: autokey_request(engine),
        "autokey-nak": lambda: autokey_request(engine, cookie=1),
        "leap": lambda: with_field(Field.short_form(LEAP, 3)),
        "assoc": lambda: with_field(Field(code=ASSOC, associd=3, value=b"bob@alice")),
        "null": lambda: with_field(Field.short_form(NULL, 3)),
    }[name]()


GOLDEN_HEADER = ("0106ec00000000000001484c4f434ceeaf0e0800000000eeae000012345678eeaf0e0800"
                 "000000eeaf0e0800000000")
TAGGED_HEADER = GOLDEN_HEADER[:-4] + "098d"
"""Autokey replies carry the echo tag in the low 12 bits of their transmit timestamp
(ntpauto.autokey.amplification); everything else in their header is as before."""
GOLDEN = {
    "plain": "24" + GOLDEN_HEADER,
    "v1": "0c" + GOLDEN_HEADER,
    "md5": "24" + GOLDEN_HEADER + "00000001b2efbefde0f4979c18e92b2927e0f81d",
    "sha1": "24" + GOLDEN_HEADER + "00000002778caa535ae4491fb05d4ac266a78d26c1836c14",
    "bad-md5": "24" + GOLDEN_HEADER + "00000000",
    "autokey": "24" + TAGGED_HEADER + "1234567868453ca7975d24d05367966bf3b3ae1d",
    "autokey-nak": "24" + TAGGED_HEADER + "00000000",
    "leap": "24" + TAGGED_HEADER
    + "82050008000000031234567895a10ce0ee98670c175f3bba13ceec1e",
    "assoc": "24" + TAGGED_HEADER + "8201002400000003eeaf0e08000800030000000b616c69636540"
    "616c6963650000000000123456783aadee79b75560a11d8d5c25802d73d2",
    "null": "24" + TAGGED_HEADER
    + "c20000080000000312345678d4974cc40da6675ef9651297fea53279",
}
"""Replies of the server at commit 30abfc9 (before the one reply path) to
:func:`golden_request`, as hex; the Autokey ones with the echo tag since (their MACs cover
the tagged header)."""


@pytest.mark.parametrize("name", list(GOLDEN))
def test_replies_byte_identical_to_before(vectors, name):
    engine = golden_engine(vectors)
    data = golden_request(engine, name)
    [reply] = engine.receive(data, CLIENT, unix_to_ntp(engine.clock.now()), T0, SERVER)
    assert reply.data.hex() == GOLDEN[name]
