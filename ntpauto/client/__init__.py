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
    NtsFailed,
    PortUnreachable,
    QueryFailed,
    QueryTimeout,
    ServerUnsynchronised,
)

__all__ = [
    "AutokeyFailed", "AutokeyKeys", "AutokeyProof", "CertificateExpired", "CertificateLink",
    "CertificateUntrusted", "CryptoNAK", "IdentityFailed", "KissOfDeath", "NtsFailed",
    "NtsProof", "PortUnreachable", "QueryFailed", "QueryTimeout", "Sample",
    "ServerUnsynchronised", "query",
]

_LAZY = {"query": "oneshot", "query_outcome": "oneshot", "AutokeyKeys": "oneshot",
         "Outcome": "oneshot", "AutokeyProof": "sample", "CertificateLink": "sample",
         "NtsProof": "sample",
         "Sample": "sample"}
"""Names imported on first use, by module: the engine and the certificate code behind them
are not needed by the commands that only share the error wording."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ntpauto.client' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"ntpauto.client.{module}"), name)
