"""The UDP exchange shared by ``ntpauto query`` and ``ntpauto status``: a socket connected to
the server, so that an ICMP port unreachable ends the wait at once, and one wording for each
way the server can fail to answer."""

from __future__ import annotations

import socket

from ntpauto.client.errors import PORT_UNREACHABLE, no_answer


class ExchangeError(Exception):
    """The server could not be asked or did not answer; ``str()`` is the one-line message
    (``HOST port N: what happened``)."""


def connect(host: str, port: int) -> socket.socket:
    """A UDP socket connected to ``host``:``port`` (the first address ``host`` resolves to);
    :class:`ExchangeError` when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ExchangeError(f"cannot resolve {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.connect(address)
    except OSError as exc:
        sock.close()
        raise ExchangeError(failure(host, port, exc)) from None
    return sock


def failure(host: str, port: int, exc: OSError, timeout: float | None = None) -> str:
    """The one-line message for ``exc`` raised while asking ``host``:``port`` (a
    ``TimeoutError`` after ``timeout`` seconds: no answer)."""
    where = f"{host} port {port}"
    if isinstance(exc, TimeoutError):
        return f"{where}: {no_answer(timeout)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: {PORT_UNREACHABLE}"
    return f"{where}: {exc.strerror or exc}"
