"""A server worker process: answers client requests on sockets its first process bound.

Started by :class:`ntpauto.workerpool.ServerWorkers` as ``python -m ntpauto.serveworker
FD...`` with one inherited UDP socket per listen address (the file descriptors on its
command line, in the order of the first process's interfaces), it reads its
:class:`~ntpauto.workerstate.WorkerInit` from standard input, builds its serving engine
(:func:`~ntpauto.workerstate.serving_engine`) and reads its sockets with the daemon's own
read loop (:class:`~ntpauto.protocol.NTPPort`).  Further frames on standard input are the
system variables the first process publishes; once a second it writes what it counted on
standard output.  End of input (the first process stopping, or gone) ends it; SIGINT is
ignored (the first process decides when it stops).  Log events of warning level and above
go to standard error, one line each, which the first process logs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.internet import stdio, task
from twisted.internet.protocol import Protocol
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from ntpauto.autokey.offload import MAX_FRAME, FrameError, FrameReader
from ntpauto.ntp.clocks import SystemClock
from ntpauto.protocol import NTPDatagramProtocol, NTPPort
from ntpauto.workerstate import (
    WorkerInit,
    apply_system_state,
    counter_delta,
    decode_init,
    decode_system,
    encode_counters,
    serving_engine,
)

__all__ = ["REPORT_INTERVAL", "Worker", "main", "read_init"]

REPORT_INTERVAL = 1.0
"""Seconds between two counter reports."""


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` octets from ``fd`` (blocking); EOFError when it ends first."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("standard input ended before the worker's start")
        data += chunk
    return data


def read_init(fd: int = 0) -> WorkerInit:
    """The first frame on ``fd``, read to its last octet and no further (Twisted reads the
    rest)."""
    size = int.from_bytes(read_exactly(fd, 4), "big")
    if size > MAX_FRAME:
        raise FrameError(f"a frame of {size} octets is over the limit")
    return decode_init(read_exactly(fd, size))


def adopt(fd: int) -> int:
    """The address family of the socket ``fd`` (left open)."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.family
    finally:
        sock.detach()


class Worker(Protocol):
    """The worker's standard input and output, its engine and its ports."""

    def __init__(self, init: WorkerInit, fds: list[int], reactor: Any) -> None:
        self.reactor = reactor
        self.clock = SystemClock()
        self.engine = serving_engine(init, self.clock)
        apply_system_state(self.engine, init.system, reactor.seconds())
        self.ports: list[NTPPort] = []
        scheduler = None
        for fd in fds:
            family = adopt(fd)
            protocol = NTPDatagramProtocol(self.engine, self.clock, reactor,
                                           scheduler=scheduler)
            scheduler = scheduler or protocol
            port = NTPPort._fromListeningDescriptor(reactor, fd, family, protocol, 8192)
            port.startListening()
            self.ports.append(port)
        self._reader = FrameReader()
        self._reported: dict[str, int] = {}
        self._reports = task.LoopingCall(self.report)
        self._reports.clock = reactor

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self._reports.start(REPORT_INTERVAL, now=False)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        try:
            frames = self._reader.feed(data)
            for body in frames:
                apply_system_state(self.engine, decode_system(body), self.reactor.seconds())
        except FrameError as exc:
            print(f"ntpauto server worker: {exc}", file=sys.stderr, flush=True)
            self.transport.loseConnection()

    def report(self) -> None:
        """Write what the engine counted since the last report (nothing when nothing)."""
        delta = counter_delta(self.engine.counters, self._reported)
        if delta:
            self.transport.write(encode_counters(delta))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        if self._reports.running:
            self._reports.stop()
        for port in self.ports:
            port.stopListening()
        if self.reactor.running:
            self.reactor.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fds = [int(arg) for arg in args]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)])],
        redirectStandardIO=False)
    init = read_init()
    from twisted.internet import reactor

    worker = Worker(init, fds, reactor)
    stdio.StandardIO(worker, reactor=reactor)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
