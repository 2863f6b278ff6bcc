"""Shared rigs for the security cases (``tests/security/CASES.md``) and the storms.

* :func:`server_engine` / :func:`send`: a started engine driven directly with datagrams.
* :class:`ClientRig`: an engine with one client association to :data:`SERVER`; ``poll()``
  makes it transmit, ``reply(...)`` builds a server reply to that transmission (any header
  field overridden) and ``deliver`` hands bytes to :meth:`Engine.receive`.
* :class:`AutokeyRig`: brenda's Autokey client association with alice (the reference's
  tc-rsa-md5 keys) on the simulated network, stopped at a chosen point of the dance;
  ``poll()`` lets brenda transmit (nothing is delivered), ``reply(fields)`` MACs a reply
  to that transmission as a server would (cookie 0 with fields) and delivers it.
* :func:`counters_delta`: what changed in ``engine.counters``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ntpauto.auth.autokey import mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.fields import Field, decode
from ntpauto.autokey.host import load_host
from ntpauto.config import parse_config
from ntpauto.engine import Datagram, Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

T0 = 1000.0
EPOCH = 1_795_460_000.0
"""Inside the vectors' certificate validity (2026-11-23)."""
NTP_EPOCH = int(EPOCH) + 2_208_988_800
SERVER = "10.0.0.1"
CLIENT = "10.0.0.2"
OTHER = "192.0.2.66"
ALICE, BRENDA = SERVER, CLIENT
KEYS = "1 MD5 sharedsecret\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n"
PASSWORDS = {"alice": "alicepw", "brenda": "brendapw", "carol": "carolpw"}


def counters_delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """Counters that moved (``received`` and the per-mode ``rx_*`` tallies left out)."""
    out = {}
    for key in set(before) | set(after):
        if key == "received" or key.startswith("rx_"):
            continue
        if after[key] != before[key]:
            out[key] = after[key] - before[key]
    return out


def keystore(text: str = KEYS) -> KeyStore:
    parsed = parse_keys(text)
    return KeyStore(parsed, parsed.keys())


def server_engine(text: str = "localclock stratum 1\n", keys: str | None = None,
                  autokey: Any = None, local: str | None = None) -> Engine:
    """A started engine whose clock reads true time; a refclock config is synchronised
    after ``start``."""
    clock = SimulatedClock(lambda: T0, epoch=EPOCH)
    engine = Engine(parse_config(text), clock, keys=keystore(keys) if keys else None,
                    rng=random.Random(1), autokey=autokey, local_address=local)
    engine.start(T0)
    return engine


def send(engine: Engine, data: bytes, source: tuple[str, int] = (OTHER, 40000),
         now: float = T0) -> tuple[list[Datagram], dict[str, int]]:
    """Deliver ``data``; (replies, counters that moved)."""
    before = Counter(engine.counters)
    rx = unix_to_ntp(engine.clock.now())
    out = engine.receive(data, source, rx, now, local=(SERVER, 123))
    return out, counters_delta(before, engine.counters)


def request(mode: int = MODE_CLIENT, version: int = 4, transmit: int = 0xEEAE_0000_1234_5678,
            poll: int = 6) -> bytes:
    """A client request header."""
    return Header(0, version, mode, 0, poll, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                  transmit).encode()


def header_bytes(*, leap: int = 0, version: int = 4, mode: int = MODE_SERVER) -> bytes:
    """48 octets with the given first octet and otherwise plausible content."""
    return Header(leap, version, mode, 1, 4, -20, 0, 0, b"LOCL", 0, 1, 2, 3).encode()


# ------------------------------------------------------------------ client association


class ClientRig:
    """An unsynchronised engine with ``server 10.0.0.1`` (optionally keyed), driven by hand."""

    def __init__(self, options: str = "minpoll 4 maxpoll 10", keys: str | None = None,
                 extra: str = "") -> None:
        self.now = T0
        self.clock = SimulatedClock(lambda: self.now, epoch=EPOCH)
        text = f"server {SERVER} {options}\n{extra}"
        self.engine = Engine(parse_config(text), self.clock,
                             keys=keystore(keys) if keys else None, rng=random.Random(2))
        self.engine.start(self.now)
        [self.assoc] = self.engine.associations.values()
        self.transmit_seq = 0

    def poll(self) -> bytes:
        """Advance to the association's next poll and return what it sends."""
        self.now = max(self.now, self.assoc.nextdate)
        out = self.engine.fire_timers(self.now)
        [datagram] = [d for d in out if d.address[0] == SERVER]
        return datagram.data

    def reply(self, **fields: Any) -> Header:
        """A valid stratum-1 server reply to the last transmission (fields overridden)."""
        self.transmit_seq += 1
        rx_ntp = unix_to_ntp(self.clock.now())
        values = dict(leap=0, version=4, mode=MODE_SERVER, stratum=1, poll=4, precision=-20,
                      root_delay=0, root_dispersion=0, refid=b"LOCL",
                      reference=rx_ntp - (1 << 32), origin=self.assoc.xmt,
                      receive=rx_ntp + 1000, transmit=rx_ntp + 2000 + self.transmit_seq)
        values.update(fields)
        return Header(**values)

    def deliver(self, data: bytes, source: tuple[str, int] = (SERVER, 123)
                ) -> tuple[list[Datagram], dict[str, int]]:
        self.now += 0.01
        before = Counter(self.engine.counters)
        rx = unix_to_ntp(self.clock.now())
        out = self.engine.receive(data, source, rx, self.now, local=(CLIENT, 123))
        return out, counters_delta(before, self.engine.counters)

    def state(self) -> tuple:
        """What a dropped packet must not change."""
        a = self.assoc
        return (a.org, a.rec, a.xmt, a.reach, a.hpoll, a.nextdate, a.offset, a.delay,
                a.stratum, a.leap, a.ppoll)

    def synchronise(self, polls: int = 8) -> None:
        """Answer ``polls`` polls with good replies (the association gets samples)."""
        for _ in range(polls):
            self.poll()
            self.deliver(self.reply().encode())


# ------------------------------------------------------------------ Autokey


def vector_host(vectors: Path, scenario: str, name: str, **kwargs: Any):
    """Credentials of a host of the vectors' keys directories."""
    return load_host(vectors / "keys" / scenario / name, host=name,
                     password=PASSWORDS[name], **kwargs)


class AutokeyRig:
    """brenda (client, ``server 10.0.0.1 autokey``) and alice (stratum 1) with the
    reference's keys; the network runs until ``until(status)`` holds, then stops carrying
    packets: the test speaks for alice through :meth:`reply`."""

    def __init__(self, vectors: Path, until: Callable[[int], bool] | None = None,
                 scenario: str = "tc-rsa-md5", limit: float = 600.0) -> None:
        self.vectors = vectors
        net = self.net = SimulatedNetwork(seed=11, latency=0.01, epoch=EPOCH)
        self.alice = net.add_host(ALICE, "localclock stratum 1\n",
                                  autokey=vector_host(vectors, scenario, "alice"))
        # In PC the client runs on the group's shared files (alice's).
        client = load_host(vectors / "keys" / scenario / "brenda",
                           host="alice" if scenario == "pc" else "brenda",
                           password="alicepw" if scenario == "pc" else "brendapw")
        self.brenda = net.add_host(BRENDA, f"server {ALICE} autokey iburst minpoll 4\n",
                                   autokey=client, offset=0.05)
        self.frozen = False
        net.add_interceptor(lambda data, s, d: None if self.frozen else data)
        net.start()
        [self.assoc] = self.brenda.engine.associations.values()
        if until is not None:
            while not until(self.state.status):
                net.run(0.5)
                if net.reactor.seconds() > limit:
                    raise AssertionError(f"dance never reached the stage: {self.state.flags}")
        self.frozen = True
        self._seq = 0

    @property
    def engine(self) -> Engine:
        return self.brenda.engine

    @property
    def state(self):
        return self.assoc.autokey.state

    @property
    def session(self):
        return self.assoc.autokey

    @property
    def alice_host(self):
        return self.alice.engine.autokey.host

    @property
    def now(self) -> float:
        return self.net.reactor.seconds()

    def crypto_now(self) -> int:
        return unix_to_ntp(self.alice.clock.now()) >> 32

    def poll(self) -> list[Field]:
        """Let brenda transmit once (the packet is captured, not delivered): the request
        fields it carried."""
        engine = self.engine
        target = max(self.assoc.nextdate, self.now)
        self.net.reactor.advance(target - self.now)
        if self.assoc.nextdate <= self.now:  # the timer was not armed: fire by hand
            engine.fire_timers(self.now)
        sent = [d for d in self.net.capture if d.source[0] == BRENDA]
        pkt = parse(sent[-1].data)
        return [decode(f.data) for f in pkt.fields]

    def respond(self, request: Field) -> Field:
        """alice's genuine response to ``request``."""
        response = self.alice.engine.autokey.responder.respond(
            request, packet_mode=MODE_CLIENT, now=self.crypto_now(), client=BRENDA,
            server=ALICE)
        assert response is not None
        return response

    def sign(self, f: Field) -> Field:
        """``f`` signed with alice's key (as her responder signs)."""
        return self.alice_host.sign_field(f)

    def reply_bytes(self, fields: list[Field] | tuple[Field, ...] = (), *,
                    raw_fields: bytes | None = None, keyid: int | None = None,
                    origin: int | None = None, transmit: int | None = None,
                    mac_ok: bool = True) -> bytes:
        """A server reply to brenda's last transmission, MACed as alice would (cookie 0 when
        it carries fields)."""
        self._seq += 1
        now_ntp = unix_to_ntp(self.alice.clock.now())
        header = Header(0, 4, MODE_SERVER, 1, 4, -20, 0, 0, b"LOCL", now_ntp - (1 << 32),
                        self.assoc.xmt if origin is None else origin, now_ntp + 100,
                        transmit if transmit is not None else now_ntp + 200 + self._seq)
        body = raw_fields if raw_fields is not None else b"".join(f.encode() for f in fields)
        data = header.encode() + body
        keyid = self.session.sent_keyid if keyid is None else keyid
        cookie = 0 if body else self.state.cookie
        key = session_key(ALICE, BRENDA, keyid, cookie, self.session.digest)
        tag = mac(key, keyid, data, self.session.digest)
        if not mac_ok:
            tag = tag[:-1] + bytes([tag[-1] ^ 1])
        return data + tag

    def deliver(self, data: bytes, source: tuple[str, int] = (ALICE, 123)
                ) -> tuple[list[Datagram], dict[str, int]]:
        before = Counter(self.engine.counters)
        rx = unix_to_ntp(self.brenda.clock.now())
        out = self.engine.receive(data, source, rx, self.now, local=(BRENDA, 123))
        return out, counters_delta(before, self.engine.counters)

    def reply(self, *fields: Field, **kwargs: Any) -> dict[str, int]:
        """Poll, then deliver a reply carrying ``fields``; the counters that moved."""
        self.poll()
        _, delta = self.deliver(self.reply_bytes(list(fields), **kwargs))
        delta.pop("autokey_nosample", None)  # a reply with fields is never a sample
        return delta
