"""Autokey on the wire, for the engine: key lists, session-key MACs and the autokey test per
association, and the stateless server's Autokey replies (REFERENCE-NOTES 3, 4.1, 8).

The dance itself (which request to send, what a response proves) is
:class:`~ntpauto.autokey.association.AutokeyAssociation`; the answers are the
:class:`~ntpauto.autokey.responder.Responder`'s.  This module moves their fields in and out of
packets and authenticates those packets with Autokey session keys.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from ntpauto.auth.autokey import (
    KeyList,
    autokey_test,
    decrement_seq,
    mac,
    server_reply_key,
    session_key,
    session_keys_both_ways,
    verify_mac,
)
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.errors import FieldError
from ntpauto.autokey.fields import AUTO, Field, decode
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.responder import Responder
from ntpauto.wire.packet import MODE_BROADCAST, MODE_CLIENT, Packet

CRYPTO_NAK = b"\x00\x00\x00\x00"
MIN_AUTOKEY_DIGEST = 16
"""An Autokey MAC needs at least a 16-octet digest (REFERENCE-NOTES 1.2: MAC >= 20 octets)."""


class AutokeyNode:
    """The host's Autokey side in one engine: credentials, responder, ``automax``."""

    def __init__(self, host: HostCredentials, responder: Responder | None = None, *,
                 automax: int = 12) -> None:
        self.host = host
        self.responder = responder if responder is not None else Responder(host)
        self.automax = automax

    @property
    def digest(self) -> str:
        return self.host.digest

    def serve(self, pkt: Packet, reply: bytes, client: str, server: str, now: int,
              auto_for: Callable[[int], Field | None]) -> tuple[bytes | None, str]:
        """The stateless server's answer to an Autokey client request (REFERENCE-NOTES 3.5,
        8.2): ``reply`` is the reply header; returns the datagram (or None) and the counter
        naming the outcome.  Only the first extension field is answered."""
        if not pkt.fields:
            return self.serve_plain(pkt.authenticated_part, pkt.keyid, pkt.digest, reply,
                                    client, server, now)
        digest = self.digest
        keyid = pkt.keyid
        cookie = self.responder.server_cookie(client, server, now)
        key = session_key(client, server, keyid, 0, digest)
        if len(pkt.digest) < MIN_AUTOKEY_DIGEST or not verify_mac(
                key, pkt.authenticated_part, pkt.digest, digest):
            return reply + CRYPTO_NAK, "badauth"
        try:
            request = decode(pkt.fields[0].data)
        except FieldError:
            return None, "autokey_badfield"
        autokey_value = auto_for(request.associd) if request.code == AUTO else None
        response = self.responder.respond(
            request, packet_mode=MODE_CLIENT, now=now, client=client, server=server,
            autokey_value=autokey_value)
        data = reply + (response.encode() if response is not None else b"")
        reply_key = server_reply_key(server, client, keyid, cookie,
                                     has_fields=response is not None, digest=digest)
        return data + mac(reply_key, keyid, data, digest), "served"

    def serve_plain(self, message: bytes, keyid: int, received: bytes, reply: bytes,
                    client: str, server: str, now: int) -> tuple[bytes, str]:
        """The common case, a request without extension fields (the hot path): the MAC
        under the server cookie, and a reply keyed the same way."""
        digest = self.digest
        cookie = self.responder.server_cookie(client, server, now)
        key, reply_key = session_keys_both_ways(client, server, keyid, cookie, digest)
        if not verify_mac(key, message, received, digest):
            return reply + CRYPTO_NAK, "badauth"
        return reply + mac(reply_key, keyid, reply, digest), "served"


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
