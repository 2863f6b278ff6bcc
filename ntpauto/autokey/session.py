"""Autokey on the wire for one association: its key list, session-key MACs and the autokey
test (interop.md 3, 8).

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
from ntpauto.auth.digest import DIGEST_SIZES
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.fields import LEAP, SHORT_LEN, Field, decode
from ntpauto.autokey.serving import MIN_AUTOKEY_DIGEST, AutokeyNode
from ntpauto.autokey.values import AutoValue
from ntpauto.events import Event
from ntpauto.verdict import Check, Verdict
from ntpauto.wire.packet import MAX_EXTENSION_END, MODE_BROADCAST, Packet

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
        self._signed = False
        self._announce = False
        self.sent_keyid: int | None = None
        self.keyed_polls = 0
        """Polls since a packet last passed the autokey test (the poll process asks for the
        autokey values again when it grows: :meth:`AutokeyAssociation.refetch_auto`)."""
        self.sent_codes: frozenset[int] = frozenset()
        """Codes of the requests in our last transmission (client mode: what a reply may
        answer)."""

    @property
    def digest(self) -> str:
        return self.node.digest

    def _cookie(self, broadcast_packet: bool = False) -> int:
        """The cookie for packets without extension fields: 0 for broadcasts, the server's
        cookie for a broadcast client's unicast volley (interop.md 3.2, 11)."""
        if self.broadcast_server or broadcast_packet:
            return 0
        return self.state.cookie

    # ------------------------------------------------------------------ transmit

    def outgoing(self, header: bytes, *, src: str, dst: str, now: int, synced: bool,
                 poll: int, peer_leap: int, associd: int, in_use: Container[int] = (),
                 sign: bool = True, own_request: bool = True,
                 limit: int | None = None) -> bytes:
        """Header plus this transmission's extension fields and Autokey MAC.

        ``sign``: the key list's autokey values may be signed (a private-key operation);
        without it they are kept unsigned, and the list is made again once signing is
        allowed.  Only a broadcast server and symmetric peers ever send their values, so
        the engine signs for those alone, and not for an ephemeral association nobody has
        proven yet (a forged packet must not cost a signature).  ``own_request``: the
        packet may carry a request of ours, not only the answer to the peer's.  ``limit``:
        the packet may be no larger (an unproven association answering a packet anyone
        could have sent); a request that does not fit gives way to the 8-octet LEAP request,
        whose answer proves the peer as well as any."""
        state = self.state
        if (self.keylist is None or self.keylist.exhausted or self._poll != poll
                or self._generation != state.keylist_generation
                or sign and not self._signed):
            self.keylist = KeyList.generate(
                src, dst, self._cookie(), now=now, poll=poll, automax=self.node.automax,
                in_use=in_use, digest=self.digest, rng=self.node.host.rng)
            self._generation = state.keylist_generation
            self._poll = poll
            self._signed = sign
            values = AutoValue(self.keylist.final, self.keylist.index)
            self.auto_field = self.node.host.autokey_field(
                values, timestamp=self.keylist.timestamp if sign else 0, associd=associd)
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
                                       own_associd=associd, autokey_value=self.auto_field,
                                       own_request=own_request)
        room = MAX_EXTENSION_END
        if limit is not None:
            room = min(room, limit - 4 - DIGEST_SIZES[self.digest])
        data, sent = header, []
        for f in fields:
            octets = f.encode()
            if len(data) + len(octets) > room:
                continue  # as the reference: a field that would not fit is left out
            data += octets
            sent.append(f)
        if limit is not None and own_request and len(sent) < len(fields) \
                and all(f.response for f in sent):
            probe = Field.short_form(LEAP, associd)
            if len(data) + SHORT_LEN <= room:
                data += probe.encode()
                sent.append(probe)
        self.sent_keyid = keyid
        self.sent_codes = frozenset(f.code for f in sent if not f.response)
        fields = sent
        key = self.keylist.mac_key(keyid, has_fields=bool(fields))
        return data + mac(key, keyid, data, self.digest)

    # ------------------------------------------------------------------ receive

    def mac_verdict(self, pkt: Packet, *, src: str, dst: str) -> Verdict:
        """The packet's MAC under its Autokey session key (interop.md 3.2): failed when
        it does not verify; verified when the key holds our secret cookie; not applicable
        when the key is cookie 0 (a packet with extension fields, a broadcast, or before
        COOK), which anyone who knows the addresses can compute."""
        keyid = pkt.keyid
        if keyid is None or keyid <= 65535 or len(pkt.digest) < MIN_AUTOKEY_DIGEST:
            return Verdict.fail(Check.MAC, "no Autokey MAC")
        cookie = 0 if pkt.fields else self._cookie(pkt.header.mode == MODE_BROADCAST)
        key = session_key(src, dst, keyid, cookie, self.digest)
        if not verify_mac(key, pkt.authenticated_part, pkt.digest, self.digest):
            return Verdict.fail(Check.MAC, f"MAC does not verify (key ID {keyid:#x})")
        if not cookie:
            return Verdict.na(Check.MAC, "cookie-0 session key: anyone can compute it")
        return Verdict.ok(Check.MAC, "session key with our cookie")

    def unsolicited(self, fields: list[Field]) -> Verdict | None:
        """In client mode, every response in a reply must answer a request of our last
        transmission: the stateless server answers only what we asked.  A reply with
        fields to a request without any (every packet after the dance) is bait; its cookie-0
        MAC proves nothing (security CASES 19, 43 and the reset storms).  None when every
        response was asked for."""
        for f in fields:
            if f.response and f.code not in self.sent_codes:
                return Verdict.fail(Check.FIELD, f"{f.name} response to a request we did "
                                                 "not send", Event.CRT)
        return None

    def fields(self, pkt: Packet) -> list[Field]:
        """The packet's extension fields; FieldError for the first malformed one."""
        return [decode(f.data) for f in pkt.fields]

    def key_verdict(self, pkt: Packet, mac: Verdict, *, src: str, dst: str,
                    client: bool) -> Verdict:
        """The autokey test (RFC 5906 section 7, interop.md 3.4) for a packet whose
        MAC verified (``mac``): does its key ID prove the sender?

        Client mode: the reply's key ID is that of the request just sent and its MAC holds
        the server cookie (a reply with fields is MACed under cookie 0: not applicable).
        Otherwise the key ID must hash forward to the last accepted one (``pkeyid``, the
        announced final key until the first packet) within the remaining sequence: the
        sender knew a preimage, which only the holder of the key list does.  Stricter than
        the reference: a verified signature in the packet does not replace the test, the
        walk ends at ``pkeyid`` (not at the final key, which every older key of the list
        also reaches), and a failure changes nothing (the reference clears AUTO)."""
        keyid = pkt.keyid
        if client:
            if keyid != self.sent_keyid:
                return Verdict.fail(Check.AUTOKEY, "reply key ID is not our request's",
                                    Event.KEY)
            if not mac.verified:
                return Verdict.na(Check.AUTOKEY, "reply under the cookie-0 session key")
            return Verdict.ok(Check.AUTOKEY, "reply to our request under our cookie")
        state = self.state
        if state.autokey is None:
            return Verdict.fail(Check.AUTOKEY, "no autokey values yet", Event.KEY)
        cookie = self._cookie(pkt.header.mode == MODE_BROADCAST)
        # Only pkeyid is trusted: passing it as the final key too ends the walk there.
        result = autokey_test(src, dst, keyid, cookie, pkeyid=state.pkeyid,
                              final=state.pkeyid, seq=decrement_seq(state.seq),
                              digest=self.digest)
        if not result.ok and cookie and pkt.fields:
            # A symmetric peer that has not taken our COOK response yet still generates
            # its key lists under cookie 0 (its fields are MACed under cookie 0 anyway).
            # The chain then proves what a broadcast's does: a preimage of the signed values.
            result = autokey_test(src, dst, keyid, 0, pkeyid=state.pkeyid,
                                  final=state.pkeyid, seq=decrement_seq(state.seq),
                                  digest=self.digest)
        if not result.ok:
            return Verdict.fail(Check.AUTOKEY, f"key ID {keyid:#x} does not hash to "
                                               f"{state.pkeyid:#x}", Event.KEY)
        state.pkeyid, state.seq = result.pkeyid, result.seq
        self.keyed_polls = 0
        return Verdict.ok(Check.AUTOKEY, f"key ID {keyid:#x} on the chain")

    def reset(self) -> None:
        """Forget the key list and the autokey-test state (the dance restarts)."""
        self.keylist = None
        self.auto_field = None
