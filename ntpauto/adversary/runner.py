"""The adversary: forge every case against a victim, check every invariant, report.

:class:`Adversary` takes a scenario, a function building a :class:`Target` (a
:class:`~ntpauto.testing.SimulatedNetwork` on which the victim's Autokey dance with its
genuine peer has completed).  For each case it lets the network run a little (genuine
traffic goes on), forges the case's datagrams (:class:`~ntpauto.adversary.forger.Forger`),
hands them to the victim at once, and compares the victim before and after
(:mod:`ntpauto.adversary.snapshot`) for every invariant
(:mod:`ntpauto.adversary.invariants`).  What the victim sends in answer is kept, not
carried.  An association a forged packet may mobilise (RFC 5906) is checked, made to
transmit once (its first packet's size and work count), and removed again so that the next
case meets the same victim.  Nothing else is restored: when a case breaks an invariant, the
scenario is built again for the next case, so that one hole does not colour the rest of the
report.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from attrs import frozen

from ntpauto.adversary.cases import Case, all_cases, sample
from ntpauto.adversary.forger import Forged, Forger
from ntpauto.adversary.invariants import Observation, evaluate
from ntpauto.adversary.report import Finding, Report
from ntpauto.adversary.snapshot import take
from ntpauto.autokey.status import Flag
from ntpauto.engine import MAX_EPHEMERAL
from ntpauto.pki.profiles import DSAProfile, RSAProfile

if TYPE_CHECKING:
    from ntpauto.testing import SimulatedNetwork

__all__ = ["Adversary", "DanceIncomplete", "Target", "check_dance"]


@frozen
class Target:
    """A victim host on ``net`` and the genuine peer it did its Autokey dance with (by
    address).  The victim may have an association with the peer (client, symmetric,
    broadcast client) or serve it statelessly (the peer is its client)."""

    net: SimulatedNetwork
    victim: str
    peer: str


class DanceIncomplete(AssertionError):
    """The scenario's victim has an Autokey association with the peer that did not light
    every flag: the forger's cases would not test the state they are meant to."""


class Adversary:
    """The forger of :mod:`ntpauto.adversary` against the victim ``scenario()`` builds.

    ``scenario``: a function returning a :class:`Target` (called again after a case breaks
    an invariant, at most ``rebuild_limit`` times; None: no limit), or a Target (never
    rebuilt).  ``settle``: seconds the network runs before each case.  ``require_dance``:
    refuse a victim whose association with the peer has not lit every Autokey flag.
    ``seed`` drives the forger's random values and the sampling of :meth:`run`."""

    def __init__(self, scenario: Callable[[], Target] | Target, *, settle: float = 0.25,
                 rebuild_limit: int | None = None, require_dance: bool = True,
                 seed: int = 0) -> None:
        self._scenario = scenario
        self.settle = settle
        self.rebuild_limit = rebuild_limit
        self.require_dance = require_dance
        self.seed = seed
        self.target: Target | None = None
        self.forger: Forger | None = None

    # ------------------------------------------------------------------ public

    def cases(self) -> list[Case]:
        """Every case (:func:`ntpauto.adversary.cases.all_cases`)."""
        return all_cases()

    def run(self, cases: Iterable[Case] | None = None, *, per_cell: int | None = None,
            label: str = "") -> Report:
        """Try ``cases`` (default: all) and report each invariant's result.  ``per_cell``
        keeps that many cases of each (role, code, direction, kind) cell, drawn at random
        (variant and source), for a quicker run that still covers the whole matrix."""
        rng = random.Random(self.seed)
        chosen = list(cases if cases is not None else self.cases())
        if per_cell is not None:
            chosen = list(sample(chosen, per_cell, rng))
        report = Report(label=label)
        self._build(first=True)
        for number, case in enumerate(chosen):
            findings = self.attack(case, stranger=_stranger(number))
            report.findings += findings
            report.cases += 1
            if any(not f.held for f in findings) and number + 1 < len(chosen) \
                    and self._rebuild_allowed(report):
                report.rebuilds += 1
                self._build()
        return report

    def attack(self, case: Case, stranger: str = "172.16.0.1") -> list[Finding]:
        """Try one case (``stranger``: the address a stranger case sends from) and return a
        finding per invariant that applies."""
        if self.target is None:
            self._build(first=True)
        target, forger = self.target, self.forger
        assert target is not None and forger is not None
        if self.settle:
            target.net.run(self.settle)
        forger.observe()
        forged = forger.forge(case, stranger)
        observation = self._observe(target, case, forged)
        return [Finding(invariant, case, held, detail, forged.note)
                for invariant, held, detail in evaluate(observation)]

    # ------------------------------------------------------------------ internals

    def _rebuild_allowed(self, report: Report) -> bool:
        if not callable(self._scenario):
            return False
        return self.rebuild_limit is None or report.rebuilds < self.rebuild_limit

    def _build(self, first: bool = False) -> None:
        scenario = self._scenario
        target = scenario() if callable(scenario) else scenario
        if first and self.require_dance:
            check_dance(target)
        self.target = target
        self.forger = Forger(target.net, target.victim, target.peer,
                             rng=random.Random(self.seed))

    def _observe(self, target: Target, case: Case, forged: Forged) -> Observation:
        net = target.net
        engine = net.hosts[target.victim].engine
        before = take(engine)
        replies = []
        with _counting_public_key_work() as work:
            for data in forged.datagrams:
                replies += net.deliver_now(data, forged.source, target.victim, forged.local)
            after = take(engine)
            checks = work["verify"]
            for associd in after.associations.keys() - before.associations.keys():
                # Mobilised: its first transmission counts too; then it goes (see the
                # module docstring), so that the next case meets the victim as it was.
                assoc = engine.associations[associd]
                replies += engine.poller.poll(assoc, net.reactor.seconds())
                engine.demobilise(assoc, "adversary: mobilisation checked")
                engine.timers_changed()
        operations = take(engine).key_operations - before.key_operations
        refclocks = sum(1 for a in engine.associations.values() if a.is_refclock)
        return Observation(case, forged, before, after, tuple(replies), checks,
                           work["sign"], operations, engine.config.amplification_limit,
                           MAX_EPHEMERAL + refclocks)


def check_dance(target: Target) -> None:
    """DanceIncomplete unless the victim's Autokey association with the peer (if it has
    one) lit every flag, and the peer's with the victim too."""
    for host, other in ((target.victim, target.peer), (target.peer, target.victim)):
        simulated = target.net.hosts.get(host)
        if simulated is None:
            continue
        for assoc in simulated.engine.associations.values():
            if assoc.autokey is None or assoc.address[0] != other:
                continue
            state = assoc.autokey.state
            if state.status & Flag.ALL != Flag.ALL:
                raise DanceIncomplete(f"{host}'s Autokey association with {other} has not "
                                      f"completed its dance: {' '.join(state.flags)}")


def _stranger(number: int) -> str:
    """The ``number``-th stranger's address (a new one for every case)."""
    return f"172.16.{number // 250 % 250}.{number % 250 + 1}"


@contextmanager
def _counting_public_key_work() -> Iterator[Counter[str]]:
    """Count the signatures made (``sign``) and checked (``verify``) with the built-in
    signature profiles meanwhile."""
    work: Counter[str] = Counter()
    classes = (RSAProfile, DSAProfile)
    own = {(cls, name): cls.__dict__.get(name) for cls in classes for name in work_names()}

    def counting(name: str, original: Callable[..., object]) -> Callable[..., object]:
        def counted(self: object, *args: object, **kwargs: object) -> object:
            work[name] += 1
            return original(self, *args, **kwargs)
        return counted

    for cls in classes:
        for name in work_names():
            setattr(cls, name, counting(name, getattr(cls, name)))
    try:
        yield work
    finally:
        for (cls, name), original in own.items():
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)


def work_names() -> tuple[str, ...]:
    """The profile methods counted: making and checking a signature."""
    return ("sign", "verify")
