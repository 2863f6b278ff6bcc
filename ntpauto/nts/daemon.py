"""The NTS parts of a running node (:class:`~ntpauto.service.NTPAutokeyService`): the
NTS-KE server on ``ntsport`` of each listen address when the node serves NTS, and the
NTS-KE client exchanges of its ``server HOST nts`` associations."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from ntpauto.nts import ke_client
from ntpauto.nts.ke_server import listen_ke
from ntpauto.nts.tls import server_options

__all__ = ["NtsDaemon"]

log = Logger()


class NtsDaemon:
    """Built with the node: a bad ``ntsservercert``/``ntsserverkey`` raises
    :class:`~ntpauto.nts.tls.TlsFileError` here, before anything listens."""

    def __init__(self, config: Any, engine: Any) -> None:
        self.config = config
        self.engine = engine
        self.ports: list[Any] = []
        self._options = None
        if engine.nts_server is not None:
            self._options = server_options(config.nts_server_cert, config.nts_server_key)

    def start(self, reactor: Any, interfaces: Iterable[str], ntp_port: Callable[[], int],
              wake: Callable[[], None]) -> None:
        """Listen for NTS-KE (when serving NTS) and start the associations' exchanges
        with ``reactor``; ``ntp_port()`` is the bound NTP port (negotiated when not 123),
        ``wake()`` re-arms the node's timer after an exchange."""
        self.engine.nts.starter = ke_client.starter(
            self.engine, reactor, trusted=self.config.nts_trusted_certs, wake=wake)
        if self._options is None:
            return
        for interface in interfaces:
            port = listen_ke(reactor, self.engine, self._options, self.config.nts_port,
                             interface, lambda: None if ntp_port() == 123 else ntp_port())
            self.ports.append(port)
            host = port.getHost()
            log.info("NTS-KE listening on TCP {host}:{port}", host=host.host, port=host.port)

    def stop(self) -> list[defer.Deferred[Any]]:
        """Stop listening; what to wait for."""
        self.engine.nts.starter = None
        ports, self.ports = self.ports, []
        return [defer.maybeDeferred(port.stopListening) for port in ports]
