"""The MAC digest the reference computes: digest(key || message), or AES-128-CMAC.

reference: libntp/a_md5encrypt.c (key first, then the packet octets); RFC 8573 for CMAC.
Shared by symmetric keys and Autokey session keys so that one function serves both.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

DIGEST_SIZES = {"md5": 16, "sha1": 20, "aes128cmac": 16}
"""Digest octets per algorithm; the MAC on the wire is the 4-octet key ID plus these."""


def mac_digest(algorithm: str, key: bytes, message: bytes) -> bytes:
    """The digest part of a MAC over ``message`` with ``key`` (``algorithm`` lower-case)."""
    if algorithm == "md5":
        return hashlib.md5(key + message).digest()
    if algorithm == "sha1":
        return hashlib.sha1(key + message).digest()
    if algorithm == "aes128cmac":
        signer = cmac.CMAC(algorithms.AES128(key))
        signer.update(message)
        return signer.finalize()
    raise ValueError(f"unknown MAC algorithm {algorithm!r}")


def digests_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests (CVE-2016-1550)."""
    return hmac.compare_digest(a, b)
