"""The repository stands on its own: a fresh ``git clone`` of the committed tree, with nothing
beside it (no reference vectors outside the repository), passes a real selection of the fast
tests, among them every test module that reads the reference vectors' packets, captures and
key files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SELECTION = [
    "tests/test_vectors_autokey.py",
    "tests/test_vectors_pki.py",
    "tests/test_vectors_identity.py",
    "tests/test_autokey_dance_offline.py",
    "tests/test_engine_autokey.py",
    "tests/test_cli_trace.py",
    "tests/test_wire_packet.py",
    "tests/test_config.py",
    "tests/security/test_cases_index.py",
    "tests/fuzz/test_fuzz.py",
    "tests/test_docs.py",
]
"""About 30 seconds of the fast suite: vectors, captures, configurations, the security
case index, fuzz seeds and the documentation build."""


def test_fresh_clone_runs_the_tests_without_anything_beside_it(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git to clone the repository")
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout")
    clone = tmp_path / "ntpauto"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ntpauto"]
    # This interpreter, importing ntpauto and the tests from the clone (not from REPO), and
    # failing where a test would skip.
    env = {**os.environ, "PYTHONPATH": str(clone), "NTPAUTO_REQUIRE_ALL": "1"}
    where = subprocess.run([sys.executable, "-c", "import ntpauto; print(ntpauto.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(clone)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-p", "no:cacheprovider",
         *SELECTION],
        cwd=clone, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary
