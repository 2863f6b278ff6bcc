"""The cost of an Autokey dance, and of serving Autokey time afterwards (a script, not a test).

1. One full server dance per identity scheme in the simulated network (no sleeping): wall
   time and CPU until the client association has every flag, with the reference's key
   files from ``tests/vectors/keys`` (512-bit RSA, the reference's identity sizes).
2. Server replies per second for Autokey-authenticated requests without extension fields,
   next to a bare Twisted UDP echo server in the same run (``server_throughput.py``'s load
   generator; goal: at least 50 % of echo).

Run: ``.venv/bin/python benchmarks/dance.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

VECTORS = REPO / "tests" / "vectors" / "keys"
SCENARIOS = [("tc", "tc-rsa-md5"), ("pc", "pc"), ("iff", "iff-trad"), ("gq", "gq"),
             ("mv", "mv-trad")]
EPOCH = 1_795_460_000.0


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
        if assoc.autokey.state.status & 0x7F00 == 0x7F00:
            break
    else:
        raise RuntimeError(f"{scenario}: dance did not complete")
    return time.perf_counter() - wall, time.process_time() - cpu, simulated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--window", type=int, default=32)
    args = parser.parse_args()
    print(f"{'scheme':<8} {'wall s':>8} {'cpu s':>8} {'simulated s':>12}")
    for name, scenario in SCENARIOS:
        wall, cpu, simulated = one_dance(scenario)
        print(f"{name:<8} {wall:>8.3f} {cpu:>8.3f} {simulated:>12.0f}")
    import server_throughput as throughput

    options = argparse.Namespace(requests=args.requests, window=args.window, max_seconds=15.0)
    with tempfile.TemporaryDirectory() as scratch:
        keys = Path(scratch) / "ntp.keys"
        keys.write_text(throughput.MD5_KEY)
        echo = throughput.measure("echo", str(keys), options)
        autokey = throughput.measure("ntp-autokey", str(keys), options)
    ratio = autokey["rate"] / echo["rate"]
    print(f"\necho {echo['rate']:,.0f} replies/s; Autokey (no fields) "
          f"{autokey['rate']:,.0f} replies/s = {ratio:.1%} of echo (goal >= 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
