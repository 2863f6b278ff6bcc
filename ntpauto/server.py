"""The stateless server of an NTP node: one reply path for client requests (mode 3, and mode
0 from NTPv1) and stateless passive replies (RFC 5905 A.5.3 fast_xmit), plain, under a
symmetric key or an Autokey session key.

A public server spends nearly all its time on three kinds of client request: plain 48-octet
requests, requests under a symmetric key (68 or 72 octets: key ID and an MD5/CMAC or SHA1
digest) and, on an Autokey server, requests under a session key without extension fields
(the same sizes; key ID > 65535, MAC under the server cookie).  :meth:`Server.answer` is the
path's first stage: it answers those straight from the octets, with no packet objects,
restrict flags (``ignore``, ``noserve``, ``limited`` with its RATE kiss) included, answers
NTS-protected requests of a node that serves NTS (:meth:`Server.serve_nts`, RFC 8915), and
passes everything else on (returns None) to :meth:`Engine.receive_full`, which parses the
packet and comes back to :meth:`Server.serve` (``notrust``, crypto-NAKs of other shapes,
mode 0, stateless passive replies) or :meth:`Server.serve_autokey` (extension fields).
Both stages write their replies with the same pieces: :meth:`Server.header` (and its kiss),
:meth:`KeyStore.verified <ntpauto.auth.keys.KeyStore.verified>` for symmetric keys and
:meth:`AutokeyNode.serve_plain <ntpauto.autokey.serving.AutokeyNode.serve_plain>` for
session keys.

Rate limiting follows ntpd: a limited source gets at most one RATE kiss per ``discard
average`` interval (:class:`~ntpauto.ntp.restrict.RateLimiter`), the others are dropped and
counted (``kod_withheld``).  Autokey requests with extension fields get the response to
their first field (interop.md 3.5, 8.2); those costing private-key work pass the
per-source rate limit, the private-key budget and, from a source that has not completed a
normal exchange, the amplification limit (:mod:`ntpauto.autokey.amplification`); identity
requests may be answered by the identity worker (:mod:`ntpauto.autokey.offload`).

The reply header is cached (:meth:`Server.invalidate` when the system variables change): its
system-variable octets are packed once and kept while the root dispersion, which grows by
PHI with the time since the last clock update, stays at the same 1/65536 s on the wire
(about a second); each reply packs only the copied fields and the two timestamps into it.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING

from ntpauto.autokey.amplification import cut_reply, tagged
from ntpauto.autokey.association import group_gate
from ntpauto.autokey.budget import BudgetExceeded
from ntpauto.autokey.fields import Field
from ntpauto.autokey.fields import decode as decode_field
from ntpauto.autokey.offload import IdentityJob
from ntpauto.events import AutokeyError, FieldError
from ntpauto.ntp.constants import PHI
from ntpauto.ntp.peer import is_wildcard
from ntpauto.ntp.restrict import KOD
from ntpauto.ntp.restrict import SERVING_FLAGS as _SERVING_FLAGS
from ntpauto.wire.packet import (
    CRYPTO_NAK,
    KISS_NTSN,
    KISS_RATE,
    LEAP_UNSYNC,
    MODE_CLIENT,
    MODE_SERVER,
    Datagram,
    MalformedPacket,
    Packet,
    parse,
)
from ntpauto.wire.timestamps import NTP_UNIX_OFFSET, to_short, unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["AUTH_AUTOKEY", "AUTH_ERROR", "AUTH_NAK", "AUTH_NONE", "AUTH_OK", "REPLY", "Server"]

AUTH_NONE = 0
AUTH_OK = 1
AUTH_ERROR = 2
AUTH_NAK = 3
AUTH_AUTOKEY = 4
"""An Autokey key ID (> 65535): verified later with the session key of its context."""

REPLY = struct.Struct("!BBB21s8sQQ")
"""A reply header: first octet, stratum, the request's poll octet, the system variables from
precision to the reference timestamp (:data:`SYSTEM_OCTETS`), the request's transmit
timestamp copied raw as origin, receive and transmit timestamps."""
HEAD = struct.Struct("!BBB21s8sQ")
""":data:`REPLY` without its transmit timestamp."""
SYSTEM_OCTETS = struct.Struct("!bII4sQ")
"""Precision, root delay, root dispersion, reference ID and reference timestamp."""
_MAX_SHORT = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_UNSYNC_BITS = LEAP_UNSYNC << 6

_CLIENT_SIZES = frozenset({48, 68, 72})
LOCAL_ADDRESSES_CAP = 64
"""Local addresses whose session-key side is kept (a wildcard socket learns one per
destination address its requests arrive on)."""


class Server:
    """The stateless server of one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._counters = engine.counters
        self._flags_for = engine.restrict.flags_for
        self._cached_flags = engine.restrict.cached
        self._verified = engine.keys.verified
        self._now = engine.clock.now
        self._servers: dict[tuple[str, int] | None, str] = {}
        self._base: tuple[int, int, bytes, float, float] | None = None
        self._kiss_octets = SYSTEM_OCTETS.pack(engine.precision, 0, 0, KISS_RATE, 0)
        self._sessions = engine.session_keys

    def server_address(self, local: tuple[str, int] | None) -> str:
        """The address a client's request reached us on (our side of its session keys)."""
        if local is not None and not is_wildcard(local[0]):
            return local[0]
        return self.engine.local_address or "0.0.0.0"

    # -- the reply header ----------------------------------------------------------------

    @property
    def cached_header(self) -> tuple[int, int, bytes, float, float] | None:
        """The reply header as it is cached now: leap bits, stratum, the packed system octets
        and the engine time from which and until which they hold (None: none is)."""
        return self._base

    def invalidate(self) -> None:
        """Forget the cached reply header (the system variables changed)."""
        self._base = None

    def header(self, version_bits: int, poll: int, origin: bytes, rx: int, now: float,
               mode: int = MODE_SERVER, echo: int | None = None) -> bytes:
        """A server (or stateless passive) reply header: the request's version, poll and
        transmit timestamp (as origin) with the system variables (RFC 5905 A.5.3); with
        ``echo`` (an Autokey reply's echo key) its transmit timestamp is tagged
        (:mod:`ntpauto.autokey.amplification`)."""
        base = self._base
        if base is None or not base[3] <= now < base[4]:
            base = self._new_base(now)
        transmit = unix_to_ntp(self._now())
        if echo is not None:
            transmit = tagged(transmit, echo)
        return REPLY.pack(base[0] | version_bits | mode, base[1], poll, base[2], origin, rx,
                          transmit)

    def crypto_now(self, rx: int, now: float) -> int:
        """Autokey's time for a request received at ``rx``: its NTP seconds, 0 while
        unsynchronised (:meth:`Engine.crypto_now`, from the cached header)."""
        base = self._base
        if base is None or not base[3] <= now < base[4]:
            base = self._new_base(now)
        return rx >> 32 if base[0] != _UNSYNC_BITS else 0

    def autokey_header(self, version_bits: int, poll: int, origin: bytes, rx: int,
                       now: float, client: str, server: str, crypto_now: int) -> bytes:
        """:meth:`header` of an Autokey reply to ``client`` from ``server``: tagged with
        their echo key (none between address families)."""
        return self.header(version_bits, poll, origin, rx, now,
                           echo=self._sessions.echo_key(client, server,  # type: ignore[union-attr]
                                                        crypto_now))

    def _new_base(self, now: float) -> tuple[int, int, bytes, float, float]:
        """The header's fixed part at ``now``: leap bits, stratum, the packed system octets,
        and the interval of engine time over which they hold (from ``now`` until the root
        dispersion on the wire next grows by one unit)."""
        engine = self.engine
        sys = engine.sys
        until = math.inf
        disp = sys.root_dispersion
        synced = sys.leap != LEAP_UNSYNC
        if synced and now > sys.epoch:
            disp += PHI * (now - sys.epoch)
        units = min(int(disp * 65536.0 + 0.5), _MAX_SHORT)
        if synced and units < _MAX_SHORT:
            # When disp + PHI * (t - epoch) reaches the next rounding boundary; never at or
            # before now, so that a boundary lost to float rounding cannot stall the cache.
            grows_at = sys.epoch + ((units + 0.5) / 65536.0 - sys.root_dispersion) / PHI
            until = max(grows_at, math.nextafter(now, math.inf))
        octets = SYSTEM_OCTETS.pack(engine.precision, to_short(sys.root_delay), units,
                                    sys.refid, sys.reftime)
        base = self._base = (sys.leap << 6, engine.system.wire_stratum(), octets, now, until)
        return base

    def kiss(self, version_bits: int, poll: int, origin: bytes, rx: int, mode: int,
             code: bytes = KISS_RATE) -> bytes:
        """A kiss-o'-death (RFC 5905 section 7.4; RATE unless ``code`` says otherwise, e.g.
        the NTS NAK): leap 3, stratum 0, the code as refid, zero root values and reference
        time, the request's transmit timestamp as origin and the receive time as both
        receive and transmit timestamps, so that it gives no time."""
        octets = self._kiss_octets if code == KISS_RATE else SYSTEM_OCTETS.pack(
            self.engine.precision, 0, 0, code, 0)
        return REPLY.pack(_UNSYNC_BITS | version_bits | mode, 0, poll, octets, origin, rx, rx)

    # -- the first stage: bytes to bytes ---------------------------------------------------

    def answer(self, data: bytes, source: tuple[str, int], rx: int, now: float,
               local: tuple[str, int] | None) -> bytes | None:
        """The reply to a client request from ``source`` received at ``rx`` (NTP time;
        ``now`` is the engine's time) on the socket bound to ``local``: its octets, ``b""``
        when it gets none (restricted, rate-limited), or None when it needs the full path
        (:meth:`Engine.receive_full`).  Never changes timers.  (The busiest code of the
        server: :meth:`header` and the restrict lookup are written out in it.)"""
        size = len(data)
        if size not in _CLIENT_SIZES:
            return self._answer_nts(data, source, rx, now) if size > 72 else None
        first = data[0]
        if first & 7 != MODE_CLIENT or not 0x08 <= first & 0x38 <= 0x20 or not source[1]:
            return None
        host = source[0]
        flags = self._cached_flags(host)
        if flags is None:
            flags = self._flags_for(host)
        if flags and not flags.isdisjoint(_SERVING_FLAGS):
            if "notrust" in flags:  # decided on the authentication outcome: the full path
                return None
            refused = self._restricted(flags, data, source, rx, now)
            if refused is not None:
                return refused
        base = self._base
        if base is None or not base[3] <= now < base[4]:
            base = self._new_base(now)
        counters = self._counters
        if size == 48:
            counters["received"] += 1
            counters["served"] += 1
            return REPLY.pack(base[0] | first & 0x38 | MODE_SERVER, base[1], data[2], base[2],
                              data[40:48], rx,
                              int((self._now() + NTP_UNIX_OFFSET) * 4294967296.0) & _MASK64)
        keyid = data[48:52]
        if keyid[0] or keyid[1]:  # above 65535: an Autokey session key
            sessions = self._sessions
            if sessions is None:
                return None
            counters["received"] += 1
            server = self._servers.get(local) or self._server_for(local)
            # Autokey stamps are NTP seconds, 0 while unsynchronised (Engine.crypto_now).
            out, outcome = sessions.answer(
                data, HEAD.pack(base[0] | first & 0x38 | MODE_SERVER, base[1], data[2], base[2],
                                data[40:48], rx),
                host, server, rx >> 32 if base[0] != _UNSYNC_BITS else 0, self._now)
            counters[outcome] += 1
            return out
        counters["received"] += 1
        counters["served"] += 1
        reply = REPLY.pack(base[0] | first & 0x38 | MODE_SERVER, base[1], data[2], base[2],
                           data[40:48], rx,
                           int((self._now() + NTP_UNIX_OFFSET) * 4294967296.0) & _MASK64)
        mac_of = self._verified(keyid, data[:48], data[52:])
        if mac_of is None:
            counters["badauth"] += 1
            return reply + CRYPTO_NAK
        return reply + keyid + mac_of(reply)

    def _answer_nts(self, data: bytes, source: tuple[str, int], rx: int,
                    now: float) -> bytes | None:
        """:meth:`answer` for a longer datagram: an NTS-framed client request when this
        node serves NTS (:meth:`serve_nts`; no timer changes, so it need not take the full
        path), else None.  Anything else, and a source restricted with ``ignore``, goes on
        to the full path, which counts it."""
        first = data[0]
        if self.engine.nts_server is None or first & 7 != MODE_CLIENT \
                or not 0x08 <= first & 0x38 <= 0x20 or not source[1] \
                or "ignore" in self._flags_for(source[0]):
            return None
        try:
            pkt = parse(data)
        except MalformedPacket:
            return None
        if not pkt.nts:
            return None
        self._counters["received"] += 1
        out = self.serve_nts(pkt, source, rx, now, self._flags_for(source[0]))
        return out[0].data if out else b""

    def _restricted(self, flags: frozenset[str], data: bytes, source: tuple[str, int],
                    rx: int, now: float) -> bytes | None:
        """:meth:`answer` for a source whose restrict flags bear on serving (``notrust``
        aside): ``b""`` when it gets no reply, the RATE kiss, or None: answer it."""
        counters = self._counters
        if "ignore" in flags or "noserve" in flags:
            counters["received"] += 1
            counters["restricted"] += 1
            return b""
        if "limited" not in flags or len(data) > 48 and (data[48] or data[49]):
            return None  # session-key requests are rate-limited when they carry fields
        verdict = self.engine.limiter.check(source[0], now)
        if not verdict:
            return None
        counters["received"] += 1
        return self._limited(verdict, flags, data[0] & 0x38, data[2], data[40:48], rx,
                             MODE_SERVER)

    def _limited(self, verdict: int, flags: frozenset[str], version_bits: int, poll: int,
                 origin: bytes, rx: int, mode: int) -> bytes:
        """A request over the rate limit (``verdict`` from RateLimiter.check): the RATE kiss
        when ``kod`` is set and none went to the source within the interval, else ``b""``."""
        counters = self._counters
        counters["limited"] += 1
        if "kod" not in flags:
            return b""
        if verdict != KOD:
            counters["kod_withheld"] += 1
            return b""
        counters["kodsent"] += 1
        return self.kiss(version_bits, poll, origin, rx, mode)

    def _server_for(self, local: tuple[str, int] | None) -> str:
        """Our side of a client's session keys for requests arriving on ``local``: one entry
        per bound socket, or per destination address of a wildcard socket (bounded: cleared
        when full)."""
        if len(self._servers) >= LOCAL_ADDRESSES_CAP:
            self._servers.clear()
        server = self._servers[local] = self.server_address(local)
        return server

    # -- the rest of the path: parsed packets ------------------------------------------------

    def serve(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
              flags: frozenset[str], auth: int, keyid: int | None,
              reply_mode: int) -> list[Datagram]:
        """The stateless reply (RFC 5905 A.5.3 fast_xmit) to a parsed client request (or,
        with ``reply_mode`` passive, a symmetric active packet that may not mobilise) whose
        MAC the engine classified as ``auth``: what :meth:`answer` leaves to the full path."""
        counters = self._counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if "notrust" in flags and auth != AUTH_OK:
            counters["restricted"] += 1
            return []
        if auth == AUTH_NAK:
            counters["badauth"] += 1
            return []
        limited = self._over_limit(pkt, source, rx, now, flags, reply_mode)
        if limited is not None:
            return limited
        version_bits, poll, origin = copied(pkt)
        data = self.header(version_bits, poll, origin, rx, now, reply_mode)
        if auth == AUTH_OK:  # a trusted key: the engine verified the request with it
            mac_of = self.engine.keys.trusted_mac(keyid)  # type: ignore[arg-type]
            data += keyid.to_bytes(4, "big") + mac_of(data)  # type: ignore[misc,union-attr]
        elif auth == AUTH_ERROR:
            counters["badauth"] += 1
            data += CRYPTO_NAK
        counters["served"] += 1
        return [Datagram(data, source)]

    def _over_limit(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                    flags: frozenset[str], mode: int) -> list[Datagram] | None:
        """What a ``limited`` source over the rate limit gets (the RATE kiss or nothing),
        or None: answer it."""
        if "limited" not in flags:
            return None
        verdict = self.engine.limiter.check(source[0], now)
        if not verdict:
            return None
        kiss = self._limited(verdict, flags, *copied(pkt), rx, mode)
        return [Datagram(kiss, source)] if kiss else []

    def serve_nts(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                  flags: frozenset[str]) -> list[Datagram]:
        """An NTS-framed client request (RFC 8915 section 5.7; :mod:`ntpauto.nts.serving`):
        restrict flags and the rate limit as for any request (NTS authenticates it, so
        ``notrust`` lets it through).  Without NTS configured the fields are ignored, as
        RFC 7822 asks of unknown ones: a plain reply, which an NTS client refuses."""
        nts = self.engine.nts_server
        if nts is None:
            return self.serve(pkt, source, rx, now, flags, AUTH_NONE, None, MODE_SERVER)
        counters = self._counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        limited = self._over_limit(pkt, source, rx, now, flags, MODE_SERVER)
        if limited is not None:
            return limited
        version_bits, poll, origin = copied(pkt)
        data, outcome = nts.answer(
            pkt, self.header(version_bits, poll, origin, rx, now),
            lambda: self.kiss(version_bits, poll, origin, rx, MODE_SERVER, KISS_NTSN))
        counters[outcome] += 1
        if data is None:
            return []
        if outcome != "nts_nak_sent":
            counters["served"] += 1
        return [Datagram(data, source)]

    def serve_autokey(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                      flags: frozenset[str], local: tuple[str, int] | None
                      ) -> list[Datagram]:
        """A client request under an Autokey session key: stateless reply with the response
        to its first extension field (interop.md 3.5, 8.2).  Requests with fields
        pass ``limited`` (the per-source rate, dropped when over) and, from a source that has
        not completed a normal exchange, the amplification limit (docs/autokey.md)."""
        engine = self.engine
        counters = self._counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if pkt.fields and "limited" in flags and engine.limiter.check(source[0], now):
            counters["autokey_limited"] += 1
            return []
        request = pkt.header
        node = engine.autokey
        if node is None:
            counters["badauth"] += 1
            reply = self.header(*copied(pkt), rx, now)
            return [Datagram(reply + CRYPTO_NAK, source)]
        server = self.server_address(local)
        crypto_now = engine.crypto_now()
        reply = self.autokey_header(*copied(pkt), rx, now, source[0], server, crypto_now)
        first: Field | None = None
        for f in pkt.fields[:1]:
            try:
                first = decode_field(f.data)
            except FieldError:
                break
            if not group_gate(node.host.name, first, engine.config.ident):
                counters["declined"] += 1
                return []
        limit = engine.config.amplification_limit and first is not None \
            and not node.sessions.echoed(source[0], server, pkt.data[24:32], rx, request.poll)
        node.responder.last_error = None
        if limit and node.responder.costly(first.code):
            # Unproven: no private-key work, the empty response (never larger).
            data, outcome = node.serve_empty(pkt, reply, source[0], server)
        else:
            queued = None
            if first is not None and first.code in engine.offload_codes and not first.response:
                queued = self._offload_identity(pkt, first, reply, source, server, rx, now,
                                                limit)
            data, outcome = queued or node.serve(pkt, reply, source[0], server, crypto_now,
                                                 engine.glue.auto_for)
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
        and it is larger than the request (its tagged transmit timestamp is the echo that
        proves the source next time)."""
        if limit and request is not None and len(data) > request_size:
            self._counters["autokey_amplification"] += 1
            data = cut_reply(reply, request, keyid, source[0], server,
                             self.engine.autokey.digest)
        return [Datagram(data, source)]

    # -- identity requests answered by the worker --------------------------------------------

    def _offload_identity(self, pkt: Packet, request: Field, reply: bytes,
                          source: tuple[str, int], server: str, rx: int, now: float,
                          limit: bool) -> tuple[bytes | None, str] | None:
        """An identity request for the worker (:mod:`ntpauto.autokey.offload`): checked and
        admitted here, answered by :meth:`finish_identity` when its value comes back.
        Returns what :meth:`AutokeyNode.serve` would (the datagram now, if any, and the
        counter), or None: answer it in process (a request the responder refuses)."""
        engine = self.engine
        node = engine.autokey
        assert node is not None and engine.offload is not None
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
        job = engine.offload.submit(
            now, request=request, source=source, server=server, keyid=pkt.keyid or 0,
            version_bits=header.version << 3, poll=header.poll & 0xFF,
            origin=pkt.data[40:48], rx=rx, request_size=len(pkt.data), limit=limit)
        return None, "autokey_offloaded" if job is not None else "autokey_offload_busy"

    def finish_identity(self, job: IdentityJob, status: int, seconds: float,
                        payload: bytes, now: float) -> list[Datagram]:
        """The reply to the client's offloaded identity request ``job`` once the worker
        answered: the signed response under a fresh transmit timestamp."""
        engine = self.engine
        counters = self._counters
        node = engine.autokey
        crypto_now = engine.crypto_now()
        response = node.responder.end_identity(job.request, status, payload, seconds,
                                               crypto_now)
        reply = self.autokey_header(job.version_bits, job.poll, job.origin, job.rx, now,
                                    job.source[0], job.server, crypto_now)
        data = node.finish(reply, response, job.source[0], job.server, job.keyid, crypto_now)
        counters["served"] += 1
        if response is not None and response.error:
            counters["autokey_error_response"] += 1
        return self._autokey_reply_out(data, reply, job.request, job.keyid, job.source,
                                       job.server, job.limit, job.request_size)


def copied(pkt: Packet) -> tuple[int, int, bytes]:
    """What a reply copies from the request (RFC 5905 A.5.3): its version (as the first
    octet's bits), its poll octet and its transmit timestamp (as our origin, raw)."""
    return pkt.header.version << 3, pkt.header.poll & 0xFF, pkt.data[40:48]
