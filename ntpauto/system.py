"""The system process of an NTP node: selection, cluster, combine and the clock update.

RFC 5905 section 11 and appendix A.5.5: the associations with usable samples become
candidates (TEST10-TEST13 decide which), :func:`ntpauto.ntp.select.select` picks the
truechimers and the system peer, and the clock update sets the system variables (and, with
``enable ntp``, drives the discipline).  A step clears every sample and every Autokey value
(RFC 5905 clear_all(); reference: all crypto state is purged after a step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from attrs import frozen
from twisted.logger import Logger

from ntpauto.ntp.constants import MAXDIST, MINDISP, PHI
from ntpauto.ntp.discipline import DisciplineAction
from ntpauto.ntp.peer import MAX_STRATUM, MODE_NAMES, Association, Flash, refid_for
from ntpauto.ntp.select import Candidate, root_distance, select
from ntpauto.wire.packet import LEAP_UNSYNC, MODE_BROADCAST
from ntpauto.wire.timestamps import unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["MODE_NAMES", "SystemProcess", "SystemVariables"]

log = Logger()


@frozen
class SystemVariables:
    """RFC 5905 section 11 system variables as last set by the clock update."""

    leap: int = LEAP_UNSYNC
    stratum: int = MAX_STRATUM
    refid: bytes = b"INIT"
    reftime: int = 0
    root_delay: float = 0.0
    root_dispersion: float = 0.0
    offset: float = 0.0
    jitter: float = 0.0
    peer: int | None = None
    epoch: float = 0.0
    """Reactor time of the last clock update (root dispersion grows from here)."""


class SystemProcess:
    """Selection and the clock update of one engine (RFC 5905 A.5.5)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._last_update_epoch: float | None = None

    def candidates(self, now: float) -> list[Candidate]:
        """The associations whose samples may be used, with TEST10-TEST13 recorded in each
        association's ``peer_flash``; an Autokey association that is not proventic is
        never a candidate."""
        out = []
        for a in self.engine.associations.values():
            if not a.has_sample or a.noselect or a.hmode == MODE_BROADCAST:
                continue
            if a.autokey is not None and not a.autokey.state.proventic:
                a.peer_flash = Flash.TEST9  # not proventic: never used for time
                continue
            if a.is_refclock:
                stratum, leap, rdelay, rdisp = a.refclock_stratum, 0, 0.0, 0.0
            else:
                stratum, leap, rdelay, rdisp = a.stratum, a.leap, a.root_delay, \
                    a.root_dispersion
            candidate = Candidate(
                key=a.associd, offset=a.offset, delay=a.delay, dispersion=a.dispersion,
                jitter=a.jitter, root_delay=rdelay, root_dispersion=rdisp, stratum=stratum,
                leap=leap, epoch=max(a.epoch, a.filter.updated), prefer=a.prefer,
                reach=a.reach, poll=a.hpoll)
            a.peer_flash = peer_tests(a, candidate, now)
            if not a.peer_flash:
                out.append(candidate)
        return out

    def clock_select(self, now: float) -> None:
        """Selection, cluster and combine, then the clock update (RFC 5905 A.5.5)."""
        engine = self.engine
        selection = select(self.candidates(now), now, current_peer=engine.sys.peer)
        if selection.system_peer is None:
            if engine.sys.peer is not None:
                log.info("no system peer: {reason}",
                         reason="no majority" if selection.truechimers else "no candidates")
                engine.sys = attrs.evolve(engine.sys, peer=None)
            return
        peer = engine.associations[selection.system_peer.key]
        if self._last_update_epoch is not None and peer.epoch <= self._last_update_epoch:
            return
        self._last_update_epoch = peer.epoch
        discipline = engine.discipline
        if discipline is not None:
            action = discipline.update(selection.offset, peer.jitter, now,
                                       minpoll=peer.minpoll, maxpoll=peer.maxpoll)
            if action == DisciplineAction.STEP:
                self.clock_stepped(selection.offset, now)
                return
            if action == DisciplineAction.PANIC:
                log.error("offset {offset:.3f} s exceeds the panic threshold; not setting "
                          "the clock", offset=selection.offset)
                engine.counters["panic"] += 1
                return
            if action == DisciplineAction.IGNORE:
                return
        self._clock_update(peer, selection.offset, selection.jitter, now)

    def _clock_update(self, peer: Association, offset: float, jitter: float,
                      now: float) -> None:
        engine = self.engine
        if peer.is_refclock:
            stratum, refid, leap = peer.refclock_stratum + 1, peer.refclock_refid, 0
            root_delay, root_disp = 0.0, 0.0
        else:
            stratum, refid, leap = peer.stratum + 1, refid_for(peer.address[0]), peer.leap
            root_delay, root_disp = peer.root_delay, peer.root_dispersion
        dispersion = (peer.jitter**2 + jitter**2) ** 0.5 + max(
            peer.dispersion + PHI * (now - peer.epoch) + abs(offset), MINDISP)
        if engine.sys.peer != peer.associd:
            log.info("system peer {host} (association {associd}), stratum {stratum}",
                     host=peer.address[0], associd=peer.associd, stratum=stratum)
        first_sync = engine.sys.leap == LEAP_UNSYNC
        engine.sys = SystemVariables(
            leap=leap, stratum=min(stratum, MAX_STRATUM), refid=refid,
            reftime=unix_to_ntp(engine.clock.now()), root_delay=root_delay + peer.delay,
            root_dispersion=root_disp + dispersion, offset=offset, jitter=jitter,
            peer=peer.associd, epoch=now)
        if first_sync and engine.autokey is not None:
            # reference: the host signs its public values when it first synchronises.
            engine.autokey.host.signature_update(engine.crypto_now())

    def clock_stepped(self, offset: float, now: float = 0.0) -> None:
        """After a step every sample is stale (RFC 5905 clear_all())."""
        engine = self.engine
        log.warn("clock stepped by {offset:.6f} s", offset=offset)
        engine.counters["steps"] += 1
        for assoc in list(engine.associations.values()):
            assoc.clear_samples()
            assoc.org = assoc.rec = assoc.xmt = assoc.answered = 0
            assoc.unanswered.clear()
            if assoc.autokey is not None and assoc.hmode != MODE_BROADCAST:
                # A step purges every cryptographic value too (interop.md 8.5).
                engine.glue.reset(assoc, now, "clock step")
        engine.sys = SystemVariables(refid=b"STEP")
        self._last_update_epoch = None

    def wire_stratum(self) -> int:
        """The stratum we send: 0 (unspecified) while unsynchronised."""
        stratum = self.engine.sys.stratum
        return 0 if stratum >= MAX_STRATUM else stratum

    def root_dispersion(self, now: float) -> float:
        """The root dispersion at ``now``: it grows at PHI from the last clock update."""
        sys = self.engine.sys
        if sys.leap == LEAP_UNSYNC:
            return sys.root_dispersion
        return sys.root_dispersion + PHI * max(now - sys.epoch, 0.0)


def peer_tests(a: Association, c: Candidate, now: float) -> Flash:
    """TEST10-TEST13 (RFC 5905 A.5.5.4 fit())."""
    flash = Flash(0)
    if c.leap == LEAP_UNSYNC or c.stratum >= MAX_STRATUM:
        flash |= Flash.TEST10
    if root_distance(c, now) > MAXDIST + PHI * 2.0**a.hpoll:
        flash |= Flash.TEST11
    if not a.is_refclock and a.local_refid and a.refid == a.local_refid \
            and a.stratum > 1:
        flash |= Flash.TEST12
    if a.reach == 0:
        flash |= Flash.TEST13
    return flash
