"""The identity worker process, seen from the reactor (:mod:`ntpauto.autokey.offload` says why
it exists).

:class:`IdentityWorker` runs ``python -m ntpauto.autokey.worker`` with
``reactor.spawnProcess``, gives it the host's identity server schemes over its standard
input (never on a command line or in the environment), writes one frame per job and calls
each job's callback with the result frame that comes back.  When the child dies, the jobs
it held are reported ``LOST`` and a new child is started after ``restart_delay`` seconds;
while none runs, :meth:`IdentityWorker.submit` returns False and the caller answers in
process.  Lines the child writes to standard error are logged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from ntpauto.autokey.offload import (
    LOST,
    FrameError,
    FrameReader,
    IdentityJob,
    decode_result,
    encode_init,
    encode_job,
)
from ntpauto.children import end_child, kill_child

__all__ = ["IdentityWorker", "ResultCallback"]

ResultCallback = Callable[[int, int, float, bytes], None]
"""``done(job_id, status, seconds, payload)``."""

_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])


class IdentityWorker(ProcessProtocol):
    """One child process answering identity challenges; see the module docstring."""

    log = Logger()

    def __init__(self, schemes: dict[int, Any], *, reactor: Any = None,
                 argv: list[str] | None = None, restart_delay: float = 1.0) -> None:
        self.schemes = schemes
        self._reactor = reactor
        self._argv = argv or [sys.executable, "-m", "ntpauto.autokey.worker"]
        self.restart_delay = restart_delay
        self.running = False
        """A child is up and has been given the schemes."""
        self.pid: int | None = None
        self._reader = FrameReader()
        self._waiting: dict[int, ResultCallback] = {}
        self._stopping = False
        self._restart: Any = None
        self._ended: list[defer.Deferred[None]] = []
        self._errors = b""

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child (it is restarted whenever it ends, until :meth:`stop`)."""
        self._stopping = False
        self._spawn()

    def _spawn(self) -> None:
        self._restart = None
        env = dict(os.environ)
        # The child imports ntpauto from wherever this process did (a checkout or site).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self._get_reactor().spawnProcess(self, self._argv[0], self._argv, env=env,
                                             childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as exc:
            self.log.error("cannot start the identity worker: {error}", error=exc)
            self._schedule_restart()

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)
        self.transport.write(encode_init(self.schemes))
        self.running = True
        self.log.info("identity worker started (pid {pid}) for message codes {codes}",
                      pid=self.pid, codes=sorted(self.schemes))

    def stop(self) -> defer.Deferred[None]:
        """Stop the child (end of its input; killed if still there after 5 s); fires when
        it has ended."""
        self._stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        if self.transport is None or self.pid is None and not self.running:
            return defer.succeed(None)
        return end_child(self.transport, self._get_reactor(), self._ended, 5.0)

    def _kill(self) -> None:
        kill_child(self.transport)

    def processEnded(self, reason: Any) -> None:
        self.running = False
        self.pid = None
        self._reader = FrameReader()
        waiting, self._waiting = self._waiting, {}
        for job_id, done in waiting.items():
            self._call(done, job_id, LOST, 0.0, b"")
        ended, self._ended = self._ended, []
        for deferred in ended:
            deferred.callback(None)
        if not self._stopping:
            self.log.warn("identity worker ended ({reason}); restarting in {delay} s",
                          reason=reason.getErrorMessage(), delay=self.restart_delay)
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        if not self._stopping:
            self._restart = self._get_reactor().callLater(self.restart_delay, self._spawn)

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, job: IdentityJob, done: ResultCallback) -> bool:
        """Send ``job``; ``done`` is called with its result (``LOST`` if the child dies
        first).  False when no child is running: the caller answers the job itself."""
        if not self.running or job.code not in self.schemes:
            return False
        self._waiting[job.job_id] = done
        self.transport.write(encode_job(job.job_id, job.code, job.challenge))
        return True

    def outReceived(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FrameError as exc:
            self.log.error("identity worker sent a broken frame ({error}); restarting it",
                           error=exc)
            self._kill()
            return
        for frame in frames:
            try:
                job_id, status, seconds, payload = decode_result(frame)
            except FrameError as exc:
                self.log.error("identity worker sent a broken result ({error})", error=exc)
                continue
            done = self._waiting.pop(job_id, None)
            if done is not None:
                self._call(done, job_id, status, seconds, payload)

    def errReceived(self, data: bytes) -> None:
        self._errors += data
        *lines, self._errors = self._errors.split(b"\n")
        for line in lines:
            if line.strip():
                self.log.warn("{line}", line=line.decode("utf-8", "replace"))

    def _call(self, done: ResultCallback, job_id: int, status: int, seconds: float,
              payload: bytes) -> None:
        with self.log.failuresHandled("identity result callback failed"):
            done(job_id, status, seconds, payload)
