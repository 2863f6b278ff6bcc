"""``twistd ntpautokey``: command-line options and ``makeService`` for the daemon.

With no options the daemon serves time from the local clock as a stratum-1 server on
127.0.0.1:12300 (``ntpauto.config.default_config``), so ``twistd -n ntpautokey`` works without
root, and answers Autokey clients too: on first run it generates an RSA host key and a
self-signed trusted certificate for this host name into ``./ntpkeys`` (``--keysdir``; the
key 0600, encrypted with the host name as ntp-keygen's default password) and loads them
afterwards (``--no-autokey``: plain and symmetric-key service only).  ``--config FILE``
reads an ntp.conf-style file instead; ``--port``, ``--interface``, ``--rcvbuf`` and
``--workers`` override what it says.
A bad config stops twistd with ``file:line: message``.  A port that cannot be bound (in use,
or privileged) stops it with one line naming address and port, before anything is written
(the first run's keys included), daemonised or logged (:func:`check_listen`).
``--version`` prints ntpauto's version.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.copyright import version as twisted_version
from twisted.python import usage

from ntpauto import __version__
from ntpauto.auth.keys import KeyFileError
from ntpauto.autokey.host import generate_missing_host
from ntpauto.config import (
    Config,
    ConfigError,
    CryptoConfig,
    ListenConfig,
    default_config,
    load_config,
    parse_workers,
    rcvbuf_problem,
)
from ntpauto.identity.registry import IdentityOptionsMixin
from ntpauto.leapfile import LeapFileError
from ntpauto.pki import keyfiles
from ntpauto.service import NTPAutokeyService, listen_addresses

LOAD_ERRORS: tuple[type[Exception], ...] = (ConfigError, KeyFileError, keyfiles.KeyFileError,
                                             LeapFileError)
"""The exceptions that mean "the configuration cannot be used" (reported as usage errors)."""


DEFAULT_KEYSDIR = "ntpkeys"
"""Where the default configuration keeps (and on first run makes) its Autokey keys."""


def check_listen(config: Config) -> None:
    """Try to bind each UDP address ``config`` listens on (and let go at once); the first that
    cannot be bound stops the program with one line, ``ntpauto: cannot listen on UDP ADDRESS
    port N: REASON`` (``SystemExit``, status 1; twistd prints it without a traceback).  Port
    0 (any free port) is not tried."""
    if config.port == 0:
        return
    for address in listen_addresses(config):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, config.port))
            except OSError as exc:
                raise SystemExit(f"ntpauto: cannot listen on UDP {address} port "
                                 f"{config.port}: {exc.strerror or exc}") from None


def _host_key_missing(folder: Path, name: str) -> bool:
    try:
        keyfiles.resolve_link(folder / f"ntpkey_host_{name}")
    except FileNotFoundError:
        return True
    return False


def autokey_default(config: Config, keysdir: str | Path, host: str | None = None) -> Config:
    """``config`` with Autokey on: the host key and certificate of ``host`` (default this
    host name) in ``keysdir``, generated there when the host key is absent, once
    :func:`check_listen` found ``config``'s ports free.  Existing files are never replaced;
    the service reads them (a broken set is a load error naming the file)."""
    folder = Path(keysdir).resolve()  # twistd may change directory later
    name = host or socket.gethostname()
    if _host_key_missing(folder, name):
        check_listen(config)  # no keys are made for a daemon that cannot start
    try:
        generate_missing_host(folder, name)
    except (OSError, ValueError) as exc:
        raise usage.UsageError(f"Autokey keys in {folder}: {exc}") from exc
    return attrs.evolve(config, keysdir=str(folder), crypto=CryptoConfig(host=name))


def _port_number(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise usage.UsageError(f"--port: not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"--port: {port} is out of range 0-65535")
    return port


def _usage(option: str) -> Callable[[str], usage.UsageError]:
    """A usage error about ``option``."""
    return lambda message: usage.UsageError(f"{option}: {message}")


def _rcvbuf(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise usage.UsageError(f"--rcvbuf: not a number of bytes: {value!r}") from None
    problem = rcvbuf_problem(size)
    if problem is not None:
        raise usage.UsageError(f"--rcvbuf: {problem}")
    return size


class Options(IdentityOptionsMixin, usage.Options):
    """Options of ``twistd ntpautokey`` (``--ident``/``--help-ident`` from the identity
    scheme registry, in the style of ``twisted.cred.strcred``)."""

    synopsis = ("[--config FILE | --keysdir DIR | --no-autokey] [--port N] "
                "[--interface ADDR] [--rcvbuf BYTES] [--workers N|auto] "
                "[--ident SCHEME:ARGS]")
    longdesc = ("Run an NTPv4 node with Autokey (RFC 5906) authentication. Without --config "
                "it serves the local clock as stratum 1 on 127.0.0.1:12300, with Autokey "
                "keys generated into ./ntpkeys on first run.")
    optParameters = [
        ["config", "c", None, "ntp.conf-style configuration file."],
        ["port", "p", None, "UDP port to serve on (overrides the config; 0 picks one)."],
        ["interface", "i", None, "Address to listen on (overrides the config's interfaces)."],
        ["rcvbuf", None, None, "UDP receive buffer in bytes per socket (overrides the "
                               "config's rcvbuf; 0: the system's default)."],
        ["workers", "w", None, "Processes answering client requests, or 'auto' for one per "
                               "core (overrides the config's workers; default 1)."],
        ["keysdir", "k", DEFAULT_KEYSDIR,
         "Without --config: the Autokey keys directory (host key and certificate generated "
         "there on first run)."],
    ]
    optFlags = [
        ["no-autokey", None, "Without --config: no Autokey keys, plain and symmetric-key "
                             "service only."],
    ]

    def opt_version(self) -> None:
        """Show the versions of ntpauto and Twisted and exit."""
        print(f"ntpauto {__version__} (Twisted {twisted_version}, Python "
              f"{sys.version.split()[0]})")
        raise SystemExit(0)

    def postOptions(self) -> None:
        """Load the config, apply the overrides and build the service (errors as usage)."""
        try:
            port = _port_number(self["port"]) if self["port"] is not None else None
            config = load_config(self["config"]) if self["config"] else default_config()
            changes: dict[str, Any] = {}
            if port is not None:
                changes["port"] = port
            if self["interface"]:
                changes["listen"] = (ListenConfig(self["interface"]),)
            if self["rcvbuf"] is not None:
                changes["rcvbuf"] = _rcvbuf(self["rcvbuf"])
            if self["workers"] is not None:
                changes["workers"] = parse_workers(self["workers"], _usage("--workers"))
            if changes:
                config = attrs.evolve(config, **changes)
            if not (self["config"] or self["no-autokey"]):
                config = autokey_default(config, self["keysdir"])
            self.config = config
            self.service = NTPAutokeyService(config)
        except LOAD_ERRORS as exc:
            raise usage.UsageError(str(exc)) from exc
        self._install_identity_schemes()

    def opt_ident(self, description: str) -> None:
        super().opt_ident(description)
        self.setdefault("ident_descriptions", []).append(description)

    opt_ident.__doc__ = IdentityOptionsMixin.opt_ident.__doc__

    def _install_identity_schemes(self) -> None:
        """Give the host each ``--ident`` scheme: a server key makes it answer (and advertise)
        the scheme, client parameters let it verify servers of that group."""
        schemes = self.get("identity_schemes", [])
        if not schemes:
            return
        node = self.service.engine.autokey
        if node is None:
            raise usage.UsageError("--ident needs Autokey: add a crypto line to the "
                                   "configuration")
        for scheme, description in zip(schemes, self["ident_descriptions"]):
            parts = description.split(":")
            group = parts[2] if len(parts) > 2 else node.host.group or node.host.hostname
            if scheme.can_respond:
                node.host.server_schemes[int(scheme.message_code)] = scheme
            if scheme.can_challenge:
                node.host.add_client_scheme(scheme, group)


def makeService(options: Options) -> NTPAutokeyService:
    """The service for twistd (built while the options were checked), once its ports were
    found free (:func:`check_listen`: twistd calls this before it daemonises, writes its pid
    file or starts logging, so a port in use is one line on the terminal)."""
    service = getattr(options, "service", None)
    if service is None:
        options.postOptions()
        service = options.service
    check_listen(service.config)
    return service
