"""The Twisted side of the engine: move datagrams in and out, fire the engine's timers.

:class:`NTPDatagramProtocol` is the only place where NTP meets ``twisted.internet``
(DESIGN principle 1, modelled on ``twisted.names.dns.DNSDatagramProtocol``):

* ``datagramReceived`` reads the NTP clock *first thing* (the receive timestamp, RFC 5905
  section 8), hands the octets to :meth:`Engine.receive` and writes every
  :class:`~ntpauto.engine.Datagram` it returns.  It never raises: a bug in the engine is
  logged with ``log.failure`` and counted as ``internal_error``, never lost in the reactor.
* :class:`NTPPort` (what the service listens with on a POSIX reactor) reads its socket with
  :meth:`NTPDatagramProtocol.read_datagrams`, one loop per readiness event that does for
  each datagram what ``datagramReceived`` does and sends the busy server's common answers
  without leaving the loop.  On a wildcard bind, where the system says each datagram's
  destination address (:mod:`ntpauto.udpsocket`), the loop reads with ``recvmsg``: the
  engine gets that address as ``local`` and the replies to the datagram leave from it.
  Once a second at most, the port adds what the kernel dropped at its socket to the
  ``kernel_drops`` counter.
* One ``callLater`` tracks :meth:`Engine.next_wakeup`; when it fires the protocol calls
  :meth:`Engine.fire_timers` with the reactor's time, sends the result and re-arms itself.
* Errors writing to the socket (``EPERM`` from a firewall, ``ECONNREFUSED`` left over from an
  ICMP message, a bad address) are counted as ``send_error`` and logged, never raised.

When a node listens on several addresses (one UDP port each) every port gets its own
protocol over the same engine; the first one is the *scheduler* (it starts and stops the
engine and owns the timer), the others pass ``scheduler=first`` and ask it to re-arm after
each datagram they deliver.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from twisted.internet import udp
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from ntpauto.batch import BatchPath, Datagrams
from ntpauto.interfaces import IClock
from ntpauto.udpsocket import (
    Destinations,
    is_wildcard,
    kernel_drops,
    privileged,
    set_receive_buffer,
)
from ntpauto.wire.timestamps import NTP_UNIX_OFFSET


class _Reply(NamedTuple):
    data: bytes
    address: Any


_MASK64 = (1 << 64) - 1
_READ_DONE = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED})
"""``recvfrom`` errors that end a read, as in Twisted's ``udp.Port.doRead``: nothing left, a
signal, an ICMP error reported on the socket."""


DROPS_INTERVAL = 1.0
"""Seconds between two looks at the kernel's drop count (a getsockopt, about 0.5 us)."""

MAX_JOB_REPLIES = 256
"""Offloaded identity jobs whose reply address is remembered (the worker's job table holds
64; the oldest entry goes first, a job that expired unanswered)."""

STALE_WAKEUP_DELAY = 0.001
"""Seconds to wait before re-firing when the engine's next wakeup is not after the timers it
has just run (an engine bug, contained so that it cannot spin the reactor)."""


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class NTPDatagramProtocol(DatagramProtocol):
    """Connect an engine to one UDP port; see the module docstring.

    :param engine: the sans-I/O node (:class:`ntpauto.engine.Engine`).
    :param clock: the NTP clock (:class:`ntpauto.interfaces.IClock`) that stamps packets.
    :param reactor: provides ``seconds()`` and ``callLater()``; the global reactor if ``None``.
    :param scheduler: another protocol over the same engine that owns the engine's timer and
        lifetime; ``None`` makes this protocol the owner.
    """

    log = Logger()
    noisy = False  # the service logs what it binds; no "Starting protocol <...>" lines

    def __init__(self, engine: Any, clock: IClock, reactor: Any = None, *,
                 scheduler: NTPDatagramProtocol | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self._answer_fast = getattr(engine, "answer_fast", None)
        """The engine's bytes-to-bytes answer for common requests, if it has one."""
        self._receive = engine.receive if self._answer_fast is None else engine.receive_full
        """The engine's full receive path (without the fast answer, already tried)."""
        self._reactor = reactor if reactor is not None else _global_reactor()
        self._scheduler = scheduler
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._timer_generation: int | None = None
        self._fired_at: float | None = None
        self._running = False
        self._local_address: tuple[str, int] | None = None
        self._socket: Any = None
        self._siblings: list[NTPDatagramProtocol] = []
        self.worker: Any = None
        """The :class:`~ntpauto.identityworker.IdentityWorker` taking the engine's offloaded
        identity challenges (set by the service); None: they are answered in process."""
        self._send_errors_seen: set[str] = set()
        self._job_replies: dict[int, tuple[Any, list[Any]]] = {}
        """Offloaded identity job -> (its source, the ancillary data to answer it with):
        the reply leaves from the address the request came to (a wildcard bind)."""
        if scheduler is not None:
            scheduler._siblings.append(self)

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def owns_engine(self) -> bool:
        """True when this protocol starts/stops the engine and runs its timer."""
        return self._scheduler is None

    def startProtocol(self) -> None:
        """Allow broadcast if the engine wants it; the owner starts the engine."""
        self._running = True
        self._local_address = self._local()
        self._socket = getattr(self.transport, "socket", None)
        if getattr(self.engine, "wants_broadcast", False):
            try:
                self.transport.setBroadcastAllowed(True)
            except Exception:
                self.log.failure("Cannot allow broadcast on {host}", host=self._host())
        if self.owns_engine:
            self._guarded(lambda: self.engine.start(self._reactor.seconds()), "start")
        self._reschedule()

    def stopProtocol(self) -> None:
        """Cancel the timer; the owner stops the engine."""
        self._running = False
        self._socket = None
        self._cancel_timer()
        if self.owns_engine:
            try:
                self.engine.stop()
            except Exception:
                self._count("internal_error")
                self.log.failure("Engine failed to stop")

    # -- packets in -------------------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Stamp, hand to the engine, send its answers, re-arm the timer.  Never raises."""
        self.read_datagrams(Datagrams([(datagram, addr)]).recvfrom, len(datagram), 1)

    def read_datagrams(self, recvfrom: Callable[[int], tuple[bytes, Any]], size: int,
                       limit: int, destinations: Destinations | None = None, *,
                       stamp: Callable[[], int | None] | None = None) -> None:
        """Receive with ``recvfrom(size)`` and handle each datagram as
        :meth:`datagramReceived` does, until nothing is left (the errors on which Twisted's
        UDP port ends a read) or ``limit`` octets were read.  :class:`NTPPort` reads its
        socket with this, one loop per readiness event, so that the busy server answers its
        common requests without a Python call per layer.  With ``destinations`` (a wildcard
        bind) the loop reads with its ``recvmsg`` instead: each datagram's local address
        and the ancillary data that answers from it (:meth:`Destinations.read`).  With
        ``stamp`` (datagrams read before, :class:`~ntpauto.batch.Datagrams`) each datagram's
        receive timestamp is ``stamp()`` where it gives one.  Raises only what the socket
        raises otherwise, as Twisted's port does."""
        now_of = self.clock.now
        seconds = self._reactor.seconds
        fast = self._answer_fast
        local = self._local_address
        sock = self._socket
        send = sock.sendto if sock is not None else self._send_one
        recvmsg = via = None  # via: the ancillary data that answers from the datagram's local
        if destinations is not None:
            recvmsg, ancsize = destinations.recvmsg, destinations.size
            cached, parse = destinations.cached, destinations.read
            plain = (local, None)
        read = 0
        while read < limit:
            try:
                if recvmsg is None:
                    datagram, addr = recvfrom(size)
                else:
                    datagram, ancdata, _, addr = recvmsg(size, ancsize)
                    # The destination, known by its raw ancillary value after the first.
                    local, via = ancdata and (cached(ancdata[0][2]) or parse(ancdata)) or plain
            except OSError as exc:
                if exc.errno in _READ_DONE:
                    return
                raise
            read += len(datagram)
            reply = None
            answered_fast = False  # the busy server's common case: timers unchanged
            try:
                # First thing, the receive timestamp (unix_to_ntp, written out).
                rx = stamp and stamp() or \
                    int((now_of() + NTP_UNIX_OFFSET) * 4294967296.0) & _MASK64
                source = addr if len(addr) == 2 else (addr[0], addr[1])  # IPv6: drop flow/scope
                now = seconds()
                if fast is not None:
                    reply = fast(datagram, source, rx, now, local)
                    answered_fast = reply is not None
                if not answered_fast:
                    out = self._receive(datagram, source, rx, now, local)
                    offload = getattr(self.engine, "offload", None)
                    if offload is not None and offload.outbox:
                        out = out + self._dispatch(offload.take(), now, via)
                    if len(out) == 1 and out[0].address is source:
                        reply = out[0].data  # answer the sender at the address it came from
                    elif out:
                        self._send(out, source, via)
            except Exception:
                self._count("internal_error")
                self.log.failure("Failed to process a datagram from {source}", source=addr)
            if reply:  # b"": answered by dropping it
                try:
                    if via is None:
                        send(reply, addr)  # the kernel's address: Twisted's validation skipped
                    else:
                        sock.sendmsg((reply,), via, 0, addr)
                except OSError as exc:
                    self._send_failed(exc, addr)
            if answered_fast:
                continue
            generation = getattr(self.engine, "timer_generation", None)
            if generation is None or generation != self._timer_generation:
                self._timer_generation = generation
                self._reschedule()

    def wake(self) -> None:
        """The engine's next wakeup moved outside a datagram or a timer (an NTS-KE exchange
        ended): re-arm the timer."""
        self._reschedule()

    def count_kernel_drops(self, count: int) -> None:
        """``count`` more datagrams the kernel dropped at this port's socket (its receive
        buffer was full): the engine's ``kernel_drops`` counter."""
        self._count("kernel_drops", count)

    # -- identity responses computed by the worker (ntpauto.autokey.offload) -----------------

    def _dispatch(self, jobs: list[Any], now: float, via: list[Any] | None = None
                  ) -> list[Any]:
        """Send each job to the worker; a job it cannot take is answered here, at once
        (the reactor blocks for it, as without a worker).  The datagrams answered here.
        ``via``: the ancillary data that answers the request from its local address."""
        worker = self.worker
        out: list[Any] = []
        for job in jobs:
            if worker is not None and worker.submit(job, self._identity_done):
                if via is not None:
                    replies = self._job_replies
                    if len(replies) >= MAX_JOB_REPLIES:
                        del replies[next(iter(replies))]  # a job whose answer never came
                    replies[job.job_id] = (job.source, via)
                continue
            out += self.engine.finish_identity(job.job_id,
                                               *self.engine.compute_identity(job), now)
        return out

    def _identity_done(self, job_id: int, status: int, seconds: float,
                       payload: bytes) -> None:
        """The worker's result: the reply goes out from this port.  Never raises."""
        source, via = self._job_replies.pop(job_id, (None, None))
        try:
            out = self.engine.finish_identity(job_id, status, seconds, payload,
                                              self._reactor.seconds())
        except Exception:
            self._count("internal_error")
            self.log.failure("Failed to finish an identity response")
            return
        if out:
            self._send(out, source, via)

    def _send_one(self, data: bytes, addr: Any) -> None:
        """Send through the transport (a transport without a socket: tests, other reactors)."""
        self._send((_Reply(data, addr),))

    # -- timers -----------------------------------------------------------------------------

    def _reschedule(self) -> None:
        """Arm one ``callLater`` at ``engine.next_wakeup()`` (delegated to the scheduler)."""
        if self._scheduler is not None:
            self._scheduler._reschedule()
            return
        if not self._running:
            return
        try:
            wakeup = self.engine.next_wakeup()
        except Exception:
            self._count("internal_error")
            self.log.failure("Engine failed to give its next wakeup")
            wakeup = None
        if wakeup is None:
            self._cancel_timer()
            return
        if self._fired_at is not None and wakeup <= self._fired_at:
            # The engine did not move its deadline past the timers it just ran: re-fire a
            # little later rather than spin the reactor.
            wakeup = self._fired_at + STALE_WAKEUP_DELAY
        timer = self._timer
        if timer is not None and timer.active():
            if wakeup == self._timer_at:
                return  # the common case for a busy server: nothing to move
            timer.reset(max(0.0, wakeup - self._reactor.seconds()))
        else:
            self._timer = self._reactor.callLater(
                max(0.0, wakeup - self._reactor.seconds()), self._fire)
        self._timer_at = wakeup

    def _cancel_timer(self) -> None:
        timer, self._timer, self._timer_at = self._timer, None, None
        if timer is not None and timer.active():
            timer.cancel()

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._fired_at = now = self._reactor.seconds()
        try:
            out = self.engine.fire_timers(now)
        except Exception:
            self._count("internal_error")
            self.log.failure("Engine failed in its timers")
            out = ()
        self._route(out)
        self._reschedule()

    # -- packets out ------------------------------------------------------------------------

    def _route(self, datagrams: Iterable[Any]) -> None:
        """Send timer output through the first port of the destination's address family."""
        if not self._siblings:
            self._send(datagrams)
            return
        for datagram in datagrams:
            want_v6 = ":" in datagram.address[0]
            chosen = self
            for proto in (self, *self._siblings):
                local = proto._local_address
                if proto.transport is not None and local and (":" in local[0]) == want_v6:
                    chosen = proto
                    break
            chosen._send((datagram,))

    def _send(self, datagrams: Iterable[Any], source: Any = None,
              via: list[Any] | None = None) -> None:
        """Write each datagram; those to ``source`` leave from the local address ``via``
        names (its ancillary data), when given."""
        transport = self.transport
        if transport is None:
            return
        for datagram in datagrams:
            try:
                if via is not None and datagram.address == source and self._socket is not None:
                    self._socket.sendmsg((datagram.data,), via, 0, datagram.address)
                else:
                    transport.write(datagram.data, datagram.address)
            except Exception as exc:
                self._send_failed(exc, datagram.address)

    def _send_failed(self, exc: Exception, destination: Any) -> None:
        self._count("send_error")
        kind = type(exc).__name__ + (f"/{exc.errno}" if isinstance(exc, OSError) else "")
        if kind in self._send_errors_seen:
            self.log.debug("Cannot send to {destination}: {error}",
                           destination=destination, error=exc)
        else:
            self._send_errors_seen.add(kind)
            self.log.warn("Cannot send to {destination}: {error} (further errors of "
                          "this kind are logged at debug level)",
                          destination=destination, error=exc)

    # -- helpers ----------------------------------------------------------------------------

    def _guarded(self, call: Any, what: str) -> None:
        try:
            out = call()
        except Exception:
            self._count("internal_error")
            self.log.failure("Engine failed in {what}", what=what)
            return
        self._route(out or ())

    def _count(self, name: str, amount: int = 1) -> None:
        try:
            self.engine.counters[name] += amount
        except Exception:
            pass

    def _local(self) -> tuple[str, int] | None:
        try:
            host = self.transport.getHost()
            return (host.host, host.port)
        except Exception:
            return None

    def _host(self) -> str:
        local = self._local()
        return f"{local[0]}:{local[1]}" if local else "?"


class NTPPort(udp.Port):
    """Twisted's UDP port, read by :meth:`NTPDatagramProtocol.read_datagrams` in one loop
    per readiness event (Twisted's own ``doRead`` makes a ``datagramReceived`` call per
    datagram): about 0.5 us less per reply on the busy server, measured by
    ``benchmarks/server_throughput.py``.  On a wildcard bind the loop reads each datagram's
    destination (``destinations``).  Before a read, once a second at most, the port adds
    the datagrams the kernel dropped since the last look to the protocol's
    ``kernel_drops``.  A protocol whose ``datagramReceived`` was replaced (a subclass, a
    wrapper) is read by Twisted's loop, so that it sees every datagram."""

    protocol: NTPDatagramProtocol
    destinations: Destinations | None = None
    batch: BatchPath | None = None
    """The socket's batched path (:mod:`ntpauto.batch`), made at the first read where it can
    answer for the protocol."""
    _batch_checked = False
    _drops_seen = 0
    _drops_due = -math.inf

    def _bindSocket(self) -> None:  # noqa: N802 - Twisted's name
        super()._bindSocket()
        host, port = self.socket.getsockname()[:2]
        if is_wildcard(host):
            destinations = Destinations(port)
            if destinations.enable(self.socket):
                self.destinations = destinations

    def doRead(self) -> None:
        protocol = self.protocol
        if self._drops_due <= self.reactor.seconds():
            self.count_drops()
        if getattr(protocol.datagramReceived, "__func__", None) is not _DATAGRAM_RECEIVED:
            super().doRead()
            return
        if not self._batch_checked:
            self._batch_checked = True
            self.batch = BatchPath.for_protocol(protocol, self.maxPacketSize, self.reactor,
                                                self.socket.fileno(), self.destinations)
        if self.batch is not None:
            self.batch.read(self.socket.fileno(), self.maxThroughput)
            return
        protocol.read_datagrams(self.socket.recvfrom, self.maxPacketSize, self.maxThroughput,
                                self.destinations)

    def count_drops(self) -> None:
        """Add the datagrams the kernel dropped since the last look to ``kernel_drops``;
        the next look a second from now (never again where the kernel does not say)."""
        drops = kernel_drops(self.socket)
        if drops is None:
            self._drops_due = math.inf
            return
        self._drops_due = self.reactor.seconds() + DROPS_INTERVAL
        if drops != self._drops_seen:
            self.protocol.count_kernel_drops((drops - self._drops_seen) % (1 << 32))
            self._drops_seen = drops


_DATAGRAM_RECEIVED = NTPDatagramProtocol.datagramReceived

log = Logger()


def listen_udp(reactor: Any, port: int, protocol: NTPDatagramProtocol,
               interface: str = "", receive_buffer: int = 0, *,
               quiet_cap: bool = False, adopt: Any = None) -> Any:
    """``reactor.listenUDP(port, protocol, interface=interface)`` with an :class:`NTPPort`
    where the reactor is a POSIX one (its ``listenUDP`` builds a ``udp.Port`` the same
    way); any other reactor listens with its own port.  ``adopt``: a bound socket to read
    instead (POSIX reactors only; the port reads a duplicate of it, the caller closes its
    own).  A ``receive_buffer`` of so many bytes is asked for (0: the system's default);
    when the kernel grants less, that is logged as a warning (``quiet_cap``: at info level,
    for a default size)."""
    if adopt is not None:
        listening = NTPPort._fromListeningDescriptor(reactor, adopt.fileno(), adopt.family,
                                                     protocol, 8192)
        listening.startListening()
    elif not isinstance(reactor, PosixReactorBase):
        listening = reactor.listenUDP(port, protocol, interface=interface)
    else:
        listening = NTPPort(port, protocol, interface, reactor=reactor)
        listening.startListening()
    sock = getattr(listening, "socket", None)
    if receive_buffer and sock is not None:
        granted = set_receive_buffer(sock, receive_buffer, force=privileged())
        if granted < receive_buffer:
            host = listening.getHost()
            (log.info if quiet_cap else log.warn)(
                "UDP receive buffer of {host}:{port}: asked for {asked} bytes, the kernel "
                "granted {granted} (it caps the size at net.core.rmem_max unless the daemon "
                "starts as root)", host=host.host, port=host.port, asked=receive_buffer,
                granted=granted)
    return listening
