"""An off-path Autokey adversary for simulated networks: forge, inject, check invariants.

Given a :class:`~ntpauto.testing.SimulatedNetwork` on which a victim host completed its
Autokey dance with a genuine peer, :class:`Adversary` forges every combination of *role*
(the mode it pretends to speak in), *extension field code* (NULL, ASSOC ... MV and an
unknown one), *request or response* and *attack kind* (junk signatures, degenerate identity
values, stale and equal timestamps, wrong association IDs, replays, cookie-0 and other
public-value MACs, no MAC and crypto-NAKs), sends each from the peer's address and from a
stranger's, and checks that the victim kept every invariant of docs/adversary.md: no sample,
no change of on-wire or association state, no restart or demobilisation, mobilisation only
where the RFCs require it, freshness before signature work, rate-limited restarts for
crypto-NAKs and error responses, identity values range-checked, bounded work and replies.
It returns a :class:`Report`: one :class:`Finding` per invariant and case, with a
:meth:`Report.table`::

    from ntpauto.testing import Adversary, SimulatedNetwork, Target

    def scenario() -> Target:
        net = SimulatedNetwork(seed=1)
        ...  # add the hosts with their configurations and credentials
        net.run(600)  # the dance completes
        return Target(net, victim="10.0.0.2", peer="10.0.0.1")

    report = Adversary(scenario).run()
    print(report.table())
    assert report.held, report.summary()

The threat model and what each invariant means are in docs/adversary.md; the modules:
:mod:`~ntpauto.adversary.cases` (the matrix), :mod:`~ntpauto.adversary.knowledge` (what
the forger saw), :mod:`~ntpauto.adversary.values` (the public values and the forger's own),
:mod:`~ntpauto.adversary.forger` (the datagrams),
:mod:`~ntpauto.adversary.snapshot` (the victim's state), :mod:`~ntpauto.adversary.invariants`
(the checks), :mod:`~ntpauto.adversary.report` and :mod:`~ntpauto.adversary.runner`.
"""

from ntpauto.adversary.cases import CODES, DIRECTIONS, KINDS, ROLES, SOURCES, Case, all_cases
from ntpauto.adversary.forger import Forged, Forger
from ntpauto.adversary.invariants import INVARIANTS
from ntpauto.adversary.report import Finding, Report
from ntpauto.adversary.runner import Adversary, DanceIncomplete, Target

__all__ = ["CODES", "DIRECTIONS", "INVARIANTS", "KINDS", "ROLES", "SOURCES", "Adversary", "Case",
           "DanceIncomplete", "Finding", "Forged", "Forger", "Report", "Target", "all_cases"]
