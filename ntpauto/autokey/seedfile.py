"""The server seed's secret of a farm, in a file every instance holds a copy of.

A farm (docs/scaling.md) is several ntpauto hosts behind one address whose Autokey server
values agree, so that a client's dance survives being moved from one to another.  Their
server seeds come from one secret (:class:`~ntpauto.autokey.cookie.SharedSeed`): 32 random
octets, written in hex to ``ntpkey_seed_HOST`` in the keys directory (or the ``farm
seedfile``) with two comment lines, mode 0600, the first time a daemon with ``farm`` starts
without one (it is never written over), and read at every start after.  Copy it to every
instance with the host's other key files.  Anyone who holds it can compute every client's
cookie: keep it as private as the host key.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

from twisted.logger import Logger

from ntpauto.autokey.cookie import SEED_SECRET_SIZE
from ntpauto.pki.keyfiles import KeyFileError

__all__ = ["load_seed_secret", "seed_file_name"]

log = Logger()


def seed_file_name(host: str) -> str:
    """The seed file's name in the keys directory: ``ntpkey_seed_HOST``."""
    return f"ntpkey_seed_{host}"


def load_seed_secret(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``path``, made there first when the file does not exist.
    KeyFileError names the file when it cannot be read, made, or holds no secret; a file
    others may read is used, with a warning."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _make(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(path, f"cannot read the server seed's secret: {exc}") from None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warn("{path}: the server seed's secret may be read by others (chmod 600 it)",
                 path=str(path))
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("#")]
    try:
        secret = bytes.fromhex(lines[0]) if len(lines) == 1 else b""
    except ValueError:
        secret = b""
    if len(secret) != SEED_SECRET_SIZE:
        raise KeyFileError(path, f"no server seed secret in it (one line of "
                                 f"{2 * SEED_SECRET_SIZE} hex digits)")
    return secret


def _make(path: Path) -> bytes:
    secret = secrets.token_bytes(SEED_SECRET_SIZE)
    made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = (f"# {path.name}: the Autokey server seed's secret of a farm (docs/scaling.md)\n"
            f"# made {made}; copy it to every instance, keep it private (mode 0600)\n"
            f"{secret.hex()}\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_seed_secret(path)  # another instance made it first
    except OSError as exc:
        raise KeyFileError(path, f"cannot make the server seed's secret: {exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
    log.info("made the farm's server seed secret {path}", path=str(path))
    return secret
