"""The batched server path (ntpauto.batch, ntpauto/_batch.c): the C core's digests are
hashlib's; its replies are the Python server's (``Server.answer``) byte for byte under a fixed
clock; everything it was not told enough to answer goes back to Python; on a real socket it
answers whole bursts, hands back the rest unchanged and counts what it did."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as global_reactor

from ntpauto import batch
from ntpauto.auth.autokey import address_octets, mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.amplification import tagged
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.batch import BatchPath
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock, SystemClock
from ntpauto.ntp.restrict import RateLimiter
from ntpauto.protocol import NTPDatagramProtocol, NTPPort, listen_udp
from ntpauto.udpsocket import Destinations
from ntpauto.wire.packet import CRYPTO_NAK, Header, parse
from ntpauto.wire.timestamps import NTP_UNIX_OFFSET
from tests.conftest import REQUIRE_ALL
from tests.test_ntpport import close
from tests.test_udpsocket import has_ipv6_loopback

T = 1_795_460_000.123_456_7
"""The fixed Unix time of both servers (inside the vectors' certificate validity)."""
ERA_1 = 2**32 - NTP_UNIX_OFFSET
"""2036-02-07 06:28:16 UTC (Unix seconds), where NTP era 1 begins."""


def ntp_at(at: float) -> int:
    """The receive timestamp the Python path stamps at Unix time ``at``."""
    return int((at + NTP_UNIX_OFFSET) * 2**32) & (2**64 - 1)


RX = ntp_at(T)
SERVER = ("192.0.2.1", 123)
CLIENT = ("192.0.2.10", 40000)
PRIMER = ("192.0.2.99", 40001)
"""A source no restrict rule flags, whose plain request primes each core."""
LOOPBACK = "127.0.0.1"
SYNCED = "localclock stratum 1\n"
UNSYNCED = "restrict default\n"
MD5_SECRET = b"fastpathsecret"
SHA1_SECRET = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
KEYS = (f"1 MD5 {MD5_SECRET.decode()}\n2 SHA1 {SHA1_SECRET.hex()}\n3 MD5 untrusted\n"
        "4 AES128CMAC 000102030405060708090a0b0c0d0e0f\n")
TRUSTED = (1, 2, 4)
AUTOKEY_ID = 0x1234_5678


def require_core():
    """The C core, or a skip where it is not built (a failure under NTPAUTO_REQUIRE_ALL=1,
    see conftest.py)."""
    return pytest.importorskip("ntpauto._batch", reason="ntpauto._batch is not built")


# -- building servers -------------------------------------------------------------------------


class Protocol:
    """What a :class:`BatchPath` made by hand needs of its NTPDatagramProtocol: the engine
    and the address its socket is bound to."""

    def __init__(self, engine: Engine, local: tuple[str, int]) -> None:
        self.engine = engine
        self._local_address = local


def make_engine(text: str = SYNCED, *, autokey: AutokeyNode | None = None,
                keys: str = KEYS, trusted: tuple[int, ...] = TRUSTED, at: float = T) -> Engine:
    """A started engine whose clock reads ``at`` (Unix seconds), as does its engine time."""
    parsed = parse_keys(keys)
    engine = Engine(parse_config(text), SimulatedClock(lambda: at, epoch=0.0),
                    keys=KeyStore(parsed, trusted), autokey=autokey)
    engine.start(at)
    return engine


def make_path(engine: Engine, local: tuple[str, int] = SERVER, size: int = 8192,
              primer: tuple[str, int] | None = PRIMER) -> BatchPath:
    """A batched path over ``engine`` for a socket bound to ``local``, its clock fixed at
    the engine's time.  With ``primer``, its core has answered that source's plain request
    as Python did: it has a header, so what it leaves to Python later it leaves for a reason
    of its own."""
    require_core()
    path = BatchPath(Protocol(engine, local), size)
    path.core.fix_clock(engine.clock.now())
    if primer is not None:
        assert_same(path, request(), primer)
    return path


@pytest.fixture(scope="module")
def hosts(vectors) -> dict[str, HostCredentials]:
    """alice's Autokey credentials, with MD5 and with SHA1 session keys."""
    folder = vectors / "keys" / "tc-rsa-md5" / "alice"
    return {digest: load_host(folder, host="alice", password="alicepw", digest=digest)
            for digest in ("md5", "sha1")}


def autokey_engine(host: HostCredentials, text: str = SYNCED) -> Engine:
    return make_engine(text, autokey=AutokeyNode(host))


# -- requests -----------------------------------------------------------------------------------


def request(*, version: int = 4, mode: int = 3, poll: int = 6,
            transmit: int = 0xEEAE_0000_1234_5678) -> bytes:
    """A 48-octet request header."""
    return Header(0, version, mode, 0, poll, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                  transmit).encode()


def keyed(keyid: int, algorithm: str, secret: bytes, data: bytes | None = None) -> bytes:
    """``data`` under a symmetric key, its MAC computed here with hashlib."""
    data = request() if data is None else data
    return data + keyid.to_bytes(4, "big") + hashlib.new(algorithm, secret + data).digest()


def autokey_request(engine: Engine, client: str = CLIENT[0], *, cookie: int | None = None,
                    data: bytes | None = None, server: str = SERVER[0]) -> bytes:
    """``data`` under the session key (client, server, key ID, server cookie)."""
    digest = engine.autokey.digest
    if cookie is None:
        cookie = engine.autokey.responder.server_cookie(client, server, RX >> 32)
    data = request() if data is None else data
    return data + mac(session_key(client, server, AUTOKEY_ID, cookie, digest), AUTOKEY_ID,
                      data, digest)


def flipped(data: bytes) -> bytes:
    """``data`` with its last octet changed (a wrong MAC)."""
    return data[:-1] + bytes([data[-1] ^ 1])


# -- the two answers ----------------------------------------------------------------------------


def python_answer(engine: Engine, data: bytes, source: tuple[str, int],
                  local: tuple[str, int] = SERVER) -> bytes | None:
    """What the Python server's first stage answers at its engine's (fixed) time."""
    at = engine.clock.now()
    return engine.server.answer(data, source, ntp_at(at), at, local)


def core_answer(path: BatchPath, data: bytes, source: tuple[str, int]) -> bytes | None:
    return path.core.answer(data, address_octets(source[0]), source[1])


def both(path: BatchPath, data: bytes, source: tuple[str, int] = CLIENT
         ) -> tuple[bytes | None, bytes | None]:
    """Python's answer, then the core's once told what Python decided (sync and learn), as
    the port does around each read."""
    expected = python_answer(path.engine, data, source, path.protocol._local_address)
    path.sync()
    path.learn([(data, source)])
    return expected, core_answer(path, data, source)


def assert_same(path: BatchPath, data: bytes, source: tuple[str, int] = CLIENT) -> bytes:
    expected, got = both(path, data, source)
    assert expected is not None and got == expected
    return got


def assert_left(path: BatchPath, data: bytes, source: tuple[str, int] = CLIENT) -> None:
    """The core hands ``data`` to Python, even after learning from Python's answer."""
    _, got = both(path, data, source)
    assert got is None


# -- 1. digests ---------------------------------------------------------------------------------


def test_digests_are_hashlibs():
    """MD5 and SHA1 of key || message for every split around the block boundaries."""
    core = require_core()
    rng = random.Random(5)
    for kind, name in ((core.MD5, "md5"), (core.SHA1, "sha1")):
        for key_length in range(65):
            key = rng.randbytes(key_length)
            for length in range(201):
                message = rng.randbytes(length)
                assert core.digest(kind, key, message) == \
                    hashlib.new(name, key + message).digest(), (name, key_length, length)


def test_digest_of_another_kind_is_refused():
    core = require_core()
    with pytest.raises(ValueError):
        core.digest(3, b"", b"")


# -- 2. the same bytes as the Python server -----------------------------------------------------


def test_plain_requests_every_version_and_poll():
    path = make_path(make_engine())
    for version in (1, 2, 3, 4):
        for poll in range(-128, 128):
            reply = assert_same(path, request(version=version, poll=poll, transmit=poll + 200))
            assert reply[0] & 0x38 == version << 3 and reply[2] == poll & 0xFF


def test_plain_requests_of_an_unsynchronised_server():
    path = make_path(make_engine(UNSYNCED))
    reply = parse(assert_same(path, request())).header
    assert (reply.leap, reply.stratum, reply.refid) == (3, 0, b"INIT")


@pytest.mark.parametrize("data, nak", [
    (keyed(1, "md5", MD5_SECRET), False),
    (keyed(2, "sha1", SHA1_SECRET), False),
    (flipped(keyed(1, "md5", MD5_SECRET)), True),
    (flipped(keyed(2, "sha1", SHA1_SECRET)), True),
    (keyed(7, "md5", MD5_SECRET), True),                       # unknown key ID
    (keyed(3, "md5", b"untrusted"), True),                     # known, not trusted
    (request() + bytes(20), True),                             # key ID 0
    (keyed(1, "md5", MD5_SECRET) + bytes(4), True),            # MD5 key, 72 octets
    (keyed(2, "sha1", SHA1_SECRET)[:68], True),                # SHA1 key, 68 octets
], ids=["md5", "sha1", "md5-wrong", "sha1-wrong", "unknown", "untrusted", "keyid-0",
        "md5-72", "sha1-68"])
def test_symmetric_key_requests(data, nak):
    reply = assert_same(make_path(make_engine()), data)
    if nak:
        assert reply == reply[:48] + CRYPTO_NAK
    else:
        assert reply[48:52] == data[48:52] and len(reply) == len(data)


def test_symmetric_key_replies_verify():
    reply = assert_same(make_path(make_engine()), keyed(2, "sha1", SHA1_SECRET))
    assert reply[52:] == hashlib.sha1(SHA1_SECRET + reply[:48]).digest()


def test_an_aes_cmac_key_stays_in_python():
    """Python answers it under its key; the core has no CMAC and leaves it."""
    data = request() + KeyStore(parse_keys(KEYS), TRUSTED).sign(4, request())
    expected, got = both(make_path(make_engine()), data)
    assert expected is not None and not expected.endswith(CRYPTO_NAK) and got is None


@pytest.mark.parametrize("at", [ERA_1 - 0.25, ERA_1, ERA_1 + 1000.123_456_7])
def test_timestamps_across_the_ntp_era_rollover(at):
    """From 2036 the timestamps wrap as Python's do (the core once wrote zeros there)."""
    path = make_path(make_engine(at=at))
    reply = assert_same(path, keyed(1, "md5", MD5_SECRET))
    assert reply[32:40] == ntp_at(at).to_bytes(8, "big")


def test_more_trusted_keys_than_the_core_holds_leave_keyed_requests_to_python():
    count = require_core().MAX_KEYS + 1
    keys = "".join(f"{n} MD5 secret{n}\n" for n in range(1, count + 1))
    path = make_path(make_engine(keys=keys, trusted=tuple(range(1, count + 1))))
    assert_left(path, keyed(1, "md5", b"secret1"))


@pytest.mark.parametrize("digest", ["md5", "sha1"])
@pytest.mark.parametrize("server, client", [(SERVER, CLIENT),
                                            (("2001:db8::1", 123), ("2001:db8::5", 40000))],
                         ids=["ipv4", "ipv6"])
def test_autokey_session_key_requests(hosts, digest, server, client):
    """Right MAC: the reply under the server cookie, its transmit timestamp tagged with the
    client's echo key; wrong MAC or a digest of the other length: the crypto-NAK, tagged
    too."""
    engine = autokey_engine(hosts[digest])
    path = make_path(engine, server, primer=client)
    sessions = engine.session_keys
    data = autokey_request(engine, client[0], server=server[0])
    good = assert_same(path, data, client)
    assert len(good) == len(data) and good[48:52] == data[48:52]
    other_length = data[:68] if len(data) == 72 else data + bytes(4)
    naks = [assert_same(path, wrong, client) for wrong in (flipped(data), other_length)]
    assert all(nak == good[:48] + CRYPTO_NAK for nak in naks)
    echo = sessions.echo_key(client[0], server[0], RX >> 32)
    assert good[40:48] == tagged(RX, echo).to_bytes(8, "big")
    assert sessions.echoed(client[0], server[0], good[40:48], RX, 6)


# -- 3. what goes to Python ---------------------------------------------------------------------


def test_nothing_is_answered_before_the_python_server_made_a_header():
    path = make_path(make_engine(), primer=None)
    path.sync()
    assert core_answer(path, request(), CLIENT) is None
    assert_same(path, request())
    path.engine.server.invalidate()  # the system variables changed
    path.sync()
    assert core_answer(path, request(), CLIENT) is None


def test_nothing_is_answered_outside_the_headers_time():
    path = make_path(make_engine())
    _, _, _, valid_from, valid_until = path.engine.server.cached_header
    assert math.isfinite(valid_until)
    for outside in (math.nextafter(valid_from, -math.inf), valid_until):
        path.core.fix_clock(outside)
        assert core_answer(path, request(), CLIENT) is None


@pytest.mark.parametrize("data, source", [
    *[pytest.param(request(mode=mode), CLIENT, id=f"mode-{mode}") for mode in (0, 1, 2, 4, 5,
                                                                                6, 7)],
    *[pytest.param(request(version=version), CLIENT, id=f"version-{version}")
      for version in (0, 5, 6, 7)],
    pytest.param(request(mode=0, version=1), CLIENT, id="ntpv1-mode-0"),
    pytest.param(request(), (CLIENT[0], 0), id="port-0"),
    *[pytest.param(request() + bytes(size - 48), CLIENT, id=f"size-{size}")
      for size in (49, 52, 64, 67, 69, 71, 73, 120)],
    pytest.param(request()[:47], CLIENT, id="size-47"),
    pytest.param(b"", CLIENT, id="empty"),
])
def test_what_python_answers_alone(data, source):
    assert_left(make_path(make_engine()), data, source)


@st.composite
def datagrams(draw) -> bytes:
    """Random octets, mostly shaped like the requests the core answers: a client request's
    size, first octet (any leap, any version) and key ID."""
    size = draw(st.one_of(st.sampled_from([48, 68, 72]), st.integers(0, 200)))
    data = bytearray(draw(st.binary(min_size=size, max_size=size)))
    if size and draw(st.integers(0, 3)):
        data[0] = draw(st.integers(0, 3)) << 6 | draw(st.integers(0, 7)) << 3 | 3
    if size >= 52 and draw(st.integers(0, 3)):
        word = draw(st.sampled_from([1, 2, 3, 4, 7, 0, AUTOKEY_ID, 0xFFFF, 0x10000]))
        data[48:52] = word.to_bytes(4, "big")
    return bytes(data)


SOURCES = st.sampled_from([CLIENT, CLIENT, CLIENT, (CLIENT[0], 0), ("192.0.2.77", 9),
                           ("2001:db8::5", 123)])


@pytest.fixture(scope="module")
def fuzzed(hosts) -> BatchPath:
    """An Autokey server with symmetric keys whose core has learned CLIENT."""
    engine = autokey_engine(hosts["md5"])
    path = make_path(engine, primer=CLIENT)
    assert_same(path, autokey_request(engine))
    return path


@settings(max_examples=400, deadline=None)
@given(data=datagrams(), source=SOURCES)
def test_random_datagrams(fuzzed, data, source):
    """The core never fails; what Python leaves alone it leaves alone, and what it answers
    it answers as Python does."""
    got = core_answer(fuzzed, data, source)
    expected = python_answer(fuzzed.engine, data, source)
    if expected is None:
        assert got is None
    if got is not None:
        assert got == expected


@pytest.mark.parametrize("flags", ["notrust", "noserve", "ignore", "notrust limited kod"])
def test_sources_the_restrict_list_flags_stay_in_python(flags):
    engine = make_engine(f"{SYNCED}restrict default {flags}\n"
                         f"restrict {PRIMER[0]} mask 255.255.255.255\n")
    assert_left(make_path(engine), request())


def rate_limited_server(flags: str) -> tuple[Engine, list[float]]:
    """An unsynchronised server (its header never expires) with ``restrict default flags``,
    its clock reading the time in the list returned (set it, then ask)."""
    now = [T]
    engine = Engine(parse_config(f"restrict default {flags}\n"
                                 f"restrict {PRIMER[0]} mask 255.255.255.255\n"),
                    SimulatedClock(lambda: now[0], epoch=0.0),
                    keys=KeyStore(parse_keys(KEYS), TRUSTED))
    engine.start(T)
    return engine, now


RATE_STEPS = [0.0, 0.3, 0.6, 1.9, 2.0, 2.2, 9.0, 17.5, 18.0, 40.0, 40.4, 41.0, 90.0, 91.5]
"""Seconds after T of a client's requests: too close together, a burst, quiet spells."""


@pytest.mark.parametrize("flags", ["limited", "limited kod", "limited kod nomodify noquery"])
@pytest.mark.parametrize("keyed_request", [False, True])
def test_limited_sources_are_limited_as_python_limits_them(flags, keyed_request):
    """A ``limited`` source is answered by the core with the engine's rate limiter: the
    same replies, RATE kisses and silences as the Python server gives the same requests at
    the same times (the counters: test_a_limited_burst_is_counted_as_python_counts_it)."""
    require_core()
    data = keyed(1, "md5", MD5_SECRET) if keyed_request else request()
    python, python_now = rate_limited_server(flags)
    batched, batched_now = rate_limited_server(flags)
    path = make_path(batched)
    outcomes = []
    for step, after in enumerate(RATE_STEPS):
        at = python_now[0] = batched_now[0] = T + after
        path.core.fix_clock(at)
        expected = python.server.answer(data, CLIENT, ntp_at(at), at, SERVER)
        if step == 0:  # the first request from the client goes to Python and is learned
            assert batched.server.answer(data, CLIENT, ntp_at(at), at, SERVER) == expected
            path.sync()
            path.learn([(data, CLIENT)])
            continue
        got = core_answer(path, data, CLIENT)
        assert got == expected, (step, after)
        outcomes.append(b"none" if not got else b"RATE" if got[1] == 0 and got[12:16] == b"RATE"
                        else b"reply")
    assert {b"reply", b"none"} <= set(outcomes)
    assert (b"RATE" in outcomes) == ("kod" in flags)


def test_a_python_rate_limiter_keeps_limited_sources_in_python():
    require_core()
    engine, _ = rate_limited_server("limited kod")
    engine.limiter = RateLimiter(native=False)
    assert_left(make_path(engine), request())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 3)), min_size=1, max_size=80),
       st.integers(1, 4), st.integers(0, 2), st.integers(1, 6))
def test_the_c_rate_limiter_is_the_python_one(packets, capacity, minimum, average):
    """Verdicts and table size, packet for packet, evictions included."""
    require_core()
    native = RateLimiter(average, minimum, capacity, native=True)
    python = RateLimiter(average, minimum, capacity, native=False)
    now = T
    for source, gap in packets:
        now += gap
        host = f"192.0.2.{source}" if source < 4 else f"2001:db8::{source}"
        assert native.check(host, now) == python.check(host, now)
        assert len(native) == len(python)


RULES = (f"{SYNCED}restrict default nomodify\n"
         "restrict 198.51.100.0 mask 255.255.255.0 noserve\n"
         "restrict 198.51.100.128 mask 255.255.255.192 nopeer\n"
         "restrict 198.51.100.130 ignore\n"
         "restrict 203.0.113.0 mask 255.255.254.0 notrust\n"
         "restrict -6 default noquery\n"
         "restrict 2001:db8:: mask ffff:ffff:: noserve\n"
         "restrict 2001:db8:1:: mask ffff:ffff:ffff:: nomodify\n")


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.integers(0, 255).map(lambda n: f"198.51.100.{n}"),
    st.integers(0, 511).map(lambda n: f"203.0.{112 + n // 256}.{n % 256}"),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 2**48 - 1).map(lambda n: str(ipaddress.ip_address(
        (0x2001_0DB8 << 96) + (n % 3 << 80) + n))),
    st.ip_addresses(v=6).map(str)))
def test_the_core_applies_the_restrict_rules_as_python_does(host):
    """Longest prefix first, then the family's default: a source the rules keep from serving
    (``noserve``, ``ignore``, ``notrust``) goes to Python, every other one is answered as
    Python answers it, with no request of its own seen by Python first."""
    require_core()
    local = SERVER if ":" not in host else ("2001:db8:ffff::1", 123)
    path = make_path(RULES_ENGINE, local, primer=None)
    source = (host, 123)
    expected = python_answer(RULES_ENGINE, request(), source, local)  # also makes the header
    path.sync()
    got = core_answer(path, request(), source)
    if RULES_ENGINE.restrict.flags_for(host) & {"noserve", "ignore", "notrust"}:
        assert got is None
    else:
        assert got is not None and got == expected


RULES_ENGINE = None if batch._batch is None else make_engine(RULES)


def learned_autokey_path(host: HostCredentials, text: str = SYNCED) -> BatchPath:
    """An Autokey server whose core learned CLIENT's cookie from Python's answer."""
    engine = autokey_engine(host, text)
    path = make_path(engine)
    assert core_answer(path, autokey_request(engine), CLIENT) is None  # not learned yet
    if text == SYNCED:
        assert_same(path, autokey_request(engine))
    return path


def test_autokey_after_the_seed_changes(hosts):
    path = learned_autokey_path(hosts["md5"])
    engine = path.engine
    data = autokey_request(engine)
    seed = engine.session_keys.seed
    path.core.set_generation(seed.generation + 1)
    assert core_answer(path, data, CLIENT) is None
    path.core.set_generation(seed.generation)
    assert core_answer(path, data, CLIENT) is not None
    seed.pin(0x5EED)  # a new seed, a new generation: the cookie learned is stale
    path.sync()
    assert core_answer(path, data, CLIENT) is None
    assert_same(path, autokey_request(engine))  # the new cookie, learned again


def test_autokey_outside_the_seeds_interval(hosts):
    path = learned_autokey_path(hosts["md5"])
    engine = path.engine
    data = autokey_request(engine)
    pair = engine.session_keys.cached_pair(CLIENT[0], SERVER[0])
    now = RX >> 32
    raw, server = address_octets(CLIENT[0]), address_octets(SERVER[0])
    for valid_from, valid_until in ((now + 1, now + 100), (now - 100, now)):
        path.core.learn_pair(raw, server, pair[3], pair[4], pair[2], valid_from, valid_until)
        assert core_answer(path, data, CLIENT) is None
    path.core.learn_pair(raw, server, pair[3], pair[4], pair[2], now, now + 1)
    assert core_answer(path, data, CLIENT) == python_answer(engine, data, CLIENT)


def test_autokey_from_another_address_family(hosts):
    """No session key between an IPv6 client and an IPv4 server: Python's crypto-NAK."""
    path = learned_autokey_path(hosts["md5"])
    client = ("2001:db8::5", 40000)
    data = request() + AUTOKEY_ID.to_bytes(4, "big") + bytes(16)
    pair = path.engine.session_keys.cached_pair(CLIENT[0], SERVER[0])
    path.core.learn_pair(address_octets(client[0]), address_octets("2001:db8::1"), pair[3],
                         pair[4], pair[2], 0, 2**32 - 1)  # a server address it never reaches
    expected, got = both(path, data, client)
    assert expected.endswith(CRYPTO_NAK) and got is None


def test_autokey_of_an_unsynchronised_server(hosts):
    """Crypto time 0 while unsynchronised: Python's; its plain replies are the core's."""
    path = learned_autokey_path(hosts["md5"], UNSYNCED)
    assert parse(assert_same(path, request())).header.leap == 3
    expected, got = both(path, autokey_request(path.engine))
    assert expected is not None and not expected.endswith(CRYPTO_NAK) and got is None


# -- 4. real sockets ----------------------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server, client) UDP sockets on the loopback; the server's blocks (the core reads
    without waiting), the client's times out rather than hang a failing test."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind((LOOPBACK, 0))
        client.bind((LOOPBACK, 0))
        client.connect(server.getsockname())
        client.settimeout(5)
        yield server, client


def loopback_path(host: HostCredentials, server: socket.socket, size: int = 8192
                  ) -> BatchPath:
    """An Autokey server on ``server``'s address whose core learned the loopback client."""
    local = server.getsockname()
    engine = autokey_engine(host)
    path = make_path(engine, local, size, (LOOPBACK, 1))
    assert_same(path, autokey_request(engine, LOOPBACK, server=LOOPBACK), (LOOPBACK, 1))
    return path


NOTHING = (0, 0, 0, 0, 0, 0)
"""serve()'s counts of a read that decided nothing."""


def receive_all(client: socket.socket, count: int) -> list[bytes]:
    replies = [client.recv(2048) for _ in range(count)]
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(2048)  # nothing more: the replies were sent before serve() returned
    return replies


def test_a_burst_is_answered_and_the_rest_handed_back(hosts, sockets):
    server, client = sockets
    path = loopback_path(hosts["md5"], server)
    engine = path.engine
    source = client.getsockname()
    nts = request() + bytes(52)
    mode6 = bytes([0x16, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    answered = []
    for n in range(40):
        data = request(transmit=n + 1)
        data = [data, keyed(1, "md5", MD5_SECRET, data), flipped(keyed(1, "md5", MD5_SECRET,
                data)), autokey_request(engine, LOOPBACK, data=data, server=LOOPBACK),
                flipped(autokey_request(engine, LOOPBACK, data=data, server=LOOPBACK))][n % 5]
        answered.append(data)
    burst = answered[:5] + [nts] + answered[5:37] + [mode6] + answered[37:]
    for data in burst:
        client.send(data)
    leftovers, (received, served, badauth, *_), errors = path.core.serve(server.fileno(),
                                                                         1 << 20)
    assert leftovers == [(nts, source, RX, []), (mode6, source, RX, [])]
    assert (received, served, badauth, errors) == (40, 32, 16, None)
    replies = {reply[24:32]: reply for reply in receive_all(client, 40)}
    assert replies == {data[40:48]: python_answer(engine, data, source, server.getsockname())
                       for data in answered}


def test_a_limited_burst_is_counted_as_python_counts_it(sockets):
    """``restrict default limited kod``: of five back-to-back requests (well inside ``discard
    minimum``) the first is answered, the second gets the RATE kiss and the rest nothing,
    counted as Server._limited counts them."""
    server, client = sockets
    engine = make_engine(f"{SYNCED}restrict default limited kod\n", at=time.time())
    path = BatchPath(Protocol(engine, server.getsockname()), 8192)
    engine.server.answer(request(), PRIMER, 0, time.time(), None)  # makes the header
    path.sync()
    for n in range(5):
        client.send(request(transmit=n + 1))
    leftovers, counts, errors = path.core.serve(server.fileno(), 1 << 20)
    assert leftovers == [] and errors is None
    assert dict(zip(batch.COUNTERS, counts)) == {"received": 5, "served": 1, "badauth": 0,
                                                 "limited": 4, "kod_withheld": 3,
                                                 "kodsent": 1}
    reply, kiss = receive_all(client, 2)
    assert parse(reply).header.stratum == 1 and parse(reply).header.origin == 1
    assert kiss[1] == 0 and kiss[12:16] == b"RATE" and parse(kiss).header.origin == 2


def test_a_read_ends_after_the_batch_that_reaches_the_limit(hosts, sockets):
    server, client = sockets
    path = loopback_path(hosts["md5"], server)
    batch_size = require_core().BATCH
    for n in range(batch_size + 8):
        client.send(request(transmit=n + 1))
    assert path.core.serve(server.fileno(), 0) == ([], NOTHING, None)
    assert path.core.serve(server.fileno(), 1)[1][0] == batch_size
    assert path.core.serve(server.fileno(), 1 << 20)[1][0] == 8
    assert len(receive_all(client, batch_size + 8)) == batch_size + 8


def test_an_empty_socket_returns_at_once(hosts, sockets):
    server, _ = sockets
    path = loopback_path(hosts["md5"], server)
    assert path.core.serve(server.fileno(), 1 << 20) == ([], NOTHING, None)


def test_a_wildcard_socket_answers_from_the_address_asked(hosts):
    """On 0.0.0.0 each reply leaves from the address its request was sent to, and an Autokey
    session key's server side is that address: the core learns the cookie per (client,
    address asked) from Python's answer, then answers as Python does."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("0.0.0.0", 0))
        port = server.getsockname()[1]
        destinations = Destinations(port)
        assert destinations.enable(server)
        client.bind(("127.0.0.5", 0))
        client.settimeout(5)
        engine = autokey_engine(hosts["md5"])
        path = BatchPath(Protocol(engine, ("0.0.0.0", port)), 8192, None, destinations)
        path.core.fix_clock(T)
        python_answer(engine, request(), PRIMER)  # makes the header
        path.sync()
        source = client.getsockname()
        for asked in ("127.0.0.2", "127.0.0.3"):
            client.sendto(request(transmit=7), (asked, port))
            leftovers, (received, *_), _ = path.core.serve(server.fileno(), 1 << 20)
            reply, sender = client.recvfrom(2048)
            assert (leftovers, received, sender) == ([], 1, (asked, port))
            data = autokey_request(engine, source[0], server=asked)
            client.sendto(data, (asked, port))
            [leftover] = path.core.serve(server.fileno(), 1 << 20)[0]  # no cookie yet
            local, _ = destinations.read(leftover[3])
            assert local == (asked, port)
            expected = python_answer(engine, data, source, local)
            path.learn([leftover])
            client.sendto(data, (asked, port))
            assert path.core.serve(server.fileno(), 1 << 20)[0] == []
            assert client.recvfrom(2048) == (expected, (asked, port))


def test_a_truncated_datagram_is_left_to_python(hosts, sockets):
    """Cut to the core's 72 octets, a longer datagram would read as a SHA1-keyed request."""
    server, client = sockets
    path = loopback_path(hosts["md5"], server, size=72)
    data = keyed(2, "sha1", SHA1_SECRET)
    client.send(data + bytes(28))
    client.send(data)
    leftovers, (received, served, *_), _ = path.core.serve(server.fileno(), 1 << 20)
    assert leftovers == [(data, client.getsockname(), RX, [])] and (received, served) == (1, 1)
    assert len(receive_all(client, 1)) == 1


@pytest.mark.skipif(not has_ipv6_loopback(), reason="::1 is not configured on this host")
def test_ipv6_leftovers_carry_the_address_python_reads():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        server.bind(("::1", 0))
        client.bind(("::1", 0))
        client.settimeout(5)
        path = make_path(make_engine(), server.getsockname()[:2], primer=("::1", 1))
        client.sendto(request(), server.getsockname())
        client.sendto(b"\x16\x02" + bytes(10), server.getsockname())
        leftovers, (received, *_), _ = path.core.serve(server.fileno(), 1 << 20)
        assert leftovers == [(b"\x16\x02" + bytes(10), client.getsockname(), RX, [])]
        assert received == 1 and parse(client.recv(2048)).header.mode == 4


def test_the_kernel_stamps_arrivals(hosts, sockets):
    """With kernel stamps (SO_TIMESTAMPNS) a datagram's receive timestamp is when it arrived,
    not when it was read: the core's reply and a datagram it hands back both carry a time
    between the send and the moment after it, though they are read later."""
    server, client = sockets
    engine = make_engine(at=time.time())
    path = BatchPath(Protocol(engine, server.getsockname()), 8192, server.fileno())
    assert path.kernel_stamps
    engine.server.answer(request(), (LOOPBACK, 1), 0, time.time(), None)  # makes the header
    path.sync()
    path.core.set_rules(batch.source_flags(frozenset()), 0, [], None)
    sent_after = ntp_at(time.time())
    client.send(request(transmit=7))
    client.send(b"\x16\x02" + bytes(10))
    sent_before = ntp_at(time.time())
    leftovers, *_ = path.core.serve(server.fileno(), 1 << 20)
    read_after = ntp_at(time.time())
    reply = client.recv(2048)
    assert sent_after <= int.from_bytes(reply[32:40], "big") <= sent_before < read_after
    [(_, _, rx, _)] = leftovers
    assert sent_after <= rx <= sent_before


def test_python_takes_the_receive_timestamps_it_is_handed():
    """A datagram the core hands back is stamped with the time it gives, not when Python
    gets to it (read_datagrams with ``stamp``)."""
    engine = make_engine()
    proto = NTPDatagramProtocol(engine, engine.clock, global_reactor)
    sent: list[tuple[bytes, Any]] = []
    proto._send_one = lambda data, addr: sent.append((data, addr))  # type: ignore[method-assign]
    queued = batch.Datagrams([(request(transmit=5), ("192.0.2.9", 123), RX - 2**32)])
    proto.read_datagrams(queued.recvfrom, 8192, 1 << 20, stamp=queued.stamp)
    [(reply, address)] = sent
    assert address == ("192.0.2.9", 123)
    assert int.from_bytes(reply[32:40], "big") == RX - 2**32


@pytest.mark.parametrize("nap, below", [(-1e-6, 8), (0.01, 8), (5e-5, -1)])
def test_a_nap_out_of_range_is_refused(nap, below):
    with pytest.raises(ValueError):
        require_core().Core(8192, nap=nap, nap_below=below)


# -- 4. end to end: listen_udp and NTPDatagramProtocol on the real reactor ----------------------


def listening(engine: Engine) -> NTPPort:
    """``engine`` served on 127.0.0.1 by the real reactor; the test drives the reads."""
    proto = NTPDatagramProtocol(engine, SystemClock(), global_reactor)
    port = listen_udp(global_reactor, 0, proto, LOOPBACK)
    global_reactor.removeReader(port)
    return port


def wall_engine() -> Engine:
    """An unsynchronised server (its reply header never expires) on the host's clock, which
    it reads but never sets (no discipline is configured)."""
    parsed = parse_keys(KEYS)
    return Engine(parse_config(UNSYNCED), SystemClock(), keys=KeyStore(parsed, TRUSTED))


def test_end_to_end_on_the_real_reactor(monkeypatch):
    require_core()
    monkeypatch.delenv(batch.DISABLE_VARIABLE, raising=False)
    engine = wall_engine()
    port = listening(engine)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind((LOOPBACK, 0))
            client.connect((LOOPBACK, port.getHost().port))
            client.settimeout(5)
            client.send(request(transmit=1))  # the first read: Python's, and learned
            port.doRead()
            assert isinstance(port.batch, BatchPath) and client.recv(2048)
            left: list[object] = []
            monkeypatch.setattr(port.protocol, "read_datagrams", lambda *args: left.append(args))
            served = engine.counters["served"]
            data = keyed(1, "md5", MD5_SECRET, request(transmit=2))
            client.send(data)
            client.send(request(transmit=3))
            port.doRead()
            replies = {r[24:32]: r for r in (client.recv(2048), client.recv(2048))}
        assert left == [] and engine.counters["served"] == served + 2
        reply = replies[data[40:48]]
        assert reply[48:52] == data[48:52]
        assert reply[52:] == hashlib.md5(MD5_SECRET + reply[:48]).digest()
        assert parse(replies[request(transmit=3)[40:48]]).header.mode == 4
    finally:
        close(port)


def path_after_one_request(engine: Engine) -> BatchPath | None:
    """The batched path of a port serving ``engine`` once it has answered a request."""
    port = listening(engine)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind((LOOPBACK, 0))
            client.settimeout(5)
            client.sendto(request(transmit=9), (LOOPBACK, port.getHost().port))
            port.doRead()
            assert parse(client.recv(2048)).header.origin == 9
        return port.batch
    finally:
        close(port)


@pytest.mark.parametrize("value, batched", [("1", False), ("yes", False), ("0", True),
                                            ("", True)])
def test_python_only_in_the_environment(monkeypatch, value, batched):
    require_core()
    monkeypatch.setenv(batch.DISABLE_VARIABLE, value)
    assert isinstance(path_after_one_request(wall_engine()), BatchPath) is batched


# -- 5. the core where it must be ---------------------------------------------------------------


def test_the_core_is_built_where_every_test_must_run():
    """CI sets NTPAUTO_REQUIRE_ALL=1: there a missing core is a failure, not a slower server."""
    if REQUIRE_ALL:
        assert batch.AVAILABLE, "ntpauto._batch is not built (a C compiler, Linux)"


def test_without_the_core_every_port_reads_in_python(monkeypatch):
    monkeypatch.setattr(batch, "AVAILABLE", False)
    assert not batch.enabled()
    proto = NTPDatagramProtocol(wall_engine(), SystemClock(), global_reactor)
    assert BatchPath.for_protocol(proto, 8192, global_reactor) is None


def test_an_engine_on_another_clock_keeps_the_python_path():
    """The core reads the host's clock; an engine whose clock is not the host's (here one
    that reads the host's time through a simulation, which could run fast or slow) is
    answered in Python."""
    require_core()
    parsed = parse_keys(KEYS)
    engine = Engine(parse_config(UNSYNCED), SimulatedClock(time.time, epoch=0.0),
                    keys=KeyStore(parsed, TRUSTED))
    assert path_after_one_request(engine) is None
