"""The batched server path: the busy server's common replies answered in C, many datagrams
per system call.

Python's two socket calls per datagram cost a server more than deciding its reply does
(docs/scaling.md).  :mod:`ntpauto._batch` (C, built where a compiler is at hand) reads what
the socket holds with ``recvmmsg``, answers what :meth:`Server.answer
<ntpauto.server.Server.answer>` answers without a decision of its own, sends those replies
with ``sendmmsg``, and gives back every other datagram, unchanged and in order, to the
Python path (:meth:`NTPDatagramProtocol.read_datagrams
<ntpauto.protocol.NTPDatagramProtocol.read_datagrams>`), which decides as it always does.

The core has no state or rule of its own: :class:`BatchPath` gives it, before each read, the
Python server's own state, which it applies as the Python server does, and whatever it was
not given goes to Python:

* the reply header (leap, stratum, the system octets) and the engine time it holds for:
  :meth:`Server.header <ntpauto.server.Server.header>`'s cache, as the Python server made it;
  outside that time, and before any header was made, every request goes to Python;
* the trusted symmetric keys (MD5 and SHA1; a trusted key of another type, AES-CMAC, keeps
  its requests in Python) from :meth:`KeyStore.trusted_secrets
  <ntpauto.auth.keys.KeyStore.trusted_secrets>`;
* the restrict list as it bears on serving (:meth:`RestrictList.rules
  <ntpauto.ntp.restrict.RestrictList.rules>`, each rule's flags through
  :func:`source_flags`), which the core applies as :meth:`RestrictList.flags_for
  <ntpauto.ntp.restrict.RestrictList.flags_for>` does: ``notrust``, ``noserve`` and
  ``ignore`` sources stay in Python; ``limited`` ones are checked against the engine's rate
  limiter itself, whose table is in C (:class:`~ntpauto.ntp.restrict.RateLimiter`), so a
  source has one bucket whichever path answers it, and get the RATE kiss (``kod``) or
  nothing as from Python;
* for Autokey session keys, each client's cookie and echo key as the Python server made them
  (:meth:`SessionKeys.cached_pair <ntpauto.autokey.serving.SessionKeys.cached_pair>`) for
  the address the client asked, valid for the server seed's generation and interval; an
  unsynchronised server's requests, and any request with extension fields, stay in Python.

On a wildcard socket the core reads each datagram's destination and replies from it, as
:class:`~ntpauto.udpsocket.Destinations` does for the Python path; the datagrams it hands
back carry their ancillary data for Python to read the same way.

The replies are the Python server's byte for byte (``tests/test_batch.py`` compares them
under a fixed clock); the transmit timestamp is read once per 8 replies, after every
request of the batch was checked, just before their MACs and their send.  Receive timestamps
are the kernel's (``SO_TIMESTAMPNS``), for the core's replies and for the datagrams it hands
back (:class:`Datagrams`), and a read that finds less than a full batch naps once
(:data:`NAP`) before it reads again.  Set
``NTPAUTO_PYTHON_ONLY=1`` in the environment to answer everything in Python.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from twisted.logger import Logger

from ntpauto.auth.autokey import address_octets
from ntpauto.ntp.restrict import SERVING_FLAGS
from ntpauto.udpsocket import Destinations
from ntpauto.wire.packet import MODE_CLIENT

try:
    from ntpauto import _batch
except ImportError:  # not built: no C compiler, or not Linux
    _batch = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "BATCH", "DISABLE_VARIABLE", "BatchPath", "Datagrams"]

AVAILABLE = _batch is not None
"""The C core was built and imports."""
BATCH = _batch.BATCH if _batch is not None else 0
"""Datagrams per ``recvmmsg``."""
DISABLE_VARIABLE = "NTPAUTO_PYTHON_ONLY"
"""Set (to anything but ``0`` or empty) in the environment, every datagram is read and
answered in Python."""

log = Logger()
_told = False
"""Whether the log already says why requests are answered in Python."""
NAP = 200e-6
"""Seconds a read that found less than a full batch waits, once, before it reads again: a
busy server's next read then finds a batch where it would have found a few datagrams, and it
wakes far less often per datagram (two processes on two cores shared with the load
generator: 3.0 µs of CPU a reply instead of 3.9, docs/scaling.md).  The receive timestamps
are the kernel's, so the wait costs a request no accuracy (its reply's transmit timestamp is
read when it is sent; a client takes the server's hold time out of the delay), and a server
with little to do pays one short sleep per read."""
NAP_BELOW = BATCH
"""Datagrams under which a read naps (:data:`NAP`)."""
_DIGESTS = {"md5": _batch.MD5, "sha1": _batch.SHA1} if _batch is not None else {}
_SESSION_SIZES = (68, 72)


COUNTERS = ("received", "served", "badauth", "limited", "kod_withheld", "kodsent")
"""The engine counters of what the core decided, in the order :meth:`Core.serve` counts."""
_REFUSING = SERVING_FLAGS - {"limited"}
"""The serving flags that keep a source from the core (``limited`` it applies itself)."""


def source_flags(flags: frozenset[str]) -> int:
    """How the core may serve a source with restrict ``flags``: 0 (not at all: ``ignore``,
    ``noserve``, ``notrust`` keep it in Python), else SERVE with LIMITED (the engine's rate
    limiter, which the core shares) and KOD (the RATE kiss) as the flags say."""
    if not flags.isdisjoint(_REFUSING):
        return 0
    return _batch.SERVE | (_batch.LIMITED if "limited" in flags else 0) \
        | (_batch.KOD if "kod" in flags else 0)


class Datagrams:
    """``recvfrom`` and ``recvmsg`` over datagrams already read, ``(data, address)`` or
    ``(data, address, receive timestamp, ancillary data)``, then nothing left (EAGAIN);
    :meth:`stamp` is the receive timestamp of the datagram returned last (None: none was
    given)."""

    __slots__ = ("_items", "_rx")

    def __init__(self, items: list[tuple[Any, ...]]) -> None:
        self._items = iter(items)
        self._rx: int | None = None

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        for item in self._items:  # datagramReceived's path: no call more than it needs
            self._rx = item[2] if len(item) > 2 else None
            return item[0], item[1]
        raise BlockingIOError(errno.EAGAIN, "no datagram left")

    def recvmsg(self, size: int, ancsize: int = 0) -> tuple[bytes, list[Any], int, Any]:
        for item in self._items:
            self._rx = item[2] if len(item) > 2 else None
            return item[0], item[3] if len(item) > 3 else [], 0, item[1]
        raise BlockingIOError(errno.EAGAIN, "no datagram left")

    def stamp(self) -> int | None:
        return self._rx


class _QueuedDestinations:
    """A wildcard socket's :class:`~ntpauto.udpsocket.Destinations` reading from datagrams
    already read (their ancillary data says each one's destination, as the socket's
    ``recvmsg`` would have)."""

    def __init__(self, destinations: Destinations, queued: Datagrams) -> None:
        self.recvmsg = queued.recvmsg
        self.size = destinations.size
        self.cached = destinations.cached
        self.read = destinations.read


def enabled() -> bool:
    """The C core is built and not switched off (:data:`DISABLE_VARIABLE`)."""
    return AVAILABLE and os.environ.get(DISABLE_VARIABLE, "") in ("", "0")


class BatchPath:
    """One socket's C core, kept in step with its engine's server (see the module
    docstring); :meth:`read` reads the socket."""

    def __init__(self, protocol: Any, size: int, fd: int | None = None,
                 destinations: Destinations | None = None) -> None:
        self.protocol = protocol
        self.destinations = destinations
        """A wildcard socket's (each datagram's destination is read from the kernel)."""
        self.engine = protocol.engine
        self.core = _batch.Core(size, nap=NAP, nap_below=NAP_BELOW)
        self.size = size
        self.kernel_stamps = fd is not None and self.core.use_kernel_stamps(fd)
        """The kernel stamps each datagram's arrival (``SO_TIMESTAMPNS``)."""
        self._header: Any = self
        self._keys: Any = self
        self._restrict: Any = self
        self._limiter: Any = self
        self._sessions: Any = self
        self._generation: int | None = None
        self._server_address = self.engine.server.server_address(protocol._local_address)

    @classmethod
    def for_protocol(cls, protocol: Any, size: int, reactor: Any, fd: int | None = None,
                     destinations: Destinations | None = None) -> BatchPath | None:
        """A path for ``protocol``'s socket (``destinations``: a wildcard one's), or None
        where the core cannot answer for it: not built or switched off, an engine without
        the server's first stage, or a clock other than the host's (``time.time``, which
        the core reads) for the protocol's stamps, the engine's or the reactor's time."""
        global _told
        if not enabled():
            if not _told:
                _told = True
                log.info("Every request is answered in Python: {why} (docs/scaling.md)",
                         why="ntpauto._batch is not built" if not AVAILABLE
                         else f"{DISABLE_VARIABLE} is set")
            return None
        engine = protocol.engine
        clocks = (protocol.clock.now, getattr(getattr(engine, "clock", None), "now", None),
                  getattr(reactor, "seconds", None))
        if getattr(protocol, "_answer_fast", None) is None \
                or getattr(engine, "server", None) is None \
                or any(clock is not time.time for clock in clocks):
            return None
        path = cls(protocol, size, fd, destinations)
        local = protocol._local_address or (path._server_address, 0)
        log.info("UDP {host} port {port}: common requests answered in batches "
                 "(ntpauto._batch)", host=local[0], port=local[1])
        return path

    def read(self, fd: int, limit: int) -> None:
        """Read the socket ``fd`` until it is empty or ``limit`` octets were read: the core
        answers what it can, the protocol the rest."""
        self.sync()
        leftovers, counts, errors = self.core.serve(fd, limit)
        if counts[0]:
            counters = self.engine.counters
            for name, count in zip(COUNTERS, counts):
                if count:
                    counters[name] += count
        if errors:
            for number, address in errors:
                self.protocol._send_failed(OSError(number, os.strerror(number)), address)
        if leftovers:
            queued = Datagrams(leftovers)
            wildcard = None if self.destinations is None \
                else _QueuedDestinations(self.destinations, queued)
            self.protocol.read_datagrams(queued.recvfrom, self.size, limit, wildcard,
                                         stamp=queued.stamp)
            self.learn(leftovers)

    def sync(self) -> None:
        """Tell the core what changed in the server since the last read."""
        engine = self.engine
        core = self.core
        header = engine.server.cached_header
        if header is not self._header:
            self._header = header
            if header is None:
                core.clear_header()
            else:
                core.set_header(header[0], header[1], header[2], header[3], header[4])
        if engine.keys is not self._keys:
            self._keys = engine.keys
            core.set_keys([(keyid, _DIGESTS.get(algorithm, 0), secret)
                           for keyid, algorithm, secret in engine.keys.trusted_secrets()])
        if engine.restrict is not self._restrict or engine.limiter is not self._limiter:
            self._restrict, self._limiter = engine.restrict, engine.limiter
            default4, default6, rules = engine.restrict.rules()
            core.set_rules(source_flags(default4), source_flags(default6),
                           [(network, prefix, source_flags(flags))
                            for network, prefix, flags in rules],
                           getattr(engine.limiter, "native", None))
        sessions = engine.session_keys
        if sessions is not self._sessions:
            self._sessions = sessions
            self._generation = None
            kind = _DIGESTS.get(sessions.digest, 0) if sessions is not None else 0
            core.set_autokey(kind, address_octets(self._server_address) if kind else b"")
        if sessions is not None and sessions.seed.generation != self._generation:
            self._generation = sessions.seed.generation
            core.set_generation(self._generation)

    def learn(self, datagrams: list[tuple[Any, ...]]) -> None:
        """What the Python server decided about client requests it has just answered: the
        Autokey clients' cookies, made for session-key requests."""
        sessions = self.engine.session_keys
        if sessions is None:
            return
        for data, address, *rest in datagrams:
            if len(data) not in _SESSION_SIZES or data[0] & 7 != MODE_CLIENT \
                    or not (data[48] or data[49]):
                continue
            server = self._server_address
            if self.destinations is not None and len(rest) > 1:
                destination = self.destinations.read(rest[1])
                if destination is None:
                    continue
                server = destination[0][0]
            pair = sessions.cached_pair(address[0], server)
            if pair is not None:
                seed = sessions.seed
                self.core.learn_pair(address_octets(address[0]), address_octets(server),
                                     pair[3], pair[4], pair[2], seed.valid_from,
                                     seed.valid_until)
