"""The batched path's C core under AddressSanitizer and UndefinedBehaviorSanitizer: it reads
datagrams from anyone, so the core is built again with both sanitizers and, in a child
process that loads that build as ``ntpauto._batch``, runs every test of test_batch.py and
the random datagrams of batch_fuzz.py.  A memory error or undefined behaviour anywhere ends
the child with the sanitizer's report, which fails the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["_batch.c", "_digests.h", "_limiter.h"]
FLAGS = ["-shared", "-fPIC", "-O1", "-g", "-std=c11", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
BOOT = """\
import importlib.machinery, importlib.util, runpy, sys
path, mode = sys.argv[1], sys.argv[2]
loader = importlib.machinery.ExtensionFileLoader("ntpauto._batch", path)
spec = importlib.util.spec_from_file_location("ntpauto._batch", path, loader=loader)
module = importlib.util.module_from_spec(spec)
loader.exec_module(module)
sys.modules["ntpauto._batch"] = module
import ntpauto
ntpauto._batch = module
from ntpauto import _batch
assert _batch is module and _batch.__file__ == path
print("sanitized core:", path, flush=True)
if mode == "pytest":
    import pytest
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_batch.py"]))
sys.argv = ["tests/batch_fuzz.py", *sys.argv[3:]]
runpy.run_path("tests/batch_fuzz.py", run_name="__main__")
"""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]


def runtime(name: str) -> str | None:
    """The path of a sanitizer's runtime library, as gcc knows it."""
    found = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                           text=True).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The core built with both sanitizers, and the environment that loads their runtimes
    first."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the sanitized core")
    libraries = [runtime("libasan.so"), runtime("libubsan.so")]
    if None in libraries:
        pytest.skip("gcc has no AddressSanitizer or UndefinedBehaviorSanitizer runtime")
    build = tmp_path_factory.mktemp("sanitized")
    for name in SOURCES:
        shutil.copy(REPO / "ntpauto" / name, build / name)
    target = build / f"_batch{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", *FLAGS, f"-I{include}", "_batch.c", "-o", str(target)], cwd=build,
                   check=True, capture_output=True)
    env = dict(os.environ, LD_PRELOAD=":".join(libraries),  # type: ignore[arg-type]
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               PYTHONPATH=str(REPO))
    return target, env


def run_child(sanitized: tuple[Path, dict[str, str]], *argv: str) -> str:
    target, env = sanitized
    result = subprocess.run([sys.executable, "-c", BOOT, str(target), *argv], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"sanitized core: {target}" in output
    assert "AddressSanitizer" not in output and "runtime error" not in output, output
    return output


def test_every_core_test_passes_under_the_sanitizers(sanitized):
    output = run_child(sanitized, "pytest")
    assert " passed" in output or output.rstrip().endswith("]"), output


def test_random_datagrams_under_the_sanitizers(sanitized):
    assert "fuzzed " in run_child(sanitized, "fuzz", "1500", "20261208")
