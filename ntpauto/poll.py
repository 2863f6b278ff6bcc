"""The poll process of an NTP node: when each association sends, and what.

RFC 5905 appendix A.5.7 (poll(): reach register, bursts, unreachable handling, poll
adjustment) and A.5.8 (peer_xmit()); the LOCAL reference clock's poll; the broadcast server's
transmissions; the broadcast client's silent polls.  Autokey associations add their
extension fields and session-key MAC to what they send
(:meth:`ntpauto.autokey.session.AutokeySession.outgoing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ntpauto.ntp.constants import MAXDISP, NSTAGE
from ntpauto.ntp.peer import (
    BCOUNT,
    BTIME,
    HMODE_BCLIENT,
    RESYNC_POLLS,
    UNREACH,
    UNREACH_EPHEMERAL,
    VOLLEY,
    Association,
)
from ntpauto.wire.packet import (
    LEAP_UNSYNC,
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_PASSIVE,
    Datagram,
    Header,
)
from ntpauto.wire.timestamps import to_short, unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["PollProcess"]

log = Logger()


class PollProcess:
    """Polls and transmissions of one engine's associations (RFC 5905 A.5.7, A.5.8)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def poll(self, assoc: Association, now: float) -> list[Datagram]:
        """RFC 5905 A.5.7 poll(): reach register, bursts, unreachable handling, transmit."""
        engine = self.engine
        if assoc.is_refclock:
            return self._poll_refclock(assoc, now)
        if assoc.autokey is not None and assoc.hmode != MODE_BROADCAST:
            engine.glue.on_poll(assoc, now)
        if assoc.hmode == MODE_BROADCAST:
            assoc.nextdate = now + 2.0**assoc.hpoll
            if engine.sys.leap == LEAP_UNSYNC:
                return []
            return [self.transmit(assoc, now)]
        if assoc.hmode == HMODE_BCLIENT and not assoc.volley:
            return self._poll_bclient(assoc, now)
        if assoc.burst > 0:
            assoc.burst -= 1
            assoc.nextdate = now + (BTIME if assoc.burst else poll_interval(assoc))
            return self._send(assoc, now)
        if assoc.hmode in (MODE_ACTIVE, MODE_PASSIVE) and assoc.org and (
                assoc.exchanged_at is None
                or now - assoc.exchanged_at > RESYNC_POLLS * poll_interval(assoc)):
            assoc.org = assoc.rec = 0
            engine.counters["resync"] += 1
        assoc.reach = (assoc.reach << 1) & 0xFF
        if assoc.has_sample and not assoc.reach & 0x07:
            # Three polls unanswered: the filter ages towards MAXDISP.
            assoc.filter.add(0.0, MAXDISP, MAXDISP, now)
            assoc.dispersion = assoc.filter.dispersion
        if assoc.reach == 0:
            assoc.unreach += 1
            if assoc.unreach == 1 and engine.sys.peer == assoc.associd:
                # The system peer went unreachable (TEST13): select again now rather than
                # at the next sample of some other source.
                engine.system.clock_select(now)
            if assoc.ephemeral and assoc.unreach > UNREACH_EPHEMERAL:
                engine.demobilise(assoc, "unreachable")
                return []
            if assoc.iburst and assoc.unreach == 1:
                assoc.burst = BCOUNT - 1
            if assoc.unreach > UNREACH:
                assoc.hpoll = min(assoc.hpoll + 1, assoc.maxpoll)
            if assoc.volley:
                assoc.volley -= 1
                assoc.burst = 0
                if not assoc.volley:
                    engine.demobilise(assoc, "no reply to the calibration volley")
                    return []
        else:
            if assoc.burst_option:
                assoc.burst = BCOUNT - 1
            self._adjust_poll(assoc)
        if assoc.volley or assoc.burst > 0:
            assoc.nextdate = now + BTIME
        else:
            assoc.nextdate = now + poll_interval(assoc)
        if _unproven(assoc) and not assoc.owed:
            return []
        return self._send(assoc, now)

    def _send(self, assoc: Association, now: float) -> list[Datagram]:
        """The poll's request, unless an NTS association has no keys or cookie to send it
        with (it asks for an NTS-KE exchange instead: :mod:`ntpauto.nts.glue`)."""
        if assoc.nts is not None and not self.engine.nts.ready(assoc, now):
            return []
        return [self.transmit(assoc, now)]

    def _adjust_poll(self, assoc: Association) -> None:
        """Follow the discipline's poll interval when it runs; otherwise lengthen the poll
        by one step after every eight consecutive answered polls, up to maxpoll."""
        engine = self.engine
        if engine.discipline is not None and engine.sys.peer is not None:
            assoc.hpoll = min(max(engine.discipline.poll, assoc.minpoll), assoc.maxpoll)
            return
        if assoc.reach == 0xFF:
            assoc.good_polls += 1
            if assoc.good_polls >= 8 and assoc.hpoll < assoc.maxpoll:
                assoc.hpoll += 1
                assoc.good_polls = 0
        else:
            assoc.good_polls = 0

    def _poll_refclock(self, assoc: Association, now: float) -> list[Datagram]:
        """The LOCAL driver: the host's own clock is the reference (offset zero)."""
        engine = self.engine
        assoc.reach = ((assoc.reach << 1) | 1) & 0xFF
        assoc.leap, assoc.stratum = 0, assoc.refclock_stratum
        assoc.nextdate = now + 2.0**assoc.hpoll
        # Like a hardware driver, the local clock fills the whole filter at each poll, so a
        # primary server is usable from its first poll rather than after eight.
        for _ in range(NSTAGE):
            assoc.filter.add(0.0, 0.0, 2.0**engine.precision, now)
        engine.counters["samples"] += 1
        assoc.offset, assoc.delay = assoc.filter.offset, assoc.filter.delay
        assoc.dispersion, assoc.jitter = assoc.filter.dispersion, assoc.filter.jitter
        assoc.epoch, assoc.has_sample = now, True
        engine.system.clock_select(now)
        return []

    def _poll_bclient(self, assoc: Association, now: float) -> list[Datagram]:
        if assoc.autokey is not None and not assoc.autokey.state.volley_complete:
            # Autokey values to fetch again (AutokeyGlue.on_poll): back to the client-mode
            # volley until every flag is lit again (RFC 5906 section 12.1).
            assoc.volley = VOLLEY
            return self.poll(assoc, now)
        assoc.reach = (assoc.reach << 1) & 0xFF
        assoc.nextdate = now + 2.0**assoc.hpoll
        if assoc.reach == 0:
            assoc.unreach += 1
            if assoc.unreach > UNREACH_EPHEMERAL:
                self.engine.demobilise(assoc, "no broadcasts")
        return []

    def transmit(self, assoc: Association, now: float) -> Datagram:
        """RFC 5905 A.5.8 peer_xmit()."""
        engine = self.engine
        sys = engine.sys
        xmt = unix_to_ntp(engine.clock.now())
        if xmt == assoc.xmt:
            xmt += 1
        mode = MODE_CLIENT if assoc.hmode == HMODE_BCLIENT else assoc.hmode
        if mode == MODE_BROADCAST:
            origin = receive = 0
        else:
            origin, receive = assoc.org, assoc.rec
        header = Header(
            sys.leap, assoc.version, mode, engine.system.wire_stratum(), assoc.hpoll,
            engine.precision, to_short(sys.root_delay),
            to_short(engine.system.root_dispersion(now)), sys.refid, sys.reftime, origin,
            receive, xmt)
        data = header.encode()
        if assoc.autokey is not None:
            unproven = _unproven(assoc)
            data = assoc.autokey.outgoing(
                data, src=engine.glue.local_for(assoc), dst=assoc.address[0],
                now=engine.crypto_now(), synced=sys.leap != LEAP_UNSYNC, poll=assoc.hpoll,
                peer_leap=assoc.leap, associd=assoc.associd,
                sign=mode in _SENDS_AUTOKEY_VALUES and not unproven,
                own_request=mode != MODE_PASSIVE or not unproven,
                limit=assoc.owed if unproven else None)
            assoc.owed = 0
        elif assoc.nts is not None:
            data = assoc.nts.request(data)
        elif assoc.keyid is not None:
            data += engine.keys.sign(assoc.keyid, data)
        assoc.xmt = xmt
        if mode in (MODE_ACTIVE, MODE_PASSIVE):
            assoc.unanswered = [*assoc.unanswered[1 - BCOUNT:], xmt]
        assoc.outdate = now
        engine.counters["sent"] += 1
        return Datagram(data, assoc.address)


def poll_interval(assoc: Association) -> float:
    """Seconds to the association's next poll: its host poll, or in symmetric modes the
    smaller of its and the peer's, never under minpoll."""
    poll = assoc.hpoll
    if assoc.ppoll and assoc.hmode in (MODE_ACTIVE, MODE_PASSIVE):
        poll = max(min(poll, assoc.ppoll), assoc.minpoll)
    return 2.0**poll


_SENDS_AUTOKEY_VALUES = (MODE_ACTIVE, MODE_PASSIVE, MODE_BROADCAST)
"""The modes whose signed autokey values a peer ever receives (the others need none)."""


def _unproven(assoc: Association) -> bool:
    """An ephemeral Autokey association no packet has proven yet (mobilised by a packet
    anyone could have forged): it signs nothing, a passive one only answers, and it sends
    only after hearing a packet since its last (:attr:`Association.owed`)."""
    return assoc.autokey is not None and assoc.ephemeral and not assoc.reach
