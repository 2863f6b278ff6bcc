"""OpenSSL's PEM encoding and password encryption of private keys, for the keys that
``cryptography`` will not load: the DSA structures of IFF and MV (:mod:`ntpauto.pki.dsa_structure`).

reference: interop.md 6.4, 7.2; OpenSSL crypto/pem/pem_lib.c (PEM_do_header),
crypto/evp/evp_key.c (EVP_BytesToKey); RFC 5958 (EncryptedPrivateKeyInfo), RFC 8018 (PBES2,
PBKDF2).

Two schemes, both CBC with PKCS#7 padding:

* legacy PEM (a traditional ``... PRIVATE KEY`` block with the headers ``Proc-Type:
  4,ENCRYPTED`` and ``DEK-Info: <cipher>,<IV in hex>``): the key is EVP_BytesToKey(MD5,
  password, salt = the IV's first 8 octets, one iteration).  Read: DES-EDE3-CBC (ntp-keygen's
  traditional files, vectors mv-trad) and AES-128/192/256-CBC; written: AES-256-CBC.
* PKCS#8 ``ENCRYPTED PRIVATE KEY``: PBES2 with PBKDF2 (HMAC-SHA1 or HMAC-SHA256) and
  DES-EDE3-CBC (what the reference's ntp-keygen writes) or AES-128/192/256-CBC.  Read only.

Errors are :class:`PemError` (a ``ValueError``) subclasses saying what went wrong, for the
key file reader's messages: :class:`BadBase64`, :class:`PasswordNeeded`,
:class:`WrongPassword` (which also covers an altered ciphertext: CBC cannot tell them apart),
:class:`UnsupportedEncryption`; the base class itself means a corrupt encoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography 42: the decrepit module came with 43
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore

from ntpauto.pki import der

__all__ = [
    "BadBase64",
    "PasswordNeeded",
    "PemError",
    "UnsupportedEncryption",
    "WrongPassword",
    "decode_pem",
    "encode_pem",
    "evp_bytes_to_key",
]

T = TypeVar("T")


class PemError(ValueError):
    """A PEM private key that cannot be decoded; the message says why."""


class BadBase64(PemError):
    """The PEM body is not base64."""


class PasswordNeeded(PemError):
    """The key is encrypted and no password was given."""


class WrongPassword(PemError):
    """Decryption failed: a wrong password, or an altered ciphertext."""


class UnsupportedEncryption(PemError):
    """An encryption scheme, cipher or PRF this module does not implement."""


_CIPHERS: dict[str, tuple[str, int, int, Callable[[bytes], CipherAlgorithm]]] = {
    # DEK-Info name: (OID in PBES2, key octets, block = IV octets, algorithm)
    "DES-EDE3-CBC": ("1.2.840.113549.3.7", 24, 8, TripleDES),
    "AES-128-CBC": ("2.16.840.1.101.3.4.1.2", 16, 16, algorithms.AES),
    "AES-192-CBC": ("2.16.840.1.101.3.4.1.22", 24, 16, algorithms.AES),
    "AES-256-CBC": ("2.16.840.1.101.3.4.1.42", 32, 16, algorithms.AES),
}
_CIPHER_BY_OID = {entry[0]: name for name, entry in _CIPHERS.items()}
_WRITTEN_CIPHER = "AES-256-CBC"
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PRFS = {"1.2.840.113549.2.7": "sha1", "1.2.840.113549.2.9": "sha256"}
_MAX_ITERATIONS = 1 << 24
"""PBKDF2 iterations beyond this are refused (OpenSSL writes 2048; this is seconds of work)."""


def evp_bytes_to_key(password: bytes, salt: bytes, length: int) -> bytes:
    """OpenSSL's EVP_BytesToKey with MD5 and one iteration (the legacy PEM key): D_1 =
    MD5(password || salt), D_i = MD5(D_(i-1) || password || salt), the first ``length``
    octets of D_1 || D_2 || ...."""
    key = block = b""
    while len(key) < length:
        block = hashlib.md5(block + password + salt).digest()
        key += block
    return key[:length]


def _cipher(name: str, key: bytes, iv: bytes) -> Cipher:
    _oid, _key_octets, block, algorithm = _CIPHERS[name]
    if len(iv) != block:
        raise PemError(f"{name} needs an IV of {block} octets")
    return Cipher(algorithm(key), modes.CBC(iv))


def _decrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC decryption and PKCS#7 unpadding; WrongPassword when the padding is wrong."""
    cipher = _cipher(name, key, iv)
    block = len(iv)
    if not data or len(data) % block:
        raise WrongPassword(f"{name} ciphertext of {len(data)} octets")
    decryptor = cipher.decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= block or plain[-pad:] != bytes([pad]) * pad:
        raise WrongPassword("bad decrypt")
    return plain[:-pad]


def _encrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    pad = len(iv) - len(data) % len(iv)
    encryptor = _cipher(name, key, iv).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


# --- legacy PEM encryption -------------------------------------------------------------------


def _split_headers(body: str) -> tuple[dict[str, str], str]:
    """The RFC 1421 headers (``Name: value`` lines up to an empty line) and the base64 text."""
    lines = [line.strip() for line in body.strip().split("\n")]
    if not lines or ":" not in lines[0]:
        return {}, "".join(lines)
    headers = {}
    while lines and lines[0]:
        name, sep, value = lines.pop(0).partition(":")
        if not sep:
            raise PemError("PEM header line without a ':'")
        headers[name.strip()] = value.strip()
    return headers, "".join(lines)


def _legacy_decrypt(headers: dict[str, str], data: bytes, password: bytes) -> bytes:
    if "DEK-Info" not in headers:
        raise PemError("encrypted PEM without a DEK-Info header")
    name, _, iv_hex = headers["DEK-Info"].partition(",")
    if name not in _CIPHERS:
        raise UnsupportedEncryption(f"cipher {name!r} is not supported")
    try:
        iv = bytes.fromhex(iv_hex)
    except ValueError:
        raise PemError("DEK-Info IV is not hex") from None
    if len(iv) < 8:
        raise PemError("DEK-Info IV is shorter than 8 octets")
    key = evp_bytes_to_key(password, iv[:8], _CIPHERS[name][1])
    return _decrypt(name, key, iv, data)


# --- PKCS#8 PBES2 ----------------------------------------------------------------------------


def _pbkdf2(params: bytes | None, password: bytes, key_length: int) -> bytes:
    if params is None:
        raise PemError("PBKDF2 without parameters")
    items = der.children(der.content(params, der.TAG_SEQUENCE))
    if not 2 <= len(items) <= 4:
        raise PemError("PBKDF2 parameters are not salt, count[, key length][, PRF]")
    salt = der.content(items[0], der.TAG_OCTET_STRING)
    iterations = der.decode_integer(items[1])
    prf = "sha1"
    for item in items[2:]:
        if item[0] == der.TAG_INTEGER:
            if der.decode_integer(item) != key_length:
                raise PemError("PBKDF2 key length does not fit the cipher")
            continue
        oid, _ = der.decode_algorithm(item)
        if oid not in _PRFS:
            raise UnsupportedEncryption(f"PBKDF2 PRF {oid} is not supported")
        prf = _PRFS[oid]
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise UnsupportedEncryption(f"PBKDF2 iteration count {iterations} is out of range")
    return hashlib.pbkdf2_hmac(prf, password, salt, iterations, key_length)


def _pkcs8_decrypt(data: bytes, password: bytes) -> bytes:
    """The PrivateKeyInfo DER inside an EncryptedPrivateKeyInfo (PBES2 only)."""
    items = der.children(der.content(data, der.TAG_SEQUENCE))
    if len(items) != 2:
        raise PemError("EncryptedPrivateKeyInfo is not {algorithm, data}")
    scheme, params = der.decode_algorithm(items[0])
    encrypted = der.content(items[1], der.TAG_OCTET_STRING)
    if scheme != _PBES2:
        raise UnsupportedEncryption(f"encryption scheme {scheme} is not supported (PBES2 is)")
    if params is None:
        raise PemError("PBES2 without parameters")
    parts = der.children(der.content(params, der.TAG_SEQUENCE))
    if len(parts) != 2:
        raise PemError("PBES2 parameters are not {key derivation, cipher}")
    kdf, cipher = parts
    kdf_oid, kdf_params = der.decode_algorithm(kdf)
    cipher_oid, iv_tlv = der.decode_algorithm(cipher)
    if kdf_oid != _PBKDF2:
        raise UnsupportedEncryption(f"key derivation {kdf_oid} is not supported (PBKDF2 is)")
    if cipher_oid not in _CIPHER_BY_OID:
        raise UnsupportedEncryption(f"cipher {cipher_oid} is not supported")
    if iv_tlv is None:
        raise PemError("PBES2 cipher without an IV")
    name = _CIPHER_BY_OID[cipher_oid]
    key = _pbkdf2(kdf_params, password, _CIPHERS[name][1])
    return _decrypt(name, key, der.content(iv_tlv, der.TAG_OCTET_STRING), encrypted)


# --- PEM ---------------------------------------------------------------------------------------


def decode_pem(label: str, body: str, password: bytes | None, parse: Callable[[bytes], T]) -> T:
    """``parse`` applied to the DER of the PEM block ``label`` whose text between the BEGIN and
    END lines is ``body``, decrypted with ``password`` when the block is encrypted (``ENCRYPTED
    PRIVATE KEY``, or a ``Proc-Type: 4,ENCRYPTED`` header).  As in OpenSSL, a wrong padding
    after decryption is :class:`WrongPassword`, and a ``ValueError`` of ``parse`` (also after a
    decryption) is :class:`PemError`; other exceptions of ``parse`` pass."""
    headers, text = _split_headers(body)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64("not base64") from None
    encrypted = label == "ENCRYPTED PRIVATE KEY" or headers.get("Proc-Type") == "4,ENCRYPTED"
    if headers and (not encrypted or label == "ENCRYPTED PRIVATE KEY"):
        raise PemError("PEM headers in a key that is not Proc-Type 4,ENCRYPTED")
    if encrypted and password is None:
        raise PasswordNeeded("a password is needed")
    try:
        if label == "ENCRYPTED PRIVATE KEY":
            data = _pkcs8_decrypt(data, password or b"")
        elif encrypted:
            data = _legacy_decrypt(headers, data, password or b"")
        return parse(data)
    except PemError:
        raise
    except ValueError as exc:  # DerError of the PBES2 wrapper or of parse
        raise PemError(str(exc)) from None


def encode_pem(label: str, data: bytes, password: bytes | None = None,
               iv: bytes | None = None) -> bytes:
    """The PEM block ``label`` of the DER ``data`` as OpenSSL writes it (64-column base64,
    ``\\n`` line ends); with ``password`` encrypted in the legacy scheme with AES-256-CBC and a
    random ``iv`` (16 octets; given only by tests), as ``PEM_write_bio_DSAPrivateKey`` does."""
    headers = b""
    if password is not None:
        iv = os.urandom(16) if iv is None else iv
        key = evp_bytes_to_key(password, iv[:8], _CIPHERS[_WRITTEN_CIPHER][1])
        data = _encrypt(_WRITTEN_CIPHER, key, iv, data)
        headers = (f"Proc-Type: 4,ENCRYPTED\nDEK-Info: {_WRITTEN_CIPHER},{iv.hex().upper()}\n\n"
                   .encode())
    text = base64.b64encode(data)
    lines = b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))
    return (f"-----BEGIN {label}-----\n".encode() + headers + lines
            + f"-----END {label}-----\n".encode())
