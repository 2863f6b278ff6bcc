"""Autokey for an engine's associations: sessions, the Autokey checks of a received packet,
restarts and status logging.

The dance itself is :class:`~ntpauto.autokey.association.AutokeyAssociation`; key lists and
session-key MACs are :class:`~ntpauto.autokey.session.AutokeySession`.  This module connects
them to the engine's associations: it builds an association's session, runs a received
packet's extension fields through the state machine and its key ID through the autokey
test, returning their verdicts (:class:`PacketVerdicts`) for :mod:`ntpauto.receive` to decide
from, restarts the dance when a proven packet says it must, and hands a symmetric peer's
identity request to the identity worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen
from twisted.logger import Logger

from ntpauto.autokey.association import AutokeyAssociation, group_gate
from ntpauto.autokey.budget import BudgetExceeded
from ntpauto.autokey.fields import Field
from ntpauto.autokey.session import AutokeySession
from ntpauto.autokey.status import Flag, flag_names
from ntpauto.events import AutokeyError, Event, FieldError
from ntpauto.ntp.peer import BCOUNT, BTIME, HMODE_BCLIENT, Association
from ntpauto.verdict import Check, Verdict
from ntpauto.wire.packet import (
    LEAP_UNSYNC,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_SERVER,
    Packet,
)

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["REFETCH_POLLS", "AutokeyGlue", "PacketVerdicts"]

log = Logger()
REFETCH_POLLS = 3
"""Polls without a packet passing the autokey test after which the values are asked for
again (symmetric peers ask with an AUTO request; a broadcast client goes back to its
client-mode volley)."""
ANSWER_DELAY = 1.5
"""Seconds after a symmetric peer's packet that asks us something before we answer it, as
the reference does (its captures: 1.5 s; interop.md 8.3), rather than at our next poll."""
MIN_SPACING = BTIME
"""Seconds at least between two packets of ours to a peer, however fast it asks."""
_NOT_TESTED = Verdict.na(Check.AUTOKEY, "not tested: a field failed")


@frozen
class PacketVerdicts:
    """The Autokey verdicts on one packet: one per extension field processed (in order;
    processing stops at the first failure) and the autokey test's on its key ID."""

    fields: list[Verdict]
    key: Verdict

    @property
    def failure(self) -> Verdict | None:
        """The failed field verdict, if any: the packet then gives no sample and changes no
        on-wire state."""
        return next((v for v in self.fields if v.failed), None)


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

    def mac_verdict(self, assoc: Association, pkt: Packet, mode: int) -> Verdict:
        """The packet's MAC under the association's session key (see
        :meth:`AutokeySession.mac_verdict`)."""
        return assoc.autokey.mac_verdict(pkt, src=assoc.address[0],
                                         dst=self._receiver_address(assoc, mode))

    def _receiver_address(self, assoc: Association, mode: int) -> str:
        """Our side of the peer's session keys: the broadcast address for broadcasts."""
        if mode == MODE_BROADCAST and assoc.broadcast_address:
            return assoc.broadcast_address
        return self.local_for(assoc)

    def check(self, assoc: Association, pkt: Packet, mode: int, now: float, *,
              proven: bool, mac: Verdict, key_first: bool = False) -> PacketVerdicts:
        """The Autokey checks of an association's packet whose MAC verified (``mac``) and
        which passed the on-wire tests (``proven``: it answers our last transmit): its
        extension fields through the state machine, then the autokey test.  Each field
        changes the association only on its own verified verdict; the caller decides from
        the returned verdicts what the packet may do (a sample, on-wire state, a restart).
        With ``key_first`` the autokey test comes first and a packet that fails it is not
        looked at further (its origin no longer proves it: :attr:`OnWire.REPEAT`)."""
        engine = self.engine
        session = assoc.autokey
        state = session.state
        counters = engine.counters
        try:
            fields = session.fields(pkt)
        except FieldError as e:
            # Malformed: dropped, never a reason to restart (security CASES 11).
            counters["autokey_badfield"] += 1
            return PacketVerdicts([Verdict.fail(Check.FIELD, f"malformed field: {e.message}",
                                                Event.LEN)], _NOT_TESTED)
        for f in fields:
            if not group_gate(engine.autokey.host.name, f, state.ident):
                counters["declined"] += 1
                return PacketVerdicts([Verdict.fail(Check.FIELD, "ASSOC of another group",
                                                    Event.CRT)], _NOT_TESTED)
        client = mode == MODE_SERVER
        src, dst = assoc.address[0], self._receiver_address(assoc, mode)
        key = None
        if key_first:
            key = session.key_verdict(pkt, mac, src=src, dst=dst, client=client)
            if not key.verified:
                return PacketVerdicts([], key)
        bait = session.unsolicited(fields) if client else None
        if bait is not None:
            counters["autokey_unsolicited"] += 1
            return PacketVerdicts([bait], _NOT_TESTED)
        before = state.status
        verdicts = state.receive(fields, packet_mode=mode, now=engine.crypto_now(),
                                 proven=proven)
        for verdict in verdicts:
            if verdict.protocol_error:
                counters["autokey_protocol_error"] += 1
            elif verdict.event is not Event.OK:
                counters[f"autokey_{verdict.event.name.lower()}"] += 1
            if verdict.failed:
                log.debug("Autokey field from {host} refused: {verdict}",
                          host=assoc.address[0], verdict=str(verdict))
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
        if any(v.failed for v in verdicts):
            return PacketVerdicts(verdicts, _NOT_TESTED if key is None else key)
        if key is None:
            key = session.key_verdict(pkt, mac, src=src, dst=dst, client=client)
        return PacketVerdicts(verdicts, key)

    def answer_soon(self, assoc: Association, now: float, before: int,
                    peer_leap: int) -> None:
        """A symmetric association took a proven packet (every field verified; our status
        was ``before`` it, the peer's leap indicator in it ``peer_leap``).  Our next packet
        goes out :data:`ANSWER_DELAY` from ``now`` (never within :data:`MIN_SPACING` of our
        last) instead of at the next poll when the packet left a request of the peer's for
        us to answer, or moved our dance on while flags remain dark, as the reference
        answers a queued request (interop.md 8.3); and, up to :data:`~ntpauto.ntp.peer.
        BCOUNT` times a dance, when the peer is unsynchronised and we are not (our answers
        are its samples: it can sign nothing until it synchronises, nor finish our dance).
        A packet nobody proved moves nothing."""
        session = assoc.autokey
        state = session.state
        status = state.status
        if state.queued_request is None and (status == before or state.volley_complete):
            if peer_leap != LEAP_UNSYNC or self.engine.sys.leap == LEAP_UNSYNC \
                    or session.prompt_answers >= BCOUNT:
                return
            session.prompt_answers += 1
        due = max(now + ANSWER_DELAY, assoc.outdate + MIN_SPACING)
        if due < assoc.nextdate:
            assoc.nextdate = due
            self.engine.timers_changed()

    def restart(self, assoc: Association, now: float, reason: str) -> bool:
        """Restart ``assoc``'s dance after a protocol error or crypto-NAK in a packet that
        answers our last transmit, at most once per poll interval (security CASES 19, 43);
        an association is never removed for it.  True when it restarted."""
        state = assoc.autokey.state
        if not state.error_reset_allowed(now, 2.0**assoc.hpoll):
            self.engine.counters["autokey_reset_limited"] += 1
            return False
        log.warn("Autokey association {associd} with {host} restarts its dance: {reason}",
                 associd=assoc.associd, host=assoc.address[0], reason=reason)
        self.reset(assoc, now, reason)
        return True

    def reset(self, assoc: Association, now: float, reason: str) -> None:
        """Restart ``assoc``'s dance: every Autokey value cleared (a refresh, a clock step, a
        proven protocol error)."""
        before = assoc.autokey.state.status
        assoc.autokey.state.reset(at=int(now))
        assoc.autokey.reset()
        self.engine.counters["autokey_resets"] += 1
        self.log_status(assoc, before, reason=reason)

    def on_poll(self, assoc: Association, now: float) -> None:
        """Time-driven Autokey upkeep at each poll of ``assoc`` (never a received packet's
        doing): the refresh every 2**19 s (reference: checked on packet receipt), and the
        autokey values asked for again when no packet passed the autokey test for
        :data:`REFETCH_POLLS` polls (the peer's key list changed and its announcement was
        lost; the reference clears AUTO on the first failing packet, which a forger can
        send)."""
        session = assoc.autokey
        state = session.state
        if state.refresh_due(int(now)):
            self.reset(assoc, now, "refresh")
            return
        if assoc.hmode == MODE_CLIENT or assoc.volley:
            return  # client mode (and a broadcast client's volley) has no key-ID chain
        session.keyed_polls += 1
        if session.keyed_polls > REFETCH_POLLS and state.refetch_auto():
            session.keyed_polls = 0
            self.engine.counters["autokey_refetch"] += 1
            log.info("association {associd} {host}: no packet passed the autokey test for "
                     "{polls} polls; asking for the autokey values again",
                     associd=assoc.associd, host=assoc.address[0], polls=REFETCH_POLLS)

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
