"""A node's best estimate of true time, with its error bound, without touching the host clock.

The node's NTP clock reads the host clock (or a simulated one); the system process knows
how far off it is.  While the clock discipline is off (the default) nothing corrects the
clock, so true time is the clock's reading plus the system offset (RFC 5905 theta: the
servers' time minus ours).  With ``enable ntp`` the discipline slews the clock itself and
only the offset it has not yet amortised remains to be added.  The error bound is the root
distance (RFC 5905 section 11.2: half the root delay plus the root dispersion, which grows
at PHI since the last clock update); while the discipline is off the root dispersion also
holds the measured offset, so the bound is conservative.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from attrs import frozen

from ntpauto.wire.packet import LEAP_UNSYNC

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["TimeEstimate", "estimate", "peer_proventic"]


@frozen
class TimeEstimate:
    """True time as the node knows it."""

    time: float
    """Unix seconds."""
    error: float
    """Seconds: true time lies within ``time ± error`` (infinite while unsynchronised)."""
    synchronised: bool
    """The node has time to give (its leap indicator is not 3)."""
    proventic: bool
    """The node's system peer is proventic: an Autokey association whose server proved
    its identity, or a reference clock (which has nothing to prove)."""
    leap: int
    stratum: int
    peer: tuple[str, int] | None
    """The system peer's address and port (None: none, or a reference clock's)."""


def peer_proventic(engine: Engine) -> bool:
    """True when the system peer is an Autokey association with PROV lit, an NTS
    association (its NTS-KE server's certificate chained to a trusted CA and named it) or a
    reference clock; False without a system peer or with one authenticated otherwise (a
    symmetric key proves a shared secret, not an identity)."""
    peer = engine.sys.peer
    assoc = engine.associations.get(peer) if peer is not None else None
    if assoc is None:
        return False
    if assoc.is_refclock:
        return True
    if assoc.nts is not None:
        return assoc.nts.keys is not None
    return assoc.autokey is not None and assoc.autokey.state.proventic


def estimate(engine: Engine, now: float) -> TimeEstimate:
    """The node's estimate of true time at reactor time ``now`` (see the module docstring)."""
    sys = engine.sys
    local = engine.clock.now()
    if sys.leap == LEAP_UNSYNC:
        return TimeEstimate(local, math.inf, False, False, sys.leap, sys.stratum, None)
    correction = engine.discipline.offset if engine.discipline is not None else sys.offset
    error = sys.root_delay / 2 + engine.system.root_dispersion(now)
    assoc = engine.associations.get(sys.peer) if sys.peer is not None else None
    peer = assoc.address if assoc is not None and not assoc.is_refclock else None
    return TimeEstimate(local + correction, error, True, peer_proventic(engine), sys.leap,
                        sys.stratum, peer)
