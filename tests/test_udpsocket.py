"""The daemon's UDP sockets (ntpauto.udpsocket, NTPPort): the receive buffer asked for and
granted, the datagrams the kernel dropped counted, and on a wildcard bind each datagram's
destination given to the engine and its reply sent from that address, down to an Autokey
dance against a server bound to 0.0.0.0.  Real UDP on loopback, port 0; the tests read the
sockets themselves (no sleeps)."""

from __future__ import annotations

import select
import socket
import struct
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from ntpauto import protocol as protocol_module
from ntpauto import udpsocket
from ntpauto.config import default_config, parse_config
from ntpauto.engine import build_engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.protocol import NTPDatagramProtocol, NTPPort, listen_udp
from ntpauto.service import NTPAutokeyService
from ntpauto.udpsocket import Destinations, kernel_drops, receive_buffer, set_receive_buffer
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, Header, build, parse
from tests.autokey_groups import EPOCH, make_group
from tests.test_ntpport import close

pytestmark = pytest.mark.skipif(not udpsocket.LINUX, reason="Linux socket options")


def request(transmit: int) -> bytes:
    return build(Header(0, 4, MODE_CLIENT, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit))


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def stop_all(*services: NTPAutokeyService) -> None:
    """Stop services and let their ports close."""
    ports = [p for s in services for p in s.ports]
    for service in services:
        service.stopService()
    while any(p.connected for p in ports):
        global_reactor.iterate(0.01)


def serve(interface: str, **kwargs: Any) -> tuple[NTPDatagramProtocol, Any, list]:
    """A stratum-1 server's protocol listening on ``interface`` port 0, read by the test;
    and the ``local`` of every datagram the engine's fast path saw."""
    reactor = Clock()
    clock = SimulatedClock(reactor.seconds)
    proto = NTPDatagramProtocol(build_engine(default_config(), clock), clock, reactor)
    port = listen_udp(global_reactor, 0, proto, interface, **kwargs)
    global_reactor.removeReader(port)  # the test drives the reads
    seen: list = []
    fast = proto._answer_fast

    def answer(data, source, rx, now, local):
        seen.append(local)
        return fast(data, source, rx, now, local)

    proto._answer_fast = answer
    return proto, port, seen


def client(family: int, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(5)
    return sock


# -- the receive buffer ---------------------------------------------------------------------


def test_the_buffer_asked_for_is_set_and_read_back():
    proto, port, _ = serve("127.0.0.1", receive_buffer=65536)
    try:
        assert receive_buffer(port.socket) == 65536
        # Linux reports twice what it grants (its bookkeeping); receive_buffer halves it.
        assert port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 65536
    finally:
        close(port)


def test_without_privilege_the_kernel_caps_the_buffer_and_that_is_logged(monkeypatch):
    """Past net.core.rmem_max an unprivileged socket gets the cap: a warning names both
    sizes (at info level for the default size, which the operator did not ask for)."""
    monkeypatch.setattr(protocol_module, "privileged", lambda: False)
    asked = 4 * rmem_max()
    for quiet, level in ((False, LogLevel.warn), (True, LogLevel.info)):
        with capturedLogs() as events:
            proto, port, _ = serve("127.0.0.1", receive_buffer=asked, quiet_cap=quiet)
        try:
            assert receive_buffer(port.socket) == rmem_max()
        finally:
            close(port)
        [event] = [e for e in events if "receive buffer" in e.get("log_format", "")]
        assert event["log_level"] is level
        assert (event["asked"], event["granted"]) == (asked, rmem_max())


def test_a_buffer_within_the_cap_is_not_logged():
    with capturedLogs() as events:
        proto, port, _ = serve("127.0.0.1", receive_buffer=65536)
    close(port)
    assert not [e for e in events if "receive buffer" in e.get("log_format", "")]


def test_force_passes_the_cap_when_privileged_and_falls_back_quietly_otherwise():
    asked = 2 * rmem_max()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        granted = set_receive_buffer(sock, asked, force=True)
    if udpsocket.privileged():
        assert granted == asked  # SO_RCVBUFFORCE
    else:
        assert granted == rmem_max()  # EPERM: SO_RCVBUF, capped, no error


def test_the_service_asks_for_the_configured_buffer():
    service = NTPAutokeyService(attrs.evolve(default_config(port=0), rcvbuf=131072))
    service.startService()
    try:
        assert receive_buffer(service.port.socket) == 131072
    finally:
        stop_all(service)


# -- kernel drops ---------------------------------------------------------------------------


def flood(port: Any, count: int) -> None:
    with client(socket.AF_INET, "127.0.0.1") as sock:
        for t in range(count):
            sock.sendto(request(t + 1), ("127.0.0.1", port.getHost().port))


def replies(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


def test_kernel_drops_are_counted_at_the_next_read():
    """A tiny buffer, filled without reading: the next read adds what the kernel dropped to
    ``kernel_drops``, and a second flood adds only its own drops (deltas of the kernel's
    cumulative count)."""
    proto, port, _ = serve("127.0.0.1", receive_buffer=4096)
    counters = proto.engine.counters
    try:
        with client(socket.AF_INET, "127.0.0.1") as sock:
            target = ("127.0.0.1", port.getHost().port)
            for t in range(200):
                sock.sendto(request(t + 1), target)
            dropped = kernel_drops(port.socket)
            assert dropped and dropped < 200
            port.doRead()
            assert counters["kernel_drops"] == dropped
            assert replies(sock) == 200 - dropped == counters["received"]

            for t in range(200):
                sock.sendto(request(t + 1000), target)
            again = kernel_drops(port.socket) - dropped
            assert again > 0
            port.doRead()  # within the second: the count is not read again
            assert counters["kernel_drops"] == dropped
            port.count_drops()
            assert counters["kernel_drops"] == dropped + again
    finally:
        close(port)


def test_the_drop_count_is_read_once_a_second_at_most(monkeypatch):
    proto, port, _ = serve("127.0.0.1")
    looks: list[int] = []
    monkeypatch.setattr(protocol_module, "kernel_drops", lambda sock: looks.append(1) or 7)
    try:
        port.doRead()
        port.doRead()
        assert len(looks) == 1 and proto.engine.counters["kernel_drops"] == 7
        port._drops_due = 0.0  # a second later
        port.doRead()
        assert len(looks) == 2 and proto.engine.counters["kernel_drops"] == 7
    finally:
        close(port)


# -- the destination of each datagram ------------------------------------------------------


def test_a_specific_bind_reads_as_before():
    proto, port, seen = serve("127.0.0.1")
    try:
        assert port.destinations is None
        with client(socket.AF_INET, "127.0.0.1") as sock:
            sock.sendto(request(5), ("127.0.0.1", port.getHost().port))
            port.doRead()
            data, source = sock.recvfrom(2048)
        assert parse(data).header.origin == 5
        assert seen == [("127.0.0.1", port.getHost().port)]
    finally:
        close(port)


@pytest.mark.parametrize("asked", ["127.0.0.1", "127.0.0.2"])
def test_a_wildcard_bind_sees_each_destination_and_replies_from_it(asked):
    """Bound to 0.0.0.0, the server learns which address the client asked and answers
    from it: a client on 127.0.0.1 asking 127.0.0.2 hears back from 127.0.0.2 (the kernel
    alone would answer it from 127.0.0.1)."""
    proto, port, seen = serve("0.0.0.0")
    number = port.getHost().port
    try:
        assert port.destinations is not None
        with client(socket.AF_INET, "127.0.0.1") as sock:
            sock.sendto(request(6), (asked, number))
            port.doRead()
            data, source = sock.recvfrom(2048)
        assert seen == [(asked, number)]
        assert source == (asked, number)
        assert parse(data).header.mode == MODE_SERVER and parse(data).header.origin == 6
    finally:
        close(port)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="::1 is not configured on this host")
def test_an_ipv6_wildcard_bind_sees_each_destination_and_replies_from_it():
    """Bound to ``::``: a client on ::1 is answered from ::1, and an IPv4 client (the
    socket is dual-stack) from the IPv4 address it asked, seen as a mapped address."""
    proto, port, seen = serve("::")
    number = port.getHost().port
    try:
        assert port.destinations is not None
        with client(socket.AF_INET6, "::1") as sock:
            sock.sendto(request(7), ("::1", number))
            port.doRead()
            data, source = sock.recvfrom(2048)
        assert source[:2] == ("::1", number) and parse(data).header.origin == 7
        with client(socket.AF_INET, "127.0.0.1") as sock:
            sock.sendto(request(8), ("127.0.0.2", number))
            port.doRead()
            data, source = sock.recvfrom(2048)
        assert source == ("127.0.0.2", number) and parse(data).header.origin == 8
        assert seen == [("::1", number), ("::ffff:127.0.0.2", number)]
    finally:
        close(port)


def test_destinations_parse_cache_and_reply_data():
    """The reply's ancillary data: IPv4 from the kernel's local address on interface 0;
    IPv6 from the destination, keeping the interface for link-local, none for multicast;
    the cache stays bounded."""
    ipv4 = Destinations(123)
    pktinfo = struct.pack("=i4s4s", 3, socket.inet_aton("192.0.2.1"),
                          socket.inet_aton("192.0.2.255"))
    local, [reply] = ipv4.read([(socket.IPPROTO_IP, udpsocket.IP_PKTINFO, pktinfo)])
    assert local == ("192.0.2.255", 123)  # a broadcast: its address, as Autokey wants
    assert reply[2] == struct.pack("=i4s4s", 0, socket.inet_aton("192.0.2.1"), bytes(4))
    assert ipv4.cached(pktinfo) == (local, [reply])
    assert ipv4.read([(socket.SOL_SOCKET, 99, b"1234")]) is None

    ipv6 = Destinations(123)
    for address, sent in (("fe80::1", ("fe80::1", 4)), ("2001:db8::1", ("2001:db8::1", 0)),
                          ("ff02::101", ("::", 0))):
        data = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, address), 4)
        local, [reply] = ipv6.read([(socket.IPPROTO_IPV6, udpsocket.IPV6_PKTINFO, data)])
        assert local == (address, 123)
        assert reply[2] == struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, sent[0]),
                                       sent[1])
    for index in range(3 * udpsocket.CACHE_LIMIT):
        data = struct.pack("=i4s4s", 0, bytes(4), index.to_bytes(4, "big"))
        ipv4.read([(socket.IPPROTO_IP, udpsocket.IP_PKTINFO, data)])
        assert len(ipv4._cache) <= udpsocket.CACHE_LIMIT


# -- Autokey on a wildcard bind -------------------------------------------------------------


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory):
    return make_group(tmp_path_factory.mktemp("iff"), "iff", ("alice", "brenda"),
                      trusted=("alice",), servers=("alice",))


class LoopbackReactor(Clock):
    """Timers on a ``task.Clock``; UDP ports on the real reactor, read by :meth:`pump`."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[NTPPort] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "",  # noqa: N802
                  maxPacketSize: int = 8192) -> NTPPort:  # noqa: N803
        listening = listen_udp(global_reactor, port, protocol, interface)
        global_reactor.removeReader(listening)
        self.ports.append(listening)
        return listening

    def pump(self) -> None:
        """Read every port until none has a datagram waiting (loopback delivers at once)."""
        while True:
            ready = select.select([p.socket for p in self.ports if p.connected], [], [], 0)[0]
            if not ready:
                return
            for port in self.ports:
                if port.connected and port.socket in ready:
                    port.doRead()


def node(text: str, reactor: LoopbackReactor) -> NTPAutokeyService:
    """A started service of config ``text`` (port 0) on ``reactor``, its clock at EPOCH."""
    config = attrs.evolve(parse_config(text, "<node>"), port=0)
    service = NTPAutokeyService(config, reactor=reactor,
                                clock=SimulatedClock(reactor.seconds, epoch=EPOCH),
                                identity_worker=False)
    service.startService()
    return service


def dance(group, *, destinations: bool, brenda: str = "127.0.0.2", seconds: int = 300):
    """Alice serves on 0.0.0.0; Brenda, on ``brenda``, runs the IFF client dance against
    127.0.0.1.  Brenda's association and Alice's engine counters."""
    reactor = LoopbackReactor()
    alice = node(f"keysdir {group.keysdir('alice')}\ncrypto host alice pw alicepw\n"
                 "localclock stratum 1\n", reactor)
    try:
        assert alice.address[0] == "0.0.0.0"
        if not destinations:
            alice.port.destinations = None  # as before: the engine sees 0.0.0.0
        bnode = node(f"keysdir {group.keysdir('brenda')}\ncrypto host brenda pw brendapw\n"
                     f"interface listen {brenda}\nserver 127.0.0.1 port {alice.address[1]} "
                     f"autokey ident {group.group} iburst minpoll 4 maxpoll 4\n", reactor)
        try:
            [assoc] = bnode.engine.associations.values()
            for _ in range(seconds):
                reactor.advance(1.0)
                reactor.pump()
                if assoc.autokey.state.proventic and bnode.engine.sys.peer == assoc.associd:
                    break
            return assoc, alice.engine.counters
        finally:
            stop_all(bnode)
    finally:
        stop_all(alice)


def test_autokey_dance_against_a_server_bound_to_the_wildcard(group):
    """With each request's destination the server's session keys use 127.0.0.1, the
    address Brenda asked: the dance completes and Alice serves her time."""
    assoc, counters = dance(group, destinations=True)
    assert assoc.autokey.state.proventic
    assert counters["internal_error"] == 0 and counters["kernel_drops"] == 0


def test_an_autokey_client_on_the_wildcard_learns_its_address(group):
    """Brenda on 0.0.0.0 too: her first request is keyed with 0.0.0.0 (she cannot know
    better yet); the reply's destination tells her 127.0.0.1 and the dance completes."""
    assoc, counters = dance(group, destinations=True, brenda="0.0.0.0")
    assert assoc.autokey.state.proventic
    assert assoc.local_address == "127.0.0.1"


def test_without_destinations_the_wildcard_server_breaks_autokey(group):
    """The control: a server that takes 0.0.0.0 for its address hashes the wrong session
    keys and the dance never completes."""
    assoc, counters = dance(group, destinations=False, seconds=120)
    assert not assoc.autokey.state.proventic
    assert counters["badauth"] > 0


def test_an_offloaded_identity_reply_leaves_from_the_address_asked(group):
    """An identity request to 127.0.0.2 on a wildcard bind, answered later by the worker:
    its reply comes from 127.0.0.2 under the session key of that address."""
    from ntpauto.auth.autokey import mac, server_reply_key, session_key, verify_mac
    from ntpauto.autokey.fields import IFF, Field, decode
    from ntpauto.autokey.offload import answer

    reactor = Clock()
    clock = SimulatedClock(reactor.seconds, epoch=EPOCH)
    config = parse_config(f"keysdir {group.keysdir('alice')}\ncrypto host alice pw alicepw\n"
                          "localclock stratum 1\namplification allow\n", "<alice>")
    engine = build_engine(config, clock)
    engine.start(0.0)
    engine.sys = attrs.evolve(engine.sys, leap=0, stratum=1, refid=b"LOCL")
    engine.autokey.host.signature_update(engine.crypto_now())
    engine.enable_offload()
    jobs: list = []

    class Worker:
        def submit(self, job, done) -> bool:
            jobs.append((job, done))
            return True

    proto = NTPDatagramProtocol(engine, clock, reactor)
    proto.worker = Worker()
    port = listen_udp(global_reactor, 0, proto, "0.0.0.0")
    global_reactor.removeReader(port)
    number = port.getHost().port
    keyid = 0x2345_6789
    challenge = group.credentials("brenda").client_scheme("iff", group.group).make_challenge()
    try:
        with client(socket.AF_INET, "127.0.0.1") as sock:
            me = sock.getsockname()
            head = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 77).encode()
            data = head + Field(code=IFF, associd=5, value=challenge).encode()
            data += mac(session_key(me[0], "127.0.0.2", keyid, 0), keyid, data)
            sock.sendto(data, ("127.0.0.2", number))
            port.doRead()
            [(job, done)] = jobs
            assert job.server == "127.0.0.2"
            done(job.job_id, *answer(engine.autokey.host.server_scheme(IFF), challenge))
            reply, source = sock.recvfrom(4096)
        assert source == ("127.0.0.2", number)
        packet = parse(reply)
        key = server_reply_key("127.0.0.2", me[0], keyid, 0, has_fields=True)
        assert verify_mac(key, packet.authenticated_part, packet.digest)
        [f] = [decode(e.data) for e in packet.fields]
        assert (f.code, f.response, f.error) == (IFF, True, False)
        assert proto._job_replies == {}
    finally:
        close(port)


# -- several processes on one port (reuseport_group) ------------------------------------


def drain(sock: socket.socket) -> list[tuple[str, bytes]]:
    """Every datagram waiting at ``sock``: (source address, octets)."""
    got = []
    while select.select([sock], [], [], 0)[0]:
        data, address = sock.recvfrom(4096)
        got.append((address[0], data))
    return got


def test_a_steered_group_gives_workers_short_client_requests_by_source_and_the_owner_the_rest():
    """Client requests of 48 and 72 octets and NTS requests (first field a Unique
    Identifier) from 32 sources are spread over the three sockets by source address (each
    source always to the same one); symmetric packets, control (mode 6) and client requests
    with Autokey fields all reach socket 0."""
    group = udpsocket.reuseport_group("127.0.0.1", 0, 3)
    port = group[0].getsockname()[1]
    assert all(s.getsockname() == ("127.0.0.1", port) for s in group)
    sources = [f"127.0.0.{i}" for i in range(1, 33)]
    kinds = {"short": b"\x23" + bytes(47), "keyed": b"\x23" + bytes(71),
             "fields": b"\x23" + bytes(47) + b"\x02\x02" + bytes(54),
             "nts": b"\x23" + bytes(47) + b"\x01\x04\x00\x24" + bytes(100),
             "peer": b"\x21" + bytes(47),
             "control": b"\x26" + bytes(11)}
    try:
        for source in sources:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind((source, 0))
                for data in kinds.values():
                    client.sendto(data, ("127.0.0.1", port))
        seen = [drain(s) for s in group]
    finally:
        for s in group:
            s.close()
    owner = seen[0]
    for name in ("fields", "peer", "control"):
        assert sorted(a for a, d in owner if d == kinds[name]) == sorted(sources)
    where = {}
    for index, got in enumerate(seen):
        for address, data in got:
            if data[0] == 0x23 and (len(data) <= 72 or data[48:50] == b"\x01\x04"):
                where.setdefault(address, set()).add(index)
    assert sorted(where) == sorted(sources)
    assert all(len(indices) == 1 for indices in where.values())  # a source keeps its socket
    assert all(sum(1 for i in where.values() if index in i) >= 4 for index in range(3))


def test_the_steering_program_is_checked_and_a_group_binds_the_same_port_only():
    with pytest.raises(ValueError):
        udpsocket.steering_program(0)
    group = udpsocket.reuseport_group("127.0.0.1", 0, 2)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            with pytest.raises(OSError):  # not in the group: no SO_REUSEPORT
                stranger.bind(group[0].getsockname())
    finally:
        for s in group:
            s.close()
