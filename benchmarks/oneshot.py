"""One-shot Autokey query wall time against a loopback server, per identity scheme (a
script, not a test).

For each scheme, an ntpauto server on 127.0.0.1 (port 0, the identity arithmetic in
process) with the reference's key files from ``tests/vectors/keys`` (512-bit RSA, the
reference's identity sizes), then ``ntpauto.client.query`` as the group member brenda: the
whole client dance back to back and the time request.  Prints the median and the slowest of
``--runs`` queries, and the requests each took.  Both ends read a clock at the key files'
epoch, so the certificates are valid whatever the date.

Run: ``.venv/bin/python benchmarks/oneshot.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VECTORS = REPO / "tests" / "vectors" / "keys"
SCENARIOS = [("tc", "tc-rsa-md5", None), ("pc", "pc", None), ("iff", "iff-trad", "alice"),
             ("gq", "gq", "alice"), ("mv", "mv-trad", "alice")]
EPOCH = 1_795_460_000.0


def run(reactor: Any, d: Any) -> Any:
    """Iterate the reactor until ``d`` fires; its result."""
    box: list[Any] = []
    d.addBoth(box.append)
    while not box:
        reactor.iterate(0.001)
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def main() -> int:
    import attrs
    from twisted.internet import reactor

    from ntpauto.client import AutokeyKeys
    from ntpauto.client.oneshot import query_outcome
    from ntpauto.config import parse_config
    from ntpauto.ntp.clocks import SimulatedClock
    from ntpauto.service import NTPAutokeyService

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="queries per scheme")
    args = parser.parse_args()
    start = reactor.seconds()

    def clock() -> SimulatedClock:
        return SimulatedClock(lambda: reactor.seconds() - start, epoch=EPOCH)

    print(f"{'scheme':<8} {'median ms':>10} {'slowest ms':>11} {'requests':>9}")
    for name, scenario, ident in SCENARIOS:
        folder = VECTORS / scenario
        text = (f"interface listen 127.0.0.1\nlocalclock stratum 1\n"
                f"crypto host alice pw alicepw\nkeysdir {folder / 'alice'}\n"
                + (f"ident {ident}\n" if ident else ""))
        server = NTPAutokeyService(attrs.evolve(parse_config(text, "<bench>"), port=0),
                                   clock=clock(), identity_worker=False)
        server.startService()
        client = "alice" if name == "pc" else "brenda"
        keys = AutokeyKeys(folder / client, host=client, password=f"{client}pw", ident=ident)
        times, requests = [], 0
        for _ in range(args.runs):
            began = time.perf_counter()
            outcome = run(reactor, query_outcome(reactor, *server.address, autokey=keys,
                                                 clock=clock()))
            times.append(time.perf_counter() - began)
            requests = outcome.requests
        run(reactor, server.stopService())
        print(f"{name:<8} {statistics.median(times) * 1e3:>10.1f} "
              f"{max(times) * 1e3:>11.1f} {requests:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
