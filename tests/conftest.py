"""Shared fixtures: where the reference's vectors live (``tests/vectors``, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The reference vectors directory; missing vectors are a test failure, not a skip."""
    assert VECTORS.is_dir(), f"reference vectors not found at {VECTORS}"
    return VECTORS

