"""NTS-KE over real TLS 1.3 on loopback (ntpauto.nts.ke_server, .ke_client, .tls): the
exchange, the exporter's keys checked against an independent RFC 8446 exporter (itself
checked against RFC 8448's known answers), ALPN and TLS version enforcement, certificate
checks (RFC 8915 section 8.5) and the server's bounds against floods (section 8.3).

Certificates come from ntpauto.nts.certs, made for each module run; the reactor is the
global one, run until each exchange ends."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer, reactor, ssl
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ntpauto.config import Config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.nts import certs, records
from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, EXPORTER_LABEL, exporter_context
from ntpauto.nts.cookies import CookieKeys
from ntpauto.nts.ke_client import KeFailed, exchange
from ntpauto.nts.ke_server import MAX_CONNECTIONS, TIMEOUT, KeServerFactory, listen_ke
from ntpauto.nts.serving import NtsServer
from ntpauto.nts.tls import TlsFileError, client_options, server_options
from tests import tls13_exporter as x
from tests.test_service import spin


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Any:
    base = tmp_path_factory.mktemp("pki")
    good = base / "good"
    good.mkdir()
    other = base / "other"
    other.mkdir()
    expired = base / "expired"
    expired.mkdir()
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    return {"good": certs.write_test_pki(good, ["127.0.0.1", "localhost"]),
            "other": certs.write_test_pki(other, ["127.0.0.1"]),
            "expired": certs.write_test_pki(expired, ["127.0.0.1"], days=30, start=long_ago),
            "elsewhere": certs.write_test_pki(base, ["ntp.example.org"])}


def engine() -> Engine:
    clock = SimulatedClock(reactor.seconds, epoch=1_800_000_000.0)
    return Engine(Config(), clock, nts_server=NtsServer(CookieKeys(bytes(32)), clock.now))


class Server:
    def __init__(self, paths: Any, ntp_port: int | None = 12300) -> None:
        self.engine = engine()
        self.options = server_options(paths.cert, paths.key)
        self.keylog: list[bytes] = []
        self.options.getContext().set_keylog_callback(lambda conn, line:
                                                      self.keylog.append(line))
        self.port = listen_ke(reactor, self.engine, self.options, 0, "127.0.0.1",
                              lambda: ntp_port)
        self.number = self.port.getHost().port

    def stop(self) -> None:
        done: list[Any] = []
        defer.maybeDeferred(self.port.stopListening).addBoth(done.append)
        spin(lambda: done)


@pytest.fixture
def server(pki) -> Iterator[Server]:
    running = Server(pki["good"])
    yield running
    running.stop()


def wait(d: defer.Deferred) -> Any:
    result: list[Any] = []
    d.addBoth(result.append)
    spin(lambda: result)
    return result[0]


def test_exchange_gives_keys_and_cookies_the_server_opens(server, pki) -> None:
    result = wait(exchange(reactor, "127.0.0.1", server.number, trusted=pki["good"].ca))
    assert not isinstance(result, Exception), result
    response = result.response
    assert response.aead == AEAD_AES_SIV_CMAC_256 and len(response.cookies) == 8
    assert response.port == 12300 and response.server is None
    assert len(set(response.cookies)) == 8
    cookie_keys = server.engine.nts_server.cookie_keys
    for cookie in response.cookies:
        assert cookie_keys.open(cookie, server.engine.clock.now()) == result.keys
    assert server.engine.counters["nts_ke_served"] == 1
    assert result.keys.c2s != result.keys.s2c


def test_rfc8448_key_schedule_known_answers() -> None:
    """The reference exporter's HKDF-Expand-Label and Derive-Secret reproduce RFC 8448
    section 3 (simple 1-RTT handshake): the early secret and its "derived" secret."""
    early = x.hkdf_extract(bytes(32), bytes(32), "sha256")
    assert early.hex() == "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a"
    derived = x.derive_secret(early, b"derived", hashlib.sha256().digest(), "sha256")
    assert derived.hex() == "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"


def test_exported_keys_match_the_rfc8446_exporter(server, pki) -> None:
    """RFC 8915 sections 4.3 and 5.1: the keys both sides use are the TLS 1.3 exporter's
    with label EXPORTER-network-time-security and context 0000 000f 00 (C2S) or 01 (S2C),
    computed here from the connection's exporter secret."""
    result = wait(exchange(reactor, "127.0.0.1", server.number, trusted=pki["good"].ca))
    [line] = [entry for entry in server.keylog if entry.startswith(b"EXPORTER_SECRET ")]
    secret = bytes.fromhex(line.split()[2].decode())
    for direction, key in ((0, result.keys.c2s), (1, result.keys.s2c)):
        context = exporter_context(AEAD_AES_SIV_CMAC_256, direction)
        assert context == bytes([0, 0, 0, 15, direction])
        assert x.tls_exporter(secret, EXPORTER_LABEL, context, 32) == key


@pytest.mark.parametrize("which, trusted, name, reason", [
    ("good", "other", "127.0.0.1", "certificate verify failed"),
    ("elsewhere", "elsewhere", "127.0.0.1", "does not name the server"),
    ("expired", "expired", "127.0.0.1", "certificate verify failed"),
])
def test_certificate_checks(pki, which, trusted, name, reason) -> None:
    """Section 8.5: an untrusted CA, a certificate for another name, an expired one: no
    keys, a failure that says why."""
    running = Server(pki[which])
    try:
        result = wait(exchange(reactor, name, running.number, trusted=pki[trusted].ca))
    finally:
        running.stop()
    assert isinstance(result.value, KeFailed), result
    assert reason in str(result.value)
    assert running.engine.counters["nts_ke_served"] == 0


class Raw(Protocol):
    """A TLS client that sends given octets and keeps what comes back."""

    def __init__(self, payload: bytes, done: defer.Deferred) -> None:
        self.payload, self.done, self.received = payload, done, b""

    def connectionMade(self) -> None:  # noqa: N802
        if self.payload:
            self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.done.callback(self.received)


def raw(port: int, payload: bytes, ca: str, **options: Any) -> bytes:
    done: defer.Deferred = defer.Deferred()
    factory = ClientFactory.forProtocol(lambda: Raw(payload, done))
    factory.buildProtocol = lambda addr: Raw(payload, done)
    root = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(open(ca, "rb").read())])
    tls = ssl.optionsForClientTLS("127.0.0.1", trustRoot=root, **options)
    reactor.connectSSL("127.0.0.1", port, factory, tls)
    return wait(done)


def test_bad_request_gets_an_error_record(server, pki) -> None:
    request = records.encode_message([records.Record(records.AEAD_ALGORITHM, b"\x00\x0f")])
    reply = raw(server.number, request, pki["good"].ca, acceptableProtocols=[b"ntske/1"])
    assert records.decode_message(reply) == records.error_response(records.ERROR_BAD_REQUEST)
    assert server.engine.counters["nts_ke_refused"] == 1


def test_oversized_request_gets_an_error_record(server, pki) -> None:
    flood = records.Record(records.NEW_COOKIE, bytes(4000)).encode() * 5
    reply = raw(server.number, flood, pki["good"].ca, acceptableProtocols=[b"ntske/1"])
    assert records.decode_message(reply) == records.error_response(records.ERROR_BAD_REQUEST)


def test_client_without_alpn_gets_nothing(server, pki) -> None:
    reply = raw(server.number, records.request(), pki["good"].ca)
    assert reply == b"" and server.engine.counters["nts_ke_dropped"] == 1


def test_tls_1_2_is_refused(server, pki) -> None:
    reply = raw(server.number, records.request(), pki["good"].ca,
                acceptableProtocols=[b"ntske/1"],
                extraCertificateOptions={"lowerMaximumSecurityTo": ssl.TLSVersion.TLSv1_2})
    assert reply == b"" and server.engine.counters["nts_ke_served"] == 0


def test_server_without_ntske_alpn_is_refused(pki) -> None:
    """A TLS server that does not speak ntske/1 (ALPN) gives no keys."""
    from twisted.internet.protocol import Factory

    good = pki["good"]
    options = ssl.CertificateOptions(
        privateKey=server_options(good.cert, good.key).privateKey,
        certificate=server_options(good.cert, good.key).certificate,
        acceptableProtocols=[b"http/1.1"], raiseMinimumTo=ssl.TLSVersion.TLSv1_3)
    port = reactor.listenSSL(0, Factory.forProtocol(Protocol), options, interface="127.0.0.1")
    try:
        result = wait(exchange(reactor, "127.0.0.1", port.getHost().port, trusted=good.ca,
                               timeout=5))
    finally:
        port.stopListening()
    assert isinstance(result.value, KeFailed)


def test_closed_port_fails_fast(pki) -> None:
    from twisted.internet.protocol import Factory

    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    wait(defer.maybeDeferred(port.stopListening))
    result = wait(exchange(reactor, "127.0.0.1", number, trusted=pki["good"].ca))
    assert isinstance(result.value, KeFailed) and "refused" in str(result.value)


def test_unreadable_files_are_named(tmp_path, pki) -> None:
    with pytest.raises(TlsFileError, match="cannot read"):
        server_options(tmp_path / "missing.pem", pki["good"].key)
    with pytest.raises(TlsFileError, match="not the private key"):
        server_options(pki["good"].cert, pki["other"].key)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(TlsFileError, match="not PEM certificates"):
        client_options("127.0.0.1", tmp_path / "junk.pem")


# -- the server's bounds, without TLS -----------------------------------------------------

def factory(clock: Clock, flags: frozenset[str] = frozenset()) -> KeServerFactory:
    from ntpauto.counters import Counters

    return KeServerFactory(CookieKeys(bytes(32)), lambda: 0.0, Counters(), clock,
                           flags_for=lambda host: flags)


class Address:
    host = "192.0.2.7"


def test_a_silent_connection_is_closed_after_the_timeout() -> None:
    clock = Clock()
    made = factory(clock)
    protocol = made.buildProtocol(Address())
    transport = StringTransport()
    protocol.makeConnection(transport)
    clock.advance(TIMEOUT - 0.01)
    assert not transport.disconnecting
    clock.advance(0.02)
    assert transport.disconnecting and made.counters["nts_ke_dropped"] == 1


def test_connections_are_capped_and_restricted_sources_refused() -> None:
    made = factory(Clock())
    made.open = MAX_CONNECTIONS
    assert not made.admits(Address()) and made.counters["nts_ke_busy"] == 1
    made.open = 0
    assert made.admits(Address())
    restricted = factory(Clock(), frozenset({"noserve"}))
    assert not restricted.admits(Address())
    assert restricted.counters["nts_ke_restricted"] == 1
