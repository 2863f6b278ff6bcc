"""An association's receive path: mobilisation, the on-wire tests and the time sample.

RFC 5905 sections 8-9 and appendix A.5.1: a packet for an association passes the mode
check, authentication (symmetric key, or Autokey through :mod:`ntpauto.autokey.glue`),
TEST3 (zero transmit), TEST1 (duplicate), TEST2 (origin), kiss codes, TEST6 (unsynchronised)
and TEST7 (header distance) before its offset and delay enter the clock filter.  Symmetric
active packets with no association mobilise a passive one, and broadcasts a broadcast client
(ntpd AM_NEWPASS, AM_NEWBCL), within :data:`MAX_EPHEMERAL`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ntpauto.autokey.association import ProtocolError, group_gate
from ntpauto.autokey.fields import decode as decode_field
from ntpauto.events import FieldError
from ntpauto.ntp.constants import MAXDISP, PHI
from ntpauto.ntp.peer import (
    HMODE_BCLIENT,
    MAX_STRATUM,
    VOLLEY,
    Association,
    Flash,
    is_wildcard,
    refid_or_empty,
)
from ntpauto.server import AUTH_AUTOKEY, AUTH_ERROR, AUTH_NAK, AUTH_OK
from ntpauto.wire.packet import (
    KISS_DENY,
    KISS_RATE,
    KISS_RSTR,
    LEAP_UNSYNC,
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_PASSIVE,
    MODE_SERVER,
    Datagram,
    Header,
    Packet,
)
from ntpauto.wire.timestamps import from_short, ts_diff

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["MAX_POLL", "MIN_POLL", "AssociationReceiver", "clamp_poll"]

MAX_POLL = 17
MIN_POLL = 3

log = Logger()


class AssociationReceiver:
    """The receive path of one engine's associations (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ mobilisation

    def new_passive(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                    flags: frozenset[str], auth: int, keyid: int | None,
                    local: tuple[str, int] | None = None) -> list[Datagram]:
        """Symmetric active packet with no association: mobilise a passive one, or answer
        statelessly in passive mode when the packet may not mobilise (ntpd AM_NEWPASS)."""
        engine = self.engine
        if "noserve" in flags:
            engine.counters["restricted"] += 1
            return []
        if auth == AUTH_AUTOKEY and engine.autokey is not None:
            return self._new_autokey_passive(pkt, source, rx, now, flags, keyid, local)
        if auth in (AUTH_ERROR, AUTH_NAK, AUTH_AUTOKEY):
            auth = AUTH_ERROR if auth == AUTH_AUTOKEY else auth
            return engine.server.serve(pkt, source, rx, now, flags, auth, keyid, MODE_PASSIVE)
        if ("nopeer" in flags or (engine.require_auth and auth != AUTH_OK)
                or not engine.room_for_ephemeral()):
            engine.counters["declined"] += 1
            return engine.server.serve(pkt, source, rx, now, flags, auth, keyid, MODE_PASSIVE)
        poll = clamp_poll(pkt.header.poll)
        assoc = engine.mobilise(Association(
            associd=engine.new_associd(), address=source, hmode=MODE_PASSIVE,
            version=pkt.header.version, minpoll=poll, maxpoll=max(poll, 10), hpoll=poll,
            keyid=keyid if auth == AUTH_OK else None, ephemeral=True, nextdate=now + 1.0))
        return self.process(assoc, pkt, MODE_ACTIVE, rx, now, flags, auth, keyid)

    def _new_autokey_passive(self, pkt: Packet, source: tuple[str, int], rx: int,
                             now: float, flags: frozenset[str], keyid: int | None,
                             local: tuple[str, int] | None) -> list[Datagram]:
        """Mobilise a passive Autokey association, only for a packet whose MAC verifies under
        its session key (the peer's ASSOC request, cookie 0: REFERENCE-NOTES 8.3)."""
        engine = self.engine
        if "nopeer" in flags or not engine.room_for_ephemeral():
            engine.counters["declined"] += 1
            return []
        poll = clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=engine.new_associd(), address=source, hmode=MODE_PASSIVE,
            version=pkt.header.version, minpoll=poll, maxpoll=max(poll, 10), hpoll=poll,
            ephemeral=True, nextdate=now + 1.0)
        if local is not None and not is_wildcard(local[0]):
            assoc.local_address = local[0]
            assoc.local_refid = refid_or_empty(local[0])
        assoc.autokey = engine.glue.session(assoc, ident=engine.config.ident)
        if not assoc.autokey.authenticate(pkt, src=source[0],
                                          dst=engine.glue.local_for(assoc)):
            engine.counters["badauth"] += 1
            return []
        engine.mobilise(assoc)
        return self.process(assoc, pkt, MODE_ACTIVE, rx, now, flags, AUTH_AUTOKEY, keyid)

    def new_bclient(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                    flags: frozenset[str], auth: int, keyid: int | None,
                    local: tuple[str, int] | None = None) -> list[Datagram]:
        """A broadcast from a new server: mobilise a broadcast client association that first
        calibrates the delay with a client-mode volley (ntpd FLAG_BC_VOL)."""
        engine = self.engine
        counters = engine.counters
        if not engine.broadcast_client:
            counters["declined"] += 1
            return []
        if auth == AUTH_AUTOKEY and engine.autokey is not None:
            return self._new_autokey_bclient(pkt, source, now, flags, local)
        if auth in (AUTH_ERROR, AUTH_NAK, AUTH_AUTOKEY):
            counters["badauth"] += 1
            return []
        if (engine.require_auth and auth != AUTH_OK) or "nopeer" in flags \
                or not engine.room_for_ephemeral():
            counters["declined"] += 1
            return []
        poll = clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=engine.new_associd(), address=source, hmode=HMODE_BCLIENT,
            version=pkt.header.version, minpoll=poll, maxpoll=poll, hpoll=poll,
            keyid=keyid if auth == AUTH_OK else None, ephemeral=True)
        if engine.config.broadcast_delay is not None:
            assoc.caldelay = engine.config.broadcast_delay
            assoc.nextdate = now + 2.0**poll
            engine.mobilise(assoc)
            return self.process(assoc, pkt, MODE_BROADCAST, rx, now, flags, auth, keyid)
        assoc.volley = VOLLEY
        assoc.nextdate = now
        engine.mobilise(assoc)
        assoc.org = pkt.header.transmit
        return engine.poller.poll(assoc, now)

    def _new_autokey_bclient(self, pkt: Packet, source: tuple[str, int], now: float,
                             flags: frozenset[str],
                             local: tuple[str, int] | None) -> list[Datagram]:
        """An Autokey broadcast from a new server mobilises a broadcast client only when its
        (last) field is an ASSOC response and its MAC verifies (REFERENCE-NOTES 8.4); the
        client then runs the client dance unicast before it listens."""
        engine = self.engine
        counters = engine.counters
        if engine.config.broadcast_delay is not None or "nopeer" in flags \
                or not engine.room_for_ephemeral():
            counters["declined"] += 1
            return []
        try:
            fields = [decode_field(f.data) for f in pkt.fields]
        except FieldError:
            counters["autokey_badfield"] += 1
            return []
        if not fields or fields[-1].code != 1 or not fields[-1].response:
            counters["bcast_not_assoc"] += 1
            return []
        poll = clamp_poll(pkt.header.poll)
        assoc = Association(
            associd=engine.new_associd(), address=source, hmode=HMODE_BCLIENT,
            version=pkt.header.version, minpoll=poll, maxpoll=poll, hpoll=poll,
            ephemeral=True)
        assoc.broadcast_address = local[0] if local is not None else None
        assoc.autokey = engine.glue.session(assoc, ident=engine.config.ident, broadcast=True)
        if not assoc.autokey.authenticate(pkt, src=source[0],
                                          dst=assoc.broadcast_address or "0.0.0.0"):
            counters["badauth"] += 1
            return []
        if not group_gate(engine.autokey.host.name, fields[-1], engine.config.ident):
            counters["declined"] += 1
            return []
        try:
            assoc.autokey.state.receive(fields[-1:], packet_mode=MODE_BROADCAST,
                                        now=engine.crypto_now())
        except ProtocolError:
            counters["autokey_protocol_error"] += 1
            return []
        assoc.volley = VOLLEY
        assoc.nextdate = now
        assoc.org = pkt.header.transmit
        engine.mobilise(assoc)
        engine.glue.log_status(assoc, 0)
        return engine.poller.poll(assoc, now)

    # ------------------------------------------------------------------ receive

    def process(self, assoc: Association, pkt: Packet, mode: int, rx: int, now: float,
                flags: frozenset[str], auth: int, keyid: int | None) -> list[Datagram]:
        """An association's packet: RFC 5905 receive() tests, then packet()."""
        engine = self.engine
        counters = engine.counters
        hmode = assoc.hmode
        if not (
            (hmode == MODE_CLIENT and mode == MODE_SERVER)
            or (hmode == MODE_ACTIVE and mode in (MODE_ACTIVE, MODE_PASSIVE))
            or (hmode == MODE_PASSIVE and mode == MODE_ACTIVE)
            or (hmode == HMODE_BCLIENT and (mode == MODE_BROADCAST
                                             or (mode == MODE_SERVER and assoc.volley)))
        ):
            counters["badmode"] += 1
            return []
        header = pkt.header
        if auth == AUTH_NAK:
            # A crypto-NAK counts only when it answers our latest packet (CVE-2016-1547).
            if header.origin != assoc.xmt or assoc.xmt == 0:
                counters["bogusorg"] += 1
                return []
            counters["cryptonak"] += 1
            assoc.flash = Flash.TEST9
            if assoc.autokey is not None:
                engine.glue.reset(assoc, now, "crypto-NAK")
            log.warn("crypto-NAK from {host} on association {associd}",
                     host=assoc.address[0], associd=assoc.associd)
            return []
        if assoc.autokey is not None:
            dst = assoc.broadcast_address if mode == MODE_BROADCAST else None
            if auth != AUTH_AUTOKEY or not assoc.autokey.authenticate(
                    pkt, src=assoc.address[0], dst=dst or engine.glue.local_for(assoc)):
                counters["badauth"] += 1
                assoc.flash = Flash.TEST5
                return []
        elif auth in (AUTH_ERROR, AUTH_AUTOKEY) or (
                assoc.keyid is not None and (auth != AUTH_OK or keyid != assoc.keyid)) \
                or ("notrust" in flags and auth != AUTH_OK):
            counters["badauth"] += 1
            assoc.flash = Flash.TEST5
            return []
        if header.transmit == 0:
            counters["badxmt"] += 1
            assoc.flash = Flash.TEST3
            return []
        if header.transmit == assoc.org:
            counters["oldpkt"] += 1
            assoc.flash = Flash.TEST1
            return []
        if mode == MODE_BROADCAST:
            if assoc.autokey is not None and not engine.glue.receive(assoc, pkt, mode, now):
                return []
            return self._broadcast_sample(assoc, header, rx, now)
        if header.origin == 0 and mode in (MODE_ACTIVE, MODE_PASSIVE):
            # The peer has not heard from us yet: remember its timestamps, no sample.
            assoc.org, assoc.rec = header.transmit, rx
            update_peer_header(assoc, header)
            if assoc.autokey is not None:
                engine.glue.receive(assoc, pkt, mode, now)
            return []
        if header.origin != assoc.xmt or assoc.xmt == 0:
            counters["bogusorg"] += 1
            assoc.flash = Flash.TEST2
            return []
        exchange = assoc.org, assoc.rec, assoc.xmt
        assoc.org, assoc.rec = header.transmit, rx
        client = hmode == MODE_CLIENT or hmode == HMODE_BCLIENT
        if client:
            assoc.xmt = 0  # one reply per request: a second copy now fails TEST2
        if assoc.autokey is not None:
            if not engine.glue.receive(assoc, pkt, mode, now):
                if client:
                    # A refused reply (on-path bait with the right origin) does not use up
                    # the request: the genuine reply still counts (the reset storms).
                    assoc.org, assoc.rec, assoc.xmt = exchange
                return []
            if pkt.fields and mode == MODE_SERVER:
                # A reply with extension fields is MACed under cookie 0, which anyone can
                # compute, and client mode has no key-ID chain: its timestamps are not
                # protected, so it gives no time sample (stricter than the reference;
                # docs/interop.md).  Symmetric peers need such packets to break their stall.
                counters["autokey_nosample"] += 1
                update_peer_header(assoc, header)
                assoc.reach |= 1  # an authentic reply: the server is reachable
                assoc.unreach = 0
                return []
        if header.stratum == 0:
            return self._kiss(assoc, header)
        return self._packet(assoc, header, rx, now)

    def _kiss(self, assoc: Association, header: Header) -> list[Datagram]:
        """Kiss-o'-Death (RFC 5905 section 7.4): RATE backs off, DENY/RSTR demobilise."""
        engine = self.engine
        code = header.refid
        if code == KISS_RATE:
            peer_poll = clamp_poll(header.poll)
            assoc.hpoll = min(max(assoc.hpoll + 1, peer_poll), assoc.maxpoll, MAX_POLL)
            assoc.burst = 0
            assoc.nextdate = assoc.outdate + 2.0**assoc.hpoll
        elif code in (KISS_DENY, KISS_RSTR):
            engine.demobilise(assoc, f"kiss code {header.kiss_code}")
        else:
            # INIT, STEP and the rest: an unsynchronised peer; the timestamps above still
            # advance the symmetric exchange.
            update_peer_header(assoc, header)
            engine.counters["unsync"] += 1
            return []
        engine.counters["kod"] += 1
        log.info("kiss code {code} from {host}", code=header.kiss_code, host=assoc.address[0])
        return []

    def _header_usable(self, assoc: Association, header: Header) -> bool:
        """TEST6 (unsynchronised peer) and TEST7 (header distance / reference time)."""
        if header.leap == LEAP_UNSYNC or header.stratum >= MAX_STRATUM:
            self.engine.counters["unsync"] += 1
            assoc.flash = Flash.TEST6
            return False
        if (from_short(header.root_delay) / 2 + from_short(header.root_dispersion) >= MAXDISP
                or (header.reference and ts_diff(header.reference, header.transmit) > 0)):
            self.engine.counters["baddist"] += 1
            assoc.flash = Flash.TEST7
            return False
        return True

    def _packet(self, assoc: Association, header: Header, rx: int,
                now: float) -> list[Datagram]:
        """RFC 5905 A.5.1.1 packet(): on-wire offset and delay into the clock filter."""
        engine = self.engine
        update_peer_header(assoc, header)
        if not self._header_usable(assoc, header):
            return []
        assoc.reach |= 1
        assoc.unreach = 0
        t21 = ts_diff(header.receive, header.origin)
        t34 = ts_diff(header.transmit, rx)
        offset = (t21 + t34) / 2
        delay = max(t21 - t34, 2.0**engine.precision)
        dispersion = 2.0**header.precision + 2.0**engine.precision \
            + PHI * ts_diff(rx, header.origin)
        if assoc.hmode == HMODE_BCLIENT:
            assoc.caldelay = delay
            if assoc.autokey is None or assoc.autokey.state.volley_complete:
                # Calibrated (and, with Autokey, every flag lit): the broadcasts are the
                # samples from now on.
                assoc.volley = 0
                assoc.nextdate = now + 2.0**assoc.hpoll
                log.info("broadcast client {host}: delay calibrated at {delay:.6f} s",
                         host=assoc.address[0], delay=delay)
        return self._sample(assoc, offset, delay, dispersion, now)

    def _broadcast_sample(self, assoc: Association, header: Header, rx: int,
                          now: float) -> list[Datagram]:
        engine = self.engine
        assoc.org = header.transmit
        if assoc.caldelay is None:
            engine.counters["bcast_uncalibrated"] += 1
            return []
        update_peer_header(assoc, header)
        if not self._header_usable(assoc, header):
            return []
        assoc.reach |= 1
        assoc.unreach = 0
        delay = assoc.caldelay
        offset = ts_diff(header.transmit, rx) + delay / 2
        dispersion = 2.0**header.precision + 2.0**engine.precision
        return self._sample(assoc, offset, delay, dispersion, now)

    def _sample(self, assoc: Association, offset: float, delay: float, dispersion: float,
                now: float) -> list[Datagram]:
        engine = self.engine
        result = assoc.filter.add(offset, delay, dispersion, now)
        engine.counters["samples"] += 1
        if result is not None:
            assoc.offset, assoc.delay = result.offset, result.delay
            assoc.dispersion, assoc.jitter = result.dispersion, result.jitter
            assoc.epoch = result.epoch
        elif engine.sys.leap == LEAP_UNSYNC and assoc.filter.epoch:
            # RFC 5905 A.5.2: a sample is used only once, "but anything goes before first
            # synchronized": the falling dispersion of a new association counts at once.
            filt = assoc.filter
            assoc.offset, assoc.delay = filt.offset, filt.delay
            assoc.dispersion, assoc.jitter = filt.dispersion, filt.jitter
            assoc.epoch = filt.epoch
        else:
            return []
        assoc.has_sample = True
        assoc.flash = Flash(0)
        engine.system.clock_select(now)
        return []


def update_peer_header(assoc: Association, header: Header) -> None:
    """Take the peer's packet variables from an accepted packet's header."""
    assoc.leap = header.leap
    assoc.stratum = header.stratum if header.stratum else MAX_STRATUM
    assoc.pmode = header.mode
    assoc.ppoll = clamp_poll(header.poll)
    assoc.root_delay = from_short(header.root_delay)
    assoc.root_dispersion = from_short(header.root_dispersion)
    assoc.refid = header.refid
    assoc.reftime = header.reference


def clamp_poll(poll: int) -> int:
    """A poll exponent from a packet, within what we accept (a RATE kiss may say 127)."""
    return min(max(poll, MIN_POLL), MAX_POLL)
