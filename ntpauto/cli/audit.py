"""``ntpauto audit HOST``: how strong is this Autokey server?

Asks the server what any client may ask (:mod:`ntpauto.audit.probe`: the time, its mode 6
variables, the whole client dance, each Autokey request as from an unproven source) and
reports each finding with its severity and the reason (:mod:`ntpauto.audit.findings`,
explained in docs/audit.md).  Exit status by the worst severity: 0 nothing above info, 2
low, 3 medium, 4 high, 5 critical; 1 when the server could not be audited at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

DESCRIPTION = ("Audit a remote Autokey server: key sizes and algorithms, the certificate "
               "trail and its validity, the identity scheme, whether its cookies are "
               "predictable, DSA signature lengths, leap values, and how much each "
               "unauthenticated request type amplifies, measured. Works without keys (the "
               "audit makes its own for the server's group); with the group's keys "
               "(--keysdir, --ident) it also proves the server's identity. Exit status: 0 "
               "nothing above info, 2 low, 3 medium, 4 high, 5 critical, 1 no audit.")


def register(subparsers: Any) -> None:
    """Add the ``audit`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser("audit", help="report the security posture of an Autokey "
                                   "server", description=DESCRIPTION)
    parser.add_argument("host", help="server name or address")
    parser.add_argument("--port", "-p", type=int, default=123, metavar="N",
                        help="server UDP port (default 123)")
    parser.add_argument("--group", metavar="GROUP",
                        help="the server's Autokey group, for the audit's own name "
                             "(default: from its mode 6 'host' variable)")
    parser.add_argument("--keysdir", metavar="DIR", help="audit with these client keys")
    parser.add_argument("--host", dest="autokey_host", metavar="NAME",
                        help="the client's Autokey host name (with --keysdir)")
    parser.add_argument("--password", metavar="PW",
                        help="password of the client's private keys (with --keysdir)")
    parser.add_argument("--ident", metavar="GROUP",
                        help="the group whose identity parameters prove the server")
    parser.add_argument("--timeout", "-t", type=float, default=10.0, metavar="SECONDS",
                        help="seconds the client dance may take (default 10)")
    parser.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="seconds to wait for each probe's reply (default 1)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def format_report(obs: Any, findings: list[Any]) -> str:
    """The readable report: every finding with its reason, then what the dance proved."""
    from ntpauto.audit.findings import exit_status
    from ntpauto.cli.autokey_query import proof_lines

    lines = [f"audit of {obs.address} port {obs.port}"]
    if obs.name:
        lines.append(f"Autokey name {obs.name} (session keys {obs.digest.upper()})")
    width = len("critical")
    for finding in findings:
        lines.append(f"  {finding.severity.label.upper():<{width}}  {finding.summary}")
        if finding.reason:
            lines.append(f"  {'':<{width}}    {finding.reason}")
    proof = _proof(obs)
    if proof is not None:
        lines.append("proven by the dance:")
        lines += [f"  {line}" for line in proof_lines(proof)]
    worst = max(f.severity for f in findings)
    lines.append(f"worst: {worst.label} (exit status {exit_status(findings)})")
    return "\n".join(lines) + "\n"


def report_json(obs: Any, findings: list[Any]) -> dict[str, Any]:
    """The report for ``--json``."""
    from ntpauto.audit.findings import exit_status
    from ntpauto.client.sample import as_dict

    proof = _proof(obs)
    return {
        "server": obs.address, "port": obs.port, "name": obs.name, "digest": obs.digest,
        "status": exit_status(findings),
        "worst": max(f.severity for f in findings).label,
        "findings": [{"topic": f.topic, "severity": f.severity.label, "summary": f.summary,
                      "reason": f.reason} for f in findings],
        "proof": as_dict(proof) if proof is not None else None,
    }


def _proof(obs: Any) -> Any:
    return obs.outcome.sample.autokey if obs.outcome is not None else None


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Carry out ``ntpauto audit``; the exit status."""
    from ntpauto.audit.findings import assess, exit_status
    from ntpauto.audit.probe import PROBE_WAIT, observe
    from ntpauto.cli.twist import wait_for
    from ntpauto.client import QueryFailed
    from ntpauto.client.oneshot import AutokeyKeys, resolve
    from ntpauto.errors import FileLineError
    from ntpauto.pki.keyfiles import KeyFileError

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if not 0 < args.port < 65536:
        err.write(f"ntpauto audit: --port {args.port} is out of range 1-65535\n")
        return 1
    keys = None
    if args.keysdir is not None:
        keys = AutokeyKeys(args.keysdir, host=args.autokey_host, password=args.password,
                           ident=args.ident)
    wait = PROBE_WAIT if args.wait is None else args.wait
    try:
        obs = wait_for(lambda reactor: resolve(reactor, args.host).addCallback(
            lambda address: observe(reactor, address, args.port, keys=keys,
                                    group=args.group, timeout=args.timeout, wait=wait)))
    except (QueryFailed, KeyFileError, FileLineError, OSError, ValueError) as exc:
        err.write(f"ntpauto audit: {exc}\n")
        return 1
    findings = assess(obs)
    if args.json:
        json.dump(report_json(obs, findings), out, indent=2)
        out.write("\n")
    else:
        out.write(format_report(obs, findings))
    return exit_status(findings)
