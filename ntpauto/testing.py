"""A simulated network of ntpauto engines, for ntpauto's tests and for yours.

Every host runs a real :class:`ntpauto.engine.Engine` with its own
:class:`~ntpauto.ntp.clocks.SimulatedClock` (offset and frequency error against true time).
Datagrams travel with configurable latency, jitter, loss and reordering; everything is
driven by one ``twisted.internet.task.Clock`` and one seeded random generator, so a run is
deterministic and takes no wall time::

    net = SimulatedNetwork(seed=1, latency=0.01, jitter=0.005)
    server = net.add_host("10.0.0.1", "localclock stratum 1\\n")
    client = net.add_host("10.0.0.2", "server 10.0.0.1 iburst\\n", offset=0.25)
    net.run(3600)
    assert abs(client.engine.sys.offset + 0.25) < 0.001

A broadcast address (``x.y.z.255``) delivers to every other host in that /24.  Several
hosts may share one address under names of their own, behind a balancer
(:meth:`SimulatedNetwork.balance`) that hands each datagram for the address to one of them,
as a load balancer or anycast does for a farm of servers (docs/scaling.md).
``add_interceptor`` lets a test see, drop or rewrite datagrams in flight (a man in the
middle).  :class:`Adversary` (:mod:`ntpauto.adversary`, docs/adversary.md) forges Autokey
packets against one host of such a network and checks that it keeps its invariants.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task

from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.config import Config, parse_config
from ntpauto.engine import Datagram, Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
from ntpauto.nts.cookies import CookieKeys
from ntpauto.nts.glue import KeRequest
from ntpauto.nts.records import MAX_COOKIES, KeResponse
from ntpauto.nts.serving import NtsServer
from ntpauto.wire.timestamps import unix_to_ntp

NTP_PORT = 123

Interceptor = Callable[[bytes, tuple[str, int], tuple[str, int]], bytes | None]
"""``(data, source, destination) -> data to deliver, or None to drop it``."""


@dataclass
class SimulatedHost:
    """One host on the simulated network."""

    address: str
    engine: Engine
    clock: SimulatedClock
    port: int = NTP_PORT
    received: int = 0
    sent: int = 0
    offload_delay: float = 0.0
    """Seconds an offloaded identity response takes (``add_host(offload=...)``)."""
    name: str = ""
    """The host's name on the network (its address unless it shares one)."""
    _timer: object = field(default=None, repr=False)

    @property
    def true_offset(self) -> float:
        """How far this host's clock is from true time (positive: ahead)."""
        return self.clock.error()


@dataclass
class Delivery:
    """One datagram as the network carried it (the capture log)."""

    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    data: bytes
    dropped: bool = False
    arrival: float | None = None
    """When it reached its destination (reactor seconds); None for a dropped datagram."""


class SimulatedNetwork:
    """Engines wired together in memory, deterministic by ``seed``."""

    def __init__(self, *, seed: int = 0, latency: float = 0.005, jitter: float = 0.0,
                 loss: float = 0.0, reorder: float = 0.0, clock: task.Clock | None = None,
                 epoch: float = 1_795_000_000.0) -> None:
        self.reactor = clock if clock is not None else task.Clock()
        self.random = random.Random(seed)
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.reorder = reorder
        self.epoch = epoch
        self.hosts: dict[str, SimulatedHost] = {}
        self.capture: list[Delivery] = []
        self.keep_capture = True
        self._interceptors: list[Interceptor] = []
        self._links: dict[frozenset[str], tuple[float, float]] = {}
        self._balancers: dict[str, tuple[list[str], list[int]]] = {}
        self.ke_delay = 0.05
        """Seconds an NTS-KE exchange takes (TCP and TLS round trips)."""
        self.ke_reachable: Callable[[str, str], bool] = lambda client, server: True
        """Whether an NTS-KE exchange between two hosts gets through (a test may cut it)."""

    # ------------------------------------------------------------------ building

    def add_host(self, address: str, config: Config | str, *, offset: float = 0.0,
                 ppm: float = 0.0, keys: str | KeyStore | None = None,
                 trusted: tuple[int, ...] | None = None, port: int = NTP_PORT,
                 precision: int = -20, autokey: Any = None,
                 offload: float | None = None, nts_server: bool = False,
                 name: str | None = None) -> SimulatedHost:
        """Add a host running ``config`` (a Config or ntp.conf text) with a clock that is
        ``offset`` seconds and ``ppm`` parts per million off true time.  ``keys`` is ntp.keys
        text or a KeyStore; with text, ``trusted`` defaults to every key in it.  ``autokey``
        gives the host Autokey credentials (a HostCredentials or an AutokeyNode).
        ``offload`` (seconds) answers the host's identity challenges as the daemon's worker
        process does (:mod:`ntpauto.autokey.offload`), each result arriving that long
        after the request.  ``nts_server`` makes it an NTS server (cookies under a secret
        drawn from the network's seed); its ``server HOST nts`` associations get their
        NTS-KE exchanges from the network (:meth:`_key_exchange`).  ``name`` (default the
        address) names a host that shares its address with others (:meth:`balance`);
        :attr:`hosts` is by name."""
        name = name or address
        if name in self.hosts:
            raise ValueError(f"a host named {name} is on the network already")
        if isinstance(config, str):
            config = parse_config(config, f"<{address}>")
        clock = SimulatedClock(self.reactor.seconds, offset=offset, ppm=ppm,
                               epoch=self.epoch, precision=precision)
        if isinstance(keys, str):
            parsed = parse_keys(keys, f"<{address} keys>")
            keys = KeyStore(parsed, trusted if trusted is not None else parsed.keys())
        if autokey is not None and not isinstance(autokey, AutokeyNode):
            autokey = AutokeyNode(autokey, automax=config.automax or 12)
        engine = Engine(config, clock, keys=keys, rng=random.Random(self.random.random()),
                        autokey=autokey, local_address=address)
        if nts_server:
            secret = self.random.getrandbits(256).to_bytes(32, "big")
            engine.nts_server = NtsServer(CookieKeys(secret), clock.now)
        engine.nts.starter = lambda request: self.reactor.callLater(
            self.ke_delay, self._key_exchange, name, request)
        host = SimulatedHost(address, engine, clock, port, name=name)
        if offload is not None:
            engine.enable_offload()
            host.offload_delay = offload
        self.hosts[name] = host
        return host

    def balance(self, address: str, names: list[str]) -> None:
        """Hand each datagram for ``address`` to the next of the hosts ``names`` in turn (a
        load balancer in front of a farm; they answer from ``address``)."""
        if not names or any(self.hosts[n].address != address for n in names):
            raise ValueError(f"the hosts behind {address} must have that address")
        self._balancers[address] = (list(names), [0])

    def set_link(self, a: str, b: str, latency: float, jitter: float = 0.0) -> None:
        """Give the path between two hosts its own latency and jitter."""
        self._links[frozenset((a, b))] = (latency, jitter)

    def add_interceptor(self, interceptor: Interceptor) -> None:
        """See every datagram before delivery; return new bytes or None to drop it."""
        self._interceptors.append(interceptor)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Start every host's engine (idempotent)."""
        now = self.reactor.seconds()
        for host in self.hosts.values():
            self._send(host, host.engine.start(now))

    def run(self, seconds: float) -> None:
        """Advance simulated time by ``seconds``, delivering packets and firing timers."""
        self.start()
        end = self.reactor.seconds() + seconds
        while True:
            calls = self.reactor.getDelayedCalls()
            upcoming = min((c.getTime() for c in calls), default=None)
            if upcoming is None or upcoming > end:
                break
            self.reactor.advance(max(upcoming - self.reactor.seconds(), 0.0))
        self.reactor.advance(max(end - self.reactor.seconds(), 0.0))

    def inject(self, data: bytes, source: tuple[str, int], destination: tuple[str, int],
               delay: float | None = None) -> None:
        """Put a datagram on the wire as if ``source`` had sent it (attacks, replays)."""
        self._carry(data, source, destination, delay)

    def deliver_now(self, data: bytes, source: tuple[str, int], host: str,
                    local: tuple[str, int] | None = None) -> list[Datagram]:
        """Hand a datagram to ``host`` (its name) at once, as if ``source`` had sent it to
        ``local`` (default: the host's own address), bypassing latency, loss, interceptors
        and the capture, and return what the host sent in answer instead of carrying it: a probe
        whose consequences a test inspects (:mod:`ntpauto.adversary`)."""
        target = self.hosts[host]
        target.received += 1
        rx = unix_to_ntp(target.clock.now())
        out = target.engine.receive(data, source, rx, self.reactor.seconds(),
                                    local=local or (target.address, target.port))
        self._send(target, [])  # timers re-armed, identity jobs handed on
        return out

    # ------------------------------------------------------------------ internals

    def _schedule(self, host: SimulatedHost) -> None:
        deadline = host.engine.next_wakeup()
        timer = host._timer
        if timer is not None and timer.active():
            if deadline is not None and timer.getTime() == deadline:
                return
            timer.cancel()
        host._timer = None
        if deadline is not None:
            delay = max(deadline - self.reactor.seconds(), 0.0)
            host._timer = self.reactor.callLater(delay, self._fire, host)

    def _fire(self, host: SimulatedHost) -> None:
        host._timer = None
        if self.hosts.get(host.name) is not host:
            return
        self._send(host, host.engine.fire_timers(self.reactor.seconds()))

    def _send(self, host: SimulatedHost, datagrams: list[Datagram]) -> None:
        for datagram in datagrams:
            host.sent += 1
            self._carry(datagram.data, (host.address, host.port), datagram.address, None)
        offload = host.engine.offload
        if offload is not None and offload.outbox:
            for job in offload.take():  # as the worker would, offload_delay later
                self.reactor.callLater(host.offload_delay, self._finish_job, host,
                                       job.job_id, host.engine.compute_identity(job))
        self._schedule(host)

    def _finish_job(self, host: SimulatedHost, job_id: int,
                    result: tuple[int, float, bytes]) -> None:
        if self.hosts.get(host.name) is not host:
            return
        self._send(host, host.engine.finish_identity(job_id, *result,
                                                     self.reactor.seconds()))

    def _key_exchange(self, name: str, request: KeRequest) -> None:
        """An NTS-KE exchange of the host ``name`` with the host named by ``request``, as
        its TLS connection would end: fresh keys (drawn from the network's seed) and eight
        cookies of the server's, or a failure when that host serves no NTS.  The TLS side
        is :mod:`ntpauto.nts.ke_server`'s and :mod:`ntpauto.nts.ke_client`'s, tested on
        real connections."""
        host = self.hosts.get(name)
        if host is None:
            return
        now = self.reactor.seconds()
        server = self.hosts.get(request.host)
        nts = server.engine.nts_server if server is not None else None
        if nts is None or not self.ke_reachable(host.address, request.host):
            host.engine.nts.failed(request.associd, "connection refused", now)
        else:
            keys = SessionKeys(AEAD_AES_SIV_CMAC_256,
                               self.random.getrandbits(256).to_bytes(32, "big"),
                               self.random.getrandbits(256).to_bytes(32, "big"))
            cookies = tuple(nts.cookie_keys.seal(keys, server.clock.now())
                            for _ in range(MAX_COOKIES))
            host.engine.nts.keyed(request.associd, KeResponse(keys.aead, cookies), keys,
                                  None, now)
        self._send(host, [])

    def _destinations(self, source: str, address: str) -> list[SimulatedHost]:
        balancer = self._balancers.get(address)
        if balancer is not None:
            names, turn = balancer
            turn[0] += 1
            return [self.hosts[names[(turn[0] - 1) % len(names)]]]
        if address in self.hosts:
            return [self.hosts[address]]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return []
        if ip.version == 4 and ip.packed[3] == 255:
            net = ipaddress.ip_network(f"{address}/24", strict=False)
            return [h for h in self.hosts.values()
                    if h.address != source and ipaddress.ip_address(h.address) in net]
        return []

    def _carry(self, data: bytes, source: tuple[str, int], destination: tuple[str, int],
               delay: float | None) -> None:
        for target in self._destinations(source[0], destination[0]):
            payload: bytes | None = data
            for interceptor in self._interceptors:
                payload = interceptor(payload, source, destination)
                if payload is None:
                    break
            lost = payload is None or self.random.random() < self.loss
            wait = 0.0
            if not lost:
                latency, jitter = self._links.get(frozenset((source[0], target.address)),
                                                  (self.latency, self.jitter))
                wait = delay if delay is not None else latency + self.random.uniform(0, jitter)
                if self.reorder and self.random.random() < self.reorder:
                    wait += latency + jitter
            if self.keep_capture:
                now = self.reactor.seconds()
                self.capture.append(Delivery(now, source, destination, data, lost,
                                             None if lost else now + wait))
            if lost:
                continue
            self.reactor.callLater(wait, self._deliver, target, payload, source,
                                   destination)

    def _deliver(self, host: SimulatedHost, data: bytes, source: tuple[str, int],
                 destination: tuple[str, int]) -> None:
        if self.hosts.get(host.name) is not host:
            return
        host.received += 1
        rx = unix_to_ntp(host.clock.now())
        out = host.engine.receive(data, source, rx, self.reactor.seconds(),
                                  local=(destination[0], host.port))
        self._send(host, out)


# The adversary (ntpauto.adversary) runs on this module's networks; it is part of the kit.
from ntpauto.adversary import Adversary, Report, Target  # noqa: E402

__all__ = ["NTP_PORT", "Adversary", "Delivery", "Interceptor", "Report", "SimulatedHost",
           "SimulatedNetwork", "Target"]
