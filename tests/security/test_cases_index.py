"""Every case of ``CASES.md`` (beside this file) has a ``test_case_NN_...`` test here.

A test named ``test_case_21_22_...`` covers cases 21 and 22."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def case_numbers() -> set[int]:
    text = (HERE / "CASES.md").read_text()
    return {int(n) for n in re.findall(r"^(\d+)\. ", text, re.MULTILINE)}


def numbers_tested() -> set[int]:
    found: set[int] = set()
    for path in HERE.glob("test_*.py"):
        for prefix in re.findall(r"^def test_case_((?:\d+_)+)", path.read_text(),
                                 re.MULTILINE):
            found.update(int(n) for n in prefix.strip("_").split("_"))
    return found


def test_every_case_has_a_test():
    """CASES.md lists at least the 46 cases it had when this was written, and each has a
    test_case_NN_ test in tests/security/."""
    cases = case_numbers()
    assert len(cases) >= 46
    missing = sorted(cases - numbers_tested())
    assert not missing, f"CASES.md cases without a test_case_NN_ test: {missing}"


def test_no_test_for_a_case_that_does_not_exist():
    """A test_case_NN_ names a case of CASES.md (catches renumbering)."""
    assert not numbers_tested() - case_numbers()
