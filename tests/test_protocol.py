"""Tests for ntpauto.protocol: datagrams in and out, timers, and never raising."""

from __future__ import annotations

import collections
import errno

from twisted.internet.address import IPv4Address
from twisted.internet.error import InvalidAddressError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ntpauto.config import default_config
from ntpauto.engine import Datagram, build_engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.protocol import NTPDatagramProtocol
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, Header, build, parse
from ntpauto.wire.timestamps import unix_to_ntp

CLIENT = ("127.0.0.2", 40123)


class FakeUDPTransport:
    """Just enough of a UDP port for the protocol: records writes, can fail them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 12300) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.host = IPv4Address("UDP", host, port)
        self.broadcast = False
        self.fail_with: BaseException | None = None

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append((data, addr))

    def getHost(self) -> IPv4Address:
        return self.host

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast = enabled


class ScriptedEngine:
    """A stand-in engine whose answers and wakeups the test sets, recording every call."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.wants_broadcast = False
        self.calls: list[tuple] = []
        self.wakeup: float | None = None
        self.replies: list[Datagram] = []
        self.timer_output: list[Datagram] = []
        self.start_output: list[Datagram] = []
        self.raise_in: set[str] = set()

    def _maybe_raise(self, name: str) -> None:
        if name in self.raise_in:
            raise ZeroDivisionError(f"bug in {name}")

    def start(self, now: float) -> list[Datagram]:
        self.calls.append(("start", now))
        self._maybe_raise("start")
        return list(self.start_output)

    def receive(self, data, source, rx, now, local=None) -> list[Datagram]:
        self.calls.append(("receive", data, source, rx, now, local))
        self._maybe_raise("receive")
        return list(self.replies)

    def fire_timers(self, now: float) -> list[Datagram]:
        self.calls.append(("fire_timers", now))
        self._maybe_raise("fire_timers")
        return list(self.timer_output)

    def next_wakeup(self) -> float | None:
        self._maybe_raise("next_wakeup")
        return self.wakeup

    def stop(self) -> None:
        self.calls.append(("stop",))

    def status(self) -> dict:
        return {"system": {}, "associations": []}


class RecordingClock:
    """An NTP clock that notes when it was read, relative to the engine's calls."""

    def __init__(self, engine: ScriptedEngine, value: float = 1_800_000_000.25) -> None:
        self.engine = engine
        self.value = value

    def now(self) -> float:
        self.engine.calls.append(("clock",))
        return self.value

    def precision(self) -> int:
        return -20

    def step(self, offset: float) -> None:
        raise AssertionError("tests never step a clock")

    adjust = step


def _client_request(transmit: int = 0x1234_5678_9ABC_DEF0) -> bytes:
    return build(Header(0, 4, MODE_CLIENT, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit))


class ProtocolWithScriptedEngineTests(SynchronousTestCase):
    """The protocol's plumbing, against a scripted engine."""

    def setUp(self) -> None:
        self.reactor = Clock()
        self.reactor.advance(1000.0)
        self.engine = ScriptedEngine()
        self.clock = RecordingClock(self.engine)
        self.transport = FakeUDPTransport()
        self.protocol = NTPDatagramProtocol(self.engine, self.clock, self.reactor)

    def connect(self) -> None:
        self.protocol.makeConnection(self.transport)

    def test_receive_stamps_first_and_passes_everything(self) -> None:
        """The NTP clock is read before the engine runs; the engine gets the 64-bit receive
        timestamp, the reactor time and the bound address."""
        self.connect()
        self.engine.calls.clear()
        self.protocol.datagramReceived(b"x" * 48, CLIENT)
        self.assertEqual(self.engine.calls[0], ("clock",))
        self.assertEqual(self.engine.calls[1], ("receive", b"x" * 48, CLIENT,
                                                unix_to_ntp(self.clock.value), 1000.0,
                                                ("127.0.0.1", 12300)))

    def test_replies_are_written(self) -> None:
        """Every datagram the engine returns goes out to its destination."""
        self.connect()
        self.engine.replies = [Datagram(b"a", CLIENT), Datagram(b"b", ("127.0.0.3", 123))]
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.transport.written, [(b"a", CLIENT), (b"b", ("127.0.0.3", 123))])

    def test_engine_exception_never_escapes(self) -> None:
        """A bug in ``engine.receive`` is logged and counted, and the protocol keeps going."""
        self.connect()
        self.engine.raise_in.add("receive")
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.engine.counters["internal_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.engine.raise_in.clear()
        self.engine.replies = [Datagram(b"ok", CLIENT)]
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.transport.written, [(b"ok", CLIENT)])

    def test_wakeup_exception_never_escapes(self) -> None:
        """Even ``next_wakeup`` failing after a datagram is contained."""
        self.connect()
        self.engine.raise_in.add("next_wakeup")
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.engine.counters["internal_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_clock_exception_never_escapes(self) -> None:
        """A clock that cannot be read drops the datagram and counts it."""
        self.connect()

        def broken() -> float:
            raise OSError("no clock")

        self.clock.now = broken  # type: ignore[method-assign]
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.engine.counters["internal_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse([c for c in self.engine.calls if c[0] == "receive"])

    def test_start_starts_engine_and_sends(self) -> None:
        """``startProtocol`` starts the engine with the reactor time and sends its output."""
        self.engine.start_output = [Datagram(b"poll", ("127.0.0.9", 123))]
        self.connect()
        self.assertIn(("start", 1000.0), self.engine.calls)
        self.assertEqual(self.transport.written, [(b"poll", ("127.0.0.9", 123))])
        self.assertFalse(self.transport.broadcast)

    def test_broadcast_allowed_when_wanted(self) -> None:
        """An engine that sends broadcasts gets a transport that allows them."""
        self.engine.wants_broadcast = True
        self.connect()
        self.assertTrue(self.transport.broadcast)

    def test_timer_fires_and_reschedules(self) -> None:
        """One delayed call tracks ``next_wakeup``; firing it runs the timers with the reactor
        time, sends their output and re-arms for the next wakeup."""
        self.engine.wakeup = 1008.0
        self.engine.timer_output = [Datagram(b"tick", ("127.0.0.9", 123))]
        self.connect()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(7.9)
        self.assertNotIn(("fire_timers", 1007.9), self.engine.calls)
        self.engine.wakeup = 1016.0
        self.reactor.advance(0.1)
        self.assertIn(("fire_timers", 1008.0), self.engine.calls)
        self.assertEqual(self.transport.written, [(b"tick", ("127.0.0.9", 123))])
        [call] = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), 1016.0)

    def test_receive_moves_timer(self) -> None:
        """A datagram that brings the next wakeup forward moves the single timer."""
        self.engine.wakeup = 1064.0
        self.connect()
        self.engine.wakeup = 1002.0
        self.protocol.datagramReceived(b"q", CLIENT)
        [call] = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), 1002.0)
        self.engine.wakeup = 1064.0
        self.reactor.advance(2.0)
        self.assertIn(("fire_timers", 1002.0), self.engine.calls)

    def test_stale_wakeup_does_not_spin(self) -> None:
        """An engine whose wakeup stays in the past after its timers ran is re-fired after
        a millisecond, not in a busy loop."""
        self.engine.wakeup = 1000.0
        self.connect()
        self.reactor.advance(0)
        fired = [c for c in self.engine.calls if c[0] == "fire_timers"]
        self.assertEqual(fired, [("fire_timers", 1000.0)])
        [call] = self.reactor.getDelayedCalls()
        self.assertAlmostEqual(call.getTime(), 1000.001)
        self.engine.wakeup = None
        self.reactor.advance(0.001)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_wakeup_in_the_past_fires_now(self) -> None:
        """A wakeup already due is scheduled with no delay, not a negative one."""
        self.engine.wakeup = 990.0
        self.connect()
        self.engine.wakeup = None
        self.reactor.advance(0)
        self.assertIn(("fire_timers", 1000.0), self.engine.calls)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_no_wakeup_cancels_timer(self) -> None:
        """``next_wakeup() is None`` leaves nothing scheduled."""
        self.engine.wakeup = 1010.0
        self.connect()
        self.engine.wakeup = None
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timer_exception_never_escapes(self) -> None:
        """A failing ``fire_timers`` is counted and the timer is re-armed."""
        self.engine.wakeup = 1001.0
        self.engine.raise_in.add("fire_timers")
        self.connect()
        self.engine.wakeup = 1002.0
        self.reactor.advance(1.0)
        self.assertEqual(self.engine.counters["internal_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)

    def test_stop_cancels_timer_and_stops_engine(self) -> None:
        """``stopProtocol`` leaves no delayed call behind and stops the engine."""
        self.engine.wakeup = 1010.0
        self.connect()
        self.protocol.doStop()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertIn(("stop",), self.engine.calls)
        self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_send_errors_are_counted(self) -> None:
        """EPERM, ECONNREFUSED and a bad address on write are counted, never raised."""
        self.connect()
        self.engine.replies = [Datagram(b"a", CLIENT)]
        for error in (OSError(errno.EPERM, "Operation not permitted"),
                      OSError(errno.ECONNREFUSED, "Connection refused"),
                      OSError(errno.EPERM, "Operation not permitted"),
                      InvalidAddressError("::1", "IPv4 port write() called with IPv6")):
            self.transport.fail_with = error
            self.protocol.datagramReceived(b"q", CLIENT)
        self.assertEqual(self.engine.counters["send_error"], 4)
        self.assertEqual(self.engine.counters["internal_error"], 0)

    def test_sibling_ports_share_one_timer(self) -> None:
        """A second port over the same engine delegates its timer to the first, and timer
        output goes out through the port of the destination's address family."""
        self.engine.wakeup = 1010.0
        self.connect()
        v6 = FakeUDPTransport()
        v6.host = IPv4Address("UDP", "::1", 12300)  # only .host is read
        sibling = NTPDatagramProtocol(self.engine, self.clock, self.reactor,
                                      scheduler=self.protocol)
        sibling.makeConnection(v6)
        self.assertEqual([c for c in self.engine.calls if c[0] == "start"], [("start", 1000.0)])
        self.engine.wakeup = 1005.0
        sibling.datagramReceived(b"q", ("::1", 5555))
        [call] = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), 1005.0)
        self.engine.timer_output = [Datagram(b"4", ("127.0.0.9", 123)),
                                    Datagram(b"6", ("::2", 123))]
        self.engine.wakeup = None
        self.reactor.advance(5.0)
        self.assertEqual(self.transport.written, [(b"4", ("127.0.0.9", 123))])
        self.assertEqual(v6.written, [(b"6", ("::2", 123))])
        sibling.doStop()
        self.assertNotIn(("stop",), self.engine.calls)


class ProtocolWithEngineTests(SynchronousTestCase):
    """The protocol over the real engine of the default (stratum-1 server) config."""

    def setUp(self) -> None:
        self.reactor = Clock()
        self.reactor.advance(5000.0)
        self.clock = SimulatedClock(self.reactor.seconds)
        self.engine = build_engine(default_config(), self.clock)
        self.transport = FakeUDPTransport()
        self.protocol = NTPDatagramProtocol(self.engine, self.clock, self.reactor)
        self.protocol.makeConnection(self.transport)

    def tearDown(self) -> None:
        self.protocol.doStop()

    def test_client_request_is_answered(self) -> None:
        """A mode-3 request gets a mode-4 reply to its source echoing its transmit time."""
        request = _client_request()
        self.protocol.datagramReceived(request, CLIENT)
        [(data, destination)] = self.transport.written
        self.assertEqual(destination, CLIENT)
        reply = parse(data).header
        self.assertEqual(reply.mode, MODE_SERVER)
        self.assertEqual(reply.origin, 0x1234_5678_9ABC_DEF0)
        self.assertEqual(reply.receive, unix_to_ntp(self.clock.now()))
        self.assertEqual(reply.stratum, 1)

    def test_malformed_datagram_is_dropped_and_counted(self) -> None:
        """A short datagram is dropped by the engine with a counter; nothing is sent and
        nothing is raised."""
        before = self.engine.counters["badlength"]
        self.protocol.datagramReceived(b"\x23" * 20, CLIENT)
        self.protocol.datagramReceived(_client_request()[:47], CLIENT)
        self.assertEqual(self.transport.written, [])
        self.assertEqual(self.engine.counters["badlength"], before + 2)
        self.assertEqual(self.engine.counters["internal_error"], 0)

    def test_garbage_never_raises(self) -> None:
        """Random octets of many lengths never escape as an exception."""
        import random

        rng = random.Random(5905)
        for size in list(range(0, 120)) + [500, 2000, 3000]:
            data = bytes(rng.randrange(256) for _ in range(size))
            self.protocol.datagramReceived(data, CLIENT)
        self.assertEqual(self.engine.counters["internal_error"], 0)

