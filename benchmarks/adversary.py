"""The adversary's whole matrix: every scheme, every dance, every case (a script, not a test).

For each identity scheme (TC, PC, IFF, GQ, MV) and each place of the victim (client of a
server dance, the server, symmetric active, symmetric passive, broadcast client, broadcast
server; tests/adversary_scenarios.py) the off-path forger of :mod:`ntpauto.adversary`
tries every case (role x field code x request/response x attack kind x variant x source)
and checks every invariant.  Prints a table of invariants x attack kinds (held/broken
findings) over the whole matrix, the same by role, one line per scenario, and the broken
findings grouped by what they show.

Run: ``.venv/bin/python benchmarks/adversary.py`` (about two minutes); ``--per-cell 1``
draws one case per cell instead (seconds); ``--schemes tc,gq --dances client,active``
narrows it down.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ntpauto.adversary import Adversary, DanceIncomplete, Report  # noqa: E402
from tests.adversary_scenarios import DANCES, group, scenario  # noqa: E402
from tests.autokey_groups import SCHEMES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--dances", default=",".join(DANCES))
    parser.add_argument("--per-cell", type=int, default=None,
                        help="cases per (role, code, direction, kind) cell (default: all)")
    parser.add_argument("--findings", type=int, default=40,
                        help="broken-finding groups to list")
    args = parser.parse_args()
    total = Report(label="all scenarios")
    lines = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for scheme in args.schemes.split(","):
            keys = group(Path(root) / scheme, scheme)
            for dance in args.dances.split(","):
                clock = time.perf_counter()
                incomplete = ""
                adversary = Adversary(scenario(keys, dance))
                try:
                    report = adversary.run(per_cell=args.per_cell, label=f"{scheme} {dance}")
                except DanceIncomplete as exc:
                    incomplete = f" (dance incomplete: {exc}; run on it as it is)"
                    adversary.require_dance = False
                    report = adversary.run(per_cell=args.per_cell, label=f"{scheme} {dance}")
                total.extend(report)
                lines.append(f"{scheme:4} {dance:12} {report.cases:6} cases "
                             f"{len(report.broken):5} broken {report.rebuilds:4} rebuilds "
                             f"{time.perf_counter() - clock:6.1f} s{incomplete}")
    print(f"{total.cases} cases in {time.perf_counter() - started:.0f} s, "
          f"{len(total.findings)} findings, {len(total.broken)} broken\n")
    print("Invariants x attack kinds (held/broken findings):")
    print(total.table("kind"))
    print("\nInvariants x roles the forger plays:")
    print(total.table("role"))
    print("\nScenarios (scheme, where the victim stands):")
    print("\n".join(lines))
    groups: Counter[tuple[str, str, str, str]] = Counter()
    example: dict[tuple[str, str, str, str], str] = {}
    for f in total.broken:
        key = (f.invariant, f.case.role, f.case.source, f.case.kind)
        groups[key] += 1
        example.setdefault(key, f"{f.case}: {f.detail}")
    print("\nBroken findings by (invariant, role, source, kind), with an example:")
    for key, count in groups.most_common(args.findings):
        print(f"{count:5}  {' '.join(key)}\n       {example[key][:300]}")
    return 0 if total.held else 1


if __name__ == "__main__":
    sys.exit(main())
