"""Tests of the clock filter algorithm (RFC 5905 section 10, appendix A.5.2)."""

from __future__ import annotations

import math

import pytest

from ntpauto.ntp.constants import MAXDISP, NSTAGE, PHI
from ntpauto.ntp.filter import ClockFilter, FilterResult, FilterStage

FLOOR = 2.0**-20


def test_initial_register_holds_dummy_tuples() -> None:
    """A new filter has NSTAGE dummy stages (0, MAXDISP, MAXDISP, 0) and no peer sample."""
    f = ClockFilter()
    assert f.stages() == [FilterStage(0.0, MAXDISP, MAXDISP, 0.0)] * NSTAGE
    assert f.dispersion == MAXDISP
    assert f.epoch == 0.0


def test_first_sample_is_returned_with_weighted_dispersion() -> None:
    """The first sample wins; the peer dispersion weights the seven dummies behind it."""
    f = ClockFilter()
    result = f.add(0.002, 0.03, 0.001, 100.0)
    assert result is not None
    assert (result.offset, result.delay, result.epoch) == (0.002, 0.03, 100.0)
    expected = 0.001 / 2 + sum(MAXDISP / 2.0 ** (i + 1) for i in range(1, NSTAGE))
    assert result.dispersion == pytest.approx(expected)
    assert result.jitter == FLOOR
    assert f.offset == 0.002 and f.delay == 0.03 and f.epoch == 100.0


def test_lowest_delay_sample_is_chosen_and_used_once() -> None:
    """The lowest-delay stage is chosen; once used, an older winner yields None."""
    f = ClockFilter()
    assert f.add(0.001, 0.05, 0.0, 0.0) is not None
    second = f.add(0.002, 0.02, 0.0, 64.0)
    assert second is not None and second.offset == 0.002 and second.epoch == 64.0
    # A worse (higher delay) newer sample: the winner is still the t=64 one, already used.
    assert f.add(0.003, 0.08, 0.0, 128.0) is None
    assert f.offset == 0.002
    assert f.delay == 0.02
    assert f.epoch == 64.0
    # A better newer sample is returned again.
    fourth = f.add(-0.001, 0.01, 0.0, 192.0)
    assert fourth is not None and fourth.offset == -0.001 and fourth.epoch == 192.0


def test_jitter_is_rms_of_differences_from_chosen_offset() -> None:
    """Jitter = sqrt(sum (theta_j - theta_0)^2 / (n - 1)) over the valid stages."""
    f = ClockFilter()
    f.add(0.003, 0.04, 0.0, 0.0)
    f.add(-0.004, 0.05, 0.0, 1.0)
    result = f.add(0.0, 0.01, 0.0, 2.0)
    assert result is not None
    assert result.offset == 0.0
    assert result.jitter == pytest.approx(math.sqrt((0.003**2 + 0.004**2) / 2))
    assert f.jitter == result.jitter


def test_jitter_never_below_precision() -> None:
    """Identical offsets give the precision as jitter, not zero."""
    f = ClockFilter(precision=-10)
    f.add(0.5e-3, 0.02, 0.0, 0.0)
    result = f.add(0.5e-3, 0.01, 0.0, 1.0)
    assert result is not None
    assert result.jitter == 2.0**-10


def test_dispersion_ages_with_phi() -> None:
    """Each add ages the stored stages by PHI times the time since the previous add."""
    f = ClockFilter()
    f.add(0.001, 0.02, 0.001, 0.0)
    f.add(0.001, 0.03, 0.002, 1000.0)
    stages = f.stages()
    assert stages[0] == FilterStage(0.001, 0.03, 0.002, 1000.0)
    assert stages[1].dispersion == pytest.approx(0.001 + PHI * 1000.0)
    assert stages[2].dispersion == MAXDISP  # aged dummies stay clamped at MAXDISP
    assert f.updated == 1000.0
    # Peer dispersion: the chosen (delay .02) stage first, then the new one, then dummies.
    expected = ((0.001 + PHI * 1000.0) / 2 + 0.002 / 4
                + sum(MAXDISP / 2.0 ** (i + 1) for i in range(2, NSTAGE)))
    assert f.dispersion == pytest.approx(expected)


def test_timeout_sample_does_not_win() -> None:
    """A missed poll (0, MAXDISP, MAXDISP) never becomes the chosen sample."""
    f = ClockFilter()
    f.add(0.004, 0.02, 0.001, 0.0)
    for k in range(1, NSTAGE):
        assert f.add(0.0, MAXDISP, MAXDISP, 64.0 * k) is None
        assert f.offset == 0.004
        assert f.delay == 0.02
    assert f.stages()[0] == FilterStage(0.0, MAXDISP, MAXDISP, 64.0 * (NSTAGE - 1))


def test_timeouts_raise_dispersion_and_a_full_register_of_them_returns_nothing() -> None:
    """Timeouts push dispersion up; once they fill the register only dispersion changes."""
    f = ClockFilter()
    first = f.add(0.004, 0.02, 0.001, 0.0)
    assert first is not None
    for k in range(1, NSTAGE + 1):
        f.add(0.0, MAXDISP, MAXDISP, 64.0 * k)
    assert all(s.dispersion == MAXDISP for s in f.stages())
    assert f.dispersion == pytest.approx(MAXDISP * (1 - 2.0**-NSTAGE))
    assert f.offset == 0.004  # the last good offset is kept
    # A real sample afterwards is used at once.
    result = f.add(0.001, 0.05, 0.001, 64.0 * (NSTAGE + 1))
    assert result is not None and result.offset == 0.001


def test_timeout_between_samples_keeps_real_ranking() -> None:
    """With a timeout stage between two real ones the better real one wins."""
    f = ClockFilter()
    f.add(0.001, 0.03, 0.0, 0.0)
    f.add(0.0, MAXDISP, MAXDISP, 64.0)
    result = f.add(0.002, 0.01, 0.0, 128.0)
    assert result is not None
    assert result.offset == 0.002
    # The timeout takes no part in the jitter.
    assert result.jitter == pytest.approx(0.001)


def test_popcorn_spike_suppressed_only_when_poll_given() -> None:
    """A sudden offset jump within two polls is dropped as a popcorn spike (A.5.2)."""
    def primed() -> ClockFilter:
        f = ClockFilter()
        for k, off in enumerate([0.0010, 0.0011, 0.0009, 0.0010]):
            f.add(off, 0.02, 0.0, 64.0 * k)
        return f

    spiky = primed()
    assert spiky.add(0.5, 0.001, 0.0, 256.0, poll=6) is None
    # The spike persists: no longer isolated, so it is accepted.
    persisted = spiky.add(0.5, 0.001, 0.0, 320.0, poll=6)
    assert persisted is not None and persisted.offset == 0.5
    plain = primed()
    result = plain.add(0.5, 0.001, 0.0, 256.0)
    assert result is not None and result.offset == 0.5
    # Beyond two poll intervals the same jump is accepted.
    late = primed()
    assert late.add(0.5, 0.001, 0.0, 192.0 + 129.0, poll=6) is not None


def test_reset_returns_to_initial_state() -> None:
    """reset() empties the register and forgets the last used sample."""
    f = ClockFilter()
    f.add(0.001, 0.02, 0.0, 50.0)
    f.reset()
    assert f.stages() == [FilterStage(0.0, MAXDISP, MAXDISP, 0.0)] * NSTAGE
    assert f.epoch == 0.0
    again = f.add(0.003, 0.02, 0.0, 10.0)  # earlier than before the reset: still accepted
    assert isinstance(again, FilterResult) and again.offset == 0.003
