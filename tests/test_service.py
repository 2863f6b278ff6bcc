"""Tests for ntpauto.service: binding, logging, stopping, and a real socket on loopback."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ntpauto.cli.query import make_request, query
from ntpauto.config import ConfigError, ListenConfig, default_config
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from ntpauto.wire.packet import MODE_SERVER, parse

DOCS = Path(__file__).resolve().parents[1] / "docs"
VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors"


class FakeUDPPort:
    """A listening UDP port of :class:`FakeUDPReactor`: records writes."""

    def __init__(self, reactor: FakeUDPReactor, port: int, protocol: Any,
                 interface: str) -> None:
        self.reactor = reactor
        self.number = port
        self.protocol = protocol
        self.interface = interface
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        self.broadcast = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self) -> IPv4Address | IPv6Address:
        if ":" in self.interface:
            return IPv6Address("UDP", self.interface, self.number)
        return IPv4Address("UDP", self.interface, self.number)

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast = enabled

    def stopListening(self) -> None:
        self.listening = False
        self.reactor.ports.remove(self)
        self.protocol.doStop()


class FakeUDPReactor(Clock):
    """``task.Clock`` plus ``listenUDP`` (MemoryReactor has no UDP)."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakeUDPPort] = []
        self.refuse: set[str] = set()
        self._next_port = 40000

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> FakeUDPPort:
        if interface in self.refuse:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        if port == 0:
            self._next_port += 1
            port = self._next_port
        listening = FakeUDPPort(self, port, protocol, interface)
        self.ports.append(listening)
        protocol.makeConnection(listening)
        return listening


class ServiceTests(SynchronousTestCase):
    """The service over a fake UDP reactor."""

    def setUp(self) -> None:
        self.reactor = FakeUDPReactor()
        self.reactor.advance(100.0)
        self.clock = SimulatedClock(self.reactor.seconds)

    def temp_file(self, name: str) -> Path:
        """A path in a fresh temporary directory removed after the test."""
        directory = tempfile.mkdtemp(prefix="ntpauto-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        return Path(directory) / name

    def make(self, config: Any = None) -> NTPAutokeyService:
        return NTPAutokeyService(config, reactor=self.reactor, clock=self.clock)

    def test_defaults(self) -> None:
        """Without a config the service is the default stratum-1 server on 127.0.0.1:12300,
        and nothing is bound before it starts."""
        service = self.make()
        self.assertEqual(service.config, default_config())
        self.assertIsNone(service.port)
        self.assertIsNone(service.address)
        self.assertIsNotNone(service.engine)

    def test_binds_in_privileged_start(self) -> None:
        """``privilegedStartService`` binds; ``startService`` does not bind again."""
        service = self.make()
        service.privilegedStartService()
        self.assertEqual(service.address, ("127.0.0.1", 12300))
        self.assertEqual(len(self.reactor.ports), 1)
        service.startService()
        self.assertEqual(len(self.reactor.ports), 1)
        self.assertIs(service.protocol.transport, service.port)
        self.assertIs(service.protocol.engine, service.engine)
        service.stopService()

    def test_start_without_privileged_start_binds(self) -> None:
        """An embedding program that only calls ``startService`` is bound too."""
        service = self.make()
        service.startService()
        self.assertEqual(service.address, ("127.0.0.1", 12300))
        service.stopService()

    def test_port_zero(self) -> None:
        """Port 0 binds an ephemeral port and ``address`` tells which."""
        service = self.make(default_config(port=0))
        service.startService()
        self.assertEqual(service.address, ("127.0.0.1", 40001))
        service.stopService()

    def test_no_listen_means_all_interfaces(self) -> None:
        """A config without interface lines listens on 0.0.0.0."""
        service = self.make(attrs.evolve(default_config(), listen=()))
        service.startService()
        self.assertEqual(service.address, ("0.0.0.0", 12300))
        service.stopService()

    def test_one_port_per_listen_address(self) -> None:
        """Each listen address gets its own port over the one engine."""
        config = attrs.evolve(default_config(), listen=(ListenConfig("127.0.0.1"),
                                                        ListenConfig("::1")))
        service = self.make(config)
        service.startService()
        self.assertEqual([p.interface for p in service.ports], ["127.0.0.1", "::1"])
        self.assertEqual({id(p.engine) for p in service.protocols}, {id(service.engine)})
        service.stopService()
        self.assertEqual(self.reactor.ports, [])

    def test_failed_bind_unbinds_the_rest(self) -> None:
        """If one address cannot be bound, the ones already bound are released and the
        error reaches the caller (twistd reports it)."""
        config = attrs.evolve(default_config(), listen=(ListenConfig("127.0.0.1"),
                                                        ListenConfig("127.0.0.5")))
        self.reactor.refuse.add("127.0.0.5")
        service = self.make(config)
        self.assertRaises(CannotListenError, service.privilegedStartService)
        self.assertEqual(self.reactor.ports, [])
        self.assertEqual(service.ports, [])

    def test_answers_clients(self) -> None:
        """A client request delivered to the bound port is answered through it."""
        service = self.make()
        service.startService()
        request = make_request(0xDEAD_BEEF_0000_0001)
        service.protocol.datagramReceived(request, ("127.0.0.1", 5555))
        [(data, destination)] = service.port.written
        self.assertEqual(destination, ("127.0.0.1", 5555))
        header = parse(data).header
        self.assertEqual((header.mode, header.origin), (MODE_SERVER, 0xDEAD_BEEF_0000_0001))
        service.stopService()

    def test_stop_unbinds_and_cancels_timers(self) -> None:
        """Stopping releases every port and leaves no delayed call scheduled."""
        service = self.make()
        service.startService()
        d = service.stopService()
        self.successResultOf(d)
        self.assertEqual(self.reactor.ports, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertIsNone(service.port)

    def test_logs_listening_and_warnings(self) -> None:
        """Start-up logs each listening address and every config warning, structured."""
        config = attrs.evolve(default_config(), warnings=("ntp.conf:3: 'tinker' ignored",))
        service = self.make(config)
        with capturedLogs() as events:
            service.startService()
        listening = [e for e in events if e.get("log_format", "").startswith("NTP listening")]
        self.assertEqual([(e["host"], e["port"]) for e in listening], [("127.0.0.1", 12300)])
        warned = [e for e in events if e.get("warning") == "ntp.conf:3: 'tinker' ignored"]
        self.assertEqual(len(warned), 1)
        self.assertEqual(warned[0]["log_level"].name, "warn")
        service.stopService()

    def test_identity_group_problems_are_warned_at_start(self) -> None:
        """An ``ident`` group with no client file is one warning naming the association,
        the files looked for and the consequence; a reference (PKCS#8) IFF client file is
        one warning at load naming the file and the remedy; a usable group, none."""
        keysdir = self.temp_file("keys")
        shutil.copytree(VECTORS / "keys" / "iff" / "brenda", keysdir)
        trad = VECTORS / "keys" / "iff-trad" / "brenda" / "ntpkey_iffpar_alice.4004436521"
        shutil.copy(trad, keysdir / "ntpkey_iffpar_good")
        (keysdir / "ntpkey_iffpar_broken").write_text("not a key\n")
        path = self.temp_file("ntp.conf")
        path.write_text(f"keysdir {keysdir}\ncrypto host brenda pw brendapw\n"
                        "server 127.0.0.1 port 9 autokey ident nosuch\n"
                        "server 127.0.0.2 port 9 autokey ident alice\n"
                        "server 127.0.0.3 port 9 autokey ident good\nident nosuch2\n"
                        "server 127.0.0.4 port 9 autokey ident broken\n")
        service = NTPAutokeyService.from_file(path, reactor=self.reactor, clock=self.clock)
        with capturedLogs() as events:
            service.startService()
        service.stopService()
        warnings = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 5, warnings)
        missing, lost, broken, broken_group, missing_global = warnings
        self.assertEqual(missing, (
            f"{path}:3: server 127.0.0.1 port 9 autokey: ident nosuch: no usable identity "
            "client file (ntpkey_gqpar_nosuch, ntpkey_iffpar_nosuch, ntpkey_mvpar_nosuch) in "
            f"{keysdir}: it can never become proventic with a server that proves its "
            "identity with GQ, IFF or MV"))
        self.assertTrue(lost.startswith(f"{keysdir / 'ntpkey_iffpar_alice'}: IFF client "
                                        "parameters in PKCS#8"), lost)
        self.assertIn("'ntpauto keygen -e' on the trusted host", lost)
        self.assertEqual(broken, f"identity group broken: {keysdir / 'ntpkey_iffpar_broken'}: "
                                 "no filestamp: the first line must be "
                                 "'# ntpkey_<type>_<owner>.<filestamp>'")
        self.assertTrue(broken_group.startswith(f"{path}:7: server 127.0.0.4 port 9 autokey: "
                                                "ident broken: no usable"), broken_group)
        self.assertTrue(missing_global.startswith("ident (associations the network "
                                                  "mobilises): ident nosuch2: "),
                        missing_global)

    def test_from_file(self) -> None:
        """``from_file`` loads the config it names and passes the keywords on."""
        path = self.temp_file("ntp.conf")
        path.write_text("server 127.127.1.0\nfudge 127.127.1.0 stratum 0\n"
                        "interface listen 127.0.0.1\nport 12399\n")
        service = NTPAutokeyService.from_file(path, reactor=self.reactor, clock=self.clock)
        service.startService()
        self.assertEqual(service.address, ("127.0.0.1", 12399))
        self.assertEqual(service.config.path, str(path))
        service.stopService()

    def test_from_file_error_names_line(self) -> None:
        """A bad config raises ``ConfigError`` whose text is ``file:line: message``."""
        path = self.temp_file("ntp.conf")
        path.write_text("# fine\nserver\n")
        with self.assertRaises(ConfigError) as caught:
            NTPAutokeyService.from_file(path, reactor=self.reactor, clock=self.clock)
        self.assertTrue(str(caught.exception).startswith(f"{path}:2: "), str(caught.exception))


# -- the real reactor, on loopback ----------------------------------------------------------


def spin(until: Any, timeout: float = 10.0) -> None:
    """Run the global reactor's loop until ``until()`` is true (bounded by ``timeout``)."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting on the reactor"
        reactor.iterate(0.01)


def stop(service: Any) -> None:
    """Stop a service started on the global reactor and wait until its ports are closed."""
    done: list[Any] = []
    service.stopService().addBoth(done.append)
    spin(lambda: bool(done))


def in_thread(call: Any) -> Any:
    """Run a blocking client call in a thread while this thread runs the reactor."""
    results: list[Any] = []

    def target() -> None:
        try:
            results.append(call())
        except Exception as exc:  # handed back to the test
            results.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    spin(lambda: not thread.is_alive())
    [result] = results
    if isinstance(result, Exception):
        raise result
    return result


def query_in_thread(host: str, port: int, **kwargs: Any) -> dict[str, Any]:
    """Run the blocking CLI query in a thread while the reactor runs in this one."""
    return in_thread(lambda: query(host, port, **kwargs))


def test_real_socket_query() -> None:
    """The service on 127.0.0.1 port 0 with the real reactor and clock answers the query
    command with a stratum-1 time whose offset from our own clock is tiny."""
    service = NTPAutokeyService(default_config(port=0))
    service.privilegedStartService()
    service.startService()
    try:
        host, port = service.address
        assert host == "127.0.0.1" and port != 0
        result = query_in_thread(host, port, timeout=5.0)
    finally:
        stop(service)
    assert result["stratum"] == 1
    assert result["refid"] == "LOCL"
    assert abs(result["offset"]) < 0.05
    assert 0 <= result["delay"] < 1.0
    assert service.engine.counters["internal_error"] == 0


def _embedding_example() -> str:
    text = (DOCS / "embedding.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/embedding.md has no python example"
    return blocks[0]


def test_embedding_example_runs() -> None:
    """The first example of docs/embedding.md, run as written (on port 0 rather than 12300
    so that tests never collide with a running daemon), serves time."""
    code = _embedding_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 8, code
    assert "12300" in code
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("12300", "0"), "docs/embedding.md", "exec"), namespace)
    app = namespace["app"]
    ntp = namespace["ntp"]
    assert isinstance(app, MultiService) and isinstance(ntp, NTPAutokeyService)
    try:
        assert ntp.running and ntp.port is not None
        result = query_in_thread(*ntp.address, timeout=5.0)
    finally:
        done: list[Any] = []
        app.stopService().addBoth(done.append)
        spin(lambda: bool(done))
    assert result["stratum"] == 1


def test_real_socket_authenticated_query(tmp_path: Path) -> None:
    """With a keys file, the real service answers an MD5-signed query with a reply the
    query command verifies, and a query under an unknown key gets a crypto-NAK."""
    from ntpauto.auth.keys import KeyStore, parse_keys
    from ntpauto.cli.query import QueryError

    keys = tmp_path / "ntp.keys"
    keys.write_text("7 MD5 sesame\n")
    config = attrs.evolve(default_config(port=0), keys_file=str(keys),
                          trusted_keys=frozenset({7}))
    service = NTPAutokeyService(config)
    service.startService()
    try:
        good = KeyStore(parse_keys("7 MD5 sesame\n"), trusted=[7])
        result = query_in_thread(*service.address, timeout=5.0, store=good, keyid=7)
        wrong = KeyStore(parse_keys("8 MD5 sesame\n"), trusted=[8])
        with pytest.raises(QueryError, match="crypto-NAK"):
            query_in_thread(*service.address, timeout=5.0, store=wrong, keyid=8)
    finally:
        stop(service)
    assert result["authenticated"] is True
    assert service.engine.counters["badauth"] == 1


def test_drift_file_written_when_discipline_enabled(tmp_path):
    """With `enable ntp` and a driftfile the frequency is saved hourly and on stop;
    the clock itself is simulated and never the host's."""
    from twisted.internet import task

    from ntpauto.config import parse_config
    from ntpauto.ntp.clocks import SimulatedClock
    from ntpauto.service import NTPAutokeyService

    drift = tmp_path / "ntp.drift"
    config = parse_config(f"localclock stratum 1\nenable ntp\ndriftfile {drift}\n",
                          str(tmp_path / "ntp.conf"))
    clock = task.Clock()
    service = NTPAutokeyService(config, reactor=clock, clock=SimulatedClock(clock.seconds))
    service.engine.discipline.frequency = 12.5e-6
    service.write_drift()
    assert float(drift.read_text()) == 12.5
    service.engine.discipline.frequency = -3e-6
    drift_timer = [s for s in service if hasattr(s, "step")][0]
    drift_timer.startService()
    clock.advance(3600)
    assert float(drift.read_text()) == -3.0
