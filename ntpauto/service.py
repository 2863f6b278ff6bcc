"""The embedding API: an NTP/Autokey node as a Twisted service.

Five lines put a stratum-1 NTP server (or a client of the servers in a config file) into any
Twisted program::

    from ntpauto.service import NTPAutokeyService

    ntp = NTPAutokeyService.from_file("/etc/ntpauto/ntp.conf")
    ntp.setServiceParent(application)        # or: ntp.startService()

Binding happens in ``privilegedStartService`` (as ``twisted.application.internet.UDPServer``
does), so ``twistd -u ntp -g ntp ntpautokey --port 123`` binds port 123 as root and then
drops privileges.  One UDP port is opened per ``interface`` line of the config (all of them
share one engine); with none, the node listens on ``0.0.0.0``.  See ``docs/embedding.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger

from ntpauto.autokey.cookie import SharedSeed
from ntpauto.changes import ASSOCIATION_PROVENTIC, EVENT_NAMES, SYSTEM_PEER
from ntpauto.config import Config, default_config, load_config, worker_count
from ntpauto.engine import build_engine
from ntpauto.estimate import TimeEstimate, estimate, peer_proventic
from ntpauto.identity.common import prepare_scheme
from ntpauto.identityworker import IdentityWorker
from ntpauto.interfaces import IClock
from ntpauto.ntp.clocks import SystemClock
from ntpauto.ntp.discipline import write_drift
from ntpauto.nts.daemon import NtsDaemon
from ntpauto.protocol import NTPDatagramProtocol, listen_udp
from ntpauto.udpsocket import privileged, reuseport_group
from ntpauto.workerpool import ServerWorkers
from ntpauto.workerstate import WorkerInit, serving_config, system_state

DEFAULT_INTERFACE = "0.0.0.0"
"""Where the node listens when the config names no interface."""
DRIFT_INTERVAL = 3600.0
"""Seconds between drift file updates (ntpd: hourly)."""


def _describe(association: Any) -> str:
    """A short human description of one configured association, for the log."""
    kind = getattr(association, "kind", "server")
    address = getattr(association, "address", association)
    text = f"{kind} {address}"
    port = getattr(association, "port", 123)
    if port != 123:
        text += f" port {port}"
    key = getattr(association, "key", None)
    if key is not None:
        text += f" key {key}"
    if getattr(association, "autokey", False):
        text += " autokey"
    return text


def listen_addresses(config: Config) -> list[str]:
    """The addresses a node of ``config`` listens on: its ``interface`` lines, or
    :data:`DEFAULT_INTERFACE`."""
    return [item.address for item in config.listen] or [DEFAULT_INTERFACE]


def _alternatives(names: list[str]) -> str:
    """``A, B or C``."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else "-"


class NTPAutokeyService(MultiService):
    """An NTP/Autokey node: one engine, one UDP port per listen address.

    :param config: the node's configuration; ``default_config()`` (a stratum-1 server on
        127.0.0.1:12300 from the local clock) when ``None``.
    :param reactor: the reactor to listen and schedule with; the global one when ``None``.
    :param clock: the NTP clock stamping packets; the host's :class:`SystemClock` when ``None``.

    The engine is built here, so a bad keys or leap file raises at construction.

    Attributes: ``config``, ``clock``, ``engine``; once listening ``protocol`` and ``port``
    (the first listen address's), ``protocols`` and ``ports`` (all of them) and ``address``.
    """

    log = Logger()

    def __init__(self, config: Config | None = None, *, reactor: Any = None,
                 clock: IClock | None = None, identity_worker: bool = True) -> None:
        super().__init__()
        self.identity_worker = identity_worker
        """Answer IFF, GQ and MV challenges in a worker process (when the reactor can
        spawn one and the host answers any): their arithmetic would otherwise block the
        reactor for tens of milliseconds each (:mod:`ntpauto.autokey.offload`)."""
        self.worker: Any = None
        """The running :class:`~ntpauto.identityworker.IdentityWorker`, if any."""
        self.stats_port: Any = None
        """The ``IListeningPort`` of the ``statsaddress`` metrics endpoint, when listening."""
        self.server_workers: ServerWorkers | None = None
        """The worker processes (``workers``), once started."""
        self._worker_sockets: list[list[Any]] = []
        """Per worker process, its sockets (one per listen address), bound by
        ``_listen``."""
        self.config = config if config is not None else default_config()
        self.clock = clock if clock is not None else SystemClock()
        self._reactor = reactor
        self.engine = build_engine(self.config, self.clock)
        self.nts = NtsDaemon(self.config, self.engine)
        """NTS-KE: the server's ports, the client associations' exchanges."""
        self.protocols: list[NTPDatagramProtocol] = []
        self.ports: list[Any] = []
        if self.config.driftfile and self.engine.discipline is not None:
            # ntpd writes the frequency hourly; so do we, and once more on the way out.
            drift = TimerService(DRIFT_INTERVAL, self.write_drift)
            if reactor is not None:
                drift.clock = reactor
            drift.setServiceParent(self)

    def write_drift(self) -> None:
        """Save the discipline's frequency estimate to the drift file (errors are logged)."""
        ppm = self.engine.frequency_ppm
        if ppm is None or not self.config.driftfile:
            return
        try:
            write_drift(self.config.driftfile, ppm)
        except OSError as e:
            self.log.warn("Cannot write drift file {path}: {error}",
                          path=self.config.driftfile, error=e)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> NTPAutokeyService:
        """Load the config at ``path`` (``ConfigError`` names file and line) and build the
        service; keyword arguments are those of the constructor."""
        return cls(load_config(os.fspath(path)), **kwargs)

    # -- what is bound ----------------------------------------------------------------------

    @property
    def protocol(self) -> NTPDatagramProtocol | None:
        """The protocol of the first listen address (it owns the engine's timer)."""
        return self.protocols[0] if self.protocols else None

    @property
    def port(self) -> Any:
        """The first ``IListeningPort`` once listening, else ``None``."""
        return self.ports[0] if self.ports else None

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` actually bound by the first port (port 0 resolved), or ``None``."""
        port = self.port
        if port is None:
            return None
        host = port.getHost()
        return (host.host, host.port)

    # -- time and state changes for the program -----------------------------------------

    def now(self) -> TimeEstimate:
        """The node's best estimate of true time, its error bound and whether it is
        proventic (:mod:`ntpauto.estimate`); the host clock is only read."""
        return estimate(self.engine, self._get_reactor().seconds())

    def synchronised(self, proventic: bool = True) -> defer.Deferred[TimeEstimate]:
        """A Deferred that fires with :meth:`now` once the node has a system peer (a
        proventic one when ``proventic``: see :func:`~ntpauto.estimate.peer_proventic`); at
        once when it already has.  Cancelling it unsubscribes."""
        engine = self.engine

        def ready(event: Any = None) -> None:
            if engine.sys.peer is None or d.called or (proventic
                                                       and not peer_proventic(engine)):
                return
            unsubscribe()
            d.callback(self.now())

        d: defer.Deferred[TimeEstimate] = defer.Deferred(lambda _: unsubscribe())
        unsubscribe = self.observe(ready, (SYSTEM_PEER, ASSOCIATION_PROVENTIC))
        ready()
        return d

    def observe(self, observer: Callable[[dict[str, Any]], None],
                names: Iterable[str] = EVENT_NAMES) -> Callable[[], None]:
        """Call ``observer(event)`` (a ``twisted.logger`` event dict) for each state
        change of this node named in ``names`` (:mod:`ntpauto.changes`: all by default);
        returns the function that unsubscribes it."""
        return self.engine.changes.observe(observer, names)

    def interfaces(self) -> list[str]:
        """The addresses to listen on: the config's ``interface`` lines, or ``0.0.0.0``."""
        return listen_addresses(self.config)

    # -- service life -----------------------------------------------------------------------

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def _listen(self) -> None:
        """Bind one UDP port per interface; on failure unbind what was bound and raise."""
        reactor = self._get_reactor()
        config = self.config
        for warning in config.warnings:
            self.log.warn("Config warning: {warning}", warning=warning)
        self.log.info("ntpauto configuration {path}: {count} association(s), {refclocks} "
                      "reference clock(s)", path=config.path,
                      count=len(config.associations), refclocks=len(config.refclocks))
        for association in config.associations:
            self.log.info("Association: {association}", association=_describe(association))
        self._check_identity_groups()
        scheduler: NTPDatagramProtocol | None = None
        count = self._worker_count(reactor)
        try:
            for interface in self.interfaces():
                protocol = NTPDatagramProtocol(self.engine, self.clock, reactor,
                                               scheduler=scheduler)
                scheduler = scheduler or protocol
                self.protocols.append(protocol)
                group = self._group(interface, count)
                port = listen_udp(reactor, config.port, protocol, interface,
                                  config.receive_buffer, quiet_cap=config.rcvbuf is None,
                                  adopt=group[0] if group else None)
                self.ports.append(port)
                if group:
                    group[0].close()  # the port reads its duplicate
                    for index, sock in enumerate(group[1:]):
                        self._worker_sockets[index].append(sock)
                host = port.getHost()
                self.log.info("NTP listening on UDP {host}:{port}", host=host.host,
                              port=host.port)
        except BaseException:
            for port in reversed(self.ports):
                port.stopListening()
            self.ports.clear()
            self.protocols.clear()
            self._close_worker_sockets()
            raise
        self.nts.start(reactor, self.interfaces(), lambda: self.address[1],
                       lambda: self.protocol and self.protocol.wake())
        self._listen_stats(reactor)

    # -- worker processes (docs/scaling.md) --------------------------------------------------

    def _worker_count(self, reactor: Any) -> int:
        """The processes to answer with: ``workers`` (``auto``: one per core), or 1 where
        the reactor cannot adopt sockets or spawn processes (logged)."""
        count = worker_count(self.config.workers)
        if count > 1 and not (isinstance(reactor, PosixReactorBase)
                              and IReactorProcess.providedBy(reactor)):
            self.log.warn("workers {count}: this reactor cannot run worker processes; one "
                          "process answers", count=count)
            count = 1
        self._worker_sockets = [[] for _ in range(count - 1)]
        return count

    def _group(self, interface: str, count: int) -> list[Any] | None:
        """``count`` sockets on ``interface`` and the configured port, steered
        (:func:`~ntpauto.udpsocket.reuseport_group`), or None for one process: ``count`` is
        1, or the system cannot steer (logged, and every later interface is served by one
        process too)."""
        if count <= 1 or not self._worker_sockets:
            return None
        try:
            return reuseport_group(interface, self.config.port, count,
                                   self.config.receive_buffer, force=privileged())
        except OSError as exc:
            if self.ports:
                raise
            self.log.warn("workers {count}: cannot share UDP {host} port {port} between "
                          "processes ({error}); one process answers", count=count,
                          host=interface, port=self.config.port, error=exc)
            self._worker_sockets = []
            return None

    def _close_worker_sockets(self) -> None:
        for group in self._worker_sockets:
            for sock in group:
                sock.close()
        self._worker_sockets = []

    def _start_workers(self) -> None:
        """The worker processes, once privileges are dropped (they run as the daemon's
        user), answering with the system variables the engine publishes to them."""
        if self.server_workers is not None or not self._worker_sockets:
            return
        engine = self.engine
        reactor = self._get_reactor()
        pool = ServerWorkers(engine, self._worker_sockets, self._worker_init,
                             lambda: system_state(engine, reactor.seconds()), reactor=reactor)
        self.server_workers = pool
        engine.system_listeners.append(pool.publish)
        pool.start()
        self.log.info("workers {count}: this process and {others} worker process(es) "
                      "answer client requests", count=1 + len(self._worker_sockets),
                      others=len(self._worker_sockets))

    def _worker_init(self, index: int) -> WorkerInit:
        engine = self.engine
        node = engine.autokey
        seed = node.responder.seed if node is not None else None
        return WorkerInit(
            index=index, config=serving_config(self.config), keys=engine.keys,
            seed_secret=seed.secret if isinstance(seed, SharedSeed) else None,
            revoke=seed.revoke if seed is not None else 0,
            digest=node.digest if node is not None else "md5", precision=engine.precision,
            local_address=engine.local_address,
            nts_cookies=engine.nts_server.cookie_keys if engine.nts_server else None,
            system=system_state(engine, self._get_reactor().seconds()))

    def _check_identity_groups(self) -> None:
        """Warn, at start-up, of every ``ident`` group without a usable client file: its
        associations can never become proventic with a server that proves its identity with
        IFF, GQ or MV (the client files are loaded here, so a broken one is reported now)."""
        node = self.engine.autokey
        if node is None:
            return
        from ntpauto.identity.registry import all_factories

        names = sorted(str(f.scheme_name) for f in all_factories() if int(f.message_code))
        users: dict[str, str] = {}
        for association in self.config.associations:
            if association.autokey and association.ident:
                where = f"{self.config.path}:{association.line}: " if association.line else ""
                users.setdefault(association.ident, where + _describe(association))
        if self.config.ident:
            users.setdefault(self.config.ident, "ident (associations the network mobilises)")
        for group, user in users.items():
            if any(node.host.client_scheme(name, group) is not None for name in names):
                continue
            files = ", ".join(f"ntpkey_{name}par_{group}" for name in names)
            self.log.warn("{user}: ident {group}: no usable identity client file ({files}) "
                          "in {keysdir}: it can never become proventic with a server that "
                          "proves its identity with {schemes}", user=user, group=group,
                          files=files, keysdir=node.host.keysdir,
                          schemes=_alternatives([name.upper() for name in names]))

    def _listen_stats(self, reactor: Any) -> None:
        """The Prometheus ``/metrics`` endpoint on ``statsaddress`` (a failure to bind is
        logged, not fatal: NTP service matters more than its metrics)."""
        if self.config.statsaddress is None:
            return
        from twisted.internet.error import CannotListenError

        from ntpauto.statsweb import listen_stats

        host, port = self.config.statsaddress
        try:
            self.stats_port = listen_stats(reactor, self.engine, (host, port))
        except CannotListenError as e:
            self.log.error("no metrics endpoint on {host} port {port}: {error}", host=host,
                           port=port, error=e.socketError or e)
            return
        bound = self.stats_port.getHost()
        self.log.info("metrics on http://{host}:{port}/metrics", host=bound.host,
                      port=bound.port)

    def privilegedStartService(self) -> None:
        """Bind the UDP ports (before ``twistd -u`` drops privileges)."""
        if not self.ports:
            self._listen()
        super().privilegedStartService()

    def startService(self) -> None:
        """Bind (if ``privilegedStartService`` did not), start the identity worker and the
        children."""
        if not self.ports:
            self._listen()
        self._start_identity_worker()
        self._start_workers()
        super().startService()

    def _start_identity_worker(self) -> None:
        """The worker process for the identity schemes the host answers (after privileges
        were dropped, so it runs as the daemon's user); the schemes it does not take are
        prepared here."""
        if self.worker is not None:
            return
        reactor = self._get_reactor()
        schemes: dict[int, Any] = {}
        if self.identity_worker and IReactorProcess.providedBy(reactor):
            schemes = self.engine.enable_offload()
        if schemes:
            self.worker = IdentityWorker(schemes, reactor=reactor)
            for protocol in self.protocols:
                protocol.worker = self.worker
            self.worker.start()
        self._prepare_in_process(schemes)

    def _prepare_in_process(self, offloaded: dict[int, Any]) -> None:
        """Build the response tables (:mod:`ntpauto.identity.fixedbase`) of the identity
        schemes this process answers itself, at start-up rather than in the first response
        (up to half a second at 2048 bits, on the reactor)."""
        node = self.engine.autokey
        if node is None:
            return
        for code, scheme in node.host.server_schemes.items():
            if code not in offloaded:
                prepare_scheme(scheme)

    def stopService(self) -> defer.Deferred[None]:
        """Stop the children, unbind every port (which stops the engine); fires when done."""
        self.write_drift()
        stopping = [defer.maybeDeferred(super().stopService), *self.nts.stop()]
        for port in reversed(self.ports):
            stopping.append(defer.maybeDeferred(port.stopListening))
        if self.stats_port is not None:
            stopping.append(defer.maybeDeferred(self.stats_port.stopListening))
            self.stats_port = None
        if self.worker is not None:
            stopping.append(self.worker.stop())
            self.worker = None
        if self.server_workers is not None:
            self.engine.system_listeners.remove(self.server_workers.publish)
            stopping.append(self.server_workers.stop())
            self.server_workers = None
            self.engine.server_processes = 1
        else:
            self._close_worker_sockets()
        self._worker_sockets = []
        self.ports = []
        self.protocols = []
        self.log.info("ntpauto stopped")
        done = defer.gatherResults(stopping, consumeErrors=True)
        done.addCallback(lambda _: None)
        return done
