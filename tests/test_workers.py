"""``workers N``: worker processes answering client requests beside the first process
(ntpauto.workerstate, ntpauto.workerpool, ntpauto.serveworker; docs/scaling.md).

The pool's logic runs against a fake process reactor; a few tests run real worker processes
on loopback (port 0), waiting on the reactor for what they do, never sleeping."""

from __future__ import annotations

import os
import pickle
import signal
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import task
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from ntpauto import service as service_module
from ntpauto import udpsocket
from ntpauto.auth.autokey import mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.cookie import SharedSeed
from ntpauto.autokey.offload import FrameError, FrameReader
from ntpauto.cli.query import make_request
from ntpauto.config import ConfigError, CryptoConfig, default_config, parse_config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from ntpauto.system import SystemVariables
from ntpauto.wire.packet import parse
from ntpauto.workerpool import FIRST_FD, ServerWorkers
from ntpauto.workerstate import (
    WorkerInit,
    apply_system_state,
    counter_delta,
    decode_counters,
    decode_init,
    decode_system,
    encode_counters,
    encode_init,
    serving_config,
    serving_engine,
    system_state,
)
from tests.test_identityworker import FakeProcess
from tests.test_service import in_thread
from tests.test_service import spin as spin_reactor

KEYS = "1 MD5 workersecret\n"
VECTORS = Path(__file__).parent / "vectors"


# -- what goes between the processes ------------------------------------------------------


def test_the_serving_config_keeps_serving_and_drops_the_rest():
    config = parse_config("server 192.0.2.1 iburst\nlocalclock\nstatsaddress 9100\n"
                          "driftfile /tmp/drift\nenable ntp\nrestrict default limited kod\n"
                          "crypto host alice\nworkers 4\n")
    served = serving_config(config)
    assert served.associations == () and served.refclocks == () and served.crypto is None
    assert served.statsaddress is None and served.driftfile is None
    assert not served.discipline_enabled
    assert served.restrictions == config.restrictions and served.workers == 4


def test_workers_directive_and_count():
    assert parse_config("workers auto\n").workers == 0
    assert parse_config("workers 3\n").workers == 3
    assert parse_config("").workers == 1
    for bad in ("workers 0\n", "workers many\n", "workers 257\n", "workers\n"):
        with pytest.raises(ConfigError, match=r"^<string>:1: "):
            parse_config(bad)
    from ntpauto.config import worker_count

    assert worker_count(3) == 3 and worker_count(0) >= 1


def test_system_state_carries_the_variables_and_the_age_of_the_last_update():
    engine = Engine(parse_config(""), SimulatedClock(lambda: 0.0))
    engine.sys = SystemVariables(leap=0, stratum=3, refid=b"\xc0\0\2\1", reftime=123 << 32,
                                 root_delay=0.25, root_dispersion=0.5, epoch=1000.0)
    state = decode_system(pickle.dumps(system_state(engine, 1010.0)))
    worker = Engine(parse_config(""), SimulatedClock(lambda: 0.0))
    apply_system_state(worker, state, 50.0)
    sys = worker.sys
    assert (sys.leap, sys.stratum, sys.refid, sys.reftime) == (0, 3, b"\xc0\0\2\1", 123 << 32)
    assert (sys.root_delay, sys.root_dispersion, sys.epoch) == (0.25, 0.5, 40.0)


def test_the_start_frame_carries_keys_and_seed_and_builds_the_same_session_keys():
    keys = KeyStore(parse_keys(KEYS), [1])
    init = WorkerInit(index=2, config=serving_config(default_config()), keys=keys,
                      seed_secret=bytes(range(32)), revoke=1 << 10, digest="md5",
                      precision=-20, local_address="127.0.0.1", nts_cookies=None,
                      system={"leap": 0, "stratum": 2, "refid": b"LOCL", "reftime": 0,
                              "root_delay": 0.0, "root_dispersion": 0.0, "age": 0.0})
    [body] = FrameReader().feed(encode_init(init))
    again = decode_init(body)
    engine = serving_engine(again, SimulatedClock(lambda: 0.0))
    assert engine.precision == -20 and engine.keys.sign(1, bytes(48)) == keys.sign(1, bytes(48))
    owner = SharedSeed(bytes(range(32)), 1 << 10)
    assert engine.session_keys.seed.cookie("192.0.2.9", "127.0.0.1", 5000) == \
        owner.cookie("192.0.2.9", "127.0.0.1", 5000)
    with pytest.raises(FrameError):
        decode_init(pickle.dumps({"not": "a start"}))


def test_counter_reports_carry_growth_only_and_are_checked():
    reported: dict[str, int] = {}
    assert counter_delta({"served": 5, "received": 5}, reported) == {"served": 5,
                                                                     "received": 5}
    assert counter_delta({"served": 7, "received": 5}, reported) == {"served": 2}
    [body] = FrameReader().feed(encode_counters({"served": 2}))
    assert decode_counters(body) == {"served": 2}
    for junk in (b"\x80", b"[1]", b'{"served": -1}', b'{"served": 1.5}', b'{"a b": 1}',
                 b'{"' + b"x" * 65 + b'": 1}', b'{"served": true}'):
        with pytest.raises(FrameError):
            decode_counters(junk)


# -- the pool, with a fake process reactor -------------------------------------------------


class ProcessReactor(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[list[str], dict, dict]] = []
        self.processes: list[FakeProcess] = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None):  # noqa: N802
        self.spawned.append((list(args), dict(env or {}), dict(childFDs or {})))
        process = FakeProcess()
        process.pid = 1000 + len(self.processes)
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


def pool_of(count: int) -> tuple[ServerWorkers, ProcessReactor, Engine, list]:
    reactor = ProcessReactor()
    engine = Engine(parse_config(""), SimulatedClock(reactor.seconds))
    sockets = [[socket.socket(socket.AF_INET, socket.SOCK_DGRAM)] for _ in range(count)]
    inits = []

    def init_for(index: int) -> WorkerInit:
        inits.append(index)
        return WorkerInit(index=index, config=serving_config(default_config()),
                          keys=KeyStore(), seed_secret=None, revoke=0, digest="md5",
                          precision=-20, local_address=None, nts_cookies=None,
                          system=system_state(engine, reactor.seconds()))

    pool = ServerWorkers(engine, sockets, init_for, lambda: system_state(engine, 0.0),
                         reactor=reactor, restart_delay=2.0)
    pool.start()
    return pool, reactor, engine, sockets


def test_each_worker_gets_its_sockets_and_its_start_frame_first():
    pool, reactor, _, sockets = pool_of(2)
    assert pool.running == 2
    for index, (argv, env, fds) in enumerate(reactor.spawned, start=1):
        assert argv[1:3] == ["-m", "ntpauto.serveworker"]
        assert argv[3:] == [str(FIRST_FD)] and fds[FIRST_FD] == sockets[index - 1][0].fileno()
        assert "workersecret" not in repr(env) + repr(argv)
        [first] = FrameReader().feed(reactor.processes[index - 1].written)
        assert decode_init(first).index == index
    pool.stop()


def test_reports_add_up_in_the_engines_counters_and_a_bad_one_kills_the_worker():
    pool, reactor, engine, _ = pool_of(2)
    assert engine.server_processes == 3
    pool.workers[1].outReceived(encode_counters({"received": 3, "served": 3}))
    stream = encode_counters({"served": 4})
    pool.workers[2].outReceived(stream[:3])
    pool.workers[2].outReceived(stream[3:])
    assert engine.counters["served"] == 7 and engine.counters["received"] == 3
    assert pool.workers[2].counted["served"] == 4
    pool.workers[2].outReceived(b"\0\0\0\3abc")
    assert reactor.processes[1].signals == ["KILL"]
    assert engine.counters["served"] == 7
    pool.stop()


def test_published_system_variables_reach_every_running_worker():
    pool, reactor, engine, _ = pool_of(2)
    engine.system_listeners.append(pool.publish)
    engine.sys = attrs.evolve(engine.sys, stratum=4)
    for process in reactor.processes:
        _, update = FrameReader().feed(process.written)
        assert decode_system(update)["stratum"] == 4
    pool.stop()


def test_a_worker_that_ends_is_started_again_with_the_same_sockets():
    pool, reactor, engine, sockets = pool_of(2)
    with capturedLogs():
        pool.workers[1].processEnded(Failure(RuntimeError("killed")))
    assert pool.running == 1 and engine.counters["worker_restarts"] == 1
    assert engine.server_processes == 2
    reactor.advance(2.0)
    assert pool.running == 2 and len(reactor.spawned) == 3 and engine.server_processes == 3
    assert reactor.spawned[2][2][FIRST_FD] == sockets[0][0].fileno()
    pool.stop()


def test_stop_ends_every_worker_and_closes_the_sockets_without_restarts():
    pool, reactor, engine, sockets = pool_of(2)
    stopped = pool.stop()
    assert all(p.stdin_closed for p in reactor.processes) and not stopped.called
    for worker in list(pool.workers.values()):
        worker.processEnded(Failure(RuntimeError("done")))
    assert stopped.called and all(s.fileno() == -1 for [s] in sockets)
    reactor.advance(10.0)
    assert len(reactor.spawned) == 2 and engine.counters["worker_restarts"] == 0
    assert all(p.signals == [] for p in reactor.processes)  # ended in time: no kill


def test_a_worker_that_does_not_end_is_killed():
    pool, reactor, _, _ = pool_of(1)
    pool.stop()
    reactor.advance(5.0)
    assert reactor.processes[0].signals == ["KILL"]


# -- real worker processes on loopback ---------------------------------------------------


def spin(until: Any, timeout: float = 10.0) -> None:
    """:func:`tests.test_service.spin`, reaping ended children as the daemon's SIGCHLD
    handler would (the tests iterate the reactor without running it, so it has none)."""
    from twisted.internet.process import reapAllProcesses

    def done() -> bool:
        reapAllProcesses()
        return bool(until())

    spin_reactor(done, timeout)


def stop(service: NTPAutokeyService) -> None:
    finished: list[Any] = []
    service.stopService().addBoth(finished.append)
    spin(lambda: bool(finished))


pytestmark_linux = pytest.mark.skipif(not udpsocket.LINUX, reason="SO_REUSEPORT steering")
SOURCES = [f"127.0.0.{i}" for i in range(2, 34)]


def ask(port: int, requests: list[tuple[str, bytes]]) -> list[bytes | None]:
    """Send each request from its source address to 127.0.0.1 ``port``; the replies."""
    replies = []
    for source, data in requests:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(5.0)
            sock.sendto(data, ("127.0.0.1", port))
            try:
                replies.append(sock.recv(2048))
            except TimeoutError:
                replies.append(None)
    return replies


@pytest.fixture
def served(tmp_path: Path):
    """A service with two processes on 127.0.0.1 port 0: MD5 key 1, Autokey (alice of
    the vectors) and NTS, started on the global reactor, stopped after the test."""
    from ntpauto.nts.certs import write_test_pki

    keys = tmp_path / "ntp.keys"
    keys.write_text(KEYS)
    pki = write_test_pki(tmp_path, ["127.0.0.1"])
    config = attrs.evolve(default_config(port=0), workers=2, keys_file=str(keys),
                          trusted_keys=frozenset({1}),
                          keysdir=str(VECTORS / "keys" / "tc-rsa-md5" / "alice"),
                          crypto=CryptoConfig(host="alice", pw="alicepw"),
                          nts_server_cert=pki.cert, nts_server_key=pki.key, nts_port=0,
                          nts_dump_dir=str(tmp_path))
    service = NTPAutokeyService(config)
    service.privilegedStartService()
    service.startService()
    spin(lambda: service.engine.sys.stratum == 1)  # the local clock's first poll
    yield service
    stop(service)


def requests_for(service: NTPAutokeyService, stamp: int) -> list[tuple[str, bytes]]:
    """From each source: a plain, an MD5, an Autokey session-key and an NTS request (its
    cookie sealed with the server's cookie keys, as NTS-KE would give it)."""
    from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256
    from ntpauto.nts.aead import SessionKeys as NtsKeys
    from ntpauto.nts.records import KeResponse
    from ntpauto.nts.session import NtsSession

    engine = service.engine
    store = KeyStore(parse_keys(KEYS), [1])
    nts_keys = NtsKeys(AEAD_AES_SIV_CMAC_256, os.urandom(32), os.urandom(32))
    nts_cookie = engine.nts_server.cookie_keys.seal(nts_keys, engine.clock.now())
    out = []
    for i, source in enumerate(SOURCES):
        transmit = stamp + (i << 20)
        out.append((source, make_request(transmit, 4, None, None)))
        out.append((source, make_request(transmit + 1, 4, store, 1)))
        cookie = engine.autokey.responder.server_cookie(source, "127.0.0.1",
                                                        engine.crypto_now())
        head = make_request(transmit + 2, 4, None, None)
        keyid = 0x20000000 + i
        out.append((source, head + mac(session_key(source, "127.0.0.1", keyid, cookie),
                                       keyid, head)))
        session = NtsSession("127.0.0.1", 4460)
        session.keyed(KeResponse(nts_keys.aead, (nts_cookie,) * 8), nts_keys, 0.0)
        out.append((source, session.request(make_request(transmit + 3, 4, None, None))))
    return out


@pytestmark_linux
def test_workers_answer_every_kind_with_the_published_system_variables(served):
    """Plain, MD5, Autokey session-key and NTS requests from 32 sources: every one answered
    (MACs under the key and the cookie the first process would use, NTS cookies opened with
    its cookie keys), some by the worker process; after the first process's system
    variables change, every reply carries the new ones; the worker's counts reach the first
    process's counters."""
    service = served
    engine = service.engine
    port = service.address[1]
    stamp = engine.crypto_now() << 32
    requests = requests_for(service, stamp)
    replies = in_thread(lambda: ask(port, requests))
    assert None not in replies
    for (_source, data), reply in zip(requests, replies):
        packet = parse(reply)
        assert packet.header.stratum == 1
        if packet.nts:  # NTS: the unique identifier and the sealed reply (a new cookie)
            assert len(packet.fields) == 2 and engine.counters["nts_nak_sent"] == 0
        else:
            assert len(reply) == len(data) and not reply.endswith(bytes(4))  # no crypto-NAK
    engine.sys = attrs.evolve(engine.sys, stratum=6)
    seen: list[set[int]] = []

    def published() -> bool:  # the worker reads the update within a turn of its reactor
        replies = in_thread(lambda: ask(port, requests_for(service, stamp + (1 << 32))))
        seen.append({parse(r).header.stratum for r in replies})
        return seen[-1] == {6}

    spin(published)
    assert len(seen) <= 2
    [worker] = service.server_workers.workers.values()
    asked = len(requests) * (1 + len(seen))
    spin(lambda: engine.counters["served"] >= asked)  # the reports came
    assert worker.counted["served"] > 0 and worker.counted["nts_served"] > 0
    assert engine.counters["served"] == asked
    assert engine.server_processes == 2


@pytestmark_linux
def test_a_killed_worker_comes_back_and_stopping_ends_it(tmp_path: Path):
    service = NTPAutokeyService(attrs.evolve(default_config(port=0), workers=2))
    service.privilegedStartService()
    service.startService()
    pool = service.server_workers
    pool.restart_delay = 0.05
    [worker] = pool.workers.values()
    first = worker.pid
    try:
        with capturedLogs():
            os.kill(first, signal.SIGKILL)
            spin(lambda: worker.running and worker.pid != first)
        assert service.engine.counters["worker_restarts"] == 1
        port = service.address[1]
        replies = in_thread(lambda: ask(port, [(s, make_request(1 << 32, 4, None, None))
                                               for s in SOURCES]))
        assert None not in replies
        spin(lambda: worker.counted["served"] > 0)  # the new worker answered its share
        second = worker.pid
    finally:
        stop(service)
    spin(lambda: not worker.running)
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_workers_1_is_one_process_on_a_plain_socket():
    service = NTPAutokeyService(default_config(port=0))
    service.privilegedStartService()
    service.startService()
    try:
        assert service.server_workers is None and len(service.ports) == 1
        sock = service.ports[0].socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    finally:
        stop(service)


def test_without_steering_one_process_answers(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no SO_REUSEPORT steering here")

    monkeypatch.setattr(service_module, "reuseport_group", refuse)
    service = NTPAutokeyService(attrs.evolve(default_config(port=0), workers=3))
    with capturedLogs() as events:
        service.privilegedStartService()
        service.startService()
    try:
        assert service.server_workers is None and len(service.ports) == 1
        assert any("one process answers" in (e.get("log_format") or "") for e in events)
    finally:
        stop(service)
