"""Tests for ntpauto.leapfile: parsing, hash verification and the table's lookups."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ntpauto.leapfile import LeapFileError, LeapTable, load_leapfile, parse_leapfile

DAY = 86400
UPDATED = 3676924800
EXPIRES = 3928521600
IERS = [
    (2272060800, 10), (2287785600, 11), (2303683200, 12), (2335219200, 13), (2366755200, 14),
    (2398291200, 15), (2429913600, 16), (2461449600, 17), (2492985600, 18), (2524521600, 19),
    (2571782400, 20), (2603318400, 21), (2634854400, 22), (2698012800, 23), (2776982400, 24),
    (2840140800, 25), (2871676800, 26), (2918937600, 27), (2950473600, 28), (2982009600, 29),
    (3029443200, 30), (3076704000, 31), (3124137600, 32), (3345062400, 33), (3439756800, 34),
    (3550089600, 35), (3644697600, 36), (3692217600, 37),
]
JAN_2017 = 3692217600
SYSTEM_LEAPFILE = Path("/usr/share/zoneinfo/leap-seconds.list")


def ntp(unix: int) -> int:
    """NTP seconds for a Unix time."""
    return unix + 2208988800


def nist_hash(updated: int, expires: int, entries: list[tuple[int, int]]) -> str:
    """The ``#h`` value as NIST writes it: five words, leading zeros of each word dropped."""
    text = f"{updated}{expires}" + "".join(f"{when}{offset}" for when, offset in entries)
    digest = hashlib.sha1(text.encode()).hexdigest()
    return " ".join(format(int(digest[i:i + 8], 16), "x") for i in range(0, 40, 8))


def leap_text(updated: int = UPDATED, expires: int = EXPIRES,
              entries: list[tuple[int, int]] | None = None, hash_value: str | None = None) -> str:
    """A leap-seconds.list in the IERS/NIST layout (comments, tabs, trailing hash line)."""
    entries = IERS if entries is None else entries
    if hash_value is None:
        hash_value = nist_hash(updated, expires, entries)
    lines = [
        "#\tUpdated through IERS Bulletin C",
        "#\tFile expires on:  28 June 2024",
        "#",
        f"#$\t {updated}",
        f"#@\t {expires}",
        "#",
    ]
    lines += [f"{when}\t{offset}\t# comment {i}" for i, (when, offset) in enumerate(entries)]
    lines += ["#", f"#h\t{hash_value}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def table() -> LeapTable:
    """The real IERS table (1972 through 2017)."""
    return parse_leapfile(leap_text(), "leap-seconds.list")


def test_parses_the_iers_table(table: LeapTable) -> None:
    """All 28 entries, the update and the expiration stamps come out as integers."""
    assert table.entries == tuple(IERS)
    assert table.updated == UPDATED
    assert table.expires == EXPIRES


@pytest.mark.parametrize(("when", "offset"), [
    (ntp(0), 0),                       # 1970: before the table
    (2272060799, 0),                   # one second before 1972-01-01
    (2272060800, 10),                  # 1972-01-01
    (2287785599, 10),                  # 1972-06-30 23:59:59
    (2287785600, 11),                  # 1972-07-01
    (ntp(946684800), 32),              # 2000-01-01
    (JAN_2017 - 1, 36),                # 2016-12-31 23:59:59
    (JAN_2017, 37),                    # 2017-01-01
    (ntp(1704067200), 37),             # 2024-01-01
])
def test_tai_offset_at_dates(table: LeapTable, when: int, offset: int) -> None:
    """TAI-UTC is the offset of the last entry at or before the time, 0 before the table."""
    assert table.tai_offset(when) == offset


def test_last_and_next_transition(table: LeapTable) -> None:
    """Transitions bracket a time; a transition time belongs to the era it starts."""
    mid_2016 = ntp(1464739200)  # 2016-06-01
    assert table.last_transition(mid_2016) == 3644697600
    assert table.next_transition(mid_2016) == JAN_2017
    assert table.last_transition(JAN_2017) == JAN_2017
    assert table.next_transition(JAN_2017) is None
    assert table.last_transition(2272060799) is None
    assert table.next_transition(2272060799) == 2272060800


def test_autokey_values_after_2017_match_the_reference_capture(table: LeapTable) -> None:
    """No future leap known: (37, 2017-01-01, era start + 25 days), as captured (notes 5.5)."""
    values = table.autokey_values(ntp(1700000000))
    assert values == (37, JAN_2017, JAN_2017 + 25 * DAY)
    assert values == (37, 3692217600, 3694377600)


def test_autokey_values_with_a_scheduled_leap(table: LeapTable) -> None:
    """With a future transition known, the expiration word is that transition + 7 days."""
    assert table.autokey_values(ntp(1464739200)) == (36, 3644697600, JAN_2017 + 7 * DAY)


def test_autokey_values_are_zero_without_usable_offset(table: LeapTable) -> None:
    """A TAI offset of 10 or less (1972's first half, or before the table) gives all zeros."""
    assert table.autokey_values(2272060800 + DAY) == (0, 0, 0)
    assert table.autokey_values(ntp(0)) == (0, 0, 0)
    assert table.autokey_values(2287785600) == (11, 2287785600, 2303683200 + 7 * DAY)


def test_expired(table: LeapTable) -> None:
    """The table expires at its ``#@`` time."""
    assert not table.expired(EXPIRES - 1)
    assert table.expired(EXPIRES)


def test_hash_groups_without_leading_zeros_are_accepted() -> None:
    """NIST writes each hash word without leading zeros; such a word must still verify."""
    for updated in range(UPDATED, UPDATED + 200):
        hash_value = nist_hash(updated, EXPIRES, IERS)
        if any(len(group) < 8 for group in hash_value.split()):
            break
    else:  # pragma: no cover - 200 tries without a short word is astronomically unlikely
        pytest.fail("no hash with a leading-zero word found")
    assert parse_leapfile(leap_text(updated=updated)).updated == updated


def test_hash_mismatch_is_rejected_with_the_hash_line() -> None:
    """Changing a data line without re-hashing fails on the ``#h`` line."""
    good_hash = nist_hash(UPDATED, EXPIRES, IERS)
    tampered = [*IERS[:-1], (JAN_2017, 38)]
    text = leap_text(entries=tampered, hash_value=good_hash)
    hash_line = text.splitlines().index(f"#h\t{good_hash}") + 1
    with pytest.raises(LeapFileError) as info:
        parse_leapfile(text, "tampered.list")
    assert info.value.line == hash_line
    assert str(info.value).startswith(f"tampered.list:{hash_line}: ")
    assert "mismatch" in str(info.value)


def test_changed_expiration_breaks_the_hash() -> None:
    """The ``#@`` value is covered by the hash too."""
    text = leap_text().replace(f"#@\t {EXPIRES}", f"#@\t {EXPIRES + DAY}")
    with pytest.raises(LeapFileError, match="mismatch"):
        parse_leapfile(text)


def test_malformed_data_line_names_its_line() -> None:
    """A data line that is not two numbers is rejected with its line number."""
    lines = leap_text().splitlines()
    lines[10] = "2287785600 eleven"
    with pytest.raises(LeapFileError) as info:
        parse_leapfile("\n".join(lines), "bad.list")
    assert (info.value.path, info.value.line) == ("bad.list", 11)
    assert str(info.value).startswith("bad.list:11: ")


def test_non_numeric_update_stamp_names_its_line() -> None:
    """A ``#$`` value that is not NTP seconds is an error on its line."""
    text = leap_text().replace(f"#$\t {UPDATED}", "#$\t soon")
    with pytest.raises(LeapFileError, match=re.escape("'#$' needs NTP seconds")) as info:
        parse_leapfile(text)
    assert info.value.line == 4


@pytest.mark.parametrize("hash_value", [
    "1 2 3 4",              # four groups
    "zz 1 2 3 4",           # not hex
    "123456789 1 2 3 4",    # a group longer than 8 digits
])
def test_malformed_hash_line(hash_value: str) -> None:
    """A ``#h`` line that is not five hex words of at most 8 digits is rejected on its line."""
    text = leap_text(hash_value=hash_value)
    with pytest.raises(LeapFileError, match="five groups") as info:
        parse_leapfile(text)
    assert info.value.line == len(text.splitlines())


def test_missing_stamp_lines_are_rejected() -> None:
    """Without ``#@`` (or ``#h``) the file cannot be trusted."""
    without_expiry = "\n".join(line for line in leap_text().splitlines()
                               if not line.startswith("#@"))
    with pytest.raises(LeapFileError, match="'#@'"):
        parse_leapfile(without_expiry)
    without_hash = "\n".join(line for line in leap_text().splitlines()
                             if not line.startswith("#h"))
    with pytest.raises(LeapFileError, match="'#h'"):
        parse_leapfile(without_hash)


def test_duplicate_stamp_line_is_rejected() -> None:
    """A second ``#$`` line is ambiguous and rejected."""
    text = leap_text().replace(f"#$\t {UPDATED}", f"#$\t {UPDATED}\n#$\t {UPDATED}")
    with pytest.raises(LeapFileError, match="duplicate"):
        parse_leapfile(text)


def test_entries_out_of_order_are_rejected() -> None:
    """Entries must be in ascending time order."""
    entries = [IERS[1], IERS[0], *IERS[2:]]
    with pytest.raises(LeapFileError, match="ascending"):
        parse_leapfile(leap_text(entries=entries))


def test_table_requires_ascending_entries() -> None:
    """A LeapTable built by hand is checked too."""
    with pytest.raises(ValueError):
        LeapTable(entries=((2, 11), (1, 10)), updated=0, expires=0)


def test_load_from_file(tmp_path: Path) -> None:
    """load_leapfile reads a file and reports errors against its path."""
    good = tmp_path / "leap-seconds.list"
    good.write_text(leap_text())
    assert load_leapfile(good).tai_offset(JAN_2017) == 37
    bad = tmp_path / "bad.list"
    bad.write_text(leap_text().replace("\t10\t", "\tten\t"))
    with pytest.raises(LeapFileError) as info:
        load_leapfile(bad)
    assert info.value.path == str(bad)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A missing file is an error naming the path, not an OSError."""
    missing = tmp_path / "nope.list"
    with pytest.raises(LeapFileError) as info:
        load_leapfile(missing)
    assert info.value.line == 0
    assert str(info.value).startswith(f"{missing}: cannot read leap-seconds file")


@pytest.mark.skipif(not SYSTEM_LEAPFILE.exists(), reason="no system leap-seconds.list")
def test_system_leap_seconds_list_parses() -> None:
    """The distribution's copy of the IETF file verifies and ends at 37 s (2017)."""
    table = load_leapfile(SYSTEM_LEAPFILE)
    assert table.entries[:len(IERS)] == tuple(IERS)
    assert table.tai_offset(JAN_2017) == 37
