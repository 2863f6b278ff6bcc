"""``ntpauto status``: a running daemon's associations and Autokey state, over mode 6.

Per association: peer, mode, reach, offset, delay, jitter and the Autokey state (flags by
name, identity scheme, certificate trail with expiry) or the NTS state (NTS-KE server, AEAD,
cookies held, time of the last NTS-KE exchange), read as ``ntpq`` reads them.

Usage: ``ntpauto status [HOST] [--port N] [--json] [--timeout S]`` (HOST defaults to
127.0.0.1 and the port to 12300, the embedded default's).  A daemon that does not answer is a
one-line error worded as ``ntpauto query`` words it (:mod:`ntpauto.cli.udp`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ntpauto.autokey.status import flag_names
from ntpauto.cli.udp import ExchangeError, connect, failure
from ntpauto.mode6 import OP_READSTAT, OP_READVAR
from ntpauto.mode6_client import (
    ControlError,
    Response,
    parse_associations,
    parse_variables,
    peer_status,
    request,
)

MODES = {1: "active", 2: "passive", 3: "client", 4: "server", 5: "broadcast", 6: "bclient"}
"""Association host modes (ntpq ``hmode``) by name."""
SHOWN_MODES = {"client": "client", "active": "sym act", "passive": "sym pas",
               "broadcast": "bcast", "bclient": "bclient"}
HIDDEN_FLAGS = frozenset({"ENAB", "TAI"})
SCHEME_BITS = (("pc", 0x10), ("iff", 0x20), ("gq", 0x40), ("mv", 0x80))
"""The reference's order of identity schemes by status bit (for daemons that do not tell
which scheme an association uses)."""
CERT_TRUST = 0x01
CERT_PRIV = 0x08
CERT_ERROR = 0x80
VRFY = 0x0200
PROV = 0x0400
DESCRIPTION = ("Show a running ntpauto (or ntpd) daemon's system state and associations: peer, "
               "mode, reach, offset, delay, jitter and the Autokey state (flags, identity "
               "scheme, certificate trail), read over NTP mode 6 as ntpq reads them.")


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser("status", help="show a running daemon's associations",
                                   description=DESCRIPTION)
    parser.add_argument("host", nargs="?", default="127.0.0.1",
                        help="the daemon's address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=12300, metavar="N",
                        help="the daemon's NTP port (default 12300)")
    parser.add_argument("--json", action="store_true",
                        help="print the status as JSON (times in seconds)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="seconds to wait for each answer (default 5)")
    parser.set_defaults(func=run)


# -- I/O ----------------------------------------------------------------------------------


class Session:
    """Mode 6 queries to one daemon over UDP (one retransmission, as ntpq does)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self._sock = connect(host, port)
        self._timeout = timeout
        self._sequence = int(time.monotonic() * 1000) & 0xFFFF

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, opcode: int, associd: int = 0, data: bytes = b"") -> Response:
        """Send a request and collect its whole response; TimeoutError when none comes."""
        self._sequence = (self._sequence + 1) & 0xFFFF or 1
        packet = request(opcode, self._sequence, associd, data)
        for _attempt in range(2):
            response = Response(opcode, self._sequence)
            self._sock.send(packet)
            deadline = time.monotonic() + self._timeout / 2
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._sock.settimeout(remaining)
                try:
                    datagram = self._sock.recv(4096)
                except TimeoutError:
                    break
                if response.add(datagram):
                    return response
        raise TimeoutError("no answer")

    def variables(self, associd: int = 0, names: str = "") -> list[tuple[str, str]]:
        """READVAR: the default list, or the named variables (comma-separated)."""
        return parse_variables(self.query(OP_READVAR, associd, names.encode()).data)

    def associations(self) -> list[tuple[int, int]]:
        """READSTAT: (association ID, status word) pairs."""
        return parse_associations(self.query(OP_READSTAT).data)


def gather(query: Session) -> dict[str, Any]:
    """Everything ``status`` shows, read through ``query``: system variables, counters,
    and per association its variables and (ntpauto daemons) identity scheme and trail."""
    system = query.variables()
    try:
        counters = query.variables(0, "counters")
    except ControlError:
        counters = []  # not ntpauto
    associations = []
    for associd, status in query.associations():
        variables = query.variables(associd)
        extension: list[tuple[str, str]] = []
        if any(name == "flags" for name, _ in variables):
            try:
                extension = query.variables(associd, "scheme,trail")
            except ControlError:
                pass  # not ntpauto: derived from the flags and the certificates
        associations.append({"associd": associd, "status": status,
                             "variables": variables + extension})
    return {"system": system, "counters": counters, "associations": associations}


def fetch(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """The status document of the daemon at ``host``:``port`` (see :func:`document`).
    OSError/TimeoutError when it does not answer, ControlError when it refuses."""
    with Session(host, port, timeout) as session:
        return document(gather(session))


# -- the document -------------------------------------------------------------------------


def _number(value: str | None, convert: Callable[[str], Any] = float, default: Any = 0) -> Any:
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except ValueError:
        return default


def _int(value: str | None) -> int:
    return _number(value, lambda v: int(v, 0), 0)


def _ms(value: str | None) -> float:
    """Milliseconds as mode 6 writes them, in seconds, to the precision written (``0.123``:
    0.000123, not 0.00012300000000000001)."""
    seconds = _number(value) / 1e3
    decimals = len(value.partition(".")[2]) if value else 0
    return round(seconds, decimals + 3)


def _until(value: str) -> str:
    """YYYYMMDDHHMM as ISO 8601 (UTC); the value itself if it is not one."""
    try:
        moment = datetime.datetime.strptime(value, "%Y%m%d%H%M")
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _certificates(variables: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The ``cert``/``until`` pairs of the system variables."""
    certificates: list[dict[str, Any]] = []
    for name, value in variables:
        if name == "cert":
            parts = value.split()
            if len(parts) == 3:
                certificates.append({"subject": parts[0], "issuer": parts[1],
                                     "flags": _int(parts[2]), "until": None})
        elif name == "until" and certificates and certificates[-1]["until"] is None:
            certificates[-1]["until"] = _until(value)
    return certificates


def _hike(certificates: list[dict[str, Any]], subject: str) -> list[list[str]]:
    """The trail from ``subject`` to a trusted self-signed certificate in the cache, as the
    daemon hikes it (for daemons that do not report an association's trail)."""
    trail: list[list[str]] = []
    name: str | None = subject
    seen = set()
    while name is not None and name not in seen:
        seen.add(name)
        candidates = [c for c in certificates
                      if c["subject"] == name and not c["flags"] & (CERT_ERROR | CERT_PRIV)]
        entry = next((c for c in candidates
                      if c["subject"] == c["issuer"] and c["flags"] & CERT_TRUST), None)
        entry = entry or next((c for c in candidates if c["subject"] != c["issuer"]), None)
        if entry is None:
            break
        trail.append([entry["subject"], entry["issuer"]])
        name = entry["issuer"] if entry["subject"] != entry["issuer"] else None
    return trail


def _scheme(flags: int) -> str | None:
    if not flags & VRFY:
        return None
    for name, bit in SCHEME_BITS:
        if flags & bit:
            return name
    return "tc"


def _autokey(values: dict[str, str], certificates: list[dict[str, Any]]) -> dict[str, Any]:
    flags = _int(values.get("flags"))
    peer = values.get("host") or None
    if "trail" in values:
        trail = [link.split() for link in values["trail"].split(";") if link.strip()]
    else:
        trail = _hike(certificates, peer) if peer else []
    until = {(c["subject"], c["issuer"]): c["until"] for c in certificates}
    trusted_until = until.get(tuple(trail[-1])) if trail and trail[-1][0] == trail[-1][1] \
        else None
    return {
        "status": f"{flags:#x}", "flags": flag_names(flags), "peer": peer,
        "scheme": values.get("scheme") or _scheme(flags),
        "trail": trail,
        "expires": [until.get((subject, issuer)) for subject, issuer in trail],
        "trusted_until": trusted_until,
        "proventic": bool(flags & PROV),
        "signature": values.get("signature"),
        "ident": values.get("ident"),
    }


def _nts(values: dict[str, str]) -> dict[str, Any]:
    """An NTS association's state from its ``nts_*`` variables (ntpauto daemons)."""
    host, _, port = values["nts_host"].rpartition(" ")
    return {"host": host, "ke_port": _int(port), "cookies": _int(values.get("nts_cookies")),
            "aead": values.get("nts_aead"),
            "ke_age": _int(values["nts_ke"]) if "nts_ke" in values else None,
            "error": values.get("nts_error")}


def document(raw: dict[str, Any]) -> dict[str, Any]:
    """The status as a JSON-ready document: ``system`` (with ``autokey`` for an Autokey
    host), ``associations`` and ``counters``; times in seconds."""
    system_vars: list[tuple[str, str]] = raw["system"]
    values = dict(system_vars)
    certificates = _certificates(system_vars)
    system: dict[str, Any] = {
        "leap": _int(values.get("leap")), "stratum": _int(values.get("stratum")),
        "refid": values.get("refid", ""), "offset": _ms(values.get("offset")),
        "jitter": _ms(values.get("sys_jitter")), "root_delay": _ms(values.get("rootdelay")),
        "root_dispersion": _ms(values.get("rootdisp")),
        "peer": _int(values.get("peer")) or None, "precision": _int(values.get("precision")),
        "poll": _int(values.get("tc")), "version": values.get("version", ""),
    }
    if "host" in values:
        flags = _int(values.get("flags"))
        system["autokey"] = {
            "host": values["host"], "status": f"{flags:#x}", "flags": flag_names(flags),
            "ident": values.get("ident"), "digest": values.get("digest"),
            "signature": values.get("signature"),
            "update": _until(values["update"]) if "update" in values else None,
            "certificates": certificates,
        }
    associations = []
    for entry in raw["associations"]:
        variables = dict(entry["variables"])
        status = peer_status(entry["status"])
        address = variables.get("srcadr", "")
        refclock = address.startswith("127.127.")
        hmode = _int(variables.get("hmode"))
        association: dict[str, Any] = {
            "associd": entry["associd"],
            "address": address, "port": _int(variables.get("srcport")),
            "name": variables.get("srchost"),
            "mode": MODES.get(hmode, str(hmode)), "refclock": refclock,
            "ephemeral": not status.configured, "condition": status.condition,
            "system_peer": status.condition == "sys.peer",
            "reach": _int(variables.get("reach")), "stratum": _int(variables.get("stratum")),
            "refid": variables.get("refid", ""),
            "hpoll": _int(variables.get("hpoll")), "ppoll": _int(variables.get("ppoll")),
            "offset": _ms(variables.get("offset")), "delay": _ms(variables.get("delay")),
            "dispersion": _ms(variables.get("dispersion")),
            "jitter": _ms(variables.get("jitter")),
            "flash": _int(variables.get("flash")),
            "autokey": _autokey(variables, certificates) if "flags" in variables else None,
            "nts": _nts(variables) if "nts_host" in variables else None,
        }
        associations.append(association)
    counters = {name: _int(value) for name, value in raw["counters"]}
    return {"system": system, "associations": associations, "counters": counters}


# -- the table ----------------------------------------------------------------------------


def _when(until: str | None) -> str:
    return f" until {until}" if until else ""


def render(status: dict[str, Any], out: TextIO) -> None:
    """The human-readable table."""
    system = status["system"]
    out.write(f"system: stratum {system['stratum']}  refid {system['refid']}  "
              f"offset {system['offset']:+.6f} s  jitter {system['jitter']:.6f} s  "
              f"leap {system['leap']}  peer {system['peer'] or '-'}\n")
    host = system.get("autokey")
    if host:
        out.write(f"autokey host {host['host']}  flags {' '.join(host['flags']) or '-'}  "
                  f"digest {host['digest']}  signature {host['signature']}\n")
        for cert in host["certificates"]:
            out.write(f"  certificate {cert['subject']} issued by {cert['issuer']} "
                      f"(flags {cert['flags']:#x}){_when(cert['until'])}\n")
    out.write(f"\n  {'peer':<22} {'mode':<8} {'st':>2} {'reach':>8} {'poll':>5} "
              f"{'offset':>11} {'delay':>9} {'jitter':>9}  autokey\n")
    for a in status["associations"]:
        mark = "*" if a["system_peer"] else ("+" if a["condition"] == "candidate" else " ")
        peer = a["name"] or a["address"] if a["refclock"] else f"{a['address']}:{a['port']}"
        autokey, nts = a.get("autokey"), a.get("nts")
        flags = " ".join(f for f in autokey["flags"] if f not in HIDDEN_FLAGS) \
            if autokey else "NTS" if nts else "-"
        mode = SHOWN_MODES.get(a["mode"], a["mode"])
        out.write(f"{mark} {peer:<22} {mode:<8} {a['stratum']:>2} "
                  f"{a['reach']:08b} {2 ** a['hpoll']:>5} {a['offset']:>+11.6f} "
                  f"{a['delay']:>9.6f} {a['jitter']:>9.6f}  {flags}\n")
        if autokey:
            links = [f"{subject} (issuer {issuer}{_when(until)})" for (subject, issuer), until
                     in zip(autokey["trail"], autokey["expires"])]
            out.write(f"    peer {autokey['peer'] or '?'}  scheme {autokey['scheme'] or '?'}  "
                      f"status {autokey['status']}  trail: {' <- '.join(links) or '-'}\n")
        if nts:
            age = "never" if nts["ke_age"] is None else f"{nts['ke_age']} s ago"
            error = f"  last error: {nts['error']}" if nts["error"] else ""
            out.write(f"    nts-ke {nts['host']} port {nts['ke_port']}  aead "
                      f"{nts['aead'] or '-'}  cookies {nts['cookies']}  exchange {age}"
                      f"{error}\n")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the status; exit 1 with a one-line message when the daemon does not answer."""
    out = out or sys.stdout
    try:
        status = fetch(args.host, args.port, args.timeout)
    except ExchangeError as e:
        print(f"ntpauto status: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ntpauto status: {failure(args.host, args.port, e, args.timeout)}",
              file=sys.stderr)
        return 1
    except ControlError as e:
        print(f"ntpauto status: {args.host} port {args.port}: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(status, out, indent=2)
        out.write("\n")
    else:
        render(status, out)
    return 0
