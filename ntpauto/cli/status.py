"""``ntpauto status``: what a running daemon is doing, per association, with its Autokey
state (flags by name, identity scheme, certificate trail), from the local status socket.

Usage: ``ntpauto status [--port N | --socket PATH] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any, TextIO

from ntpauto.control import default_status_socket

MODES = {"client": "client", "active": "sym act", "passive": "sym pas",
         "broadcast": "bcast", "bclient": "bclient"}


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser("status", help="show a running daemon's associations",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=12300,
                        help="NTP port of the daemon (finds its status socket; default 12300)")
    parser.add_argument("--socket", help="path of the status socket")
    parser.add_argument("--json", action="store_true", help="print the raw JSON document")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.set_defaults(func=run)


def fetch(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Read the status document from the daemon's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def render(status: dict[str, Any], out: TextIO) -> None:
    """The human-readable table."""
    system = status["system"]
    out.write(f"system: stratum {system['stratum']}  refid {system['refid']}  "
              f"offset {system['offset']:+.6f} s  jitter {system['jitter']:.6f} s  "
              f"leap {system['leap']}  discipline {system['discipline']}\n")
    host = system.get("autokey")
    if host:
        out.write(f"autokey host {host['host']}  flags {' '.join(host['flags'])}  "
                  f"digest {host['digest']}  signature {host['signature']}\n")
        for cert in host["certificates"]:
            out.write(f"  certificate {cert['subject']} issued by {cert['issuer']} "
                      f"(flags {cert['flags']:#x}) until {cert['until']}\n")
    out.write(f"\n  {'peer':<22} {'mode':<8} {'st':>2} {'reach':>8} {'poll':>5} "
              f"{'offset':>11} {'delay':>9} {'jitter':>9}  autokey\n")
    for a in status["associations"]:
        mark = "*" if a["system_peer"] else " "
        peer = a["address"] if a["refclock"] else f"{a['address']}:{a['port']}"
        autokey = a.get("autokey")
        flags = " ".join(f for f in autokey["flags"]
                         if f not in ("ENAB", "TAI")) if autokey else "-"
        out.write(f"{mark} {peer:<22} {MODES.get(a['mode'], a['mode']):<8} {a['stratum']:>2} "
                  f"{a['reach']:08b} {2 ** a['hpoll']:>5} {a['offset']:>+11.6f} "
                  f"{a['delay']:>9.6f} {a['jitter']:>9.6f}  {flags}\n")
        if autokey:
            scheme = autokey["scheme"] or "?"
            trail = " <- ".join(f"{subject} (issuer {issuer})"
                                for subject, issuer in autokey["trail"]) or "-"
            out.write(f"    peer {autokey['peer'] or '?'}  scheme {scheme}  "
                      f"status {autokey['status']}  trail: {trail}"
                      + (f"  trusted until {autokey['trusted_until']}"
                         if autokey["trusted_until"] else "") + "\n")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the status; exit 1 with a one-line message when the daemon is not there."""
    out = out or sys.stdout
    path = args.socket or default_status_socket(args.port)
    try:
        status = fetch(path, args.timeout)
    except (OSError, ValueError) as e:
        print(f"ntpauto status: cannot read {path}: {e} (is the daemon running on port "
              f"{args.port}?)", file=sys.stderr)
        return 1
    if args.json:
        json.dump(status, out, indent=2)
        out.write("\n")
    else:
        render(status, out)
    return 0
