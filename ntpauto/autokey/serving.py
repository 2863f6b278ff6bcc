"""The stateless Autokey server: answers to client requests under session keys.

RFC 5906 sections 5 and 10 and interop.md 3.5, 8.2: the server keeps no per-client
state.  A request without extension fields must verify under the session key (client,
server, key ID, server cookie) and is answered under (server, client, key ID, server
cookie); a request with fields verifies under cookie 0 and gets the response to its first
field from the :class:`~ntpauto.autokey.responder.Responder`, MACed under cookie 0.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from hmac import compare_digest

from ntpauto.auth.autokey import (
    address_octets,
    mac,
    server_reply_key,
    session_key,
    verify_mac,
)
from ntpauto.auth.digest import HASHES
from ntpauto.autokey.amplification import ECHO_BITS, ECHO_MULTIPLIER, echo_key, echoes, empty_reply
from ntpauto.autokey.cookie import ServerSeed
from ntpauto.autokey.fields import AUTO, Field, decode
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.responder import Responder
from ntpauto.events import FieldError
from ntpauto.wire.packet import CRYPTO_NAK, MODE_CLIENT, Packet
from ntpauto.wire.timestamps import NTP_UNIX_OFFSET

__all__ = ["ADDRESS_PAIRS_CAP", "MIN_AUTOKEY_DIGEST", "AutokeyNode", "Pair", "SessionKeys"]

_TRANSMIT = struct.Struct("!Q")
_TAGGED_UNITS = float(1 << (32 - ECHO_BITS))
"""Units of the transmit timestamp above its tag, per second."""
_HIGH_MASK = (1 << (64 - ECHO_BITS)) - 1
_ECHO_SHIFT = 32 - ECHO_BITS
ADDRESS_PAIRS_CAP = 4096
"""(client, server) address pairs kept as session-key prefixes; cleared when full."""
_COOKIE = struct.Struct("!I")
MIN_AUTOKEY_DIGEST = 16
"""An Autokey MAC needs at least a 16-octet digest (interop.md 1.2: MAC >= 20 octets)."""


class AutokeyNode:
    """The host's Autokey side in one engine: credentials, responder, ``automax``."""

    def __init__(self, host: HostCredentials, responder: Responder | None = None, *,
                 automax: int = 12) -> None:
        self.host = host
        self.responder = responder if responder is not None else Responder(host)
        self.automax = automax
        self.sessions = SessionKeys(self.responder.seed, host.digest)
        """The session keys of requests without fields and the echo keys of replies."""

    @property
    def digest(self) -> str:
        return self.host.digest

    def serve(self, pkt: Packet, reply: bytes, client: str, server: str, now: int,
              auto_for: Callable[[int], Field | None]) -> tuple[bytes | None, str]:
        """The stateless server's answer to an Autokey client request (interop.md 3.5,
        8.2): ``reply`` is the reply header; returns the datagram (or None) and the counter
        naming the outcome.  Only the first extension field is answered."""
        if not pkt.fields:
            return self.serve_plain(pkt.data, reply, client, server, now)
        request = self.check_request(pkt, client, server)
        if isinstance(request, str):
            return self.refused(reply, request)
        autokey_value = auto_for(request.associd) if request.code == AUTO else None
        response = self.responder.respond(
            request, packet_mode=MODE_CLIENT, now=now, client=client, server=server,
            autokey_value=autokey_value)
        return self.finish(reply, response, client, server, pkt.keyid or 0, now), "served"

    def serve_empty(self, pkt: Packet, reply: bytes, client: str,
                    server: str) -> tuple[bytes | None, str]:
        """:meth:`serve` for a costly request from a source that has not completed an
        exchange: the request checked the same way, answered with the empty response and
        no work (ntpauto.autokey.amplification)."""
        request = self.check_request(pkt, client, server)
        if isinstance(request, str):
            return self.refused(reply, request)
        return (empty_reply(reply, request, pkt.keyid or 0, client, server, self.digest),
                "autokey_amplification")

    @staticmethod
    def refused(reply: bytes, why: str) -> tuple[bytes | None, str]:
        """What a request failing :meth:`check_request` with ``why`` gets: the crypto-NAK
        for a bad MAC, nothing for a malformed field; and the counter."""
        return (reply + CRYPTO_NAK if why == "badauth" else None), why

    def check_request(self, pkt: Packet, client: str, server: str) -> Field | str:
        """A client request with fields: its first field once its MAC verifies under the
        cookie-0 session key, else the counter naming why not (``badauth``: answer with a
        crypto-NAK; ``autokey_badfield``: drop)."""
        digest = self.digest
        key = session_key(client, server, pkt.keyid or 0, 0, digest)
        if len(pkt.digest) < MIN_AUTOKEY_DIGEST or not verify_mac(
                key, pkt.authenticated_part, pkt.digest, digest):
            return "badauth"
        try:
            return decode(pkt.fields[0].data)
        except FieldError:
            return "autokey_badfield"

    def finish(self, reply: bytes, response: Field | None, client: str, server: str,
               keyid: int, now: int) -> bytes:
        """The reply datagram: ``reply`` (the header) with ``response``, MACed with the
        request's key ID under cookie 0 when it carries the response, else under the
        server cookie (interop.md 3.5)."""
        digest = self.digest
        data = reply + (response.encode() if response is not None else b"")
        cookie = 0 if response is not None else self.responder.server_cookie(client, server,
                                                                             now)
        reply_key = server_reply_key(server, client, keyid, cookie,
                                     has_fields=response is not None, digest=digest)
        return data + mac(reply_key, keyid, data, digest)

    def serve_plain(self, data: bytes, reply: bytes, client: str, server: str,
                    now: int) -> tuple[bytes, str]:
        """:meth:`SessionKeys.serve` for ``client`` and ``server`` at ``now`` (the reply
        header ``reply`` as it is: its transmit timestamp not tagged)."""
        return self.sessions.serve(data, reply, self.sessions.pair(client, server, now))


Pair = tuple[bytes, bytes, int, bytes, int]
"""Per (client, server): the session-key prefixes client || server and server || client as
octets, the seed generation, the server cookie (4 octets) and the echo key under it."""


class SessionKeys:
    """The stateless server's side of session keys: requests without fields checked and
    answered under the server cookie (interop.md 3.5), and the echo key that tags the
    transmit timestamp of every Autokey reply (:mod:`ntpauto.autokey.amplification`).
    Needs only the server seed and the digest, no private key: the daemon's worker
    processes answer these requests with one of their own (:mod:`ntpauto.workerstate`).

    Per (client, server) address pair the prefixes, cookie and echo key are kept in a
    bounded table (cleared when ``capacity`` pairs are in it), valid while the seed is the
    same (its generation and interval)."""

    def __init__(self, seed: ServerSeed, digest: str,
                 capacity: int = ADDRESS_PAIRS_CAP) -> None:
        self.seed = seed
        self.digest = digest
        self.capacity = capacity
        """Address pairs kept (the table is cleared when it holds this many)."""
        self._hash = HASHES[digest]  # a session key is H(block), a MAC H(key || data)
        self._pairs: dict[tuple[str, str], Pair] = {}

    def pair(self, client: str, server: str, now: int) -> Pair | None:
        """The :data:`Pair` of ``client`` and ``server`` at ``now`` (crypto time), or None
        when the addresses are of different families (no session key exists between
        them)."""
        pair = self._pairs.get((client, server))
        if pair is not None and self._current(pair, now):
            return pair
        c, s = address_octets(client), address_octets(server)
        if len(c) != len(s):
            return None
        seed = self.seed
        cookie = seed.cookie(client, server, now, self.digest)
        table = self._pairs
        if len(table) >= self.capacity:
            table.clear()
        pair = table[(client, server)] = (c + s, s + c, seed.generation, _COOKIE.pack(cookie),
                                          echo_key(seed.value, client, server, self.digest))
        return pair

    def cached_pair(self, client: str, server: str) -> Pair | None:
        """The :data:`Pair` of ``client`` and ``server`` when the table holds one made under
        the seed in use (its generation), else None; nothing is computed or filled."""
        pair = self._pairs.get((client, server))
        return pair if pair is not None and pair[2] == self.seed.generation else None

    def _current(self, pair: Pair, now: int) -> bool:
        """``pair`` was made under the seed in use at ``now``."""
        seed = self.seed
        return pair[2] == seed.generation and \
            seed.valid_from <= (now or seed.time) < seed.valid_until

    def echo_key(self, client: str, server: str, now: int) -> int | None:
        """The echo key of ``client`` and ``server`` at ``now``: the :meth:`pair`'s when it
        is in the table, else computed without filling it (requests with fields, which may
        come from any number of spoofed sources, leave the table to time requests)."""
        pair = self._pairs.get((client, server))
        if pair is not None and self._current(pair, now):
            return pair[4]
        if len(address_octets(client)) != len(address_octets(server)):
            return None
        return echo_key(self.seed.at(now), client, server, self.digest)

    def answer(self, data: bytes, head: bytes, client: str, server: str, now: int,
               clock: Callable[[], float]) -> tuple[bytes, str]:
        """The server's first stage for a request without fields from ``client`` to
        ``server`` at ``now`` (crypto time): :meth:`serve` with the reply header ``head``
        (its first 40 octets) completed by a transmit timestamp read from ``clock`` (Unix
        seconds) and tagged with the pair's echo key (:func:`~ntpauto.autokey.amplification.
        tagged`, written out: the server's busiest Autokey path)."""
        pair = self.pair(client, server, now)
        high = int((clock() + NTP_UNIX_OFFSET) * _TAGGED_UNITS) & _HIGH_MASK
        if pair is None:
            return self.serve(data, head + _TRANSMIT.pack(high << ECHO_BITS), pair)
        tag = (((high ^ pair[4]) & 0xFFFFFFFF) * ECHO_MULTIPLIER & 0xFFFFFFFF) >> _ECHO_SHIFT
        return self.serve(data, head + _TRANSMIT.pack(high << ECHO_BITS | tag), pair)

    def serve(self, data: bytes, reply: bytes, pair: Pair | None) -> tuple[bytes, str]:
        """The common case, a request without extension fields (the server's hot path):
        ``data`` is the request (header, key ID, digest), ``reply`` the reply header and
        ``pair`` the request's :meth:`pair`.  The request's MAC must verify under session
        key (client, server, key ID, server cookie); the reply is MACed under (server,
        client, key ID, server cookie) (interop.md 3.5).  Returns the reply datagram and the
        counter naming the outcome."""
        if pair is None:
            return reply + CRYPTO_NAK, "badauth"
        to_us, to_them, _generation, cookie, _echo = pair
        keyid = data[48:52]
        digest = self._hash
        key = digest(to_us + keyid + cookie).digest()
        if not compare_digest(digest(key + data[:48]).digest(), data[52:]):
            return reply + CRYPTO_NAK, "badauth"
        reply_key = digest(to_them + keyid + cookie).digest()
        return reply + keyid + digest(reply_key + reply).digest(), "served"

    def echoed(self, client: str, server: str, origin: bytes, rx: int, poll: int) -> bool:
        """True when ``origin`` (the origin timestamp, 8 octets, of a request received at
        ``rx`` with poll exponent ``poll``) echoes a recent reply tagged for ``client`` by
        ``server`` under the current seed: the source has completed a normal exchange
        (:func:`~ntpauto.autokey.amplification.echoes`)."""
        key = self.echo_key(client, server, self.seed.time)
        return key is not None and echoes(origin, key, rx, poll)
