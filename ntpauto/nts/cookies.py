"""The server's NTS cookies: stateless, sealed under master keys that rotate on a schedule.

A cookie carries the two keys of one NTS-KE exchange back to the server, which keeps no
state per client (RFC 8915 section 6, "Suggested Format for NTS Cookies")::

    I (4 octets: the master key's identifier) || N (16 octets: a random nonce)
    || C = AEAD_AES_SIV_CMAC_256(K_I, N, P, associated data I)
    P = the AEAD algorithm (4 octets) || C2S key || S2C key

104 octets for AES-SIV-CMAC-256, a multiple of four as the extension field needs.

Master keys.  ``K_I`` is derived with HKDF-SHA256 from one 32-octet secret and the key's
number ``I``, the count of rotation periods (``ntsrotate``, a day by default) since the Unix
epoch on the wall clock.  The key therefore rotates by itself, and every process that holds
the same secret (the workers of a host, several hosts behind one address) seals and opens
the same cookies with no coordination beyond a copy of the secret file and clocks within a
period of each other.  Cookies sealed up to :data:`KEEP` periods ago are still accepted, and
one period ahead (a host whose clock is a little behind); anything else is an unknown key
(the client then gets an NTS NAK and runs NTS-KE again).  Replacing the secret revokes
every cookie at once (section 8.2: a compromised master key).

The secret lives in ``ntscookiekey`` in the ``ntsdumpdir`` directory (chrony's name for the
directory that keeps its server keys), created 0600 on first use; without a directory it is
drawn at start-up and lost at exit, as chrony's keys are without ``ntsdumpdir``.
"""

from __future__ import annotations

import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ntpauto.errors import FileLineError
from ntpauto.nts.aead import KEY_LENGTHS, TAG_LENGTH, SessionKeys

__all__ = [
    "COOKIE_NONCE", "DEFAULT_ROTATE", "KEEP", "SECRET_FILE", "CookieError", "CookieKeys",
    "CookieKeyFileError", "cookie_length", "load_or_create_secret",
]

SECRET_LENGTH = 32
COOKIE_NONCE = 16
DEFAULT_ROTATE = 86400
"""Seconds a master key is the current one (``ntsrotate``; NTPsec rotates daily)."""
KEEP = 7
"""Past master keys whose cookies are still accepted."""
SECRET_FILE = "ntscookiekey"
"""The secret's file in ``ntsdumpdir``: a header line, then the secret in hex."""
_FILE_HEADER = "ntpauto NTS cookie secret 1"
_HKDF_INFO = b"ntpauto NTS cookie master key"
_ID = struct.Struct("!I")


class CookieError(ValueError):
    """A cookie the server cannot open: unknown or expired master key, or forged."""


class CookieKeyFileError(FileLineError):
    """The cookie secret file cannot be read or written; ``str()`` names the file."""


def cookie_length(aead: int) -> int:
    """Octets of a cookie holding keys of ``aead``."""
    return _ID.size + COOKIE_NONCE + TAG_LENGTH + 4 + 2 * KEY_LENGTHS[aead]


class CookieKeys:
    """Seals and opens cookies under the master keys of one secret (module docstring).

    :param secret: 32 random octets (:func:`load_or_create_secret`, or ``os.urandom``).
    :param rotate: seconds per master key; 0 never rotates (one key, number 0).
    """

    def __init__(self, secret: bytes, rotate: int = DEFAULT_ROTATE, keep: int = KEEP) -> None:
        if len(secret) != SECRET_LENGTH:
            raise ValueError(f"the cookie secret must have {SECRET_LENGTH} octets")
        if rotate < 0 or keep < 0:
            raise ValueError("rotate and keep must not be negative")
        self._secret = secret
        self.rotate = rotate
        self.keep = keep
        self._ciphers: dict[int, AESSIV] = {}

    def __repr__(self) -> str:
        return f"CookieKeys(rotate={self.rotate}, keep={self.keep})"

    def __reduce__(self) -> tuple[type[CookieKeys], tuple[bytes, int, int]]:
        """Pickled as its secret and settings (the ciphers are made again): the daemon
        hands them to its server workers (:mod:`ntpauto.workerstate`)."""
        return CookieKeys, (self._secret, self.rotate, self.keep)

    def key_id(self, now: float) -> int:
        """The number of the master key current at ``now`` (Unix seconds)."""
        return int(now // self.rotate) & 0xFFFFFFFF if self.rotate else 0

    def _cipher(self, key_id: int) -> AESSIV:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            if len(self._ciphers) > self.keep + 2:
                self._ciphers.clear()  # the window moved on: the old keys go
            key = HKDF(hashes.SHA256(), SECRET_LENGTH, salt=None,
                       info=_HKDF_INFO + _ID.pack(key_id)).derive(self._secret)
            cipher = self._ciphers[key_id] = AESSIV(key)
        return cipher

    def seal(self, keys: SessionKeys, now: float, nonce: bytes | None = None) -> bytes:
        """A new cookie for ``keys`` under the master key current at ``now``; ``nonce``
        (16 octets) only for tests, a fresh random one otherwise."""
        number = self.key_id(now)
        key_id = _ID.pack(number)
        nonce = os.urandom(COOKIE_NONCE) if nonce is None else nonce
        plaintext = struct.pack("!I", keys.aead) + keys.c2s + keys.s2c
        return key_id + nonce + self._cipher(number).encrypt(plaintext, [key_id, nonce])

    def open(self, cookie: bytes, now: float) -> SessionKeys:
        """The keys sealed in ``cookie``; :class:`CookieError` when its master key is not
        one we accept at ``now`` or it does not authenticate."""
        if len(cookie) < _ID.size + COOKIE_NONCE + TAG_LENGTH + 4:
            raise CookieError(f"a cookie of {len(cookie)} octets is too short")
        (key_id,) = _ID.unpack_from(cookie)
        current = self.key_id(now)
        age = (current - key_id) & 0xFFFFFFFF
        if self.rotate and not (age <= self.keep or age == 0xFFFFFFFF):
            raise CookieError(f"cookie of master key {key_id}: not accepted at key {current}")
        if not self.rotate and key_id:
            raise CookieError(f"cookie of master key {key_id}: only key 0 is in use")
        nonce = cookie[_ID.size:_ID.size + COOKIE_NONCE]
        try:
            plaintext = self._cipher(key_id).decrypt(cookie[_ID.size + COOKIE_NONCE:],
                                                     [cookie[:_ID.size], nonce])
        except InvalidTag:
            raise CookieError("the cookie does not authenticate") from None
        (aead,) = struct.unpack_from("!I", plaintext)
        length = KEY_LENGTHS.get(aead)
        if length is None or len(plaintext) != 4 + 2 * length:
            raise CookieError(f"cookie keys of AEAD algorithm {aead}: not ours")
        return SessionKeys(aead, plaintext[4:4 + length], plaintext[4 + length:])


def load_or_create_secret(directory: str | os.PathLike[str]) -> bytes:
    """The cookie secret in ``directory``/:data:`SECRET_FILE`, created (0600, atomically:
    the first of several processes starting together wins) when it does not exist yet.
    :class:`CookieKeyFileError` when it cannot be read, written or parsed."""
    path = os.path.join(os.fspath(directory), SECRET_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as e:
        raise CookieKeyFileError(path, 0, f"cannot create the NTS cookie secret: "
                                 f"{e.strerror or e}") from None
    secret = os.urandom(SECRET_LENGTH)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{_FILE_HEADER}\n{secret.hex()}\n")
    return secret


def _read_secret(path: str) -> bytes:
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read().split()
    except (OSError, UnicodeDecodeError) as e:
        raise CookieKeyFileError(path, 0, f"cannot read the NTS cookie secret: {e}") from None
    if os.stat(path).st_mode & 0o077:
        raise CookieKeyFileError(path, 0, "the NTS cookie secret must not be readable by "
                                 "group or others (chmod 600)")
    header = " ".join(lines[:-1])
    try:
        secret = binascii.unhexlify(lines[-1]) if lines else b""
    except (binascii.Error, ValueError):
        secret = b""
    if header != _FILE_HEADER or len(secret) != SECRET_LENGTH:
        raise CookieKeyFileError(path, 0, f"not an NTS cookie secret file (expected "
                                 f"'{_FILE_HEADER}' and {SECRET_LENGTH} octets in hex)")
    return secret
