"""The system process mitigation algorithms (RFC 5905 sections 11.2.1-11.2.3, appendix A.5.5).

* :func:`root_distance` - A.5.5.2 ``root_dist``;
* :func:`fit` - A.5.5.3 ``accept`` / A.5.2 ``fit`` (the loop test on the refid is left to
  the caller, which knows its own addresses and system refid);
* :func:`select` - A.5.5.1 ``clock_select``: the intersection (selection) algorithm, the
  cluster algorithm, the choice of the system peer and A.5.5.5 ``clock_combine``.

Where the appendix code has slips, the behaviour follows the prose of section 11.2 and
ntpd 4.2.8:

* the intersection uses the correctness intervals only (ntpd 4.2.8), not the midpoints of
  the older algorithm, which rejects a genuine majority whose midpoints fall outside the
  intersection; a candidate is a truechimer when its interval overlaps the intersection;
* the cluster selection jitter is ``sqrt(sum (theta_s - theta_j)^2 / (n - 1))``
  (section 11.2.2) and rounds stop when it is no larger than the smallest peer jitter, when
  at most ``min_survivors`` remain, or when the outlier is the prefer peer (ntpd);
* when the prefer peer is the system peer its own offset is used instead of the combined one,
  as the appendix comment on clock_combine says the reference implementation does.

Sans I/O: ``now`` (seconds) is passed explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ntpauto.ntp.constants import MAXDIST, MAXSTRAT, MINDISP, NMIN, NOSYNC, NSANE, PHI


@dataclass(frozen=True)
class Candidate:
    """A snapshot of one association's peer variables as seen by the system process.

    ``epoch`` is the time up to which ``dispersion`` was aged (the clock filter's last
    update); the root distance adds PHI per second since then.  ``key`` identifies the
    association and is opaque here.
    """

    key: object
    offset: float
    delay: float
    dispersion: float
    jitter: float
    root_delay: float
    root_dispersion: float
    stratum: int
    leap: int = 0
    epoch: float = 0.0
    prefer: bool = False
    reach: int = 0xFF
    poll: int = 6


@dataclass
class Selection:
    """Outcome of :func:`select`.

    ``offset`` is the combined offset THETA, ``selection_jitter`` the weighted RMS offset
    difference of the survivors from the system peer (clock_combine) and ``jitter`` the system
    jitter PSI = sqrt(selection_jitter^2 + system_peer.jitter^2) (section 11.2.3).  Without
    a system peer both are 0 and ``survivors`` is empty.
    """

    truechimers: list[Candidate] = field(default_factory=list)
    falsetickers: list[Candidate] = field(default_factory=list)
    survivors: list[Candidate] = field(default_factory=list)
    system_peer: Candidate | None = None
    offset: float = 0.0
    jitter: float = 0.0
    unfit: list[Candidate] = field(default_factory=list)
    selection_jitter: float = 0.0
    interval: tuple[float, float] | None = None


def root_distance(c: Candidate, now: float) -> float:
    """Root synchronization distance lambda of a candidate (RFC 5905 A.5.5.2)."""
    return (max(MINDISP, c.root_delay + c.delay) / 2.0 + c.root_dispersion + c.dispersion
            + PHI * max(0.0, now - c.epoch) + c.jitter)


def fit(c: Candidate, now: float, *, maxdist: float = MAXDIST) -> bool:
    """True when the candidate may be used for synchronization (RFC 5905 A.5.5.3).

    Unfit: leap NOSYNC, stratum >= MAXSTRAT, root distance above ``maxdist`` plus PHI times
    its poll interval, or nothing heard in the last eight polls (reach 0).  The loop check
    (refid equal to one of our addresses or to the system refid) belongs to the caller.
    """
    if c.leap == NOSYNC or c.stratum >= MAXSTRAT:
        return False
    if root_distance(c, now) > maxdist + PHI * 2.0**c.poll:
        return False
    return c.reach != 0


def _intersection(candidates: Sequence[Candidate], distances: Sequence[float]
                  ) -> tuple[float, float] | None:
    """Marzullo intersection of the correctness intervals offset +- distance (section 11.2.1).

    Returns the smallest interval [low, high] containing points of the largest number of
    intervals, provided that number is a strict majority, else None.
    """
    n = len(candidates)
    # Endpoint tuples (edge, type): lowpoints (-1) sort before highpoints (+1) at the same
    # edge so that intervals that merely touch count as overlapping.
    edges = sorted([(c.offset - d, -1) for c, d in zip(candidates, distances)]
                   + [(c.offset + d, +1) for c, d in zip(candidates, distances)])
    allow = 0
    while 2 * allow < n:
        low = high = None
        chime = 0
        for edge, kind in edges:
            chime -= kind
            if chime >= n - allow:
                low = edge
                break
        chime = 0
        for edge, kind in reversed(edges):
            chime += kind
            if chime >= n - allow:
                high = edge
                break
        if low is not None and high is not None and high >= low:
            return (low, high)
        allow += 1
    return None


def _combine(survivors: Sequence[Candidate], peer: Candidate, now: float
             ) -> tuple[float, float]:
    """Offset and selection jitter weighted by 1/root distance (RFC 5905 A.5.5.5)."""
    y = z = w = 0.0
    for c in survivors:
        x = root_distance(c, now)
        y += 1.0 / x
        z += c.offset / x
        w += (c.offset - peer.offset) ** 2 / x
    return z / y, math.sqrt(w / y)


def select(candidates: Sequence[Candidate], now: float, *, min_survivors: int = NMIN,
           current_peer: object | None = None, maxdist: float = MAXDIST) -> Selection:
    """Run selection, cluster and combine over ``candidates`` (RFC 5905 A.5.5.1, A.5.5.5).

    ``current_peer`` is the key (or Candidate) of the present system peer: it is kept when it
    survives at the stratum of the best survivor, to avoid clock hopping.  A prefer peer that
    survives always becomes the system peer.
    """
    if isinstance(current_peer, Candidate):
        current_peer = current_peer.key
    result = Selection()
    usable: list[Candidate] = []
    for c in candidates:
        (usable if fit(c, now, maxdist=maxdist) else result.unfit).append(c)
    if not usable:
        return result

    distances = [root_distance(c, now) for c in usable]
    interval = _intersection(usable, distances)
    if interval is None:
        result.falsetickers = usable
        return result
    result.interval = interval
    low, high = interval
    for c, d in zip(usable, distances):
        if c.offset + d < low or c.offset - d > high:
            result.falsetickers.append(c)
        else:
            result.truechimers.append(c)
    if len(result.truechimers) < NSANE:
        return result

    # Cluster: rank by stratum then root distance, discard the outlier of largest selection
    # jitter until the stop conditions of section 11.2.2 hold.
    survivors = sorted(result.truechimers,
                       key=lambda c: maxdist * c.stratum + root_distance(c, now))
    while len(survivors) > max(1, min_survivors):
        count = len(survivors)
        min_peer_jitter = min(c.jitter for c in survivors)
        worst, worst_jitter = survivors[0], -1.0
        for c in survivors:
            sel = math.sqrt(sum((c.offset - q.offset) ** 2 for q in survivors) / (count - 1))
            if sel > worst_jitter:
                worst, worst_jitter = c, sel
        if worst_jitter <= min_peer_jitter or worst.prefer:
            break
        survivors.remove(worst)
    result.survivors = survivors

    preferred = [c for c in survivors if c.prefer]
    current = [c for c in survivors if current_peer is not None and c.key == current_peer]
    if preferred:
        peer = preferred[0]
    elif current and current[0].stratum == survivors[0].stratum:
        peer = current[0]
    else:
        peer = survivors[0]
    result.system_peer = peer
    offset, selection_jitter = _combine(survivors, peer, now)
    result.offset = peer.offset if peer.prefer else offset
    result.selection_jitter = selection_jitter
    result.jitter = math.sqrt(selection_jitter**2 + peer.jitter**2)
    return result
