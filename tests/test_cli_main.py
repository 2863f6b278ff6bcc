"""The ``ntpauto`` command as a whole: ``--version``, help in plain words with every option
explained, and output into a pipe whose reader went away (``ntpauto ... | head``) ending
quietly."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ntpauto import __version__
from ntpauto.cli import BROKEN_PIPE_STATUS, SUBCOMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def closed_pipe_run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``ntpauto ARGV`` with its standard output a pipe nobody reads any more (what
    ``| head`` leaves once it has its lines): every write to it fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        return subprocess.run([sys.executable, "-m", "ntpauto.cli", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(write_end)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"ntpauto {__version__} (Python ")


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction))
    return [("ntpauto", parser)] + [(f"ntpauto {name}", subparsers.choices[name])
                                    for name in SUBCOMMANDS]


@pytest.mark.parametrize(("name", "parser"), _parsers(), ids=lambda v: str(v).split()[-1])
def test_help_is_plain_and_complete(name: str, parser: argparse.ArgumentParser) -> None:
    """No reST markup or internals in the help; the description is whole sentences; every
    option says what it does."""
    text = parser.format_help()
    assert "``" not in text and ":mod:" not in text and "module" not in text, text
    assert parser.description and parser.description.rstrip().endswith((".", ")")), name
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and len(action.help) > 8, (name, action.option_strings)
        assert action.help.count("(") == action.help.count(")"), (name, action.help)


def test_every_subcommand_is_listed_with_a_summary() -> None:
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert re.search(rf"^    {name}\s+\w", text, re.MULTILINE), name


def test_closed_pipe_ends_quietly(vectors: Path) -> None:
    """``ntpauto inspect FILE | head`` once head has gone: no traceback, no message, the
    exit status of a command stopped by SIGPIPE."""
    result = closed_pipe_run("inspect", str(vectors / "keys/tc-rsa-md5/alice/ntpkey_cert_alice"))
    assert result.stderr == ""
    assert result.returncode == BROKEN_PIPE_STATUS
