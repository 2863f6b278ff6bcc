"""Autokey on the wire, for the engine: key lists, session-key MACs and the autokey test per
association, and the stateless server's Autokey replies (REFERENCE-NOTES 3, 4.1, 8).

The dance itself (which request to send, what a response proves) is
:class:`~ntpauto.autokey.association.AutokeyAssociation`; the answers are the
:class:`~ntpauto.autokey.responder.Responder`'s.  This module moves their fields in and out of
packets and authenticates those packets with Autokey session keys.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container
from hmac import compare_digest

from ntpauto.auth.autokey import (
    KeyList,
    address_octets,
    autokey_test,
    decrement_seq,
    mac,
    server_reply_key,
    session_key,
    verify_mac,
)
from ntpauto.auth.digest import HASHES
from ntpauto.autokey.amplification import empty_reply
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.fields import AUTO, Field, decode
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.responder import Responder
from ntpauto.events import FieldError
from ntpauto.wire.packet import CRYPTO_NAK, MODE_BROADCAST, MODE_CLIENT, Packet

ADDRESS_PAIRS_CAP = 4096
"""(client, server) address pairs kept as session-key prefixes; cleared when full."""
_COOKIE = struct.Struct("!I")
MIN_AUTOKEY_DIGEST = 16
"""An Autokey MAC needs at least a 16-octet digest (REFERENCE-NOTES 1.2: MAC >= 20 octets)."""


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
        """The stateless server's answer to an Autokey client request (REFERENCE-NOTES 3.5,
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
        server cookie (REFERENCE-NOTES 3.5)."""
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
        the reply is MACed under (server, client, key ID, server cookie) (REFERENCE-NOTES
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


class AutokeySession:
    """Key list, MACs and autokey-test state of one Autokey association."""

    def __init__(self, node: AutokeyNode, state: AutokeyAssociation, *,
                 broadcast_server: bool = False) -> None:
        self.node = node
        self.state = state
        self.broadcast_server = broadcast_server
        self.keylist: KeyList | None = None
        self.auto_field: Field | None = None
        self._generation = state.keylist_generation
        self._poll: int | None = None
        self._announce = False
        self.sent_keyid: int | None = None
        self.sent_codes: frozenset[int] = frozenset()
        """Codes of the requests in our last transmission (client mode: what a reply may
        answer)."""

    @property
    def digest(self) -> str:
        return self.node.digest

    def _cookie(self, broadcast_packet: bool = False) -> int:
        """The cookie for packets without extension fields: 0 for broadcasts, the server's
        cookie for a broadcast client's unicast volley (REFERENCE-NOTES 3.2, 11)."""
        if self.broadcast_server or broadcast_packet:
            return 0
        return self.state.cookie

    # ------------------------------------------------------------------ transmit

    def outgoing(self, header: bytes, *, src: str, dst: str, now: int, synced: bool,
                 poll: int, peer_leap: int, associd: int, in_use: Container[int] = ()
                 ) -> bytes:
        """Header plus this transmission's extension fields and Autokey MAC."""
        state = self.state
        if (self.keylist is None or self.keylist.exhausted or self._poll != poll
                or self._generation != state.keylist_generation):
            self.keylist = KeyList.generate(
                src, dst, self._cookie(), now=now, poll=poll, automax=self.node.automax,
                in_use=in_use, digest=self.digest, rng=self.node.host.rng)
            self._generation = state.keylist_generation
            self._poll = poll
            self.auto_field = self.node.host.autokey_field(self.keylist, associd=associd)
            self._announce = bool(self.auto_field.signature)
            if self._announce:
                self.node.responder.key_operations["keylist_signature"] += 1
        keyid = self.keylist.pop()
        if self.broadcast_server:
            if self._announce:
                fields = [self.auto_field]
            else:
                fields = [self.node.host.assoc_field(associd, response=True)]
            self._announce = False
        else:
            fields = state.next_fields(now, synchronized=synced, peer_leap=peer_leap,
                                       own_associd=associd, autokey_value=self.auto_field)
        data = header + b"".join(f.encode() for f in fields)
        self.sent_keyid = keyid
        self.sent_codes = frozenset(f.code for f in fields if not f.response)
        key = self.keylist.mac_key(keyid, has_fields=bool(fields))
        return data + mac(key, keyid, data, self.digest)

    # ------------------------------------------------------------------ receive

    def authenticate(self, pkt: Packet, *, src: str, dst: str) -> bool:
        """The packet's MAC verifies under its Autokey session key (cookie 0 when it carries
        extension fields or is a broadcast, REFERENCE-NOTES 3.2)."""
        keyid = pkt.keyid
        if keyid is None or keyid <= 65535 or len(pkt.digest) < MIN_AUTOKEY_DIGEST:
            return False
        cookie = 0 if pkt.fields else self._cookie(pkt.header.mode == MODE_BROADCAST)
        key = session_key(src, dst, keyid, cookie, self.digest)
        return verify_mac(key, pkt.authenticated_part, pkt.digest, self.digest)

    def solicited(self, fields: list[Field]) -> bool:
        """In client mode, every response in a reply must answer a request of our last
        transmission: the stateless server answers only what we asked.  A reply with
        fields to a request without any (every packet after the dance) is bait; its cookie-0
        MAC proves nothing (security CASES 19, 43 and the reset storms)."""
        return all(not f.response or f.code in self.sent_codes for f in fields)

    def fields(self, pkt: Packet) -> list[Field]:
        """The packet's extension fields; FieldError for the first malformed one."""
        return [decode(f.data) for f in pkt.fields]

    def sequence_ok(self, pkt: Packet, *, src: str, dst: str, client: bool,
                    signed: bool = False) -> bool:
        """The autokey test (REFERENCE-NOTES 3.4) for a packet already authenticated.

        Client mode: the reply's key ID must be that of the request just sent.  Otherwise a
        packet carrying a signature that verified (``signed``) resets the chain to its key
        ID; any other must hash to the previous key ID or the announced final key within the
        remaining sequence."""
        keyid = pkt.keyid
        if client:
            return keyid == self.sent_keyid
        state = self.state
        state.seq = decrement_seq(state.seq)
        if signed:
            state.pkeyid = keyid
            return True
        values = state.autokey
        if values is None:
            return False
        result = autokey_test(src, dst, keyid,
                              self._cookie(pkt.header.mode == MODE_BROADCAST),
                              pkeyid=state.pkeyid, final=values.keyid, seq=state.seq,
                              digest=self.digest)
        # New pkeyid/seq on success; AUTO cleared (fetched again) when the walk ran out.
        state.apply_autokey_result(result)
        return result.ok

    def reset(self) -> None:
        """Forget the key list and the autokey-test state (the dance restarts)."""
        self.keylist = None
        self.auto_field = None
