"""Ending the daemon's child processes (the identity worker, the server workers): their
input is closed, which ends them, and one still there after a while is killed."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

__all__ = ["end_child", "kill_child"]


def end_child(transport: Any, reactor: Any, waiting: list[defer.Deferred[None]],
              kill_after: float) -> defer.Deferred[None]:
    """Close the input of the child behind ``transport`` and kill it when it has not ended
    ``kill_after`` seconds later.  The Deferred returned is appended to ``waiting``, which
    the child's ``processEnded`` fires."""
    ended: defer.Deferred[None] = defer.Deferred()
    waiting.append(ended)
    transport.closeStdin()
    killer = reactor.callLater(kill_after, kill_child, transport)
    ended.addBoth(lambda result: (killer.active() and killer.cancel(), result)[1])
    return ended


def kill_child(transport: Any) -> None:
    """SIGKILL the child behind ``transport`` (nothing when it is gone already)."""
    try:
        transport.signalProcess("KILL")
    except Exception:  # noqa: BLE001 - already gone
        pass
