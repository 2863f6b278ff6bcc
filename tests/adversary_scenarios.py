"""The adversary's victims: one scenario per Autokey dance and identity scheme, for
tests/test_adversary.py and benchmarks/adversary.py.

Each scenario builds a :class:`~ntpauto.testing.SimulatedNetwork` with the keys of one
secure group (tests/autokey_groups.py: RSA 1024, the reference's identity sizes), runs the
dance to its end and names the victim and its genuine peer.  The hosts' responders have the
daemon's private-key budget (``autokeybudget`` defaults), as ``ntpd``-style configurations
loaded by :func:`ntpauto.engine.load_autokey` do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ntpauto.autokey.budget import PrivateKeyBudget
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.testing import SimulatedNetwork, Target
from tests.autokey_groups import ADDRESS, EPOCH, GroupKeys, make_group

ALICE, BRENDA, CAROL = ADDRESS["alice"], ADDRESS["brenda"], ADDRESS["carol"]
BROADCAST = "10.0.0.255"
HOSTS = ("alice", "brenda", "carol")
DANCES = ("client", "server", "active", "passive", "bclient", "broadcaster")
"""Where the victim stands: the client of a server dance, the server answering it, the
symmetric active peer, the passive one, the broadcast client, the broadcast server."""
RUN = {"client": 300.0, "server": 300.0, "active": 400.0, "passive": 400.0, "bclient": 600.0,
       "broadcaster": 600.0}
"""Simulated seconds each dance is given to complete."""


def group(root: Path, scheme: str) -> GroupKeys:
    """The keys of a three-host ``scheme`` group (alice and carol trusted) under ``root``."""
    return make_group(root, scheme, HOSTS)


def node(keys: GroupKeys, name: str) -> AutokeyNode:
    """``name``'s Autokey credentials with a responder on the daemon's default budget."""
    credentials = keys.credentials(name)
    return AutokeyNode(credentials, Responder(credentials, budget=PrivateKeyBudget()))


def scenario(keys: GroupKeys, dance: str, *, seed: int = 1) -> Callable[[], Target]:
    """A function building the ``dance`` scenario on a new network each time it is called."""
    ident = f" ident {keys.group}" if keys.identity else ""

    def build() -> Target:
        net = SimulatedNetwork(seed=seed, latency=0.01, jitter=0.002, epoch=EPOCH)
        if dance in ("client", "server"):
            net.add_host(ALICE, "localclock stratum 1\n", autokey=node(keys, "alice"))
            net.add_host(BRENDA, keys.server_line(ALICE), autokey=node(keys, "brenda"),
                         offset=0.05)
            victim, peer = (BRENDA, ALICE) if dance == "client" else (ALICE, BRENDA)
        elif dance in ("active", "passive"):
            net.add_host(ALICE, "localclock stratum 1\n", autokey=node(keys, "alice"))
            net.add_host(CAROL, f"peer {ALICE} autokey{ident} iburst minpoll 4 maxpoll 4\n",
                         autokey=node(keys, "carol"), offset=0.05)
            victim, peer = (CAROL, ALICE) if dance == "active" else (ALICE, CAROL)
        else:
            net.add_host(ALICE, f"localclock stratum 1\nbroadcast {BROADCAST} autokey "
                                "minpoll 4\n", autokey=node(keys, "alice"))
            net.add_host(BRENDA, f"broadcastclient\n{ident.strip()}\n",
                         autokey=node(keys, "brenda"), offset=0.05)
            victim, peer = (BRENDA, ALICE) if dance == "bclient" else (ALICE, BRENDA)
        net.run(RUN[dance])
        return Target(net, victim, peer)

    return build
