"""Implementations of :class:`ntpauto.interfaces.IClock`: the host's clock and a simulated one.

The system clock is read-only unless the discipline is enabled (``enable ntp``); tests never
adjust it.  The simulated clock has its own offset and frequency error relative to a true
time source (normally the reactor's ``seconds()`` of a ``task.Clock``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from zope.interface import implementer

from ntpauto.interfaces import IClock


@implementer(IClock)
class SystemClock:
    """The host's real-time clock.  ``step``/``adjust`` change it and need privileges."""

    now = staticmethod(time.time)
    """Unix seconds from the host clock: ``time.time`` itself, so that reading the clock on
    the server's hot path (twice per reply) costs no Python call."""

    def precision(self) -> int:
        """log2 of the time to read the clock, as ntpd measures it: the smallest positive
        step between successive readings, never finer than the clock's resolution."""
        step = max(time.get_clock_info("time").resolution, 1e-9)
        smallest = None
        last = time.time_ns()
        for _ in range(64):
            now = time.time_ns()
            if now > last and (smallest is None or now - last < smallest):
                smallest = now - last
            last = now
        if smallest is not None:
            step = max(step, smallest * 1e-9)
        return max(math.ceil(math.log2(step)), -30)

    def step(self, offset: float) -> None:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + offset)

    def adjust(self, offset: float) -> None:
        # Small per-second phase corrections (RFC 5905 clock_adjust) are applied as steps of
        # microseconds; a kernel-discipline (adjtimex) backend is a later refinement.
        if offset:
            self.step(offset)


@implementer(IClock)
class SimulatedClock:
    """A clock driven by a true time source with a fixed offset and frequency error (ppm).

    ``reading = true + offset + (true - origin) * ppm * 1e-6``.  ``step``/``adjust`` move
    ``offset``, so a disciplined simulated clock converges on true time.
    """

    def __init__(self, true_time: Callable[[], float], offset: float = 0.0,
                 ppm: float = 0.0, epoch: float = 1_795_000_000.0,
                 precision: int = -20) -> None:
        self._true_time = true_time
        self.offset = offset
        self.ppm = ppm
        self.epoch = epoch
        self._origin = true_time()
        self._precision = precision
        self.steps: list[float] = []

    def error(self) -> float:
        """How far this clock reads from true time, in seconds."""
        elapsed = self._true_time() - self._origin
        return self.offset + elapsed * self.ppm * 1e-6

    def now(self) -> float:
        return self.epoch + self._true_time() + self.error()

    def precision(self) -> int:
        return self._precision

    def step(self, offset: float) -> None:
        self.offset += offset
        self.steps.append(offset)

    def adjust(self, offset: float) -> None:
        self.offset += offset
