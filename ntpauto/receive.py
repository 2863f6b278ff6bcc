"""An association's receive path: mobilisation, the on-wire tests and the time sample.

RFC 5905 sections 8-9 and appendix A.5.1: a packet for an association passes the mode
check, authentication (symmetric key, or Autokey through :mod:`ntpauto.autokey.glue`),
TEST3 (zero transmit), TEST1 (duplicate), TEST2 (origin), kiss codes, TEST6 (unsynchronised)
and TEST7 (header distance) before its offset and delay enter the clock filter.  Symmetric
active packets with no association mobilise a passive one, and broadcasts a broadcast client
(ntpd AM_NEWPASS, AM_NEWBCL), within :data:`MAX_EPHEMERAL`.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from twisted.logger import Logger

from ntpauto.autokey.association import group_gate
from ntpauto.autokey.fields import ASSOC, CRYPTO_RESP, Field
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
from ntpauto.verdict import Verdict
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

__all__ = ["BROADCAST_SPACING", "MAX_POLL", "MIN_POLL", "AssociationReceiver", "OnWire",
           "clamp_poll"]

MAX_POLL = 17
MIN_POLL = 3
BROADCAST_SPACING = 0.75
"""A broadcast sample comes at least this fraction of the broadcast poll interval after the
last one (a quarter of it is left for network jitter)."""
_NEWER_ONLY = (MODE_BROADCAST, MODE_ACTIVE, MODE_PASSIVE)
"""Modes whose transmit timestamps must increase (replays of older packets)."""


class OnWire(enum.Enum):
    """How a packet stands after the on-wire tests."""

    PROVEN = "answers our last transmit"
    """TEST2 passed: the sender saw our last packet (an off-path forger cannot)."""
    START = "symmetric packet from a peer that has not heard from us"
    """Origin 0: it starts the exchange; it proves nothing."""
    BROADCAST = "broadcast newer than the last accepted"
    """A broadcast: no origin to test; its key ID must prove it."""
    REPEAT = "answers a transmit of ours already answered"
    """Symmetric modes: TEST2 passes, but the first answer came already, so the origin
    proves nothing any more (whoever saw our packet can echo it): only a key ID on the
    chain (or a symmetric key) can prove the packet."""


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
        assoc = engine.mobilise(self._ephemeral(pkt, source, MODE_PASSIVE, now,
                                                keyid if auth == AUTH_OK else None))
        return self.process(assoc, pkt, MODE_ACTIVE, rx, now, flags, auth, keyid)

    def _new_autokey_passive(self, pkt: Packet, source: tuple[str, int], rx: int,
                             now: float, flags: frozenset[str], keyid: int | None,
                             local: tuple[str, int] | None) -> list[Datagram]:
        """Mobilise a passive Autokey association for a symmetric active peer's first packet
        (interop.md 8.3), and only once everything in it has been checked: its MAC
        under the session key (cookie 0: it proves nothing by itself), every field decoded
        and a request, the first an ASSOC request of our group whose status word we accept.
        Only then is room made within :data:`MAX_EPHEMERAL`."""
        engine = self.engine
        counters = engine.counters
        if "nopeer" in flags:
            counters["declined"] += 1
            return []
        assoc = self._ephemeral(pkt, source, MODE_PASSIVE, now)
        if local is not None and not is_wildcard(local[0]):
            assoc.local_address = local[0]
            assoc.local_refid = refid_or_empty(local[0])
        assoc.autokey = engine.glue.session(assoc, ident=engine.config.ident)
        mac = engine.glue.mac_verdict(assoc, pkt, MODE_ACTIVE)
        if mac.failed:
            counters["badauth"] += 1
            return []
        first = _first_field(pkt)
        if first is None or first.code != ASSOC or first.response \
                or any(_is_response(f.data) for f in pkt.fields):
            # A peer in the middle of a dance we have no association for (we restarted, or
            # dropped it): the stateless crypto-NAK tells it to start again, and it believes
            # it only because it echoes its transmit (RFC 5906 section 11.5).
            counters["autokey_not_assoc"] += 1
            return engine.server.serve(pkt, source, rx, now, flags, AUTH_ERROR, keyid,
                                       MODE_PASSIVE)
        verdicts = engine.glue.check(assoc, pkt, MODE_ACTIVE, now, proven=False, mac=mac)
        if verdicts.failure is not None:
            return []
        if not engine.room_for_ephemeral():
            counters["declined"] += 1
            return []
        assoc.owed = len(pkt.data)
        engine.mobilise(assoc)
        if self._on_wire(assoc, pkt.header, MODE_ACTIVE, trusted=False) is OnWire.START:
            assoc.org, assoc.rec = pkt.header.transmit, rx
            assoc.exchanged_at = now
            update_peer_header(assoc, pkt.header)
        return []

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
        assoc = self._ephemeral(pkt, source, HMODE_BCLIENT, now,
                                keyid if auth == AUTH_OK else None)
        if engine.config.broadcast_delay is not None:
            assoc.caldelay = engine.config.broadcast_delay
            assoc.nextdate = now + 2.0**assoc.hpoll
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
        (last) field is an ASSOC response of our group whose status word we accept and its
        MAC verifies (interop.md 8.4; RFC 5906 section 11.4.2 asks no more of it); the
        client then runs the client dance unicast before it listens.  Room is made within
        :data:`MAX_EPHEMERAL` only after those checks."""
        engine = self.engine
        counters = engine.counters
        if engine.config.broadcast_delay is not None or "nopeer" in flags:
            counters["declined"] += 1
            return []
        try:
            fields = [decode_field(f.data) for f in pkt.fields]
        except FieldError:
            counters["autokey_badfield"] += 1
            return []
        if not fields or fields[-1].code != ASSOC or not fields[-1].response:
            counters["bcast_not_assoc"] += 1
            return []
        assoc = self._ephemeral(pkt, source, HMODE_BCLIENT, now)
        assoc.broadcast_address = local[0] if local is not None else None
        assoc.autokey = engine.glue.session(assoc, ident=engine.config.ident, broadcast=True)
        if engine.glue.mac_verdict(assoc, pkt, MODE_BROADCAST).failed:
            counters["badauth"] += 1
            return []
        if not group_gate(engine.autokey.host.name, fields[-1], engine.config.ident):
            counters["declined"] += 1
            return []
        verdict = assoc.autokey.state.mobilised_by(fields[-1])
        if not verdict.verified:
            counters[f"autokey_{verdict.event.name.lower()}"] += 1
            return []
        if not engine.room_for_ephemeral():
            counters["declined"] += 1
            return []
        assoc.volley = VOLLEY
        assoc.nextdate = now
        assoc.owed = len(pkt.data)
        engine.mobilise(assoc)
        engine.glue.log_status(assoc, 0)
        return engine.poller.poll(assoc, now)

    def _ephemeral(self, pkt: Packet, source: tuple[str, int], hmode: int, now: float,
                   keyid: int | None = None) -> Association:
        """A new ephemeral association with ``source`` at the poll its first packet says: a
        passive one (polls between that and 2**10 s, the first a second from now) or a
        broadcast client (the broadcast poll, fixed)."""
        poll = clamp_poll(pkt.header.poll)
        passive = hmode == MODE_PASSIVE
        return Association(
            associd=self.engine.new_associd(), address=source, hmode=hmode,
            version=pkt.header.version, minpoll=poll, maxpoll=max(poll, 10) if passive else poll,
            hpoll=poll, keyid=keyid, ephemeral=True, nextdate=now + 1.0 if passive else 0.0)

    # ------------------------------------------------------------------ receive

    def process(self, assoc: Association, pkt: Packet, mode: int, rx: int, now: float,
                flags: frozenset[str], auth: int, keyid: int | None) -> list[Datagram]:
        """An association's packet (RFC 5905 receive()): the mode check, a crypto-NAK, then
        the Autokey path or the symmetric-key/plain path.  Every decision below rests on a
        verdict: the MAC's, the on-wire tests' and, with Autokey, the fields' and the
        autokey test's (docs/security.md)."""
        if not _mode_fits(assoc, mode):
            self.engine.counters["badmode"] += 1
            return []
        if assoc.nts is not None:
            return self._nts_packet(assoc, pkt, mode, rx, now)
        if auth == AUTH_NAK:
            return self._crypto_nak(assoc, pkt.header, now)
        if assoc.autokey is not None:
            return self._autokey_packet(assoc, pkt, mode, rx, now, auth)
        return self._keyed_packet(assoc, pkt, mode, rx, now, flags, auth, keyid)

    def _crypto_nak(self, assoc: Association, header: Header, now: float) -> list[Datagram]:
        """A crypto-NAK counts only when it is the first answer to our latest packet
        (CVE-2016-1547); an Autokey association then restarts its dance, at most once per poll
        interval, and is never removed for it."""
        engine = self.engine
        if not _answers(assoc, header.origin):
            engine.counters["bogusorg"] += 1
            return []
        _use_up(assoc, header.origin)
        engine.counters["cryptonak"] += 1
        assoc.flash = Flash.TEST9
        log.warn("crypto-NAK from {host} on association {associd}", host=assoc.address[0],
                 associd=assoc.associd)
        if assoc.autokey is not None:
            engine.glue.restart(assoc, now, "crypto-NAK")
        return []

    def _on_wire(self, assoc: Association, header: Header, mode: int, *,
                 trusted: bool) -> OnWire | None:
        """The on-wire tests (RFC 5905 section 8): TEST3 (zero transmit), TEST1
        (duplicate), then by mode: a broadcast's transmit newer than the last accepted one;
        a symmetric packet with origin 0 only to start an exchange (our ``org`` still 0) unless
        its header is ``trusted`` (a symmetric key verified it, or the association has no
        authentication); otherwise TEST2, the origin is a transmit of ours not answered yet
        (client mode: the last), and in symmetric modes a transmit newer than the last
        accepted; a second answer to the same transmit is a :attr:`OnWire.REPEAT`.  None:
        dropped (counted, flash set)."""
        counters = self.engine.counters
        transmit = header.transmit
        if transmit == 0:
            counters["badxmt"] += 1
            assoc.flash = Flash.TEST3
            return None
        if transmit == assoc.org or (assoc.org and mode in _NEWER_ONLY
                                     and ts_diff(transmit, assoc.org) <= 0):
            counters["oldpkt"] += 1
            assoc.flash = Flash.TEST1
            return None
        if mode == MODE_BROADCAST:
            return OnWire.BROADCAST
        if header.origin == 0 and mode in (MODE_ACTIVE, MODE_PASSIVE) \
                and (trusted or not assoc.org):
            return OnWire.START
        if _answers(assoc, header.origin):
            return OnWire.PROVEN
        if header.origin and header.origin == assoc.answered:
            return OnWire.REPEAT
        counters["bogusorg"] += 1
        assoc.flash = Flash.TEST2
        return None

    def _keyed_packet(self, assoc: Association, pkt: Packet, mode: int, rx: int, now: float,
                      flags: frozenset[str], auth: int, keyid: int | None) -> list[Datagram]:
        """A packet of an association without Autokey: its symmetric-key MAC (when the
        association has a key, or ``notrust`` applies), the on-wire tests, the sample."""
        engine = self.engine
        if auth in (AUTH_ERROR, AUTH_AUTOKEY) or (
                assoc.keyid is not None and (auth != AUTH_OK or keyid != assoc.keyid)) \
                or ("notrust" in flags and auth != AUTH_OK):
            engine.counters["badauth"] += 1
            assoc.flash = Flash.TEST5
            return []
        header = pkt.header
        on = self._on_wire(assoc, header, mode, trusted=True)
        if on is None:
            return []
        if on is OnWire.BROADCAST:
            return self._broadcast_sample(assoc, header, rx, now)
        if not self._exchange(assoc, header, rx, now, on):
            return []
        return self._time(assoc, header, rx, now)

    @staticmethod
    def _exchange(assoc: Association, header: Header, rx: int, now: float,
                  on: OnWire) -> bool:
        """Advance the on-wire exchange with an accepted packet: remember its transmit and
        receive times (``org``, ``rec``); the transmit of ours it answers is used up (a
        second copy of a client's reply then fails TEST2; in symmetric modes a second
        answer is a :attr:`OnWire.REPEAT`).  False for a packet that starts the exchange
        (the peer has not heard from us yet: its header, no sample)."""
        assoc.org, assoc.rec = header.transmit, rx
        assoc.exchanged_at = now
        if on is OnWire.START:
            update_peer_header(assoc, header)
            return False
        if on is OnWire.PROVEN:
            _use_up(assoc, header.origin)
            if assoc.on_reply is not None:
                assoc.on_reply(assoc, header, now)
        return True

    def _autokey_packet(self, assoc: Association, pkt: Packet, mode: int, rx: int,
                        now: float, auth: int) -> list[Datagram]:
        """A packet of an Autokey association.  Its MAC must verify under the session key;
        the on-wire tests say whether it is proven (it answers our last transmit); the
        fields and the autokey test give their verdicts (:meth:`AutokeyGlue.check`).  A
        failed field: no sample, no on-wire change, and a restart of the dance only for a
        proven protocol error.  Samples need the autokey test verified."""
        engine = self.engine
        counters = engine.counters
        glue = engine.glue
        mac = glue.mac_verdict(assoc, pkt, mode)
        if auth != AUTH_AUTOKEY or mac.failed:
            counters["badauth"] += 1
            assoc.flash = Flash.TEST5
            return []
        assoc.owed = len(pkt.data)
        header = pkt.header
        before = assoc.autokey.state.status
        on = self._on_wire(assoc, header, mode, trusted=False)
        if on is None:
            return []
        repeat = on is OnWire.REPEAT
        proven = repeat or on is OnWire.PROVEN
        verdicts = glue.check(assoc, pkt, mode, now, mac=mac, key_first=repeat, proven=proven)
        if repeat and not verdicts.key.verified:
            counters["bogusorg"] += 1
            assoc.flash = Flash.TEST2
            return []
        failure = verdicts.failure
        if failure is not None:
            engine.changes.refused(assoc, failure)
            assoc.flash = Flash.TEST9
            if failure.protocol_error and proven:
                glue.restart(assoc, now, failure.reason)
            return []
        if on is OnWire.BROADCAST:
            if not self._keyed(assoc, verdicts.key):
                return []
            return self._broadcast_sample(assoc, header, rx, now)
        if not self._exchange(assoc, header, rx, now, on):
            return []
        if on is OnWire.PROVEN and mode in (MODE_ACTIVE, MODE_PASSIVE):
            glue.answer_soon(assoc, now, before, header.leap)
        if pkt.fields:
            # A proven packet of the dance, every field taken: the peer is reachable
            # (RFC 5906 section 11.5) even where its key ID cannot be tested yet.
            assoc.reach |= 1
            assoc.unreach = 0
        if pkt.fields and mode == MODE_SERVER:
            # A reply with extension fields is MACed under cookie 0, which anyone can
            # compute, and client mode has no key-ID chain: its timestamps are not
            # protected, so it gives no time sample (stricter than the reference;
            # docs/interop.md).
            counters["autokey_nosample"] += 1
            update_peer_header(assoc, header)
            return []
        if not self._keyed(assoc, verdicts.key):
            if mode != MODE_SERVER:
                # A symmetric packet, proven, but its key ID is not on the chain we know:
                # the peer's variables (its leap indicator decides our COOK request), no
                # sample; the peer started a new key list and we missed its values, so ask
                # for them (the reference clears AUTO on any such packet, which a forger
                # could send; this one answers our last transmit).
                update_peer_header(assoc, header)
                if verdicts.key.failed and assoc.autokey.state.refetch_auto():
                    counters["autokey_refetch"] += 1
            return []
        return self._time(assoc, header, rx, now)

    def _nts_packet(self, assoc: Association, pkt: Packet, mode: int, rx: int,
                    now: float) -> list[Datagram]:
        """A reply to an NTS association (RFC 8915 section 5.7).  The NTS verdict first: our
        request's unique identifier and the authenticator under the server-to-client key; a
        packet without them fails (NTS stripping, section 8.7) and so does a crypto-NAK.
        An NTS NAK with our identifier counts only when it answers our last transmit (it
        is not authenticated): the association re-keys unless an authentic reply comes.
        Then the on-wire tests and the time, as for any reply."""
        engine = self.engine
        counters = engine.counters
        header = pkt.header
        verdict = assoc.nts.check(pkt)
        if verdict.failed:
            counters["nts_badauth"] += 1
            assoc.flash = Flash.TEST5
            return []
        if not verdict.verified:
            if not _answers(assoc, header.origin):
                counters["bogusorg"] += 1
                return []
            _use_up(assoc, header.origin)
            counters["nts_nak_received"] += 1
            assoc.nts.nak()
            assoc.flash = Flash.TEST9
            log.warn("NTS NAK from {host} on association {associd}", host=assoc.address[0],
                     associd=assoc.associd)
            return []
        on = self._on_wire(assoc, header, mode, trusted=False)
        if on is None or not self._exchange(assoc, header, rx, now, on):
            return []
        return self._time(assoc, header, rx, now)

    def _keyed(self, assoc: Association, key: Verdict) -> bool:
        """The autokey test verified the packet's key ID: it may give a sample."""
        if key.verified:
            return True
        self.engine.counters["autokey_sequence"] += 1
        assoc.flash = Flash.TEST8
        return False

    def _time(self, assoc: Association, header: Header, rx: int,
              now: float) -> list[Datagram]:
        """An authenticated, proven packet's time: a kiss code, or packet()."""
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
        """An authenticated broadcast, newer than the last accepted one: a sample, no sooner
        than the broadcast poll interval allows (the CVE-2016-7427/7428 class)."""
        engine = self.engine
        if assoc.bcast_at is not None \
                and now - assoc.bcast_at < BROADCAST_SPACING * 2.0**assoc.hpoll:
            engine.counters["bcast_early"] += 1
            assoc.flash = Flash.TEST1
            return []
        assoc.org = header.transmit
        assoc.bcast_at = now
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


def _mode_fits(assoc: Association, mode: int) -> bool:
    """The packet's mode is one this association takes (RFC 5905 table of modes)."""
    hmode = assoc.hmode
    return ((hmode == MODE_CLIENT and mode == MODE_SERVER)
            or (hmode == MODE_ACTIVE and mode in (MODE_ACTIVE, MODE_PASSIVE))
            or (hmode == MODE_PASSIVE and mode == MODE_ACTIVE)
            or (hmode == HMODE_BCLIENT and (mode == MODE_BROADCAST
                                             or (mode == MODE_SERVER and bool(assoc.volley)))))


def _first_field(pkt: Packet) -> Field | None:
    """The packet's first extension field, or None when it has none or it is malformed."""
    if not pkt.fields:
        return None
    try:
        return decode_field(pkt.fields[0].data)
    except FieldError:
        return None


def _is_response(data: bytes) -> bool:
    """The R bit of an extension field's header word."""
    return len(data) >= 4 and bool(int.from_bytes(data[:4], "big") & CRYPTO_RESP)


def _answers(assoc: Association, origin: int) -> bool:
    """TEST2: ``origin`` is a transmit timestamp of ours no packet has answered yet (client
    mode: our last request; symmetric modes: one of :attr:`Association.unanswered`)."""
    if not origin:
        return False
    if assoc.hmode in (MODE_ACTIVE, MODE_PASSIVE):
        return origin in assoc.unanswered
    return origin == assoc.xmt


def _use_up(assoc: Association, origin: int) -> None:
    """The transmit ``origin`` of ours has its answer: it, and any sent before it, cannot
    prove another packet by their origin."""
    if assoc.hmode in (MODE_ACTIVE, MODE_PASSIVE):
        if origin in assoc.unanswered:
            del assoc.unanswered[:assoc.unanswered.index(origin) + 1]
        assoc.answered = origin
    elif origin == assoc.xmt:
        assoc.xmt = 0
