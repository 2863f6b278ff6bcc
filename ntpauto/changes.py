"""State changes of a node as ``twisted.logger`` events with stable names, and the observer
API to subscribe to them.

A program that embeds ntpauto wants to know when time becomes usable or stops being so,
without reading the engine's internals or parsing log text.  Each change below is one log
event, emitted in namespace :data:`NAMESPACE` with ``log_source`` the engine, whose field
``ntpauto_event`` holds one of these names (stable: documented in docs/embedding.md and
kept across releases):

==========================  ==================================================================
``association.reachable``   an association answered after being unreachable (or new)
``association.proventic``   an Autokey association proved its server's identity (PROV lit)
``association.lost``        a reachable or proventic association stopped being so, or was
                            demobilised (field ``reason``)
``system.peer``             the system peer changed (``associd`` None: the node lost it)
``system.leap``             the leap indicator the node serves changed between 0, 1 and 2
                            (1 or 2: a leap second is announced for the end of the month)
``autokey.refused``         a packet of an Autokey association was refused: one of its
                            fields failed its check (field ``verdict``), at debug level: a
                            diagnostic, not a state change
==========================  ==================================================================

Association events carry ``associd``, ``address`` and ``port``; ``association.proventic``
also ``peer`` (the server's Autokey name) and ``scheme``; ``system.peer`` carries
``associd``, ``address``, ``port`` and ``stratum`` (None for all when the node lost its
peer); ``system.leap`` carries ``leap``, ``previous`` and ``meaning`` (in words).

The engine calls :class:`ChangeWatcher` after each packet it processes on its full path and
after its timers, so the detection costs a comparison per touched association; the busy
server's first stage (:meth:`Engine.answer_fast`) changes no state and is not watched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger, LogPublisher, globalLogPublisher

from ntpauto.wire.packet import LEAP_UNSYNC

if TYPE_CHECKING:
    from ntpauto.engine import Engine
    from ntpauto.ntp.peer import Association
    from ntpauto.verdict import Verdict

__all__ = [
    "ASSOCIATION_LOST", "ASSOCIATION_PROVENTIC", "ASSOCIATION_REACHABLE", "AUTOKEY_REFUSED",
    "EVENT_NAMES", "NAMESPACE", "SYSTEM_LEAP", "SYSTEM_PEER", "ChangeWatcher",
]

NAMESPACE = "ntpauto.changes"
ASSOCIATION_REACHABLE = "association.reachable"
ASSOCIATION_PROVENTIC = "association.proventic"
ASSOCIATION_LOST = "association.lost"
SYSTEM_PEER = "system.peer"
SYSTEM_LEAP = "system.leap"
AUTOKEY_REFUSED = "autokey.refused"
EVENT_NAMES = frozenset({ASSOCIATION_REACHABLE, ASSOCIATION_PROVENTIC, ASSOCIATION_LOST,
                         SYSTEM_PEER, SYSTEM_LEAP, AUTOKEY_REFUSED})
"""Every stable event name."""

Observer = Callable[[dict[str, Any]], None]


class ChangeWatcher:
    """Detects one engine's state changes and emits them (see the module docstring).

    :attr:`observers` receives every event this engine emits (besides the global log
    publisher); :meth:`observe` subscribes to some of them.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.observers = LogPublisher()
        """This engine's subscribers (:meth:`observe`)."""
        self._log = Logger(namespace=NAMESPACE, source=engine,
                           observer=LogPublisher(globalLogPublisher, self.observers))
        self._seen: dict[int, tuple[bool, bool]] = {}
        """Per association ID: (reachable, proventic) as last reported."""
        self._peer: int | None = None
        self._leap = LEAP_UNSYNC

    def observe(self, observer: Observer, names: Iterable[str] = EVENT_NAMES
                ) -> Callable[[], None]:
        """Call ``observer(event)`` for each event of this engine named in ``names``;
        returns the function that unsubscribes it.  ValueError for an unknown name."""
        wanted = frozenset(names)
        unknown = wanted - EVENT_NAMES
        if unknown:
            raise ValueError(f"unknown event name(s): {', '.join(sorted(unknown))}")

        def filtered(event: dict[str, Any]) -> None:
            if event.get("ntpauto_event") in wanted:
                observer(event)

        self.observers.addObserver(filtered)
        return lambda: self.observers.removeObserver(filtered)

    # -- detection (called by the engine) -------------------------------------------------

    def association(self, assoc: Association | None) -> None:
        """Compare ``assoc`` with what was last reported and emit what changed."""
        if assoc is None:
            return
        reachable = bool(assoc.reach)
        proventic = assoc.autokey is not None and assoc.autokey.state.proventic
        before = self._seen.get(assoc.associd, (False, False))
        if (reachable, proventic) == before:
            return
        self._seen[assoc.associd] = (reachable, proventic)
        where = _where(assoc)
        if reachable and not before[0]:
            self._emit(ASSOCIATION_REACHABLE, "association {associd} with {address} port "
                       "{port} is reachable", **where)
        if proventic and not before[1]:
            state = assoc.autokey.state
            self._emit(ASSOCIATION_PROVENTIC, "association {associd} with {address} port "
                       "{port} is proventic: {peer} proved its identity ({scheme})",
                       peer=state.peer_name, scheme=state.scheme_name, **where)
        if before[0] and not reachable:
            self._lost(where, "unreachable")
        elif before[1] and not proventic:
            self._lost(where, "no longer proventic (the Autokey dance restarted)")

    def removed(self, assoc: Association, reason: str) -> None:
        """``assoc`` was demobilised for ``reason``."""
        before = self._seen.pop(assoc.associd, (False, False))
        if any(before):
            self._lost(_where(assoc), f"demobilised: {reason}")

    def system(self) -> None:
        """Emit a change of the system peer or of the leap indicator served."""
        engine = self.engine
        sys = engine.sys
        if sys.peer != self._peer:
            self._peer = sys.peer
            assoc = engine.associations.get(sys.peer) if sys.peer is not None else None
            if assoc is None:
                self._emit(SYSTEM_PEER, "no system peer", associd=None, address=None,
                           port=None, stratum=None)
            else:
                self._emit(SYSTEM_PEER, "system peer: association {associd} with {address} "
                           "port {port}, stratum {stratum}", stratum=sys.stratum,
                           **_where(assoc))
        leap = sys.leap
        if leap != self._leap:
            previous, self._leap = self._leap, leap
            if leap != LEAP_UNSYNC and (leap or previous != LEAP_UNSYNC):
                self._emit(SYSTEM_LEAP, "leap indicator {leap} ({meaning})", leap=leap,
                           previous=previous, meaning=_LEAP_TEXT[leap])

    def refused(self, assoc: Association, verdict: Verdict) -> None:
        """A packet of ``assoc``'s peer was refused for the failed ``verdict`` (debug
        level)."""
        self._emit(AUTOKEY_REFUSED, "Autokey packet from {address} refused: {verdict}",
                   level="debug", verdict=verdict, **_where(assoc))

    def reset(self) -> None:
        """Forget everything reported (the engine stopped)."""
        self._seen.clear()
        self._peer = None
        self._leap = LEAP_UNSYNC

    def _lost(self, where: dict[str, Any], reason: str) -> None:
        self._emit(ASSOCIATION_LOST, "association {associd} with {address} port {port} "
                   "lost: {reason}", reason=reason, **where)

    def _emit(self, name: str, message: str, level: str = "info", **fields: Any) -> None:
        getattr(self._log, level)(message, ntpauto_event=name, **fields)


_LEAP_TEXT = {0: "no leap second announced", 1: "a leap second will be inserted",
              2: "a leap second will be deleted"}


def _where(assoc: Association) -> dict[str, Any]:
    return {"associd": assoc.associd, "address": assoc.address[0], "port": assoc.address[1]}
