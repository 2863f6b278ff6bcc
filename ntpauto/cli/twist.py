"""Run a Deferred to its result from a command: the global reactor is iterated until the
Deferred fires, never ``run()``, so that a command may be called more than once in one
process (the tests call ``ntpauto.cli.main`` many times) and anything else the process
runs on that reactor (a server under test) keeps running meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

IDLE_WAIT = 0.1
"""Longest wait for I/O in one iteration when no timer is due sooner."""


def wait_for(start: Callable[[Any], defer.Deferred[Any]]) -> Any:
    """``start(reactor)``'s result, once its Deferred fired (a failure is raised)."""
    from twisted.internet import reactor

    box: list[Any] = []
    defer.maybeDeferred(start, reactor).addBoth(box.append)
    while not box:
        due = reactor.timeout()
        reactor.iterate(IDLE_WAIT if due is None else min(due, IDLE_WAIT))
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result
