"""The identity worker seen from the reactor (ntpauto.identityworker): frames out, results
in, restarts, and the protocol answering in process when no worker can take a job.  A fake
process reactor stands in for spawnProcess; tests/test_daemons_autokey.py runs the real
child inside a real daemon."""

from __future__ import annotations

import pickle

from twisted.internet import task
from twisted.python.failure import Failure

from ntpauto.autokey.fields import GQ, IFF, Field
from ntpauto.autokey.offload import LOST, OK, FrameReader, IdentityJob, decode_job, encode_result
from ntpauto.identityworker import IdentityWorker

SECRET = "stand-in for the IFF server key"


class FakeProcess:
    """What spawnProcess gives the protocol: stdin writes, close, signals."""

    def __init__(self) -> None:
        self.pid = 4242
        self.written = b""
        self.stdin_closed = False
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        self.written += data

    def closeStdin(self) -> None:  # noqa: N802 - Twisted's name
        self.stdin_closed = True

    def signalProcess(self, signal: str) -> None:  # noqa: N802 - Twisted's name
        self.signals.append(signal)


class ProcessReactor(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[str, list[str], dict]] = []
        self.processes: list[FakeProcess] = []

    def spawnProcess(self, protocol, executable, args, env=None, **kwargs):  # noqa: N802
        self.spawned.append((executable, list(args), dict(env or {})))
        process = FakeProcess()
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


def job(job_id: int, code: int = IFF) -> IdentityJob:
    return IdentityJob(job_id=job_id, request=Field(code=code, value=b"\x05" * 8),
                       source=("192.0.2.9", 123), server="192.0.2.1", keyid=0x10000,
                       version_bits=0x20, poll=6, origin=bytes(8), rx=0, request_size=90,
                       limit=False, submitted=0.0)


class Done:
    def __init__(self) -> None:
        self.results: list[tuple[int, int, float, bytes]] = []

    def __call__(self, job_id: int, status: int, seconds: float, payload: bytes) -> None:
        self.results.append((job_id, status, seconds, payload))


def started(schemes=None) -> tuple[IdentityWorker, ProcessReactor]:
    reactor = ProcessReactor()
    worker = IdentityWorker(schemes if schemes is not None else {IFF: SECRET},
                            reactor=reactor, restart_delay=2.0)
    worker.start()
    return worker, reactor


def test_child_gets_the_schemes_first_then_one_frame_per_job():
    """The child is ``python -m ntpauto.autokey.worker``; its first frame is the pickled
    schemes (never on the command line or in the environment), then the jobs."""
    worker, reactor = started()
    [(executable, argv, env)] = reactor.spawned
    assert argv[1:] == ["-m", "ntpauto.autokey.worker"] and SECRET not in " ".join(argv)
    assert SECRET not in repr(env)
    assert worker.running and worker.pid == 4242
    assert worker.submit(job(5), Done())
    assert not worker.submit(job(6, GQ), Done())  # a code the child does not hold
    init, first = FrameReader().feed(reactor.processes[0].written)
    assert pickle.loads(init) == {IFF: SECRET}
    assert decode_job(first) == (5, IFF, b"\x05" * 8)


def test_results_reach_their_callbacks_even_split_across_reads():
    worker, reactor = started()
    done = Done()
    worker.submit(job(1), done)
    worker.submit(job(2), done)
    stream = encode_result(2, OK, 0.5, b"two") + encode_result(1, OK, 0.25, b"one")
    for i in range(0, len(stream), 3):
        worker.outReceived(stream[i:i + 3])
    assert done.results == [(2, OK, 0.5, b"two"), (1, OK, 0.25, b"one")]
    worker.outReceived(encode_result(1, OK, 0.0, b"again"))  # no longer waited for
    assert len(done.results) == 2


def test_a_dying_child_loses_its_jobs_and_is_restarted():
    """Jobs in the child when it ends are reported LOST; while none runs, submit() is
    False (the caller answers itself); a new child starts after restart_delay."""
    worker, reactor = started()
    done = Done()
    worker.submit(job(3), done)
    worker.processEnded(Failure(RuntimeError("killed")))
    assert done.results == [(3, LOST, 0.0, b"")]
    assert not worker.running and not worker.submit(job(4), done)
    reactor.advance(2.0)
    assert len(reactor.spawned) == 2 and worker.running
    assert worker.submit(job(4), done)


def test_a_broken_frame_kills_the_child():
    worker, reactor = started()
    worker.outReceived(b"\xff\xff\xff\xff")
    assert reactor.processes[0].signals == ["KILL"]


def test_stop_closes_input_and_does_not_restart():
    worker, reactor = started()
    stopped = worker.stop()
    assert reactor.processes[0].stdin_closed and not stopped.called
    worker.processEnded(Failure(RuntimeError("done")))
    assert stopped.called
    reactor.advance(10.0)
    assert len(reactor.spawned) == 1  # no restart after stop
    assert reactor.processes[0].signals == []  # it ended in time: no kill


def test_stderr_lines_are_logged(capsys):
    from twisted.logger import capturedLogs

    worker, _ = started()
    with capturedLogs() as events:
        worker.errReceived(b"first line\nsecond ")
        worker.errReceived(b"line\n")
    assert [e["line"] for e in events] == ["first line", "second line"]
