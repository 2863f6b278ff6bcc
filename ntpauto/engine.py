"""The sans-I/O NTP node: associations, the on-wire protocol, the server and the system process.

Bytes, addresses and times go in; datagrams to send and the next timer deadline come out.
Nothing here touches a socket or a reactor (DESIGN.md principle 1).  Two clocks are used:
``now`` arguments are the reactor's seconds (intervals, polls, timeouts) and the injected
:class:`~ntpauto.interfaces.IClock` stamps packets (RFC 5905 sections 8-11).

Packet path (RFC 5905 section 9.2 and appendix A.5.1): parse (malformed: drop, counter),
restrict, authenticate (symmetric key MAC, crypto-NAK), dispatch by mode: stateless server
reply for client packets; the matching association otherwise, mobilising symmetric passive
and broadcast client associations on demand.  Association packets pass TEST1 (duplicate),
TEST2 (origin), TEST3 (zero transmit), authentication, kiss codes, TEST6 (unsynchronised)
and TEST7 (header distance) before the sample enters the clock filter and the system process
(selection, cluster, combine, then optionally the discipline).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
from attrs import frozen
from twisted.logger import Logger

from ntpauto import mode6
from ntpauto.auth.keys import KeyStore, load_keys
from ntpauto.autokey.amplification import ExchangeTable, cut_reply
from ntpauto.autokey.association import AutokeyAssociation, ProtocolError, group_gate
from ntpauto.autokey.budget import BudgetExceeded, PrivateKeyBudget
from ntpauto.autokey.errors import AutokeyError, FieldError
from ntpauto.autokey.fields import Field
from ntpauto.autokey.fields import decode as decode_field
from ntpauto.autokey.offload import (
    LOST,
    IdentityJob,
    IdentityOffload,
    answer,
    offloadable_schemes,
)
from ntpauto.autokey.session import AutokeyNode, AutokeySession
from ntpauto.autokey.status import Flag as AutokeyFlag
from ntpauto.autokey.status import flag_names
from ntpauto.config import AssociationConfig, Config, ConfigError, RefclockConfig
from ntpauto.counters import Counters
from ntpauto.fastpath import FastServer
from ntpauto.interfaces import IClock
from ntpauto.ntp.constants import MAXDISP, MAXDIST, MINDISP, NSTAGE, PHI
from ntpauto.ntp.discipline import Discipline, DisciplineAction, read_drift
from ntpauto.ntp.peer import (
    BCOUNT,
    BTIME,
    HMODE_BCLIENT,
    UNREACH,
    UNREACH_EPHEMERAL,
    VOLLEY,
    Association,
    Flash,
)
from ntpauto.ntp.restrict import RateLimiter, RestrictList
from ntpauto.ntp.select import Candidate, root_distance, select
from ntpauto.wire.packet import (
    CRYPTO_NAK,
    KISS_DENY,
    KISS_RATE,
    KISS_RSTR,
    LEAP_UNSYNC,
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_CONTROL,
    MODE_PASSIVE,
    MODE_PRIVATE,
    MODE_SERVER,
    Header,
    MalformedPacket,
    Packet,
    parse,
)
from ntpauto.wire.timestamps import from_short, ntp_seconds, to_short, ts_diff, unix_to_ntp

log = Logger()

MAX_STRATUM = 16
MAX_POLL = 17
MIN_POLL = 3
MAX_EPHEMERAL = 256
"""Cap on mobilised (passive and broadcast client) associations."""

AUTH_NONE = 0
AUTH_OK = 1
AUTH_ERROR = 2
AUTH_NAK = 3
AUTH_AUTOKEY = 4
"""An Autokey key ID (> 65535): verified later with the session key of its context."""

MODE_NAMES = {
    MODE_ACTIVE: "active", MODE_PASSIVE: "passive", MODE_CLIENT: "client",
    MODE_SERVER: "server", MODE_BROADCAST: "broadcast", HMODE_BCLIENT: "bclient",
}
RX_MODE_COUNTERS = ("rx_mode0", "rx_active", "rx_passive", "rx_client", "rx_server",
                    "rx_broadcast", "rx_control", "rx_private")
"""Counter per wire mode (first octet & 7) of datagrams taking the full receive path; the
fast path's are all client requests (ntpauto.metrics derives the client total)."""


class Datagram(NamedTuple):
    """A datagram for the transport to send."""

    data: bytes
    address: tuple[str, int]


@frozen
class SystemVariables:
    """RFC 5905 section 11 system variables as last set by the clock update."""

    leap: int = LEAP_UNSYNC
    stratum: int = MAX_STRATUM
    refid: bytes = b"INIT"
    reftime: int = 0
    root_delay: float = 0.0
    root_dispersion: float = 0.0
    offset: float = 0.0
    jitter: float = 0.0
    peer: int | None = None
    epoch: float = 0.0
    """Reactor time of the last clock update (root dispersion grows from here)."""


def refid_for(address: str) -> bytes:
    """The refid a downstream host shows for this upstream: IPv4 octets, or the first four
    octets of the MD5 of an IPv6 address (RFC 5905 section 7.3)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ip.packed
    return hashlib.md5(ip.packed).digest()[:4]


def refid_text(refid: bytes, stratum: int) -> str:
    """A refid for display: ASCII for stratum 0/1 and kiss codes, dotted quad otherwise."""
    if stratum <= 1 or stratum >= MAX_STRATUM:
        return refid.rstrip(b"\x00").decode("ascii", "replace")
    return ".".join(str(b) for b in refid)


class Engine:
    """One NTP node.  Feed it datagrams and timer ticks; send what it returns."""

    def __init__(self, config: Config, clock: IClock, *, keys: KeyStore | None = None,
                 leap_table: Any = None, rng: random.Random | None = None,
                 frequency_ppm: float | None = None,
                 resolve: Callable[[str, int], str] | None = None,
                 autokey: AutokeyNode | None = None,
                 local_address: str | None = None) -> None:
        self.config = config
        self.clock = clock
        self.keys = keys if keys is not None else KeyStore()
        self.leap_table = leap_table
        self.rng = rng if rng is not None else random.SystemRandom()
        self.counters = Counters()
        self.restrict = RestrictList.from_config(config.restrictions)
        self.limiter = RateLimiter(config.discard_average, config.discard_minimum)
        self.exchanges = ExchangeTable()
        """Sources that completed a normal exchange (the amplification limit)."""
        self.precision = clock.precision()
        self._wakeup: float | None = None
        self._wakeup_valid = False
        self.timer_generation = 0
        """Bumped whenever the next wakeup may have moved (the transport re-arms its timer
        only then: the busy server's replies leave it alone)."""
        self._sys = SystemVariables()  # the setter (which invalidates _fast) from here on
        self.associations: dict[int, Association] = {}
        self._by_address: dict[tuple[str, int], Association] = {}
        self._resolve = resolve or _resolve_literal
        self.require_auth = "auth" in config.enabled
        self.broadcast_client = config.broadcast_client
        self.wants_broadcast = any(a.kind == "broadcast" for a in config.associations)
        self.discipline: Discipline | None = None
        if config.discipline_enabled:
            self.discipline = Discipline(clock, frequency_ppm=frequency_ppm)
        self._next_tick: float | None = None
        self.autokey = autokey
        self.local_address = local_address
        """Our address towards peers (Autokey session keys need it); None: learn it from the
        address packets arrive on."""
        self._last_update_epoch: float | None = None
        self._started = False
        self.offload: IdentityOffload | None = None
        """Identity responses computed by a worker (set with :meth:`enable_offload`)."""
        self.offload_codes: frozenset[int] = frozenset()
        self._fast = FastServer(self)
        self.answer_fast = self._fast.answer
        """``answer_fast(data, source, rx, now, local)``: the reply to a common client
        request (see :mod:`ntpauto.fastpath`), or None when :meth:`receive` must be called
        instead.  Never changes timers, so a transport need not re-arm after it."""

    def enable_offload(self, offload: IdentityOffload | None = None) -> dict[int, Any]:
        """Hand the stateless server's identity requests to ``offload`` (a new one by
        default) for the schemes a worker process can hold; the transport sends its jobs
        and calls :meth:`finish_identity` with each result.  Returns those schemes by
        message code, for the worker; with none, nothing is offloaded."""
        schemes = offloadable_schemes(self.autokey.host.server_schemes) if self.autokey \
            else {}
        if schemes:
            self.offload = offload if offload is not None else IdentityOffload()
            self.offload_codes = frozenset(schemes)
        return schemes

    def _timers_changed(self) -> None:
        self._wakeup_valid = False
        self.timer_generation += 1

    @property
    def sys(self) -> SystemVariables:
        """The system variables (RFC 5905 section 11)."""
        return self._sys

    @sys.setter
    def sys(self, value: SystemVariables) -> None:
        self._sys = value
        self._fast.invalidate()

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> list[Datagram]:
        """Mobilise the configured associations and schedule their first polls."""
        self._timers_changed()
        if self._started:
            return []
        self._started = True
        self.started = now
        """Reactor time the node started (mode 6 ``ss_uptime``)."""
        for refclock in self.config.refclocks:
            self._add_refclock(refclock, now)
        for conf in self.config.associations:
            self._add_configured(conf, now)
        if self.discipline is not None:
            self._next_tick = now + 1.0
        return self.fire_timers(now)

    def stop(self) -> None:
        """Forget every association (the service is going away)."""
        self._timers_changed()
        self.associations.clear()
        self._by_address.clear()
        self._next_tick = None

    def _new_associd(self) -> int:
        while True:
            associd = self.rng.randint(1, 65535)
            if associd not in self.associations:
                return associd

    def _mobilise(self, assoc: Association) -> Association:
        self.associations[assoc.associd] = assoc
        if not assoc.is_refclock:
            self._by_address[assoc.address] = assoc
        if assoc.is_refclock:
            log.info("reference clock {host} (association {associd}) stratum {stratum}",
                     host=assoc.address[0], associd=assoc.associd,
                     stratum=assoc.refclock_stratum)
        else:
            log.info("mobilised {mode} association {associd} with {host}:{port}",
                     mode=MODE_NAMES.get(assoc.hmode, assoc.hmode), associd=assoc.associd,
                     host=assoc.address[0], port=assoc.address[1])
        return assoc

    def _room_for_ephemeral(self) -> bool:
        """Room to mobilise one more passive or broadcast client association: fewer than
        MAX_EPHEMERAL, or after demobilising the oldest ephemeral association never reached
        (so a flood of spoofed sources cannot lock real peers out; counted ``evicted``)."""
        if len(self._by_address) < MAX_EPHEMERAL:
            return True
        for assoc in self.associations.values():
            if assoc.ephemeral and not assoc.reach:
                self.counters["evicted"] += 1
                self._demobilise(assoc, "association table full")
                return True
        return False

    def _demobilise(self, assoc: Association, reason: str) -> None:
        self.associations.pop(assoc.associd, None)
        if self._by_address.get(assoc.address) is assoc:
            del self._by_address[assoc.address]
        if self.sys.peer == assoc.associd:
            self.sys = attrs.evolve(self.sys, peer=None)
        self.counters["demobilised"] += 1
        log.info("demobilised association {associd} with {host}: {reason}",
                 associd=assoc.associd, host=assoc.address[0], reason=reason)

    def _add_refclock(self, conf: RefclockConfig, now: float) -> None:
        refid = conf.refid.encode("ascii", "replace")[:4].ljust(4, b"\x00")
        assoc = Association(
            associd=self._new_associd(), address=(conf.address, 0), hmode=MODE_CLIENT,
            minpoll=conf.minpoll, maxpoll=conf.maxpoll, hpoll=conf.minpoll,
            prefer=conf.prefer, refclock_stratum=conf.stratum, refclock_refid=refid,
            nextdate=now)
        self._mobilise(assoc)

    def _add_configured(self, conf: AssociationConfig, now: float) -> None:
        try:
            host = self._resolve(conf.address, conf.port)
        except OSError as e:
            raise ConfigError(self.config.path, conf.line,
                              f"cannot resolve {conf.address!r}: {e}") from e
        hmode = {"server": MODE_CLIENT, "peer": MODE_ACTIVE,
                 "broadcast": MODE_BROADCAST}[conf.kind]
        assoc = Association(
            associd=self._new_associd(), address=(host, conf.port), hmode=hmode,
            version=conf.version, minpoll=conf.minpoll, maxpoll=conf.maxpoll,
            hpoll=conf.minpoll, keyid=conf.key, prefer=conf.prefer, noselect=conf.noselect,
            iburst=conf.iburst, burst_option=conf.burst,
            # Spread first polls a little, as ntpd does, but keep them prompt.
            nextdate=now + self.rng.uniform(0.0, 1.0))
        if conf.autokey:
            if self.autokey is None:
                raise ConfigError(self.config.path, conf.line,
                                  "autokey needs the crypto directive (host credentials)")
            assoc.autokey = self._autokey_session(assoc, ident=conf.ident)
        self._mobilise(assoc)

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                local: tuple[str, int] | None = None) -> list[Datagram]:
        """Process one datagram received at NTP time ``rx`` (taken on arrival)."""
        reply = self._fast.answer(data, source, rx, now, local)
        if reply is not None:
            return [Datagram(reply, source)]
        return self.receive_full(data, source, rx, now, local)

    def receive_full(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                     local: tuple[str, int] | None = None) -> list[Datagram]:
        """:meth:`receive` without trying :attr:`answer_fast` first: for a transport that
        already did and got None."""
        self._timers_changed()
        return self._receive_slow(data, source, rx, now, local)

    def _receive_slow(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                      local: tuple[str, int] | None) -> list[Datagram]:
        counters = self.counters
        counters["received"] += 1
        counters[RX_MODE_COUNTERS[data[0] & 7] if data else "rx_empty"] += 1
        host = source[0]
        if source[1] == 0:
            counters["badlength"] += 1
            return []
        flags = self.restrict.flags_for(host)
        if "ignore" in flags:
            counters["restricted"] += 1
            return []
        if data and data[0] & 7 in (MODE_CONTROL, MODE_PRIVATE):
            # Mode 6 (ntpq) has its own 12-octet header; mode 7 is only counted.
            return [Datagram(d, source) for d in mode6.handle(self, data, flags, now)]
        try:
            pkt = parse(data)
        except MalformedPacket as e:
            counters[e.reason] += 1
            return []
        mode = pkt.header.mode
        if mode == 0:
            if pkt.header.version != 1:
                counters["badlength"] += 1
                return []
            mode = MODE_CLIENT
        auth, keyid = self._authenticate(pkt)
        if mode == MODE_CLIENT:
            if auth == AUTH_AUTOKEY:
                return self._serve_autokey(pkt, source, rx, now, flags, local)
            return self._serve(pkt, source, rx, now, flags, auth, keyid, MODE_SERVER)
        assoc = self._by_address.get((host, source[1]))
        if assoc is None:
            if mode == MODE_ACTIVE:
                return self._new_passive(pkt, source, rx, now, flags, auth, keyid, local)
            if mode == MODE_BROADCAST:
                return self._new_bclient(pkt, source, rx, now, flags, auth, keyid, local)
            counters["noassoc"] += 1
            return []
        if local is not None and not assoc.local_refid and mode != MODE_BROADCAST:
            assoc.local_refid = _refid_or_empty(local[0])
            if not _is_wildcard(local[0]):
                assoc.local_address = local[0]
        return self._process(assoc, pkt, mode, rx, now, flags, auth, keyid)

    def _authenticate(self, pkt: Packet) -> tuple[int, int | None]:
        keyid = pkt.keyid
        if keyid is None:
            return AUTH_NONE, None
        if not pkt.digest:
            return (AUTH_NAK, 0) if keyid == 0 else (AUTH_ERROR, keyid)
        if keyid > 65535:
            return AUTH_AUTOKEY, keyid
        if self.keys.verify(keyid, pkt.authenticated_part, pkt.digest):
            return AUTH_OK, keyid
        return AUTH_ERROR, keyid

    def _serve(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
               flags: frozenset[str], auth: int, keyid: int | None,
               reply_mode: int) -> list[Datagram]:
        """The stateless server reply (RFC 5905 A.5.3 fast_xmit)."""
        counters = self.counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if "notrust" in flags and auth != AUTH_OK:
            counters["restricted"] += 1
            return []
        if auth == AUTH_NAK:
            counters["badauth"] += 1
            return []
        request = pkt.header
        if "limited" in flags and self.limiter.check(source[0], now):
            counters["limited"] += 1
            if "kod" not in flags:
                return []
            counters["kodsent"] += 1
            kod = Header(LEAP_UNSYNC, request.version, reply_mode, 0, request.poll,
                         self.precision, 0, 0, KISS_RATE, 0, request.transmit, rx, rx)
            return [Datagram(kod.encode(), source)]
        data = self._reply(request.version << 3, request.poll & 0xFF,
                           request.transmit.to_bytes(8, "big"), rx, now, reply_mode)
        if auth == AUTH_OK:
            data += self.keys.sign(keyid, data)
        elif auth == AUTH_ERROR:
            counters["badauth"] += 1
            data += CRYPTO_NAK
        counters["served"] += 1
        return [Datagram(data, source)]

    def _reply(self, version_bits: int, poll: int, origin: bytes, rx: int, now: float,
               mode: int) -> bytes:
        """A server (or stateless passive) reply header (see FastServer.header)."""
        return self._fast.header(version_bits, poll, origin, rx, now, mode)

    # ------------------------------------------------------------------ Autokey

    def _crypto_now(self) -> int:
        """NTP seconds for Autokey stamps, 0 while unsynchronised (REFERENCE-NOTES)."""
        if self._sys.leap == LEAP_UNSYNC:
            return 0
        return ntp_seconds(self.clock.now())

    def _local_for(self, assoc: Association) -> str:
        """Our address as the peer sees it (the source of our session keys)."""
        return assoc.local_address or self.local_address or "0.0.0.0"

    def _server_address(self, local: tuple[str, int] | None) -> str:
        """The address a client's request reached us on (our side of its session keys)."""
        if local is not None and not _is_wildcard(local[0]):
            return local[0]
        return self.local_address or "0.0.0.0"

    def _autokey_session(self, assoc: Association, *, ident: str | None = None,
                         broadcast: bool = False) -> AutokeySession:
        node = self.autokey
        hmode = MODE_CLIENT if assoc.hmode in (MODE_CLIENT, HMODE_BCLIENT) else assoc.hmode
        state = AutokeyAssociation(node.host, associd=assoc.associd, hmode=hmode,
                                   responder=node.responder, ident=ident,
                                   broadcast=broadcast, rng=node.host.rng)
        return AutokeySession(node, state, broadcast_server=assoc.hmode == MODE_BROADCAST)

    def _auto_for(self, associd: int) -> Field | None:
        """The signed autokey values of our broadcast association ``associd`` (a broadcast
        client's volley asks the unicast server for them)."""
        assoc = self.associations.get(associd)
        if assoc is not None and assoc.autokey is not None and assoc.hmode == MODE_BROADCAST:
            return assoc.autokey.auto_field
        return None

    def _serve_autokey(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                       flags: frozenset[str], local: tuple[str, int] | None
                       ) -> list[Datagram]:
        """A client request under an Autokey session key: stateless reply with the response
        to its first extension field (REFERENCE-NOTES 3.5, 8.2).  Requests with fields
        pass ``limited`` (the per-source rate, dropped when over) and, from a source that has
        not completed a normal exchange, the amplification limit (docs/autokey.md)."""
        counters = self.counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if pkt.fields and "limited" in flags and self.limiter.check(source[0], now):
            counters["autokey_limited"] += 1
            return []
        request = pkt.header
        reply = self._reply(request.version << 3, request.poll & 0xFF,
                            request.transmit.to_bytes(8, "big"), rx, now, MODE_SERVER)
        if self.autokey is None:
            counters["badauth"] += 1
            return [Datagram(reply + CRYPTO_NAK, source)]
        server = self._server_address(local)
        node = self.autokey
        first: Field | None = None
        for f in pkt.fields[:1]:
            try:
                first = decode_field(f.data)
            except FieldError:
                break
            if not group_gate(node.host.name, first, self.config.ident):
                counters["declined"] += 1
                return []
        limit = self.config.amplification_limit and first is not None \
            and not self.exchanges.echoed(source[0], pkt.data[24:32])
        node.responder.last_error = None
        if limit and node.responder.costly(first.code):
            # Unproven: no private-key work, the empty response (never larger).
            data, outcome = node.serve_empty(pkt, reply, source[0], server)
        else:
            queued = None
            if first is not None and first.code in self.offload_codes and not first.response:
                queued = self._offload_identity(pkt, first, reply, source, server, rx, now,
                                                limit)
            data, outcome = queued or node.serve(pkt, reply, source[0], server,
                                                 self._crypto_now(), self._auto_for)
        error = node.responder.last_error
        if isinstance(error, BudgetExceeded):
            # Over the private-key budget: no reply at all; the client asks again at its
            # next poll and keeps its progress (an error response would reset its dance).
            counters["autokey_budget"] += 1
            return []
        counters[outcome] += 1
        if error is not None:
            counters["autokey_error_response"] += 1
        if data is None:
            return []
        return self._autokey_reply_out(data, reply, first, pkt.keyid or 0, source, server,
                                       limit, len(pkt.data))

    def _autokey_reply_out(self, data: bytes, reply: bytes, request: Field | None,
                           keyid: int, source: tuple[str, int], server: str, limit: bool,
                           request_size: int) -> list[Datagram]:
        """An Autokey server reply on its way out: cut when the amplification limit applies
        and it is larger than the request; its transmit timestamp remembered (the echo
        that proves the source next time)."""
        if limit and request is not None and len(data) > request_size:
            self.counters["autokey_amplification"] += 1
            data = cut_reply(reply, request, keyid, source[0], server, self.autokey.digest)
        self.exchanges.sent(source[0], data[40:48])
        return [Datagram(data, source)]

    def _offload_identity(self, pkt: Packet, request: Field, reply: bytes,
                          source: tuple[str, int], server: str, rx: int, now: float,
                          limit: bool) -> tuple[bytes | None, str] | None:
        """An identity request for the worker (:mod:`ntpauto.autokey.offload`): checked and
        admitted here, answered by :meth:`finish_identity` when its value comes back.
        Returns what :meth:`AutokeyNode.serve` would (the datagram now, if any, and the
        counter), or None: answer it in process (a request the responder refuses)."""
        node = self.autokey
        assert node is not None and self.offload is not None
        checked = node.check_request(pkt, source[0], server)
        if isinstance(checked, str):
            return node.refused(reply, checked)
        try:
            node.responder.begin_identity(request, source[0])
        except BudgetExceeded:
            return None, "autokey_budget"
        except AutokeyError:
            return None
        header = pkt.header
        job = self.offload.submit(
            now, request=request, source=source, server=server, keyid=pkt.keyid or 0,
            version_bits=header.version << 3, poll=header.poll & 0xFF,
            origin=header.transmit.to_bytes(8, "big"), rx=rx, request_size=len(pkt.data),
            limit=limit)
        return None, "autokey_offloaded" if job is not None else "autokey_offload_busy"

    def _offload_peer_identity(self, assoc: Association, now: float) -> None:
        """Hand a symmetric peer's queued identity request to the worker, once, if it passes
        the checks the in-process answer makes first; over budget, our next packet carries no
        response (as in process)."""
        state = assoc.autokey.state
        request = state.queued_request
        if request is None or request.code not in self.offload_codes or request.response \
                or state.offloading is request:
            return
        try:
            self.autokey.responder.begin_identity(request, assoc.address[0])
        except BudgetExceeded:
            state.identity_computed(request, None)
            return
        except AutokeyError:
            return  # answered in process: the error response
        job = self.offload.submit(now, request=request, source=assoc.address,
                                  associd=assoc.associd)
        if job is None:
            self.counters["autokey_offload_busy"] += 1
            return
        state.offload_started(request)
        self.counters["autokey_offloaded"] += 1

    def compute_identity(self, job: IdentityJob) -> tuple[int, float, bytes]:
        """What the worker answers for ``job`` (status, seconds, payload), computed in this
        process: for a transport with no worker to take it (this blocks)."""
        scheme = self.autokey.host.server_scheme(job.code) if self.autokey else None
        return answer(scheme, job.challenge) if scheme is not None else (LOST, 0.0, b"")

    def finish_identity(self, job_id: int, status: int, seconds: float, payload: bytes,
                        now: float) -> list[Datagram]:
        """The reply to an offloaded identity request once the worker answered (``status``,
        ``seconds`` of worker CPU and ``payload`` as :mod:`ntpauto.autokey.offload`
        defines them, ``now`` the reactor time): the signed response under a fresh transmit
        timestamp.  Nothing for a job that expired or whose worker was lost."""
        counters = self.counters
        offload, node = self.offload, self.autokey
        job = offload.complete(job_id, now) if offload is not None else None
        if job is None or node is None:
            counters["autokey_offload_expired"] += 1
            return []
        if status == LOST:
            counters["autokey_offload_lost"] += 1
            return []
        if job.associd:
            assoc = self.associations.get(job.associd)
            if assoc is None or assoc.autokey is None or not \
                    assoc.autokey.state.identity_computed(job.request,
                                                          (status, seconds, payload)):
                counters["autokey_offload_expired"] += 1
            return []
        crypto_now = self._crypto_now()
        response = node.responder.end_identity(job.request, status, payload, seconds,
                                               crypto_now)
        reply = self._reply(job.version_bits, job.poll, job.origin, job.rx, now, MODE_SERVER)
        data = node.finish(reply, response, job.source[0], job.server, job.keyid, crypto_now)
        counters["served"] += 1
        if response is not None and response.error:
            counters["autokey_error_response"] += 1
        return self._autokey_reply_out(data, reply, job.request, job.keyid, job.source,
                                       job.server, job.limit, job.request_size)

    def _autokey_receive(self, assoc: Association, pkt: Packet, mode: int,
                         now: float) -> bool:
        """Autokey processing of an authenticated association packet: the fields through
        the state machine, then the autokey test.  False: drop the packet (no sample)."""
        session = assoc.autokey
        state = session.state
        counters = self.counters
        if state.refresh_due(int(now)):
            self._autokey_reset(assoc, now, "refresh")
        try:
            fields = session.fields(pkt)
        except FieldError as e:
            counters["autokey_badfield"] += 1
            log.debug("malformed Autokey field from {host}: {error}", host=assoc.address[0],
                      error=e)
            return False
        before = state.status
        if mode == MODE_SERVER and not session.solicited(fields):
            counters["autokey_unsolicited"] += 1
            return False
        for f in fields:
            if not group_gate(self.autokey.host.name, f, state.ident):
                counters["declined"] += 1
                return False
        try:
            events = state.receive(fields, packet_mode=mode, now=self._crypto_now())
        except ProtocolError as e:
            counters["autokey_protocol_error"] += 1
            # At most one protocol-error reset per poll interval (CASES 19, 43).
            if not state.error_reset_allowed(now, 2.0**assoc.hpoll):
                counters["autokey_reset_limited"] += 1
                return False
            log.warn("Autokey protocol error from {host}: {error}; association reset",
                     host=assoc.address[0], error=e)
            self._autokey_reset(assoc, now, str(e))
            return False
        for event in events:
            if event:
                counters[f"autokey_{event.name.lower()}"] += 1
        if self.offload is not None:
            self._offload_peer_identity(assoc, now)
        self._log_status(assoc, before)
        if state.proventic and not before & AutokeyFlag.PROV:
            # Samples taken before PROV may now be selected.
            self._clock_select(now)
        if state.status & AutokeyFlag.COOK and not before & AutokeyFlag.COOK \
                and assoc.iburst and assoc.hmode == MODE_CLIENT:
            # Only packets without fields give client-mode samples: with iburst, fill the
            # clock filter as soon as the cookie makes them possible.
            assoc.burst = BCOUNT - 1
            assoc.nextdate = min(assoc.nextdate, now + BTIME)
            self._timers_changed()
        signed = any(f.signature for f in fields) and not any(events)
        dst = assoc.broadcast_address if mode == MODE_BROADCAST else None
        if not session.sequence_ok(pkt, src=assoc.address[0],
                                   dst=dst or self._local_for(assoc),
                                   client=mode == MODE_SERVER, signed=signed):
            counters["autokey_sequence"] += 1
            assoc.flash = Flash.TEST8
            return False
        return True

    def _autokey_reset(self, assoc: Association, now: float, reason: str) -> None:
        before = assoc.autokey.state.status
        assoc.autokey.state.reset(at=int(now))
        assoc.autokey.reset()
        self.counters["autokey_resets"] += 1
        self._log_status(assoc, before, reason=reason)
        if assoc.ephemeral:
            self._demobilise(assoc, f"Autokey reset: {reason}")

    def _log_status(self, assoc: Association, before: int, reason: str = "") -> None:
        status = assoc.autokey.state.status
        if status != before:
            log.info("association {associd} {host} Autokey status {status:#x} {flags}"
                     "{reason}", associd=assoc.associd, host=assoc.address[0], status=status,
                     flags=" ".join(flag_names(status)),
                     reason=f" ({reason})" if reason else "", autokey_flags=flag_names(status))

    def _new_passive(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                     flags: frozenset[str], auth: int, keyid: int | None,
                     local: tuple[str, int] | None = None) -> list[Datagram]:
        """Symmetric active packet with no association: mobilise a passive one, or answer
        statelessly in passive mode when the packet may not mobilise (ntpd AM_NEWPASS)."""
        if "noserve" in flags:
            self.counters["restricted"] += 1
            return []
        if auth == AUTH_AUTOKEY and self.autokey is not None:
            return self._new_autokey_passive(pkt, source, rx, now, flags, keyid, local)
        if auth in (AUTH_ERROR, AUTH_NAK, AUTH_AUTOKEY):
            auth = AUTH_ERROR if auth == AUTH_AUTOKEY else auth
            return self._serve(pkt, source, rx, now, flags, auth, keyid, MODE_PASSIVE)
        if ("nopeer" in flags or (self.require_auth and auth != AUTH_OK)
                or not self._room_for_ephemeral()):
            self.counters["declined"] += 1
            return self._serve(pkt, source, rx, now, flags, auth, keyid, MODE_PASSIVE)
        poll = _clamp_poll(pkt.header.poll)
        assoc = self._mobilise(Association(
            associd=self._new_associd(), address=source, hmode=MODE_PASSIVE,
            version=pkt.header.version, minpoll=poll, maxpoll=max(poll, 10), hpoll=poll,
            keyid=keyid if auth == AUTH_OK else None, ephemeral=True, nextdate=now + 1.0))
        return self._process(assoc, pkt, MODE_ACTIVE, rx, now, flags, auth, keyid)

    def _new_autokey_passive(self, pkt: Packet, source: tuple[str, int], rx: int,
                             now: float, flags: frozenset[str], keyid: int | None,
                             local: tuple[str, int] | None) -> list[Datagram]:
        """Mobilise a passive Autokey association, only for a packet whose MAC verifies under
        its session key (the peer's ASSOC request, cookie 0: REFERENCE-NOTES 8.3)."""
        if "nopeer" in flags or not self._room_for_ephemeral():
            self.counters["declined"] += 1
            return []
        poll = _clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=self._new_associd(), address=source, hmode=MODE_PASSIVE,
            version=pkt.header.version, minpoll=poll, maxpoll=max(poll, 10), hpoll=poll,
            ephemeral=True, nextdate=now + 1.0)
        if local is not None and not _is_wildcard(local[0]):
            assoc.local_address = local[0]
            assoc.local_refid = _refid_or_empty(local[0])
        assoc.autokey = self._autokey_session(assoc, ident=self.config.ident)
        if not assoc.autokey.authenticate(pkt, src=source[0], dst=self._local_for(assoc)):
            self.counters["badauth"] += 1
            return []
        self._mobilise(assoc)
        return self._process(assoc, pkt, MODE_ACTIVE, rx, now, flags, AUTH_AUTOKEY, keyid)

    def _new_bclient(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                     flags: frozenset[str], auth: int, keyid: int | None,
                     local: tuple[str, int] | None = None) -> list[Datagram]:
        """A broadcast from a new server: mobilise a broadcast client association that first
        calibrates the delay with a client-mode volley (ntpd FLAG_BC_VOL)."""
        counters = self.counters
        if not self.broadcast_client:
            counters["declined"] += 1
            return []
        if auth == AUTH_AUTOKEY and self.autokey is not None:
            return self._new_autokey_bclient(pkt, source, rx, now, flags, keyid, local)
        if auth in (AUTH_ERROR, AUTH_NAK, AUTH_AUTOKEY):
            counters["badauth"] += 1
            return []
        if (self.require_auth and auth != AUTH_OK) or "nopeer" in flags \
                or not self._room_for_ephemeral():
            counters["declined"] += 1
            return []
        poll = _clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=self._new_associd(), address=source, hmode=HMODE_BCLIENT,
            version=pkt.header.version, minpoll=poll, maxpoll=poll, hpoll=poll,
            keyid=keyid if auth == AUTH_OK else None, ephemeral=True)
        if self.config.broadcast_delay is not None:
            assoc.caldelay = self.config.broadcast_delay
            assoc.nextdate = now + 2.0**poll
            self._mobilise(assoc)
            return self._process(assoc, pkt, MODE_BROADCAST, rx, now, flags, auth, keyid)
        assoc.volley = VOLLEY
        assoc.nextdate = now
        self._mobilise(assoc)
        assoc.org = pkt.header.transmit
        return self._poll(assoc, now)

    def _new_autokey_bclient(self, pkt: Packet, source: tuple[str, int], rx: int,
                             now: float, flags: frozenset[str], keyid: int | None,
                             local: tuple[str, int] | None) -> list[Datagram]:
        """An Autokey broadcast from a new server mobilises a broadcast client only when its
        (last) field is an ASSOC response and its MAC verifies (REFERENCE-NOTES 8.4); the
        client then runs the client dance unicast before it listens."""
        counters = self.counters
        if self.config.broadcast_delay is not None or "nopeer" in flags \
                or not self._room_for_ephemeral():
            counters["declined"] += 1
            return []
        try:
            fields = [decode_field(f.data) for f in pkt.fields]
        except FieldError:
            counters["autokey_badfield"] += 1
            return []
        if not fields or fields[-1].code != 1 or not fields[-1].response:
            counters["bcast_not_assoc"] += 1
            return []
        poll = _clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=self._new_associd(), address=source, hmode=HMODE_BCLIENT,
            version=pkt.header.version, minpoll=poll, maxpoll=poll, hpoll=poll,
            ephemeral=True)
        assoc.broadcast_address = local[0] if local is not None else None
        assoc.autokey = self._autokey_session(assoc, ident=self.config.ident, broadcast=True)
        if not assoc.autokey.authenticate(pkt, src=source[0],
                                          dst=assoc.broadcast_address or "0.0.0.0"):
            counters["badauth"] += 1
            return []
        if not group_gate(self.autokey.host.name, fields[-1], self.config.ident):
            counters["declined"] += 1
            return []
        try:
            assoc.autokey.state.receive(fields[-1:], packet_mode=MODE_BROADCAST,
                                        now=self._crypto_now())
        except ProtocolError:
            counters["autokey_protocol_error"] += 1
            return []
        assoc.volley = VOLLEY
        assoc.nextdate = now
        assoc.org = pkt.header.transmit
        self._mobilise(assoc)
        self._log_status(assoc, 0)
        return self._poll(assoc, now)

    def _process(self, assoc: Association, pkt: Packet, mode: int, rx: int, now: float,
                 flags: frozenset[str], auth: int, keyid: int | None) -> list[Datagram]:
        """An association's packet: RFC 5905 receive() tests, then packet()."""
        counters = self.counters
        hmode = assoc.hmode
        if not (
            (hmode == MODE_CLIENT and mode == MODE_SERVER)
            or (hmode == MODE_ACTIVE and mode in (MODE_ACTIVE, MODE_PASSIVE))
            or (hmode == MODE_PASSIVE and mode == MODE_ACTIVE)
            or (hmode == HMODE_BCLIENT and (mode == MODE_BROADCAST
                                             or (mode == MODE_SERVER and assoc.volley)))
        ):
            counters["badmode"] += 1
            return []
        header = pkt.header
        if auth == AUTH_NAK:
            # A crypto-NAK counts only when it answers our latest packet (CVE-2016-1547).
            if header.origin != assoc.xmt or assoc.xmt == 0:
                counters["bogusorg"] += 1
                return []
            counters["cryptonak"] += 1
            assoc.flash = Flash.TEST9
            if assoc.autokey is not None:
                self._autokey_reset(assoc, now, "crypto-NAK")
            log.warn("crypto-NAK from {host} on association {associd}",
                     host=assoc.address[0], associd=assoc.associd)
            return []
        if assoc.autokey is not None:
            dst = assoc.broadcast_address if mode == MODE_BROADCAST else None
            if auth != AUTH_AUTOKEY or not assoc.autokey.authenticate(
                    pkt, src=assoc.address[0], dst=dst or self._local_for(assoc)):
                counters["badauth"] += 1
                assoc.flash = Flash.TEST5
                return []
        elif auth in (AUTH_ERROR, AUTH_AUTOKEY) or (
                assoc.keyid is not None and (auth != AUTH_OK or keyid != assoc.keyid)) \
                or ("notrust" in flags and auth != AUTH_OK):
            counters["badauth"] += 1
            assoc.flash = Flash.TEST5
            return []
        if header.transmit == 0:
            counters["badxmt"] += 1
            assoc.flash = Flash.TEST3
            return []
        if header.transmit == assoc.org:
            counters["oldpkt"] += 1
            assoc.flash = Flash.TEST1
            return []
        if mode == MODE_BROADCAST:
            if assoc.autokey is not None and not self._autokey_receive(assoc, pkt, mode, now):
                return []
            return self._broadcast_sample(assoc, header, rx, now)
        if header.origin == 0 and mode in (MODE_ACTIVE, MODE_PASSIVE):
            # The peer has not heard from us yet: remember its timestamps, no sample.
            assoc.org, assoc.rec = header.transmit, rx
            self._update_peer_header(assoc, header)
            if assoc.autokey is not None:
                self._autokey_receive(assoc, pkt, mode, now)
            return []
        if header.origin != assoc.xmt or assoc.xmt == 0:
            counters["bogusorg"] += 1
            assoc.flash = Flash.TEST2
            return []
        exchange = assoc.org, assoc.rec, assoc.xmt
        assoc.org, assoc.rec = header.transmit, rx
        client = hmode == MODE_CLIENT or hmode == HMODE_BCLIENT
        if client:
            assoc.xmt = 0  # one reply per request: a second copy now fails TEST2
        if assoc.autokey is not None:
            if not self._autokey_receive(assoc, pkt, mode, now):
                if client:
                    # A refused reply (on-path bait with the right origin) does not use up
                    # the request: the genuine reply still counts (the reset storms).
                    assoc.org, assoc.rec, assoc.xmt = exchange
                return []
            if pkt.fields and mode == MODE_SERVER:
                # A reply with extension fields is MACed under cookie 0, which anyone can
                # compute, and client mode has no key-ID chain: its timestamps are not
                # protected, so it gives no time sample (stricter than the reference;
                # docs/interop.md).  Symmetric peers need such packets to break their stall.
                counters["autokey_nosample"] += 1
                self._update_peer_header(assoc, header)
                assoc.reach |= 1  # an authentic reply: the server is reachable
                assoc.unreach = 0
                return []
        if header.stratum == 0:
            return self._kiss(assoc, header)
        return self._packet(assoc, header, rx, now)

    def _kiss(self, assoc: Association, header: Header) -> list[Datagram]:
        """Kiss-o'-Death (RFC 5905 section 7.4): RATE backs off, DENY/RSTR demobilise."""
        code = header.refid
        if code == KISS_RATE:
            peer_poll = _clamp_poll(header.poll)
            assoc.hpoll = min(max(assoc.hpoll + 1, peer_poll), assoc.maxpoll, MAX_POLL)
            assoc.burst = 0
            assoc.nextdate = assoc.outdate + 2.0**assoc.hpoll
        elif code in (KISS_DENY, KISS_RSTR):
            self._demobilise(assoc, f"kiss code {header.kiss_code}")
        else:
            # INIT, STEP and the rest: an unsynchronised peer; the timestamps above still
            # advance the symmetric exchange.
            self._update_peer_header(assoc, header)
            self.counters["unsync"] += 1
            return []
        self.counters["kod"] += 1
        log.info("kiss code {code} from {host}", code=header.kiss_code, host=assoc.address[0])
        return []

    def _update_peer_header(self, assoc: Association, header: Header) -> None:
        assoc.leap = header.leap
        assoc.stratum = header.stratum if header.stratum else MAX_STRATUM
        assoc.pmode = header.mode
        assoc.ppoll = _clamp_poll(header.poll)
        assoc.root_delay = from_short(header.root_delay)
        assoc.root_dispersion = from_short(header.root_dispersion)
        assoc.refid = header.refid
        assoc.reftime = header.reference

    def _header_usable(self, assoc: Association, header: Header) -> bool:
        """TEST6 (unsynchronised peer) and TEST7 (header distance / reference time)."""
        if header.leap == LEAP_UNSYNC or header.stratum >= MAX_STRATUM:
            self.counters["unsync"] += 1
            assoc.flash = Flash.TEST6
            return False
        if (from_short(header.root_delay) / 2 + from_short(header.root_dispersion) >= MAXDISP
                or (header.reference and ts_diff(header.reference, header.transmit) > 0)):
            self.counters["baddist"] += 1
            assoc.flash = Flash.TEST7
            return False
        return True

    def _packet(self, assoc: Association, header: Header, rx: int,
                now: float) -> list[Datagram]:
        """RFC 5905 A.5.1.1 packet(): on-wire offset and delay into the clock filter."""
        self._update_peer_header(assoc, header)
        if not self._header_usable(assoc, header):
            return []
        assoc.reach |= 1
        assoc.unreach = 0
        t21 = ts_diff(header.receive, header.origin)
        t34 = ts_diff(header.transmit, rx)
        offset = (t21 + t34) / 2
        delay = max(t21 - t34, 2.0**self.precision)
        dispersion = 2.0**header.precision + 2.0**self.precision \
            + PHI * ts_diff(rx, header.origin)
        if assoc.hmode == HMODE_BCLIENT:
            assoc.caldelay = delay
            if assoc.autokey is None or assoc.autokey.state.volley_complete:
                # Calibrated (and, with Autokey, every flag lit): the broadcasts are the
                # samples from now on.
                assoc.volley = 0
                assoc.nextdate = now + 2.0**assoc.hpoll
                log.info("broadcast client {host}: delay calibrated at {delay:.6f} s",
                         host=assoc.address[0], delay=delay)
        return self._sample(assoc, offset, delay, dispersion, now)

    def _broadcast_sample(self, assoc: Association, header: Header, rx: int,
                          now: float) -> list[Datagram]:
        assoc.org = header.transmit
        if assoc.caldelay is None:
            self.counters["bcast_uncalibrated"] += 1
            return []
        self._update_peer_header(assoc, header)
        if not self._header_usable(assoc, header):
            return []
        assoc.reach |= 1
        assoc.unreach = 0
        delay = assoc.caldelay
        offset = ts_diff(header.transmit, rx) + delay / 2
        dispersion = 2.0**header.precision + 2.0**self.precision
        return self._sample(assoc, offset, delay, dispersion, now)

    def _sample(self, assoc: Association, offset: float, delay: float, dispersion: float,
                now: float) -> list[Datagram]:
        result = assoc.filter.add(offset, delay, dispersion, now)
        self.counters["samples"] += 1
        if result is not None:
            assoc.offset, assoc.delay = result.offset, result.delay
            assoc.dispersion, assoc.jitter = result.dispersion, result.jitter
            assoc.epoch = result.epoch
        elif self._sys.leap == LEAP_UNSYNC and assoc.filter.epoch:
            # RFC 5905 A.5.2: a sample is used only once, "but anything goes before first
            # synchronized": the falling dispersion of a new association counts at once.
            filt = assoc.filter
            assoc.offset, assoc.delay = filt.offset, filt.delay
            assoc.dispersion, assoc.jitter = filt.dispersion, filt.jitter
            assoc.epoch = filt.epoch
        else:
            return []
        assoc.has_sample = True
        assoc.flash = Flash(0)
        self._clock_select(now)
        return []

    # ------------------------------------------------------------------ system process

    def _candidates(self, now: float) -> list[Candidate]:
        out = []
        for a in self.associations.values():
            if not a.has_sample or a.noselect or a.hmode == MODE_BROADCAST:
                continue
            if a.autokey is not None and not a.autokey.state.proventic:
                a.peer_flash = Flash.TEST9  # not proventic: never used for time
                continue
            if a.is_refclock:
                stratum, leap, rdelay, rdisp = a.refclock_stratum, 0, 0.0, 0.0
            else:
                stratum, leap, rdelay, rdisp = a.stratum, a.leap, a.root_delay, \
                    a.root_dispersion
            candidate = Candidate(
                key=a.associd, offset=a.offset, delay=a.delay, dispersion=a.dispersion,
                jitter=a.jitter, root_delay=rdelay, root_dispersion=rdisp, stratum=stratum,
                leap=leap, epoch=max(a.epoch, a.filter.updated), prefer=a.prefer,
                reach=a.reach, poll=a.hpoll)
            a.peer_flash = self._peer_tests(a, candidate, now)
            if not a.peer_flash:
                out.append(candidate)
        return out

    @staticmethod
    def _peer_tests(a: Association, c: Candidate, now: float) -> Flash:
        """TEST10-TEST13 (RFC 5905 A.5.5.4 fit())."""
        flash = Flash(0)
        if c.leap == LEAP_UNSYNC or c.stratum >= MAX_STRATUM:
            flash |= Flash.TEST10
        if root_distance(c, now) > MAXDIST + PHI * 2.0**a.hpoll:
            flash |= Flash.TEST11
        if not a.is_refclock and a.local_refid and a.refid == a.local_refid \
                and a.stratum > 1:
            flash |= Flash.TEST12
        if a.reach == 0:
            flash |= Flash.TEST13
        return flash

    def _clock_select(self, now: float) -> None:
        """Selection, cluster and combine, then the clock update (RFC 5905 A.5.5)."""
        selection = select(self._candidates(now), now, current_peer=self.sys.peer)
        if selection.system_peer is None:
            if self.sys.peer is not None:
                log.info("no system peer: {reason}",
                         reason="no majority" if selection.truechimers else "no candidates")
                self.sys = attrs.evolve(self.sys, peer=None)
            return
        peer = self.associations[selection.system_peer.key]
        if self._last_update_epoch is not None and peer.epoch <= self._last_update_epoch:
            return
        self._last_update_epoch = peer.epoch
        if self.discipline is not None:
            action = self.discipline.update(selection.offset, peer.jitter, now,
                                            minpoll=peer.minpoll, maxpoll=peer.maxpoll)
            if action == DisciplineAction.STEP:
                self._clock_stepped(selection.offset, now)
                return
            if action == DisciplineAction.PANIC:
                log.error("offset {offset:.3f} s exceeds the panic threshold; not setting "
                          "the clock", offset=selection.offset)
                self.counters["panic"] += 1
                return
            if action == DisciplineAction.IGNORE:
                return
        self._clock_update(peer, selection.offset, selection.jitter, now)

    def _clock_update(self, peer: Association, offset: float, jitter: float,
                      now: float) -> None:
        if peer.is_refclock:
            stratum, refid, leap = peer.refclock_stratum + 1, peer.refclock_refid, 0
            root_delay, root_disp = 0.0, 0.0
        else:
            stratum, refid, leap = peer.stratum + 1, refid_for(peer.address[0]), peer.leap
            root_delay, root_disp = peer.root_delay, peer.root_dispersion
        dispersion = (peer.jitter**2 + jitter**2) ** 0.5 + max(
            peer.dispersion + PHI * (now - peer.epoch) + abs(offset), MINDISP)
        if self.sys.peer != peer.associd:
            log.info("system peer {host} (association {associd}), stratum {stratum}",
                     host=peer.address[0], associd=peer.associd, stratum=stratum)
        first_sync = self._sys.leap == LEAP_UNSYNC
        self.sys = SystemVariables(
            leap=leap, stratum=min(stratum, MAX_STRATUM), refid=refid,
            reftime=unix_to_ntp(self.clock.now()), root_delay=root_delay + peer.delay,
            root_dispersion=root_disp + dispersion, offset=offset, jitter=jitter,
            peer=peer.associd, epoch=now)
        if first_sync and self.autokey is not None:
            # reference: the host signs its public values when it first synchronises.
            self.autokey.host.signature_update(self._crypto_now())

    def _clock_stepped(self, offset: float, now: float = 0.0) -> None:
        """After a step every sample is stale (RFC 5905 clear_all())."""
        log.warn("clock stepped by {offset:.6f} s", offset=offset)
        self.counters["steps"] += 1
        for assoc in list(self.associations.values()):
            assoc.clear_samples()
            assoc.org = assoc.rec = assoc.xmt = 0
            if assoc.autokey is not None and assoc.hmode != MODE_BROADCAST:
                # A step purges every cryptographic value too (REFERENCE-NOTES 8.5).
                self._autokey_reset(assoc, now, "clock step")
        self.sys = SystemVariables(refid=b"STEP")
        self._last_update_epoch = None

    def _wire_stratum(self) -> int:
        stratum = self.sys.stratum
        return 0 if stratum >= MAX_STRATUM else stratum

    def _root_dispersion(self, now: float) -> float:
        sys = self.sys
        if sys.leap == LEAP_UNSYNC:
            return sys.root_dispersion
        return sys.root_dispersion + PHI * max(now - sys.epoch, 0.0)

    # ------------------------------------------------------------------ poll process

    def fire_timers(self, now: float) -> list[Datagram]:
        """Run every poll and the discipline's one-second adjustment that are due."""
        self._timers_changed()
        out: list[Datagram] = []
        for assoc in list(self.associations.values()):
            if assoc.nextdate <= now and assoc.associd in self.associations:
                out.extend(self._poll(assoc, now))
        if self.discipline is not None and self._next_tick is not None:
            while self._next_tick <= now:
                self.discipline.tick(self._next_tick)
                self._next_tick += 1.0
        return out

    def next_wakeup(self) -> float | None:
        """Reactor time of the next due timer, or None when nothing is scheduled."""
        if self._wakeup_valid:
            return self._wakeup
        deadline = self._next_tick
        for assoc in self.associations.values():
            if deadline is None or assoc.nextdate < deadline:
                deadline = assoc.nextdate
        self._wakeup, self._wakeup_valid = deadline, True
        return deadline

    def _poll(self, assoc: Association, now: float) -> list[Datagram]:
        """RFC 5905 A.5.7 poll(): reach register, bursts, unreachable handling, transmit."""
        if assoc.is_refclock:
            return self._poll_refclock(assoc, now)
        if assoc.hmode == MODE_BROADCAST:
            assoc.nextdate = now + 2.0**assoc.hpoll
            if self.sys.leap == LEAP_UNSYNC:
                return []
            return [self._transmit(assoc, now)]
        if assoc.hmode == HMODE_BCLIENT and not assoc.volley:
            return self._poll_bclient(assoc, now)
        if assoc.burst > 0:
            assoc.burst -= 1
            assoc.nextdate = now + (BTIME if assoc.burst else self._poll_interval(assoc))
            return [self._transmit(assoc, now)]
        assoc.reach = (assoc.reach << 1) & 0xFF
        if assoc.has_sample and not assoc.reach & 0x07:
            # Three polls unanswered: the filter ages towards MAXDISP.
            assoc.filter.add(0.0, MAXDISP, MAXDISP, now)
            assoc.dispersion = assoc.filter.dispersion
        if assoc.reach == 0:
            assoc.unreach += 1
            if assoc.ephemeral and assoc.unreach > UNREACH_EPHEMERAL:
                self._demobilise(assoc, "unreachable")
                return []
            if assoc.iburst and assoc.unreach == 1:
                assoc.burst = BCOUNT - 1
            if assoc.unreach > UNREACH:
                assoc.hpoll = min(assoc.hpoll + 1, assoc.maxpoll)
            if assoc.volley:
                assoc.volley -= 1
                assoc.burst = 0
                if not assoc.volley:
                    self._demobilise(assoc, "no reply to the calibration volley")
                    return []
        else:
            if assoc.burst_option:
                assoc.burst = BCOUNT - 1
            self._adjust_poll(assoc)
        datagram = self._transmit(assoc, now)
        if assoc.volley:
            assoc.nextdate = now + BTIME
        elif assoc.burst > 0:
            assoc.nextdate = now + BTIME
        else:
            assoc.nextdate = now + self._poll_interval(assoc)
        return [datagram]

    @staticmethod
    def _poll_interval(assoc: Association) -> float:
        poll = assoc.hpoll
        if assoc.ppoll and assoc.hmode in (MODE_ACTIVE, MODE_PASSIVE):
            poll = max(min(poll, assoc.ppoll), assoc.minpoll)
        return 2.0**poll

    def _adjust_poll(self, assoc: Association) -> None:
        """Follow the discipline's poll interval when it runs; otherwise lengthen the poll
        by one step after every eight consecutive answered polls, up to maxpoll."""
        if self.discipline is not None and self.sys.peer is not None:
            assoc.hpoll = min(max(self.discipline.poll, assoc.minpoll), assoc.maxpoll)
            return
        if assoc.reach == 0xFF:
            assoc.good_polls += 1
            if assoc.good_polls >= 8 and assoc.hpoll < assoc.maxpoll:
                assoc.hpoll += 1
                assoc.good_polls = 0
        else:
            assoc.good_polls = 0

    def _poll_refclock(self, assoc: Association, now: float) -> list[Datagram]:
        """The LOCAL driver: the host's own clock is the reference (offset zero)."""
        assoc.reach = ((assoc.reach << 1) | 1) & 0xFF
        assoc.leap, assoc.stratum = 0, assoc.refclock_stratum
        assoc.nextdate = now + 2.0**assoc.hpoll
        # Like a hardware driver, the local clock fills the whole filter at each poll, so a
        # primary server is usable from its first poll rather than after eight.
        for _ in range(NSTAGE):
            assoc.filter.add(0.0, 0.0, 2.0**self.precision, now)
        self.counters["samples"] += 1
        assoc.offset, assoc.delay = assoc.filter.offset, assoc.filter.delay
        assoc.dispersion, assoc.jitter = assoc.filter.dispersion, assoc.filter.jitter
        assoc.epoch, assoc.has_sample = now, True
        self._clock_select(now)
        return []

    def _poll_bclient(self, assoc: Association, now: float) -> list[Datagram]:
        assoc.reach = (assoc.reach << 1) & 0xFF
        assoc.nextdate = now + 2.0**assoc.hpoll
        if assoc.reach == 0:
            assoc.unreach += 1
            if assoc.unreach > UNREACH_EPHEMERAL:
                self._demobilise(assoc, "no broadcasts")
        return []

    def _transmit(self, assoc: Association, now: float) -> Datagram:
        """RFC 5905 A.5.8 peer_xmit()."""
        sys = self.sys
        xmt = unix_to_ntp(self.clock.now())
        if xmt == assoc.xmt:
            xmt += 1
        mode = MODE_CLIENT if assoc.hmode == HMODE_BCLIENT else assoc.hmode
        if mode == MODE_BROADCAST:
            origin = receive = 0
        else:
            origin, receive = assoc.org, assoc.rec
        header = Header(
            sys.leap, assoc.version, mode, self._wire_stratum(), assoc.hpoll, self.precision,
            to_short(sys.root_delay), to_short(self._root_dispersion(now)), sys.refid,
            sys.reftime, origin, receive, xmt)
        data = header.encode()
        if assoc.autokey is not None:
            dst = assoc.address[0]
            data = assoc.autokey.outgoing(
                data, src=self._local_for(assoc), dst=dst, now=self._crypto_now(),
                synced=sys.leap != LEAP_UNSYNC, poll=assoc.hpoll, peer_leap=assoc.leap,
                associd=assoc.associd)
        elif assoc.keyid is not None:
            data += self.keys.sign(assoc.keyid, data)
        assoc.xmt = xmt
        assoc.outdate = now
        self.counters["sent"] += 1
        return Datagram(data, assoc.address)

    # ------------------------------------------------------------------ status

    @property
    def frequency_ppm(self) -> float | None:
        """The discipline's frequency estimate, for the drift file (None when disabled)."""
        return self.discipline.frequency_ppm if self.discipline is not None else None

    def status(self) -> dict[str, Any]:
        """System and association variables for display and the query tools."""
        sys = self.sys
        system = {
            "leap": sys.leap, "stratum": sys.stratum,
            "refid": refid_text(sys.refid, sys.stratum),
            "offset": sys.offset, "jitter": sys.jitter, "root_delay": sys.root_delay,
            "root_dispersion": sys.root_dispersion, "peer": sys.peer,
            "precision": self.precision,
            "discipline": self.discipline.state if self.discipline else "disabled",
        }
        associations = []
        for a in self.associations.values():
            associations.append({
                "associd": a.associd, "address": a.address[0], "port": a.address[1],
                "mode": MODE_NAMES.get(a.hmode, str(a.hmode)),
                "refclock": a.is_refclock, "ephemeral": a.ephemeral,
                "reach": a.reach, "stratum": a.refclock_stratum if a.is_refclock else a.stratum,
                "refid": refid_text(a.refclock_refid if a.is_refclock else a.refid, a.stratum),
                "hpoll": a.hpoll, "ppoll": a.ppoll, "offset": a.offset, "delay": a.delay,
                "dispersion": a.dispersion, "jitter": a.jitter,
                "system_peer": a.associd == sys.peer,
                "flash": _flag_names(a.flash), "peer_flash": _flag_names(a.peer_flash),
                "autokey": self._autokey_status(a),
            })
        if self.autokey is not None:
            host = self.autokey.host
            system["autokey"] = {
                "host": host.name, "status": f"{host.status:#x}",
                "flags": flag_names(host.status), "digest": host.digest,
                "signature": host.profile.signature_name, "update": host.update,
                "certificates": [
                    {"subject": e.subject, "issuer": e.cert.issuer, "flags": e.flags,
                     "until": e.cert.not_after.isoformat()} for e in host.cache],
            }
        return {"system": system, "associations": associations,
                "counters": dict(self.counters)}

    @staticmethod
    def _autokey_status(a: Association) -> dict[str, Any] | None:
        """The Autokey state of an association for display (no secret values)."""
        if a.autokey is None:
            return None
        state = a.autokey.state
        certificate = state.peer_certificate
        return {
            "status": f"{state.status:#x}", "flags": state.flags,
            "peer": state.peer_name, "scheme": state.scheme_name,
            "trail": [list(link) for link in state.trail],
            "trusted_until": certificate.not_after.isoformat() if certificate else None,
            "proventic": state.proventic,
        }


def _refid_or_empty(address: str) -> bytes:
    try:
        return refid_for(address)
    except ValueError:
        return b""


def _flag_names(flash: Flash) -> list[str]:
    return [f.name for f in Flash if f & flash]


def _clamp_poll(poll: int) -> int:
    """A poll exponent from a packet, within what we accept (a RATE kiss may say 127)."""
    return min(max(poll, MIN_POLL), MAX_POLL)


def _is_wildcard(address: str) -> bool:
    """The address of a socket bound to every interface (no address of its own)."""
    return address in ("0.0.0.0", "::")


def _resolve_literal(address: str, port: int) -> str:
    """Resolve a server/peer address (numeric addresses need no lookup)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        info = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)
        return info[0][4][0]


def load_autokey(config: Config, leap_table: Any = None) -> AutokeyNode:
    """The host's Autokey credentials and responder from the ``crypto``/``keysdir``/
    ``automax``/``revoke`` directives (REFERENCE-NOTES 7.4).  The keys directory defaults to
    the configuration file's directory.  KeyFileError names the file that is wrong."""
    from ntpauto.autokey.cookie import ServerSeed
    from ntpauto.autokey.host import load_host
    from ntpauto.autokey.responder import Responder

    crypto = config.crypto
    keysdir = config.keysdir or os.path.dirname(os.path.abspath(config.path))
    digest = (crypto.digest or "md5").lower()
    host = load_host(keysdir, host=crypto.host, password=crypto.pw,
                     ident=crypto.ident or config.ident, digest=digest, leap=leap_table,
                     cert=crypto.cert)
    seed = ServerSeed(revoke=2**config.revoke) if config.revoke else ServerSeed()
    budget = PrivateKeyBudget(config.autokey_budget, config.autokey_burst)
    return AutokeyNode(host, Responder(host, seed, budget=budget),
                       automax=config.automax or 12)


def build_engine(config: Config, clock: IClock, *, rng: random.Random | None = None,
                 resolve: Callable[[str, int], str] | None = None) -> Engine:
    """An engine for ``config`` with its keys, leap table, drift and Autokey credentials
    loaded from disk.

    Raises ConfigError, KeyFileError or LeapFileError naming the file that is wrong.
    """
    keys = KeyStore()
    if config.keys_file:
        keys = KeyStore(load_keys(config.keys_file), config.trusted_keys)
    leap_table = None
    if config.leapfile:
        from ntpauto.leapfile import load_leapfile

        leap_table = load_leapfile(config.leapfile)
    frequency = None
    if config.driftfile and config.discipline_enabled:
        frequency = read_drift(config.driftfile)
    autokey = load_autokey(config, leap_table) if config.crypto is not None else None
    local = next((item.address for item in config.listen
                  if not _is_wildcard(item.address)), None)
    return Engine(config, clock, keys=keys, leap_table=leap_table, rng=rng,
                  frequency_ppm=frequency, resolve=resolve, autokey=autokey,
                  local_address=local)
