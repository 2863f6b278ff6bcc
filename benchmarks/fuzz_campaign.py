"""The long fuzz campaign (a script, not a test): mutated vectors through every parser.

Seed corpora are the reference vectors (captured packets, certificates, ntp-keygen files,
ntpd configurations: ``tests/fuzz/targets.py``); a plain mutational generator
(``tests/fuzz/mutate.py``) corrupts them structurally and byte by byte.  Each target may only
raise the error types its module declares for bad input; anything else is a finding, printed
with the input (hex) that caused it.  The seeded slice CI runs is ``tests/fuzz/test_fuzz.py``.

Run: ``nice .venv/bin/python benchmarks/fuzz_campaign.py [--inputs N] [--seed S]
[--target packet,fields,...]``.  Inputs are shared round-robin between the targets.  Exit
status 1 on any unexpected exception.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = {"packet": "packet", "fields": "packet", "autokey": "packet", "engine": "packet",
         "mode6": "packet", "cert": "der", "keyfile": "keyfile", "config": "text",
         "nts": "packet", "nts_ke": "bytes"}


def make_input(rng: random.Random, name: str, corpus: list[bytes]) -> bytes:
    """One mutant for target ``name``."""
    from tests.fuzz.mutate import mutate
    from tests.fuzz.targets import private_key_der, rewrap

    seed = rng.choice(corpus)
    kind = KINDS.get(name, "bytes")
    if kind == "keyfile":
        if rng.random() < 0.6:
            ders = private_key_der(seed)
            if ders:
                ders = [mutate(rng, d, ders, "der") if rng.random() < 0.7 else d for d in ders]
                return rewrap(seed, ders)
        return mutate(rng, seed, corpus, "text")
    return mutate(rng, seed, corpus, kind)


def campaign(inputs: int, seed: int, names: list[str], report_every: float = 30.0
             ) -> tuple[int, float, collections.Counter[str], list[str]]:
    """Run ``inputs`` mutants round-robin over the targets ``names``.  Returns (inputs run,
    seconds, expected exceptions by type, unexpected findings)."""
    from tests.fuzz.targets import targets

    warnings.simplefilter("ignore")  # cryptography's deprecation warnings on odd DER
    table = targets()
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown target(s): {', '.join(unknown)} (have: {', '.join(table)})")
    selected = [table[n] for n in names]
    rng = random.Random(seed)
    corpora = {t.name: t.seeds() for t in selected}
    for t in selected:
        if not corpora[t.name]:
            raise SystemExit(f"target {t.name}: empty seed corpus (vectors missing?)")
    expected: collections.Counter[str] = collections.Counter()
    findings: list[str] = []
    seen: set[tuple[str, str]] = set()
    start = last = time.perf_counter()
    done = 0
    for i in range(inputs):
        target = selected[i % len(selected)]
        data = make_input(rng, target.name, corpora[target.name])
        try:
            target.run(data)
            expected[f"{target.name}: ok"] += 1
        except target.expected as exc:
            expected[f"{target.name}: {type(exc).__name__}"] += 1
        except Exception as exc:  # a finding
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = (type(exc).__name__, f"{where.filename}:{where.lineno}")
            expected[f"{target.name}: UNEXPECTED {type(exc).__name__}"] += 1
            if key not in seen:
                seen.add(key)
                findings.append(f"[{target.name}] {type(exc).__name__}: {exc}\n"
                                f"  input ({len(data)} octets): {data.hex()}\n"
                                + "".join(traceback.format_exception(exc)[-6:]))
        done += 1
        now = time.perf_counter()
        if now - last > report_every:
            last = now
            print(f"... {done} inputs, {now - start:.0f} s, {len(findings)} findings",
                  flush=True)
    return done, time.perf_counter() - start, expected, findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000,
                        help="number of inputs, shared between the targets (default 10^6)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--target", default="all",
                        help="comma-separated targets (default all: packet, fields, autokey, "
                             "cert, keyfile, config, engine, mode6, nts_ke, nts)")
    args = parser.parse_args(argv)
    from tests.fuzz.targets import targets

    names = list(targets()) if args.target == "all" else args.target.split(",")
    print(f"fuzz campaign: {args.inputs} inputs, seed {args.seed}, targets {', '.join(names)}",
          flush=True)
    done, seconds, counts, findings = campaign(args.inputs, args.seed, names)
    print(f"inputs: {done}")
    print(f"seconds: {seconds:.1f} ({done / seconds:.0f} inputs/s)")
    print("outcomes by target and exception type:")
    for key, count in sorted(counts.items()):
        print(f"  {key:50} {count}")
    if findings:
        print(f"UNEXPECTED EXCEPTIONS: {len(findings)} distinct")
        for finding in findings:
            print(finding)
        return 1
    print("unexpected exceptions: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
