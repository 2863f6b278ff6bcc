"""The ``ntpauto`` command: one subcommand per module in this package.

Each subcommand module defines ``register(subparsers)``, which adds its argparse parser and
sets ``func`` (taking the parsed arguments, returning the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("query", "status", "keygen", "inspect", "demo", "trace")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="ntpauto", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"ntpauto.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ntpauto`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
