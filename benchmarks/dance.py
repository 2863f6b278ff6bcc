"""How long Autokey dances take, and what they cost (a script, not a test).

1. One server dance per identity scheme in the simulated network (no sleeping): wall time
   and CPU until the client association has every flag, with the reference's key files from
   ``tests/vectors/keys`` (512-bit RSA, the reference's identity sizes).
2. Symmetric dances, TC and IFF, ``peer ... autokey minpoll 3 maxpoll 3`` as the
   reference's ``sym`` capture was configured (``tests/vectors/pcap/sym``: its dance takes
   16.5 s on the wire; two reference peers on loopback take 22-27 s from start-up, issue
   17): simulated seconds until the active side and the passive side each have every flag.
   Both peers with a local clock (the capture's configuration), then an active peer with no
   clock of its own (unsynchronised until the passive's samples pass the autokey test), each
   with and without ``iburst``.

Autokey replies per second (requests under session keys without fields) are measured with
the other server targets by ``server_throughput.py``.

Run: ``.venv/bin/python benchmarks/dance.py [--seeds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VECTORS = REPO / "tests" / "vectors" / "keys"
SCENARIOS = [("tc", "tc-rsa-md5"), ("pc", "pc"), ("iff", "iff-trad"), ("gq", "gq"),
             ("mv", "mv-trad")]
EPOCH = 1_795_460_000.0
ALL = 0x7F00
SYMMETRIC_SCHEMES = ("tc", "iff")
LIMIT = 600.0
"""Simulated seconds after which a dance counts as not completing."""


def one_dance(scenario: str) -> tuple[float, float, float]:
    """(wall s, CPU s, simulated s) until the client association lights 0x7F00."""
    from ntpauto.autokey.host import load_host
    from ntpauto.testing import SimulatedNetwork

    client_name = "alice" if scenario == "pc" else "brenda"
    passwords = {"alice": "alicepw", "brenda": "brendapw"}
    wall, cpu = time.perf_counter(), time.process_time()
    alice = load_host(VECTORS / scenario / "alice", host="alice", password="alicepw")
    brenda = load_host(VECTORS / scenario / "brenda", host=client_name,
                       password=passwords[client_name])
    net = SimulatedNetwork(seed=1, latency=0.01, epoch=EPOCH)
    net.add_host("10.0.0.1", "localclock stratum 1\n", autokey=alice)
    client = net.add_host("10.0.0.2", "server 10.0.0.1 autokey ident alice iburst minpoll 4\n",
                          autokey=brenda)
    simulated = 0.0
    while simulated < 3600:
        net.run(1.0)
        simulated += 1.0
        [assoc] = client.engine.associations.values()
        if assoc.autokey.state.status & ALL == ALL:
            break
    else:
        raise RuntimeError(f"{scenario}: dance did not complete")
    return time.perf_counter() - wall, time.process_time() - cpu, simulated


def symmetric_dance(keys: object, seed: int, *, clock: bool, iburst: bool
                    ) -> tuple[float | None, float | None]:
    """Simulated seconds until carol's active association and alice's passive one each
    light 0x7F00 (None: not within :data:`LIMIT`); half-second steps."""
    from ntpauto.testing import SimulatedNetwork

    net = SimulatedNetwork(seed=seed, latency=0.0002, epoch=EPOCH)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n",
                         autokey=keys.credentials("alice"))  # type: ignore[attr-defined]
    ident = f" ident {keys.group}" if keys.identity else ""  # type: ignore[attr-defined]
    text = ("localclock stratum 3\n" if clock else "") + (
        f"peer 10.0.0.1 autokey{ident} minpoll 3 maxpoll 3{' iburst' if iburst else ''}\n")
    carol = net.add_host("10.0.0.3", text, autokey=keys.credentials("carol"),  # type: ignore
                         offset=0.05)
    done: dict[str, float] = {}
    elapsed = 0.0
    while elapsed < LIMIT and len(done) < 2:
        net.run(0.5)
        elapsed += 0.5
        for side, host in (("active", carol), ("passive", alice)):
            for assoc in host.engine.associations.values():
                if assoc.autokey is not None and assoc.autokey.state.status & ALL == ALL:
                    done.setdefault(side, elapsed)
    return done.get("active"), done.get("passive")


def symmetric_table(seeds: int) -> None:
    """Print the median simulated seconds of the symmetric dances over ``seeds`` runs."""
    sys.path.insert(0, str(REPO / "tests"))
    from autokey_groups import make_group

    print(f"\nsymmetric dance, minpoll 3 ({seeds} seeds, median simulated s until every "
          "flag is lit)")
    print(f"{'scheme':<7} {'active peer':<18} {'iburst':<7} {'active':>7} {'passive':>8}")
    for scheme in SYMMETRIC_SCHEMES:
        with tempfile.TemporaryDirectory(prefix="ntpauto-dance-") as scratch:
            keys = make_group(Path(scratch), scheme)
            for clock in (True, False):
                for iburst in (False, True):
                    runs = [symmetric_dance(keys, seed, clock=clock, iburst=iburst)
                            for seed in range(1, seeds + 1)]
                    cells = []
                    for side in (0, 1):
                        times = [run[side] for run in runs]
                        cells.append("never" if None in times
                                     else f"{statistics.median(times):.1f}")
                    who = "local clock" if clock else "unsynchronised"
                    print(f"{scheme:<7} {who:<18} {'yes' if iburst else 'no':<7} "
                          f"{cells[0]:>7} {cells[1]:>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="runs per symmetric configuration (default 3)")
    args = parser.parse_args()
    print("server dance")
    print(f"{'scheme':<8} {'wall s':>8} {'cpu s':>8} {'simulated s':>12}")
    for name, scenario in SCENARIOS:
        wall, cpu, simulated = one_dance(scenario)
        print(f"{name:<8} {wall:>8.3f} {cpu:>8.3f} {simulated:>12.0f}")
    symmetric_table(args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
