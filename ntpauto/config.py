"""The ntp.conf parser: the directive syntax ntpd users know, turned into frozen config objects.

One directive per line, whitespace-separated tokens, ``#`` starts a comment (outside double
quotes).  Supported directives map onto :class:`Config`; ntpd directives that ntpauto
deliberately does not implement are ignored with a warning (``Config.warnings``) so that an
existing ntpd configuration loads; anything else that is wrong raises :class:`ConfigError`
naming the file and line.  See ``docs/configuration.md`` for the directive reference.

reference: the ntpd 4.2.8 documentation, confopt.html and authopt.html.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable

import attrs
from attrs import frozen

from ntpauto.errors import FileLineError

__all__ = [
    "AssociationConfig",
    "Config",
    "ConfigError",
    "CryptoConfig",
    "FarmConfig",
    "ListenConfig",
    "RefclockConfig",
    "RestrictConfig",
    "DIRECTIVE_OPTIONS",
    "default_config",
    "directive_names",
    "load_config",
    "parse_config",
    "parse_workers",
    "rcvbuf_problem",
    "worker_count",
]

MIN_POLL = 3
MAX_POLL = 17
LOCAL_DRIVER = 1
MAX_INCLUDE_DEPTH = 10
DEFAULT_RCVBUF = 4 << 20
"""Bytes of UDP receive buffer asked for per socket when the configuration names none."""
MAX_WORKERS = 256
"""The most processes ``workers`` may ask for."""
MIN_RCVBUF = 4096
MAX_RCVBUF = 1 << 30

RESTRICT_FLAGS = frozenset({
    "ignore", "noquery", "nomodify", "nopeer", "noserve", "limited", "kod", "notrust",
    "notrap", "lowpriotrap", "nomrulist", "ntpport", "version",
})
"""The ``restrict`` flags ntpauto accepts."""

SYSTEM_FLAGS = frozenset({"auth", "bclient", "calibrate", "kernel", "mode7", "monitor", "ntp",
                          "stats"})
"""The ``enable``/``disable`` flags ntpauto accepts (``bclient`` sets ``broadcast_client``)."""

UNSUPPORTED_DIRECTIVES = frozenset({
    "calldelay", "controlkey", "device", "dscp", "filegen", "leapsmearinterval", "logconfig",
    "logfile", "manycastclient", "manycastserver", "mdnstries", "mru", "multicastclient", "nic",
    "ntpsigndsocket", "phone", "pidfile", "pollskewlist", "pool", "qos", "requestkey", "reset",
    "rlimit", "saveconfigdir", "setvar", "statistics", "statsdir", "tinker", "tos", "trap", "ttl",
    "unconfig", "unpeer",
})
"""ntpd directives that are recognised but ignored (with a warning)."""

_UNSUPPORTED_SERVER_OPTIONS = frozenset({"preempt", "true", "xleave", "xmtnonce", "mode"})
_CRYPTO_OPTIONS = ("cert", "digest", "host", "ident", "pw", "randfile")
_CRYPTO_DIGESTS = ("md5", "sha1")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_REFCLOCK = re.compile(r"127\.127\.([0-9]{1,3})\.([0-9]{1,3})")
_KEY_RANGE_TOKEN = re.compile(r"\(|\)|\.\.\.|[^\s()]+")


class ConfigError(FileLineError):
    """A configuration that cannot be used; ``str()`` is ``path:line: message``.

    ``line`` is 0 when the problem concerns the whole file (e.g. it cannot be read); the
    string is then ``path: message``.
    """


@frozen
class AssociationConfig:
    """One ``server``, ``peer`` or ``broadcast`` line (a remote association)."""

    kind: str
    address: str
    port: int = 123
    minpoll: int = 6
    maxpoll: int = 10
    iburst: bool = False
    burst: bool = False
    prefer: bool = False
    noselect: bool = False
    key: int | None = None
    version: int = 4
    autokey: bool = False
    ident: str | None = None
    ttl: int | None = None
    nts: bool = False
    """``nts``: authenticate the server with NTS (RFC 8915; NTS-KE first, on ``ntsport``)."""
    ntsport: int = 4460
    line: int = 0


@frozen
class RefclockConfig:
    """The LOCAL clock driver (``server 127.127.1.N`` merged with its ``fudge`` line).

    ``stratum`` is the refclock's own stratum, as ntpd's ``fudge ... stratum``: the host then
    serves ``stratum + 1``.
    """

    address: str
    stratum: int = 5
    refid: str = "LOCL"
    prefer: bool = False
    minpoll: int = 6
    maxpoll: int = 6
    line: int = 0


@frozen
class RestrictConfig:
    """One ``restrict`` line; ``address`` None means ``default``.

    ``ipv6`` is True for ``restrict -6 ...`` and for IPv6 addresses; ``restrict default``
    without ``-6`` has ``ipv6`` False.
    """

    address: str | None
    mask: str | None
    flags: frozenset[str]
    ipv6: bool = False
    line: int = 0


@frozen
class ListenConfig:
    """One ``interface listen ADDRESS`` line: a local address to bind."""

    address: str
    line: int = 0


@frozen
class CryptoConfig:
    """The ``crypto`` directive's options (Autokey on); file names are as written."""

    cert: str | None = None
    digest: str | None = None
    host: str | None = None
    ident: str | None = None
    pw: str | None = None
    randfile: str | None = None


@frozen
class FarmConfig:
    """The ``farm`` directive: this host is one instance of several behind one address,
    sharing its Autokey server values (docs/scaling.md)."""

    seedfile: str | None = None
    """The server seed's secret file (None: ``ntpkey_seed_HOST`` in the keys directory)."""
    line: int = 0


@frozen
class Config:
    """A whole parsed configuration.

    ``enabled`` holds the ``enable``/``disable`` system flags; unlike ntpd the clock
    discipline (``ntp``) is off by default, so ntpauto never touches the host clock unless
    the configuration says ``enable ntp``.
    """

    path: str = "<default>"
    associations: tuple[AssociationConfig, ...] = ()
    refclocks: tuple[RefclockConfig, ...] = ()
    broadcast_client: bool = False
    broadcast_delay: float | None = None
    keys_file: str | None = None
    trusted_keys: frozenset[int] = frozenset()
    restrictions: tuple[RestrictConfig, ...] = ()
    listen: tuple[ListenConfig, ...] = ()
    port: int = 123
    driftfile: str | None = None
    leapfile: str | None = None
    enabled: frozenset[str] = frozenset({"auth", "monitor"})
    keysdir: str | None = None
    crypto: CryptoConfig | None = None
    automax: int | None = None
    revoke: int | None = None
    ident: str | None = None
    discard_average: int = 3
    discard_minimum: int = 1
    autokey_budget: float | None = 0.2
    """``autokeybudget``: seconds of private-key CPU per second (None: unlimited)."""
    autokey_burst: float = 0.5
    """``autokeybudget ... burst``: private-key CPU seconds that may be spent at once."""
    amplification_limit: bool = True
    """``amplification``: replies to unproven sources never exceed the request's size."""
    statsaddress: tuple[str, int] | None = None
    """``statsaddress``: (IP address, TCP port) of the Prometheus ``/metrics`` endpoint."""
    rcvbuf: int | None = None
    """``rcvbuf``: bytes of UDP receive buffer per socket; None: :data:`DEFAULT_RCVBUF`,
    0: the system's default."""
    workers: int = 1
    """``workers``: processes answering client requests (0: ``auto``, one per core)."""
    farm: FarmConfig | None = None
    """``farm``: the Autokey server values come from shared files and agree between
    instances."""
    nts_server_cert: str | None = None
    """``ntsservercert``: the NTS-KE server's certificate (chain), PEM; with
    ``ntsserverkey`` it makes this host an NTS server."""
    nts_server_key: str | None = None
    """``ntsserverkey``: the private key of ``ntsservercert``, PEM."""
    nts_port: int = 4460
    """``ntsport``: the TCP port of the NTS-KE server (0: any free port)."""
    nts_trusted_certs: str | None = None
    """``ntstrustedcerts``: CA certificates (PEM) NTS-KE servers are checked against,
    instead of the system's."""
    nts_dump_dir: str | None = None
    """``ntsdumpdir``: the directory of the NTS cookie secret (shared by workers and by
    hosts behind one address)."""
    nts_rotate: int = 86400
    """``ntsrotate``: seconds per NTS cookie master key (0: never rotated)."""
    warnings: tuple[str, ...] = ()

    @property
    def receive_buffer(self) -> int:
        """Bytes of UDP receive buffer to ask for per socket (0: leave the system's)."""
        return DEFAULT_RCVBUF if self.rcvbuf is None else self.rcvbuf

    @property
    def discipline_enabled(self) -> bool:
        """True when ``enable ntp`` lets ntpauto discipline the host clock."""
        return "ntp" in self.enabled


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse ntp.conf ``text``; ``path`` names it in messages and anchors relative paths.

    Raises :class:`ConfigError` on the first error.
    """
    builder = _Builder(path)
    stack = [] if _is_pseudo_path(path) else [os.path.realpath(path)]
    builder.parse(text, path, stack)
    return builder.build()


def load_config(path: str | os.PathLike) -> Config:
    """Read and parse the ntp.conf file at ``path``."""
    name = os.fspath(path)
    try:
        text = _read_text(name)
    except _Unreadable as exc:
        raise ConfigError(name, 0, f"cannot read configuration: {exc}") from None
    return parse_config(text, name)


def default_config(port: int = 12300) -> Config:
    """The newcomer configuration: a stratum-1 server on 127.0.0.1:``port`` for everyone.

    The LOCAL refclock at fudge stratum 0 makes the host serve stratum 1; ``restrict
    default`` has no flags; the clock discipline stays off.
    """
    return Config(
        path="<default>",
        refclocks=(RefclockConfig(address="127.127.1.0", stratum=0),),
        restrictions=(RestrictConfig(address=None, mask=None, flags=frozenset()),),
        listen=(ListenConfig(address="127.0.0.1"),),
        port=port,
    )


def parse_workers(text: str, error: Callable[[str], Exception] = ValueError) -> int:
    """``N`` (1..:data:`MAX_WORKERS`) or ``auto`` (0: one per core, :func:`worker_count`);
    ``error(message)`` is raised otherwise."""
    if text == "auto":
        return 0
    if not _INTEGER.fullmatch(text) or not 1 <= int(text) <= MAX_WORKERS:
        raise error(f"workers needs 'auto' or a number of processes 1..{MAX_WORKERS}, "
                    f"not {text!r}")
    return int(text)


def worker_count(workers: int) -> int:
    """The processes ``workers`` asks for: itself, or for ``auto`` (0) the cores this
    process may run on."""
    if workers:
        return workers
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def rcvbuf_problem(size: int) -> str | None:
    """Why ``size`` bytes cannot be the ``rcvbuf`` (None: it can)."""
    if size == 0 or MIN_RCVBUF <= size <= MAX_RCVBUF:
        return None
    return f"{size} is out of range: 0 (the system's default) or {MIN_RCVBUF}..{MAX_RCVBUF} bytes"


def _is_pseudo_path(path: str) -> bool:
    return path.startswith("<") and path.endswith(">")


class _Unreadable(Exception):
    """A file could not be read; the argument is the reason."""


def _read_text(path: str) -> str:
    """Read a UTF-8 text file, raising :class:`_Unreadable` with a short reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise _Unreadable("not UTF-8 text") from exc


def _tokenize(line: str, path: str, lineno: int) -> list[str]:
    """Split one line into tokens; ``"..."`` is one token and ``#`` starts a comment."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char.isspace():
            i += 1
        elif char == "#":
            break
        elif char == '"':
            end = line.find('"', i + 1)
            if end < 0:
                raise ConfigError(path, lineno, "unterminated quoted string")
            tokens.append(line[i + 1:end])
            i = end + 1
        else:
            start = i
            while i < n and not line[i].isspace() and line[i] not in '#"':
                i += 1
            tokens.append(line[start:i])
    return tokens


@attrs.define
class _Where:
    """The file and line being parsed, for messages and relative paths."""

    path: str
    line: int
    stack: list[str]

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path, self.line, message)

    def resolve(self, name: str) -> str:
        """A path relative to this file's directory (as written when absolute)."""
        if os.path.isabs(name) or _is_pseudo_path(self.path):
            return name
        return os.path.normpath(os.path.join(os.path.dirname(self.path), name))


def _integer(where: _Where, what: str, text: str, low: int, high: int) -> int:
    if not _INTEGER.fullmatch(text):
        raise where.error(f"{what} must be an integer, not {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise where.error(f"{what} {value} is out of range {low}..{high}")
    return value


def _fraction(where: _Where, what: str, text: str, high: float) -> float:
    """A number in (0, ``high``]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= high:
        raise where.error(f"{what} must be a number above 0 and at most {high:g}, not "
                          f"{text!r}")
    return value


def _take(where: _Where, args: list[str], index: int, option: str) -> str:
    """The value token following option ``args[index - 1]``."""
    if index >= len(args):
        raise where.error(f"option {option!r} needs a value")
    return args[index]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _check_host(where: _Where, text: str) -> str:
    """An IPv4/IPv6 literal or a DNS name, returned as written."""
    if _ip(text) is not None:
        return text
    if _HOST_NAME.fullmatch(text) and not re.fullmatch(r"[0-9.]+", text) and len(text) <= 253:
        return text
    raise where.error(f"invalid address {text!r}")


def _check_refid(where: _Where, text: str) -> str:
    if not 1 <= len(text) <= 4 or not text.isascii() or not text.isprintable():
        raise where.error(f"refid must be 1 to 4 ASCII characters, not {text!r}")
    return text


def _poll_range(where: _Where, minpoll: int | None, maxpoll: int | None, default_min: int,
                default_max: int) -> tuple[int, int]:
    """Fill in defaults; a lone minpoll/maxpoll drags the other default along (as ntpd)."""
    if minpoll is not None and maxpoll is not None:
        if minpoll > maxpoll:
            raise where.error(f"minpoll {minpoll} is greater than maxpoll {maxpoll}")
        return minpoll, maxpoll
    if minpoll is not None:
        return minpoll, max(minpoll, default_max)
    if maxpoll is not None:
        return min(maxpoll, default_min), maxpoll
    return default_min, default_max


def _check_nts(where: _Where, kind: str, values: dict[str, object]) -> None:
    """``nts`` authenticates a server, alone; ``ntsport`` needs it."""
    if not values.get("nts"):
        if "ntsport" in values:
            raise where.error("option 'ntsport' needs 'nts'")
        return
    if kind != "server":
        raise where.error(f"option 'nts' is for 'server' associations, not '{kind}' (NTS "
                          "protects client-server mode only, RFC 8915 section 8.1)")
    other = "autokey" if values.get("autokey") else "key" if "key" in values else None
    if other is not None:
        raise where.error(f"options 'nts' and '{other}' are mutually exclusive")


def _check_mask(where: _Where, address: str, mask: str) -> str:
    """A dotted netmask of the address's family with contiguous one bits."""
    ip = _ip(address)
    value = _ip(mask)
    if ip is None or value is None or value.version != ip.version:
        raise where.error(f"invalid mask {mask!r} for {address}")
    width = value.max_prefixlen
    host_bits = ~int(value) & ((1 << width) - 1)
    if host_bits & (host_bits + 1):
        raise where.error(f"mask {mask} is not a contiguous netmask")
    return mask


class _Builder:
    """Accumulates directives across the top file and its includes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[str, object] = {}
        self.associations: list[AssociationConfig] = []
        self.refclocks: dict[str, RefclockConfig] = {}
        self.restrictions: list[RestrictConfig] = []
        self.listen: list[ListenConfig] = []
        self.trusted_keys: set[int] = set()
        self.enabled: set[str] = set(Config().enabled)
        self.warnings: list[str] = []
        self.handlers: dict[str, Callable[[_Where, str, list[str]], None]] = {
            "server": self._association,
            "peer": self._association,
            "broadcast": self._association,
            "fudge": self._fudge,
            "localclock": self._localclock,
            "broadcastclient": self._broadcastclient,
            "broadcastdelay": self._broadcastdelay,
            "keys": self._path_value,
            "driftfile": self._path_value,
            "leapfile": self._path_value,
            "keysdir": self._path_value,
            "trustedkey": self._trustedkey,
            "restrict": self._restrict,
            "interface": self._interface,
            "port": self._port,
            "enable": self._enable,
            "disable": self._enable,
            "crypto": self._crypto,
            "automax": self._log2_value,
            "revoke": self._log2_value,
            "ident": self._ident,
            "discard": self._discard,
            "autokeybudget": self._autokeybudget,
            "amplification": self._amplification,
            "includefile": self._includefile,
            "statsaddress": self._statsaddress,
            "rcvbuf": self._rcvbuf,
            "workers": self._workers,
            "farm": self._farm,
            "ntsservercert": self._path_value,
            "ntsserverkey": self._path_value,
            "ntstrustedcerts": self._path_value,
            "ntsdumpdir": self._path_value,
            "ntsport": self._nts_number,
            "ntsrotate": self._nts_number,
        }
        self.lines: dict[str, int] = {}

    # -- driver ------------------------------------------------------------------------

    def parse(self, text: str, path: str, stack: list[str]) -> None:
        """Apply every directive of ``text`` (the file ``path``) in order."""
        for lineno, raw in enumerate(text.splitlines(), start=1):
            tokens = _tokenize(raw, path, lineno)
            if not tokens:
                continue
            where = _Where(path, lineno, stack)
            directive, args = tokens[0], tokens[1:]
            handler = self.handlers.get(directive)
            if handler is not None:
                handler(where, directive, args)
            elif directive in UNSUPPORTED_DIRECTIVES:
                self._unsupported(where, directive)
            else:
                raise where.error(f"unknown directive {directive!r}")

    def build(self) -> Config:
        """The frozen result."""
        farm = self.values.get("farm")
        if isinstance(farm, FarmConfig) and self.values.get("crypto") is None:
            raise ConfigError(self.path, farm.line,
                              "farm shares Autokey server values: it needs the crypto "
                              "directive")
        cert, key = ("nts_server_cert" in self.values), ("nts_server_key" in self.values)
        if cert != key:
            given, missing = ("ntsservercert", "ntsserverkey") if cert else \
                ("ntsserverkey", "ntsservercert")
            raise ConfigError(self.path, self.lines[given], f"{given} needs {missing}")
        return Config(
            path=self.path,
            associations=tuple(self.associations),
            refclocks=tuple(self.refclocks.values()),
            restrictions=tuple(self.restrictions),
            listen=tuple(self.listen),
            trusted_keys=frozenset(self.trusted_keys),
            enabled=frozenset(self.enabled),
            warnings=tuple(self.warnings),
            **self.values,  # type: ignore[arg-type]
        )

    def _warn(self, where: _Where, message: str) -> None:
        self.warnings.append(f"{where.path}:{where.line}: {message}")

    def _unsupported(self, where: _Where, directive: str) -> None:
        self._warn(where, f"ntpd directive {directive!r} is not supported by ntpauto; ignored")

    @staticmethod
    def _single(where: _Where, directive: str, args: list[str]) -> str:
        """The one argument of ``directive``."""
        if not args:
            raise where.error(f"{directive} needs an argument")
        if len(args) > 1:
            raise where.error(f"unexpected {args[1]!r} after {directive} {args[0]}")
        return args[0]

    # -- associations and the local clock ----------------------------------------------

    def _association(self, where: _Where, kind: str, args: list[str]) -> None:
        if args and args[0] in ("-4", "-6"):
            self._warn(where, f"address family qualifier {args[0]!r} is ignored by ntpauto")
            args = args[1:]
        if not args:
            raise where.error(f"{kind} needs an address")
        address = _check_host(where, args[0])
        options = args[1:]
        refclock = _REFCLOCK.fullmatch(address)
        if refclock is not None and _ip(address) is not None:
            if kind != "server":
                raise where.error(f"reference clock {address} can only be configured with "
                                  "'server'")
            self._refclock(where, address, int(refclock.group(1)), options)
            return
        values: dict[str, object] = {}
        i = 0
        while i < len(options):
            option = options[i]
            i += 1
            if option in _ASSOCIATION_FLAGS:
                values[option] = True
                continue
            if option == "ident":
                values["ident"] = _take(where, options, i, option)
            elif option in _ASSOCIATION_RANGES:
                low, high = _ASSOCIATION_RANGES[option]
                values[option] = _integer(where, option, _take(where, options, i, option),
                                          low, high)
            elif option in _UNSUPPORTED_SERVER_OPTIONS:
                raise where.error(f"{kind} option {option!r} is not supported by ntpauto")
            else:
                raise where.error(f"unknown {kind} option {option!r}")
            i += 1
        if values.get("autokey") and values.get("key") is not None:
            raise where.error("options 'key' and 'autokey' are mutually exclusive")
        _check_nts(where, kind, values)
        minpoll, maxpoll = _poll_range(where, values.pop("minpoll", None),  # type: ignore[arg-type]
                                       values.pop("maxpoll", None), 6, 10)  # type: ignore[arg-type]
        self.associations.append(AssociationConfig(
            kind=kind, address=address, minpoll=minpoll, maxpoll=maxpoll, line=where.line,
            **values,  # type: ignore[arg-type]
        ))

    def _refclock(self, where: _Where, address: str, driver: int, options: list[str]) -> None:
        if driver != LOCAL_DRIVER:
            raise where.error(f"reference clock driver {driver} is not supported (ntpauto only "
                              "has driver 1, the LOCAL clock)")
        self._check_new_refclock(where, address)
        prefer = False
        polls: dict[str, int] = {}
        i = 0
        while i < len(options):
            option = options[i]
            i += 1
            if option == "prefer":
                prefer = True
            elif option in ("minpoll", "maxpoll"):
                polls[option] = _integer(where, option, _take(where, options, i, option),
                                         MIN_POLL, MAX_POLL)
                i += 1
            elif option in _ASSOCIATION_OPTIONS:
                raise where.error(f"option {option!r} is not valid for a reference clock")
            else:
                raise where.error(f"unknown reference clock option {option!r}")
        minpoll, maxpoll = _poll_range(where, polls.get("minpoll"), polls.get("maxpoll"), 6, 6)
        self.refclocks[address] = RefclockConfig(address=address, prefer=prefer, minpoll=minpoll,
                                                 maxpoll=maxpoll, line=where.line)

    def _check_new_refclock(self, where: _Where, address: str) -> None:
        previous = self.refclocks.get(address)
        if previous is not None:
            raise where.error(f"reference clock {address} is already configured (line "
                              f"{previous.line})")

    def _fudge(self, where: _Where, directive: str, args: list[str]) -> None:
        if not args:
            raise where.error("fudge needs a reference clock address")
        address = args[0]
        if _REFCLOCK.fullmatch(address) is None or _ip(address) is None:
            raise where.error(f"fudge needs a reference clock address (127.127.t.u), not "
                              f"{address!r}")
        current = self.refclocks.get(address)
        if current is None:
            raise where.error(f"fudge for unknown reference clock {address}: it must follow "
                              f"its 'server {address}' line")
        changes = self._stratum_refid(where, "fudge", args[1:], low=0, offset=0)
        self.refclocks[address] = attrs.evolve(current, **changes)

    def _localclock(self, where: _Where, directive: str, args: list[str]) -> None:
        address = f"127.127.{LOCAL_DRIVER}.0"
        self._check_new_refclock(where, address)
        changes = self._stratum_refid(where, directive, args, low=1, offset=1)
        self.refclocks[address] = RefclockConfig(address=address, line=where.line,
                                                 **changes)  # type: ignore[arg-type]

    @staticmethod
    def _stratum_refid(where: _Where, directive: str, args: list[str], low: int,
                       offset: int) -> dict[str, object]:
        """``stratum N`` (``low``..15, minus ``offset``) and ``refid XXXX`` options."""
        changes: dict[str, object] = {}
        i = 0
        while i < len(args):
            option = args[i]
            if option == "stratum":
                value = _integer(where, "stratum", _take(where, args, i + 1, option), low, 15)
                changes["stratum"] = value - offset
            elif option == "refid":
                changes["refid"] = _check_refid(where, _take(where, args, i + 1, option))
            elif directive == "fudge" and option in _UNSUPPORTED_FUDGE_OPTIONS:
                raise where.error(f"fudge option {option!r} is not supported by ntpauto")
            else:
                raise where.error(f"unknown {directive} option {option!r}")
            i += 2
        return changes

    # -- broadcast client ----------------------------------------------------------------

    def _broadcastclient(self, where: _Where, directive: str, args: list[str]) -> None:
        if args == ["novolley"]:
            self._warn(where, "broadcastclient option 'novolley' is deprecated; ignored")
        elif args:
            raise where.error(f"unexpected {args[0]!r} after broadcastclient")
        self.values["broadcast_client"] = True

    def _broadcastdelay(self, where: _Where, directive: str, args: list[str]) -> None:
        text = self._single(where, directive, args)
        try:
            delay = float(text)
        except ValueError:
            delay = math.nan
        if not math.isfinite(delay) or delay < 0:
            raise where.error(f"broadcastdelay must be a non-negative number of seconds, not "
                              f"{text!r}")
        self.values["broadcast_delay"] = delay

    # -- files, keys and crypto ------------------------------------------------------------

    def _path_value(self, where: _Where, directive: str, args: list[str]) -> None:
        self.values[_PATH_FIELDS[directive]] = where.resolve(self._single(where, directive, args))
        self.lines[directive] = where.line

    def _nts_number(self, where: _Where, directive: str, args: list[str]) -> None:
        """``ntsport PORT`` (0: any free port), ``ntsrotate SECONDS`` (0: never)."""
        high = 65535 if directive == "ntsport" else 2**31 - 1
        value = _integer(where, directive, self._single(where, directive, args), 0, high)
        self.values["nts_port" if directive == "ntsport" else "nts_rotate"] = value

    def _trustedkey(self, where: _Where, directive: str, args: list[str]) -> None:
        tokens = _KEY_RANGE_TOKEN.findall(" ".join(args))
        if not tokens:
            raise where.error("trustedkey needs at least one key ID")
        i = 0
        while i < len(tokens):
            if tokens[i] != "(":
                self.trusted_keys.add(_integer(where, "key ID", tokens[i], 1, 65535))
                i += 1
                continue
            group = tokens[i:i + 5]
            if len(group) < 5 or group[2] != "..." or group[4] != ")":
                raise where.error("malformed key ID range: expected '(LOW ... HIGH)'")
            low = _integer(where, "key ID", group[1], 1, 65535)
            high = _integer(where, "key ID", group[3], 1, 65535)
            if low > high:
                raise where.error(f"key ID range ({low} ... {high}) is empty")
            self.trusted_keys.update(range(low, high + 1))
            i += 5

    def _crypto(self, where: _Where, directive: str, args: list[str]) -> None:
        current = self.values.get("crypto") or CryptoConfig()
        changes: dict[str, str] = {}
        for i in range(0, len(args), 2):
            option = args[i]
            if option not in _CRYPTO_OPTIONS:
                raise where.error(f"unknown crypto option {option!r}")
            changes[option] = _take(where, args, i + 1, option)
        digest = changes.get("digest")
        if digest is not None and digest.lower() not in _CRYPTO_DIGESTS:
            raise where.error(f"crypto digest {digest!r} is not supported (MD5 or SHA1: the "
                              "Autokey session-key digests)")
        self.values["crypto"] = attrs.evolve(current, **changes)

    def _log2_value(self, where: _Where, directive: str, args: list[str]) -> None:
        text = self._single(where, directive, args)
        self.values[directive] = _integer(where, directive, text, 1, 31)

    def _ident(self, where: _Where, directive: str, args: list[str]) -> None:
        self.values["ident"] = self._single(where, directive, args)

    # -- access control and the network ------------------------------------------------

    def _restrict(self, where: _Where, directive: str, args: list[str]) -> None:
        family = None
        if args and args[0] in ("-4", "-6"):
            family, args = args[0], args[1:]
        if not args:
            raise where.error("restrict needs 'default' or an address")
        target, rest = args[0], args[1:]
        if target == "source":
            self._unsupported(where, "restrict source")
            return
        address: str | None = None
        mask: str | None = None
        if target == "default":
            ipv6 = family == "-6"
        else:
            ip = _ip(target)
            if ip is None:
                raise where.error(f"restrict needs 'default' or a numeric IP address, not "
                                  f"{target!r}")
            ipv6 = ip.version == 6
            if family is not None and ipv6 != (family == "-6"):
                raise where.error(f"address {target} is not an IPv{family[1]} address")
            address = target
        if rest and rest[0] == "mask":
            if address is None:
                raise where.error("'mask' cannot be used with 'default'")
            mask = _check_mask(where, address, _take(where, rest, 1, "mask"))
            rest = rest[2:]
        for flag in rest:
            if flag == "mask":
                raise where.error("'mask' must come right after the address")
            if flag not in RESTRICT_FLAGS:
                raise where.error(f"unknown restrict flag {flag!r}")
        self.restrictions.append(RestrictConfig(address=address, mask=mask,
                                                flags=frozenset(rest), ipv6=ipv6,
                                                line=where.line))

    def _interface(self, where: _Where, directive: str, args: list[str]) -> None:
        if not args:
            raise where.error("interface needs 'listen', 'ignore' or 'drop'")
        action, rest = args[0], args[1:]
        if action not in _INTERFACE_ACTIONS:
            raise where.error(f"unknown interface action {action!r}")
        target = self._single(where, f"interface {action}", rest)
        if action != "listen":
            self._warn(where, f"'interface {action}' is not supported by ntpauto (only "
                       "'interface listen' is honoured); ignored")
            return
        if _ip(target) is None:
            raise where.error(f"interface listen needs an IP address, not {target!r} (interface "
                              "names, prefixes and all/ipv4/ipv6/wildcard are not supported)")
        self.listen.append(ListenConfig(address=target, line=where.line))

    def _port(self, where: _Where, directive: str, args: list[str]) -> None:
        text = self._single(where, directive, args)
        self.values["port"] = _integer(where, "port", text, 1, 65535)

    def _enable(self, where: _Where, directive: str, args: list[str]) -> None:
        if not args:
            raise where.error(f"{directive} needs at least one flag")
        on = directive == "enable"
        for flag in args:
            if flag not in SYSTEM_FLAGS:
                raise where.error(f"unknown {directive} flag {flag!r}")
            if flag == "bclient":
                self.values["broadcast_client"] = on
            elif on:
                self.enabled.add(flag)
            else:
                self.enabled.discard(flag)

    def _discard(self, where: _Where, directive: str, args: list[str]) -> None:
        if not args:
            raise where.error("discard needs 'average', 'minimum' or 'monitor'")
        for i in range(0, len(args), 2):
            option = args[i]
            if option not in _DISCARD_OPTIONS:
                raise where.error(f"unknown discard option {option!r}")
            text = _take(where, args, i + 1, option)
            if option == "average":
                self.values["discard_average"] = _integer(where, option, text, 0, MAX_POLL)
            elif option == "minimum":
                self.values["discard_minimum"] = _integer(where, option, text, 0, 255)
            else:
                _integer(where, option, text, 0, 2**31 - 1)
                self._warn(where, "'discard monitor' is not supported by ntpauto; ignored")

    def _statsaddress(self, where: _Where, directive: str, args: list[str]) -> None:
        """``statsaddress [HOST:]PORT``: IPv4 ``a.b.c.d:PORT``, IPv6 ``[addr]:PORT``; a bare
        port means loopback (127.0.0.1).  Port 0 picks a free port."""
        text = self._single(where, directive, args)
        host, sep, port = text.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        ip = _ip(host[1:-1] if bracketed else host) if sep else _ip("127.0.0.1")
        if ip is None or (sep and (ip.version == 6) != bracketed):
            raise where.error(f"statsaddress needs PORT, IPV4:PORT or [IPV6]:PORT, not "
                              f"{text!r}")
        number = _integer(where, "statsaddress port", port, 0, 65535)
        self.values["statsaddress"] = (str(ip), number)

    def _rcvbuf(self, where: _Where, directive: str, args: list[str]) -> None:
        """``rcvbuf BYTES`` (ntpauto extension): the UDP receive buffer, 0 for the system's
        default."""
        text = self._single(where, directive, args)
        if not _INTEGER.fullmatch(text):
            raise where.error(f"rcvbuf must be a number of bytes, not {text!r}")
        problem = rcvbuf_problem(int(text))
        if problem is not None:
            raise where.error(f"rcvbuf {problem}")
        self.values["rcvbuf"] = int(text)

    def _workers(self, where: _Where, directive: str, args: list[str]) -> None:
        """``workers N|auto`` (ntpauto extension): processes answering client requests."""
        self.values["workers"] = parse_workers(self._single(where, directive, args),
                                               where.error)

    def _farm(self, where: _Where, directive: str, args: list[str]) -> None:
        """``farm [seedfile FILE]`` (ntpauto extension): one instance of a farm."""
        seedfile = None
        if args:
            if args[0] != "seedfile":
                raise where.error(f"unknown farm option {args[0]!r}")
            seedfile = where.resolve(_take(where, args, 1, "seedfile"))
            if len(args) > 2:
                raise where.error(f"unexpected {args[2]!r} after farm seedfile")
        self.values["farm"] = FarmConfig(seedfile=seedfile, line=where.line)

    def _autokeybudget(self, where: _Where, directive: str, args: list[str]) -> None:
        """``autokeybudget SHARE|unlimited [burst SECONDS]`` (ntpauto extension)."""
        if not args:
            raise where.error("autokeybudget needs a share of one core or 'unlimited'")
        share: float | None = None
        if args[0] != "unlimited":
            share = _fraction(where, "autokeybudget share", args[0], 1.0)
        rest = args[1:]
        if rest:
            if rest[0] != "burst":
                raise where.error(f"unknown autokeybudget option {rest[0]!r}")
            text = _take(where, rest, 1, "burst")
            if len(rest) > 2:
                raise where.error(f"unexpected {rest[2]!r} after autokeybudget burst")
            self.values["autokey_burst"] = _fraction(where, "autokeybudget burst", text, 60.0)
        self.values["autokey_budget"] = share

    def _amplification(self, where: _Where, directive: str, args: list[str]) -> None:
        """``amplification limit|allow`` (ntpauto extension; allow: closed networks)."""
        choice = self._single(where, directive, args)
        if choice not in _AMPLIFICATION_CHOICES:
            raise where.error(f"amplification needs 'limit' or 'allow', not {choice!r}")
        self.values["amplification_limit"] = choice == "limit"

    def _includefile(self, where: _Where, directive: str, args: list[str]) -> None:
        target = where.resolve(self._single(where, directive, args))
        real = os.path.realpath(target)
        if real in where.stack:
            raise where.error(f"include loop: {target} is already being read")
        if len(where.stack) >= MAX_INCLUDE_DEPTH:
            raise where.error(f"includefile nested more than {MAX_INCLUDE_DEPTH} deep")
        try:
            text = _read_text(target)
        except _Unreadable as exc:
            raise where.error(f"cannot read included file {target}: {exc}") from None
        self.parse(text, target, [*where.stack, real])


_ASSOCIATION_RANGES = {
    "minpoll": (MIN_POLL, MAX_POLL),
    "maxpoll": (MIN_POLL, MAX_POLL),
    "key": (1, 65535),
    "version": (1, 4),
    "ttl": (0, 255),
    "port": (1, 65535),
    "ntsport": (1, 65535),
}
_ASSOCIATION_FLAGS = ("iburst", "burst", "prefer", "noselect", "autokey", "nts")
_ASSOCIATION_OPTIONS = frozenset({*_ASSOCIATION_FLAGS, "ident",
                                  *_ASSOCIATION_RANGES, *_UNSUPPORTED_SERVER_OPTIONS})
_UNSUPPORTED_FUDGE_OPTIONS = frozenset({"time1", "time2", "flag1", "flag2", "flag3", "flag4"})
_PATH_FIELDS = {"keys": "keys_file", "driftfile": "driftfile", "leapfile": "leapfile",
                "keysdir": "keysdir", "ntsservercert": "nts_server_cert",
                "ntsserverkey": "nts_server_key", "ntstrustedcerts": "nts_trusted_certs",
                "ntsdumpdir": "nts_dump_dir"}
_INTERFACE_ACTIONS = ("listen", "ignore", "drop")
_DISCARD_OPTIONS = ("average", "minimum", "monitor")
_AMPLIFICATION_CHOICES = ("limit", "allow")
_FAMILY = frozenset({"-4", "-6"})

DIRECTIVE_OPTIONS: dict[str, frozenset[str]] = {
    "server": frozenset({*_FAMILY, *_ASSOCIATION_FLAGS, "ident", *_ASSOCIATION_RANGES}),
    "peer": frozenset({*_FAMILY, *_ASSOCIATION_FLAGS, "ident", *_ASSOCIATION_RANGES})
    - {"nts", "ntsport"},
    "broadcast": frozenset({*_FAMILY, *_ASSOCIATION_FLAGS, "ident", *_ASSOCIATION_RANGES})
    - {"nts", "ntsport"},
    "fudge": frozenset({"stratum", "refid"}),
    "localclock": frozenset({"stratum", "refid"}),
    "broadcastclient": frozenset({"novolley"}),
    "broadcastdelay": frozenset(),
    "keys": frozenset(),
    "driftfile": frozenset(),
    "leapfile": frozenset(),
    "keysdir": frozenset(),
    "trustedkey": frozenset(),
    "restrict": frozenset({*_FAMILY, "default", "source", "mask", *RESTRICT_FLAGS}),
    "interface": frozenset(_INTERFACE_ACTIONS),
    "port": frozenset(),
    "enable": SYSTEM_FLAGS,
    "disable": SYSTEM_FLAGS,
    "crypto": frozenset(_CRYPTO_OPTIONS),
    "automax": frozenset(),
    "revoke": frozenset(),
    "ident": frozenset(),
    "discard": frozenset(_DISCARD_OPTIONS),
    "autokeybudget": frozenset({"unlimited", "burst"}),
    "amplification": frozenset(_AMPLIFICATION_CHOICES),
    "includefile": frozenset(),
    "statsaddress": frozenset(),
    "rcvbuf": frozenset(),
    "workers": frozenset({"auto"}),
    "farm": frozenset({"seedfile"}),
    "ntsservercert": frozenset(),
    "ntsserverkey": frozenset(),
    "ntstrustedcerts": frozenset(),
    "ntsdumpdir": frozenset(),
    "ntsport": frozenset(),
    "ntsrotate": frozenset(),
}
"""Every implemented directive and the keywords the parser accepts after it (options,
flags, actions; not their values).  ``tests/test_docs.py`` checks that docs/configuration.md
documents each one, and that the keys equal :func:`directive_names`: a new directive needs
an entry here."""


def directive_names() -> frozenset[str]:
    """The directives the parser implements: the keys of its dispatch table.  (The ntpd
    directives it ignores with a warning are :data:`UNSUPPORTED_DIRECTIVES`.)"""
    return frozenset(_Builder("<directives>").handlers)
