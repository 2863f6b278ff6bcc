"""``ntpauto query --autokey``: the whole Autokey client dance with one server, then the time,
and what was proven (:func:`ntpauto.client.query`); ``ntpauto query --nts``: NTS-KE, then
the time under NTS.

The dance's requests go back to back, so against an ntpauto server on loopback the answer
comes in milliseconds; against a server that drops requests that come too fast the query
paces itself and the output says so (``paced``).  Exit status 0 with a sample, 1 with the
one-line reason otherwise (the typed failure's message).
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from ntpauto.cli.twist import wait_for
from ntpauto.client.errors import QueryFailed
from ntpauto.client.oneshot import AutokeyKeys, Outcome, query_outcome
from ntpauto.client.sample import AutokeyProof, as_dict
from ntpauto.errors import FileLineError
from ntpauto.pki.keyfiles import KeyFileError


def keys_of(args: argparse.Namespace) -> AutokeyKeys:
    """The client's key material from ``--keysdir``, ``--host``, ``--password``,
    ``--ident`` and ``--digest``."""
    return AutokeyKeys(args.keysdir or ".", host=args.autokey_host, password=args.password,
                       ident=args.ident, digest=args.digest or "md5")


def proof_lines(proof: AutokeyProof) -> list[str]:
    """What the dance proved, one fact a line."""
    lines = [f"server name {proof.server}"]
    for index, link in enumerate(proof.trail):
        role = "certificate" if index == 0 else "issued by"
        trusted = ", trusted" if link.trusted else ""
        lines.append(f"{role:<11} {link.subject} (issuer {link.issuer}{trusted}; "
                     f"{link.signature}, {link.key_bits}-bit key; valid "
                     f"{link.not_before:%Y-%m-%d} to {link.not_after:%Y-%m-%d})")
    if proof.trusted_host:
        hops = " -> ".join(link.subject for link in proof.trail)
        lines.append(f"trail       {hops} (trusted host {proof.trusted_host})")
    else:
        lines.append("trail       none: PC, the group's private certificate")
    lines += [
        f"identity    {proof.scheme.upper()}",
        f"signature   {proof.signature} (session keys {proof.digest.upper()})",
        f"cookie      {'received' if proof.cookie else 'not received'}",
        f"flags       {' '.join(proof.flags)}",
    ]
    return lines


def format_outcome(outcome: Outcome) -> str:
    """The lines ``ntpauto query --autokey`` prints."""
    sample = outcome.sample
    when = datetime.datetime.fromtimestamp(sample.server_time, datetime.UTC)
    lines = [
        f"server      {sample.address} port {sample.port}",
        f"time        {when:%Y-%m-%d %H:%M:%S.%f} UTC",
        f"offset      {sample.offset:+.6f} s",
        f"delay       {sample.delay:.6f} s",
        f"stratum     {sample.stratum}",
        f"refid       {sample.refid}",
        f"leap        {sample.leap} ({sample.leap_text})",
    ]
    if sample.nts is not None:
        nts = sample.nts
        lines += ["authentic   yes: NTS (RFC 8915)",
                  f"nts-ke      {nts.host} port {nts.ke_port} (TLS 1.3, its certificate "
                  "checked)",
                  f"aead        {nts.aead}",
                  f"cookies     {nts.cookies} held"]
    else:
        lines.append("authentic   yes: Autokey")
    if sample.autokey is not None:
        lines += proof_lines(sample.autokey)
    lines.append(f"exchange    {outcome.requests} requests, {outcome.seconds:.3f} s")
    if outcome.paced:
        lines.append(f"paced       {outcome.paced}: requests spaced out (the server may "
                     "rate-limit)")
    return "\n".join(lines) + "\n"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """The outcome for ``--json``."""
    document = as_dict(outcome.sample)
    document.update(requests=outcome.requests, seconds=outcome.seconds, paced=outcome.paced)
    return document


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Carry out ``ntpauto query --autokey`` (or ``--nts``); the exit status."""
    if args.nts:
        options: dict[str, Any] = {"nts": True, "ntsport": args.ntsport,
                                   "ntstrustedcerts": args.ntstrustedcerts}
    else:
        options = {"autokey": keys_of(args)}
    try:
        outcome = wait_for(lambda reactor: query_outcome(
            reactor, args.host, args.port, timeout=args.timeout, **options))
    except (QueryFailed, KeyFileError, FileLineError, OSError, ValueError) as exc:
        err.write(f"ntpauto query: {exc}\n")
        return 1
    if args.json:
        json.dump(outcome_json(outcome), out, indent=2)
        out.write("\n")
    else:
        out.write(format_outcome(outcome))
    return 0
