"""Shared fixtures: where the reference's vectors live (``tests/vectors``, see its README),
and the rule that turns every skip into a failure where everything must run (CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "vectors"
REQUIRE_ALL = os.environ.get("NTPAUTO_REQUIRE_ALL") == "1"
"""``NTPAUTO_REQUIRE_ALL=1`` (set by ``.ci/run``): a test that would skip for want of root,
chronyd, ntpq or anything else fails instead, so CI cannot pass with a part of the suite
silently not run."""


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The reference vectors directory; missing vectors are a test failure, not a skip."""
    assert VECTORS.is_dir(), f"reference vectors not found at {VECTORS}"
    return VECTORS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under ``NTPAUTO_REQUIRE_ALL=1`` a skipped test is reported as failed, with the skip's
    reason (a ``skip``/``skipif`` at setup or a ``pytest.skip`` in the test alike)."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under NTPAUTO_REQUIRE_ALL=1: {reason}"
