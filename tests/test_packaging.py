"""Packaging: the built wheel, installed into a fresh venv, gives twistd its plugin.

A flat-layout project can lose ``twisted/plugins/`` from its wheel (or hide it behind an
editable install) without any unit test noticing; this builds the wheel from a copy of the
tree, installs it into a new virtual environment without system site-packages (dependencies
come from the package index), and checks what a user would run: ``twistd --help`` lists
``ntpautokey``, the ``ntpauto`` console script works, and the installed daemon answers the
installed ``ntpauto query``.  Deselect with ``-m 'not slow'``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ntpauto import batch

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", ".ruff_cache", ".hypothesis", "dropin.cache",
                                "*.so")
CORE_BUILT = batch.AVAILABLE
"""The batched path's C core is built here, so the wheel must build it too (CI: always)."""


def run(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output if it fails."""
    result = subprocess.run([str(arg) for arg in argv], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with the built wheel installed."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=IGNORE)
    dist = root / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, source, cwd=root)
    [wheel] = dist.glob("ntpauto-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/ntpautokey_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    if CORE_BUILT:
        assert any(name.startswith("ntpauto/_batch.") and name.endswith(".so")
                   for name in names), names
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root)
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=root)
    return bin_dir


@pytest.mark.slow
def test_twistd_lists_plugin(installed: Path, tmp_path: Path) -> None:
    """``twistd --help`` of the fresh venv lists ``ntpautokey`` with no traceback."""
    result = run(installed / "twistd", "--help", cwd=tmp_path)
    assert "ntpautokey" in result.stdout
    assert "Autokey (RFC 5906)" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_console_script(installed: Path, tmp_path: Path) -> None:
    """The ``ntpauto`` console script runs ``--help`` and ``query --help``."""
    assert "query" in run(installed / "ntpauto", "--help", cwd=tmp_path).stdout
    assert "--timeout" in run(installed / "ntpauto", "query", "--help", cwd=tmp_path).stdout


@pytest.mark.slow
def test_installed_daemon_answers(installed: Path, tmp_path: Path) -> None:
    """The installed ``twistd -n ntpautokey --port P`` answers the installed query."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = subprocess.Popen(
        [str(installed / "twistd"), "-n", "--pidfile", "", "--logfile", "-", "ntpautokey",
         "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if k != batch.DISABLE_VARIABLE})
    try:
        deadline = time.monotonic() + 30
        while True:
            assert daemon.poll() is None, daemon.communicate()[0]
            result = subprocess.run(
                [str(installed / "ntpauto"), "query", "127.0.0.1", "--port", str(port),
                 "--timeout", "0.5"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
        assert result.returncode == 0, result.stderr
        assert "stratum     1" in result.stdout
    finally:
        daemon.terminate()
        output, _ = daemon.communicate(timeout=20)
    assert "Traceback" not in output, output
    if CORE_BUILT:  # the installed daemon answers its common requests in C
        assert "common requests answered in batches" in output, output
