"""The clock discipline (RFC 5905 section 11.3 and 12, appendices A.5.5.6, A.5.5.7, A.5.6.1).

:class:`Discipline` is the hybrid PLL/FLL feedback loop with its state machine (NSET, FSET,
SPIK, FREQ, SYNC), the poll-interval adjustment and the once-a-second clock-adjust process.
It drives an injected :class:`~ntpauto.interfaces.IClock`: ``step`` for steps and ``adjust``
for the per-second phase and frequency corrections.

Sign convention (as ntpd): an *offset* is the correction the local clock needs
(server minus local; positive means the local clock is behind) and :attr:`Discipline.frequency`
is the correction applied each second, in s/s.  A clock that gains 20 ppm therefore
converges to ``frequency_ppm == -20``; this is also what the drift file holds.

Deviations from the appendix code, all as ntpd 4.2.8 does it: PLL is 16 rather than 65536
(see :data:`~ntpauto.ntp.constants.PLL`); the SYNC state sets SPIK (the code's ``state = SPIK``
misses the ``c.``) and ignores the outlier; FREQ moves to SYNC once its frequency is measured;
the clock jitter restarts at the precision after a step; the wander is the RMS of the
frequency *changes*.  A step or panic threshold of 0 (or less) disables that check.

Sans I/O: every call takes ``now`` (seconds) explicitly.
"""

from __future__ import annotations

import enum
import math
import os
from pathlib import Path

from ntpauto.interfaces import IClock
from ntpauto.ntp.constants import (
    ALLAN,
    AVG,
    FLL,
    LIMIT,
    MAXFREQ,
    PANICT,
    PGATE,
    PLL,
    STEPT,
    WATCH,
)


class DisciplineAction(enum.Enum):
    """Return codes of ``local_clock`` (RFC 5905 A.1.1)."""

    IGNORE = 0
    SLEW = 1
    STEP = 2
    PANIC = 3


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class Discipline:
    """The clock discipline loop of RFC 5905 A.5.5.6 ``local_clock`` and A.5.6.1.

    ``frequency_ppm`` is the initial frequency correction (from the drift file); when given
    the loop starts in FSET, otherwise in NSET and measures the frequency directly during the
    first ``stepout`` seconds (FREQ state).
    """

    def __init__(self, clock: IClock, *, step_threshold: float = STEPT,
                 panic_threshold: float = PANICT, stepout: float = WATCH,
                 frequency_ppm: float | None = None, poll: int = 6) -> None:
        self.clock = clock
        self.step_threshold = step_threshold
        self.panic_threshold = panic_threshold
        self.stepout = stepout
        self._precision = 2.0 ** clock.precision()
        #: State: "NSET", "FSET", "SPIK", "FREQ" or "SYNC".
        self.state = "NSET" if frequency_ppm is None else "FSET"
        #: Residual phase correction still to be slewed, s (RFC ``c.offset``).
        self.offset = 0.0
        #: Frequency correction, s/s (RFC ``c.freq``).
        self.frequency = _clamp((frequency_ppm or 0.0) * 1e-6, -MAXFREQ, MAXFREQ)
        #: Clock offset jitter, s (RFC ``c.jitter``).
        self.jitter = self._precision
        #: Clock frequency wander, s/s (RFC ``c.wander``).
        self.wander = 0.0
        #: System poll interval, log2 s (RFC ``s.poll``).
        self.poll = poll
        #: Poll-adjust hysteresis counter (RFC ``c.count``).
        self.count = 0
        #: Last system jitter handed to :meth:`update` (for monitoring only).
        self.system_jitter = 0.0
        self._last = 0.0  # RFC c.last: offset of the last update used
        self._t: float | None = None  # RFC s.t: time of the last update used
        self._last_tick: float | None = None

    @property
    def frequency_ppm(self) -> float:
        """Frequency correction in ppm (the drift file value)."""
        return self.frequency * 1e6

    @property
    def last_update(self) -> float | None:
        """Time of the last update the loop used (RFC ``s.t``), None before the first."""
        return self._t

    def _rstclock(self, state: str, now: float, offset: float) -> None:
        """RFC 5905 A.5.5.7: enter ``state`` with the residual and last offset ``offset``."""
        self.state = state
        self._last = self.offset = offset
        self._t = now

    def update(self, offset: float, jitter_peer: float, now: float, *, minpoll: int,
               maxpoll: int) -> DisciplineAction:
        """Feed one combined offset (s) measured at ``now``; the RFC ``local_clock``.

        STEP has already called ``clock.step(offset)``; the caller must then reset every
        association.  PANIC means the offset exceeds the panic threshold: nothing was done.
        ``minpoll``/``maxpoll`` bound the system poll interval adjusted here.
        """
        self.system_jitter = jitter_peer
        self.poll = int(_clamp(self.poll, minpoll, maxpoll))
        if self.panic_threshold > 0 and abs(offset) > self.panic_threshold:
            return DisciplineAction.PANIC

        action = DisciplineAction.SLEW
        mu = 0.0 if self._t is None else now - self._t
        freq = 0.0
        if self.step_threshold > 0 and abs(offset) > self.step_threshold:
            if self.state == "SYNC":
                # First outlier: suspect a spike and wait for the stepout interval.
                self.state = "SPIK"
                return DisciplineAction.IGNORE
            if self.state == "FREQ":
                if mu < self.stepout:
                    return DisciplineAction.IGNORE
                freq = (offset - self.offset) / mu
            elif self.state == "SPIK" and mu < self.stepout:
                return DisciplineAction.IGNORE
            # NSET and FSET at once, FREQ and SPIK after the stepout interval.
            self.clock.step(offset)
            self.count = 0
            self.poll = minpoll
            self.jitter = self._precision
            action = DisciplineAction.STEP
            if self.state == "NSET":
                self._rstclock("FREQ", now, 0.0)
                return action
            self._rstclock("SYNC", now, 0.0)
        else:
            etemp = self.jitter**2
            dtemp = max(abs(offset - self._last), self._precision) ** 2
            self.jitter = math.sqrt(etemp + (dtemp - etemp) / AVG)
            if self.state == "NSET":
                # Measure the frequency directly over the stepout interval (FREQ state).
                self._rstclock("FREQ", now, offset)
                return DisciplineAction.IGNORE
            if self.state == "FSET":
                # Frequency known: correct the phase, the frequency from the next update on.
                self._rstclock("SYNC", now, offset)
            elif self.state == "FREQ":
                if mu < self.stepout:
                    return DisciplineAction.IGNORE
                freq = (offset - self.offset) / mu
                self._rstclock("SYNC", now, offset)
            else:  # SYNC, SPIK: PLL and FLL frequency contributions.
                interval = 2.0**self.poll
                if interval > ALLAN / 2:
                    gain = max(FLL - self.poll, AVG)
                    freq += (offset - self.offset) / (max(mu, ALLAN) * gain)
                dtemp = 4 * PLL * interval
                freq += offset * min(mu, interval) / (dtemp * dtemp)
                self._rstclock("SYNC", now, offset)

        self.frequency = _clamp(self.frequency + freq, -MAXFREQ, MAXFREQ)
        etemp = self.wander**2
        self.wander = math.sqrt(etemp + (freq * freq - etemp) / AVG)

        # Poll adjust: lengthen the poll while the offset stays within PGATE jitters.
        if abs(self.offset) < PGATE * self.jitter:
            self.count += self.poll
            if self.count > LIMIT:
                self.count = LIMIT
                if self.poll < maxpoll:
                    self.count = 0
                    self.poll += 1
        else:
            self.count -= self.poll << 1
            if self.count < -LIMIT:
                self.count = -LIMIT
                if self.poll > minpoll:
                    self.count = 0
                    self.poll -= 1
        return action

    def tick(self, now: float) -> None:
        """The once-a-second clock-adjust process (RFC 5905 A.5.6.1 ``clock_adjust``).

        Slews a fixed fraction of the residual offset plus the frequency correction through
        ``clock.adjust``.  If ticks were missed (``now`` advanced by more than a second) the
        corrections of the missed seconds are applied at once; a repeated ``now`` does nothing.
        """
        elapsed = 1.0 if self._last_tick is None else now - self._last_tick
        if elapsed <= 0:
            return
        self._last_tick = now
        gain = 1.0 / (PLL * min(2.0**self.poll, ALLAN))
        remaining = self.offset * (1.0 - gain) ** elapsed
        dtemp = self.offset - remaining
        self.offset = remaining
        self.clock.adjust(self.frequency * elapsed + dtemp)


def read_drift(path: str | os.PathLike[str]) -> float | None:
    """Read an ntpd drift file (one number, ppm); None when it does not exist.

    Raises ValueError naming the file when its content is not a finite number.
    """
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    fields = text.split()
    try:
        if len(fields) != 1:
            raise ValueError(text)
        value = float(fields[0])
    except ValueError:
        raise ValueError(f"{os.fspath(path)}: not a drift file (expected one number in ppm)"
                         ) from None
    if not math.isfinite(value):
        raise ValueError(f"{os.fspath(path)}: drift value {fields[0]!r} is not finite")
    return value


def write_drift(path: str | os.PathLike[str], ppm: float) -> None:
    """Write the frequency (ppm) to an ntpd drift file atomically (temporary file + rename)."""
    target = Path(path)
    temp = target.with_name(target.name + ".TEMP")
    with open(temp, "w", encoding="ascii") as handle:
        handle.write(f"{ppm:.3f}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)
