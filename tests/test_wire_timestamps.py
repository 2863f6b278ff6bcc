"""Tests for ntpauto.wire.timestamps: NTP formats and era-aware conversion."""

import pytest

from ntpauto.wire.timestamps import (
    NTP_UNIX_OFFSET,
    from_short,
    ntp_seconds,
    ntp_seconds_to_unix,
    ntp_to_unix,
    to_short,
    ts_diff,
    unix_to_ntp,
)

ERA1_START = 2**32 - NTP_UNIX_OFFSET  # 2036-02-07 06:28:16 UTC as Unix time


def test_unix_epoch_maps_to_ntp_offset():
    """1970-01-01 is 2208988800 s after the NTP epoch."""
    assert unix_to_ntp(0.0) == NTP_UNIX_OFFSET << 32


def test_fraction_encoding():
    """Half a second is 2**31 in the fraction field."""
    assert unix_to_ntp(1.5) & 0xFFFFFFFF == 1 << 31


@pytest.mark.parametrize("t", [0.0, 1_700_000_000.25, ERA1_START - 0.5, ERA1_START,
                               ERA1_START + 0.75, ERA1_START + 86400 * 365.0])
def test_round_trip_across_2036(t):
    """Conversions are exact to the fraction's resolution on both sides of the rollover."""
    assert ntp_to_unix(unix_to_ntp(t), pivot=t) == pytest.approx(t, abs=1e-9)


def test_era_one_decodes_with_default_pivot():
    """A timestamp just after the 2036 rollover (small seconds field) is read as era 1."""
    ts = unix_to_ntp(ERA1_START + 10)
    assert ts >> 32 == 10
    assert ntp_to_unix(ts) == pytest.approx(ERA1_START + 10)


def test_era_zero_before_rollover_with_default_pivot():
    """A 2026 timestamp is read in era 0."""
    assert ntp_to_unix(unix_to_ntp(1_795_450_024.5)) == pytest.approx(1_795_450_024.5)


def test_difference_across_rollover():
    """ts_diff is right when the two stamps straddle the era boundary."""
    before = unix_to_ntp(ERA1_START - 0.25)
    after = unix_to_ntp(ERA1_START + 0.5)
    assert ts_diff(after, before) == pytest.approx(0.75)
    assert ts_diff(before, after) == pytest.approx(-0.75)


def test_ntp_seconds_era_aware():
    """32-bit Autokey stamps convert back in the era nearest the pivot."""
    s = ntp_seconds(ERA1_START + 5)
    assert s == 5
    assert ntp_seconds_to_unix(s, pivot=ERA1_START) == ERA1_START + 5


def test_short_format():
    """The 16.16 short format round-trips and clamps negative values to zero."""
    assert to_short(1.5) == 0x00018000
    assert from_short(0x00018000) == 1.5
    assert to_short(-1.0) == 0
    assert to_short(1e9) == 0xFFFFFFFF
