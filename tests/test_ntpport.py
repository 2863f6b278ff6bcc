"""NTPPort and NTPDatagramProtocol.read_datagrams: one read loop per readiness event that
answers every datagram as datagramReceived would, ends a read where Twisted's port does, and
never lets one bad datagram stop the others."""

from __future__ import annotations

import errno
import socket

import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.task import Clock

from ntpauto.config import default_config
from ntpauto.engine import build_engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.protocol import NTPDatagramProtocol, NTPPort, listen_udp
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, Header, build, parse

CLIENT = ("127.0.0.2", 40123)


class Transport:
    """A port without a socket: the protocol writes through ``write``."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, object]] = []

    def write(self, data: bytes, addr: object) -> None:
        self.written.append((data, addr))

    def getHost(self):  # noqa: N802 - Twisted's name
        return None


def request(transmit: int) -> bytes:
    return build(Header(0, 4, MODE_CLIENT, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit))


class Socket:
    """A scripted ``recvfrom``: datagrams, then an error (EAGAIN unless told)."""

    def __init__(self, datagrams, error: int = errno.EAGAIN) -> None:
        self.datagrams = list(datagrams)
        self.error = error
        self.reads = 0

    def recvfrom(self, size: int):
        self.reads += 1
        if not self.datagrams:
            raise OSError(self.error, errno.errorcode[self.error])
        return self.datagrams.pop(0)


@pytest.fixture
def protocol():
    reactor = Clock()
    reactor.advance(5000.0)
    clock = SimulatedClock(reactor.seconds)
    proto = NTPDatagramProtocol(build_engine(default_config(), clock), clock, reactor)
    proto.makeConnection(Transport())
    yield proto
    proto.doStop()


def origins(proto):
    return [parse(data).header.origin for data, _ in proto.transport.written]


def test_every_datagram_answered_in_order_until_nothing_is_left(protocol):
    sock = Socket([(request(t), CLIENT) for t in (1, 2, 3)] + [(b"\x23" * 20, CLIENT)])
    protocol.read_datagrams(sock.recvfrom, 8192, 1 << 18)
    assert origins(protocol) == [1, 2, 3]
    assert all(parse(d).header.mode == MODE_SERVER for d, _ in protocol.transport.written)
    assert protocol.engine.counters["badlength"] == 1
    assert sock.reads == 5  # the fifth read found nothing


def test_a_read_ends_after_the_octet_limit(protocol):
    """Like Twisted's maxThroughput: the reactor gets control back, the rest stays."""
    sock = Socket([(request(t), CLIENT) for t in range(1, 11)])
    protocol.read_datagrams(sock.recvfrom, 8192, 48 * 4)
    assert origins(protocol) == [1, 2, 3, 4]
    protocol.read_datagrams(sock.recvfrom, 8192, 1 << 18)
    assert origins(protocol) == list(range(1, 11))


@pytest.mark.parametrize("error", [errno.EAGAIN, errno.EINTR, errno.ECONNREFUSED])
def test_errors_that_end_a_read_quietly(protocol, error):
    protocol.read_datagrams(Socket([(request(7), CLIENT)], error).recvfrom, 8192, 1 << 18)
    assert origins(protocol) == [7]


def test_other_socket_errors_raise_as_twisted_does(protocol):
    with pytest.raises(OSError) as raised:
        protocol.read_datagrams(Socket([], errno.EBADF).recvfrom, 8192, 1 << 18)
    assert raised.value.errno == errno.EBADF


def test_a_failing_datagram_does_not_stop_the_others(protocol, monkeypatch):
    engine = protocol.engine
    real = engine.receive_full

    def receive(data, *args):
        if data == b"boom":
            raise ZeroDivisionError("engine bug")
        return real(data, *args)

    monkeypatch.setattr(protocol, "_receive", receive)
    sock = Socket([(b"boom", CLIENT), (request(9), CLIENT)])
    protocol.read_datagrams(sock.recvfrom, 8192, 1 << 18)
    assert origins(protocol) == [9]
    assert engine.counters["internal_error"] == 1


def test_ipv6_source_loses_flow_and_scope_but_the_reply_keeps_them(protocol):
    seen = []
    fast = protocol._answer_fast

    def answer(data, source, *args):
        seen.append(source)
        return fast(data, source, *args)

    protocol._answer_fast = answer
    addr = ("fe80::1", 40123, 0, 2)
    protocol.read_datagrams(Socket([(request(5), addr)]).recvfrom, 8192, 1 << 18)
    assert seen == [("fe80::1", 40123)]
    assert [a for _, a in protocol.transport.written] == [addr]


def close(port) -> None:
    """Stop listening and let the port's connectionLost (a callLater(0)) run."""
    port.stopListening()
    for _ in range(500):
        if not port.connected:
            break
        global_reactor.iterate(0.01)
    assert not port.connected


def test_service_ports_read_with_ntpport_on_a_real_socket():
    """On the real (POSIX) reactor the port is an NTPPort; datagrams waiting in its socket
    are all answered by one doRead."""
    reactor = Clock()
    clock = SimulatedClock(reactor.seconds)
    proto = NTPDatagramProtocol(build_engine(default_config(), clock), clock, reactor)
    port = listen_udp(global_reactor, 0, proto, "127.0.0.1")
    try:
        assert isinstance(port, NTPPort)
        global_reactor.removeReader(port)  # this test drives the reads itself
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            target = ("127.0.0.1", port.getHost().port)
            for t in (11, 12, 13):
                client.sendto(request(t), target)
            port.doRead()
            replies = [parse(client.recv(2048)).header for _ in range(3)]
        assert [r.origin for r in replies] == [11, 12, 13]
        assert all(r.mode == MODE_SERVER for r in replies)
    finally:
        close(port)


def test_other_reactors_listen_with_their_own_port(protocol):
    class Reactor:
        def listenUDP(self, port, proto, interface=""):  # noqa: N802 - Twisted's name
            return ("listened", port, proto, interface)

    assert listen_udp(Reactor(), 123, protocol, "::1") == ("listened", 123, protocol, "::1")


def test_a_replaced_datagram_received_sees_every_datagram():
    """A wrapper or subclass overriding datagramReceived is read by Twisted's loop."""
    reactor = Clock()
    clock = SimulatedClock(reactor.seconds)

    class Recording(NTPDatagramProtocol):
        def datagramReceived(self, datagram, addr):  # noqa: N802 - Twisted's name
            seen.append(len(datagram))
            super().datagramReceived(datagram, addr)

    seen: list[int] = []
    proto = Recording(build_engine(default_config(), clock), clock, reactor)
    port = listen_udp(global_reactor, 0, proto, "127.0.0.1")
    try:
        global_reactor.removeReader(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            client.sendto(request(21), ("127.0.0.1", port.getHost().port))
            client.sendto(b"\x23" * 20, ("127.0.0.1", port.getHost().port))
            port.doRead()
            assert parse(client.recv(2048)).header.origin == 21
        assert seen == [48, 20]
    finally:
        close(port)
