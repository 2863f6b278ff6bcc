"""``ntpauto query HOST``: ask an NTP server for the time once and show what it says.

Sends one client-mode (3) packet, optionally with a symmetric-key MAC (``--key ID --keys
FILE``), waits for the server-mode (4) answer whose origin timestamp is our transmit
timestamp, and prints the on-wire offset and round-trip delay (RFC 5905 section 8) with the
server's stratum, reference ID, leap indicator, poll and precision.  A kiss-o'-death reply
prints its kiss code.  Exit status 0 on a good answer, 1 with a one-line message otherwise
(worded as ``ntpauto status`` words the same failure, :mod:`ntpauto.cli.udp`); a closed port
is reported as soon as the ICMP port unreachable arrives.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any, TextIO

from ntpauto.cli.udp import ExchangeError, connect, failure
from ntpauto.wire.packet import (
    MODE_CLIENT,
    MODE_SERVER,
    Header,
    MalformedPacket,
    Packet,
    build,
    parse,
)
from ntpauto.wire.timestamps import from_short, ts_diff, unix_to_ntp

DEFAULT_PORT = 123
DESCRIPTION = ("Ask an NTP server for the time once and show its answer: offset and "
               "round-trip delay, stratum, reference ID, leap indicator, poll and precision. "
               "With --key and --keys the request and the answer carry a symmetric-key MAC. "
               "With --autokey the whole Autokey dance runs first, with the keys of "
               "--keysdir, and the output says what it proved: the server's certificate "
               "trail to a trusted host, its identity scheme, its signature algorithm and "
               "the cookie. With --nts, NTS-KE (RFC 8915) runs first over TLS 1.3 and the time "
               "request is NTS-protected; the output names the NTS-KE server whose "
               "certificate was checked and the AEAD algorithm.")
DEFAULT_TIMEOUT = 3.0
"""Seconds a plain or symmetric-key query waits by default (Autokey:
:data:`ntpauto.client.oneshot.DEFAULT_TIMEOUT`)."""
LEAP_NAMES = {0: "none", 1: "add second", 2: "delete second", 3: "unsynchronized"}


class QueryError(Exception):
    """The query failed; ``str()`` is the one-line message shown to the user."""


def register(subparsers: Any) -> None:
    """Add the ``query`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser(
        "query", help="ask an NTP server for the time once", description=DESCRIPTION)
    parser.add_argument("host", help="server name or address")
    parser.add_argument("--port", "-p", type=int, default=DEFAULT_PORT, metavar="N",
                        help=f"server UDP port (default {DEFAULT_PORT})")
    parser.add_argument("--timeout", "-t", type=float, default=None, metavar="SECONDS",
                        help="seconds to wait for the answer (default 3; with --autokey 10)")
    parser.add_argument("--key", "-k", type=int, metavar="ID",
                        help="authenticate with this symmetric key (needs --keys)")
    parser.add_argument("--keys", metavar="FILE", help="ntp.keys file holding --key")
    parser.add_argument("--ntp-version", "-o", type=int, default=4, choices=(1, 2, 3, 4),
                        dest="ntp_version", metavar="N",
                        help="NTP version number to send, 1 to 4 (default 4)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    autokey = parser.add_argument_group(
        "Autokey", "Run the Autokey client dance (RFC 5906) before asking for the time.")
    autokey.add_argument("--autokey", "-a", action="store_true",
                         help="authenticate the server with Autokey")
    autokey.add_argument("--keysdir", metavar="DIR",
                         help="the client's keys directory (default: the current directory)")
    autokey.add_argument("--host", dest="autokey_host", metavar="NAME",
                         help="the client's Autokey host name, as 'crypto host' (default: "
                              "this machine's name)")
    autokey.add_argument("--password", metavar="PW",
                         help="password of the client's private keys, as 'crypto pw' "
                              "(default: the host name)")
    autokey.add_argument("--ident", metavar="GROUP",
                         help="the group whose identity parameters prove the server (IFF, "
                              "GQ, MV); without it only the certificate trail is checked (TC)")
    autokey.add_argument("--digest", choices=("md5", "sha1"), type=str.lower,
                         help="the session-key digest, as 'crypto digest' (default md5; it "
                              "must be the server's)")
    nts = parser.add_argument_group(
        "NTS", "Run NTS-KE (RFC 8915) with the server first, then ask for the time under NTS.")
    nts.add_argument("--nts", "-n", action="store_true",
                     help="authenticate the server with NTS")
    nts.add_argument("--ntsport", type=int, default=None, metavar="N",
                     help="the server's NTS-KE TCP port (default 4460)")
    nts.add_argument("--ntstrustedcerts", metavar="FILE",
                     help="PEM CA certificates to check the server's certificate against "
                          "(default: the system's trust store)")
    parser.set_defaults(func=run)


def refid_text(stratum: int, refid: bytes) -> str:
    """The reference ID as ntpq shows it: ASCII at stratum 0 or 1, else a dotted quad."""
    if stratum <= 1:
        return refid.decode("ascii", "replace").rstrip("\x00") or "-"
    return socket.inet_ntoa(refid)


def _load_store(keyid: int, path: str) -> Any:
    from ntpauto.auth.keys import KeyFileError, KeyStore, load_keys

    try:
        keys = load_keys(path)
    except KeyFileError as exc:
        raise QueryError(str(exc)) from None
    if keyid not in keys:
        raise QueryError(f"{path}: no key {keyid}")
    return KeyStore(keys, trusted=[keyid])


def make_request(transmit: int, version: int = 4, store: Any = None,
                 keyid: int | None = None) -> bytes:
    """A client-mode request with ``transmit`` as its transmit timestamp (and a MAC)."""
    header = Header(leap=0, version=version, mode=MODE_CLIENT, stratum=0, poll=0,
                    precision=0, root_delay=0, root_dispersion=0, refid=b"\0\0\0\0",
                    reference=0, origin=0, receive=0, transmit=transmit)
    data = build(header)
    if store is not None and keyid is not None:
        data += store.sign(keyid, data)
    return data


def check_reply(data: bytes, transmit: int, store: Any = None,
                keyid: int | None = None) -> Packet | None:
    """Parse a datagram; ``None`` if it is not the answer to our request (ignore it),
    :class:`QueryError` if it is our answer but unusable."""
    try:
        packet = parse(data)
    except MalformedPacket:
        return None
    header = packet.header
    if header.origin != transmit or header.mode != MODE_SERVER:
        return None
    if header.is_kiss:
        raise QueryError(f"kiss-o'-death from server: {header.kiss_code}")
    if store is not None:
        if not packet.has_mac:
            raise QueryError("reply is not authenticated")
        if packet.is_crypto_nak:
            raise QueryError("server sent a crypto-NAK: it does not accept key "
                             f"{keyid}")
        if packet.keyid != keyid or not store.verify(keyid, packet.authenticated_part,
                                                    packet.digest):
            raise QueryError(f"reply MAC does not verify with key {keyid}")
    if header.transmit == 0 or header.receive == 0:
        raise QueryError("reply has zero receive or transmit timestamp")
    return packet


def query(host: str, port: int = DEFAULT_PORT, timeout: float = 3.0, version: int = 4,
          store: Any = None, keyid: int | None = None,
          now: Any = time.time) -> dict[str, Any]:
    """Send one request and return the measurement (offset/delay in seconds, header
    fields); :class:`QueryError` on timeout, error or a kiss-o'-death."""
    deadline = time.monotonic() + timeout
    try:
        sock = connect(host, port)
    except ExchangeError as exc:
        raise QueryError(str(exc)) from None
    address = sock.getpeername()
    with sock:
        t1 = unix_to_ntp(now())
        request = make_request(t1, version, store, keyid)
        try:
            sock.send(request)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                data = sock.recv(4096)
                t4 = unix_to_ntp(now())
                packet = check_reply(data, t1, store, keyid)
                if packet is not None:
                    break
        except OSError as exc:
            raise QueryError(failure(host, port, exc, timeout)) from None
    header = packet.header
    t2, t3 = header.receive, header.transmit
    return {
        "server": f"{address[0]} port {address[1]}",
        "offset": (ts_diff(t2, t1) + ts_diff(t3, t4)) / 2,
        "delay": ts_diff(t4, t1) - ts_diff(t3, t2),
        "stratum": header.stratum,
        "refid": refid_text(header.stratum, header.refid),
        "leap": header.leap,
        "version": header.version,
        "poll": header.poll,
        "precision": header.precision,
        "root_delay": from_short(header.root_delay),
        "root_dispersion": from_short(header.root_dispersion),
        "authenticated": packet.has_mac and store is not None,
    }


def format_result(result: dict[str, Any]) -> str:
    """The lines ``ntpauto query`` prints for a measurement."""
    auth = "yes" if result["authenticated"] else "no"
    return "\n".join([
        f"server      {result['server']}",
        f"offset      {result['offset']:+.6f} s",
        f"delay       {result['delay']:.6f} s",
        f"stratum     {result['stratum']}",
        f"refid       {result['refid']}",
        f"leap        {result['leap']} ({LEAP_NAMES[result['leap']]})",
        f"version     {result['version']}",
        f"poll        {result['poll']} ({2.0 ** result['poll']:g} s)",
        f"precision   {result['precision']} ({2.0 ** result['precision']:.3g} s)",
        f"root delay  {result['root_delay']:.6f} s",
        f"root disp.  {result['root_dispersion']:.6f} s",
        f"authentic   {auth}",
    ]) + "\n"


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Carry out ``ntpauto query``; returns the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        _check_modes(args)
        if args.autokey or args.nts:
            from ntpauto.cli import autokey_query
            from ntpauto.client.oneshot import DEFAULT_TIMEOUT as AUTOKEY_TIMEOUT

            args.timeout = AUTOKEY_TIMEOUT if args.timeout is None else args.timeout
            args.ntsport = 4460 if args.ntsport is None else args.ntsport
            return autokey_query.run(args, out, err)
        store = None
        if args.key is not None:
            if not args.keys:
                raise QueryError("--key needs --keys FILE")
            store = _load_store(args.key, os.fspath(args.keys))
        elif args.keys:
            raise QueryError("--keys needs --key ID")
        timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
        result = query(args.host, args.port, timeout, args.ntp_version, store, args.key)
    except QueryError as exc:
        err.write(f"ntpauto query: {exc}\n")
        return 1
    if args.json:
        json.dump(result, out, indent=2)
        out.write("\n")
    else:
        out.write(format_result(result))
    return 0


def _check_modes(args: argparse.Namespace) -> None:
    """The options that do not depend on the mode, and the ones that do not mix."""
    if args.timeout is not None and args.timeout <= 0:
        raise QueryError("--timeout must be positive")
    if not 0 < args.port < 65536:
        raise QueryError(f"--port {args.port} is out of range 1-65535")
    autokey_only = [name for name, value in (
        ("--keysdir", args.keysdir), ("--host", args.autokey_host),
        ("--password", args.password), ("--ident", args.ident),
        ("--digest", args.digest)) if value is not None]
    if args.autokey and (args.key is not None or args.keys):
        raise QueryError("--autokey does not go with --key/--keys")
    if autokey_only and not args.autokey:
        raise QueryError(f"{autokey_only[0]} needs --autokey")
    nts_only = [name for name, value in (("--ntsport", args.ntsport),
                                         ("--ntstrustedcerts", args.ntstrustedcerts))
                if value is not None]
    if args.nts and (args.autokey or args.key is not None or args.keys):
        raise QueryError("--nts does not go with --autokey or --key/--keys")
    if nts_only and not args.nts:
        raise QueryError(f"{nts_only[0]} needs --nts")
    if args.ntsport is not None and not 0 < args.ntsport < 65536:
        raise QueryError(f"--ntsport {args.ntsport} is out of range 1-65535")
