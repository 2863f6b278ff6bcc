"""Finding identity schemes: ``twisted.plugin`` lookups and the ``--ident`` option.

Modelled on ``twisted.cred.strcred``: every identity scheme factory (built-in or third party)
is a plugin providing :class:`~ntpauto.interfaces.IIdentitySchemeFactory` in the
``ntpauto.plugins`` package; a scheme is described on the command line as ``SCHEME:ARGS``.

Argument strings of the built-in schemes:

* ``tc`` and ``pc`` -- no arguments;
* ``iff:KEYSDIR:GROUP[:PASSWORD]``, ``gq:...``, ``mv:...`` -- read
  ``KEYSDIR/ntpkey_<iff|gq|mv>key_GROUP`` (server key, decrypted with PASSWORD; the password
  may contain ':') and ``KEYSDIR/ntpkey_<iff|gq|mv>par_GROUP`` (client parameters), whichever
  exist; at least one must (interop.md 7.4).

``IdentityOptionsMixin`` gives a ``usage.Options`` subclass ``--ident SCHEME:ARGS``
(repeatable; the schemes are collected in ``options["identity_schemes"]``), ``--help-ident``
and ``--help-ident-scheme SCHEME``.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any, TextIO

from twisted.plugin import getPlugins
from twisted.python import usage

import ntpauto.plugins
from ntpauto.identity.common import (
    IdentitySchemeError,
    InvalidIdentityArguments,
    UnknownIdentityScheme,
)
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki.keyfiles import KeyFileError

__all__ = [
    "IdentityOptionsMixin",
    "IdentitySchemeError",
    "InvalidIdentityArguments",
    "UnknownIdentityScheme",
    "all_factories",
    "find_factory",
    "make_scheme",
]


def all_factories() -> list[Any]:
    """Every identity scheme factory found in ``ntpauto.plugins`` (first of a name wins)."""
    seen: dict[str, Any] = {}
    for factory in getPlugins(IIdentitySchemeFactory, ntpauto.plugins):
        seen.setdefault(factory.scheme_name, factory)
    return list(seen.values())


def find_factory(name: str) -> Any:
    """The factory whose ``scheme_name`` is ``name`` (case-insensitive);
    UnknownIdentityScheme when there is none."""
    wanted = name.strip().lower()
    for factory in all_factories():
        if factory.scheme_name.lower() == wanted:
            return factory
    known = ", ".join(sorted(factory.scheme_name for factory in all_factories()))
    raise UnknownIdentityScheme(f"unknown identity scheme {name!r} (known: {known})")


def make_scheme(description: str) -> Any:
    """Build a scheme from ``SCHEME[:ARGS]`` (e.g. ``iff:/etc/ntp:mygroup``).

    Raises UnknownIdentityScheme, InvalidIdentityArguments, or KeyFileError when the scheme's
    files are missing or unusable."""
    name, _, argstring = description.partition(":")
    scheme = find_factory(name).from_argstring(argstring)
    if not IIdentityScheme.providedBy(scheme):
        raise IdentitySchemeError(f"the {name!r} plugin did not build an IIdentityScheme")
    return scheme


class IdentityOptionsMixin:
    """Mixin for ``twisted.python.usage.Options``: ``--ident``, ``--help-ident`` and
    ``--help-ident-scheme`` (the shape of ``twisted.cred.strcred.AuthOptionMixin``).

    ``identOutput`` is where the help goes (``sys.stdout`` by default)."""

    identOutput: TextIO = sys.stdout

    def addIdentityScheme(self, scheme: Any) -> None:
        """Append ``scheme`` to ``self["identity_schemes"]``."""
        options: Any = self
        if "identity_schemes" not in options:
            options["identity_schemes"] = []
        options["identity_schemes"].append(scheme)

    def opt_ident(self, description: str) -> None:
        """Identity scheme SCHEME[:ARGS], e.g. iff:/etc/ntp:GROUP[:PASSWORD] (repeatable;
        --help-ident lists the schemes)."""
        try:
            self.addIdentityScheme(make_scheme(description))
        except UnknownIdentityScheme as exc:
            raise usage.UsageError(f"Identity scheme not recognized: {exc}") from None
        except (IdentitySchemeError, KeyFileError, ValueError) as exc:
            raise usage.UsageError(f"--ident {description.partition(':')[0]}: {exc}") \
                from None

    def opt_help_ident(self) -> None:
        """Show the identity schemes available to --ident."""
        out = self.identOutput
        out.write("Usage: --ident SCHEME[:ARGS]\n")
        out.write("For detailed help: --help-ident-scheme SCHEME\n\n")
        factories = sorted(all_factories(), key=lambda factory: factory.scheme_name)
        width = max([len("SCHEME")] + [len(factory.scheme_name) for factory in factories])
        out.write(f"  {'SCHEME':<{width}}  ARGS format\n")
        out.write(f"  {'=' * 6:<{width}}  ===========\n")
        for factory in factories:
            out.write(f"  {factory.scheme_name:<{width}}  {factory.argstring_format}\n")
        out.write("\n")
        raise SystemExit(0)

    def opt_help_ident_scheme(self, name: str) -> None:
        """Show help for one identity scheme."""
        try:
            factory = find_factory(name)
        except UnknownIdentityScheme as exc:
            raise usage.UsageError(str(exc)) from None
        out = self.identOutput
        arguments = str(factory.argstring_format)
        usage_line = f"--ident {factory.scheme_name}"
        if not arguments.startswith("("):  # "(no arguments)"
            usage_line += f":{arguments}"
        out.write(f"Usage: {usage_line}\n")
        out.write(f"Status bit {factory.status_bit:#06x}, message code "
                  f"{factory.message_code}\n\n")
        out.write(textwrap.fill(" ".join(str(factory.help_text).split()), width=78,
                                initial_indent="  ", subsequent_indent="  ") + "\n\n")
        raise SystemExit(0)
