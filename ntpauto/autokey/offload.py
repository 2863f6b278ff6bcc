"""Identity responses computed away from the reactor (issue 7: private-key work never blocks
the reactor for long).

IFF, GQ and MV responses are modular exponentiations in pure Python: at 2048 bits a GQ
response costs ~30 ms and an MV one ~12 ms even with fixed-base tables
(:mod:`ntpauto.identity.fixedbase`; 45 and 60 ms with plain ``pow``), all of it holding the
GIL.  Computed on the
reactor thread, each one stops the daemon reading datagrams for that long, and the packets
queued meanwhile get receive timestamps that late: an asymmetric error for every client,
and a p99 reply latency of the same size under a flood of challenges (benchmarks/flood.py).
A thread would not help (the GIL); a worker process does.

With an :class:`IdentityOffload` on the engine, the stateless server checks an identity
request as usual (MAC, ``limited``, the amplification limit, the private-key budget), then
queues an :class:`IdentityJob` in :attr:`IdentityOffload.outbox` instead of answering.
The Twisted layer sends the job to the worker (:mod:`ntpauto.identityworker`, which runs
:mod:`ntpauto.autokey.worker`) and hands the result to :meth:`Engine.finish_identity`,
which signs the response, MACs the reply and returns the datagram.  A symmetric peer's
identity request waits in its association for our next packet to the peer (seconds away:
the poll interval); the engine hands it to the worker as it arrives and the result waits
with it (:attr:`IdentityJob.associd`), so that packet carries it at no cost to the reactor
(should the packet go first, it is answered in process, as without a worker).  Jobs are bounded in
number and age: a full table or a lost worker means no reply (the client asks again at its
next poll), never a block.

Sans-I/O: this module holds the job table and the frames the two processes exchange (a
4-octet length, then the frame), nothing more.
"""

from __future__ import annotations

import pickle
import struct
import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

from ntpauto.autokey.fields import Field

__all__ = [
    "DEFAULT_CAPACITY", "DEFAULT_TIMEOUT", "FAILED", "LOST", "MAX_FRAME", "OK", "REFUSED",
    "FrameError", "FrameReader", "IdentityJob", "IdentityOffload", "answer",
    "decode_job", "decode_result", "encode_init", "encode_job", "encode_result", "frame",
    "offloadable_schemes",
]

DEFAULT_CAPACITY = 64
"""Jobs in flight at once; beyond, identity requests get no reply (``autokey_offload_busy``)."""
DEFAULT_TIMEOUT = 10.0
"""Seconds after which a job is forgotten (its client has long asked again)."""
MAX_FRAME = 1 << 24
"""The largest frame either side accepts (the first carries the scheme objects)."""

OK = 0
"""The worker answered: the payload is the response value."""
REFUSED = 1
"""The scheme refused the challenge (ValueError): an error response, as in process."""
FAILED = 2
"""The scheme raised something else: an error response, and the worker logs it."""
LOST = 3
"""The worker went away before answering: no reply."""

_LENGTH = struct.Struct("!I")
_JOB = struct.Struct("!IB")
"""Job ID, message code; then the challenge."""
_RESULT = struct.Struct("!IBd")
"""Job ID, status, seconds the computation took; then the value (or a message)."""


class FrameError(ValueError):
    """A frame that is too long or too short for what it claims to be."""


@frozen
class IdentityJob:
    """One identity request waiting for its value: the challenge and what the reply needs."""

    job_id: int
    request: Field
    source: tuple[str, int]
    submitted: float
    associd: int = 0
    """Nonzero: a symmetric peer's request, answered in our next packet of this association
    (:meth:`AutokeyAssociation.identity_computed`); the reply fields below are unused."""
    server: str = ""
    """Our address as the client's session keys name it."""
    keyid: int = 0
    version_bits: int = 0
    poll: int = 0
    origin: bytes = b""
    rx: int = 0
    request_size: int = 0
    limit: bool = False
    """The amplification limit applies (the source has not completed an exchange)."""

    @property
    def code(self) -> int:
        return self.request.code

    @property
    def challenge(self) -> bytes:
        return self.request.value


class IdentityOffload:
    """The engine's side of the offload: jobs to send (:attr:`outbox`) and jobs in flight."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if capacity < 1 or timeout <= 0:
            raise ValueError("the offload needs room for a job and a positive timeout")
        self.capacity = capacity
        self.timeout = timeout
        self.outbox: list[IdentityJob] = []
        self._jobs: dict[int, IdentityJob] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, now: float, **context: Any) -> IdentityJob | None:
        """A new job (``context``: the :class:`IdentityJob` fields but ``job_id`` and
        ``submitted``) queued in :attr:`outbox`, or None when the table is full of jobs
        younger than :attr:`timeout`."""
        self._expire(now)
        if len(self._jobs) >= self.capacity:
            return None
        job = IdentityJob(job_id=self._next_id, submitted=now, **context)
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        self._jobs[job.job_id] = job
        self.outbox.append(job)
        return job

    def take(self) -> list[IdentityJob]:
        """The queued jobs, for the transport to send; the outbox is emptied."""
        jobs, self.outbox = self.outbox, []
        return jobs

    def complete(self, job_id: int, now: float) -> IdentityJob | None:
        """The job ``job_id`` answers, removed from the table; None when unknown or older
        than :attr:`timeout` (its result is then dropped)."""
        self._expire(now)
        return self._jobs.pop(job_id, None)

    def _expire(self, now: float) -> None:
        horizon = now - self.timeout
        for job_id in [j for j, job in self._jobs.items() if job.submitted < horizon]:
            del self._jobs[job_id]


def offloadable_schemes(schemes: dict[int, Any]) -> dict[int, Any]:
    """The server schemes (by message code) that can be handed to a worker process: those
    that pickle (a third-party scheme that does not is answered in process)."""
    out: dict[int, Any] = {}
    for code, scheme in schemes.items():
        try:
            pickle.dumps(scheme)
        except Exception:  # noqa: BLE001 - any failure means: keep it here
            continue
        out[code] = scheme
    return out


def answer(scheme: Any, challenge: bytes,
           timer: Callable[[], float] = time.process_time) -> tuple[int, float, bytes]:
    """Run ``scheme.respond(challenge)``: (status, CPU seconds, value or message)."""
    start = timer()
    try:
        value = bytes(scheme.respond(challenge))
    except ValueError as exc:
        return REFUSED, timer() - start, str(exc).encode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported, not fatal
        return FAILED, timer() - start, f"{type(exc).__name__}: {exc}".encode(
            "utf-8", "replace")
    return OK, timer() - start, value


# -- frames ------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    """``body`` as a frame: its 4-octet length first (FrameError when over the limit)."""
    if len(body) > MAX_FRAME:
        raise FrameError(f"a frame of {len(body)} octets is too long")
    return _LENGTH.pack(len(body)) + body


def encode_init(schemes: dict[int, Any]) -> bytes:
    """The first frame: the server schemes by message code (pickled: parent and child are
    the same program, and the pipe is theirs alone)."""
    return frame(pickle.dumps(schemes))


def encode_job(job_id: int, code: int, challenge: bytes) -> bytes:
    return frame(_JOB.pack(job_id, code) + challenge)


def decode_job(frame: bytes) -> tuple[int, int, bytes]:
    """(job ID, message code, challenge)."""
    if len(frame) < _JOB.size:
        raise FrameError("a job frame is too short")
    job_id, code = _JOB.unpack_from(frame)
    return job_id, code, frame[_JOB.size:]


def encode_result(job_id: int, status: int, seconds: float, payload: bytes) -> bytes:
    return frame(_RESULT.pack(job_id, status, seconds) + payload)


def decode_result(frame: bytes) -> tuple[int, int, float, bytes]:
    """(job ID, status, seconds, value or message)."""
    if len(frame) < _RESULT.size:
        raise FrameError("a result frame is too short")
    job_id, status, seconds = _RESULT.unpack_from(frame)
    return job_id, status, seconds, frame[_RESULT.size:]


class FrameReader:
    """Reassembles frames from a byte stream."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data``; FrameError for a length over the limit."""
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > self.limit:
                raise FrameError(f"a frame of {size} octets is over the limit")
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[_LENGTH.size:end]))
            del self._buffer[:end]
        return frames
