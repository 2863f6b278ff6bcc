"""The identity worker process: answers IFF, GQ and MV challenges for the daemon.

Started by :class:`ntpauto.identityworker.IdentityWorker` as ``python -m
ntpauto.autokey.worker``, it reads frames (:mod:`ntpauto.autokey.offload`) on standard
input: first the server schemes by message code, then one job per frame (job ID, message
code, challenge), and writes one result frame per job on standard output, in order.  It
holds the identity server keys it was given and nothing else (no host key, no sockets),
and builds their response tables (:mod:`ntpauto.identity.fixedbase`) before the first job;
errors go to standard error, one line each, never a key.  End of input ends it.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, BinaryIO

from ntpauto.autokey.offload import (
    FAILED,
    FrameError,
    FrameReader,
    answer,
    decode_job,
    encode_result,
)
from ntpauto.identity.common import prepare_scheme

__all__ = ["main", "serve"]


def serve(stdin: BinaryIO, stdout: BinaryIO, stderr: Any = None) -> int:
    """Answer jobs from ``stdin`` on ``stdout`` until end of input; 0, or 1 on a broken
    stream."""
    err = stderr if stderr is not None else sys.stderr
    reader = FrameReader()
    schemes: dict[int, Any] | None = None
    read = getattr(stdin, "read1", stdin.read)
    while True:
        data = read(65536)
        if not data:
            return 0
        try:
            frames = reader.feed(data)
        except FrameError as exc:
            print(f"ntpauto identity worker: {exc}", file=err, flush=True)
            return 1
        for frame in frames:
            if schemes is None:
                schemes = pickle.loads(frame)  # noqa: S301 - our own parent, our own pipe
                for scheme in schemes.values():
                    prepare_scheme(scheme)
                continue
            try:
                job_id, code, challenge = decode_job(frame)
            except FrameError as exc:
                print(f"ntpauto identity worker: {exc}", file=err, flush=True)
                return 1
            scheme = schemes.get(code)
            if scheme is None:
                status, seconds, payload = FAILED, 0.0, b"no scheme for this code"
            else:
                status, seconds, payload = answer(scheme, challenge)
            if status == FAILED:
                print(f"ntpauto identity worker: code {code}: "
                      f"{payload.decode('utf-8', 'replace')}", file=err, flush=True)
            stdout.write(encode_result(job_id, status, seconds, payload))
            stdout.flush()


def main() -> None:
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer))


if __name__ == "__main__":
    main()
