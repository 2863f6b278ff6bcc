"""An in-memory UDP network on a ``task.Clock``, for services and queries driven by
simulated time: :class:`LoopNetwork` is the reactor (``listenUDP``, ``callLater``,
``seconds``) and delivers each datagram to the port bound at its destination after
``latency`` seconds; a datagram to an address where nothing listens is an ICMP port
unreachable for a connected sender (its protocol's ``connectionRefused``), as on a real host.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock


class LoopPort:
    """A bound UDP port of a :class:`LoopNetwork`."""

    def __init__(self, network: LoopNetwork, host: str, number: int, protocol: Any) -> None:
        self.network = network
        self.host = host
        self.number = number
        self.protocol = protocol
        self.connected: tuple[str, int] | None = None
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        destination = addr or self.connected
        assert destination is not None
        self.sent.append((data, destination))
        self.network.callLater(self.network.latency, self.network.deliver, self, data,
                               destination)

    def connect(self, host: str, port: int) -> None:
        self.connected = (host, port)

    def getHost(self) -> IPv4Address:  # noqa: N802 - Twisted's name
        return IPv4Address("UDP", self.host, self.number)

    def setBroadcastAllowed(self, enabled: bool) -> None:  # noqa: N802
        pass

    def stopListening(self) -> None:  # noqa: N802
        self.network.ports.pop((self.host, self.number), None)
        self.protocol.doStop()


class LoopNetwork(Clock):
    """``task.Clock`` with ``listenUDP`` over an in-memory network (see the module)."""

    def __init__(self, latency: float = 0.001) -> None:
        super().__init__()
        self.latency = latency
        self.ports: dict[tuple[str, int], LoopPort] = {}
        self.tamper: Any = None
        """``tamper(data, destination)``: the datagram delivered instead (None: lost)."""
        self._next = 40000

    def listenUDP(self, port: int, protocol: Any, interface: str = "",  # noqa: N802
                  maxPacketSize: int = 8192) -> LoopPort:  # noqa: N803
        if port == 0:
            self._next += 1
            port = self._next
        bound = self.ports[(interface, port)] = LoopPort(self, interface, port, protocol)
        protocol.makeConnection(bound)
        return bound

    def deliver(self, sender: LoopPort, data: bytes, destination: tuple[str, int]) -> None:
        if self.tamper is not None:
            data = self.tamper(data, destination)
            if data is None:
                return
        receiver = self.ports.get(destination)
        if receiver is not None:
            receiver.protocol.datagramReceived(data, (sender.host, sender.number))
        elif sender.connected == destination and (sender.host, sender.number) in self.ports:
            sender.protocol.connectionRefused()

    def pump(self, seconds: float) -> None:
        """Advance ``seconds``, one scheduled call after the other (so that what each
        schedules runs at its own time)."""
        end = self.seconds() + seconds
        while True:
            due = [call.getTime() for call in self.getDelayedCalls() if call.getTime() <= end]
            if not due:
                break
            self.advance(max(0.0, min(due) - self.seconds()))
        self.advance(end - self.seconds())

    def run(self, until: Any, limit: float = 3600.0) -> None:
        """Advance from one scheduled call to the next until ``until()`` is true (at most
        ``limit`` simulated seconds)."""
        end = self.seconds() + limit
        while not until():
            calls = [call.getTime() for call in self.getDelayedCalls()]
            assert calls and min(calls) <= end, "nothing left to run before the limit"
            self.advance(max(0.0, min(calls) - self.seconds()))
