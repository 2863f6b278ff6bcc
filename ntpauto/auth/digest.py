"""The MAC digest the reference computes: digest(key || message), or AES-128-CMAC.

reference: libntp/a_md5encrypt.c (key first, then the packet octets); RFC 8573 for CMAC.
Shared by symmetric keys and Autokey session keys so that one function serves both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

DIGEST_SIZES = {"md5": 16, "sha1": 20, "aes128cmac": 16}
"""Digest octets per algorithm; the MAC on the wire is the 4-octet key ID plus these."""


def _builtin_md5() -> Callable[[bytes], Any]:
    """CPython's own MD5 (the private module ``_md5``) where the build has it, else
    ``hashlib.md5`` (OpenSSL's): the same digests, only slower."""
    try:
        from _md5 import md5
    except ImportError:  # a build without it (e.g. some FIPS builds): OpenSSL's
        return hashlib.md5
    return md5


md5 = _builtin_md5()
"""The MD5 constructor for MACs and session keys.

Why a private module: CPython's built-in MD5 hashes NTP's short messages (24 to 2120 octets)
faster than ``hashlib.md5``, OpenSSL's EVP interface, whose per-call set-up dominates at these
sizes, and the difference shows in what the server sustains.  Measured (CPython 3.11.7, OpenSSL
3.0.19, 2 CPUs; issue 15): a 64-octet MAC takes 0.30 us against 0.49 us
(``benchmarks/autokey.py``: MAC verify of a parsed packet 1.34 us against 1.88 us), and
``benchmarks/server_throughput.py`` (3 runs of 3 rounds, medians) gives ``ntp-md5`` 0.80 of
the echo server against 0.695 with hashlib (server CPU 7.2 against 8.1 us a reply) and
``ntp-autokey`` 0.66 against 0.55 (8.55 against 10.05 us): with hashlib the Autokey server
misses its 65 % goal.  Where ``_md5`` is absent, hashlib's MD5 gives the same digests."""
HASHES: dict[str, Callable[[bytes], Any]] = {"md5": md5, "sha1": hashlib.sha1}
"""The hash behind each digest-based MAC (a MAC is H(key || message))."""


def mac_digest(algorithm: str, key: bytes, message: bytes) -> bytes:
    """The digest part of a MAC over ``message`` with ``key`` (``algorithm`` lower-case)."""
    hash_ = HASHES.get(algorithm)
    if hash_ is not None:
        return hash_(key + message).digest()
    if algorithm == "aes128cmac":
        signer = cmac.CMAC(algorithms.AES128(key))
        signer.update(message)
        return signer.finalize()
    raise ValueError(f"unknown MAC algorithm {algorithm!r}")


def keyed_mac(algorithm: str, key: bytes) -> Callable[[bytes], bytes]:
    """``mac_digest`` with the algorithm and key fixed: one call per MAC on the hot path."""
    hash_ = HASHES.get(algorithm)
    if hash_ is not None:
        return lambda message: hash_(key + message).digest()
    if algorithm == "aes128cmac":
        return lambda message: mac_digest(algorithm, key, message)
    raise ValueError(f"unknown MAC algorithm {algorithm!r}")


digests_equal = hmac.compare_digest
"""Constant-time comparison of two digests (CVE-2016-1550): ``hmac.compare_digest`` itself,
so that the hot path pays no extra call."""
