"""State changes as events (ntpauto.changes) and the service's time API: synchronised(),
now() and observe(), for two services on an in-memory network driven by simulated time
(tests/loopnet.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.defer import CancelledError
from twisted.logger import formatEvent, globalLogPublisher

from ntpauto.changes import (
    ASSOCIATION_LOST,
    ASSOCIATION_PROVENTIC,
    ASSOCIATION_REACHABLE,
    NAMESPACE,
    SYSTEM_LEAP,
    SYSTEM_PEER,
)
from ntpauto.config import parse_config
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from tests.autokey_groups import EPOCH, GroupKeys, make_group, password
from tests.loopnet import LoopNetwork

SERVER, CLIENT = "127.0.0.1", "127.0.0.2"


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> GroupKeys:
    return make_group(tmp_path_factory.mktemp("tc"), "tc", ("alice", "brenda"),
                      trusted=("alice",), servers=("alice",))


def node(net: LoopNetwork, address: str, text: str, directory: Path,
         offset: float = 0.0) -> NTPAutokeyService:
    config = parse_config(f"interface listen {address}\n{text}", str(directory / "ntp.conf"))
    clock = SimulatedClock(net.seconds, offset=offset, epoch=EPOCH)
    return NTPAutokeyService(attrs.evolve(config, port=123), reactor=net, clock=clock)


def autokey_pair(net: LoopNetwork, keys: GroupKeys) -> tuple[NTPAutokeyService,
                                                             NTPAutokeyService]:
    """A TC server (alice) and its Autokey client (brenda, 0.25 s slow), not started."""
    server = node(net, SERVER, f"localclock stratum 1\ncrypto host alice pw "
                  f"{password('alice')}\nkeysdir {keys.keysdir('alice')}\n", keys.root)
    client = node(net, CLIENT, f"server {SERVER} autokey iburst minpoll 3 maxpoll 3\n"
                  f"crypto host brenda pw {password('brenda')}\n"
                  f"keysdir {keys.keysdir('brenda')}\n", keys.root, offset=-0.25)
    return server, client


def plain_pair(net: LoopNetwork, directory: Path) -> tuple[NTPAutokeyService,
                                                           NTPAutokeyService]:
    server = node(net, SERVER, "localclock stratum 1\n", directory)
    client = node(net, CLIENT, f"server {SERVER} iburst minpoll 3 maxpoll 3\n", directory)
    return server, client


def test_dance_events_synchronised_and_now(tc: GroupKeys) -> None:
    """The client's observer sees its association become reachable and proventic and the
    server become its system peer, in that order; synchronised() fires then with now(),
    which corrects the client's 0.25 s error within its bound."""
    net = LoopNetwork()
    server, client = autokey_pair(net, tc)
    events: list[dict[str, Any]] = []
    client.observe(events.append)
    ready = client.synchronised()
    fired: list[Any] = []
    ready.addCallback(fired.append)
    server.startService()
    client.startService()
    net.run(lambda: bool(fired), limit=120.0)
    names = [e["ntpauto_event"] for e in events]
    assert names[:3] == [ASSOCIATION_REACHABLE, ASSOCIATION_PROVENTIC, SYSTEM_PEER], names
    assert all(e["log_namespace"] == NAMESPACE and e["log_source"] is client.engine
               for e in events)
    proventic = events[1]
    assert (proventic["address"], proventic["port"], proventic["peer"],
            proventic["scheme"]) == (SERVER, 123, "alice@alice", "tc")
    assert (events[2]["address"], events[2]["stratum"]) == (SERVER, 2)
    [estimate] = fired
    true_time = EPOCH + net.seconds()
    assert estimate.synchronised and estimate.proventic
    assert estimate.peer == (SERVER, 123) and estimate.stratum == 2
    assert abs(estimate.time - true_time) < 0.01 <= estimate.error
    assert abs(client.clock.now() - true_time) == pytest.approx(0.25)
    assert client.synchronised().called  # already synchronised: at once


def test_lost_when_silent(tc: GroupKeys) -> None:
    """When the server falls silent the association is lost (unreachable) after eight
    unanswered polls.  The engine selects again only on a new sample, so the node keeps
    its system peer and serves what it last knew; now()'s bound keeps growing."""
    net = LoopNetwork()
    server, client = autokey_pair(net, tc)
    server.startService()
    client.startService()
    box: list[Any] = []
    client.synchronised().addCallback(box.append)
    net.run(lambda: bool(box), limit=120.0)
    events: list[dict[str, Any]] = []
    client.observe(events.append, [ASSOCIATION_LOST])
    net.tamper = lambda data, destination: None
    silent = net.seconds()
    net.run(lambda: bool(events), limit=600.0)
    [lost] = events
    assert (lost["address"], lost["reason"]) == (SERVER, "unreachable")
    assert 7 * 8 <= net.seconds() - silent <= 9 * 8
    first = client.now()
    net.pump(64.0)
    assert client.now().error == pytest.approx(first.error + 64 * 15e-6)


def test_proventic_waits_for_autokey(tmp_path: Path) -> None:
    """With only a plain server, synchronised() fires, but synchronised(proventic=True)
    does not: the system peer proves nothing; it can be cancelled."""
    net = LoopNetwork()
    server, client = plain_pair(net, tmp_path)
    either: list[Any] = []
    proven: list[Any] = []
    client.synchronised(proventic=False).addCallback(either.append)
    waiting = client.synchronised(proventic=True)
    waiting.addBoth(proven.append)
    server.startService()
    client.startService()
    net.run(lambda: bool(either), limit=120.0)
    net.pump(60.0)
    assert either[0].synchronised and not either[0].proventic
    assert proven == []
    waiting.cancel()
    [cancelled] = proven
    assert cancelled.check(CancelledError)
    assert server.now().proventic  # a reference clock has nothing to prove


def test_leap_announced(tmp_path: Path) -> None:
    """A server that announces a leap second: the client serves leap 1 and says so."""
    net = LoopNetwork()
    server, client = plain_pair(net, tmp_path)

    def announce(data: bytes, destination: tuple[str, int]) -> bytes:
        if destination[0] == CLIENT:
            return bytes([data[0] & 0x3F | 0x40]) + data[1:]
        return data

    net.tamper = announce
    events: list[dict[str, Any]] = []
    client.observe(events.append, [SYSTEM_LEAP])
    server.startService()
    client.startService()
    net.run(lambda: bool(events), limit=120.0)
    assert (events[0]["leap"], events[0]["previous"]) == (1, 3)
    assert client.engine.sys.leap == 1 and client.now().leap == 1


def test_events_reach_the_global_log(tmp_path: Path) -> None:
    """The events are twisted.logger events: an observer of the global publisher sees them,
    with their text; unknown names are refused."""
    net = LoopNetwork()
    server, client = plain_pair(net, tmp_path)
    seen: list[dict[str, Any]] = []

    def mine(event: dict[str, Any]) -> None:
        if event.get("log_source") is client.engine:
            seen.append(event)

    globalLogPublisher.addObserver(mine)
    try:
        server.startService()
        client.startService()
        net.run(lambda: any(e.get("ntpauto_event") == SYSTEM_PEER for e in seen), limit=120)
    finally:
        globalLogPublisher.removeObserver(mine)
    texts = [formatEvent(e) for e in seen if "ntpauto_event" in e]
    assert f"association {seen[0]['associd']} with {SERVER} port 123 is reachable" in texts[0]
    with pytest.raises(ValueError, match="unknown event name"):
        client.observe(seen.append, ["association.found"])
    assert math.isinf(node(net, "127.0.0.3", "", tmp_path).now().error)
