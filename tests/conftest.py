"""Shared fixtures: where the reference's vectors and specs live (``../shared`` beside the
checkout, in CI too)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VECTORS = SHARED / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The reference vectors directory; missing vectors are a test failure, not a skip."""
    assert VECTORS.is_dir(), f"reference vectors not found at {VECTORS}"
    return VECTORS
