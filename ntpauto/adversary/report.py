"""The adversary's report: one finding per invariant and case, and a table of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from attrs import define, field, frozen

from ntpauto.adversary.cases import KINDS, ROLES, Case, code_name
from ntpauto.adversary.invariants import INVARIANTS

__all__ = ["Finding", "Report"]


@frozen
class Finding:
    """Whether ``invariant`` held for ``case``; ``detail`` says what changed (or, when it
    held, anything worth knowing, e.g. an association mobilised as the RFCs require)."""

    invariant: str
    case: Case
    held: bool
    detail: str = ""
    note: str = ""
    """How the forger built the case when it could not do it as asked (e.g. no genuine
    field of that code was on the wire to replay)."""

    def __str__(self) -> str:
        state = "held" if self.held else "BROKEN"
        text = f"{self.invariant} {state}: {self.case}"
        if self.detail:
            text += f": {self.detail}"
        if self.note:
            text += f" [{self.note}]"
        return text


@define
class Report:
    """What the adversary found (:meth:`Adversary.run`)."""

    findings: list[Finding] = field(factory=list)
    cases: int = 0
    rebuilds: int = 0
    """Times the scenario was built again after a case changed the victim."""
    label: str = ""

    @property
    def held(self) -> bool:
        """Every invariant held in every case."""
        return all(f.held for f in self.findings)

    @property
    def broken(self) -> list[Finding]:
        """The findings whose invariant did not hold."""
        return [f for f in self.findings if not f.held]

    def cells(self) -> set[tuple[str, int | None, str, str]]:
        """The (role, code, direction, kind) cells the cases covered."""
        return {f.case.cell for f in self.findings}

    def extend(self, other: Report) -> None:
        """Add ``other``'s findings and counts (reports of several scenarios together)."""
        self.findings += other.findings
        self.cases += other.cases
        self.rebuilds += other.rebuilds

    def counts(self, by: str = "kind") -> Counter[tuple[str, str, bool]]:
        """(invariant, column, held) -> findings, the column being the case's ``kind``,
        ``role``, ``code`` or ``direction``."""
        return Counter((f.invariant, _column(f.case, by), f.held) for f in self.findings)

    def table(self, by: str = "kind") -> str:
        """Invariants x columns (attack kinds by default; ``role``, ``code`` or
        ``direction``): ``held/broken`` counts, ``-`` where the invariant did not apply."""
        columns = _columns(by, self.findings)
        counts = self.counts(by)
        width = max([len(c) for c in columns] + [9])
        lead = max(len(i) for i in INVARIANTS)
        lines = [" " * lead + " " + " ".join(c.rjust(width) for c in columns)]
        for invariant in INVARIANTS:
            row = []
            for column in columns:
                held = counts[invariant, column, True]
                broken = counts[invariant, column, False]
                row.append((f"{held}/{broken}" if held or broken else "-").rjust(width))
            lines.append(invariant.ljust(lead) + " " + " ".join(row))
        return "\n".join(lines)

    def summary(self, limit: int = 30) -> str:
        """The table, then the broken findings (at most ``limit``, one line each)."""
        title = f"{self.label}: " if self.label else ""
        lines = [f"{title}{self.cases} cases, {len(self.broken)} broken findings, "
                 f"{self.rebuilds} rebuilds (held/broken per invariant and attack kind)",
                 self.table()]
        broken = self.broken
        lines += [str(f) for f in broken[:limit]]
        if len(broken) > limit:
            lines.append(f"... and {len(broken) - limit} more")
        return "\n".join(lines)


def _column(case: Case, by: str) -> str:
    if by == "code":
        return code_name(case.code)
    return str(getattr(case, by))


def _columns(by: str, findings: Iterable[Finding]) -> list[str]:
    if by == "kind":
        return list(KINDS)
    if by == "role":
        return list(ROLES)
    seen: dict[str, None] = {}
    for f in findings:
        seen.setdefault(_column(f.case, by), None)
    return list(seen)
