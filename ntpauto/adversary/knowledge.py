"""What the forger has seen: the genuine datagrams the network delivered, indexed.

The forger is off path: a datagram enters its knowledge only once it has arrived
(``Delivery.arrival``).  It remembers the latest datagrams (headers, key IDs, timestamps to
echo), and for good the latest genuine extension field of each code and direction, the
latest packet carrying each, the peer's signatures and the newest field Timestamps: the
dance happens once, and its fields are what a replay needs.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen

from ntpauto.autokey.fields import Field, decode
from ntpauto.events import FieldError
from ntpauto.wire.packet import MODE_BROADCAST, MalformedPacket, Packet, parse

if TYPE_CHECKING:
    from ntpauto.testing import Delivery, SimulatedNetwork

__all__ = ["Knowledge", "Seen"]

MEMORY = 512
"""Recent datagrams kept whole."""
_ECHOES = 8
"""Transmit timestamps kept per destination of the victim's (more than the server's
amplification table keeps)."""


@frozen
class Seen:
    """A genuine datagram that arrived (parsed; ``fields`` None when one is malformed)."""

    delivery: Any
    packet: Packet
    fields: tuple[Field, ...] | None

    @property
    def source(self) -> str:
        return self.delivery.source[0]

    @property
    def destination(self) -> str:
        return self.delivery.destination[0]

    @property
    def mode(self) -> int:
        return self.packet.header.mode

    @property
    def arrival(self) -> float:
        return self.delivery.arrival


class Knowledge:
    """The genuine traffic of ``net`` as the forger of ``victim`` and ``peer`` knows it."""

    def __init__(self, net: SimulatedNetwork, victim: str, peer: str) -> None:
        self.net = net
        self.victim = victim
        self.peer = peer
        network = ipaddress.ip_network(f"{victim}/24", strict=False)
        self.broadcast_address = str(network.broadcast_address)
        """Where broadcasts reach the victim: the destination of the peer's broadcasts once
        seen (the victim's /24 broadcast address until then)."""
        self.recent: deque[Seen] = deque(maxlen=MEMORY)
        self._fields: dict[tuple[int, bool], list[Field | None]] = {}
        self._carrying: dict[tuple[int, int, bool], Seen] = {}
        self._fieldless: dict[int, Seen] = {}
        self._signatures: deque[bytes] = deque(maxlen=4)
        self._stamps: dict[int, int] = {}
        self._echoes: dict[str, deque[int]] = {}
        self.victim_broadcast_associd = 0
        self._pending: list[Delivery] = []
        self._read = 0

    def observe(self) -> None:
        """Take in what arrived since the last call."""
        now = self.net.reactor.seconds()
        capture = self.net.capture
        waiting = self._pending + [d for d in capture[self._read:] if not d.dropped]
        self._read = len(capture)
        self._pending = [d for d in waiting if d.arrival is None or d.arrival > now]
        arrived = sorted((d for d in waiting if d.arrival is not None and d.arrival <= now),
                         key=lambda d: d.arrival)
        for delivery in arrived:
            try:
                packet = parse(delivery.data)
            except MalformedPacket:
                continue
            try:
                fields: tuple[Field, ...] | None = tuple(decode(f.data) for f in packet.fields)
            except FieldError:
                fields = None
            self._index(Seen(delivery, packet, fields))

    def _index(self, s: Seen) -> None:
        self.recent.append(s)
        if s.source == self.peer and s.mode == MODE_BROADCAST:
            self.broadcast_address = s.destination
        if s.source == self.victim:
            self._echoes.setdefault(s.destination, deque(maxlen=_ECHOES)).append(
                s.packet.header.transmit)
            if s.mode == MODE_BROADCAST and s.fields:
                self.victim_broadcast_associd = s.fields[0].associd
        to_victim = s.source == self.peer and self.to_victim(s)
        if to_victim and not s.packet.fields:
            self._fieldless[s.mode] = s
        for f in s.fields or ():
            if f.timestamp:
                self._stamps[f.code] = max(self._stamps.get(f.code, 0), f.timestamp)
            if f.error or f.short:
                continue
            if to_victim:
                self._carrying[s.mode, f.code, f.response] = s
            if s.source == self.peer and f.signature:
                self._signatures.append(f.signature)
            latest = self._fields.setdefault((f.code, f.response), [None, None])
            latest[1] = f
            if to_victim:
                latest[0] = f

    def to_victim(self, s: Seen) -> bool:
        """``s`` was for the victim (unicast, or a broadcast it listens to)."""
        return s.destination in (self.victim, self.broadcast_address)

    def latest(self, accept: Callable[[Seen], bool]) -> Seen | None:
        """The most recent remembered datagram ``accept`` takes."""
        return next((s for s in reversed(self.recent) if accept(s)), None)

    def field(self, code: int, response: bool) -> Field | None:
        """The latest genuine full field of ``code`` (request or response) from the peer to
        the victim, else from anyone to anyone."""
        latest = self._fields.get((code, response))
        return (latest[0] or latest[1]) if latest else None

    def carrying(self, mode: int, code: int | None, response: bool) -> Seen | None:
        """The peer's latest datagram to the victim in ``mode`` carrying a full field of
        ``code`` in that direction (``code`` None: carrying none)."""
        if code is None:
            return self._fieldless.get(mode)
        return self._carrying.get((mode, code, response))

    def signature_other_than(self, value: bytes) -> bytes | None:
        """A genuine signature of the peer made over another value."""
        return next((sig for sig in reversed(self._signatures) if sig != value), None)

    def newest_stamp(self, code: int) -> int:
        """The newest Timestamp seen in a field of ``code`` (0 when none)."""
        return self._stamps.get(code, 0)

    def echoes(self, source: str, origin: int) -> bool:
        """``origin`` is the transmit timestamp of a recent datagram the victim sent to
        ``source``."""
        return bool(origin) and origin in self._echoes.get(source, ())
