"""NTP timestamp formats and their conversion to and from Unix time (RFC 5905 section 6).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                            Seconds                            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                            Fraction                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                           NTP Timestamp Format (64 bits)

The seconds field wraps every 2**32 s (era 0 ends on 2036-02-07).  Conversions to Unix
time are era-aware: the era is chosen so that the result lies within 68 years of a pivot.
Differences between two 64-bit timestamps are taken modulo 2**64, so on-wire arithmetic
is correct across the rollover without knowing the era at all.
"""

from __future__ import annotations

import math

NTP_UNIX_OFFSET = 2208988800
"""Seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch)."""

ERA_SECONDS = 1 << 32
_FRAC = 1 << 32
_MASK64 = (1 << 64) - 1
_HALF64 = 1 << 63

DEFAULT_PIVOT = 1_700_000_000.0
"""Unix time used when no pivot is given (2023): dates 1955-2091 decode correctly."""


def unix_to_ntp(t: float) -> int:
    """Unix seconds to a 64-bit NTP timestamp (the era number is dropped, as on the wire)."""
    # One multiplication: a float of Unix time has no more precision than this keeps, and
    # masking to 64 bits drops the era as the wire does.
    return int((t + NTP_UNIX_OFFSET) * 4294967296.0) & _MASK64


def ntp_to_unix(ts: int, pivot: float | None = None) -> float:
    """64-bit NTP timestamp to Unix seconds, choosing the era closest to ``pivot``."""
    if pivot is None:
        pivot = DEFAULT_PIVOT
    seconds = (ts >> 32) - NTP_UNIX_OFFSET
    fraction = (ts & 0xFFFFFFFF) / _FRAC
    # Put `seconds` in the era that brings it nearest to the pivot.
    era_shift = round((pivot - seconds) / ERA_SECONDS)
    return seconds + era_shift * ERA_SECONDS + fraction


def ntp_seconds(t: float) -> int:
    """Unix seconds to 32-bit NTP seconds (the integer part only), as Autokey stamps use."""
    return (math.floor(t) + NTP_UNIX_OFFSET) % ERA_SECONDS


def ntp_seconds_to_unix(s: int, pivot: float | None = None) -> int:
    """32-bit NTP seconds to Unix seconds, era-aware like :func:`ntp_to_unix`."""
    return math.floor(ntp_to_unix(s << 32, pivot))


def ts_diff(a: int, b: int) -> float:
    """``a - b`` in seconds for two 64-bit NTP timestamps, correct across the era rollover."""
    d = (a - b) & _MASK64
    if d >= _HALF64:
        d -= 1 << 64
    return d / _FRAC


def to_short(seconds: float) -> int:
    """Seconds to the 32-bit NTP short format (16.16), clamped to its range."""
    value = int(round(seconds * 65536.0))
    return min(max(value, 0), 0xFFFFFFFF)


def from_short(value: int) -> float:
    """32-bit NTP short format (16.16) to seconds."""
    return value / 65536.0
