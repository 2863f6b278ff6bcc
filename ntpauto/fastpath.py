"""The server's hot path: the common client requests answered bytes to bytes.

A public NTP server spends nearly all its time answering three kinds of client request:
plain 48-octet requests, requests under a symmetric key (68 or 72 octets: key ID and an
MD5/CMAC or SHA1 digest) and, on an Autokey server, requests under a session key without
extension fields (the same sizes; key ID > 65535, MAC under the server cookie).
:class:`FastServer` answers those straight from the octets, with no packet objects, and
gives up (returns ``None``) on anything else so that :meth:`Engine.receive` takes its full
path.  It writes exactly the bytes the full path would (tests compare them) and keeps the
same counters.

The reply header is cached (:meth:`invalidate` when the system variables change): its
system-variable octets are packed once and kept while the root dispersion, which grows by
PHI with the time since the last clock update, stays at the same 1/65536 s on the wire
(about a second); each reply packs only the copied fields and the two timestamps into it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ntpauto.auth.digest import digests_equal
from ntpauto.ntp.constants import PHI
from ntpauto.wire.packet import CRYPTO_NAK, LEAP_UNSYNC, MODE_CLIENT, MODE_SERVER
from ntpauto.wire.timestamps import to_short, unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["FastServer", "REPLY"]

REPLY = struct.Struct("!BBB21s8sQQ")
"""A reply header: first octet, stratum, the request's poll octet, the system variables from
precision to the reference timestamp (:data:`SYSTEM_OCTETS`), the request's transmit
timestamp copied raw as origin, receive and transmit timestamps."""
SYSTEM_OCTETS = struct.Struct("!bII4sQ")
"""Precision, root delay, root dispersion, reference ID and reference timestamp."""
_MAX_SHORT = 0xFFFFFFFF
_UNSYNC_BITS = LEAP_UNSYNC << 6

_CLIENT_SIZES = frozenset({48, 68, 72})
_NO_KEY = bytes(4)


class FastServer:
    """Answers the common client requests of one engine; see the module docstring."""

    def __init__(self, engine: Engine,
                 server_address: Callable[[tuple[str, int] | None], str]) -> None:
        self._engine = engine
        self._counters = engine.counters
        self._flags_for = engine.restrict.flags_for
        self._trusted_macs = {word: (mac_of, size) for mac_of, size, word
                              in engine.keys.trusted_macs.values()}
        """The trusted keys' (keyed MAC function, digest size) by the MAC's key ID word."""
        self._now = engine.clock.now
        self._server_address = server_address
        self._servers: dict[tuple[str, int] | None, str] = {}
        self._base: tuple | None = None
        autokey = engine.autokey
        self._serve_autokey = autokey.serve_plain if autokey is not None else None

    def invalidate(self) -> None:
        """Forget the cached reply header (the system variables changed)."""
        self._base = None

    def header(self, version_bits: int, poll: int, origin: bytes, rx: int, now: float,
               mode: int = MODE_SERVER) -> bytes:
        """A server (or stateless passive) reply header: the request's version, poll and
        transmit timestamp (as origin) with the system variables (RFC 5905 A.5.3)."""
        base = self._base
        if base is None or not base[3] <= now < base[4]:
            base = self._new_base(now)
        return REPLY.pack(base[0] | version_bits | mode, base[1], poll, base[2], origin, rx,
                          unix_to_ntp(self._now()))

    def _new_base(self, now: float) -> tuple[int, int, bytes, float, float]:
        """The header's fixed part at ``now``: leap bits, stratum, the packed system octets,
        and the interval of engine time over which they hold (from ``now`` until the root
        dispersion on the wire next grows by one unit)."""
        engine = self._engine
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

    def answer(self, data: bytes, source: tuple[str, int], rx: int, now: float,
               local: tuple[str, int] | None) -> bytes | None:
        """The reply to a common client request from ``source`` received at ``rx`` (NTP
        time; ``now`` is the engine's time) on the socket bound to ``local``, or None when
        the request needs the full path."""
        size = len(data)
        if size not in _CLIENT_SIZES:
            return None
        first = data[0]
        host = source[0]
        if first & 7 != MODE_CLIENT or not 0x08 <= first & 0x38 <= 0x20 or not source[1] \
                or self._flags_for(host):
            return None
        counters = self._counters
        if size == 48:
            counters["received"] += 1
            counters["served"] += 1
            return self.header(first & 0x38, data[2], data[40:48], rx, now)
        keyid = data[48:52]
        if keyid[0] or keyid[1]:  # above 65535: an Autokey session key
            if self._serve_autokey is None:
                return None
            counters["received"] += 1
            reply = self.header(first & 0x38, data[2], data[40:48], rx, now)
            # Autokey stamps are NTP seconds, 0 while unsynchronised (Engine.crypto_now).
            crypto_now = rx >> 32 if self._base[0] != _UNSYNC_BITS else 0  # type: ignore[index]
            server = self._servers.get(local) or self._server_for(local)
            out, outcome = self._serve_autokey(data, reply, host, server, crypto_now)
            counters[outcome] += 1
            return out
        if keyid == _NO_KEY:
            return None
        counters["received"] += 1
        counters["served"] += 1
        reply = self.header(first & 0x38, data[2], data[40:48], rx, now)
        # KeyStore.verify then sign, written out: 0.15 us of 4.4 a reply (measured).
        entry = self._trusted_macs.get(keyid)
        if entry is None or size - 52 != entry[1] \
                or not digests_equal(entry[0](data[:48]), data[52:]):
            counters["badauth"] += 1
            return reply + CRYPTO_NAK
        return reply + keyid + entry[0](reply)

    def _server_for(self, local: tuple[str, int] | None) -> str:
        """Our side of a client's session keys for requests arriving on ``local`` (one entry
        per bound socket)."""
        server = self._servers[local] = self._server_address(local)
        return server
