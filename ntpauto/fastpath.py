"""The server's hot path: the common client requests answered bytes to bytes.

A public NTP server spends nearly all its time answering three kinds of client request:
plain 48-octet requests, requests under a symmetric key (68 or 72 octets: key ID and an
MD5/CMAC or SHA1 digest) and, on an Autokey server, requests under a session key without
extension fields (the same sizes; key ID > 65535, MAC under the server cookie).
:class:`FastServer` answers those straight from the octets, with no packet objects, and
gives up (returns ``None``) on anything else so that :meth:`Engine.receive` takes its full
path.  It writes exactly the bytes the full path would (tests compare them) and keeps the
same counters.

The reply header is cached (:meth:`invalidate` when the system variables change): only the
root dispersion, which grows with the time since the last clock update, the copied fields
and the two timestamps change from one reply to the next.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ntpauto.auth.digest import digests_equal
from ntpauto.ntp.constants import PHI
from ntpauto.wire.packet import CRYPTO_NAK, LEAP_UNSYNC, MODE_CLIENT, MODE_SERVER
from ntpauto.wire.timestamps import to_short, unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["FastServer", "REPLY"]

REPLY = struct.Struct("!BBBbII4sQ8sQQ")
"""A reply header with the request's poll octet and transmit timestamp copied raw."""

_CLIENT_SIZES = frozenset({48, 68, 72})
_KEYID = struct.Struct("!I")


class FastServer:
    """Answers the common client requests of one engine; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._counters = engine.counters
        self._flags_for = engine.restrict.flags_for
        self._trusted_macs = engine.keys.trusted_macs
        self._now = engine.clock.now
        self._server_address = engine._server_address
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
        base = self._base or self._new_base()
        leap, stratum, precision, root_delay, refid, reftime, disp, epoch, synced = base
        if synced and now > epoch:
            disp += PHI * (now - epoch)
        return REPLY.pack(leap | version_bits | mode, stratum, poll, precision, root_delay,
                          min(int(disp * 65536.0 + 0.5), 0xFFFFFFFF), refid, reftime,
                          origin, rx, unix_to_ntp(self._now()))

    def _new_base(self) -> tuple:
        engine = self._engine
        sys = engine.sys
        base = self._base = (
            sys.leap << 6, engine._wire_stratum(), engine.precision, to_short(sys.root_delay),
            sys.refid, sys.reftime, sys.root_dispersion, sys.epoch, sys.leap != LEAP_UNSYNC)
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
        keyid = _KEYID.unpack_from(data, 48)[0]
        if keyid > 65535:
            if self._serve_autokey is None:
                return None
            counters["received"] += 1
            reply = self.header(first & 0x38, data[2], data[40:48], rx, now)
            # Autokey stamps are NTP seconds, 0 while unsynchronised (Engine._crypto_now).
            crypto_now = rx >> 32 if self._base[8] else 0  # type: ignore[index]
            server = self._servers.get(local) or self._server_for(local)
            out, outcome = self._serve_autokey(data, reply, host, server, crypto_now)
            counters[outcome] += 1
            return out
        if not keyid:
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
        return reply + entry[2] + entry[0](reply)

    def _server_for(self, local: tuple[str, int] | None) -> str:
        """Our side of a client's session keys for requests arriving on ``local`` (one entry
        per bound socket)."""
        server = self._servers[local] = self._server_address(local)
        return server
