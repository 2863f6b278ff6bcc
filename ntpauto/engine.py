"""The sans-I/O NTP node: associations, the on-wire protocol, the server and the system process.

Bytes, addresses and times go in; datagrams to send and the next timer deadline come out.
Nothing here touches a socket or a reactor (DESIGN.md principle 1).  Two clocks are used:
``now`` arguments are the reactor's seconds (intervals, polls, timeouts) and the injected
:class:`~ntpauto.interfaces.IClock` stamps packets (RFC 5905 sections 8-11).

:class:`Engine` holds the node's state and dispatches; each responsibility is a module of
its own, a component the engine owns:

==========================  ==================================================================
:mod:`ntpauto.server`       the stateless server: one reply path, its first stage bytes to
                            bytes (:attr:`Engine.answer_fast`)
:mod:`ntpauto.receive`      an association's packet: mobilisation, the on-wire tests, samples
:mod:`ntpauto.autokey.glue` the Autokey side of associations: fields, autokey test, resets
:mod:`ntpauto.system`       selection, cluster, combine and the clock update
:mod:`ntpauto.poll`         polls and transmissions
==========================  ==================================================================

Packet path (RFC 5905 section 9.2 and appendix A.5.1): parse (malformed: drop, counter),
restrict, authenticate (symmetric key MAC, crypto-NAK), dispatch by mode: stateless server
reply for client packets; the matching association otherwise, mobilising symmetric passive
and broadcast client associations on demand.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from ntpauto import mode6
from ntpauto.auth.keys import KeyStore, load_keys
from ntpauto.autokey.budget import PrivateKeyBudget
from ntpauto.autokey.glue import AutokeyGlue
from ntpauto.autokey.offload import (
    LOST,
    IdentityJob,
    IdentityOffload,
    answer,
    offloadable_schemes,
)
from ntpauto.autokey.serving import AutokeyNode, SessionKeys
from ntpauto.autokey.status import flag_names
from ntpauto.changes import ChangeWatcher
from ntpauto.config import AssociationConfig, Config, ConfigError, RefclockConfig
from ntpauto.counters import Counters
from ntpauto.interfaces import IClock
from ntpauto.ntp.discipline import Discipline, read_drift
from ntpauto.ntp.peer import (
    MAX_STRATUM,
    MODE_NAMES,
    Association,
    Flash,
    is_wildcard,
    refid_for,
    refid_or_empty,
    refid_text,
)
from ntpauto.ntp.restrict import RateLimiter, RestrictList
from ntpauto.nts.glue import NtsClients
from ntpauto.nts.serving import nts_server_for
from ntpauto.poll import PollProcess
from ntpauto.receive import MAX_POLL, MIN_POLL, AssociationReceiver
from ntpauto.server import (
    AUTH_AUTOKEY,
    AUTH_ERROR,
    AUTH_NAK,
    AUTH_NONE,
    AUTH_OK,
    Server,
)
from ntpauto.system import SystemProcess, SystemVariables
from ntpauto.wire.packet import (
    LEAP_UNSYNC,
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_CONTROL,
    MODE_PRIVATE,
    MODE_SERVER,
    Datagram,
    MalformedPacket,
    Packet,
    parse,
)
from ntpauto.wire.timestamps import ntp_seconds

__all__ = [
    "AUTH_AUTOKEY", "AUTH_ERROR", "AUTH_NAK", "AUTH_NONE", "AUTH_OK", "MAX_EPHEMERAL",
    "MAX_POLL", "MAX_STRATUM", "MIN_POLL", "MODE_NAMES", "RX_MODE_COUNTERS", "Datagram",
    "Engine", "SystemVariables", "build_engine", "load_autokey", "refid_for", "refid_text",
]

log = Logger()

MAX_EPHEMERAL = 256
"""Cap on mobilised (passive and broadcast client) associations."""

RX_MODE_COUNTERS = ("rx_mode0", "rx_active", "rx_passive", "rx_client", "rx_server",
                    "rx_broadcast", "rx_control", "rx_private")
"""Counter per wire mode (first octet & 7) of datagrams taking the full receive path; the
fast path's are all client requests (ntpauto.metrics derives the client total)."""


class Engine:
    """One NTP node.  Feed it datagrams and timer ticks; send what it returns."""

    def __init__(self, config: Config, clock: IClock, *, keys: KeyStore | None = None,
                 leap_table: Any = None, rng: random.Random | None = None,
                 frequency_ppm: float | None = None,
                 resolve: Callable[[str, int], str] | None = None,
                 autokey: AutokeyNode | None = None,
                 local_address: str | None = None,
                 session_keys: SessionKeys | None = None,
                 precision: int | None = None, nts_server: Any = None) -> None:
        self.config = config
        self.clock = clock
        self.keys = keys if keys is not None else KeyStore()
        self.leap_table = leap_table
        self.rng = rng if rng is not None else random.SystemRandom()
        self.counters = Counters()
        self.restrict = RestrictList.from_config(config.restrictions)
        self.limiter = RateLimiter(config.discard_average, config.discard_minimum)
        self.precision = precision if precision is not None else clock.precision()
        self._wakeup: float | None = None
        self._wakeup_valid = False
        self.timer_generation = 0
        """Bumped whenever the next wakeup may have moved (the transport re-arms its timer
        only then: the busy server's replies leave it alone)."""
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
        self.session_keys = autokey.sessions if autokey is not None else session_keys
        """The session keys of Autokey requests without fields (the Autokey node's, or, in
        a server worker process, one of its own: :mod:`ntpauto.workerstate`)."""
        self.local_address = local_address
        """Our address towards peers (Autokey session keys need it); None: learn it from the
        address packets arrive on."""
        self._started = False
        self.offload: IdentityOffload | None = None
        """Identity responses computed by a worker (set with :meth:`enable_offload`)."""
        self.offload_codes: frozenset[int] = frozenset()
        self.system_listeners: list[Callable[[], None]] = []
        """Called (no arguments) whenever the system variables change: the daemon's worker
        processes answer with them (:mod:`ntpauto.workerpool`)."""
        self.server_processes = 1
        """Processes answering this engine's clients: 1, or with ``workers`` those up now."""
        self.nts_server = nts_server
        """The NTS server side (:class:`~ntpauto.nts.serving.NtsServer`), when configured."""
        self.server = Server(self)
        self.receiver = AssociationReceiver(self)
        self.glue = AutokeyGlue(self)
        self.nts = NtsClients(self)
        """The NTS client associations' NTS-KE exchanges (:mod:`ntpauto.nts.glue`)."""
        self.system = SystemProcess(self)
        self.poller = PollProcess(self)
        self.changes = ChangeWatcher(self)
        """The node's state changes as log events, and their observers
        (:mod:`ntpauto.changes`)."""
        self._sys = SystemVariables()  # the setter (which invalidates the fast path's cache)
        self.answer_fast = self.server.answer
        """``answer_fast(data, source, rx, now, local)``: the server's first stage
        (:meth:`Server.answer <ntpauto.server.Server.answer>`): the reply to a client
        request, ``b""`` when it gets none, or None when :meth:`receive_full` must be called
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

    def timers_changed(self) -> None:
        """The next wakeup may have moved: :meth:`next_wakeup` recomputes it."""
        self._wakeup_valid = False
        self.timer_generation += 1

    @property
    def sys(self) -> SystemVariables:
        """The system variables (RFC 5905 section 11)."""
        return self._sys

    @sys.setter
    def sys(self, value: SystemVariables) -> None:
        self._sys = value
        self.server.invalidate()
        for listener in self.system_listeners:
            listener()

    def crypto_now(self) -> int:
        """NTP seconds for Autokey stamps, 0 while unsynchronised (interop.md)."""
        if self._sys.leap == LEAP_UNSYNC:
            return 0
        now = ntp_seconds(self.clock.now())
        if self.autokey is not None:
            self.autokey.host.keep_dated(now)  # a farm's daily signatures
        return now

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> list[Datagram]:
        """Mobilise the configured associations and schedule their first polls."""
        self.timers_changed()
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
        self.timers_changed()
        self.associations.clear()
        self._by_address.clear()
        self._next_tick = None
        self.changes.reset()

    def new_associd(self) -> int:
        """A random association ID not in use."""
        while True:
            associd = self.rng.randint(1, 65535)
            if associd not in self.associations:
                return associd

    def mobilise(self, assoc: Association) -> Association:
        """Add ``assoc`` to the association table."""
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

    def readdress(self, assoc: Association, address: tuple[str, int]) -> None:
        """Move ``assoc`` to ``address`` (the NTP server an NTS-KE server negotiated)."""
        if self._by_address.get(assoc.address) is assoc:
            del self._by_address[assoc.address]
        assoc.address = address
        self._by_address[address] = assoc

    def room_for_ephemeral(self) -> bool:
        """Room to mobilise one more passive or broadcast client association: fewer than
        MAX_EPHEMERAL, or after demobilising the oldest ephemeral association never reached
        (so a flood of spoofed sources cannot lock real peers out; counted ``evicted``)."""
        if len(self._by_address) < MAX_EPHEMERAL:
            return True
        for assoc in self.associations.values():
            if assoc.ephemeral and not assoc.reach:
                self.counters["evicted"] += 1
                self.demobilise(assoc, "association table full")
                return True
        return False

    def demobilise(self, assoc: Association, reason: str) -> None:
        """Remove ``assoc`` from the association table."""
        self.associations.pop(assoc.associd, None)
        if self._by_address.get(assoc.address) is assoc:
            del self._by_address[assoc.address]
        if self.sys.peer == assoc.associd:
            self.sys = attrs.evolve(self.sys, peer=None)
        self.counters["demobilised"] += 1
        log.info("demobilised association {associd} with {host}: {reason}",
                 associd=assoc.associd, host=assoc.address[0], reason=reason)
        self.changes.removed(assoc, reason)

    def _add_refclock(self, conf: RefclockConfig, now: float) -> None:
        refid = conf.refid.encode("ascii", "replace")[:4].ljust(4, b"\x00")
        assoc = Association(
            associd=self.new_associd(), address=(conf.address, 0), hmode=MODE_CLIENT,
            minpoll=conf.minpoll, maxpoll=conf.maxpoll, hpoll=conf.minpoll,
            prefer=conf.prefer, refclock_stratum=conf.stratum, refclock_refid=refid,
            nextdate=now)
        self.mobilise(assoc)

    def _add_configured(self, conf: AssociationConfig, now: float) -> None:
        try:
            host = self._resolve(conf.address, conf.port)
        except OSError as e:
            raise ConfigError(self.config.path, conf.line,
                              f"cannot resolve {conf.address!r}: {e}") from e
        hmode = {"server": MODE_CLIENT, "peer": MODE_ACTIVE,
                 "broadcast": MODE_BROADCAST}[conf.kind]
        assoc = Association(
            associd=self.new_associd(), address=(host, conf.port), hmode=hmode,
            version=conf.version, minpoll=conf.minpoll, maxpoll=conf.maxpoll,
            hpoll=conf.minpoll, keyid=conf.key, prefer=conf.prefer, noselect=conf.noselect,
            iburst=conf.iburst, burst_option=conf.burst,
            # Spread first polls a little, as ntpd does, but keep them prompt.
            nextdate=now + self.rng.uniform(0.0, 1.0))
        if conf.autokey:
            if self.autokey is None:
                raise ConfigError(self.config.path, conf.line,
                                  "autokey needs the crypto directive (host credentials)")
            assoc.autokey = self.glue.session(assoc, ident=conf.ident)
        if conf.nts:
            from ntpauto.nts.session import NtsSession

            assoc.nts = NtsSession(conf.address, conf.ntsport, host, conf.port)
        self.mobilise(assoc)

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                local: tuple[str, int] | None = None) -> list[Datagram]:
        """Process one datagram received at NTP time ``rx`` (taken on arrival)."""
        reply = self.answer_fast(data, source, rx, now, local)
        if reply is not None:
            return [Datagram(reply, source)] if reply else []
        return self.receive_full(data, source, rx, now, local)

    def receive_full(self, data: bytes, source: tuple[str, int], rx: int, now: float,
                     local: tuple[str, int] | None = None) -> list[Datagram]:
        """:meth:`receive` without trying :attr:`answer_fast` first: for a transport that
        already did and got None."""
        self.timers_changed()
        out = self._receive_slow(data, source, rx, now, local)
        changes = self.changes
        changes.association(self._by_address.get(source))
        changes.system()
        return out

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
            if pkt.nts:
                return self.server.serve_nts(pkt, source, rx, now, flags)
            if auth == AUTH_AUTOKEY:
                return self.server.serve_autokey(pkt, source, rx, now, flags, local)
            return self.server.serve(pkt, source, rx, now, flags, auth, keyid, MODE_SERVER)
        assoc = self._by_address.get((host, source[1]))
        if assoc is None:
            if mode == MODE_ACTIVE:
                return self.receiver.new_passive(pkt, source, rx, now, flags, auth, keyid,
                                                  local)
            if mode == MODE_BROADCAST:
                return self.receiver.new_bclient(pkt, source, rx, now, flags, auth, keyid,
                                                  local)
            counters["noassoc"] += 1
            return []
        if local is not None and not assoc.local_refid and mode != MODE_BROADCAST:
            assoc.local_refid = refid_or_empty(local[0])
            if not is_wildcard(local[0]):
                assoc.local_address = local[0]
        return self.receiver.process(assoc, pkt, mode, rx, now, flags, auth, keyid)

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

    # ------------------------------------------------------------------ identity worker

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
        job = self.offload.complete(job_id, now) if self.offload is not None else None
        if job is None or self.autokey is None:
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
        return self.server.finish_identity(job, status, seconds, payload, now)

    # ------------------------------------------------------------------ timers

    def fire_timers(self, now: float) -> list[Datagram]:
        """Run every poll and the discipline's one-second adjustment that are due."""
        self.timers_changed()
        out: list[Datagram] = []
        changes = self.changes
        for assoc in list(self.associations.values()):
            if assoc.nextdate <= now and assoc.associd in self.associations:
                out.extend(self.poller.poll(assoc, now))
                changes.association(self.associations.get(assoc.associd))
        if self.discipline is not None and self._next_tick is not None:
            while self._next_tick <= now:
                self.discipline.tick(self._next_tick)
                self._next_tick += 1.0
        changes.system()
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
                "nts": self._nts_status(a),
            })
        if self.nts_server is not None:
            keys = self.nts_server.cookie_keys
            system["nts"] = {"rotate": keys.rotate, "key_id": keys.key_id(self.clock.now())}
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

    def _nts_status(self, a: Association) -> dict[str, Any] | None:
        """The NTS state of an association for display (no key, no cookie)."""
        if a.nts is None:
            return None
        nts = a.nts
        return {"host": nts.host, "ke_port": nts.port, "cookies": len(nts.cookies),
                "aead": nts.keys.aead if nts.keys else None, "keyed_at": nts.keyed_at,
                "ke_exchanges": nts.ke_exchanges, "error": self.nts.last_error.get(a.associd)}

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


def _flag_names(flash: Flash) -> list[str]:
    return [f.name for f in Flash if f & flash]


def _resolve_literal(address: str, port: int) -> str:
    """Resolve a server/peer address (numeric addresses need no lookup)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        info = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)
        return info[0][4][0]


def load_autokey(config: Config, leap_table: Any = None) -> AutokeyNode:
    """The host's Autokey credentials and responder from the ``crypto``/``keysdir``/
    ``automax``/``revoke`` directives (interop.md 7.4).  The keys directory defaults to
    the configuration file's directory.  KeyFileError names the file that is wrong."""
    from ntpauto.autokey.cookie import KEY_REVOKE, SEED_SECRET_SIZE, ServerSeed, SharedSeed
    from ntpauto.autokey.host import SIGNATURE_GRID, load_host
    from ntpauto.autokey.responder import Responder
    from ntpauto.autokey.seedfile import load_seed_secret, seed_file_name

    crypto = config.crypto
    keysdir = config.keysdir or os.path.dirname(os.path.abspath(config.path))
    digest = (crypto.digest or "md5").lower()
    host = load_host(keysdir, host=crypto.host, password=crypto.pw,
                     ident=crypto.ident or config.ident, digest=digest, leap=leap_table,
                     cert=crypto.cert)
    revoke = 2**config.revoke if config.revoke else 1 << KEY_REVOKE
    if config.farm is not None:
        _check_farm_host(config, host)
        path = config.farm.seedfile or os.path.join(keysdir, seed_file_name(host.hostname))
        seed: ServerSeed = SharedSeed(load_seed_secret(path), revoke)
        host.signature_grid = SIGNATURE_GRID
    elif config.workers != 1:
        # Worker processes issue the same cookies: a seed they can compute alike.
        seed = SharedSeed(secrets.token_bytes(SEED_SECRET_SIZE), revoke)
    else:
        seed = ServerSeed(revoke)
    budget = PrivateKeyBudget(config.autokey_budget, config.autokey_burst)
    return AutokeyNode(host, Responder(host, seed, budget=budget),
                       automax=config.automax or 12)


def _check_farm_host(config: Config, host: Any) -> None:
    """A farm's instances must sign alike: RSA signatures are deterministic, DSA ones are
    not (the same value signed twice gives two signatures, and a client that took one
    refuses the other as a replay)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(host.sign_key, rsa.RSAPrivateKey):
        raise ConfigError(config.path, config.farm.line,  # type: ignore[union-attr]
                          f"farm: the sign key of {host.name} is {host.profile.key_type}; "
                          "instances of a farm need an RSA sign key (their signatures must "
                          "be the same octets)")


def build_engine(config: Config, clock: IClock, *, rng: random.Random | None = None,
                 resolve: Callable[[str, int], str] | None = None) -> Engine:
    """An engine for ``config`` with its keys, leap table, drift and Autokey credentials
    loaded from disk.

    Raises ConfigError, KeyFileError, LeapFileError or CookieKeyFileError naming the file
    that is wrong.
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
                  if not is_wildcard(item.address)), None)
    return Engine(config, clock, keys=keys, leap_table=leap_table, rng=rng,
                  frequency_ppm=frequency, resolve=resolve, autokey=autokey,
                  local_address=local, nts_server=nts_server_for(config, clock.now))
