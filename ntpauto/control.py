"""The local status socket: a UNIX-domain stream socket that answers every connection with
the engine's status as one JSON document, for ``ntpauto status``.

Read-only and local (mode 0600: only the daemon's user may connect).  The ntpq-compatible
mode 6 protocol is the standard remote interface; this socket is the zero-configuration one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import Factory, Protocol


def default_status_socket(port: int) -> str:
    """Where the daemon listening on ``port`` puts its status socket (per user)."""
    return os.path.join(tempfile.gettempdir(), f"ntpauto-{os.getuid()}-{port}.sock")


class StatusProtocol(Protocol):
    """Writes the status and closes."""

    def connectionMade(self) -> None:
        try:
            document = self.factory.status()
            data = json.dumps(document, default=str).encode() + b"\n"
        except Exception as e:  # report, never crash the daemon
            data = json.dumps({"error": str(e)}).encode() + b"\n"
        self.transport.write(data)
        self.transport.loseConnection()


class StatusFactory(Factory):
    """Serves ``status()`` (the engine's) to every connection."""

    protocol = StatusProtocol

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status
