"""The MAC digest the reference computes: digest(key || message), or AES-128-CMAC.

reference: libntp/a_md5encrypt.c (key first, then the packet octets); RFC 8573 for CMAC.
Shared by symmetric keys and Autokey session keys so that one function serves both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

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


def keyed_mac(algorithm: str, key: bytes) -> Callable[[bytes], bytes]:
    """``mac_digest`` with the algorithm and key fixed: one call per MAC on the hot path."""
    if algorithm == "md5":
        md5 = hashlib.md5
        return lambda message: md5(key + message).digest()
    if algorithm == "sha1":
        sha1 = hashlib.sha1
        return lambda message: sha1(key + message).digest()
    if algorithm == "aes128cmac":
        return lambda message: mac_digest(algorithm, key, message)
    raise ValueError(f"unknown MAC algorithm {algorithm!r}")


digests_equal = hmac.compare_digest
"""Constant-time comparison of two digests (CVE-2016-1550): ``hmac.compare_digest`` itself,
so that the hot path pays no extra call."""
