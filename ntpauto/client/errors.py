"""The ways a query can fail, as exceptions: a program decides by type, never by message.

Every one is a :class:`QueryFailed` naming the server (``host``, ``port``); ``str()`` is a
one-line message in the wording ``ntpauto query`` prints.  Autokey failures carry the
:class:`~ntpauto.verdict.Verdict` that decided them when there is one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PORT_UNREACHABLE", "AutokeyFailed", "CertificateExpired", "CertificateUntrusted", "CryptoNAK",
    "IdentityFailed", "KissOfDeath", "NtsFailed", "PortUnreachable", "QueryFailed",
    "QueryTimeout",
    "ServerUnsynchronised", "no_answer",
]


PORT_UNREACHABLE = "port unreachable (nothing listens on that port)"
"""The wording of an ICMP port unreachable (``ntpauto query`` and ``status`` use it too)."""


def no_answer(timeout: float | None = None) -> str:
    """The wording of a server that did not answer (within ``timeout`` seconds)."""
    within = f" within {timeout:g} s" if timeout is not None else ""
    return f"no answer{within} (no server there, or it ignores this address)"


class QueryFailed(Exception):
    """The query gave no time sample; ``str()`` says why in one line."""

    def __init__(self, host: str, port: int, message: str) -> None:
        super().__init__(f"{host} port {port}: {message}")
        self.host = host
        self.port = port
        self.message = message


class QueryTimeout(QueryFailed):
    """No usable answer within the timeout (``seconds``); ``stage`` is how far the query
    got (``"time"`` for a plain query, else the Autokey step it was waiting on)."""

    def __init__(self, host: str, port: int, message: str, *, seconds: float,
                 stage: str) -> None:
        super().__init__(host, port, message)
        self.seconds = seconds
        self.stage = stage


class PortUnreachable(QueryFailed):
    """The server's host said nothing listens on that port (ICMP port unreachable)."""


class CryptoNAK(QueryFailed):
    """The server answered our request with a crypto-NAK: it cannot verify our MAC (it does
    not hold our symmetric key, or it refuses our Autokey session key)."""


class KissOfDeath(QueryFailed):
    """The server sent a kiss-o'-death; ``code`` is its kiss code (``RATE``, ``DENY``,
    ``RSTR``, ...; RFC 5905 section 7.4)."""

    def __init__(self, host: str, port: int, code: str) -> None:
        super().__init__(host, port, f"kiss-o'-death {code}")
        self.code = code


class ServerUnsynchronised(QueryFailed):
    """The server says its own clock is not synchronised (leap indicator 3): it has no time
    to give, and an Autokey server signs nothing until it has."""


class AutokeyFailed(QueryFailed):
    """The Autokey dance failed; ``verdict`` is the failed check, when one decided it."""

    def __init__(self, host: str, port: int, message: str, verdict: Any = None) -> None:
        super().__init__(host, port, message)
        self.verdict = verdict


class IdentityFailed(AutokeyFailed):
    """The server did not prove its identity: its proof does not verify, or we hold no
    client parameters for the scheme it offers."""


class CertificateExpired(AutokeyFailed):
    """A certificate of the server's trail is outside its validity window at the server's
    (proven) time: expired, or not valid yet."""


class CertificateUntrusted(AutokeyFailed):
    """The server's certificate trail does not verify or does not end at a trusted
    certificate of our group."""


class NtsFailed(QueryFailed):
    """NTS gave no keys: the NTS-KE exchange failed (connection, TLS, the server's
    certificate or name, ALPN, the server's response); the message says which."""
