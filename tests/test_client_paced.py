"""ntpauto.client.query driven by simulated time (tests/loopnet.py): the timeout, the
pacing against a server that rate-limits, and the retry of a lost request."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from ntpauto.cli.autokey_query import format_outcome
from ntpauto.client import QueryTimeout
from ntpauto.client.oneshot import PACE, RETRY, query_outcome
from ntpauto.config import parse_config
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from tests.autokey_groups import EPOCH, GroupKeys, make_group, password
from tests.loopnet import LoopNetwork

SERVER = ("127.0.0.1", 123)


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> GroupKeys:
    return make_group(tmp_path_factory.mktemp("tc"), "tc", ("alice", "brenda"),
                      trusted=("alice",), servers=("alice",))


def start_server(net: LoopNetwork, keys: GroupKeys, extra: str = "") -> NTPAutokeyService:
    config = parse_config(
        f"interface listen {SERVER[0]}\nlocalclock stratum 1\ncrypto host alice pw "
        f"{password('alice')}\nkeysdir {keys.keysdir('alice')}\n{extra}",
        str(keys.root / "ntp.conf"))
    service = NTPAutokeyService(attrs.evolve(config, port=SERVER[1]), reactor=net,
                                clock=SimulatedClock(net.seconds, epoch=EPOCH))
    service.startService()
    return service


def network() -> LoopNetwork:
    """A loop network whose clock starts at 100 s."""
    net = LoopNetwork()
    net.advance(100.0)
    return net


def ask(net: LoopNetwork, keys: GroupKeys, timeout: float) -> list[Any]:
    """Query the server at :data:`SERVER` as brenda; the box the result lands in."""
    from ntpauto.client import AutokeyKeys

    mine = AutokeyKeys(keys.keysdir("brenda"), host="brenda", password=password("brenda"))
    box: list[Any] = []
    query_outcome(net, *SERVER, autokey=mine, timeout=timeout,
                  clock=SimulatedClock(net.seconds, epoch=EPOCH)).addBoth(box.append)
    return box


def test_timeout_on_the_clock(tc: GroupKeys) -> None:
    """Nothing answers: QueryTimeout exactly when the timeout has passed on the reactor's
    clock, after the request was sent again at RETRY, 2 RETRY, ... seconds."""
    net = network()
    silent = _Silent()
    net.listenUDP(SERVER[1], silent, interface=SERVER[0])
    box = ask(net, tc, timeout=10.0)
    net.pump(10.0 - 1e-6)
    assert box == []
    net.pump(1e-6)
    [failure] = box
    error = failure.value
    assert isinstance(error, QueryTimeout)
    assert (error.seconds, error.stage) == (10.0, "ASSOC")
    assert error.message == "no answer within 10 s (no server there, or it ignores this " \
        "address)"
    assert silent.times == pytest.approx([100.0 + net.latency + t * RETRY
                                          for t in (0, 1, 3, 7)])
    assert list(net.ports) == [SERVER]  # the query's port is closed


def test_lost_request_is_sent_again(tc: GroupKeys) -> None:
    """A request lost on the way is sent again after RETRY seconds and the dance goes on."""
    net = network()
    start_server(net, tc)
    lost = []

    def lose_first(data: bytes, destination: tuple[str, int]) -> bool:
        """The first datagram to the server is lost."""
        if destination == SERVER and not lost:
            lost.append(data)
            return True
        return False

    net.tamper = lambda data, destination: None if lose_first(data, destination) else data
    box = ask(net, tc, timeout=30.0)
    net.run(lambda: bool(box))
    outcome = box[0]
    assert outcome.sample.autokey.scheme == "tc"
    assert len(lost) == 1 and outcome.requests == 5


def test_paces_a_rate_limiting_server(tc: GroupKeys) -> None:
    """A server that rate-limits (restrict limited: Autokey requests that come sooner than
    its guard time are dropped): the first request after the first answer goes unanswered;
    the query then paces itself PACE seconds apart, completes, and says so."""
    net = network()
    server = start_server(net, tc, "restrict default limited\n")
    started = net.seconds()
    box = ask(net, tc, timeout=300.0)
    net.run(lambda: bool(box), limit=300.0)
    outcome = box[0]
    assert outcome.sample.autokey.scheme == "tc", outcome
    assert outcome.paced == "a request sent at once went unanswered"
    assert server.engine.counters["autokey_limited"] >= 1
    assert net.seconds() - started >= 2 * PACE
    lines = format_outcome(outcome).splitlines()
    assert lines[-1] == "paced       a request sent at once went unanswered: requests spaced " \
        "out (the server may rate-limit)"
    assert lines[-2].startswith(f"exchange    {outcome.requests} requests, ")


class _Silent:
    """A protocol that reads and never answers."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.times.append(self.transport.network.seconds())
