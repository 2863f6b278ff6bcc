"""The ``ntpkey_*`` files of ntp-keygen: read, write, and find them in the keys directory.

reference: interop.md 6.4 (storage of identity parameters), 7.1 (names and links), 7.2
(format), 7.4 (how ntpd finds files); util/ntp-keygen.c fheader(), ntpd/ntp_crypto.c
crypto_key(), crypto_cert().

Format: line 1 ``# ntpkey_<type>_<owner>.<filestamp>`` (the filestamp is the decimal number
after the last '.'), line 2 ``# <ctime>``, an empty line, then PEM blocks:

* private keys: encrypted PKCS#8 (``ENCRYPTED PRIVATE KEY``; the reference writes PBES2 with
  des-ede3-cbc), unencrypted PKCS#8 (``PRIVATE KEY``, the ``-e`` exports) or traditional
  ``RSA/DSA PRIVATE KEY``, possibly encrypted (``Proc-Type: 4,ENCRYPTED`` + ``DEK-Info``);
* certificates (``CERTIFICATE``);
* several keys in one file (the MV trusted-authority file ``MVta``);
* the symmetric keys file (``MD5key``, linked as ``ntp.keys``) is text, not PEM.

Keys are loaded by ``cryptography``, except the DSA "cuckoo" structures of IFF and MV
(the kinds in :data:`DSA_STRUCTURE_KINDS`), whose values are not a valid DSA key and which
``cryptography`` 51 refuses to load: :mod:`ntpauto.pki.dsa_structure` decodes those (traditional
and PKCS#8, plain or encrypted) into a :class:`~ntpauto.pki.dsa_structure.DSAStructure`, and
writes them (:func:`dsa_traditional_pem`).  They keep their public value only in traditional
PEM (PKCS#8 has no field for it and the public value is recomputed as g^x on load).  GQ files
hold an RSA "cuckoo" key whose fields are not a valid RSA key, loaded with
``unsafe_skip_rsa_key_validation=True``; every other RSA key is validated, so tampering is
detected.

Links: ntp-keygen makes symbolic links such as ``ntpkey_host_alice`` -> the file.  A link
checked out without symlink support (a small file holding the target's name, as in the
reference vectors) is followed too.

Written files are created with mode 0600 (the reference: umask 027, i.e. 0640).  Encrypted
output is PKCS#8 with ``cryptography``'s BestAvailableEncryption (PBES2, AES-256-CBC), and
traditional PEM with ``DEK-Info: AES-256-CBC`` for the DSA structures, both of which the
reference's OpenSSL reads; the reference itself writes des-ede3-cbc.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, TextIO

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ntpauto.pki import der, dsa_structure, pem_encryption

__all__ = [
    "DSA_STRUCTURE_KINDS",
    "GQ_KINDS",
    "HostFiles",
    "IdentityParams",
    "KeyFile",
    "KeyFileError",
    "KeygenContext",
    "dsa_traditional_pem",
    "lost_public_value",
    "file_header",
    "find_client_params",
    "find_host_files",
    "private_key_pem",
    "read_key_file",
    "resolve_link",
    "rsa_cuckoo_pem",
    "write_key_file",
]

GQ_KINDS = frozenset({"gqkey", "gqpar"})
"""Kinds whose RSA structure is a GQ cuckoo key (loaded without RSA validation)."""

DSA_STRUCTURE_KINDS = frozenset({"iffkey", "iffpar", "mvta", "mvkey", "mvpar"})
"""Kinds whose keys are DSA cuckoo structures (IFF and MV), loaded as
:class:`~ntpauto.pki.dsa_structure.DSAStructure` without ``cryptography``."""

_KINDS = {
    "rsahost": "host",
    "rsasign": "sign",
    "dsasign": "sign",
    "iffkey": "iffkey",
    "gqkey": "gqkey",
    "mvta": "mvta",
    "mvkey": "mvkey",
    "iffpar": "iffpar",
    "gqpar": "gqpar",
    "mvpar": "mvpar",
    "md5key": "symkeys",
}

_NAME_RE = re.compile(r"ntpkey_([^_\s]+)_(\S+)\.(\d+)$")
_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL
)
_LINK_RE = re.compile(r"ntpkey_[A-Za-z0-9@._+-]+")
_MAX_LINK_HOPS = 8
_STUB_MAX = 256


class KeyFileError(Exception):
    """A key file is missing or unusable; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{os.fspath(path)}: {message}")
        self.path = os.fspath(path)
        self.message = message


@attrs.frozen
class KeyFile:
    """What one ntp-keygen file holds.

    ``type_name`` is the type as in the file name (``RSAhost``, ``RSA-MD5cert``, ``GQkey``,
    ``iffpar``, ...), ``kind`` its role (``host``, ``sign``, ``cert``, ``iffkey``, ``gqkey``,
    ``mvta``, ``mvkey``, ``iffpar``, ``gqpar``, ``mvpar``, ``symkeys``).  Private keys are
    kept out of ``repr``.  ``locked`` is True when encrypted keys were not decrypted (no
    password given and ``allow_locked``)."""

    path: Path
    name: str | None
    type_name: str | None
    kind: str | None
    owner: str | None
    filestamp: int | None
    ctime: str | None
    private_keys: tuple[Any, ...] = attrs.field(repr=False, eq=False)
    certificates: tuple[x509.Certificate, ...] = attrs.field(repr=False, eq=False)
    pem_labels: tuple[str, ...]
    encrypted: bool
    locked: bool = False
    symmetric_keys: tuple[tuple[int, str], ...] = ()
    """(key ID, type) of each symmetric key; the secrets are not kept."""

    @property
    def private_key(self) -> Any | None:
        """The first private key, if any."""
        return self.private_keys[0] if self.private_keys else None

    @property
    def certificate(self) -> x509.Certificate | None:
        """The first certificate, if any."""
        return self.certificates[0] if self.certificates else None

    @property
    def traditional(self) -> bool:
        """True when a key is in traditional (non-PKCS#8) PEM."""
        return any(label in ("RSA PRIVATE KEY", "DSA PRIVATE KEY") for label in self.pem_labels)


_LOST_PUBLIC_VALUE = {
    "iffpar": "IFF client parameters in PKCS#8 (as the reference's ntp-keygen writes them) "
              "have lost the public value v, so no IFF proof checked with them can succeed "
              "(in ntpd either); run 'ntpauto keygen -e' on the trusted host's IFF key for a "
              "client file that works with both ntpd and ntpauto",
    "mvpar": "an MV client key in PKCS#8 (as the reference's ntp-keygen writes it) has lost "
             "its public value xhat, so no MV proof checked with it can succeed (in ntpd "
             "either); make the group's MV keys with 'ntpauto keygen -V N' on the trusted "
             "host and export client keys with 'ntpauto keygen -e' for files that work with "
             "both ntpd and ntpauto",
}


def lost_public_value(kind: str | None, traditional: bool = False) -> str | None:
    """Why an IFF or MV client file (``kind`` ``iffpar`` or ``mvpar``) that is not in
    ``traditional`` PEM can never verify a proof, with the remedy, in one line (interop.md
    6.4: PKCS#8 has no field for the DSA public value); ``None`` for any other file."""
    if kind not in _LOST_PUBLIC_VALUE or traditional:
        return None
    return _LOST_PUBLIC_VALUE[kind]


def _kind(type_name: str) -> str:
    lowered = type_name.lower()
    if lowered.endswith("cert"):
        return "cert"
    return _KINDS.get(lowered, lowered)


def resolve_link(path: str | os.PathLike[str]) -> Path:
    """The file a ``ntpkey_*`` link names: symbolic links are followed by the OS; a small
    regular file that only holds the name of a sibling ``ntpkey_*`` file is followed too.
    ``FileNotFoundError`` when the link is dangling or absent."""
    current = Path(path)
    for _ in range(_MAX_LINK_HOPS):
        if not current.exists():
            raise FileNotFoundError(os.fspath(current))
        if current.is_symlink():
            current = current.parent / os.readlink(current)
            continue
        if current.stat().st_size > _STUB_MAX:
            return current
        text = current.read_bytes().strip()
        try:
            name = text.decode("ascii")
        except UnicodeDecodeError:
            return current
        if not _LINK_RE.fullmatch(name) or name == current.name:
            return current
        target = current.parent / name
        if not target.exists():
            raise FileNotFoundError(os.fspath(target))
        current = target
    return current


def _password_bytes(password: str | bytes | None) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    return password.encode("utf-8")


def _parse_header(text: str) -> tuple[str | None, str | None]:
    lines = text.split("\n", 2)
    name = lines[0][1:].strip() if lines and lines[0].startswith("#") else None
    ctime = None
    if name is not None and len(lines) > 1 and lines[1].startswith("#"):
        ctime = lines[1][1:].strip() or None
    return name, ctime


def _load_structure(label: str, body: str, password: bytes | None,
                    path: Path) -> dsa_structure.DSAStructure:
    try:
        return dsa_structure.load_pem(label, body, password)
    except pem_encryption.PasswordNeeded:
        raise KeyFileError(path, f"{label} is encrypted: a password is needed") from None
    except pem_encryption.WrongPassword:
        raise KeyFileError(path, "wrong password (or the encrypted key was altered)") from None
    except pem_encryption.BadBase64:
        raise KeyFileError(path, f"{label} is not valid base64 PEM (tampered?)") from None
    except pem_encryption.UnsupportedEncryption as exc:
        raise KeyFileError(path, f"unsupported encryption in {label}: {exc}") from None
    except pem_encryption.PemError:  # in cryptography's words, as for the other keys
        raise KeyFileError(path, f"{label} is corrupt (tampered or truncated): Could not "
                                 "deserialize key data") from None


def _load_key(block: bytes, label: str, body: str, password: bytes | None, kind: str | None,
              path: Path) -> Any:
    if kind in DSA_STRUCTURE_KINDS:
        try:
            return _load_structure(label, body, password, path)
        except dsa_structure.NotDSAStructure:
            pass  # another algorithm: cryptography loads it, the identity reader refuses it
    skip = kind in GQ_KINDS
    try:
        return serialization.load_pem_private_key(
            block, password, unsafe_skip_rsa_key_validation=skip
        )
    except TypeError as exc:
        if "not given" in str(exc):
            raise KeyFileError(path, f"{label} is encrypted: a password is needed") from None
        raise KeyFileError(path, f"cannot load {label}: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise KeyFileError(path, f"unsupported key type in {label}: {exc}") from None
    except ValueError as exc:
        message = str(exc)
        if "password" in message.lower() or "decrypt" in message.lower():
            raise KeyFileError(path, "wrong password (or the encrypted key was altered)") from None
        if "PEM" in message:
            raise KeyFileError(path, f"{label} is not valid base64 PEM (tampered?)") from None
        raise KeyFileError(path, f"{label} is corrupt (tampered or truncated): "
                                 f"{message.split('. ')[0]}") from None


def read_key_file(
    path: str | os.PathLike[str],
    password: str | bytes | None = None,
    *,
    require_filestamp: bool = True,
    allow_locked: bool = False,
    kind_hint: str | None = None,
) -> KeyFile:
    """Read an ntp-keygen file (following ``ntpkey_*`` links).

    ``password`` decrypts encrypted keys and is ignored for unencrypted ones.  With
    ``require_filestamp`` (ntpd's rule) the first line must name the file with its filestamp.
    With ``allow_locked`` an encrypted file read without a password gives ``locked=True``
    instead of an error.  ``kind_hint`` is the kind to load the keys as when the first line
    does not name one (an identity reader's, so that a DSA structure is read as one).
    Raises :class:`KeyFileError` naming the file: missing, not PEM, truncated, wrong
    password, tampered, no filestamp."""
    given = Path(path)
    try:
        real = resolve_link(given)
        raw = real.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(given, f"no such file ({exc})") from None
    except OSError as exc:
        raise KeyFileError(given, f"cannot read: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", "surrogateescape")
    name, ctime = _parse_header(text)
    match = _NAME_RE.search(name) if name else None
    filestamp = int(name.rsplit(".", 1)[1]) if name and re.search(r"\.\d+$", name) else None
    if filestamp is not None and filestamp > 0xFFFFFFFF:
        filestamp = None
    if require_filestamp and filestamp is None:
        raise KeyFileError(real, "no filestamp: the first line must be '# ntpkey_<type>_"
                                 "<owner>.<filestamp>'")
    type_name = match.group(1) if match else None
    owner = match.group(2) if match else None
    kind = _kind(type_name) if type_name else None
    pwd = _password_bytes(password)

    blocks = list(_PEM_RE.finditer(text))
    begins = text.count("-----BEGIN ")
    if not blocks:
        if begins:
            raise KeyFileError(real, "truncated: PEM block without an -----END line")
        if kind == "symkeys" or (kind is None and _looks_like_keys(text)):
            return _symmetric(real, name, type_name, kind, owner, filestamp, ctime, text)
        raise KeyFileError(real, "not a PEM file (no -----BEGIN line)")
    if begins != len(blocks):
        raise KeyFileError(real, "truncated: a PEM block has no -----END line")

    keys: list[Any] = []
    certs: list[x509.Certificate] = []
    labels: list[str] = []
    encrypted = False
    locked = False
    for block in blocks:
        label, end_label = block.group(1), block.group(3)
        if label != end_label:
            raise KeyFileError(real, f"PEM block BEGIN {label} ends with END {end_label}")
        labels.append(label)
        data = block.group(0).encode("utf-8", "surrogateescape") + b"\n"
        if label == "CERTIFICATE":
            try:
                certs.append(x509.load_pem_x509_certificate(data))
            except (ValueError, TypeError, x509.InvalidVersion) as exc:
                raise KeyFileError(real, f"corrupt certificate (tampered or truncated): "
                                         f"{str(exc).split('. ')[0]}") from None
            continue
        if not label.endswith("PRIVATE KEY"):
            raise KeyFileError(real, f"unexpected PEM block {label}")
        is_encrypted = label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in \
            block.group(2)
        encrypted = encrypted or is_encrypted
        if is_encrypted and pwd is None and allow_locked:
            locked = True
            continue
        keys.append(_load_key(data, label, block.group(2), pwd if is_encrypted else None,
                              kind or kind_hint, real))
    return KeyFile(
        path=real, name=name, type_name=type_name, kind=kind, owner=owner,
        filestamp=filestamp, ctime=ctime, private_keys=tuple(keys),
        certificates=tuple(certs), pem_labels=tuple(labels), encrypted=encrypted,
        locked=locked,
    )


def _looks_like_keys(text: str) -> bool:
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    lines = [fields for fields in lines if fields]
    return bool(lines) and all(fields[0].isdigit() and len(fields) >= 3 for fields in lines)


def _symmetric(path: Path, name: str | None, type_name: str | None, kind: str | None,
               owner: str | None, filestamp: int | None, ctime: str | None,
               text: str) -> KeyFile:
    from ntpauto.auth import keys as symkeys

    try:
        parsed = symkeys.parse_keys(text, os.fspath(path))
    except symkeys.KeyFileError as exc:
        raise KeyFileError(path, f"bad symmetric keys file: {exc}") from None
    return KeyFile(
        path=path, name=name, type_name=type_name, kind="symkeys", owner=owner,
        filestamp=filestamp, ctime=ctime, private_keys=(), certificates=(), pem_labels=(),
        encrypted=False,
        symmetric_keys=tuple((k.keyid, k.algorithm) for k in parsed.values()),
    )


# --- writing ----------------------------------------------------------------------------


def file_header(name: str, when: float | None = None) -> bytes:
    """The two header lines (and the empty third line) ntp-keygen writes: ``# <name>`` and
    ``# <ctime>`` (local time, as the reference's ctime())."""
    stamp = time.ctime(time.time() if when is None else when)
    return f"# {name}\n# {stamp}\n\n".encode()


def private_key_pem(key: Any, password: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``password`` (BestAvailableEncryption) if given."""
    pwd = _password_bytes(password)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(pwd) if pwd else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _write_private(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def _replace_link(link: Path, target: str) -> None:
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)


def write_key_file(
    directory: str | os.PathLike[str],
    type_name: str,
    owner: str,
    filestamp: int,
    pem_bytes: bytes | str,
    link_name: str | None = None,
    host: str | None = None,
    *,
    when: float | None = None,
) -> Path:
    """Write ``ntpkey_<type_name>_<owner>.<filestamp>`` (mode 0600, header lines, then
    ``pem_bytes``) in ``directory`` and point the link ``ntpkey_<link_name>_<host>`` at it,
    replacing an existing link; ``link_name="ntp.keys"`` makes that literal link (the
    symmetric keys).  Returns the file's path."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", type_name):
        raise ValueError(f"bad key file type {type_name!r}")
    for part in (owner, host or "x"):
        if not part or "/" in part or part.startswith(".") or any(c.isspace() for c in part):
            raise ValueError(f"bad owner or host name {part!r}")
    folder = Path(directory)
    name = f"ntpkey_{type_name}_{owner}.{int(filestamp)}"
    body = pem_bytes.encode() if isinstance(pem_bytes, str) else bytes(pem_bytes)
    path = folder / name
    _write_private(path, file_header(name, when) + body)
    if link_name is not None:
        if link_name == "ntp.keys":
            link = folder / "ntp.keys"
        else:
            if host is None:
                raise ValueError("a link needs the host name")
            link = folder / f"ntpkey_{link_name}_{host}"
        _replace_link(link, name)
    return path


def dsa_traditional_pem(p: int, q: int, g: int, pub: int, priv: int,
                        password: str | bytes | None = None) -> bytes:
    """Traditional ``DSA PRIVATE KEY`` PEM of a DSA "cuckoo" structure, keeping ``pub`` as
    given (needed for IFF/MV, interop.md 6.4), encrypted with ``password`` when given
    (``DEK-Info: AES-256-CBC``, which the reference's OpenSSL reads).  Written by
    :mod:`ntpauto.pki.dsa_structure`: ``cryptography`` refuses these values."""
    structure = dsa_structure.DSAStructure(p, q, g, pub, priv)
    return dsa_structure.dump_pem(structure, _password_bytes(password) or None)


def rsa_cuckoo_pem(n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int, iqmp: int,
                   password: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM of an RSA "cuckoo" structure (GQ keys, interop.md 6.2), whose fields
    ``RSAPrivateNumbers`` refuses: the PKCS#1 DER is written with :mod:`ntpauto.pki.der`,
    loaded without RSA validation and serialized as PKCS#8 by ``cryptography``."""
    key = serialization.load_der_private_key(der.encode_integers(0, n, e, d, p, q, dmp1, dmq1,
                                                                 iqmp),
                                             None, unsafe_skip_rsa_key_validation=True)
    return private_key_pem(key, password)


# --- finding files ----------------------------------------------------------------------


@attrs.frozen
class HostFiles:
    """The files ntpd opens for a host (interop.md 7.4): link paths in the keys
    directory; optional ones are ``None`` when absent."""

    keysdir: Path
    host: str
    group: str
    host_key: Path
    certificate: Path
    sign_key: Path | None = None
    iff_key: Path | None = None
    gq_key: Path | None = None
    mv_key: Path | None = None


@attrs.frozen
class IdentityParams:
    """Client parameter files for an ``ident`` group (``None`` when absent)."""

    keysdir: Path
    group: str
    iff_params: Path | None = None
    gq_params: Path | None = None
    mv_params: Path | None = None


def _present(path: Path) -> Path | None:
    try:
        resolve_link(path)
    except FileNotFoundError:
        return None
    return path


def find_host_files(keysdir: str | os.PathLike[str], host: str,
                    group: str | None = None) -> HostFiles:
    """Locate ``ntpkey_host_H`` (required), ``ntpkey_sign_H`` (optional), ``ntpkey_cert_H``
    (required) and the identity server keys ``ntpkey_{iff,gq,mv}key_G`` (optional) where
    H = ``host`` and G = ``group`` or H.  :class:`KeyFileError` names a missing required file."""
    folder = Path(keysdir)
    group = group or host
    host_key = folder / f"ntpkey_host_{host}"
    if _present(host_key) is None:
        raise KeyFileError(host_key, f"host key not found (make one with 'ntpauto keygen -H "
                                     f"-s {host}' in {folder})")
    cert = folder / f"ntpkey_cert_{host}"
    if _present(cert) is None:
        raise KeyFileError(cert, f"host certificate not found (make one with 'ntpauto keygen "
                                 f"-s {host}' in {folder})")
    return HostFiles(
        keysdir=folder, host=host, group=group, host_key=host_key, certificate=cert,
        sign_key=_present(folder / f"ntpkey_sign_{host}"),
        iff_key=_present(folder / f"ntpkey_iffkey_{group}"),
        gq_key=_present(folder / f"ntpkey_gqkey_{group}"),
        mv_key=_present(folder / f"ntpkey_mvkey_{group}"),
    )


def find_client_params(keysdir: str | os.PathLike[str], group: str) -> IdentityParams:
    """Locate the client parameter files ``ntpkey_{iff,gq,mv}par_<group>`` (the ``ident``
    option of a server line)."""
    folder = Path(keysdir)
    return IdentityParams(
        keysdir=folder, group=group,
        iff_params=_present(folder / f"ntpkey_iffpar_{group}"),
        gq_params=_present(folder / f"ntpkey_gqpar_{group}"),
        mv_params=_present(folder / f"ntpkey_mvpar_{group}"),
    )


@attrs.frozen
class KeygenContext:
    """What an identity generator (-I/-G/-V) gets: where and for whom to write."""

    keysdir: Path
    host: str
    group: str
    filestamp: int
    password: bytes = attrs.field(repr=False)
    modulus: int | None
    now: float
    stderr: TextIO = attrs.field(repr=False)
