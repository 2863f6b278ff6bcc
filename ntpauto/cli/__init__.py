"""The ``ntpauto`` command.

Each subcommand module of this package defines ``DESCRIPTION`` (its help text, in plain
words) and ``register(subparsers)``, which adds its argparse parser and sets ``func`` (taking
the parsed arguments, returning the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from ntpauto import __version__

SUBCOMMANDS = ("query", "audit", "status", "keygen", "inspect", "demo", "trace")
DESCRIPTION = ("ntpauto: ask NTP servers for the time, audit Autokey servers, watch a running "
               "ntpauto daemon, make and inspect Autokey keys, and check Autokey captures.")
EPILOG = ("'ntpauto COMMAND --help' explains a command. The daemon itself runs under "
          "twistd: 'twistd ntpautokey --help'.")
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE
"""The exit status when the reader of our output went away (``ntpauto ... | head``): that of
a command killed by SIGPIPE, as the shell reports it, without a message."""


def version_text() -> str:
    """What ``--version`` prints: ntpauto's version and the Python it runs on."""
    return f"ntpauto {__version__} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="ntpauto", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=version_text(),
                        help="show the version of ntpauto and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"ntpauto.cli.{name}").register(subparsers)
    return parser


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of what is
    still buffered does not fail again on the closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return  # not a file (captured output): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ntpauto`` console script.  Output piped into a reader that stops
    early (``head``) ends quietly with :data:`BROKEN_PIPE_STATUS`."""
    try:
        try:
            args = build_parser().parse_args(argv)
            status = int(args.func(args) or 0)
        finally:
            sys.stdout.flush()  # --help and the rest: a closed pipe is seen here, not at exit
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE_STATUS
    return status


if __name__ == "__main__":
    sys.exit(main())
