"""ed25519id: an Autokey identity scheme whose group key is an Ed25519 key pair.

A worked third-party identity scheme for ntpauto (see ``docs/howto/identity-plugins.md`` in
ntpauto).  This file is the whole distribution ``ntpauto-ed25519id``: it is installed as
``ntpauto/plugins/ed25519id.py`` with no ``__init__.py`` beside it, and ntpauto finds it with
``twisted.plugin.getPlugins(IIdentitySchemeFactory, ntpauto.plugins)`` like its built-ins.

The exchange (one request, one response, RFC 5906 section 6 style)::

    client                                   server (holds the group private key)
    c = 32 fresh random octets
    request  code 64, value c  ------------>
                                             c must be exactly 32 octets
                               <------------ response code 64, value
                                             s = Ed25519-Sign(key, CONTEXT || c)
    Ed25519-Verify(group public key, s, CONTEXT || c)  ->  VRFY

``CONTEXT`` is ``b"ntpauto-ed25519id v1 challenge\\x00"``: a signature made for this scheme is
useless anywhere else, and since the challenge has a fixed length the server cannot be used
as a signing oracle for anything but "CONTEXT followed by 32 octets".  A fresh challenge per
request stops replays; the response also travels in an Autokey field signed with the
server's host key, which the client checks before it looks at the value.  What the scheme
proves is what IFF, GQ and MV prove: that whoever answers can use the group key.

Received values (the ``IIdentityScheme`` contract: range and group checked before use): the
scheme does no arithmetic of its own, so it needs none of ``ntpauto.identity.common``'s
``check_range``/``check_unit``/``check_subgroup``.  The server takes the challenge as opaque
octets of a fixed length; the client's only received value, the 64-octet signature, is
decoded and checked by ``cryptography``'s Ed25519 verification (RFC 8032: it refuses, for
instance, S at or above the group order), against the group public key from the client's
own file, not a received one.

Allocation (ntpauto's rule for third parties): message code **64** (reference codes 0-9 are
taken; third parties use 64-127) and status bit **0x0004** (the reference ignores 0x0004 and
0x0008; the built-in scheme bits are 0x10-0x80).

Files, in the keys directory, both starting with the two ntp-keygen header lines
``# ntpkey_<type>_<group>.<filestamp>`` and ``# <date>``:

* ``ntpkey_ed25519idkey_<group>`` -> ``ntpkey_ed25519idkey_<group>.<filestamp>``: the group
  private key, encrypted PKCS#8 PEM (``ENCRYPTED PRIVATE KEY``), mode 0600; servers only;
* ``ntpkey_ed25519idpar_<group>`` -> ``ntpkey_ed25519idpar_<group>.<filestamp>``: the group
  public key (``PUBLIC KEY`` PEM, SubjectPublicKeyInfo); every client of the group.

Filestamps: both files of one key carry the same filestamp (the key's generation time in NTP
seconds).  A response carries the server key's filestamp and the client accepts it only when
it *equals* that of its parameter file (as IFF and MV do), so after a key roll a client with
the old public key sees "bad filestamp" rather than a silent identity failure.

Key generation (no CLI needed)::

    from ntpauto.plugins.ed25519id import make_group_files
    make_group_files("/etc/ntp", "mygroup", password="secret")      # both files, one dir
    make_group_files("/etc/ntp", "mygroup", password="secret",
                     client_dir="/tmp/for-clients")                  # par file elsewhere

The password must be the server's ``crypto pw`` (ntpauto decrypts identity keys with the host
password); for another server of the group, re-encrypt the same key with
``write_server_key(dir, load_server_key(path, old)[0], group, filestamp, its_password)``,
keeping the filestamp.  Then ``ntp.conf``: ``crypto ident mygroup`` (servers) and
``server ... autokey ident mygroup`` (clients).
``ntpauto.identity.registry.make_scheme("ed25519id:KEYSDIR:GROUP[:PASSWORD]")`` builds the
scheme directly.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import (
    ChallengeResponseScheme,
    KeysdirSchemeFactory,
    MissingKeyError,
    read_identity_file,
)
from ntpauto.interfaces import IIdentitySchemeFactory
from ntpauto.pki import keyfiles
from ntpauto.pki.keyfiles import KeyFileError

__all__ = [
    "CHALLENGE_OCTETS",
    "CONTEXT",
    "MESSAGE_CODE",
    "SCHEME_NAME",
    "SIGNATURE_OCTETS",
    "STATUS_BIT",
    "Ed25519IdScheme",
    "Ed25519IdSchemeFactory",
    "client_parameters_pem",
    "ed25519id",
    "load_client_parameters",
    "load_server_key",
    "make_group_files",
    "server_key_pem",
    "write_client_parameters",
    "write_server_key",
]

SCHEME_NAME = "ed25519id"
STATUS_BIT = 0x0004
"""Host status-word bit advertising that we answer ed25519id challenges."""
MESSAGE_CODE = 64
"""Extension field code of the request and the response (third-party range 64-127)."""
CHALLENGE_OCTETS = 32
SIGNATURE_OCTETS = 64
CONTEXT = b"ntpauto-ed25519id v1 challenge\x00"
"""Prefix of every signed message: binds the signature to this scheme and version."""

SERVER_KIND = f"{SCHEME_NAME}key"
CLIENT_KIND = f"{SCHEME_NAME}par"
_NTP_UNIX_OFFSET = 2_208_988_800


def _signed_message(challenge: bytes) -> bytes:
    return CONTEXT + challenge


# --- files --------------------------------------------------------------------------------


def server_key_pem(key: Ed25519PrivateKey, password: str | bytes) -> bytes:
    """The group private key as encrypted PKCS#8 PEM (a password is required)."""
    if not password:
        raise ValueError("the ed25519id server key must be encrypted: give a password")
    return keyfiles.private_key_pem(key, password)


def client_parameters_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The group public key as ``PUBLIC KEY`` PEM (SubjectPublicKeyInfo)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def write_server_key(directory: str | os.PathLike[str], key: Ed25519PrivateKey, group: str,
                     filestamp: int, password: str | bytes, *,
                     when: float | None = None) -> Path:
    """Write ``ntpkey_ed25519idkey_<group>.<filestamp>`` (mode 0600, encrypted) and link
    ``ntpkey_ed25519idkey_<group>`` to it; returns the file's path."""
    return keyfiles.write_key_file(directory, SERVER_KIND, group, filestamp,
                                   server_key_pem(key, password), SERVER_KIND, group,
                                   when=when)


def write_client_parameters(directory: str | os.PathLike[str],
                            key: Ed25519PrivateKey | Ed25519PublicKey, group: str,
                            filestamp: int, *, when: float | None = None) -> Path:
    """Write ``ntpkey_ed25519idpar_<group>.<filestamp>`` and link
    ``ntpkey_ed25519idpar_<group>`` to it; ``filestamp`` must be the server key's."""
    return keyfiles.write_key_file(directory, CLIENT_KIND, group, filestamp,
                                   client_parameters_pem(key), CLIENT_KIND, group, when=when)


def make_group_files(server_dir: str | os.PathLike[str], group: str, password: str | bytes,
                     *, client_dir: str | os.PathLike[str] | None = None,
                     filestamp: int | None = None,
                     key: Ed25519PrivateKey | None = None) -> tuple[Path, Path]:
    """Generate a group key (or use ``key``) and write the server key into ``server_dir`` and
    the client parameters into ``client_dir`` (default: ``server_dir``), both with
    ``filestamp`` (default: now, in NTP seconds).  Returns (server key path, client
    parameters path)."""
    key = key if key is not None else Ed25519PrivateKey.generate()
    stamp = int(filestamp) if filestamp is not None else \
        (int(time.time()) + _NTP_UNIX_OFFSET) & 0xFFFFFFFF
    when = float(stamp - _NTP_UNIX_OFFSET)
    for folder in (server_dir, client_dir):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True, mode=0o700)
    server = write_server_key(server_dir, key, group, stamp, password, when=when)
    client = write_client_parameters(client_dir if client_dir is not None else server_dir,
                                     key, group, stamp, when=when)
    return server, client


def load_server_key(path: str | os.PathLike[str],
                    password: str | bytes | None) -> tuple[Ed25519PrivateKey, int | None]:
    """(group private key, filestamp) of a server key file; KeyFileError when it is missing,
    undecryptable, or not an Ed25519 key."""
    key_file = read_identity_file(path, password, (SERVER_KIND,))
    key = key_file.private_key
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(key_file.path, "not an Ed25519 private key")
    return key, key_file.filestamp


_HEADER_RE = re.compile(r"#\s*ntpkey_([A-Za-z0-9-]+)_(\S+)\.(\d+)\s*")


def load_client_parameters(path: str | os.PathLike[str]
                           ) -> tuple[Ed25519PublicKey, int | None]:
    """(group public key, filestamp) of a client parameter file.  The first line must be
    ``# ntpkey_ed25519idpar_<group>.<filestamp>``; KeyFileError otherwise, or when the file
    is missing or holds no Ed25519 public key."""
    given = Path(path)
    try:
        real = keyfiles.resolve_link(given)
        text = real.read_bytes().decode("ascii")
    except FileNotFoundError as exc:
        raise KeyFileError(given, f"no such file ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(given, f"cannot read: {exc}") from None
    match = _HEADER_RE.fullmatch(text.split("\n", 1)[0])
    if match is None:
        raise KeyFileError(real, "no filestamp: the first line must be "
                                 f"'# ntpkey_{CLIENT_KIND}_<group>.<filestamp>'")
    if match.group(1).lower() != CLIENT_KIND:
        raise KeyFileError(real, f"is a {match.group(1)} file, expected {CLIENT_KIND}")
    filestamp = int(match.group(3))
    if filestamp > 0xFFFFFFFF:
        raise KeyFileError(real, f"filestamp {filestamp} does not fit in 32 bits")
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except ValueError as exc:
        raise KeyFileError(real, f"no usable PUBLIC KEY: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(real, "not an Ed25519 public key")
    return key, filestamp


# --- scheme -------------------------------------------------------------------------------


class Ed25519IdScheme(ChallengeResponseScheme):
    """ed25519id bound to the group private key (``server``) and/or the group public key
    (``client``).  ``rng`` is a ``randbits``-like source for the challenges
    (``secrets.randbits`` by default)."""

    name: ClassVar[str] = SCHEME_NAME
    status_bit: ClassVar[int] = STATUS_BIT
    message_code: ClassVar[int] = MESSAGE_CODE
    server_kind: ClassVar[str] = SERVER_KIND
    client_kind: ClassVar[str] = CLIENT_KIND

    @classmethod
    def load_server_key(cls, path: str | os.PathLike[str],
                        password: str | bytes | None) -> tuple[Any, int | None]:
        """See :func:`load_server_key`."""
        return load_server_key(path, password)

    @classmethod
    def load_client_parameters(cls, path: str | os.PathLike[str]) -> tuple[Any, int | None]:
        """See :func:`load_client_parameters`."""
        return load_client_parameters(path)

    def make_challenge(self) -> bytes:
        """32 fresh random octets; MissingKeyError without the group public key."""
        if self.client is None:
            raise MissingKeyError("ed25519id client parameters are not loaded")
        return self.rng(8 * CHALLENGE_OCTETS).to_bytes(CHALLENGE_OCTETS, "big")

    def respond(self, challenge: bytes) -> bytes:
        """The 64-octet signature of ``CONTEXT || challenge``; ValueError unless the
        challenge is exactly 32 octets, MissingKeyError without the group private key."""
        if self.server is None:
            raise MissingKeyError("ed25519id server key is not loaded")
        challenge = bytes(challenge)
        if len(challenge) != CHALLENGE_OCTETS:
            raise ValueError(f"ed25519id challenge of {len(challenge)} octets, expected "
                             f"{CHALLENGE_OCTETS}")
        return self.server.sign(_signed_message(challenge))

    def verify_response(self, challenge: bytes, response: bytes) -> bool:
        """True when ``response`` is the group key's signature of ``CONTEXT || challenge``;
        False without the group public key and for anything malformed."""
        challenge, response = bytes(challenge), bytes(response)
        if self.client is None or len(challenge) != CHALLENGE_OCTETS \
                or len(response) != SIGNATURE_OCTETS:
            return False
        try:
            self.client.verify(response, _signed_message(challenge))
        except InvalidSignature:
            return False
        return True


@implementer(IPlugin, IIdentitySchemeFactory)
class Ed25519IdSchemeFactory(KeysdirSchemeFactory):
    """Builds :class:`Ed25519IdScheme` from ``ntpkey_ed25519idkey_<group>`` and/or
    ``ntpkey_ed25519idpar_<group>``."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    help_text: ClassVar[str] = (
        "Ed25519 group-key identity (third-party example): servers hold the group private "
        "key (ntpkey_ed25519idkey_GROUP, encrypted with PASSWORD) and sign the client's "
        "32-octet challenge; clients verify with the group public key "
        "(ntpkey_ed25519idpar_GROUP). Message code 64, status bit 0x0004.")
    status_bit: ClassVar[int] = STATUS_BIT
    message_code: ClassVar[int] = MESSAGE_CODE
    scheme_class: ClassVar[Any] = Ed25519IdScheme


ed25519id = Ed25519IdSchemeFactory()
