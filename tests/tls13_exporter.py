"""An independent TLS 1.3 exporter (RFC 8446 sections 7.1 and 7.5), to check the keys NTS
gets from OpenSSL's: HKDF-Expand-Label, Derive-Secret and TLS-Exporter over the connection's
exporter secret (which OpenSSL's key log shows as ``EXPORTER_SECRET``)."""

from __future__ import annotations

import hashlib
import hmac
import struct


def hkdf_extract(salt: bytes, ikm: bytes, hash_name: str) -> bytes:
    return hmac.new(salt, ikm, hash_name).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int, hash_name: str) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int,
                      hash_name: str) -> bytes:
    """RFC 8446 section 7.1."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    return hkdf_expand(secret, info, length, hash_name)


def derive_secret(secret: bytes, label: bytes, transcript_hash: bytes, hash_name: str) -> bytes:
    return hkdf_expand_label(secret, label, transcript_hash, len(transcript_hash), hash_name)


def tls_exporter(exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """RFC 8446 section 7.5; the hash is the cipher suite's, told by the secret's length."""
    hash_name = {32: "sha256", 48: "sha384"}[len(exporter_secret)]
    empty = hashlib.new(hash_name).digest()
    derived = derive_secret(exporter_secret, label, empty, hash_name)
    return hkdf_expand_label(derived, b"exporter", hashlib.new(hash_name, context).digest(),
                             length, hash_name)
