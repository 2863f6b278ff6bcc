"""The forger: builds each case's datagrams from what an outsider knows.

Threat model (docs/adversary.md).  The forger knows every public value: the hosts'
addresses and ports, their names, status words, certificates and public keys, the identity
schemes' public moduli, and the association IDs on the wire; it can compute any MAC under
cookie 0 (an Autokey session key is H(src || dst || key ID || cookie)); it has a copy of
every packet the network delivered (``SimulatedNetwork.capture``) and sends from any address,
the genuine peer's included.  It is *off path*: it sees a packet only once it has been
delivered, and it uses a transmit timestamp of the victim's only once the peer's answer to
it has been delivered too, so it never echoes one the peer has not answered yet.

What it saw is :mod:`ntpauto.adversary.knowledge`; the public values and its own field
values are :mod:`ntpauto.adversary.values`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import attrs
from attrs import frozen

from ntpauto.adversary.cases import Case
from ntpauto.adversary.knowledge import Knowledge
from ntpauto.adversary.values import PublicValues
from ntpauto.auth.autokey import mac, session_key
from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CERT,
    COOK,
    GQ,
    IFF,
    LEAP,
    MV,
    SIGN,
    Field,
)
from ntpauto.wire.packet import MODE_BROADCAST, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.testing import SimulatedNetwork

__all__ = ["SIGNED_RESPONSES", "Forged", "Forger"]

SIGNED_RESPONSES = (CERT, COOK, AUTO, LEAP, SIGN, IFF, GQ, MV)
"""Responses that carry the peer's signature (CERT: its certificate's)."""
_MOBILISING = {("active", ASSOC, "request"), ("broadcast", ASSOC, "response")}
"""A symmetric active peer's first packet and a broadcast client's first broadcast: the two
packets RFC 5905/5906 have mobilise an association."""
_SECOND = 1 << 32


@frozen
class Forged:
    """A case's datagrams and what the invariants need to know about them."""

    datagrams: tuple[bytes, ...]
    """Sent one after the other (an error response or crypto-NAK twice: the rate limit)."""
    source: tuple[str, int]
    local: tuple[str, int]
    """The victim's address the datagrams arrive on (the broadcast address for broadcasts)."""
    proven_source: bool
    """The packet echoes a reply the victim sent to its source address (the amplification
    limit's proof of address); replies to anything else must not be larger."""
    may_mobilise: bool
    """An association mobilised by it is one RFC 5905/5906 require."""
    note: str = ""
    stale: bool = False
    """It carries a signed response whose Timestamp is not newer than that of a genuine one
    the forger saw (a replay, or a stale or equal Timestamp)."""


class Forger:
    """Forges the datagrams of each :class:`~ntpauto.adversary.cases.Case` against
    ``victim`` and its genuine ``peer`` on ``net`` (see the module docstring)."""

    def __init__(self, net: SimulatedNetwork, victim: str, peer: str, *,
                 rng: random.Random | None = None) -> None:
        self.net = net
        self.victim = victim
        self.peer = peer
        self.rng = rng if rng is not None else random.Random(0)
        self.knows = Knowledge(net, victim, peer)
        self.public = PublicValues(net, victim, peer, self.rng)
        self._serial = 0

    def observe(self) -> None:
        """Take in the genuine datagrams delivered since the last call (the forger's own go
        to the victim directly and are never in the capture)."""
        self.knows.observe()

    # ------------------------------------------------------------------ forging

    def now_ntp(self) -> int:
        """True time as a 64-bit NTP timestamp (what the peer's clock roughly reads)."""
        return unix_to_ntp(self.net.epoch + self.net.reactor.seconds())

    def forge(self, case: Case, stranger: str) -> Forged:
        """The datagrams of ``case``; ``stranger`` is the address a stranger case uses."""
        self._serial += 1
        source_address = self.peer if case.source == "peer" else stranger
        knows = self.knows
        local_address = knows.broadcast_address if case.role == "broadcast" else self.victim
        source = (source_address, self.public.port(source_address))
        local = (local_address, self.public.port(self.victim))
        if case.kind == "replay" and case.variant == "packet":
            replayed = self._replay_packet(case)
            if replayed is not None:
                data, note = replayed
                origin = parse(data).header.origin
                return Forged((data,), source, local, knows.echoes(source_address, origin),
                              False, note, stale=not note and case.code is not None)
        notes: list[str] = []
        fields = self._fields(case, notes)
        header = self._header(case, source_address, notes)
        keyid = self._keyid(case, source_address)
        datagrams = [self._packet(case, header, fields, keyid, source_address, local_address)]
        if case.variant in ("error", "crypto-nak"):
            again = header._replace(transmit=header.transmit + 1)
            datagrams.append(self._packet(case, again, fields, keyid, source_address,
                                          local_address))
        proven = knows.echoes(source_address, header.origin)
        may = (case.role, case.code, case.direction) in _MOBILISING \
            and case.kind not in ("identity-values", "no-mac") \
            and case.variant not in ("public-cookie", "error")
        stale = case.kind == "replay" or case.variant in ("field-stale", "field-equal")
        return Forged(tuple(datagrams), source, local, proven, may, "; ".join(notes),
                      stale=stale and not notes)

    def _packet(self, case: Case, header: Header, fields: list[Field], keyid: int,
                src: str, dst: str) -> bytes:
        data = header.encode() + b"".join(f.encode() for f in fields)
        if case.kind == "no-mac":
            return data + (bytes(4) if case.variant == "crypto-nak" else b"")
        cookie = 0
        if case.variant == "public-cookie":
            victim_id, peer_id = self.public.associds(self.knows.broadcast_address)
            cookie = ((peer_id << 16) | victim_id) or 0x5A5A
        digest = self.public.digest()
        return data + mac(session_key(src, dst, keyid, cookie, digest), keyid, data, digest)

    # -- the header -----------------------------------------------------------------------

    def _header(self, case: Case, source: str, notes: list[str]) -> Header:
        mode = case.mode
        knows = self.knows
        model = knows.latest(lambda s: s.source == self.peer and knows.to_victim(s))
        if model is not None:
            h = model.packet.header
            base = Header(h.leap, h.version, mode, h.stratum, h.poll, h.precision, h.root_delay,
                          h.root_dispersion, h.refid, h.reference, 0, 0, 0)
        else:
            base = Header(0, 4, mode, 1, 4, -20, 0, 0, b"LOCL", 0, 0, 0, 0)
        last = self._last_transmit(source, mode)
        transmit = max(self.now_ntp(), last + 1) + self._serial
        if case.variant == "header-equal":
            transmit = last or transmit
            if not last:
                notes.append("no transmit timestamp of this source seen: a fresh one")
        elif case.variant == "header-stale":
            transmit = max(last - _SECOND, 1) if last else self.now_ntp() - 600 * _SECOND
        origin = self._origin(case, source)
        receive = 0 if mode == MODE_BROADCAST else max(transmit - 1000, 1)
        return base._replace(origin=origin, receive=receive, transmit=transmit)

    def _last_transmit(self, source: str, mode: int) -> int:
        """The latest transmit timestamp ``source`` sent the victim (in ``mode`` if any)."""
        knows = self.knows
        same = knows.latest(lambda s: s.source == source and knows.to_victim(s)
                            and s.mode == mode)
        any_mode = same or knows.latest(lambda s: s.source == source and knows.to_victim(s))
        return any_mode.packet.header.transmit if any_mode is not None else 0

    def _origin(self, case: Case, source: str) -> int:
        """The best origin an off-path forger has: for a reply (server, symmetric), the
        victim's transmit timestamp the peer echoed last (the peer has answered it); for a
        request, the victim's last reply to ``source`` (its echo proves an address)."""
        if case.mode == MODE_BROADCAST or source != self.peer:
            return 0
        knows = self.knows
        ours = knows.latest(lambda s: s.source == self.victim and s.destination == source)
        if ours is None or case.role in ("client", "bclient"):
            return ours.packet.header.transmit if ours is not None else 0
        answer = knows.latest(lambda s: s.source == source and knows.to_victim(s)
                              and s.packet.header.origin != 0)
        return answer.packet.header.origin if answer is not None else 0

    def _keyid(self, case: Case, source: str) -> int:
        """The key ID: for a reply, the one of the victim's last request to ``source`` (a
        reply echoes it); otherwise the last one ``source`` used (its last accepted key)."""
        knows = self.knows
        if source == self.peer:
            if case.role == "server":
                ours = knows.latest(lambda s: s.source == self.victim
                                    and s.destination == source)
                if ours is not None and ours.packet.keyid and ours.packet.keyid > 65535:
                    return ours.packet.keyid
            theirs = knows.latest(lambda s: s.source == source and knows.to_victim(s)
                                  and s.mode == case.mode and (s.packet.keyid or 0) > 65535)
            if theirs is not None:
                return theirs.packet.keyid
        return self.rng.randrange(65536, 1 << 32)

    # -- replays -------------------------------------------------------------------------

    def _replay_packet(self, case: Case) -> tuple[bytes, str] | None:
        """A genuine datagram to replay: the peer's latest to the victim in the case's mode
        carrying the case's field, else any of the peer's in that mode, else the victim's
        own in that mode reflected back; None when none was seen (a field replay then)."""
        mode = case.mode
        knows = self.knows
        s = knows.carrying(mode, case.code, case.response)
        if s is not None:
            return s.delivery.data, ""
        s = knows.latest(lambda s: s.source == self.peer and knows.to_victim(s)
                         and s.mode == mode)
        if s is not None:
            return s.delivery.data, "no such field seen: the peer's latest packet in this mode"
        s = knows.latest(lambda s: s.source == self.victim and s.destination == self.peer
                         and s.mode == mode)
        if s is not None:
            return s.delivery.data, "the victim's own packet reflected"
        return None

    # -- the fields ----------------------------------------------------------------------

    def _fields(self, case: Case, notes: list[str]) -> list[Field]:
        if case.code is None:
            return []
        victim_id, peer_id = self.public.associds(self.knows.broadcast_address)
        associd = self._associd(case, victim_id, peer_id)
        kind, variant = case.kind, case.variant
        if kind == "replay":
            genuine = self.knows.field(case.code, case.response)
            if genuine is not None:
                if case.variant == "packet":
                    notes.append("no genuine packet in this mode seen: its field replayed")
                return [genuine]
            notes.append("no genuine field of this code seen: the forger's own")
        if variant == "error":
            return [Field.short_form(case.code, associd, response=case.response, error=True)]
        f = self.public.own_field(case, associd, self._fresh_stamp(case.code))
        if kind == "wrong-associd":
            genuine = self.knows.field(case.code, case.response) or f
            wrong = 0 if variant == "zero" else (associd ^ 0x5A5A) or 0x5A5A
            return [attrs.evolve(genuine, associd=wrong)]
        if kind == "junk-signature":
            return [self._junk_signed(f, transplant=variant == "transplant", notes=notes)]
        if kind == "identity-values":
            value = self.public.degenerate(case, variant)
            f = attrs.evolve(f, value=value, short=False)
            return [self._junk_signed(f) if case.response or case.code == COOK else f]
        if kind == "timestamps" and variant.startswith("field"):
            return [self._stale(case, f, equal=variant == "field-equal", notes=notes)]
        return [f]

    def _associd(self, case: Case, victim_id: int, peer_id: int) -> int:
        """The association ID a genuine field of this kind would carry."""
        genuine = self.knows.field(case.code, case.response) if case.code is not None \
            else None
        if case.role == "bclient" and not case.response:
            return self.knows.victim_broadcast_associd or peer_id
        if genuine is not None:
            return genuine.associd
        if case.response:
            symmetric = case.role in ("active", "passive")
            return peer_id if case.code in (AUTO, ASSOC) and not symmetric else victim_id
        return peer_id

    def _junk_signed(self, f: Field, *, transplant: bool = False,
                     notes: list[str] | None = None) -> Field:
        signature = self.knows.signature_other_than(f.signature) if transplant else None
        if signature is None:
            if transplant and notes is not None:
                notes.append("no genuine signature seen: a random one")
            signature = self.rng.randbytes(self.public.signature_size())
        return attrs.evolve(f, signature=signature, short=False,
                            timestamp=f.timestamp or self._fresh_stamp(f.code))

    def _stale(self, case: Case, f: Field, *, equal: bool, notes: list[str]) -> Field:
        genuine = self.knows.field(case.code, case.response)
        if genuine is None or not genuine.timestamp:
            notes.append("no genuine stamped field of this code seen: Timestamp 1")
            stamp, filestamp = 1, 0
        else:
            stamp = genuine.timestamp if equal else genuine.timestamp - 1
            filestamp = min(genuine.filestamp, stamp)
        value = f.value if f.value != getattr(genuine, "value", None) else f.value + b"\0\0\0\0"
        return self._junk_signed(attrs.evolve(f, timestamp=stamp, filestamp=filestamp,
                                              value=value or b"\0\0\0\0", short=False))

    def _fresh_stamp(self, code: int) -> int:
        """A field Timestamp newer than any genuine one of ``code``."""
        return max(self.now_ntp() >> 32, self.knows.newest_stamp(code) + 1)
