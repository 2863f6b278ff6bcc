"""The NTS-KE server: the Twisted side of RFC 8915 section 4 for a host that serves NTS.

Each TLS 1.3 connection (ALPN ``ntske/1``, :mod:`ntpauto.nts.tls`) carries one request; the
protocol collects it (:class:`~ntpauto.nts.records.MessageReader`), answers it
(:func:`~ntpauto.nts.records.answer`: next protocol, AEAD, the NTP port when it is not 123,
eight cookies sealed with the connection's exported keys) and closes.  A bad request gets an
Error record, then the close.

Bounded work against floods (section 8.3): a connection has :data:`TIMEOUT` seconds to
deliver its request; at most :data:`MAX_CONNECTIONS` are open at once (the rest are closed
unanswered); the ``restrict`` flags ``ignore`` and ``noserve`` of the client's address close
its connection at once.  Outcomes are the engine's counters ``nts_ke_served``,
``nts_ke_refused`` (an Error record sent), ``nts_ke_dropped`` (closed unanswered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from ntpauto.nts import records
from ntpauto.nts.aead import export_keys
from ntpauto.nts.cookies import CookieKeys
from ntpauto.nts.tls import negotiated_ntske

__all__ = ["MAX_CONNECTIONS", "TIMEOUT", "KeServerFactory", "KeServerProtocol", "listen_ke"]

TIMEOUT = 5.0
"""Seconds a client has, from connecting, to complete its request."""
MAX_CONNECTIONS = 64
"""NTS-KE connections open at once."""

log = Logger()


class KeServerProtocol(Protocol):
    """One NTS-KE connection on the server side."""

    factory: KeServerFactory

    def __init__(self) -> None:
        self._reader = records.MessageReader()
        self._timer: Any = None
        self._done = False

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.factory.open += 1
        self._timer = self.factory.reactor.callLater(TIMEOUT, self._timed_out)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._done:
            return
        try:
            request = self._reader.feed(data)
            if request is None:
                return
            if not negotiated_ntske(self.transport):
                self._drop("the client did not negotiate ntske/1 over TLS 1.3")
                return
            response = records.answer(request, self._cookies, port=self.factory.port())
            outcome = "nts_ke_served"
        except records.KeError as e:
            log.debug("NTS-KE request from {peer} refused: {error}", peer=self._peer(),
                      error=e)
            response = records.error_response(records.ERROR_BAD_REQUEST if e.code is None
                                              else e.code)
            outcome = "nts_ke_refused"
        self._finish(outcome)
        self.transport.write(records.encode_message(response))
        self.transport.loseConnection()

    def _cookies(self, aead: int) -> list[bytes]:
        """The response's cookies: the connection's keys, sealed eight times."""
        keys = export_keys(self.transport.getHandle().export_keying_material, aead)
        now = self.factory.wall()
        return [self.factory.cookie_keys.seal(keys, now) for _ in range(records.MAX_COOKIES)]

    def _timed_out(self) -> None:
        self._timer = None
        self._drop(f"no complete request within {TIMEOUT:g} s")

    def _drop(self, why: str) -> None:
        if self._done:
            return
        log.debug("NTS-KE connection from {peer} closed: {why}", peer=self._peer(), why=why)
        self._finish("nts_ke_dropped")
        self.transport.abortConnection()

    def _finish(self, outcome: str) -> None:
        self._done = True
        self.factory.counters[outcome] += 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802
        self.factory.open -= 1
        if not self._done:
            self._finish("nts_ke_dropped")

    def _peer(self) -> str:
        try:
            return self.transport.getPeer().host
        except Exception:
            return "?"


class KeServerFactory(Factory):
    """NTS-KE connections for one NTS server: ``cookie_keys`` seal the cookies (the NTP
    server's, :class:`~ntpauto.nts.serving.NtsServer`), ``wall`` numbers their master keys,
    ``port()`` is the NTP port to negotiate (None: 123, the default), ``flags_for(address)``
    the ``restrict`` flags, ``counters`` the engine's."""

    protocol = KeServerProtocol
    noisy = False

    def __init__(self, cookie_keys: CookieKeys, wall: Callable[[], float], counters: Any,
                 reactor: Any, port: Callable[[], int | None] = lambda: None,
                 flags_for: Callable[[str], frozenset[str]] = lambda host: frozenset()
                 ) -> None:
        self.cookie_keys = cookie_keys
        self.wall = wall
        self.counters = counters
        self.reactor = reactor
        self.port = port
        self.flags_for = flags_for
        self.open = 0

    def admits(self, addr: Any) -> bool:
        """A connection from ``addr`` may start its TLS handshake: its address is not
        restricted (``ignore``, ``noserve``) and fewer than :data:`MAX_CONNECTIONS` are
        open."""
        flags = self.flags_for(getattr(addr, "host", ""))
        if "ignore" in flags or "noserve" in flags:
            self.counters["nts_ke_restricted"] += 1
            return False
        if self.open >= MAX_CONNECTIONS:
            self.counters["nts_ke_busy"] += 1
            return False
        return True


class _Admission(TLSMemoryBIOFactory):
    """TLS around :class:`KeServerFactory`, refusing a connection before any TLS work when
    the factory does not admit it."""

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        if not self.wrappedFactory.admits(addr):
            return None  # the port closes the connection
        return super().buildProtocol(addr)


def listen_ke(reactor: Any, engine: Any, options: Any, port: int, interface: str = "",
              ntp_port: Callable[[], int | None] = lambda: None) -> Any:
    """Listen for NTS-KE on TCP ``port`` of ``interface`` with TLS ``options``
    (:func:`~ntpauto.nts.tls.server_options`), for ``engine``'s NTS server; the listening
    port."""
    factory = KeServerFactory(engine.nts_server.cookie_keys, engine.clock.now,
                              engine.counters, reactor, ntp_port, engine.restrict.flags_for)
    return reactor.listenTCP(port, _Admission(options, False, factory), interface=interface)
