"""Symmetric-key authentication: the ``ntp.keys`` file and the key store that signs and
verifies packet MACs with it.

The file format is the reference ntpd's (4.2.8 ``authreadkeys``, ntp-keygen ``-M``)::

    # comment
    KEYID TYPE KEY [# comment]

* KEYID: decimal, 1..65535 (NTP_MAXKEY; larger IDs are Autokey session keys).
* TYPE (case-insensitive): ``MD5`` (or the old letter ``M``), ``SHA1`` (or ``SHA``),
  ``AES128CMAC`` (RFC 8573; also ``AES-128-CMAC`` or ``CMAC``).
* KEY: up to 20 printable ASCII characters (no space, no ``#``) taken literally; a longer
  string is hex, at most 40 digits and of even length, decoded to octets. So a 20-digit hex
  string is 20 ASCII characters, not 10 octets, exactly as ntpd reads it.
* AES-128-CMAC needs a 16-octet key: write 32 hex digits. A shorter key is zero-padded to
  16 octets (as ntpd does); a longer one is an error here, where ntpd silently used only the
  first 16 octets.

``#`` starts a comment anywhere on a line. The reference's optional fourth field (per-key
address restrictions, ntpd 4.2.8p11+) is not supported and is reported as an error rather than
ignored, so that a restriction is never silently dropped.

The MAC on the wire is the 4-octet big-endian key ID followed by
``mac_digest(algorithm, secret, header and extension fields)`` (interop.md section 3.6).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping

import attrs

from ntpauto.auth.digest import DIGEST_SIZES, digests_equal, keyed_mac, mac_digest
from ntpauto.errors import FileLineError

MAX_KEYID = 65535
"""NTP_MAXKEY: symmetric key IDs are 1..65535."""
MAX_ASCII_KEY = 20
"""Keys of up to this many characters are taken literally; longer ones are hex."""
MAX_HEX_KEY = 40
"""At most this many hex digits (20 octets)."""
CMAC_KEY_SIZE = 16
"""AES-128 key octets; shorter CMAC keys are zero-padded to this size."""

_TYPE_NAMES = {
    "m": "md5",
    "md5": "md5",
    "sha": "sha1",
    "sha1": "sha1",
    "aes128cmac": "aes128cmac",
    "aes-128-cmac": "aes128cmac",
    "cmac": "aes128cmac",
}
"""Key type as written in the file (lower-cased) -> algorithm name for ``mac_digest``."""

_FILE_TYPE = {"md5": "MD5", "sha1": "SHA1", "aes128cmac": "AES128CMAC"}
"""Algorithm -> canonical type name written by :func:`format_keys`."""

_KEYID_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_FIELD_SEP = re.compile(r"[ \t\f\v\r]+")
_KEYID_WORD = struct.Struct("!I")


class KeyFileError(FileLineError):
    """A keys file cannot be used: ``str()`` is ``path:line: message`` (``path: message`` when
    the whole file is at fault, ``line`` 0)."""


def _is_literal_char(code: int) -> bool:
    """Printable ASCII other than space and ``#``: what an ASCII key may contain."""
    return 0x21 <= code <= 0x7E and code != 0x23


def _check_keyid(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_KEYID:
        raise ValueError(f"key ID must be an integer from 1 to {MAX_KEYID}, not {value!r}")


def _check_algorithm(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in DIGEST_SIZES:
        raise ValueError(f"algorithm must be one of {sorted(DIGEST_SIZES)}, not {value!r}")


def _check_secret(instance: SymmetricKey, attribute: attrs.Attribute, value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"secret must be bytes, not {type(value).__name__}")
    if instance.algorithm == "aes128cmac":
        if len(value) != CMAC_KEY_SIZE:
            raise ValueError(f"an AES128CMAC secret must be {CMAC_KEY_SIZE} octets, "
                             f"not {len(value)}")
    elif not 1 <= len(value) <= MAX_HEX_KEY // 2:
        raise ValueError(f"a secret must be 1 to {MAX_HEX_KEY // 2} octets, not {len(value)}")


@attrs.frozen
class SymmetricKey:
    """One ``ntp.keys`` entry. ``algorithm`` is ``md5``, ``sha1`` or ``aes128cmac`` (the names
    :func:`mac_digest` takes); ``secret`` is the key as used (CMAC keys already padded) and is
    kept out of ``repr`` so it never reaches a log."""

    keyid: int = attrs.field(validator=_check_keyid)
    algorithm: str = attrs.field(validator=_check_algorithm)
    secret: bytes = attrs.field(repr=False, validator=_check_secret)

    @property
    def digest_size(self) -> int:
        """Digest octets in a MAC made with this key (16, 20, 16), without the key ID."""
        return DIGEST_SIZES[self.algorithm]


def _parse_secret(token: str, algorithm: str) -> bytes:
    """Decode the KEY field by ntpd's rule; ``ValueError`` says what is wrong with it."""
    bad = next((ch for ch in token if not _is_literal_char(ord(ch))), None)
    if bad is not None:
        raise ValueError(f"key contains {bad!r}: only printable ASCII without spaces or '#' "
                         "is allowed")
    if len(token) <= MAX_ASCII_KEY:
        secret = token.encode("ascii")
    else:
        if len(token) > MAX_HEX_KEY:
            raise ValueError(f"key is too long: {len(token)} characters (at most "
                             f"{MAX_ASCII_KEY} ASCII characters or {MAX_HEX_KEY} hex digits)")
        if not _HEX_RE.fullmatch(token):
            bad = next(ch for ch in token if ch not in "0123456789abcdefABCDEF")
            raise ValueError(f"bad hex key: {bad!r} is not a hex digit (a key longer than "
                             f"{MAX_ASCII_KEY} characters must be hex)")
        if len(token) % 2:
            raise ValueError(f"bad hex key: odd number of hex digits ({len(token)})")
        secret = bytes.fromhex(token)
    if algorithm == "aes128cmac":
        if len(secret) > CMAC_KEY_SIZE:
            raise ValueError(f"AES128CMAC key is {len(secret)} octets; it must be at most "
                             f"{CMAC_KEY_SIZE} (write {2 * CMAC_KEY_SIZE} hex digits)")
        secret = secret.ljust(CMAC_KEY_SIZE, b"\x00")
    return secret


def _parse_line(line: str) -> SymmetricKey | None:
    """One line of a keys file: a key, or ``None`` for a blank/comment line."""
    fields = [f for f in _FIELD_SEP.split(line.split("#", 1)[0]) if f]
    if not fields:
        return None
    if not _KEYID_RE.fullmatch(fields[0]) or not 1 <= int(fields[0]) <= MAX_KEYID:
        raise ValueError(f"bad key ID {fields[0]!r}: must be an integer from 1 to {MAX_KEYID}")
    keyid = int(fields[0])
    if len(fields) == 1:
        raise ValueError(f"key {keyid}: missing key type and key")
    algorithm = _TYPE_NAMES.get(fields[1].lower())
    if algorithm is None:
        raise ValueError(f"key {keyid}: unknown key type {fields[1]!r} "
                         "(expected MD5, SHA1 or AES128CMAC)")
    if len(fields) == 2:
        raise ValueError(f"key {keyid}: missing key")
    if len(fields) > 3:
        raise ValueError(f"key {keyid}: unexpected field {fields[3]!r} after the key "
                         "(per-key address restrictions are not supported)")
    try:
        secret = _parse_secret(fields[2], algorithm)
    except ValueError as exc:
        raise ValueError(f"key {keyid}: {exc}") from None
    return SymmetricKey(keyid, algorithm, secret)


def parse_keys(text: str, path: str = "<string>") -> dict[int, SymmetricKey]:
    """Parse ``ntp.keys`` text into ``{keyid: SymmetricKey}``; any bad line, or a key ID given
    twice, raises :class:`KeyFileError` naming ``path`` and the line."""
    keys: dict[int, SymmetricKey] = {}
    first_line: dict[int, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            key = _parse_line(line)
        except ValueError as exc:
            raise KeyFileError(path, number, str(exc)) from None
        if key is None:
            continue
        if key.keyid in keys:
            raise KeyFileError(path, number, f"duplicate key ID {key.keyid} "
                                             f"(first defined on line {first_line[key.keyid]})")
        keys[key.keyid] = key
        first_line[key.keyid] = number
    return keys


def load_keys(path: str | os.PathLike[str]) -> dict[int, SymmetricKey]:
    """Read and parse a keys file (see :func:`parse_keys`); an unreadable file raises
    :class:`KeyFileError` naming the path."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise KeyFileError(name, 0, f"cannot read keys file: {exc.strerror or exc}") from exc
    # Non-UTF-8 octets survive as surrogates: harmless in comments, reported in a key field.
    return parse_keys(raw.decode("utf-8", "surrogateescape"), name)


def _format_secret(key: SymmetricKey) -> str:
    """The KEY field that parses back to exactly ``key.secret`` for ``key.algorithm``."""
    secret = key.secret
    if len(secret) <= MAX_ASCII_KEY and all(_is_literal_char(octet) for octet in secret):
        return secret.decode("ascii")
    text = secret.hex()
    if len(text) <= MAX_ASCII_KEY:
        raise ValueError(f"key {key.keyid}: a {len(secret)}-octet binary secret cannot be "
                         "written to a keys file (hex is read as hex only above "
                         f"{MAX_ASCII_KEY} digits)")
    return text


def format_keys(keys: Iterable[SymmetricKey]) -> str:
    """``ntp.keys`` text for ``keys`` in key-ID order, one ``KEYID TYPE KEY`` line each
    (literal when the secret is printable ASCII, else hex), such that :func:`parse_keys`
    gives the same keys back. ``ValueError`` for duplicate IDs or unwritable secrets."""
    ordered = sorted(keys, key=lambda k: k.keyid)
    lines = []
    previous = None
    for key in ordered:
        if key.keyid == previous:
            raise ValueError(f"duplicate key ID {key.keyid}")
        previous = key.keyid
        lines.append(f"{key.keyid} {_FILE_TYPE[key.algorithm]} {_format_secret(key)}\n")
    return "".join(lines)


class KeyStore:
    """The loaded symmetric keys and the ``trustedkey`` set: signs outgoing packets and
    verifies incoming MACs. Only trusted keys verify (ntpd ``authistrusted``)."""

    __slots__ = ("_keys", "_trusted", "_trusted_macs")

    def __init__(self, keys: Mapping[int, SymmetricKey] | None = None,
                 trusted: Iterable[int] = ()) -> None:
        self._keys: dict[int, SymmetricKey] = dict(keys or {})
        for keyid, key in self._keys.items():
            if key.keyid != keyid:
                raise ValueError(f"key store entry {keyid} holds key {key.keyid}")
        self._trusted: frozenset[int] = frozenset(trusted)
        # Trusted keys by the key ID word of a MAC (the 4 octets on the wire), with their
        # keyed MAC function and digest size: looked up once per packet by the server.
        self._trusted_macs: dict[bytes, tuple[Callable[[bytes], bytes], int]] = {
            _KEYID_WORD.pack(keyid): (keyed_mac(key.algorithm, key.secret),
                                      DIGEST_SIZES[key.algorithm])
            for keyid, key in self._keys.items() if keyid in self._trusted}

    def verified(self, word: bytes, message: bytes, digest: bytes
                 ) -> Callable[[bytes], bytes] | None:
        """The MAC function of the trusted key whose ID is ``word`` (the 4 octets of a MAC)
        when ``digest`` authenticates ``message`` under it (constant-time compare; a digest
        of the wrong length never does), else None.  The one symmetric-key check: the server
        signs its reply with the function returned (``word + mac_of(reply)``)."""
        entry = self._trusted_macs.get(word)
        if entry is None or len(digest) != entry[1] \
                or not digests_equal(entry[0](message), digest):
            return None
        return entry[0]

    def trusted_secrets(self) -> list[tuple[int, str, bytes]]:
        """(key ID, algorithm, secret) of every trusted key that verifies: what
        :meth:`verified` checks against, for the server's batched path
        (:mod:`ntpauto.batch`)."""
        return [(keyid, key.algorithm, key.secret) for keyid, key in self._keys.items()
                if keyid in self._trusted]

    def trusted_mac(self, keyid: int) -> Callable[[bytes], bytes] | None:
        """The MAC function of trusted key ``keyid`` (None for any other key)."""
        entry = self._trusted_macs.get(_KEYID_WORD.pack(keyid)) if 0 < keyid <= MAX_KEYID \
            else None
        return entry[0] if entry is not None else None

    def __len__(self) -> int:
        return len(self._keys)

    def __reduce__(self) -> tuple[type[KeyStore], tuple[dict[int, SymmetricKey], frozenset[int]]]:
        """Pickled as its keys and trusted IDs (the MAC functions are made again): the
        daemon hands its keys to its server workers (:mod:`ntpauto.workerstate`)."""
        return KeyStore, (self._keys, self._trusted)

    def __contains__(self, keyid: object) -> bool:
        return keyid in self._keys

    @property
    def trusted(self) -> frozenset[int]:
        """The key IDs listed by ``trustedkey`` (whether or not the keys file has them)."""
        return self._trusted

    def get(self, keyid: int) -> SymmetricKey | None:
        """The key with this ID, or ``None``."""
        return self._keys.get(keyid)

    def is_trusted(self, keyid: int) -> bool:
        """True if the key exists and is listed in ``trustedkey``."""
        return keyid in self._trusted and keyid in self._keys

    def sign(self, keyid: int, message: bytes) -> bytes:
        """The MAC to append to ``message`` (header and extension fields): the 4-octet
        big-endian key ID then the digest. ``KeyError`` for an unknown key; whether an
        untrusted key may be used is the caller's decision."""
        key = self._keys[keyid]
        return _KEYID_WORD.pack(keyid) + mac_digest(key.algorithm, key.secret, message)

    def verify(self, keyid: int, message: bytes, digest: bytes) -> bool:
        """Whether ``digest`` (the MAC without its key ID) authenticates ``message`` under a
        known, trusted key (:meth:`verified`)."""
        return 0 < keyid <= MAX_KEYID \
            and self.verified(_KEYID_WORD.pack(keyid), message, digest) is not None
