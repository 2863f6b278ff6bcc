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
from ntpauto.autokey.amplification import empty_reply
from ntpauto.autokey.fields import AUTO, Field, decode
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.responder import Responder
from ntpauto.events import FieldError
from ntpauto.wire.packet import CRYPTO_NAK, MODE_CLIENT, Packet

__all__ = ["ADDRESS_PAIRS_CAP", "MIN_AUTOKEY_DIGEST", "AutokeyNode"]

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
        self._hash = HASHES[host.digest]  # a session key is H(block), a MAC H(key || data)
        self._seed = self.responder.seed
        self._pairs: dict[tuple[str, str], tuple[bytes, bytes, int, bytes]] = {}
        """Per (client, server): the session-key prefixes both ways, and the server cookie
        (octets) with the seed generation it was computed under."""

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
        """The common case, a request without extension fields (the server's hot path):
        ``data`` is the request (header, key ID, digest), ``reply`` the reply header.  The
        request's MAC must verify under session key (client, server, key ID, server cookie);
        the reply is MACed under (server, client, key ID, server cookie) (interop.md
        3.5).  Returns the reply datagram and the counter naming the outcome."""
        pair = self._pairs.get((client, server))
        seed = self._seed
        if pair is None or pair[2] != seed.generation \
                or not seed.valid_from <= now < seed.valid_until:
            pair = self._pair(client, server, now)
            if pair is None:
                return reply + CRYPTO_NAK, "badauth"
        to_us, to_them, _generation, cookie = pair
        keyid = data[48:52]
        digest = self._hash
        key = digest(to_us + keyid + cookie).digest()
        if not compare_digest(digest(key + data[:48]).digest(), data[52:]):
            return reply + CRYPTO_NAK, "badauth"
        reply_key = digest(to_them + keyid + cookie).digest()
        return reply + keyid + digest(reply_key + reply).digest(), "served"

    def _pair(self, client: str, server: str, now: int
              ) -> tuple[bytes, bytes, int, bytes] | None:
        """The session-key prefixes (client || server, server || client) as octets and the
        server cookie at ``now``, kept in a bounded table; None when the addresses are of
        different families (no session key exists between them)."""
        c, s = address_octets(client), address_octets(server)
        if len(c) != len(s):
            return None
        cookie = _COOKIE.pack(self.responder.server_cookie(client, server, now))
        table = self._pairs
        if len(table) >= ADDRESS_PAIRS_CAP:
            table.clear()
        pair = table[(client, server)] = (c + s, s + c, self._seed.generation, cookie)
        return pair
