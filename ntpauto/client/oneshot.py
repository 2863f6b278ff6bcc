"""One query, checked by the daemon's own code: an in-memory engine with one association.

:func:`query` builds, in code, the configuration of a node with a single association
``server HOST`` (with ``key N``, ``autokey [ident GROUP]`` or ``nts``), runs its engine over a UDP
port of its own connected to the server, and waits for the engine to take one time sample.
Every reply passes exactly the receive path the daemon's packets pass
(:mod:`ntpauto.receive`, :mod:`ntpauto.autokey.glue`): there is no second verifier here,
only the decision of when to stop and why.

Pacing.  The engine's poll process would send one request per poll interval; the query
sends its first request at once and, through the association's ``on_reply`` hook, each
next one as soon as the previous reply was accepted, so that an Autokey dance (ASSOC, CERT,
identity, COOK, then the time request) runs back to back.  A request left unanswered is sent
again after :data:`RETRY` seconds, doubling up to :data:`MAX_RETRY`.  A server that
rate-limits drops requests that come too fast (ntpd and ntpauto: ``discard``), so once a
request went unanswered, or a RATE kiss came, requests are spaced :data:`PACE` seconds
apart and :attr:`Outcome.paced` says so.

Stopping.  After each datagram the engine processed, in this order: a crypto-NAK that
answers our request (:class:`CryptoNAK`); a failed Autokey check (the verdict decides the
type: identity, certificate, other); a time sample (Autokey: every certificate of the trail
must be valid at the server's proven time); an accepted reply that is a kiss-o'-death or
from an unsynchronised server; an Autokey trail that ends at an untrusted certificate; no
progress in :data:`STALL_REPLIES` accepted replies.  An identity request we cannot make (no
client parameters for the server's scheme) fails as soon as the engine sends the NULL
request instead.  A packet that fails authentication never ends the query (anyone could
send one): the engine drops it and the query waits for the genuine reply, or times out
saying how many were refused.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Any

from attrs import frozen
from twisted.internet import defer, udp
from twisted.internet.posixbase import PosixReactorBase
from twisted.python.failure import Failure

from ntpauto.auth.keys import KeyStore, load_keys
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.status import Flag
from ntpauto.changes import AUTOKEY_REFUSED
from ntpauto.client import errors
from ntpauto.client.sample import Sample, sample_of
from ntpauto.config import AssociationConfig, Config, ListenConfig
from ntpauto.engine import Engine
from ntpauto.events import Event
from ntpauto.interfaces import IClock
from ntpauto.ntp.clocks import SystemClock
from ntpauto.ntp.peer import MAX_STRATUM, Association
from ntpauto.nts import ke_client
from ntpauto.nts.ke_client import DEFAULT_PORT as NTS_KE_PORT
from ntpauto.protocol import NTPDatagramProtocol
from ntpauto.receive import MIN_POLL
from ntpauto.verdict import Check, Verdict
from ntpauto.wire.packet import KISS_DENY, KISS_RATE, KISS_RSTR, LEAP_UNSYNC, Header

__all__ = ["DEFAULT_TIMEOUT", "MAX_RETRY", "PACE", "RETRY", "STALL_REPLIES", "AutokeyKeys",
           "ConnectedPort", "Outcome", "listen_connected", "local_address_for", "query", "resolve",
           "query_outcome"]

DEFAULT_TIMEOUT = 10.0
"""Seconds a query waits for its sample by default."""
RETRY = 1.0
"""Seconds before an unanswered request is sent again (doubled at each retry)."""
MAX_RETRY = 16.0
"""Longest wait before sending an unanswered request again."""
PACE = 8.0
"""Seconds between requests once the server seems to rate-limit: the average spacing ntpd and
ntpauto allow a source by default (``discard average 3``)."""
STALL_REPLIES = 3
"""Accepted replies in a row that move the Autokey dance no further before the query gives up."""
POLL = MIN_POLL
"""The poll exponent our requests carry (what a RATE kiss echoes back)."""
_KISSES = (KISS_RATE, KISS_DENY, KISS_RSTR)
"""The kiss codes the engine acts upon; other stratum-0 replies mean "not synchronised"."""


@frozen
class AutokeyKeys:
    """A client's Autokey key material, as the daemon's ``crypto`` and ``keysdir`` lines give
    it: the keys directory, the host name (``crypto host``, default the system's), the
    password of its private keys (``crypto pw``, default the host name), the identity
    group (``ident``: the group whose client parameters prove the server; None: TC) and the
    session-key digest (``crypto digest``)."""

    keysdir: str | os.PathLike[str]
    host: str | None = None
    password: str | None = None
    ident: str | None = None
    digest: str = "md5"

    def load(self) -> HostCredentials:
        """The host credentials (KeyFileError names the file that is wrong)."""
        return load_host(self.keysdir, host=self.host, password=self.password,
                         ident=self.ident, digest=self.digest)


@frozen
class Outcome:
    """A query's result with how it went: the :class:`Sample`, the requests sent, the
    datagrams received and whether it had to pace itself (``paced``: the reason)."""

    sample: Sample
    requests: int
    replies: int
    paced: str | None = None
    seconds: float = 0.0


def query(reactor: Any, host: str, port: int = 123, *, key: int | None = None,
          keys: KeyStore | str | os.PathLike[str] | None = None,
          autokey: AutokeyKeys | HostCredentials | None = None,
          nts: bool = False, ntsport: int = NTS_KE_PORT,
          ntstrustedcerts: str | os.PathLike[str] | None = None,
          timeout: float = DEFAULT_TIMEOUT, clock: IClock | None = None,
          tap: Any = None) -> defer.Deferred[Sample]:
    """Ask ``host`` for the time once; the Deferred fires with a :class:`Sample`, or fails
    with a :class:`~ntpauto.client.errors.QueryFailed` subclass.

    ``key`` and ``keys`` (a :class:`~ntpauto.auth.keys.KeyStore` or an ``ntp.keys`` path):
    a symmetric-key query.  ``autokey``: the client's key material (:class:`AutokeyKeys`, or
    loaded :class:`~ntpauto.autokey.host.HostCredentials`); the whole Autokey client dance
    runs first.  ``nts``: NTS (RFC 8915): NTS-KE with ``host`` on TCP ``ntsport`` first (its
    certificate checked against ``ntstrustedcerts``, PEM CA certificates, or the system's
    trust store), then NTS-protected requests (to the NTP server and port the NTS-KE server
    negotiates, ``port`` otherwise).  ``clock`` stamps packets (default the host clock, only
    read).  ``tap(data)`` sees every datagram received, before the engine (for
    diagnostics)."""
    d = query_outcome(reactor, host, port, key=key, keys=keys, autokey=autokey, nts=nts,
                      ntsport=ntsport, ntstrustedcerts=ntstrustedcerts, timeout=timeout,
                      clock=clock, tap=tap)
    return d.addCallback(lambda outcome: outcome.sample)


def query_outcome(reactor: Any, host: str, port: int = 123, *, key: int | None = None,
                  keys: KeyStore | str | os.PathLike[str] | None = None,
                  autokey: AutokeyKeys | HostCredentials | None = None,
                  nts: bool = False, ntsport: int = NTS_KE_PORT,
                  ntstrustedcerts: str | os.PathLike[str] | None = None,
                  timeout: float = DEFAULT_TIMEOUT, clock: IClock | None = None,
                  tap: Any = None) -> defer.Deferred[Outcome]:
    """:func:`query`, firing with the :class:`Outcome` (how it went) instead."""
    try:
        if nts and (key is not None or autokey is not None):
            raise ValueError("nts does not go with a key or autokey")
        store = _key_store(key, keys)
        credentials = autokey.load() if isinstance(autokey, AutokeyKeys) else autokey
    except Exception:
        return defer.fail()
    ident = autokey.ident if isinstance(autokey, AutokeyKeys) else \
        getattr(autokey, "ident", None)

    def start(address: str) -> defer.Deferred[Outcome]:
        return _OneShot(reactor, (address, port), host=host, keys=store, keyid=key,
                        credentials=credentials, ident=ident, timeout=timeout,
                        clock=clock if clock is not None else SystemClock(), tap=tap,
                        nts=_Nts(ntsport, ntstrustedcerts) if nts else None).start()

    return resolve(reactor, host).addCallback(start)


def _key_store(key: int | None, keys: Any) -> KeyStore | None:
    if key is None:
        if keys is not None:
            raise ValueError("keys without key: which key ID?")
        return None
    if keys is None:
        raise ValueError(f"key {key} without keys")
    store = keys if isinstance(keys, KeyStore) else KeyStore(load_keys(keys), [key])
    if store.get(key) is None:
        raise ValueError(f"no key {key} in the keys")
    return store


def resolve(reactor: Any, host: str) -> defer.Deferred[str]:
    """``host`` as an IP address string (names through the reactor's resolver, IPv4)."""
    try:
        return defer.succeed(str(ipaddress.ip_address(host)))
    except ValueError:
        return reactor.resolve(host)


def local_address_for(address: tuple[str, int]) -> str:
    """The local address the system sends to ``address`` from (a UDP connect sends
    nothing)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        return sock.getsockname()[0]


@frozen
class _Nts:
    """An NTS query's NTS-KE port and trusted CA certificates."""

    port: int
    trusted: str | os.PathLike[str] | None


class _QueryEngine(Engine):
    """The query's engine: the daemon's, telling the query what each step did."""

    oneshot: _OneShot

    def receive_full(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                     local: tuple[str, int] | None = None) -> list[Any]:
        out = super().receive_full(data, source, rx, now, local)
        self.oneshot.received(now)
        return out

    def fire_timers(self, now: float) -> list[Any]:
        out = super().fire_timers(now)
        if out:
            self.oneshot.sent(now)
        return out


class _QueryProtocol(NTPDatagramProtocol):
    """The engine's protocol, on a connected port: an ICMP port unreachable ends the query."""

    oneshot: _OneShot

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        tap = self.oneshot.tap
        if tap is not None:
            tap(datagram)
        super().datagramReceived(datagram, addr)

    def connectionRefused(self) -> None:  # noqa: N802 - Twisted's name
        self.socket_error(errno.ECONNREFUSED)

    def socket_error(self, code: int) -> None:
        """The system reported ``code`` (an ICMP error) on the connected socket."""
        oneshot = self.oneshot
        if code == errno.ECONNREFUSED:
            oneshot.fail(errors.PortUnreachable(*oneshot.where, errors.PORT_UNREACHABLE))
        else:
            oneshot.fail(errors.QueryFailed(*oneshot.where, os.strerror(code)))


class ConnectedPort(udp.Port):
    """Twisted's UDP port, except that an error pending on the connected socket (an ICMP
    error, which epoll reports as a hang-up without data) is the protocol's to handle
    (its ``socket_error(code)``), not the end of the port."""

    protocol: Any

    def readConnectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.protocol.socket_error(code)
            return
        super().readConnectionLost(reason)


def listen_connected(reactor: Any, protocol: Any, interface: str,
                     address: tuple[str, int]) -> Any:
    """A UDP port on ``interface`` (any port number) connected to ``address``: a
    :class:`ConnectedPort` on a POSIX reactor, the reactor's own otherwise.  ``protocol``
    has ``socket_error(code)`` and learns of a port unreachable either way."""
    if isinstance(reactor, PosixReactorBase):
        port = ConnectedPort(0, protocol, interface, reactor=reactor)
        port.startListening()
    else:
        port = reactor.listenUDP(0, protocol, interface=interface)
    port.connect(*address)
    return port


class _OneShot:
    """One query in flight (see the module docstring)."""

    def __init__(self, reactor: Any, address: tuple[str, int], *, host: str,
                 keys: KeyStore | None, keyid: int | None,
                 credentials: HostCredentials | None, ident: str | None, timeout: float,
                 clock: IClock, tap: Any, nts: _Nts | None = None) -> None:
        self.reactor = reactor
        self.address = address
        self.where = (host, address[1])
        self.timeout = timeout
        self.tap = tap
        local = local_address_for(address)
        # The configured address is the name as given: an NTS-KE server's certificate
        # must carry it; the engine's association is at the address it resolved to.
        conf = AssociationConfig("server", host, address[1], minpoll=POLL,
                                 maxpoll=POLL, key=keyid, autokey=credentials is not None,
                                 ident=ident, nts=nts is not None,
                                 ntsport=nts.port if nts else NTS_KE_PORT)
        config = Config(path="<ntpauto.client>", associations=(conf,),
                        listen=(ListenConfig(local),), port=0, enabled=frozenset())
        node = AutokeyNode(credentials, Responder(credentials)) if credentials else None
        self.engine = _QueryEngine(config, clock, keys=keys, autokey=node,
                                   local_address=local,
                                   resolve=lambda name, port: address[0])
        self.nts = nts
        self.engine.oneshot = self
        self.local = local
        self.deferred: defer.Deferred[Outcome] = defer.Deferred(lambda _: self._close())
        self.port: Any = None
        self.assoc: Association | None = None
        self.header: Header | None = None
        self.refused: list[Verdict] = []
        self.requests = self.replies = 0
        self.retry = RETRY
        self.paced: str | None = None
        self.awaiting = False
        self.last_sent: float | None = None
        self.status_sent = 0
        self.progress: tuple[int, int] | None = None
        self.stalled = 0
        self.counts: dict[str, int] = {}
        self.started = 0.0
        self._timer: Any = None
        self._stop_watching: Any = None
        self._done = False

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> defer.Deferred[Outcome]:
        """Start the engine, bind and connect the port; the first request leaves at once."""
        reactor, engine = self.reactor, self.engine
        self.started = now = reactor.seconds()
        engine.start(now)
        [assoc] = engine.associations.values()
        self.assoc = assoc
        assoc.nextdate = now
        assoc.on_reply = self._reply
        self.counts = dict(engine.counters)
        self._stop_watching = engine.changes.observe(self._refusal, [AUTOKEY_REFUSED])
        protocol = _QueryProtocol(engine, engine.clock, reactor)
        protocol.oneshot = self
        if self.nts is not None:
            engine.nts.starter = ke_client.starter(
                engine, reactor, trusted=self.nts.trusted, wake=protocol.wake,
                failed=self._ke_failed)
        try:
            if self.nts is None:
                self.port = listen_connected(reactor, protocol, self.local, self.address)
            else:  # the NTS-KE server may negotiate another NTP server or port
                self.port = reactor.listenUDP(0, protocol, interface=self.local)
        except Exception:
            self._close()
            return defer.fail()
        self._timer = reactor.callLater(self.timeout, self._timed_out)
        return self.deferred

    def fail(self, error: errors.QueryFailed) -> None:
        """End the query with ``error``."""
        self._finish(Failure(error))

    def _finish(self, result: Outcome | Failure) -> None:
        if self._done:
            return
        self._done = True
        closed = self._close()
        closed.addBoth(lambda _: self.deferred.callback(result))

    def _close(self) -> defer.Deferred[Any]:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        if self.assoc is not None:
            self.assoc.on_reply = None
        port, self.port = self.port, None
        if port is None:
            self.engine.stop()
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    # -- what the engine did ------------------------------------------------------------------

    def sent(self, now: float) -> None:
        """The engine sent a request: when to send it again if no reply comes."""
        assoc = self.assoc
        if self.awaiting:
            self.retry = min(self.retry * 2, MAX_RETRY)
            if self.replies:  # the server is there: it may be dropping what comes too fast
                self.paced = self.paced or "a request sent at once went unanswered"
        self.awaiting = True
        self.requests += 1
        self.last_sent = now
        assoc.nextdate = now + self.retry
        self.engine.timers_changed()
        if assoc.autokey is not None:
            state = assoc.autokey.state
            self.status_sent = state.status
            if state.status & Flag.CERT and not state.status & Flag.VRFY \
                    and not state.challenge_outstanding:
                group = f" of group {state.ident}" if state.ident else ""
                scheme = (state.scheme_name or "?").upper()
                self.fail(errors.IdentityFailed(
                    *self.where, f"{state.peer_name} proves its identity with {scheme}; we "
                    f"hold no client parameters for it{group}"))

    def _reply(self, assoc: Association, header: Header, now: float) -> None:
        """The ``on_reply`` hook: a reply passed every check; the next request goes now (or
        once the pace allows)."""
        self.header = header
        self.awaiting = False
        self.retry = RETRY
        due = now
        if self.paced and self.last_sent is not None:
            due = max(now, self.last_sent + PACE)
        assoc.nextdate = due

    def _ke_failed(self, reason: str) -> None:
        """The NTS-KE exchange failed: so does the query (no retry in one query)."""
        self.fail(errors.NtsFailed(*self.where, f"NTS-KE with {self.where[0]} port "
                                   f"{self.nts.port}: {reason}"))

    def _refusal(self, event: dict[str, Any]) -> None:
        self.refused.append(event["verdict"])

    def received(self, now: float) -> None:
        """After each datagram the engine processed: is the query over?"""
        if self._done:
            return
        self.replies += 1
        header, self.header = self.header, None
        counters = self.engine.counters
        if self._grew(counters, "cryptonak"):
            self.fail(errors.CryptoNAK(*self.where, "crypto-NAK: the server cannot verify "
                                       "our request's MAC"))
            return
        if self.refused:
            self.fail(self._autokey_failure(self.refused[0]))
            return
        if self._grew(counters, "samples") and header is not None:
            self._sampled(header, now)
            return
        if header is None:
            return
        if header.stratum == 0 and header.refid in _KISSES:
            self._kissed(header, now)
        elif header.leap == LEAP_UNSYNC or header.stratum >= MAX_STRATUM \
                or header.stratum == 0:
            code = header.refid.rstrip(b"\0").decode("ascii", "replace")
            self.fail(errors.ServerUnsynchronised(
                *self.where, f"the server's clock is not synchronised (leap {header.leap}, "
                f"stratum {header.stratum}, {code or 'no code'})"))
        elif self.assoc.autokey is not None:
            self._check_dance()

    def _grew(self, counters: Any, name: str) -> bool:
        before = self.counts.get(name, 0)
        self.counts[name] = counters[name]
        return counters[name] > before

    def _sampled(self, header: Header, now: float) -> None:
        sample = sample_of(self.assoc, header)
        if sample.autokey is not None:
            for link in sample.autokey.trail:
                if not link.not_before.timestamp() <= sample.server_time \
                        <= link.not_after.timestamp():
                    self.fail(errors.CertificateExpired(
                        *self.where, f"certificate {link.subject} (issuer {link.issuer}) is "
                        f"valid {link.not_before:%Y-%m-%d %H:%M} to "
                        f"{link.not_after:%Y-%m-%d %H:%M} UTC, not at the server's time"))
                    return
        self._finish(Outcome(sample, self.requests, self.replies, self.paced,
                             now - self.started))

    def _kissed(self, header: Header, now: float) -> None:
        code = header.refid.decode("ascii", "replace")
        if header.refid == KISS_RATE and self.engine.associations \
                and self.assoc.nextdate < self.started + self.timeout:
            self.paced = f"the server sent a RATE kiss (poll {header.poll})"
            return
        self.fail(errors.KissOfDeath(*self.where, code))

    def _check_dance(self) -> None:
        """An accepted reply of the dance that failed nothing: a trail that ends at an
        untrusted certificate, or no progress for :data:`STALL_REPLIES` replies."""
        state = self.assoc.autokey.state
        trail = state.trail
        if trail and trail[-1][0] == trail[-1][1] and not state.status & Flag.CERT:
            self.fail(errors.CertificateUntrusted(
                *self.where, f"the trail ends at {trail[-1][0]}, a self-signed certificate "
                "that is not trusted"))
            return
        progress = (state.status, len(trail))
        self.stalled = self.stalled + 1 if progress == self.progress else 0
        self.progress = progress
        if self.stalled + 1 < STALL_REPLIES:
            return
        if not state.status & Flag.CERT and state.status:
            self.fail(errors.CertificateUntrusted(
                *self.where, f"the server has no certificate for {state.issuer}: the trail "
                "cannot reach a trusted host"))
        else:
            self.fail(errors.AutokeyFailed(*self.where, "the Autokey dance makes no progress "
                                           f"at {_stage(self.status_sent)}"))

    def _autokey_failure(self, verdict: Verdict) -> errors.QueryFailed:
        """The typed failure for the first failed Autokey check."""
        text = f"Autokey {verdict}"
        if verdict.check is Check.IDENTITY or self.status_sent & Flag.CERT \
                and not self.status_sent & Flag.VRFY and verdict.check is not Check.CERTIFICATE:
            return errors.IdentityFailed(*self.where, text, verdict)
        if verdict.check is Check.CERTIFICATE:
            if verdict.event in (Event.PER, Event.SRV):
                return errors.CertificateExpired(*self.where, text, verdict)
            return errors.CertificateUntrusted(*self.where, text, verdict)
        return errors.AutokeyFailed(*self.where, text, verdict)

    def _timed_out(self) -> None:
        self._timer = None
        counters = self.engine.counters
        assoc = self.assoc
        stage = "time" if assoc.autokey is None else _stage(assoc.autokey.state.status)
        if assoc.nts is not None and assoc.nts.keys is None:
            stage = "NTS-KE"
        if not self.replies:
            message = errors.no_answer(self.timeout)
        else:
            message = f"no time sample within {self.timeout:g} s"
            if assoc.autokey is not None:
                message += f": the Autokey dance stopped at {stage}"
        dropped = counters["badauth"]
        if dropped:
            message += f" ({dropped} replies failed authentication)"
        if self.paced:
            message += f"; paced: {self.paced} (the server may rate-limit: allow more time)"
        self.fail(errors.QueryTimeout(*self.where, message, seconds=self.timeout, stage=stage))


def _stage(status: int) -> str:
    """The Autokey step a status word waits on (client mode)."""
    if not status:
        return "ASSOC"
    if not status & Flag.CERT:
        return "CERT"
    if not status & Flag.VRFY:
        return "identity"
    if not status & Flag.COOK:
        return "COOK"
    return "time"
