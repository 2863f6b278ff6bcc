"""Tests of the clock discipline (RFC 5905 section 11.3, appendices A.5.5.6-A.5.6.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.ntp.constants import PLL, WATCH
from ntpauto.ntp.discipline import Discipline, DisciplineAction, read_drift, write_drift


class TrueTime:
    """A true time source the test advances by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(offset: float = 0.0, ppm: float = 0.0, **kw: object
         ) -> tuple[TrueTime, SimulatedClock, Discipline]:
    """A simulated clock ``offset`` s ahead gaining ``ppm``, and a discipline driving it."""
    true = TrueTime()
    clock = SimulatedClock(true, offset=offset, ppm=ppm)
    return true, clock, Discipline(clock, **kw)


def run(true: TrueTime, clock: SimulatedClock, d: Discipline, seconds: int,
        poll_every: int = 64, minpoll: int = 6, maxpoll: int = 6) -> list[tuple]:
    """Tick once a second and feed the measured offset (true - clock) every poll."""
    log = []
    start = int(true.t)
    for s in range(start + 1, start + seconds + 1):
        true.t = float(s)
        d.tick(true.t)
        if s % poll_every == 0:
            action = d.update(-clock.error(), 0.0, true.t, minpoll=minpoll, maxpoll=maxpoll)
            log.append((s, action, d.state, clock.error(), d.frequency_ppm))
    return log


def test_converges_from_offset_and_frequency_error() -> None:
    """Starting 50 ms ahead and gaining 20 ppm, the loop locks to < 1 ms and about -20 ppm.

    The frequency is the correction applied, so a clock gaining 20 ppm needs -20 ppm.
    """
    true, clock, d = make(offset=0.05, ppm=20.0)
    log = run(true, clock, d, 8 * 3600)
    # NSET -> FREQ on the first update, FREQ for the stepout interval, then SYNC.
    assert log[0][1] is DisciplineAction.IGNORE and log[0][2] == "FREQ"
    first_sync = next(entry for entry in log if entry[2] == "SYNC")
    assert WATCH <= first_sync[0] <= WATCH + 128
    assert first_sync[4] == pytest.approx(-20.0, abs=0.01)  # the direct frequency measurement
    assert all(action is not DisciplineAction.STEP for _, action, *_ in log)
    assert clock.steps == []
    last_hour = [entry for entry in log if entry[0] > 7 * 3600]
    assert all(abs(err) < 0.001 for _, _, _, err, _ in last_hour)
    assert d.frequency_ppm == pytest.approx(-20.0, abs=1.0)
    assert d.state == "SYNC"


def test_known_frequency_locks_quickly() -> None:
    """With the drift file value (FSET), the phase is slewed from the first update on."""
    true, clock, d = make(offset=0.02, ppm=20.0, frequency_ppm=-20.0)
    assert d.state == "FSET"
    log = run(true, clock, d, 2 * 3600)
    assert log[0][1] is DisciplineAction.SLEW and log[0][2] == "SYNC"
    assert abs(clock.error()) < 0.001
    # The PLL integrates the initial 20 ms phase error into a transient frequency error.
    assert d.frequency_ppm == pytest.approx(-20.0, abs=1.0)


def test_tick_slews_fraction_of_offset_and_applies_frequency() -> None:
    """clock_adjust: each second offset/(PLL*2^poll) of the residual plus the frequency."""
    true, clock, d = make(frequency_ppm=10.0, poll=6)
    d.update(0.01, 0.0, 0.0, minpoll=6, maxpoll=6)  # FSET -> SYNC, residual 10 ms
    assert d.offset == 0.01
    true.t = 1.0
    before = clock.error()
    d.tick(1.0)
    step = 0.01 / (PLL * 64)
    assert clock.error() - before == pytest.approx(10e-6 + step)
    assert d.offset == pytest.approx(0.01 - step)
    d.tick(1.0)  # same second again: nothing
    assert d.offset == pytest.approx(0.01 - step)


def test_missed_ticks_are_caught_up() -> None:
    """Ticking after three seconds applies three seconds' worth of correction."""
    _, one, d1 = make(frequency_ppm=5.0)
    _, three, d3 = make(frequency_ppm=5.0)
    for d in (d1, d3):
        d.update(0.004, 0.0, 0.0, minpoll=6, maxpoll=6)
        d.tick(0.0)
    for t in (1.0, 2.0, 3.0):
        d1.tick(t)
    d3.tick(3.0)
    assert three.offset == pytest.approx(one.offset)
    assert d3.offset == pytest.approx(d1.offset)


def test_spike_is_ignored_then_stepped_after_stepout() -> None:
    """In SYNC an offset above STEPT means SPIK; it is stepped once WATCH has passed."""
    true, clock, d = make(frequency_ppm=0.0)
    assert d.update(0.001, 0.0, 64.0, minpoll=6, maxpoll=10) is DisciplineAction.SLEW
    assert d.state == "SYNC"
    assert d.update(0.3, 0.0, 128.0, minpoll=6, maxpoll=10) is DisciplineAction.IGNORE
    assert d.state == "SPIK"
    for t in range(192, 64 + int(WATCH), 64):
        assert d.update(0.3, 0.0, float(t), minpoll=6, maxpoll=10) is DisciplineAction.IGNORE
    assert clock.steps == []
    action = d.update(0.3, 0.0, 64.0 + WATCH, minpoll=6, maxpoll=10)
    assert action is DisciplineAction.STEP
    assert clock.steps == [0.3]
    assert d.state == "SYNC"
    assert d.poll == 6
    assert d.offset == 0.0


def test_spike_followed_by_inlier_returns_to_sync_without_step() -> None:
    """A single outlier is forgotten when the next update is within STEPT."""
    _, clock, d = make(frequency_ppm=0.0)
    d.update(0.001, 0.0, 64.0, minpoll=6, maxpoll=10)
    d.update(-0.5, 0.0, 128.0, minpoll=6, maxpoll=10)
    assert d.state == "SPIK"
    assert d.update(0.002, 0.0, 192.0, minpoll=6, maxpoll=10) is DisciplineAction.SLEW
    assert d.state == "SYNC"
    assert clock.steps == []


def test_first_large_offset_is_stepped_at_once() -> None:
    """NSET (no drift file): a large first offset is stepped immediately, then FREQ."""
    _, clock, d = make(offset=2.0)
    assert d.update(-2.0, 0.0, 10.0, minpoll=6, maxpoll=10) is DisciplineAction.STEP
    assert clock.steps == [-2.0]
    assert clock.error() == pytest.approx(0.0)
    assert d.state == "FREQ"


def test_fset_large_offset_stepped_at_once() -> None:
    """FSET (drift file read): a large first offset is stepped too, then SYNC."""
    _, clock, d = make(offset=-1.0, frequency_ppm=3.0)
    assert d.update(1.0, 0.0, 10.0, minpoll=6, maxpoll=10) is DisciplineAction.STEP
    assert clock.steps == [1.0]
    assert d.state == "SYNC"
    assert d.frequency_ppm == pytest.approx(3.0)


def test_panic_threshold_refuses_to_act() -> None:
    """Offsets beyond PANICT return PANIC and leave the clock alone."""
    _, clock, d = make()
    assert d.update(5000.0, 0.0, 10.0, minpoll=6, maxpoll=10) is DisciplineAction.PANIC
    assert clock.steps == []
    assert d.state == "NSET"
    relaxed = Discipline(clock, panic_threshold=0)
    assert relaxed.update(5000.0, 0.0, 10.0, minpoll=6, maxpoll=10) is DisciplineAction.STEP
    assert clock.steps == [5000.0]


def test_step_threshold_zero_never_steps() -> None:
    """With the step threshold disabled large offsets are slewed, never stepped."""
    _, clock, d = make(frequency_ppm=0.0, step_threshold=0)
    assert d.update(0.5, 0.0, 10.0, minpoll=6, maxpoll=10) is DisciplineAction.SLEW
    assert clock.steps == []
    assert d.offset == 0.5


def test_poll_interval_rises_when_offsets_are_quiet() -> None:
    """Offsets well inside PGATE jitters lengthen the poll up to maxpoll, not beyond."""
    _, _, d = make(frequency_ppm=0.0, poll=6)
    t = 0.0
    for k in range(200):
        t += 64.0
        d.update(0.002 if k % 2 else -0.002, 0.0, t, minpoll=6, maxpoll=8)
    assert d.poll == 8
    # Large steady offsets against a small jitter bring it back down to minpoll.
    for _ in range(200):
        t += 64.0
        d.update(0.05, 0.0, t, minpoll=6, maxpoll=8)
    assert d.poll == 6


def test_frequency_clamped_to_maxfreq() -> None:
    """The drift value is limited to +-500 ppm."""
    _, _, d = make(frequency_ppm=900.0)
    assert d.frequency_ppm == pytest.approx(500.0)


def test_driftfile_round_trip(tmp_path: Path) -> None:
    """write_drift then read_drift gives the value back; no temporary file is left."""
    path = tmp_path / "ntp.drift"
    assert read_drift(path) is None
    write_drift(path, -20.123)
    assert read_drift(path) == pytest.approx(-20.123)
    write_drift(str(path), 4.5)
    assert read_drift(str(path)) == pytest.approx(4.5)
    assert path.read_text() == "4.500\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ntp.drift"]


@pytest.mark.parametrize("content", ["garbage\n", "", "1.0 2.0\n", "nan\n"])
def test_driftfile_garbage_names_the_path(tmp_path: Path, content: str) -> None:
    """A drift file that is not one finite number is a ValueError naming the file."""
    path = tmp_path / "ntp.drift"
    path.write_text(content)
    with pytest.raises(ValueError, match="ntp.drift"):
        read_drift(path)
