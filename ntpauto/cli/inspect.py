"""``ntpauto inspect FILE...``: say what ntp-keygen / ntpauto key files hold, without ever
printing a secret.

For each file: its type and role, owner, filestamp (with its UTC date), whether it is
encrypted and in which PEM layout, key types and sizes; for certificates the subject and
issuer (host and group from the CN), scheme and NID, trust/private flags, validity with the
lifetime and the days left (in whole days, as ntp-keygen's ``-l`` counts them) and the GQ key
when there is one; for identity files the sizes of their parameters (and, for IFF and MV
client files in PKCS#8, that they are unusable and what to do instead);
for symmetric keys files the number and types of keys.  Encrypted keys need ``-p``; without it
the rest is still shown.  A file that cannot be read gives one line ``FILE: problem`` on
stderr and exit status 1.

reference: interop.md 6.1-6.4 (identity file layouts), 7 (files), 7.3 (certificate).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.pki import keyfiles
from ntpauto.pki.certificates import CertificateError, CertInfo, parse_certificate
from ntpauto.pki.dsa_structure import DSAStructure
from ntpauto.pki.keyfiles import KeyFile, KeyFileError
from ntpauto.pki.profiles import SIGNATURE_ALGORITHMS
from ntpauto.wire.timestamps import ntp_to_unix

__all__ = ["describe", "describe_certificate", "register", "run"]

DESCRIPTION = ("Say what ntp-keygen and ntpauto key files (ntpkey_*, ntp.keys) hold: type, "
               "owner, filestamp, format, key sizes, and for certificates the subject, "
               "issuer, signature scheme, flags and validity. Secrets are never printed; "
               "encrypted keys are opened only with --password.")

_ROLES = {
    "host": "RSA host key",
    "sign": "sign key",
    "cert": "certificate",
    "iffkey": "IFF server key (identity, DSA structure)",
    "gqkey": "GQ server key (identity, RSA structure)",
    "mvta": "MV trusted-authority keys (identity)",
    "mvkey": "MV server key (identity, DSA structure)",
    "iffpar": "IFF client parameters (identity, DSA structure)",
    "gqpar": "GQ client parameters (identity, RSA structure)",
    "mvpar": "MV client key (identity, DSA structure)",
    "symkeys": "symmetric keys (ntp.keys)",
}


def register(subparsers: Any) -> None:
    """Add the ``inspect`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser(
        "inspect", help="show what ntpkey_* key files hold", description=DESCRIPTION)
    parser.add_argument("files", nargs="+", metavar="FILE", help="ntpkey_* files or links")
    parser.add_argument("--password", "-p", metavar="PW",
                        help="password of encrypted keys (without it they are not opened, "
                             "and the rest of the file is still shown)")
    parser.set_defaults(func=run)


def _utc(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _filestamp_text(filestamp: int | None) -> str:
    if filestamp is None:
        return "none"
    unix = ntp_to_unix(filestamp << 32)
    return f"{filestamp} ({_utc(datetime.datetime.fromtimestamp(unix, datetime.UTC))})"


def _key_text(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        q = key.parameters().parameter_numbers().q.bit_length()
        return f"DSA {key.key_size} bits (q {q} bits)"
    return type(key).__name__


def _identity_text(kind: str, key: Any) -> str:
    """Sizes of an identity structure's parameters (never their values)."""
    if isinstance(key, DSAStructure):
        return f"p {key.p.bit_length()} bits, q {key.q.bit_length()} bits"
    if not isinstance(key, rsa.RSAPrivateKey):
        return _key_text(key)
    numbers = key.private_numbers()
    public = numbers.public_numbers
    text = f"n {public.n.bit_length()} bits, group key b {public.e.bit_length()} bits"
    if kind == "gqkey":
        text += f", public key v {numbers.q.bit_length()} bits"
    return text


def describe_certificate(info: CertInfo, now: float | None = None) -> list[str]:
    """Lines describing a parsed certificate."""
    current = datetime.datetime.fromtimestamp(time.time() if now is None else now,
                                              datetime.UTC)
    scheme = SIGNATURE_ALGORITHMS.get(info.signature_oid)
    scheme_text = (f"{scheme[1]} ({scheme[2]}, NID {scheme[0]})" if scheme
                   else f"unknown ({info.signature_oid})")
    flags = [name for name, on in (("trusted", info.trusted), ("private", info.private)) if on]
    group = f", group {info.group}" if info.group else ""
    issuer = " (self-signed)" if info.self_signed else ""
    lines = [
        f"  subject:   {info.subject} (host {info.host}{group})",
        f"  issuer:    {info.issuer}{issuer}",
        f"  serial:    {info.serial}",
        f"  scheme:    {scheme_text}",
        f"  key:       {_key_text(info.public_key)}",
        f"  flags:     {', '.join(flags) or 'none'}",
        f"  valid:     {_utc(info.not_before)} .. {_utc(info.not_after)} "
        f"({_validity(info, current)})",
    ]
    if info.gq_key is not None:
        gq = f"{(info.gq_key_correct or info.gq_key).bit_length()} bits"
        if info.gq_key != info.gq_key_correct:
            gq += ", misread by the reference (key longer than 127 octets)"
        lines.append(f"  GQ key:    {gq}")
    return lines


def _days(count: int) -> str:
    return f"{count} day{'' if count == 1 else 's'}"


def _validity(info: CertInfo, current: datetime.datetime) -> str:
    """The lifetime in days as ntp-keygen's ``-l`` counts them (whole days of 86400 s from
    notBefore to notAfter), then how many days are left: a day begun counts, so a
    certificate made with ``-l 365`` has 365 days left on the day it was made."""
    lifetime = _days(int((info.not_after - info.not_before).total_seconds() // 86400))
    if current > info.not_after:
        ago = int((current - info.not_after).total_seconds() // 86400)
        return f"{lifetime}; EXPIRED {_days(ago) + ' ago' if ago else 'today'}"
    if current < info.not_before:
        return f"{lifetime}; not yet valid"
    left = math.ceil((info.not_after - current).total_seconds() / 86400)
    return f"{lifetime}; {_days(left)} left"


def _layout(kf: KeyFile) -> str:
    if not kf.pem_labels:
        return "text"
    labels = sorted(set(kf.pem_labels))
    names = {"ENCRYPTED PRIVATE KEY": "encrypted PKCS#8", "PRIVATE KEY": "PKCS#8",
             "RSA PRIVATE KEY": "traditional RSA", "DSA PRIVATE KEY": "traditional DSA",
             "CERTIFICATE": "certificate"}
    return ", ".join(names.get(label, label) for label in labels)


def describe(path: str, password: str | None = None, now: float | None = None) -> list[str]:
    """Lines describing the key file at ``path``; ``KeyFileError`` or ``CertificateError``
    when it cannot be read."""
    kf = keyfiles.read_key_file(path, password, require_filestamp=False, allow_locked=True)
    role = _ROLES.get(kf.kind or "", kf.kind or "unknown")
    lines = [f"{path}:"]
    unusable = keyfiles.lost_public_value(kf.kind, kf.traditional)
    if str(kf.path) != str(path):
        lines.append(f"  file:      {kf.path.name}")
    lines += [
        f"  type:      {role} ({kf.type_name or 'no ntpkey header'})",
        f"  owner:     {kf.owner or 'unknown'}",
        f"  filestamp: {_filestamp_text(kf.filestamp)}",
        f"  format:    {_layout(kf)}"
        + (", encrypted" if kf.encrypted and "encrypted" not in _layout(kf) else ""),
    ]
    if kf.locked:
        lines.append("  keys:      encrypted; give --password to see them")
    for index, key in enumerate(kf.private_keys):
        label = "key" if len(kf.private_keys) == 1 else f"key {index + 1}"
        if kf.kind in ("iffkey", "gqkey", "mvta", "mvkey", "iffpar", "gqpar", "mvpar"):
            text = _identity_text(kf.kind, key)
        else:
            text = _key_text(key)
        lines.append(f"  {label + ':':<10} {text}")
    for cert in kf.certificates:
        info = parse_certificate(cert.public_bytes(serialization.Encoding.DER))
        lines += describe_certificate(info, now)
    if unusable is not None:
        lines.append(f"  UNUSABLE:  {unusable}")
    if kf.symmetric_keys:
        counts: dict[str, int] = {}
        for _keyid, algorithm in kf.symmetric_keys:
            counts[algorithm] = counts.get(algorithm, 0) + 1
        summary = ", ".join(f"{n} {name.upper()}" for name, n in counts.items())
        lines.append(f"  keys:      {len(kf.symmetric_keys)} ({summary})")
    return lines


def run(
    args: argparse.Namespace,
    *,
    clock: Callable[[], float] = time.time,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Describe every file of ``args.files``; 0 when all could be read, else 1."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    status = 0
    for path in args.files:
        try:
            lines = describe(path, args.password, clock())
        except (KeyFileError, CertificateError) as exc:
            where = path
            if isinstance(exc, KeyFileError) and exc.path != path:
                where = f"{path} (-> {os.path.basename(exc.path)})"
            detail = exc.message if isinstance(exc, KeyFileError) else str(exc)
            print(f"{where}: {detail}".splitlines()[0], file=err)
            status = 1
            continue
        print("\n".join(lines), file=out)
    return status
