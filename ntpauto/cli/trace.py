"""``ntpauto trace CAPTURE``: check the NTP/Autokey packets of a pcap or pcapng capture.

One line per NTP packet (time, addresses, mode, key ID, the extension fields by name and a
verdict), then a summary; ``-v`` adds the details of every field and check, ``--json`` prints
the same as JSON.  Exit status 0 when nothing failed, 1 when a signature, MAC, key-ID chain,
certificate or packet format failed, 2 when the capture (or a key file) cannot be read:
``ntpauto trace: FILE: not a pcap or pcapng file``.  A capture cut short (tcpdump killed
mid-write) is checked up to its last complete record, and then the truncation is reported
(status 2; ``truncated`` in the JSON).

What is checked, and which secrets make more of it computable (``--seed``, ``--key``,
``--cert``): docs/trace.md and :mod:`ntpauto.trace.analysis`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from ntpauto.pki.certificates import CertificateError, CertInfo, parse_certificate
from ntpauto.pki.keyfiles import KeyFileError, read_key_file
from ntpauto.trace.analysis import MODE_NAMES, analyse
from ntpauto.trace.capture import NTP_PORT, CaptureError, TruncatedCapture, read_capture
from ntpauto.trace.report import Check, FieldReport, PacketReport, Status, Summary

__all__ = ["format_packet", "format_summary", "register", "run"]

PROG = "ntpauto trace"
DESCRIPTION = ("Check the NTP and Autokey packets of a pcap or pcapng capture: one line per "
               "packet with its extension fields and a verdict (signatures, MACs, key-ID "
               "chains, certificates), then a summary. Exit status 0 when nothing failed, 1 "
               "when a check failed, 2 when the capture or a key file cannot be read.")
_FIELDS_WIDTH = 72
_SHORT = {Status.OK: "ok", Status.FAILED: "FAILED", Status.NOT_COMPUTABLE: "n/c",
          Status.NOT_CHECKED: "-", Status.ABSENT: "-", Status.PENDING: "?"}
"""Column text of a check (``n/c``: not computable; ``-``: nothing checked)."""


def _int(text: str) -> int:
    return int(text, 0)


def register(subparsers: Any) -> None:
    """Add the ``trace`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser(
        "trace", help="check the Autokey packets of a pcap/pcapng capture",
        description=DESCRIPTION)
    parser.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    parser.add_argument("--port", type=int, default=NTP_PORT, metavar="N",
                        help="UDP port of the NTP traffic (default %(default)s)")
    parser.add_argument("--seed", type=_int, metavar="N",
                        help="server seed, to compute server cookies (the reference uses 0)")
    parser.add_argument("--key", action="append", default=[], metavar="FILE",
                        help="RSA host key file (ntpkey_host_*): decrypts the COOK responses "
                             "sent to that host (repeatable)")
    parser.add_argument("--password", "-p", action="append", default=[], metavar="PW",
                        help="password of encrypted --key files (repeatable)")
    parser.add_argument("--cert", action="append", default=[], metavar="FILE",
                        help="certificate file (ntpkey_cert_*) known beforehand (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print the packets and the summary as JSON")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every field's header values and every check")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _load_keys(paths: list[str], passwords: list[str]) -> list[rsa.RSAPrivateKey]:
    """The RSA host keys of ``paths``, each opened with the first password that works."""
    keys = []
    for path in paths:
        problem = KeyFileError(path, "no password opens it")
        for password in [*passwords, None] if passwords else [None]:
            try:
                key = read_key_file(path, password, require_filestamp=False).private_key
            except KeyFileError as exc:
                problem = exc
                continue
            if not isinstance(key, rsa.RSAPrivateKey):
                raise KeyFileError(path, "not an RSA private key")
            keys.append(key)
            break
        else:
            raise problem
    return keys


def _load_certs(paths: list[str]) -> list[CertInfo]:
    """The certificates of ``paths`` (ntpkey_cert_* or PEM files)."""
    certs = []
    for path in paths:
        cert = read_key_file(path, require_filestamp=False).certificate
        if cert is None:
            raise KeyFileError(path, "holds no certificate")
        certs.append(parse_certificate(cert.public_bytes(Encoding.DER)))
    return certs


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Read, check and print; the exit status (0 clean, 1 failures, 2 unreadable)."""
    out = out if out is not None else sys.stdout
    truncated: str | None = None
    try:
        datagrams, frames = read_capture(args.capture, args.port)
    except TruncatedCapture as exc:
        datagrams, frames, truncated = exc.datagrams, exc.frames, str(exc)
    except CaptureError as exc:
        return _fail(f"{args.capture}: not a pcap or pcapng file ({exc})")
    except OSError as exc:
        return _fail(f"{args.capture}: {exc.strerror or exc}")
    try:
        keys = _load_keys(args.key, args.password)
        certs = _load_certs(args.cert)
    except (KeyFileError, CertificateError) as exc:
        return _fail(str(exc))
    with warnings.catch_warnings():
        # A damaged certificate in the capture is reported as such, not warned about.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        reports, summary = analyse(datagrams, frames=frames, seed=args.seed, host_keys=keys,
                                   certificates=certs)
    if args.json:
        document = {"file": args.capture, "port": args.port,
                    "packets": [r.as_dict() for r in reports], "summary": summary.as_dict()}
        if truncated is not None:
            document["truncated"] = truncated
        json.dump(document, out, indent=1)
        out.write("\n")
    else:
        first = f", from {_date(reports[0].time)} UTC" if reports else ""
        print(f"{args.capture}: {_plural(frames, 'frame')}, "
              f"{_plural(len(reports), 'NTP packet')} on port {args.port}{first}", file=out)
        width = min(_FIELDS_WIDTH, max((len(_fields_text(r)) for r in reports), default=0))
        route = max((len(_route(r)) for r in reports), default=0)
        for report in reports:
            print(format_packet(report, width, route), file=out)
            if args.verbose:
                for line in _details(report):
                    print("        " + line, file=out)
        for line in format_summary(summary):
            print(line, file=out)
    if truncated is not None:
        out.flush()
        return _fail(f"{args.capture}: {truncated}; the last record is cut short, the ones "
                     "before it were checked")
    return 0 if summary.clean else 1


# Text output ---------------------------------------------------------------------------

def _utc(seconds: float, form: str, unreadable: str) -> str:
    """``seconds`` as UTC in ``form``; ``unreadable`` for a time no date can hold (a corrupt
    record's timestamp, e.g. beyond the year 9999)."""
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime(form)
    except (ValueError, OverflowError, OSError):
        return unreadable


def _date(seconds: float) -> str:
    return _utc(seconds, "%Y-%m-%d %H:%M:%S", "????-??-?? ??:??:??")


def _time(seconds: float) -> str:
    return _utc(seconds, "%H:%M:%S.%f", "??:??:??.??????")


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _field_text(f: FieldReport) -> str:
    text = f.label + (f" {f.description}" if f.description else "")
    if f.decode_error:
        return text + " [FORMAT FAILED]"
    marks = []
    if f.signature.status is not Status.ABSENT:
        status = f.signature.status
        marks.append("sig " + ("unchecked" if status is Status.NOT_CHECKED else _SHORT[status]))
    for name, check in f.extra.items():
        if check.status in (Status.OK, Status.FAILED):
            marks.append(f"{'cert' if name == 'certificate' else name} "
                         f"{_SHORT[check.status]}")
    return text + (f" [{', '.join(marks)}]" if marks else "")


def _fields_text(report: PacketReport) -> str:
    if report.malformed:
        return f"malformed: {report.malformed}"
    return "; ".join(_field_text(f) for f in report.fields) or "-"


def _verdict(report: PacketReport) -> str:
    failures = report.failures
    if failures:
        return "FAIL: " + ", ".join(failures)
    chain = report.chain
    parts = [f"mac {_SHORT[report.mac.status]}"]
    if chain.status is not Status.ABSENT:
        parts.append(f"{report.chain_kind} {_SHORT[chain.status]}")
    return "ok (" + ", ".join(parts) + ")"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _route(report: PacketReport) -> str:
    return f"{_endpoint(report.src, report.sport)} -> {_endpoint(report.dst, report.dport)}"


def format_packet(report: PacketReport, width: int = _FIELDS_WIDTH, route: int = 33) -> str:
    """The one-line listing of a packet: index, time (UTC), route, mode, key ID, fields,
    verdict; ``width`` and ``route`` pad the fields and route columns."""
    mode = MODE_NAMES.get(report.mode, "?") if report.mode is not None else "?"
    keyid = f"{report.keyid:08x}" if report.keyid is not None else "-"
    return (f"{report.index:4d} {_time(report.time)} {_route(report):<{route}} {mode:<7} "
            f"{keyid:<8} {_fields_text(report):<{width}}  {_verdict(report)}")


def _check_line(name: str, check: Check) -> str:
    return f"{name}: {check.status.value}" + (f" ({check.reason})" if check.reason else "")


def _details(report: PacketReport) -> list[str]:
    lines = [f"version {report.version}, stratum {report.stratum}, {report.length} octets, "
             f"MAC {report.mac_length} octets"]
    for f in report.fields:
        head = (f"field {f.position} {f.label} at {f.offset}: length {f.length}, "
                f"assoc {f.associd}")
        if f.timestamp is not None:
            head += (f", timestamp {f.timestamp}, filestamp {f.filestamp}, value "
                     f"{f.value_length}, signature {f.signature_length}")
        lines.append(head)
        if f.decode_error:
            lines.append(f"    format: failed ({f.decode_error})")
        lines.append("    " + _check_line("signature", f.signature))
        lines.extend("    " + _check_line(name, c) for name, c in f.extra.items())
        lines.extend(f"    note: {note}" for note in f.notes)
    lines.append(_check_line("mac", report.mac))
    if report.chain.status is not Status.ABSENT:
        lines.append(_check_line(report.chain_kind, report.chain))
    lines.extend(f"note: {note}" for note in report.notes)
    return lines


def _counts(counts: dict[str, int], labels: dict[str, str]) -> str:
    return ", ".join(f"{counts.get(key, 0)} {label}" for key, label in labels.items())


def format_summary(summary: Summary) -> list[str]:
    """The summary lines after the listing."""
    checked = {"ok": "verified", "failed": "failed", "not checked": "not checked"}
    with_nc = {"ok": "verified", "failed": "failed", "not computable": "not computable",
               "not checked": "not checked"}
    lines = [
        f"summary: {_plural(summary.packets, 'NTP packet')} of "
        f"{_plural(summary.frames, 'frame')}, {_plural(summary.fields, 'extension field')}, "
        f"{_plural(summary.certificates, 'certificate')}, {summary.malformed} malformed",
        "  signatures:    " + _counts(summary.signatures, checked),
        "  MACs:          " + _counts(summary.macs, {**with_nc, "none": "absent"}),
        "  key-ID chains: " + _counts(summary.chains, with_nc)
        + f" ({summary.auto_anchors} reaching signed AUTO values)",
        "  reply key IDs: " + _counts(summary.echoes, {"ok": "echo the request",
                                                       "not checked": "unmatched"}),
    ]
    if summary.clean:
        lines.append("result: clean")
    else:
        lines.append(f"result: FAILED ({_plural(summary.failed_packets, 'packet')} with "
                     "failures)")
    return lines
