"""Identity scheme speed: server response and client verification per scheme, at the
reference's sizes and at our defaults (one run, ops/s; pure Python).

The server's responses raise fixed key values to fresh exponents through precomputed
tables (:mod:`ntpauto.identity.fixedbase`); ``pow/s`` is the same response with plain
``pow`` in the same run, ``x`` the ratio, ``tables s`` the one-time cost of the tables.

Run: ``.venv/bin/python benchmarks/identity.py [--budget SECONDS]``.  Each operation is
repeated until ``budget`` seconds have passed (at least 3 times); key generation is timed
once.  The MV default in ``ntpauto.identity.mv`` was chosen from this table.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntpauto.identity import fixedbase, gq, iff, mv  # noqa: E402


class _PowOnly:
    """A table stand-in computing with plain ``pow`` (the comparison column)."""

    def __init__(self, table: object) -> None:
        self.base, self.modulus = table.base, table.modulus  # type: ignore[attr-defined]

    def power(self, exponent: int) -> int:
        return pow(self.base, exponent, self.modulus)


def _rate(operation: Callable[[], object], budget: float) -> float:
    count = 0
    start = time.perf_counter()
    while True:
        operation()
        count += 1
        elapsed = time.perf_counter() - start
        if count >= 3 and elapsed >= budget:
            return count / elapsed


def _cases() -> list[tuple[str, str, Callable[[], object]]]:
    """(scheme, size label, generator returning a scheme holding both roles)."""

    def iff_pair(bits: int) -> Callable[[], object]:
        def make() -> iff.IFFScheme:
            params = iff.generate_iff(bits)
            return iff.IFFScheme(server=params, client=params.client_parameters())
        return make

    def gq_pair(bits: int) -> Callable[[], object]:
        def make() -> gq.GQScheme:
            params = gq.generate_gq(bits)
            return gq.GQScheme(server=params, client=params.client_parameters(),
                               peer_key=params.v)
        return make

    def mv_pair(bits: int, clients: int = 3) -> Callable[[], object]:
        def make() -> mv.MVScheme:
            system = mv.generate_mv(bits, clients)
            return mv.MVScheme(server=system.server, client=system.client(1))
        return make

    return [
        ("IFF", f"{iff.REFERENCE_BITS} (reference)", iff_pair(iff.REFERENCE_BITS)),
        ("IFF", f"{iff.DEFAULT_BITS} (default)", iff_pair(iff.DEFAULT_BITS)),
        ("GQ", f"{gq.REFERENCE_BITS} (reference)", gq_pair(gq.REFERENCE_BITS)),
        ("GQ", "1016 (reference SKI max)", gq_pair(1016)),
        ("GQ", f"{gq.DEFAULT_BITS} (default)", gq_pair(gq.DEFAULT_BITS)),
        ("MV", f"{mv.REFERENCE_BITS} (reference)", mv_pair(mv.REFERENCE_BITS)),
        ("MV", "1024", mv_pair(1024)),
        ("MV", "1536", mv_pair(1536)),
        ("MV", f"{mv.DEFAULT_BITS} (default)", mv_pair(mv.DEFAULT_BITS)),
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds per measured operation (default 1)")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"one run, budget {args.budget:g} s per operation")
    header = (f"{'scheme':<6} {'bits':<26} {'keygen s':>9} {'tables s':>9} {'respond/s':>10} "
              f"{'pow/s':>8} {'x':>5} {'verify/s':>10}")
    print(header)
    print("-" * len(header))
    for name, label, make in _cases():
        start = time.perf_counter()
        scheme = make()
        keygen = time.perf_counter() - start
        fixedbase.fixed_base.cache_clear()  # key generation's self-test built them
        start = time.perf_counter()
        scheme.prepare()
        tables = time.perf_counter() - start
        challenge = scheme.make_challenge()
        response = scheme.respond(challenge)
        assert scheme.verify_response(challenge, response)
        respond = _rate(functools.partial(scheme.respond, challenge), args.budget)
        with_tables = scheme._tables
        plain_tables = tuple(_PowOnly(t) for t in with_tables())
        scheme._tables = lambda tables=plain_tables: tables
        assert scheme.verify_response(challenge, scheme.respond(challenge))
        plain = _rate(functools.partial(scheme.respond, challenge), args.budget)
        scheme._tables = with_tables
        verify = _rate(functools.partial(scheme.verify_response, challenge, response),
                       args.budget)
        print(f"{name:<6} {label:<26} {keygen:>9.2f} {tables:>9.2f} {respond:>10.1f} "
              f"{plain:>8.1f} {respond / plain:>5.1f} {verify:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
