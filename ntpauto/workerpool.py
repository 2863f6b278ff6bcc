"""The server's worker processes, seen from its first process (``workers N``;
:mod:`ntpauto.workerstate` says what they are and what goes between them).

:class:`ServerWorkers` runs ``python -m ntpauto.serveworker FD...`` once per worker with
``reactor.spawnProcess``, passing each the sockets bound for it (one per listen address:
``childFDs``), writes its :class:`~ntpauto.workerstate.WorkerInit` on its standard input,
then the system variables whenever the engine's change (:meth:`ServerWorkers.publish`), and
adds the counters each worker reports to the engine's.  A worker that ends is started again
after ``restart_delay`` seconds (counted: ``worker_restarts``) with the same sockets, so
the kernel's steering does not move a single source meanwhile (requests for it wait in its
socket's buffer); :meth:`ServerWorkers.stop` ends them all (end of input; killed after 5 s)
and fires once they have ended.  The first process keeps its copy of every worker socket
until then.  Lines a worker writes to standard error are logged.
"""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from ntpauto.autokey.offload import FrameError, FrameReader
from ntpauto.children import end_child, kill_child
from ntpauto.workerstate import WorkerInit, decode_counters, encode_init, encode_system

__all__ = ["FIRST_FD", "ServerWorkers", "WorkerProcess"]

FIRST_FD = 3
"""A worker's sockets are its file descriptors 3, 4, ... (after standard I/O)."""
KILL_AFTER = 5.0
"""Seconds a worker has to end after its input closed before it is killed."""
_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])


class WorkerProcess(ProcessProtocol):
    """One worker process (see the module docstring)."""

    log = Logger()

    def __init__(self, pool: ServerWorkers, index: int) -> None:
        self.pool = pool
        self.index = index
        self.pid: int | None = None
        self.running = False
        self.counted: Counter[str] = Counter()
        """What this worker reported (over its restarts)."""
        self._reader = FrameReader()
        self._errors = b""
        self._ended: list[defer.Deferred[None]] = []

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.pid = getattr(self.transport, "pid", None)
        self.running = True
        self._reader, self._errors = FrameReader(), b""
        self.pool.changed()
        self.transport.write(encode_init(self.pool.init_for(self.index)))

    def send(self, data: bytes) -> None:
        if self.running:
            self.transport.write(data)

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        try:
            for body in self._reader.feed(data):
                delta = decode_counters(body)
                self.counted.update(delta)
                self.pool.add_counters(delta)
        except FrameError as exc:
            self.log.error("server worker {index} sent a bad report ({error}); restarting it",
                           index=self.index, error=exc)
            self.kill()

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._errors += data
        *lines, self._errors = self._errors.split(b"\n")
        for line in lines:
            if line.strip():
                self.log.warn("server worker {index}: {line}", index=self.index,
                              line=line.decode("utf-8", "replace"))

    def end(self) -> defer.Deferred[None]:
        """Close its input (it ends itself), kill it if it has not ended after
        :data:`KILL_AFTER` seconds; fires when it has ended."""
        if not self.running:
            return defer.succeed(None)
        return end_child(self.transport, self.pool.reactor, self._ended, KILL_AFTER)

    def kill(self) -> None:
        kill_child(self.transport)

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
        self.running = False
        self.pool.changed()
        ended, self._ended = self._ended, []
        for deferred in ended:
            deferred.callback(None)
        self.pool.ended(self, reason)


class ServerWorkers:
    """The worker processes of one daemon (see the module docstring).

    :param engine: the first process's engine (its counters take the reports).
    :param sockets: per worker, its sockets in listen-address order (worker ``i`` is
        ``sockets[i - 1]``).
    :param init_for: ``init_for(index)``: the :class:`WorkerInit` of worker ``index``.
    :param system: ``system()``: the system variables to publish now.
    """

    log = Logger()

    def __init__(self, engine: Any, sockets: list[list[socket.socket]],
                 init_for: Callable[[int], WorkerInit], system: Callable[[], dict[str, Any]],
                 *, reactor: Any, argv: list[str] | None = None,
                 restart_delay: float = 1.0) -> None:
        self.engine = engine
        self.sockets = sockets
        self.init_for = init_for
        self._system = system
        self.reactor = reactor
        self._argv = argv or [sys.executable, "-m", "ntpauto.serveworker"]
        self.restart_delay = restart_delay
        self.workers: dict[int, WorkerProcess] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False

    @property
    def running(self) -> int:
        """Worker processes up now."""
        return sum(1 for w in self.workers.values() if w.running)

    def start(self) -> None:
        """Start every worker."""
        self._stopping = False
        for index in range(1, len(self.sockets) + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        sockets = self.sockets[index - 1]
        fds = {FIRST_FD + i: sock.fileno() for i, sock in enumerate(sockets)}
        argv = [*self._argv, *(str(fd) for fd in fds)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        worker = self.workers.get(index) or WorkerProcess(self, index)
        self.workers[index] = worker
        try:
            self.reactor.spawnProcess(worker, argv[0], argv, env=env,
                                      childFDs={0: "w", 1: "r", 2: "r", **fds})
        except OSError as exc:
            self.log.error("cannot start server worker {index}: {error}", index=index,
                           error=exc)
            self._schedule(index)
            return
        self.log.info("server worker {index} started (pid {pid})", index=index,
                      pid=worker.pid)

    def changed(self) -> None:
        """A worker started or ended: the engine's ``server_processes`` follows."""
        self.engine.server_processes = 1 + self.running

    def publish(self) -> None:
        """Send every worker the system variables as they are now."""
        data = encode_system(self._system())
        for worker in self.workers.values():
            worker.send(data)

    def add_counters(self, delta: dict[str, int]) -> None:
        """A worker's report: what it counted goes to the engine's counters."""
        counters = self.engine.counters
        for name, value in delta.items():
            counters[name] += value

    def ended(self, worker: WorkerProcess, reason: Any) -> None:
        """``worker`` ended: started again unless stopping."""
        if self._stopping or self.workers.get(worker.index) is not worker:
            return
        self.engine.counters["worker_restarts"] += 1
        self.log.warn("server worker {index} ended ({reason}); restarting it in {delay} s",
                      index=worker.index, reason=reason.getErrorMessage(),
                      delay=self.restart_delay)
        self._schedule(worker.index)

    def _schedule(self, index: int) -> None:
        if not self._stopping:
            self._restarts[index] = self.reactor.callLater(self.restart_delay, self._spawn,
                                                           index)

    def stop(self) -> defer.Deferred[None]:
        """End every worker; fires when all have ended (the sockets are then closed)."""
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ending = [worker.end() for worker in self.workers.values()]
        done = defer.gatherResults(ending, consumeErrors=True)

        def close(_: Any) -> None:
            for group in self.sockets:
                for sock in group:
                    sock.close()

        done.addBoth(close)
        return done
