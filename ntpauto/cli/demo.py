"""``ntpauto demo``: build a three-host Autokey group on loopback and watch the dances complete.

With no files and no configuration, the demo makes a temporary directory, generates the keys
of a secure group ``demo`` with ``ntpauto keygen`` (small sizes, so it is fast) and runs three
real ``twistd -n ntpautokey`` daemons on loopback:

* ``alice@demo`` (127.0.0.1): the trusted host, stratum 1 from its local clock;
* ``bob@demo`` (127.0.0.2): a client of alice and the server of carol (stratum 2);
* ``carol@demo`` (127.0.0.3): a client of bob (stratum 3), started once bob is synchronised
  (an unsynchronised server signs nothing, so an earlier start would only wait).

It queries the daemons over mode 6 (as ``ntpauto status`` does) every second and prints each
association's Autokey flags as they light up, then the certificate trail carol sees, the
identity scheme and the offsets of the proventic associations. The exit status is 0 when every
association is proventic, both clients have a system peer and (except in PC) carol's trail runs
through bob's certificate signed by alice; 1 with what is missing after ``--timeout`` seconds
(default 60) or on an error; 130 when interrupted (Ctrl-C, SIGTERM). The daemons are always
stopped (on Linux they also die with the demo) and the directory is removed unless ``--keep``.

Usage: ``ntpauto demo [--ident tc|pc|iff|gq|mv] [--timeout S] [--keep] [--quiet]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

from ntpauto.cli import keygen as keygen_cli
from ntpauto.cli import status as status_cli
from ntpauto.config import load_config
from ntpauto.mode6_client import ControlError

__all__ = ["GROUP", "HOSTS", "SCHEMES", "DemoError", "register", "run"]

SCHEMES = ("tc", "pc", "iff", "gq", "mv")
GROUP = "demo"
HOST_BITS = "1024"
IDENTITY_BITS = "256"
DEFAULT_TIMEOUT = 60.0
POLL_OPTIONS = "iburst burst minpoll 3 maxpoll 3"
"""Poll options of the server lines: 8 s polls, each a burst of 8 packets 2 s apart, so the
dances and the clock filters advance every 2 s rather than every 8 s once the first burst
(iburst) is spent (fine on loopback; never burst a server that is not yours)."""
POLL_SECONDS = 1.0
STOP_SECONDS = 10.0
HIDDEN_FLAGS = frozenset({"ENAB", "TAI"})
TWISTD = ("-c", "import sys; from twisted.scripts.twistd import run; "
                "sys.argv[0] = 'twistd'; run()")

_TRUSTED_OPTIONS = {"tc": ("-T",), "pc": ("-P",), "iff": ("-T", "-I"), "gq": ("-T", "-G"),
                    "mv": ("-T", "-V", "3")}
_SERVER_KEY = {"iff": "iffkey", "gq": "gqkey", "mv": "mvkey"}
SCHEME_NOTES = {
    "tc": "trusted certificate: the certificate trail to alice's trusted root is the only "
          "proof",
    "pc": "private certificate: every member holds the same key and private certificate; "
          "nothing else is exchanged",
    "iff": "Schnorr identification: the server answered a challenge with the group key that "
           "ntpkey_iffpar_demo matches",
    "gq": "Guillou-Quisquater: the server answered a challenge with the private key matching "
          "the GQ key in its certificate",
    "mv": "Mu-Varadharajan: the server answered a challenge with its server key, which the "
          "client key ntpkey_mvpar_demo verifies",
}


@attrs.frozen
class Host:
    """One member of the demo group."""

    name: str
    address: str
    upstream: str | None
    role: str

    @property
    def subject(self) -> str:
        """The certificate subject, ``name@demo``."""
        return f"{self.name}@{GROUP}"

    @property
    def password(self) -> str:
        """The password of the host's key files (``crypto pw``)."""
        return f"{self.name}-demo-pw"


HOSTS = (
    Host("alice", "127.0.0.1", None, "trusted host, stratum 1 from its local clock"),
    Host("bob", "127.0.0.2", "alice", "client of alice, server of carol"),
    Host("carol", "127.0.0.3", "bob", "client of bob"),
)
_BY_NAME = {host.name: host for host in HOSTS}
_BY_ADDRESS = {host.address: host for host in HOSTS}


DESCRIPTION = ("Build a three-host Autokey group (alice, bob, carol) on loopback in a "
               "temporary directory, run a real daemon for each, and watch their Autokey "
               "exchanges complete. Nothing outside the temporary directory is touched.")


class DemoError(Exception):
    """The demo cannot go on; ``str()`` says why."""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser(
        "demo", help="run a three-host Autokey group on loopback and watch the dances",
        description=DESCRIPTION)
    parser.add_argument("--ident", choices=SCHEMES, default="iff", type=str.lower,
                        help="identity scheme of the group (default iff)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up (exit 1) after this many seconds "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (keys, ntp.conf, logs)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the result line")
    parser.set_defaults(func=run)


# -- keys ---------------------------------------------------------------------------------


def _keygen(directory: Path, *argv: str) -> str:
    """Run ``ntpauto keygen --keysdir directory argv`` in-process; its stdout."""
    parser = argparse.ArgumentParser(prog="ntpauto")
    keygen_cli.register(parser.add_subparsers())
    args = parser.parse_args(["keygen", "--keysdir", str(directory), *argv])
    out, err = io.StringIO(), io.StringIO()
    if keygen_cli.run(args, stdout=out, stderr=err) != 0:
        lines = err.getvalue().strip().splitlines() or ["failed"]
        raise DemoError(f"ntpauto keygen {' '.join(argv)}: {lines[-1]}")
    return out.getvalue()


def _link(directory: Path, link: str, target: str) -> None:
    path = directory / link
    if path.is_symlink() or path.exists():
        path.unlink()
    os.symlink(target, path)


def _save_export(directory: Path, text: str) -> str:
    """Write a ``keygen -e``/``-q`` export under the name in its first line and link it
    without the filestamp, as ntp-keygen's users do; the link name."""
    name = text.splitlines()[0].lstrip("#").strip()
    path = directory / name
    path.write_text(text)
    path.chmod(0o600)
    link = name.rsplit(".", 1)[0]
    _link(directory, link, name)
    return link


def make_keys(root: Path, scheme: str) -> dict[str, list[str]]:
    """Generate every host's keys under ``root/<host>``; what each host got, for display."""
    dirs = {host.name: root / host.name for host in HOSTS}
    for directory in dirs.values():
        directory.mkdir(mode=0o700)
    alice, bob, carol = HOSTS
    got: dict[str, list[str]] = {host.name: [] for host in HOSTS}
    identity = ("-b", IDENTITY_BITS) if scheme in _SERVER_KEY else ()
    trusted = _TRUSTED_OPTIONS[scheme]
    _keygen(dirs["alice"], *trusted, "-m", HOST_BITS, *identity, "-s", alice.subject,
            "-p", alice.password)
    if scheme == "pc":
        got["alice"].append(f"host key and private certificate (keygen -P -m {HOST_BITS})")
        for host in (bob, carol):
            for source in dirs["alice"].glob("ntpkey_*"):
                shutil.copy2(source, dirs[host.name] / source.name, follow_symlinks=False)
            got[host.name].append("a copy of alice's key and private certificate")
        return got
    got["alice"].append(f"host key, trusted certificate (keygen {' '.join(trusted)} "
                        f"-m {HOST_BITS}{' -b ' + IDENTITY_BITS if identity else ''})")
    if scheme in _SERVER_KEY:
        kind = _SERVER_KEY[scheme]
        params = _keygen(dirs["alice"], "-e", "-s", alice.subject, "-p", alice.password)
        for host in (bob, carol):
            link = _save_export(dirs[host.name], params)
            got[host.name].append(f"{link} (client parameters, keygen -e)")
        # The hosts that answer identity challenges: alice and bob, each with the server
        # key encrypted with its own password, named for the group (crypto ident demo).
        if scheme == "mv":
            link = _save_export(dirs["alice"], _keygen(
                dirs["alice"], "-q", alice.password, "-s", alice.subject, "-p",
                alice.password))
        else:
            link = f"ntpkey_{kind}_{GROUP}"
            _link(dirs["alice"], link, os.readlink(dirs["alice"] / f"ntpkey_{kind}_alice"))
        got["alice"].append(f"{link} (server key)")
        link = _save_export(dirs["bob"], _keygen(
            dirs["alice"], "-q", bob.password, "-s", alice.subject, "-p", alice.password))
        got["bob"].append(f"{link} (server key, keygen -q)")
        if scheme == "gq":
            # keygen puts the GQ key linked as ntpkey_gqkey_<host> into the certificate.
            _link(dirs["bob"], "ntpkey_gqkey_bob", os.readlink(dirs["bob"] / link))
    for host in (bob, carol):
        _keygen(dirs[host.name], "-m", HOST_BITS, "-s", host.subject, "-p", host.password)
        extra = ", carrying the GQ key" if scheme == "gq" and host is bob else ""
        got[host.name].insert(0, f"host key, self-signed certificate{extra} "
                                 f"(keygen -m {HOST_BITS})")
    return got


# -- configuration ------------------------------------------------------------------------


def free_port(address: str) -> int:
    """A free UDP port on ``address`` (the kernel's choice, from the high ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            raise DemoError(f"cannot use loopback address {address}: {exc}") from None
        return sock.getsockname()[1]


def config_text(host: Host, scheme: str, ports: dict[str, int]) -> str:
    """The ntp.conf of ``host`` (keysdir is the directory of the file)."""
    lines = [f"# {host.subject}: {host.role} (ntpauto demo, identity {scheme.upper()})",
             f"interface listen {host.address}", f"port {ports[host.name]}"]
    if host.upstream is None:
        lines.append("localclock stratum 1")
    else:
        upstream = _BY_NAME[host.upstream]
        ident = f" ident {GROUP}" if scheme in _SERVER_KEY else ""
        lines.append(f"server {upstream.address} port {ports[upstream.name]} autokey{ident} "
                     f"{POLL_OPTIONS}")
    if scheme == "pc":
        lines.append(f"crypto host alice pw {HOSTS[0].password}")
    else:
        lines.append(f"crypto host {host.name} ident {GROUP} pw {host.password}")
    lines.append("keysdir .")
    return "\n".join(lines) + "\n"


# -- daemons ------------------------------------------------------------------------------


def _child_environment() -> dict[str, str]:
    """The environment of the daemons: ours, plus the directory holding ``ntpauto`` on
    PYTHONPATH when it is a source checkout rather than an installed package."""
    import ntpauto

    variables = dict(os.environ)
    home = os.path.realpath(Path(ntpauto.__file__).resolve().parents[1])
    sites = set()
    with contextlib.suppress(AttributeError):
        sites.update(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        sites.add(site.getusersitepackages())
    if home not in {os.path.realpath(s) for s in sites}:
        variables["PYTHONPATH"] = os.pathsep.join(
            filter(None, [home, variables.get("PYTHONPATH")]))
    return variables


def _die_with_parent() -> Any:
    """On Linux, a pre-exec hook that makes the child get SIGTERM if the demo dies (even by
    SIGKILL), so no daemon outlives it; ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return hook


@attrs.define
class Daemon:
    """One running ``twistd -n ntpautokey``."""

    host: Host
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    output: Path

    def status(self) -> dict[str, Any] | None:
        """Its status document (read over mode 6), or ``None`` while it cannot be read."""
        try:
            return status_cli.fetch(self.host.address, self.port, timeout=2.0)
        except (OSError, ControlError):
            return None

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log and output, for error reports."""
        text = []
        for path in (self.output, self.log):
            with contextlib.suppress(OSError):
                text.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(f"    {line}" for line in text) or "    (no output)"


def start_daemon(root: Path, host: Host) -> Daemon:
    """Start ``host``'s daemon with its ntp.conf in ``root/<host>``."""
    directory = root / host.name
    log, output = root / f"{host.name}.log", directory / "twistd.out"
    port = load_config(str(directory / "ntp.conf")).port
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *TWISTD, "-n", "--pidfile=", "--logfile", str(log),
             "ntpautokey", "--config", str(directory / "ntp.conf")],
            cwd=directory, env=_child_environment(), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent())
    return Daemon(host, process, port, log, output)


def stop_daemons(daemons: list[Daemon]) -> None:
    """Terminate every daemon and wait for it (kill it if it does not stop in time)."""
    for daemon in daemons:
        if daemon.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                daemon.process.terminate()
    for daemon in daemons:
        try:
            daemon.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()


# -- watching -----------------------------------------------------------------------------


def _autokey_associations(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not document:
        return []
    return [a for a in document["associations"] if a.get("autokey")]


def _label(client: Host, association: dict[str, Any]) -> str:
    peer = _BY_ADDRESS.get(association["address"])
    return f"{client.name} -> {peer.name if peer else association['address']}"


def _shown_flags(association: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f for f in association["autokey"]["flags"] if f not in HIDDEN_FLAGS)


def _expected_trail(client: Host, scheme: str) -> list[list[str]] | None:
    """The trail ``client`` must see in the end: its server's certificate up to alice's
    trusted root (bob's signed by alice after bob's SIGN); ``None`` in PC (one shared
    private certificate, no trail to wait for)."""
    if scheme == "pc":
        return None
    root = [HOSTS[0].subject, HOSTS[0].subject]
    server = _BY_NAME[client.upstream or "alice"]
    if server is HOSTS[0]:
        return [root]
    return [[server.subject, HOSTS[0].subject], root]


def missing(documents: dict[str, dict[str, Any] | None], scheme: str) -> list[str]:
    """What is not done yet, one line per item; empty when the demo has succeeded."""
    lacking = []
    for client in HOSTS[1:]:
        document = documents.get(client.name)
        if client.name not in documents and client.upstream != "alice":
            lacking.append(f"{client.name}: not started (waiting for {client.upstream} to be "
                           "synchronised)")
            continue
        if document is None:
            lacking.append(f"{client.name}: no status from its daemon")
            continue
        associations = _autokey_associations(document)
        if not associations:
            lacking.append(f"{client.name}: no Autokey association")
            continue
        for association in associations:
            autokey = association["autokey"]
            label = _label(client, association)
            if not autokey["proventic"]:
                flags = " ".join(_shown_flags(association)) or "none"
                lacking.append(f"{label}: not proventic (flags so far: {flags})")
            expected = _expected_trail(client, scheme)
            if expected is not None and autokey["trail"] != expected:
                shown = " <- ".join(f"{s} (issuer {i})" for s, i in autokey["trail"]) or "none"
                want = " <- ".join(f"{s} (issuer {i})" for s, i in expected)
                lacking.append(f"{label}: certificate trail is {shown}, waiting for {want}")
        peer = document["system"]["peer"]
        if not any(a["associd"] == peer for a in associations):
            lacking.append(f"{client.name}: no system peer")
    return lacking


def _seconds(value: float) -> str:
    return f"{value:+.6f} s"


def report(documents: dict[str, dict[str, Any] | None], scheme: str, out: TextIO) -> None:
    """The trail carol sees, the identity scheme and the proventic offsets."""
    carol = documents["carol"]
    [association] = _autokey_associations(carol)[:1] or [None]
    if association is None:
        return
    autokey = association["autokey"]
    out.write(f"\ncertificate trail carol sees (server {autokey['peer']}):\n")
    trail = autokey["trail"]
    if not trail and scheme == "pc":
        out.write(f"  none: in PC every host holds the private certificate {autokey['peer']}, "
                  "trusted as it is\n")
    elif not trail:
        out.write("  none\n")
    width = max((len(subject) for subject, _ in trail), default=0)
    for index, (subject, issuer) in enumerate(trail):
        if subject != issuer:
            note = f"signed by {issuer}"
            if subject == "bob@demo":
                note += " (bob's SIGN exchange with alice)"
        elif scheme == "pc":
            note = "self-signed private certificate, shared by the whole group"
        elif index == len(trail) - 1:
            note = "self-signed, the trusted root"
        else:
            note = "self-signed"
        out.write(f"  {index + 1}. {subject:<{width}}  {note}\n")
    names = {association["autokey"]["scheme"] for client in HOSTS[1:]
             for association in _autokey_associations(documents[client.name])}
    out.write(f"\nidentity scheme: {', '.join(sorted(n.upper() for n in names if n))} "
              f"({SCHEME_NOTES[scheme]})\n")
    out.write("\nproventic associations (time from the proven server):\n")
    for client in HOSTS[1:]:
        document = documents[client.name]
        assert document is not None
        system = document["system"]
        for association in _autokey_associations(document):
            peer = " (system peer)" if association["associd"] == system["peer"] else ""
            out.write(f"  {_label(client, association):<14} offset "
                      f"{_seconds(association['offset'])}  delay {association['delay']:.6f} s"
                      f"  server stratum {association['stratum']}{peer}; "
                      f"{client.name} is at stratum {system['stratum']}\n")


def server_ready(documents: dict[str, dict[str, Any] | None]) -> bool:
    """Bob can serve carol: his proventic association with alice is his system peer, so he
    is synchronised and signs his values (an unsynchronised server signs nothing)."""
    document = documents.get(HOSTS[1].name)
    return document is not None and any(
        a["associd"] == document["system"]["peer"] and a["autokey"]["proventic"]
        for a in _autokey_associations(document))


def watch(root: Path, daemons: list[Daemon], scheme: str, deadline: float, started: float,
          out: TextIO | None) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """Query the daemons every second until the demo succeeds or the deadline passes;
    print a line whenever an association's flags change, and start carol's daemon once bob
    can serve her.  The last documents and what is still missing (empty on success)."""
    shown: dict[str, tuple[str, ...]] = {}
    peers: dict[str, int | None] = {}
    carol = HOSTS[2]

    def say(text: str) -> None:
        if out is not None:
            out.write(f"  [{time.monotonic() - started:5.1f} s] {text}\n")
            out.flush()

    while True:
        for daemon in daemons:
            code = daemon.process.poll()
            if code is not None:
                raise DemoError(f"the {daemon.host.name} daemon exited with status {code}:\n"
                                f"{daemon.tail()}")
        documents = {daemon.host.name: daemon.status() for daemon in daemons}
        for client in HOSTS[1:]:
            document = documents.get(client.name)
            for association in _autokey_associations(document):
                label, flags = _label(client, association), _shown_flags(association)
                if shown.get(label) != flags:
                    shown[label] = flags
                    say(f"{label}: {' '.join(flags) or '(no flags yet)'}")
            if document is not None and peers.get(client.name) != document["system"]["peer"]:
                peers[client.name] = peer = document["system"]["peer"]
                if peer is not None:
                    server = next((_label(client, a).split(" -> ")[1]
                                   for a in document["associations"] if a["associd"] == peer),
                                  "?")
                    say(f"{client.name}: system peer {server}, {client.name} now at stratum "
                        f"{document['system']['stratum']}")
        if carol.name not in documents and server_ready(documents):
            daemons.append(start_daemon(root, carol))
            say(f"bob is synchronised to alice: starting carol (pid "
                f"{daemons[-1].process.pid})")
        lacking = missing(documents, scheme)
        now = time.monotonic()
        if not lacking or now >= deadline:
            return documents, lacking
        time.sleep(min(POLL_SECONDS, deadline - now))


# -- the command --------------------------------------------------------------------------


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C while the demo runs (so cleanup happens)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while the daemons are being stopped."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo; 0 when every dance completed, 1 otherwise, 130 when interrupted."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.timeout <= 0:
        print("ntpauto demo: --timeout must be positive", file=err)
        return 1
    talk = None if args.quiet else out
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="ntpauto-demo-"))
    daemons: list[Daemon] = []
    status = 1
    try:
        with _terminate_as_interrupt():
            status = _demo(root, args.ident, args.timeout, started, daemons, talk, out, err)
    except KeyboardInterrupt:
        print("ntpauto demo: interrupted", file=err)
        status = 130
    except BrokenPipeError:  # the reader of our output left (| head): stop, quietly
        from ntpauto.cli import BROKEN_PIPE_STATUS

        status = BROKEN_PIPE_STATUS
    except (DemoError, OSError) as exc:
        print(f"ntpauto demo: {exc}", file=err)
        status = 1
    finally:
        with _no_interrupts():
            if daemons:
                _tell(talk, "\nstopping the daemons\n")
                stop_daemons(daemons)
            if args.keep:
                _tell(out, f"kept {root} (per host: ntp.conf, keys, twistd.out; at the top: "
                           "the daemons' logs)\n")
            else:
                shutil.rmtree(root, ignore_errors=True)
                _tell(talk, f"removed {root}\n")
    return status


def _tell(stream: TextIO | None, text: str) -> None:
    """Write ``text`` to ``stream`` while cleaning up: a reader that has gone away (a
    closed pipe) must not keep the daemons from being stopped."""
    if stream is None:
        return
    with contextlib.suppress(BrokenPipeError):
        stream.write(text)
        stream.flush()


def _demo(root: Path, scheme: str, timeout: float, started: float, daemons: list[Daemon],
          talk: TextIO | None, out: TextIO, err: TextIO) -> int:
    """Keys, configurations, daemons, watching and the report (``run`` cleans up)."""
    def say(text: str) -> None:
        if talk is not None:
            talk.write(text)
            talk.flush()

    say(f"ntpauto demo: secure group '{GROUP}', identity scheme {scheme.upper()}, "
        f"on loopback, in {root}\n")
    say(f"\nkeys (ntpauto keygen; small sizes so it is fast: -m {HOST_BITS} host keys"
        f"{', -b ' + IDENTITY_BITS + ' identity keys' if scheme in _SERVER_KEY else ''}; "
        "use the defaults for real groups):\n")
    got = make_keys(root, scheme)
    for host in HOSTS:
        say(f"  {host.subject:<11} {'; '.join(got[host.name])}\n")
    ports = {host.name: free_port(host.address) for host in HOSTS}
    for host in HOSTS:
        (root / host.name / "ntp.conf").write_text(config_text(host, scheme, ports))
    say(f"  ({time.monotonic() - started:.1f} s)\n\ndaemons (twistd -n ntpautokey; server "
        f"lines: {POLL_OPTIONS}):\n")
    for host in HOSTS:
        if host is HOSTS[2]:
            pid = "starts once bob is synchronised"
        else:
            daemons.append(start_daemon(root, host))
            pid = f"pid {daemons[-1].process.pid}"
        say(f"  {host.name:<6} {host.address}:{ports[host.name]:<6} {host.role}; {pid}\n")
    say("\nAutokey flags as they light up (client -> server: flags; every second):\n")
    documents, lacking = watch(root, daemons, scheme, started + timeout, started, talk)
    elapsed = time.monotonic() - started
    if lacking:
        print(f"ntpauto demo: not done after {elapsed:.1f} s (--timeout {timeout:g}); "
              "missing:", file=err)
        for line in lacking:
            print(f"  {line}", file=err)
        for daemon in daemons:
            print(f"  {daemon.host.name} log:\n{daemon.tail(8)}", file=err)
        return 1
    if talk is not None:
        report(documents, scheme, talk)
    out.write(f"\nntpauto demo: {scheme.upper()}: every association is proventic and both "
              f"clients have a system peer, in {elapsed:.1f} s\n")
    return 0
