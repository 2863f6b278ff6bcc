"""``ntpauto keygen``: make Autokey host/sign keys, certificates and symmetric keys.

With ntp-keygen's option letters and file names.

reference: ntpd 4.2.8 docs keygen.md; interop.md 7.1 (names and links), 7.2 (format),
7.3 (certificate), 6.2-6.4 (identity files for the -e/-q exports); util/ntp-keygen.c.

What one run does, as ntp-keygen does it (all files share one filestamp = NTP seconds now):

* ``-M``: only the symmetric keys file ``ntpkey_MD5key_<group>.<fs>`` (10 MD5 + 10 SHA1 keys),
  linked as ``ntp.keys``.
* ``-e`` / ``-q PW``: only export the identity parameters (``-e``, client files) or server
  keys re-encrypted with PW (``-q``) of the existing identity files to stdout; for MV, ``-e``
  exports client key 1 of the bundle, or client key J with ``--mv-client J``.
* ``--mv-revoke LIST`` (ours): issue a new MV server key revoking exactly the clients in LIST
  (activating all others) and rewrite the existing bundle with it, keeping its name and
  filestamp (requesters require the server's filestamp to equal their client file's); then
  the exports, when ``-e`` / ``-q`` are given too.  A fresh ``-V n`` bundle revokes client n,
  as the reference's always does (interop.md 6.3 step 10).
* otherwise: the host key (``-H`` or when there is none), a sign key (``-S``; else an existing
  one; else the host key signs), and always a new self-signed certificate (``-T`` trusted,
  ``-P`` private; inherited from the existing certificate when neither is given).

Differences from ntp-keygen: default modulus 2048 bits (``-m 512`` still makes the
reference's size, from our own primes; DSA keys are 1024, 2048, 3072 or 4096 bits), default
scheme RSA-SHA256 (DSA-SHA1
for a DSA sign key), files mode 0600, the default password is the ``-s`` host name (what ntpd's
``crypto pw`` defaults to), DSA-structured exports are traditional PEM so the IFF/MV public
values survive (interop.md 6.4), exports write no certificate, and the GQ key for the
certificate is looked up through the ``ntpkey_gqkey_<host>`` link the GQ generation makes.
Identity keys (``-I``, ``-G``, ``-V n``, the trusted-authority side) come from the identity
schemes (:data:`IDENTITY_GENERATORS`), 2048 bits unless ``-b`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.pki import keyfiles
from ntpauto.pki.certificates import CertificateError, build_self_signed, parse_certificate
from ntpauto.pki.keyfiles import KeyFileError, KeygenContext
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_oid
from ntpauto.wire.timestamps import ntp_seconds

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_MODULUS",
    "DEFAULT_SCHEME",
    "IDENTITY_GENERATORS",
    "KeygenContext",
    "KeygenError",
    "make_symmetric_keys",
    "register",
    "run",
]

DEFAULT_MODULUS = 2048
DEFAULT_SCHEME = "RSA-SHA256"
DEFAULT_DSA_SCHEME = "DSA-SHA1"
DEFAULT_DAYS = 365
RSA_BITS = range(512, 16385)
DSA_BITS = (1024, 2048, 3072, 4096)
MD5_KEYS = 10
MD5_SIZE = 20
_MD5_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")


DESCRIPTION = ("Make Autokey host and sign keys, certificates, identity keys (IFF, GQ, MV) "
               "and symmetric keys, with ntp-keygen's option letters and file names. "
               "Progress goes to standard error; -e and -q write to standard output.")


class KeygenError(Exception):
    """A keygen run failed; ``str()`` is the one-line message for the user."""


IDENTITY_GENERATORS: dict[str, Callable[[KeygenContext, Any], Path]] = {}
"""Identity key generators by option letter ('I' IFF, 'G' GQ, 'V' MV), from the identity
schemes (:func:`_identity_generators`).  Called with the context and the option's value (True,
or the -V key count) after the host and sign keys and before the certificate (GQ's key goes
into the certificate); a generator writes its file and links and returns its path."""


def _identity_generators() -> dict[str, Callable[[KeygenContext, Any], Path]]:
    if not IDENTITY_GENERATORS:
        from ntpauto.identity import gq, iff, mv

        IDENTITY_GENERATORS.update({"I": iff.keygen, "G": gq.keygen, "V": mv.keygen})
    return IDENTITY_GENERATORS

_IDENTITY_NAMES = {"I": "IFF", "G": "GQ", "V": "MV"}
_MV_REVOKE_EXCLUDES = (("-H", "host_key"), ("-S", "sign_key"), ("-T", "trusted"),
                       ("-P", "private"), ("-M", "symmetric"), ("-I", "iff"), ("-G", "gq"),
                       ("-V", "mv"))
"""Options that generate files, which a ``--mv-revoke`` run does not do."""


def register(subparsers: Any) -> None:
    """Add the ``keygen`` subcommand to the ``ntpauto`` parser."""
    parser = subparsers.add_parser(
        "keygen", help="make Autokey keys and certificates (ntp-keygen options)",
        description=DESCRIPTION)
    parser.add_argument("-H", dest="host_key", action="store_true",
                        help="generate a new RSA host key")
    parser.add_argument("-S", dest="sign_key", type=str.upper, choices=("RSA", "DSA"),
                        help="generate a new sign key of this type")
    parser.add_argument("-c", dest="scheme", metavar="SCHEME",
                        help=f"certificate/signature scheme, e.g. RSA-MD5, RSA-SHA1, DSA-SHA1 "
                             f"(default {DEFAULT_SCHEME}, or the existing certificate's)")
    parser.add_argument("-T", dest="trusted", action="store_true",
                        help="trusted certificate (EKU trustRoot)")
    parser.add_argument("-P", dest="private", action="store_true",
                        help="private certificate (PC scheme)")
    parser.add_argument("-e", dest="export_params", action="store_true",
                        help="write the identity client parameters to stdout")
    parser.add_argument("-q", dest="export_password", metavar="PW",
                        help="write the identity server keys, encrypted with PW, to stdout")
    parser.add_argument("-p", dest="password", metavar="PW",
                        help="password of the key files (default: the host name)")
    parser.add_argument("-s", dest="name", metavar="HOST[@GROUP]",
                        help="host name, optionally with the group (default: this host)")
    parser.add_argument("-i", dest="group", metavar="GROUP", help="group name")
    parser.add_argument("-m", dest="modulus", type=int, default=DEFAULT_MODULUS,
                        metavar="BITS", help=f"host/sign key modulus (default {DEFAULT_MODULUS})")
    parser.add_argument("-b", dest="identity_modulus", type=int, default=None, metavar="BITS",
                        help="identity key modulus for -I/-G/-V (default 2048; the "
                        "reference's 256 gives IFF 512, GQ and MV 256 bits)")
    parser.add_argument("-l", dest="days", type=int, default=DEFAULT_DAYS, metavar="DAYS",
                        help=f"certificate lifetime in days (default {DEFAULT_DAYS})")
    parser.add_argument("-M", dest="symmetric", action="store_true",
                        help="write ntp.keys with 10 MD5 and 10 SHA1 random keys")
    parser.add_argument("-I", dest="iff", action="store_true",
                        help="generate IFF identity keys (trusted authority)")
    parser.add_argument("-G", dest="gq", action="store_true",
                        help="generate GQ identity keys (trusted authority)")
    parser.add_argument("-V", dest="mv", type=int, metavar="NKEYS",
                        help="generate MV identity keys for NKEYS clients (trusted authority)")
    parser.add_argument("--mv-client", dest="mv_client", metavar="J", default=None,
                        help="with -e: export MV client key J (1 to n) instead of client 1")
    parser.add_argument("--mv-revoke", dest="mv_revoke", metavar="LIST", default=None,
                        help="issue a new MV server key revoking exactly the clients in LIST "
                        "(comma-separated numbers, e.g. 2 or 2,4) and activating all others; "
                        "rewrites the existing MV bundle, keeping its filestamp (then export "
                        "the server key with -q PW)")
    parser.add_argument("--keysdir", metavar="DIR", default=None,
                        help="directory for the files and links (default: current directory)")
    parser.add_argument("--nts-cert", dest="nts_cert", metavar="NAME[,NAME...]", default=None,
                        help="only make a private CA and an NTS-KE server certificate for "
                        "these DNS names or IP addresses (-l DAYS valid): ntpkey_ntsca.pem "
                        "(ntstrustedcerts), ntpkey_ntscert.pem (ntsservercert) and "
                        "ntpkey_ntskey.pem (ntsserverkey), for tests and closed networks")
    parser.set_defaults(func=run)


def _names(args: argparse.Namespace) -> tuple[str, str, str]:
    """(host, group, certificate subject name) from -s and -i, as ntp-keygen forms them."""
    host = socket.gethostname()
    group = None
    if args.name:
        name_host, _, name_group = args.name.partition("@")
        host = name_host or host
        group = name_group or None
    if args.group:
        group = args.group
    subject = f"{host}@{group}" if group else host
    return host, group or host, subject


def make_symmetric_keys() -> str:
    """The lines of ntp-keygen -M: keys 1-10 MD5 (20 printable characters, no '#'),
    keys 11-20 SHA1 (40 hex digits)."""
    lines = []
    for keyid in range(1, MD5_KEYS + 1):
        secret = "".join(secrets.choice(_MD5_ALPHABET) for _ in range(MD5_SIZE))
        lines.append(f"{keyid:2d} MD5 {secret}  # MD5 key\n")
    for keyid in range(MD5_KEYS + 1, 2 * MD5_KEYS + 1):
        secret = secrets.token_hex(MD5_SIZE)
        lines.append(f"{keyid:2d} SHA1 {secret}  # SHA1 key\n")
    return "".join(lines)


def _check_modulus(key_type: str, bits: int) -> None:
    """KeygenError unless we make ``key_type`` keys of ``bits`` bits (``-m``)."""
    if key_type == "RSA" and bits not in RSA_BITS:
        raise KeygenError(f"-m {bits}: RSA modulus out of range (512 to 16384 bits)")
    if key_type == "DSA" and bits not in DSA_BITS:
        raise KeygenError(f"-m {bits}: DSA modulus must be one of "
                          f"{', '.join(map(str, DSA_BITS))} bits")


def _check_generate(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Check the options of a generating run that need no file; the identity keys asked
    for, as (option letter, value) pairs."""
    if args.trusted and args.private:
        raise KeygenError("-T and -P exclude each other")
    if args.days <= 0:
        raise KeygenError("-l must be at least 1 day")
    identity = [(letter, value) for letter, value in
                (("I", args.iff or None), ("G", args.gq or None), ("V", args.mv))
                if value is not None]
    if len(identity) > 1:
        raise KeygenError("-I, -G and -V exclude each other")
    for letter, value in identity:
        _check_identity(letter, value, args.identity_modulus)
    return identity


def _check_identity(letter: str, value: Any, bits: int | None) -> None:
    """KeygenError unless the identity scheme of ``letter`` makes keys of ``bits`` (``-b``;
    None: its default) for ``value`` (the -V client count)."""
    from ntpauto.identity import gq, iff, mv

    module: Any = {"I": iff, "G": gq, "V": mv}[letter]
    size = bits or module.DEFAULT_BITS
    smallest = 1 if letter == "I" else module.MIN_BITS  # IFF raises smaller sizes to 512
    if not smallest <= size <= module.MAX_BITS:
        raise KeygenError(f"-b {size}: {_IDENTITY_NAMES[letter]} modulus out of range "
                          f"({module.MIN_BITS} to {module.MAX_BITS} bits)")
    if letter == "V":
        if value < 2:
            raise KeygenError(f"-V {value}: MV needs at least 2 client keys (the last one "
                              "is kept revoked)")
        if size // value < mv.MIN_PRIME_BITS:
            raise KeygenError(f"-V {value}: too many MV clients for -b {size} (each needs "
                              f"{mv.MIN_PRIME_BITS} bits of the modulus)")


def _generate(key_type: str, bits: int) -> Any:
    _check_modulus(key_type, bits)
    if key_type == "RSA":
        if bits < 1024:
            return _small_rsa_key(bits)
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    # Keep q in its upper quarter so that full-length signatures, which the reference
    # insists on, come at least one draw in nine (pki.profiles.dsa_signing_odds).
    while True:
        key = dsa.generate_private_key(key_size=bits)
        q = key.parameters().parameter_numbers().q
        if q >= 3 << (q.bit_length() - 2):
            return key


def _small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key below 1024 bits (the reference's 512-bit default, for interop tests only):
    cryptography refuses to generate one, so it is built from our own primes."""
    from ntpauto.identity.common import random_prime

    e = 65537
    while True:
        p = random_prime(bits - bits // 2, top_two=True)
        q = random_prime(bits // 2, top_two=True)
        phi = (p - 1) * (q - 1)
        if p != q and (p * q).bit_length() == bits and phi % e:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def _key_type(key: Any) -> str:
    # RSA first: naming cryptography's DSA classes warns (deprecated from cryptography 51)
    return "RSA" if isinstance(key, rsa.RSAPrivateKey) else "DSA"


class _Run:
    """One keygen run (holds the shared state of its steps)."""

    def __init__(self, args: argparse.Namespace, now: float, stdout: TextIO,
                 stderr: TextIO) -> None:
        self.args = args
        self.host, self.group, self.subject = _names(args)
        self.password = (args.password if args.password is not None else self.host).encode()
        self.keysdir = Path(args.keysdir) if args.keysdir else Path.cwd()
        self.filestamp = ntp_seconds(now)
        self.now = now
        self.stdout = stdout
        self.stderr = stderr

    def say(self, text: str) -> None:
        print(text, file=self.stderr)

    def link(self, name: str) -> Path:
        return self.keysdir / f"ntpkey_{name}_{self.host}"

    def write(self, type_name: str, owner: str, pem: bytes, link: str) -> Path:
        path = keyfiles.write_key_file(self.keysdir, type_name, owner, self.filestamp, pem,
                                       link, self.host, when=self.now)
        link_name = "ntp.keys" if link == "ntp.keys" else f"ntpkey_{link}_{self.host}"
        self.say(f"{link_name}->{path.name}")
        return path

    def existing(self, name: str) -> keyfiles.KeyFile | None:
        path = self.link(name)
        try:
            keyfiles.resolve_link(path)
        except FileNotFoundError:
            return None
        return keyfiles.read_key_file(path, self.password, kind_hint=name)

    # -- steps --------------------------------------------------------------------------

    def symmetric(self) -> int:
        self.keysdir.mkdir(parents=True, exist_ok=True)
        self.say("Generating new symmetric keys file and link")
        self.write("MD5key", self.group, make_symmetric_keys().encode(), "ntp.keys")
        return 0

    def check_export(self) -> int | None:
        """Check the export options; the ``--mv-client`` number (None when not given)."""
        if self.args.export_params and self.args.export_password is not None:
            raise KeygenError("-e and -q are separate runs")
        return _mv_client_option(self.args)

    def export(self) -> int:
        args = self.args
        mv_client = self.check_export()
        sources = [(name, self.existing(name)) for name in ("iffkey", "gqkey", "mvta")]
        found = [(name, kf) for name, kf in sources if kf is not None]
        if not found:
            raise KeygenError(f"no identity key files to export (ntpkey_iffkey_{self.host}, "
                              f"ntpkey_gqkey_{self.host}, ntpkey_mvta_{self.host} in "
                              f"{self.keysdir})")
        if mv_client is not None and "mvta" not in dict(found):
            raise KeygenError(f"--mv-client: no MV bundle ntpkey_mvta_{self.host} in "
                              f"{self.keysdir}")
        for name, kf in found:
            if args.export_params:
                type_name, pem = _client_params(name, kf, self.say, mv_client or 1)
            else:
                type_name, pem = _server_keys(name, kf, args.export_password.encode())
            header = keyfiles.file_header(f"ntpkey_{type_name}_{self.group}.{kf.filestamp}",
                                          self.now)
            self.stdout.write((header + pem).decode("ascii"))
            which = f" (client key {mv_client or 1})" if type_name == "mvpar" else ""
            self.say(f"Exported {type_name}{which} from {kf.path.name}")
        return 0

    def mv_revoke(self) -> int:
        """``--mv-revoke LIST``: a new server key revoking exactly LIST, written into the
        bundle ``ntpkey_mvta_<host>`` points to (same file name, filestamp and link)."""
        from ntpauto.identity import mv

        args = self.args
        given = [letter for letter, dest in _MV_REVOKE_EXCLUDES
                 if getattr(args, dest, None) is not None and getattr(args, dest) is not False]
        if given:
            raise KeygenError(f"--mv-revoke only rewrites the MV bundle; run {', '.join(given)} "
                              "separately")
        link = self.link("mvta")
        try:
            path = keyfiles.resolve_link(link)
        except FileNotFoundError:
            raise KeygenError(f"--mv-revoke: no MV bundle {link.name} in {self.keysdir} "
                              "(make one with -V N)") from None
        system, _filestamp = mv.load_bundle(path, self.password)
        revoked = _parse_revoke(args.mv_revoke, len(system.clients))
        if system.primes is None:
            raise KeygenError(f"{path}: the primes s_j cannot be recovered from this bundle "
                              "(they need n >= 3 client keys and traditional PEM, not the "
                              "reference's PKCS#8); no new MV server key can be issued")
        self.say(f"Using MV bundle {path.name} ({len(system.clients)} client keys, revoked "
                 f"{_numbers(system.revoked)})")
        new = system.with_revoked(revoked)
        _mv_self_test(new)
        header = keyfiles.file_header(path.name, self.now)
        _replace_file(path, header + mv.bundle_pem(new, self.password))
        hint = "" if args.export_password is not None else "; export it with -q PW"
        self.say(f"New MV server key in {path.name}: serves clients {_numbers(new.active)}, "
                 f"revoked {_numbers(new.revoked)}{hint}")
        return 0

    def generate(self) -> int:
        """Host key, sign key, identity keys and certificate: every option and existing
        file is checked first, so that a mistake stops the run before any progress is shown
        or any file written."""
        args = self.args
        identity = _check_generate(args)
        host_file = None if args.host_key else self.existing("host")
        if host_file is not None and _key_type(host_file.private_key) != "RSA":
            raise KeygenError(f"{host_file.path}: the host key must be RSA")
        if host_file is None:
            _check_modulus("RSA", args.modulus)
        sign_file = None if args.sign_key else self.existing("sign")
        if args.sign_key:
            _check_modulus(args.sign_key, args.modulus)
        sign_type = args.sign_key or (_key_type(sign_file.private_key) if sign_file else "RSA")
        old_cert, old_cert_problem = self._old_certificate()
        profile = self._profile(sign_type, old_cert)
        generators = _identity_generators()

        self.keysdir.mkdir(parents=True, exist_ok=True)
        self.say(f"Using host {self.host} group {self.group}")
        if host_file is None:
            self.say(f"Generating RSA keys ({args.modulus} bits)...")
            host_key = _generate("RSA", args.modulus)
            self.say("Generating new host file and link")
            self.write("RSAhost", self.host, keyfiles.private_key_pem(host_key, self.password),
                       "host")
        else:
            host_key = host_file.private_key
            self.say(f"Using host key {host_file.path.name}")

        if args.sign_key:
            self.say(f"Generating {args.sign_key} keys ({args.modulus} bits)...")
            sign_key = _generate(args.sign_key, args.modulus)
            self.say("Generating new sign file and link")
            self.write(f"{args.sign_key}sign", self.host,
                       keyfiles.private_key_pem(sign_key, self.password), "sign")
        else:
            sign_key = sign_file.private_key if sign_file else host_key
            self.say(f"Using {'sign key ' + sign_file.path.name if sign_file else 'host key'}"
                     " as sign key")

        for letter, value in identity:
            context = KeygenContext(self.keysdir, self.host, self.group, self.filestamp,
                                    self.password, args.identity_modulus, self.now, self.stderr)
            self.say(f"Generating {_IDENTITY_NAMES[letter]} identity keys")
            generators[letter](context, value)
            if letter == "G":
                self._gq_size_note()

        if old_cert_problem:
            self.say(f"ignoring the existing certificate: {old_cert_problem}")
        trusted, private = args.trusted, args.private
        if not (trusted or private) and old_cert is not None:
            trusted, private = old_cert.trusted, old_cert.private
        gq_key = self._gq_key()
        self.say(f"Generating new certificate {self.subject} {profile.name}")
        der = build_self_signed(self.subject, sign_key, profile, self.filestamp, args.days,
                                trusted=trusted, private=private, gq_key=gq_key)
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        self.say("Generating new cert file and link")
        self.write(f"{profile.name}cert", self.host, pem, "cert")
        return 0

    def _gq_size_note(self) -> None:
        """One line when the GQ key is larger than reference clients can read."""
        from ntpauto.identity import gq

        bits = self.args.identity_modulus or gq.DEFAULT_BITS
        if bits > gq.REFERENCE_SKI_MAX_BITS:
            self.say(f"note: reference (ntpd 4.2.8) clients misread GQ keys above "
                     f"{gq.REFERENCE_SKI_MAX_BITS} bits and reject this host's identity; "
                     f"for groups with such clients make the keys with -G -b "
                     f"{gq.REFERENCE_SKI_MAX_BITS}")

    def _old_certificate(self) -> tuple[Any, str | None]:
        """(the existing certificate or None, why it is ignored or None)."""
        try:
            kf = self.existing("cert")
            if kf is None or kf.certificate is None:
                return None, None
            return parse_certificate(kf.certificate.public_bytes(serialization.Encoding.DER)), \
                None
        except (KeyFileError, CertificateError) as exc:
            return None, str(exc)

    def _profile(self, key_type: str, old_cert: Any) -> Any:
        """The signature profile: ``-c``, else the existing certificate's (for a sign key
        of its type), else the default for ``key_type``."""
        name = self.args.scheme
        if name is None and old_cert is not None:
            try:
                profile = profile_for_oid(old_cert.signature_oid)
            except UnsupportedProfile:
                profile = None
            if profile is not None and profile.key_type == key_type:
                return profile
        if name is None:
            name = DEFAULT_DSA_SCHEME if key_type == "DSA" else DEFAULT_SCHEME
        try:
            profile = get_profile(name)
        except UnsupportedProfile as exc:
            raise KeygenError(str(exc)) from None
        if profile.key_type != key_type:
            raise KeygenError(f"scheme {profile.name} needs a {profile.key_type} sign key, "
                              f"the sign key is {key_type} (use -S {profile.key_type})")
        return profile

    def _gq_key(self) -> int | None:
        try:
            kf = self.existing("gqkey")
        except KeyFileError as exc:
            self.say(f"no GQ key in the certificate: {exc}")
            return None
        if kf is None or not kf.private_keys:
            return None
        self.say(f"Using GQ key {kf.path.name} in the certificate")
        return kf.private_key.private_numbers().q


def _dsa_numbers(kf: keyfiles.KeyFile, index: int = 0) -> tuple[int, int, int, int, int]:
    """(p, q, g, pub, priv) of the DSA structure ``index`` of an IFF or MV file: the
    arguments of :func:`~ntpauto.pki.keyfiles.dsa_traditional_pem`."""
    from ntpauto.identity.common import dsa_fields

    keys = kf.private_keys
    p, q, g, priv, pub = dsa_fields(keys[index] if index < len(keys) else None, kf.path)
    return p, q, g, pub, priv


def _numbers(indices: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(indices))) or "none"


def _mv_client_option(args: argparse.Namespace) -> int | None:
    """The ``--mv-client`` number (None when not given); only with ``-e``."""
    value = getattr(args, "mv_client", None)
    if value is None:
        return None
    if not args.export_params:
        raise KeygenError("--mv-client goes with -e (the server key, -q, is one for all)")
    try:
        number = int(value)
    except ValueError:
        raise KeygenError(f"--mv-client: {value!r} is not a client number") from None
    if number < 1:
        raise KeygenError(f"--mv-client: MV client keys are numbered from 1, not {number}")
    return number


def _parse_revoke(text: str, count: int) -> frozenset[int]:
    """The client numbers of ``--mv-revoke`` (comma-separated, 1 to ``count``; at least
    one)."""
    revoked = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            number = int(item)
        except ValueError:
            raise KeygenError(f"--mv-revoke: {item!r} is not a client number") from None
        if not 1 <= number <= count:
            raise KeygenError(f"--mv-revoke: no MV client key {number} (the bundle has "
                              f"1 to {count})")
        revoked.add(number)
    if not revoked:
        raise KeygenError("--mv-revoke: MV cannot revoke no client (that server key is "
                          "E = gbar = ghat = 1, which anybody can forge); keep a spare client "
                          "key revoked, as the reference does with client n")
    return frozenset(revoked)


def _mv_self_test(system: Any) -> None:
    """One exchange per client with the new server key: the active ones verify, the revoked
    ones do not."""
    from ntpauto.identity.mv import MVScheme

    for index in range(1, len(system.clients) + 1):
        scheme = MVScheme(server=system.server, client=system.client(index))
        challenge = scheme.make_challenge()
        if scheme.verify_response(challenge, scheme.respond(challenge)) != \
                (index in system.active):
            raise KeygenError(f"MV self-test failed for client {index}; bundle not changed")


def _replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (mode 0600): a temporary file in the same
    directory, synced, then renamed over it, so a failure leaves the old file whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    fd = os.open(temporary, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _client_params(name: str, kf: keyfiles.KeyFile, say: Callable[[str], None],
                   mv_client: int = 1) -> tuple[str, bytes]:
    """(type, PEM) of ``-e`` for one identity file (interop.md 6.1-6.3); for MV, client
    key ``mv_client`` (1-based: key 2 + ``mv_client`` of the bundle)."""
    if name == "iffkey":
        p, q, g, _y, b = _dsa_numbers(kf)
        return "iffpar", keyfiles.dsa_traditional_pem(p, q, g, pow(g, q - b, p), 1)
    if name == "gqkey":
        numbers = kf.private_key.private_numbers()
        public = numbers.public_numbers
        return "gqpar", keyfiles.rsa_cuckoo_pem(public.n, public.e, 1, 1, 1, 1, 1, 1)
    if len(kf.private_keys) < 3:
        raise KeygenError(f"{kf.path}: an MV file needs at least 3 keys")
    count = len(kf.private_keys) - 2
    if not 1 <= mv_client <= count:
        raise KeygenError(f"--mv-client: no MV client key {mv_client} in {kf.path.name} "
                          f"(1 to {count})")
    if not kf.traditional:
        say(f"warning: {kf.path.name} is PKCS#8, whose DSA keys lost their public values; "
            "the exported MV client key will not verify (interop.md 6.4)")
    client = _dsa_numbers(kf, 1 + mv_client)
    if kf.traditional:
        p, _q, e, ghat, gbar = _dsa_numbers(kf, 1)
        xhat, xbar = client[3], client[4]
        if pow(gbar, xhat, p) * pow(ghat, xbar, p) * e % p != 1:
            say(f"note: MV client key {mv_client} is revoked by the bundle's server key "
                "(activate it with --mv-revoke)")
    return "mvpar", keyfiles.dsa_traditional_pem(*client)


def _server_keys(name: str, kf: keyfiles.KeyFile, password: bytes) -> tuple[str, bytes]:
    """(type, PEM) of ``-q PW`` for one identity file: GQ as PKCS#8, IFF and MV as
    traditional DSA (IFF with its public value v = g^(q-b), as our ``-I`` writes it)."""
    if name == "gqkey":
        return name, keyfiles.private_key_pem(kf.private_key, password)
    if name == "iffkey":
        p, q, g, _y, b = _dsa_numbers(kf)
        return name, keyfiles.dsa_traditional_pem(p, q, g, pow(g, q - b, p), b,
                                                  password=password)
    if len(kf.private_keys) < 2:
        raise KeygenError(f"{kf.path}: an MV file needs at least 2 keys")
    return "mvkey", keyfiles.dsa_traditional_pem(*_dsa_numbers(kf, 1), password=password)


def _nts_cert(args: argparse.Namespace, err: TextIO) -> int:
    """``--nts-cert``: a private CA and an NTS-KE server certificate in the keys directory
    (:func:`ntpauto.nts.certs.write_test_pki`)."""
    from ntpauto.nts.certs import write_test_pki

    names = [name.strip() for name in args.nts_cert.split(",") if name.strip()]
    if not names:
        raise KeygenError("--nts-cert needs at least one DNS name or IP address")
    paths = write_test_pki(args.keysdir or ".", names, days=args.days)
    print(f"NTS CA {paths.ca} (clients: ntstrustedcerts)\n"
          f"NTS-KE server certificate {paths.cert} for {', '.join(names)} "
          f"(ntsservercert)\nits private key {paths.key} (ntsserverkey, mode 0600)",
          file=err)
    return 0


def run(
    args: argparse.Namespace,
    *,
    clock: Callable[[], float] = time.time,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``ntpauto keygen`` with parsed ``args``; exit status 0, or 1 with a one-line
    message on stderr (2 for options not supported yet)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        if getattr(args, "nts_cert", None) is not None:
            return _nts_cert(args, err)
        job = _Run(args, clock(), out, err)
        exporting = args.export_params or args.export_password is not None
        if getattr(args, "mv_revoke", None) is not None:
            if exporting:
                job.check_export()  # before the bundle changes
            status = job.mv_revoke()
            return job.export() if exporting else status
        if args.symmetric:
            return job.symmetric()
        if exporting:
            return job.export()
        return job.generate()
    except KeygenError as exc:
        print(f"ntpauto keygen: {exc}", file=err)
        return 1
    except (KeyFileError, CertificateError, OSError, ValueError) as exc:
        print(f"ntpauto keygen: {exc}", file=err)
        return 1

