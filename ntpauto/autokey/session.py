"""Autokey on the wire for one association: its key list, session-key MACs and the autokey
test (REFERENCE-NOTES 3, 8).

The dance itself (which request to send, what a response proves) is
:class:`~ntpauto.autokey.association.AutokeyAssociation`; the answers are the
:class:`~ntpauto.autokey.responder.Responder`'s; the stateless server is
:mod:`ntpauto.autokey.serving`.  This module moves an association's fields in and out of
packets and authenticates those packets with Autokey session keys.
"""

from __future__ import annotations

from collections.abc import Container

from ntpauto.auth.autokey import (
    KeyList,
    autokey_test,
    decrement_seq,
    mac,
    session_key,
    verify_mac,
)
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.fields import Field, decode
from ntpauto.autokey.serving import MIN_AUTOKEY_DIGEST, AutokeyNode
from ntpauto.wire.packet import MODE_BROADCAST, Packet

__all__ = ["AutokeySession"]


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
