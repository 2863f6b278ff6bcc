"""Autokey for an engine's associations: sessions, the Autokey checks of a received packet,
resets and status logging.

The dance itself is :class:`~ntpauto.autokey.association.AutokeyAssociation`; key lists and
session-key MACs are :class:`~ntpauto.autokey.session.AutokeySession`.  This module connects
them to the engine's associations: it builds an association's session, runs a received
packet's extension fields through the state machine and the autokey test, restarts the dance
when it must, and hands a symmetric peer's identity request to the identity worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ntpauto.autokey.association import AutokeyAssociation, ProtocolError, group_gate
from ntpauto.autokey.budget import BudgetExceeded
from ntpauto.autokey.fields import Field
from ntpauto.autokey.session import AutokeySession
from ntpauto.autokey.status import Flag, flag_names
from ntpauto.events import AutokeyError, FieldError
from ntpauto.ntp.peer import BCOUNT, BTIME, HMODE_BCLIENT, Association, Flash
from ntpauto.wire.packet import MODE_BROADCAST, MODE_CLIENT, MODE_SERVER, Packet

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["AutokeyGlue"]

log = Logger()


class AutokeyGlue:
    """The Autokey side of one engine's associations (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def local_for(self, assoc: Association) -> str:
        """Our address as the peer sees it (the source of our session keys)."""
        return assoc.local_address or self.engine.local_address or "0.0.0.0"

    def session(self, assoc: Association, *, ident: str | None = None,
                broadcast: bool = False) -> AutokeySession:
        """A new Autokey session for ``assoc`` (``ident``: its identity group)."""
        node = self.engine.autokey
        hmode = MODE_CLIENT if assoc.hmode in (MODE_CLIENT, HMODE_BCLIENT) else assoc.hmode
        state = AutokeyAssociation(node.host, associd=assoc.associd, hmode=hmode,
                                   responder=node.responder, ident=ident,
                                   broadcast=broadcast, rng=node.host.rng)
        return AutokeySession(node, state, broadcast_server=assoc.hmode == MODE_BROADCAST)

    def auto_for(self, associd: int) -> Field | None:
        """The signed autokey values of our broadcast association ``associd`` (a broadcast
        client's volley asks the unicast server for them)."""
        assoc = self.engine.associations.get(associd)
        if assoc is not None and assoc.autokey is not None and assoc.hmode == MODE_BROADCAST:
            return assoc.autokey.auto_field
        return None

    def receive(self, assoc: Association, pkt: Packet, mode: int, now: float) -> bool:
        """Autokey processing of an authenticated association packet: the fields through
        the state machine, then the autokey test.  False: drop the packet (no sample)."""
        engine = self.engine
        session = assoc.autokey
        state = session.state
        counters = engine.counters
        if state.refresh_due(int(now)):
            self.reset(assoc, now, "refresh")
        try:
            fields = session.fields(pkt)
        except FieldError as e:
            counters["autokey_badfield"] += 1
            log.debug("malformed Autokey field from {host}: {error}", host=assoc.address[0],
                      error=e)
            return False
        before = state.status
        if mode == MODE_SERVER and not session.solicited(fields):
            counters["autokey_unsolicited"] += 1
            return False
        for f in fields:
            if not group_gate(engine.autokey.host.name, f, state.ident):
                counters["declined"] += 1
                return False
        try:
            events = state.receive(fields, packet_mode=mode, now=engine.crypto_now())
        except ProtocolError as e:
            counters["autokey_protocol_error"] += 1
            # At most one protocol-error reset per poll interval (CASES 19, 43).
            if not state.error_reset_allowed(now, 2.0**assoc.hpoll):
                counters["autokey_reset_limited"] += 1
                return False
            log.warn("Autokey protocol error from {host}: {error}; association reset",
                     host=assoc.address[0], error=e)
            self.reset(assoc, now, str(e))
            return False
        for event in events:
            if event:
                counters[f"autokey_{event.name.lower()}"] += 1
        if engine.offload is not None:
            self._offload_peer_identity(assoc, now)
        self.log_status(assoc, before)
        if state.proventic and not before & Flag.PROV:
            # Samples taken before PROV may now be selected.
            engine.system.clock_select(now)
        if state.status & Flag.COOK and not before & Flag.COOK \
                and assoc.iburst and assoc.hmode == MODE_CLIENT:
            # Only packets without fields give client-mode samples: with iburst, fill the
            # clock filter as soon as the cookie makes them possible.
            assoc.burst = BCOUNT - 1
            assoc.nextdate = min(assoc.nextdate, now + BTIME)
            engine.timers_changed()
        signed = any(f.signature for f in fields) and not any(events)
        dst = assoc.broadcast_address if mode == MODE_BROADCAST else None
        if not session.sequence_ok(pkt, src=assoc.address[0],
                                   dst=dst or self.local_for(assoc),
                                   client=mode == MODE_SERVER, signed=signed):
            counters["autokey_sequence"] += 1
            assoc.flash = Flash.TEST8
            return False
        return True

    def reset(self, assoc: Association, now: float, reason: str) -> None:
        """Restart ``assoc``'s dance (all Autokey state cleared); an ephemeral association
        is demobilised instead."""
        engine = self.engine
        before = assoc.autokey.state.status
        assoc.autokey.state.reset(at=int(now))
        assoc.autokey.reset()
        engine.counters["autokey_resets"] += 1
        self.log_status(assoc, before, reason=reason)
        if assoc.ephemeral:
            engine.demobilise(assoc, f"Autokey reset: {reason}")

    def log_status(self, assoc: Association, before: int, reason: str = "") -> None:
        """Log ``assoc``'s Autokey status word when it changed from ``before``."""
        status = assoc.autokey.state.status
        if status != before:
            log.info("association {associd} {host} Autokey status {status:#x} {flags}"
                     "{reason}", associd=assoc.associd, host=assoc.address[0], status=status,
                     flags=" ".join(flag_names(status)),
                     reason=f" ({reason})" if reason else "", autokey_flags=flag_names(status))

    def _offload_peer_identity(self, assoc: Association, now: float) -> None:
        """Hand a symmetric peer's queued identity request to the worker, once, if it passes
        the checks the in-process answer makes first; over budget, our next packet carries no
        response (as in process)."""
        engine = self.engine
        state = assoc.autokey.state
        request = state.queued_request
        if request is None or request.code not in engine.offload_codes or request.response \
                or state.offloading is request:
            return
        try:
            engine.autokey.responder.begin_identity(request, assoc.address[0])
        except BudgetExceeded:
            state.identity_computed(request, None)
            return
        except AutokeyError:
            return  # answered in process: the error response
        job = engine.offload.submit(now, request=request, source=assoc.address,
                                    associd=assoc.associd)
        if job is None:
            engine.counters["autokey_offload_busy"] += 1
            return
        state.offload_started(request)
        engine.counters["autokey_offloaded"] += 1
