"""Authenticated time for programs: one query, as a Deferred.

::

    from ntpauto.client import AutokeyKeys, query

    d = query(reactor, "ntp.example.org", autokey=AutokeyKeys("/etc/ntpauto", ident="alice"))
    d.addCallback(lambda sample: print(sample.offset, sample.autokey.trusted_host))

:func:`query` fires with a :class:`Sample` or fails with a :class:`QueryFailed` subclass
(:mod:`ntpauto.client.errors`).  Every reply is checked by the daemon's own receive path
(:mod:`ntpauto.client.oneshot`).  See docs/embedding.md.
"""

from __future__ import annotations

from typing import Any

from ntpauto.client.errors import (
    AutokeyFailed,
    CertificateExpired,
    CertificateUntrusted,
    CryptoNAK,
    IdentityFailed,
    KissOfDeath,
    PortUnreachable,
    QueryFailed,
    QueryTimeout,
    ServerUnsynchronised,
)
from ntpauto.client.sample import AutokeyProof, CertificateLink, Sample

__all__ = [
    "AutokeyFailed", "AutokeyKeys", "AutokeyProof", "CertificateExpired", "CertificateLink",
    "CertificateUntrusted", "CryptoNAK", "IdentityFailed", "KissOfDeath", "PortUnreachable",
    "QueryFailed", "QueryTimeout", "Sample", "ServerUnsynchronised", "query",
]

_LAZY = {"query", "query_outcome", "AutokeyKeys", "Outcome"}
"""Names from :mod:`ntpauto.client.oneshot`, imported on first use: the engine behind them
is not needed by the commands that only share the error wording."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ntpauto.client import oneshot

        return getattr(oneshot, name)
    raise AttributeError(f"module 'ntpauto.client' has no attribute {name!r}")
