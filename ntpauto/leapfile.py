"""The IETF/NIST ``leap-seconds.list`` file: the leap second table and its SHA-1 check.

Format (one item per line)::

    #$ 3676924800                 last update, NTP seconds
    #@ 3928521600                 expiration, NTP seconds
    2272060800  10  # 1 Jan 1972  transition time (NTP seconds) and TAI-UTC from then on
    ...
    #h HEX HEX HEX HEX HEX        SHA-1 as five 32-bit hex groups

Other lines starting with ``#`` are comments.  The hash is SHA-1 over the decimal digits of
the ``#$`` value, the ``#@`` value and both numbers of every data line, concatenated without
whitespace; NIST drops leading zeros of a group, so each group is zero-filled to 8 digits.
A file without a ``#h`` line is rejected: ntpauto only uses verified tables.

The table feeds the Autokey LEAP values (interop.md section 5.5).  Times are era-0 NTP
seconds (seconds since 1900-01-01 UTC), the unit the file itself uses.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re

from attrs import field, frozen

from ntpauto.errors import FileLineError

__all__ = ["LeapFileError", "LeapTable", "leap_hash", "load_leapfile", "parse_leapfile"]

DAY = 86400
MIN_TAI_OFFSET = 10
"""TAI-UTC when the integer-second leap table starts (1972); no leap has happened by then."""

_NUMBER = re.compile(r"[0-9]+")
_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{1,8}")


class LeapFileError(FileLineError):
    """A leap-seconds file that is unreadable, malformed or fails its hash check.

    ``str()`` is ``path:line: message``, or ``path: message`` when ``line`` is 0 (the problem
    concerns the whole file).
    """


def _ascending(instance: LeapTable, attribute: object, value: tuple[tuple[int, int], ...]) -> None:
    times = [when for when, _ in value]
    if any(a >= b for a, b in zip(times, times[1:])):
        raise ValueError("leap table entries must be in strictly ascending time order")


@frozen
class LeapTable:
    """A verified leap second table: ``(transition time, TAI-UTC from then on)`` entries."""

    entries: tuple[tuple[int, int], ...] = field(converter=tuple, validator=_ascending)
    updated: int
    expires: int

    def _index(self, ntp_seconds: int) -> int:
        """Number of entries whose transition time is <= ``ntp_seconds``."""
        return bisect.bisect_right([when for when, _ in self.entries], ntp_seconds)

    def tai_offset(self, ntp_seconds: int) -> int:
        """TAI-UTC in effect at ``ntp_seconds``; 0 before the first entry."""
        index = self._index(ntp_seconds)
        return self.entries[index - 1][1] if index else 0

    def last_transition(self, ntp_seconds: int) -> int | None:
        """Time of the latest entry at or before ``ntp_seconds`` (start of the current era)."""
        index = self._index(ntp_seconds)
        return self.entries[index - 1][0] if index else None

    def next_transition(self, ntp_seconds: int) -> int | None:
        """Time of the first entry after ``ntp_seconds``, if one is scheduled."""
        index = self._index(ntp_seconds)
        return self.entries[index][0] if index < len(self.entries) else None

    def autokey_values(self, ntp_seconds: int) -> tuple[int, int, int]:
        """The Autokey LEAP response words ``(TAI offset, era start, expiration)``.

        reference: interop.md 5.5: expiration is the next transition + 7 days when one is
        known, else the era start + 25 days; all zero when the TAI offset is <= 10.
        """
        offset = self.tai_offset(ntp_seconds)
        start = self.last_transition(ntp_seconds)
        if offset <= MIN_TAI_OFFSET or start is None:
            return (0, 0, 0)
        upcoming = self.next_transition(ntp_seconds)
        expiration = upcoming + 7 * DAY if upcoming is not None else start + 25 * DAY
        return (offset, start, expiration)

    def expired(self, ntp_seconds: int) -> bool:
        """True once ``ntp_seconds`` reaches the file's ``#@`` expiration time."""
        return ntp_seconds >= self.expires


def leap_hash(updated: str, expires: str, entries: list[tuple[str, str]]) -> str:
    """The file's SHA-1 as 40 lower-case hex digits, from the numbers as written."""
    digest = hashlib.sha1()
    digest.update(updated.encode("ascii"))
    digest.update(expires.encode("ascii"))
    for when, offset in entries:
        digest.update(when.encode("ascii"))
        digest.update(offset.encode("ascii"))
    return digest.hexdigest()


def parse_leapfile(text: str, path: str = "<string>") -> LeapTable:
    """Parse and verify a ``leap-seconds.list`` text; ``path`` names it in messages."""
    stamps: dict[str, tuple[str, int]] = {}  # "#$"/"#@"/"#h" -> (value, line)
    entries: list[tuple[str, str]] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        tag = line[:2]
        if tag in ("#$", "#@", "#h"):
            if tag in stamps:
                raise LeapFileError(path, lineno, f"duplicate '{tag}' line (first on line "
                                                  f"{stamps[tag][1]})")
            value = line[2:].strip()
            if tag == "#h":
                value = _parse_hash(path, lineno, value)
            elif not _NUMBER.fullmatch(value):
                raise LeapFileError(path, lineno, f"'{tag}' needs NTP seconds, not {value!r}")
            stamps[tag] = (value, lineno)
            continue
        if line.startswith("#"):
            continue
        fields = line.split("#", 1)[0].split()
        if len(fields) != 2 or not all(_NUMBER.fullmatch(item) for item in fields):
            raise LeapFileError(path, lineno, "expected 'NTPSECONDS TAI-UTC [# comment]', got "
                                              f"{raw.strip()!r}")
        if entries and int(fields[0]) <= int(entries[-1][0]):
            raise LeapFileError(path, lineno, "leap second entries are not in ascending order")
        entries.append((fields[0], fields[1]))
        lines.append(lineno)
    for tag, what in (("#$", "last update"), ("#@", "expiration"), ("#h", "hash")):
        if tag not in stamps:
            raise LeapFileError(path, 0, f"no '{tag}' ({what}) line")
    if not entries:
        raise LeapFileError(path, 0, "no leap second entries")
    updated, expires = stamps["#$"][0], stamps["#@"][0]
    expected, hash_line = stamps["#h"]
    actual = leap_hash(updated, expires, entries)
    if actual != expected:
        raise LeapFileError(path, hash_line, f"SHA-1 hash mismatch: the file says {expected}, "
                                             f"its contents hash to {actual}")
    return LeapTable(
        entries=tuple((int(when), int(offset)) for when, offset in entries),
        updated=int(updated),
        expires=int(expires),
    )


def _parse_hash(path: str, lineno: int, value: str) -> str:
    """The ``#h`` groups as 40 lower-case hex digits."""
    groups = value.split()
    if len(groups) != 5 or not all(_HEX_GROUP.fullmatch(group) for group in groups):
        raise LeapFileError(path, lineno, "'#h' needs five groups of up to 8 hex digits, not "
                                          f"{value!r}")
    return "".join(group.lower().zfill(8) for group in groups)


def load_leapfile(path: str | os.PathLike) -> LeapTable:
    """Read, parse and verify the leap-seconds file at ``path``."""
    name = os.fspath(path)
    try:
        with open(name, encoding="ascii") as handle:
            text = handle.read()
    except OSError as exc:
        raise LeapFileError(name, 0, f"cannot read leap-seconds file: "
                                     f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LeapFileError(name, 0, "cannot read leap-seconds file: not ASCII text") from None
    return parse_leapfile(text, name)
