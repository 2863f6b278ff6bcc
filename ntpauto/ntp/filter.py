"""The clock filter algorithm of the peer process (RFC 5905 section 10, appendix A.5.2).

Each association keeps the last :data:`~ntpauto.ntp.constants.NSTAGE` sample tuples
(offset, delay, dispersion, epoch) in a shift register.  Every new sample ages the stored
dispersions by PHI per second, then the stage with the lowest delay is chosen: its offset and
delay become the peer offset and delay, the peer dispersion is the 1/2^(i+1)-weighted sum of
the stage dispersions in delay order and the peer jitter is the RMS difference between the
valid offsets and the chosen one (bounded below by the precision).

Deviations from the appendix code, which has known slips (it shifts the register the wrong
way, never sorts, accumulates ``p->disp`` without clearing it), follow ntpd 4.2.8:

* stages whose dispersion reached MAXDISP (the dummy tuples of an empty register and the
  ``(0, MAXDISP, MAXDISP)`` tuple the poll process shifts in for a missed poll) are invalid:
  they sort after every valid stage and take no part in the jitter;
* the jitter is ``sqrt(sum / (n - 1))`` (an RMS), not ``sqrt(sum) / (n - 1)``;
* when no valid stage remains only the dispersion is updated and nothing is returned.

Sans I/O: every call takes ``now`` (seconds) explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ntpauto.ntp.constants import MAXDISP, NSTAGE, PHI, PRECISION, SGATE


class FilterStage(NamedTuple):
    """One clock filter register stage (RFC 5905 section 10)."""

    offset: float
    delay: float
    dispersion: float
    epoch: float


@dataclass
class FilterResult:
    """New peer variables produced by the clock filter; ``epoch`` is the chosen sample's time."""

    offset: float
    delay: float
    dispersion: float
    jitter: float
    epoch: float


_EMPTY = FilterStage(0.0, MAXDISP, MAXDISP, 0.0)


class ClockFilter:
    """The eight-stage clock filter of one association (RFC 5905 A.5.2 ``clock_filter``)."""

    def __init__(self, *, precision: int = PRECISION) -> None:
        """Start with every stage holding the dummy tuple (0, MAXDISP, MAXDISP, 0).

        ``precision`` (log2 s) is the system precision bounding the jitter from below.
        """
        self._floor = 2.0**precision
        self.reset()

    def reset(self) -> None:
        """Return to the initial state (RFC 5905 ``clear``): empty register, no peer sample."""
        self._stages: list[FilterStage] = [_EMPTY] * NSTAGE
        self._updated: float | None = None
        self._used: float | None = None
        self._offset = 0.0
        self._delay = 0.0
        self._dispersion = MAXDISP
        self._jitter = self._floor

    # -- peer variables ---------------------------------------------------------------------

    @property
    def offset(self) -> float:
        """Peer offset (theta), s."""
        return self._offset

    @property
    def delay(self) -> float:
        """Peer round-trip delay (delta), s."""
        return self._delay

    @property
    def dispersion(self) -> float:
        """Peer dispersion (epsilon), s, as of :attr:`updated`."""
        return self._dispersion

    @property
    def jitter(self) -> float:
        """Peer jitter (psi), s."""
        return self._jitter

    @property
    def epoch(self) -> float:
        """Time of the last sample handed to the system process (RFC ``p.t``); 0 before."""
        return 0.0 if self._used is None else self._used

    @property
    def updated(self) -> float:
        """Time of the last :meth:`add`, up to which the dispersions are aged; 0 before."""
        return 0.0 if self._updated is None else self._updated

    def stages(self) -> list[FilterStage]:
        """The register, newest stage first."""
        return list(self._stages)

    # -- the algorithm ----------------------------------------------------------------------

    def add(self, offset: float, delay: float, dispersion: float, now: float,
            *, poll: int | None = None) -> FilterResult | None:
        """Shift a sample in and recompute the peer variables.

        Returns the new peer variables when the chosen (lowest-delay) sample is newer than the
        last one returned, otherwise None (RFC: "use a sample only once and never a sample
        older than the latest one").  A missed poll is ``add(0.0, MAXDISP, MAXDISP, now)``;
        such a stage never wins over a real one.  When ``poll`` (the system poll, log2 s) is
        given, the popcorn spike suppressor of A.5.2 also drops a chosen sample whose offset
        jumps more than SGATE jitters within two poll intervals of the last one used.  The
        gate uses the jitter from before this sample: the jitter recomputed around the spike
        itself is about as large as the spike, so the gate could never trip.  As in A.5.2 the
        peer variables still move to the spike, so only an isolated spike is dropped.
        """
        age = 0.0 if self._updated is None else max(0.0, now - self._updated) * PHI
        self._updated = now
        aged = [s._replace(dispersion=min(MAXDISP, s.dispersion + age))
                for s in self._stages[:NSTAGE - 1]]
        self._stages = [FilterStage(offset, delay, min(MAXDISP, dispersion), now), *aged]

        def invalid(stage: FilterStage) -> bool:
            return stage.dispersion >= MAXDISP

        # Stable sort: among equal delays the newer stage comes first.
        ordered = sorted(self._stages, key=lambda s: (invalid(s), s.delay))
        self._dispersion = sum(s.dispersion / 2.0 ** (i + 1) for i, s in enumerate(ordered))
        valid = [s for s in ordered if not invalid(s)]
        if not valid:
            return None

        best = valid[0]
        previous_offset, previous_jitter = self._offset, self._jitter
        squares = sum((s.offset - best.offset) ** 2 for s in valid)
        rms = math.sqrt(squares / (len(valid) - 1)) if len(valid) > 1 else 0.0
        self._jitter = max(rms, self._floor)
        self._offset = best.offset
        self._delay = best.delay

        if self._used is not None and best.epoch <= self._used:
            return None
        if (poll is not None and self._used is not None
                and abs(best.offset - previous_offset) > SGATE * previous_jitter
                and best.epoch - self._used < 2.0 * 2.0**poll):
            return None
        self._used = best.epoch
        return FilterResult(self._offset, self._delay, self._dispersion, self._jitter,
                            best.epoch)
