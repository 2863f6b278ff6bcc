"""The NTS-KE client: the Twisted side of RFC 8915 section 4 for an NTS association.

:func:`exchange` connects to an NTS-KE server over TLS 1.3 (ALPN ``ntske/1``, the server's
certificate checked against its name: :mod:`ntpauto.nts.tls`), sends the request, reads the
response (:func:`~ntpauto.nts.records.read_response`), exports the two keys and fires with a
:class:`KeResult`, or fails with :class:`KeFailed` saying why (connection, TLS, ALPN, the
response).  :func:`starter` turns it into the engine's :attr:`NtsClients.starter
<ntpauto.nts.glue.NtsClients.starter>`: results go back to the engine and the transport is
told to wake.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from ntpauto.nts import records
from ntpauto.nts.aead import SessionKeys, export_keys
from ntpauto.nts.glue import KeRequest
from ntpauto.nts.tls import TlsFileError, client_options, negotiated_ntske

__all__ = ["DEFAULT_PORT", "TIMEOUT", "KeFailed", "KeResult", "exchange", "starter"]

DEFAULT_PORT = 4460
"""The NTS-KE port (RFC 8915 section 4)."""
TIMEOUT = 10.0
"""Seconds an exchange may take, connection and TLS handshake included."""


class KeFailed(Exception):
    """An NTS-KE exchange gave no keys; ``str()`` says why in one line."""


@frozen
class KeResult:
    """What an exchange gave: the server's response and the connection's keys."""

    response: records.KeResponse
    keys: SessionKeys

    def ntp_server(self, default: str) -> str:
        """The NTP server to use: the negotiated one, else ``default`` (the NTS-KE
        server's address)."""
        return self.response.server or default

    def ntp_port(self, default: int) -> int:
        """The NTP port to use: the negotiated one, else ``default``."""
        return self.response.port or default


class _KeClientProtocol(Protocol):
    def __init__(self, done: defer.Deferred[KeResult]) -> None:
        self.done = done
        self.reader = records.MessageReader()

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.transport.write(records.request())  # held by TLS until the handshake is done

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.done.called:
            return
        try:
            message = self.reader.feed(data)
            if message is None:
                return
            if not negotiated_ntske(self.transport):
                raise KeFailed("the server did not negotiate ntske/1 over TLS 1.3 (ALPN)")
            response = records.read_response(message)
            keys = export_keys(self.transport.getHandle().export_keying_material,
                               response.aead)
        except records.KeError as e:
            self._fail(KeFailed(f"bad NTS-KE response: {e}"))
        except KeFailed as e:
            self._fail(e)
        else:
            self.done.callback(KeResult(response, keys))
            self.transport.loseConnection()

    def _fail(self, error: KeFailed) -> None:
        self.done.errback(error)
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802
        if not self.done.called:
            self.done.errback(KeFailed(_describe(reason)))


class _Factory(ClientFactory):
    noisy = False

    def __init__(self, done: defer.Deferred[KeResult]) -> None:
        self.done = done

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802 - Twisted's name
        return _KeClientProtocol(self.done)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        if not self.done.called:
            self.done.errback(KeFailed(_describe(reason)))


def _describe(reason: Failure | None) -> str:
    """A connection's end in one line (TLS errors name the OpenSSL reason)."""
    if reason is None or reason.check(ConnectionDone):
        return "the server closed the connection without a complete response"
    value = reason.value
    if type(value).__name__ == "VerificationError":  # service_identity: the name check
        return f"TLS handshake failed: the certificate does not name the server ({value})"
    args = getattr(value, "args", ())
    if type(value).__name__ == "Error" and args and isinstance(args[0], list):
        reasons = ", ".join(str(item[2]) for item in args[0] if len(item) > 2)
        return f"TLS handshake failed: {reasons or value}"
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0]


def exchange(reactor: Any, host: str, port: int = DEFAULT_PORT, *,
             trusted: str | os.PathLike[str] | None = None, address: str | None = None,
             timeout: float = TIMEOUT) -> defer.Deferred[KeResult]:
    """One NTS-KE exchange with the server ``host`` (the name or address its certificate
    must carry) on TCP ``port`` (at ``address`` when given, else ``host`` itself), trusting
    the CA certificates of ``trusted`` or the system's.  Fails with :class:`KeFailed`."""
    try:
        options = client_options(host, trusted)
    except TlsFileError as e:
        return defer.fail(KeFailed(str(e)))
    done: defer.Deferred[KeResult] = defer.Deferred()
    connector = reactor.connectSSL(address or host, port, _Factory(done), options,
                                   timeout=timeout)

    def expire() -> None:
        if not done.called:
            done.errback(KeFailed(f"no NTS-KE response within {timeout:g} s"))
            connector.disconnect()

    timer = reactor.callLater(timeout, expire)

    def finish(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return done.addBoth(finish)


def starter(engine: Any, reactor: Any, *, trusted: str | os.PathLike[str] | None = None,
            wake: Callable[[], None] = lambda: None,
            failed: Callable[[str], None] = lambda reason: None
            ) -> Callable[[KeRequest], None]:
    """The engine's NTS-KE starter for a running node: each :class:`KeRequest` becomes an
    :func:`exchange` whose keys and cookies go to :meth:`NtsClients.keyed
    <ntpauto.nts.glue.NtsClients.keyed>` (the negotiated NTP server resolved first) or whose
    failure goes to :meth:`~ntpauto.nts.glue.NtsClients.failed` (and to ``failed(reason)``);
    ``wake()`` then re-arms the transport's timer."""
    on_failure = failed

    def start(request: KeRequest) -> None:
        assoc = engine.associations.get(request.associd)
        if assoc is None or assoc.nts is None:
            return
        session = assoc.nts

        def keyed(result: KeResult) -> defer.Deferred[None]:
            d = resolve(reactor, result.ntp_server(session.address))
            d.addCallback(lambda host: engine.nts.keyed(
                request.associd, result.response, result.keys,
                (host, result.ntp_port(session.ntp_port)), reactor.seconds()))
            return d

        def failed(failure: Failure) -> None:
            reason = _describe_failure(failure)
            engine.nts.failed(request.associd, reason, reactor.seconds())
            on_failure(reason)

        d = exchange(reactor, request.host, request.port, trusted=trusted,
                     address=session.address)
        d.addCallback(keyed)
        d.addErrback(failed)
        d.addBoth(lambda _: wake())

    return start


def _describe_failure(failure: Failure) -> str:
    return str(failure.value) if failure.check(KeFailed) else _describe(failure)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve(reactor: Any, host: str) -> defer.Deferred[str]:
    """``host`` as an address (names through the reactor's resolver)."""
    if _is_address(host):
        return defer.succeed(str(ipaddress.ip_address(host)))
    return reactor.resolve(host)
