"""The per-association Autokey state machine (the "dance"), sans-I/O.

RFC 5906 sections 6 (identity schemes), 8 (the protocol), 10 (message processing) and 11.5
(state machine), and interop.md sections 5 (messages), 8.1-8.5 (what each side sends,
in which order; errors and resets) and 10 (receive checks).

State.  The association **status word** drives everything: it starts at 0, takes the peer's
word from its ASSOC message (NID in the high half, the peer's host flags in the low byte)
and collects the progress bits CERT, VRFY, PROV, COOK, AUTO, SIGN and LEAP (0x7F00).  Beside
it: the peer's name ("subject") and the "issuer" asked for in the next CERT request, the
certificate trail, the peer public key (from the first certificate received) and the
verification profile (from the peer's NID), the cookie (0 before COOK), our ``hcookie``
(drawn on accepting the peer's ASSOC), the received autokey values and their stamps,
``pkeyid``, the outstanding identity challenge, the peer's association ID and, in symmetric
modes, one request queued from the peer.

Transmit (:meth:`AutokeyAssociation.next_fields`): at most the response to the queued peer
request, first, then at most one request chosen from the status word by the rules of
interop.md 8.2 (client mode and the broadcast client's volley) or 8.3 (symmetric).
Requests simply repeat every poll until their bit lights.

Receive (:meth:`AutokeyAssociation.receive`): each field gets a
:class:`~ntpauto.verdict.Verdict` from the code that checked it, and changes the state only
when that verdict is positive.  Signed responses go through the checks of interop.md 5.9 in
the reference's order (E bit, length, association ID, value and signature bounds,
Timestamp != 0, Timestamp >= Filestamp), then freshness (newer than the last accepted value
of its kind, kept across resets) before the signature (present, no longer than the key
allows, valid; PROV lights on the first signature verified while VRFY is lit).  Unsigned
ASSOC and CERT responses count only in a packet that answers our last transmit (``proven``).
A protocol error is a failed verdict with ``Event.ERR``; processing stops at the first failed
field, and the caller decides whether the dance restarts.

Deliberate differences from the reference (all stricter, none visible to an honest
reference peer; docs/interop.md lists them):

* a CERT response must be for the name we asked for (the current issuer), never for our
  own name (it would replace our certificate in the cache), and the trail is at most
  :data:`MAX_TRAIL` certificates long; its certificates enter our cache (and are signed
  there) only once it ends at a trusted one;
* a failing trail link (VFY/PER) leaves the trail where it was (the reference has already
  moved its issuer on);
* a COOK response is taken only while one of our COOK requests is unanswered;
* a symmetric peer's COOK request must carry its valid signature over the key we encrypt
  our cookie to;
* a SIGN response must hold our own subject and public key, signed with the peer's key;
* any valid signature length is accepted (the reference insists on the maximum, which
  refuses most DSA signatures).

Times: ``now`` is the crypto time in NTP seconds (0 when unsynchronised);
:meth:`refresh_due`/:meth:`reset` take a monotonic time in seconds (the reference's
``current_time``), since the crypto time is 0 while unsynchronised.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.logger import Logger

from ntpauto.auth.autokey import RandomSource
from ntpauto.autokey.cookie import combine_cookie, random_cookie
from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CERT,
    COOK,
    CRYPTO_VN,
    LEAP,
    NULL,
    SIGN,
    Field,
    signed_octets,
)
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.responder import MAX_VALUE_LEN, Responder
from ntpauto.autokey.status import (
    PLUGIN_SCHEME_MASK,
    Flag,
    apply_peer_status,
    flag_names,
    word_nid,
)
from ntpauto.autokey.values import AutoValue, LeapValue, decode_assoc_name, decrypt_cookie
from ntpauto.events import Event, FieldError
from ntpauto.pki.cache import check_trail_link
from ntpauto.pki.certificates import CertificateError, CertInfo, check_cert_response
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_certificate
from ntpauto.verdict import Check, Verdict
from ntpauto.wire.packet import LEAP_UNSYNC, MODE_ACTIVE, MODE_BROADCAST, MODE_CLIENT, MODE_PASSIVE

__all__ = [
    "ERROR_RESET_SPACING",
    "MAX_TRAIL",
    "NTP_REFRESH",
    "AutokeyAssociation",
    "group_gate",
]

NTP_REFRESH = 1 << 19
"""reference: every association resets itself 2**19 s after its last reset."""
MAX_TRAIL = 8
"""Most certificates one trail may hold before we give up (``Event.CRT``)."""
GROUP_NAME_LIMIT = 257
"""reference: the ASSOC group gate looks at names shorter than this."""
ERROR_RESET_SPACING = 16
"""Least seconds between two protocol-error resets of one association (security CASES 19,
43); the engine uses the larger of this and the association's poll interval.  A peer, or a
forger whose packets pass the cookie-0 MAC, that keeps sending bad responses restarts the
dance at most that often (the reference resets on every one)."""

_SYMMETRIC = (MODE_ACTIVE, MODE_PASSIVE)
_RESENT = frozenset({CERT, LEAP, AUTO})
"""Signed values a server sends again unchanged (signed once, at its signature update or
key list)."""
_EMPTY_ANSWERS = frozenset({CERT, COOK, AUTO, LEAP, SIGN})
"""Requests a responder may answer with the 8-octet "nothing", with the identity codes: no
certificate for that name, not synchronised, or the amplification limit's cut of a response
larger than the request of a source that has not proven its address."""
_PENDING = "pending"
"""The worker has the queued identity request and has not answered yet."""

log = Logger()


@functools.cache
def _nid_digests() -> dict[int, str]:
    """NIDs we can verify with -> digest name (every registered signature profile)."""
    from ntpauto.pki.profiles import all_profiles

    return {int(p.nid): str(p.digest_name) for p in all_profiles()}


def _identity_factories() -> tuple[Any, ...]:
    """Identity scheme factories with an exchange: the built-ins in the reference's order
    (IFF, GQ, MV), then plugins by status bit.  Not cached (a lookup costs well under a
    millisecond and runs only while no scheme is chosen), so a plugin that appears later,
    e.g. on an extended ``ntpauto.plugins.__path__``, is seen."""
    from ntpauto.identity.registry import all_factories

    def order(factory: Any) -> tuple[bool, int]:
        bit = int(factory.status_bit)
        return not bit & Flag.SCHEME_MASK, bit

    return tuple(sorted((f for f in all_factories() if int(f.message_code)), key=order))


def _identity_codes() -> frozenset[int]:
    return frozenset(int(f.message_code) for f in _identity_factories()) | {7, 8, 9}


def _scheme_mask() -> int:
    """The peer status bits that name an identity scheme we know: 0x00F0 and the plugin
    bits (0x0004, 0x0008) of installed plugins.  A bit no installed plugin claims is
    ignored, as a reference host ignores it."""
    bits = 0
    for factory in _identity_factories():
        bits |= int(factory.status_bit)
    return int(Flag.SCHEME_MASK) | bits & PLUGIN_SCHEME_MASK


def group_gate(own_name: str, f: Field, ident: str | None) -> bool:
    """The packet-level ASSOC group gate (interop.md 5.1): True when the packet may be
    processed.

    Only ASSOC requests and responses are gated, and only when our own name is
    ``host@group``: the field's name must be shorter than 257 octets and contain '@', and
    its group (after the first '@') must equal ours or ``ident`` (the association's
    configured group, or the global ``ident`` for a new ephemeral association)."""
    if f.code != ASSOC or "@" not in own_name:
        return True
    value = f.value
    if not value or len(value) >= GROUP_NAME_LIMIT or b"@" not in value:
        return False
    try:
        group = value.split(b"@", 1)[1].decode("ascii")
    except UnicodeDecodeError:
        return False
    return group == own_name.split("@", 1)[1] or (ident is not None and group == ident)


class AutokeyAssociation:
    """The Autokey state of one association (see the module docstring).

    ``host``: our credentials; ``associd``: our association ID for this peer; ``hmode``:
    the association's mode (3 client, also for the broadcast client's volley; 1/2
    symmetric); ``responder``: answers the peer's queued requests in symmetric modes;
    ``ident``: the group of the association's identity scheme: the ``ident`` option of its
    server/peer line, or the global ``ident`` for an ephemeral (passive, broadcast client)
    association; ``None`` means TC (VRFY lights with CERT, interop.md 5.3);
    ``broadcast``: a broadcast client association (mobilised by a
    broadcast ASSOC response); ``rng`` draws ``hcookie`` (default: the host's).
    """

    def __init__(
        self,
        host: HostCredentials,
        *,
        associd: int,
        hmode: int = MODE_CLIENT,
        responder: Responder | None = None,
        ident: str | None = None,
        broadcast: bool = False,
        rng: RandomSource | None = None,
    ) -> None:
        self.host = host
        self.associd = associd
        self.hmode = hmode
        self.responder = responder
        self.ident = ident
        self.broadcast = broadcast
        self.rng = rng if rng is not None else host.rng
        self.keylist_generation = 0
        """Incremented whenever the key list must be purged (cookie accepted, reset)."""
        self.reset_at: int | None = None
        self._error_reset_at: float | None = None
        self._accepted: dict[tuple[Any, ...], tuple[int, int, bytes, bytes]] = {}
        """The last accepted signed value of each kind (stamps, value, signature), kept
        across resets: a replay of an older one is refused before any signature work."""
        self._clear()

    def _clear(self) -> None:
        self._status = 0
        self._peer_name: str | None = None
        self.issuer: str | None = None
        """The name asked for in the next CERT request."""
        self._trail: list[tuple[str, str]] = []
        self._last_cert: CertInfo | None = None
        self._trusted_cert: CertInfo | None = None
        self.peer_key: Any = None
        self._profile: Any = None
        self._cookie = 0
        self.hcookie: int | None = None
        """Our own symmetric cookie, drawn when the peer's ASSOC is accepted."""
        self._autokey: AutoValue | None = None
        self.auto_timestamp = 0
        self.auto_filestamp = 0
        self.pkeyid = 0
        """Key ID of the last packet accepted by the autokey test (interop.md 3.4)."""
        self.seq = 0
        """Remaining index N of the received autokey values (ntpq ``initsequence``)."""
        self.peer_associd = 0
        self._challenge: bytes | None = None
        self._scheme: Any = None
        self._scheme_name: str | None = None
        self._queued: tuple[Field, int] | None = None
        self._offloaded: tuple[Field, tuple[int, float, bytes] | str | None] | None = None
        """The queued identity request handed to the identity worker, with its result
        (``_PENDING`` until it comes; None: the budget refused it)."""
        self._cook_pending = False
        self._pending: list[tuple[CertInfo, int]] = []
        """The trail's certificates received so far, installed in our cache only once it
        ends at a trusted certificate."""
        self._announced: tuple[int, bytes] | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def symmetric(self) -> bool:
        """True for symmetric active/passive associations."""
        return self.hmode in _SYMMETRIC

    @property
    def status(self) -> int:
        """The association status word (peer NID << 16 | peer flags | progress bits)."""
        return self._status

    @property
    def flags(self) -> list[str]:
        """Names of the bits set in :attr:`status` (``["ENAB", "TAI", "CERT", ...]``)."""
        return flag_names(self._status)

    @property
    def proventic(self) -> bool:
        """PROV is lit: the peer's identity is proven and its packets may be used for
        time."""
        return bool(self._status & Flag.PROV)

    @property
    def volley_complete(self) -> bool:
        """All of CERT..LEAP are lit (a broadcast client then switches to listening)."""
        return self._status & Flag.ALL == Flag.ALL

    @property
    def cookie(self) -> int:
        """The working cookie (0 before COOK)."""
        return self._cookie

    @property
    def autokey(self) -> AutoValue | None:
        """The autokey values (final key ID, N) of the last accepted AUTO response."""
        return self._autokey

    @property
    def trail(self) -> list[tuple[str, str]]:
        """(subject, issuer) of each certificate of the peer's trail, in the order
        received (the peer's own first, a trusted root last)."""
        return list(self._trail)

    @property
    def scheme_name(self) -> str | None:
        """The identity scheme in use (``"tc"``, ``"pc"``, ``"iff"``, ``"gq"``, ``"mv"``)
        once known."""
        return self._scheme_name

    @property
    def peer_name(self) -> str | None:
        """The peer's host name from its ASSOC message."""
        return self._peer_name

    @property
    def peer_certificate(self) -> CertInfo | None:
        """The trusted certificate that ended the peer's trail (CERT lit)."""
        return self._trusted_cert

    @property
    def queued_request(self) -> Field | None:
        """The request from the peer waiting for our next transmission (symmetric)."""
        return self._queued[0] if self._queued else None

    @property
    def offloading(self) -> Field | None:
        """The queued identity request handed to the identity worker (so that a request
        goes there once)."""
        return self._offloaded[0] if self._offloaded else None

    def offload_started(self, request: Field) -> None:
        """The queued ``request`` went to the identity worker: :meth:`identity_computed`
        brings its result."""
        self._offloaded = (request, _PENDING)

    def identity_computed(self, request: Field,
                          result: tuple[int, float, bytes] | None) -> bool:
        """The identity worker's ``result`` (:mod:`ntpauto.autokey.offload` status, CPU
        seconds, value) for the queued ``request``, or None: the private-key budget refused
        it (no response).  Kept for our next transmission; False, and dropped, when that
        request is no longer the one queued (the transmission went first, or a reset)."""
        if self._queued is None or self._queued[0] is not request:
            return False
        self._offloaded = (request, result)
        return True

    @property
    def challenge_outstanding(self) -> bool:
        """True while an identity challenge awaits its response."""
        return self._challenge is not None

    # -- resets ----------------------------------------------------------------------------

    def reset(self, at: int | None = None) -> None:
        """Clear all crypto state: the dance restarts with ASSOC.  ``at`` (monotonic
        seconds) restarts the refresh timer; the key list must be purged."""
        self._clear()
        self.keylist_generation += 1
        if at is not None:
            self.reset_at = at

    def error_reset_allowed(self, at: float, spacing: float = ERROR_RESET_SPACING) -> bool:
        """Rate limit for protocol-error resets: True, and ``at`` (monotonic seconds) is
        recorded, when no protocol-error reset was allowed in the last ``spacing`` seconds
        (never less than :data:`ERROR_RESET_SPACING`).  False: the caller drops the packet
        and keeps the association as it is."""
        last = self._error_reset_at
        if last is not None and at - last < max(spacing, ERROR_RESET_SPACING):
            return False
        self._error_reset_at = at
        return True

    def refresh_due(self, at: int) -> bool:
        """True when 2**19 s have passed since the last reset (monotonic seconds ``at``);
        the engine then calls :meth:`reset` (reference: checked on packet receipt).  The
        first call starts the timer."""
        if self.reset_at is None:
            self.reset_at = at
            return False
        return at - self.reset_at >= NTP_REFRESH

    def refetch_auto(self) -> bool:
        """Ask for the autokey values again (the poll process calls this when no packet has
        passed the autokey test for a few polls: the peer's key list changed and we missed
        its announcement).  AUTO goes dark; the values and the chain state stay, so the
        same values sent again light it without any other change.  True when AUTO was
        lit."""
        if not self._status & Flag.AUTO:
            return False
        self._status &= ~int(Flag.AUTO)
        return True

    # -- transmit --------------------------------------------------------------------------

    def next_fields(
        self,
        now: int,
        *,
        synchronized: bool,
        peer_leap: int = 0,
        own_associd: int | None = None,
        autokey_value: Field | None = None,
        own_request: bool = True,
    ) -> list[Field]:
        """The extension fields of our next packet to the peer (interop.md 8.1-8.3).

        ``now``: crypto time (0 when unsynchronised); ``synchronized``: our clock is
        synchronised; ``peer_leap``: the peer's leap indicator (symmetric COOK rule);
        ``own_associd``: our association ID (default the constructor's);
        ``autokey_value``: the signed AUTO response of our current key list
        (:meth:`HostCredentials.autokey_field`), used to answer the peer's AUTO request and
        pushed once to a symmetric peer after SIGN; ``own_request``: add a request of ours
        (an ephemeral association nobody has proven yet only answers).  Returns the queued
        response first, then at most one request."""
        associd = self.associd if own_associd is None else own_associd
        now = int(now)
        out: list[Field] = []
        if self._queued is not None:
            request, mode = self._queued
            offloaded, self._queued, self._offloaded = self._offloaded, None, None
            if self.responder is not None:
                if offloaded is not None and offloaded[0] is request \
                        and offloaded[1] is not _PENDING:
                    response = self._computed_response(request, offloaded[1], now)
                else:
                    response = self.responder.respond(
                        request, packet_mode=mode, now=now, own_associd=associd,
                        autokey_value=autokey_value, hcookie=self.hcookie)
                if response is not None:
                    out.append(response)
                    if request.code == AUTO and not response.error and autokey_value:
                        self._announced = (autokey_value.timestamp, autokey_value.value)
        if not own_request:
            return out
        request = self._next_request(now, synchronized, peer_leap, associd, autokey_value)
        if request is not None:
            out.append(request)
        return out

    def _computed_response(self, request: Field, result: tuple[int, float, bytes] | None,
                           now: int) -> Field | None:
        """The response to an identity request the worker answered (None: over budget)."""
        if result is None:
            return None
        status, seconds, value = result
        return self.responder.end_identity(request, status, value, seconds, now)

    def _next_request(self, now: int, synchronized: bool, peer_leap: int, associd: int,
                      autokey_value: Field | None) -> Field | None:
        st = self._status
        host = self.host
        if st == 0:
            return host.assoc_field(associd, response=False)
        if not st & Flag.CERT:
            if not self.issuer:
                return None
            return Field(code=CERT, associd=associd, timestamp=now, filestamp=host.update,
                         value=self.issuer.encode("ascii"))
        if not st & Flag.VRFY:
            return self._identity_request(now, associd)
        if self.symmetric:
            if synchronized and peer_leap != LEAP_UNSYNC and not st & Flag.COOK:
                return self._cook_request(associd)
            if not st & Flag.AUTO:
                return Field.short_form(AUTO, associd)
            if (st & Flag.SIGN and autokey_value is not None and autokey_value.signature
                    and (autokey_value.timestamp, autokey_value.value) != self._announced):
                self._announced = (autokey_value.timestamp, autokey_value.value)
                return attrs.evolve(autokey_value, associd=self.peer_associd, response=True)
        else:
            if not st & Flag.COOK:
                return self._cook_request(associd)
            if not st & Flag.AUTO:
                return Field.short_form(AUTO, self.peer_associd)
        if not synchronized:
            return None
        if not st & Flag.SIGN:
            if not host.update or not host.certificate_valid(now):
                return None
            return host.sign_request(associd)
        if not st & Flag.LEAP:
            return Field.short_form(LEAP, associd)
        return None

    def _cook_request(self, associd: int) -> Field:
        self._cook_pending = True
        return self.host.cook_request(associd)

    def _client_scheme(self) -> Any:
        """The identity scheme to challenge the peer with: among the schemes its status
        word advertises (IFF, GQ, MV in the reference's order, then plugins), the first for
        which we hold client parameters for the association's group (None: NULL request,
        :attr:`scheme_name` then names the first advertised).  The reference stops at the
        first advertised scheme; going on lets a server that adds a plugin key keep its
        IFF/GQ/MV clients."""
        if self._scheme is not None:
            return self._scheme
        group = self.ident
        first: str | None = None
        for factory in _identity_factories():
            if not self._status & int(factory.status_bit):
                continue
            name = str(factory.scheme_name)
            first = first or name
            if group is None:
                break
            scheme = self.host.client_scheme(name, group)
            if scheme is not None:
                self._scheme_name = name
                self._scheme = scheme.for_peer(self._trusted_cert)
                return self._scheme
        if first is not None:
            self._scheme_name = first
        return None

    def _identity_request(self, now: int, associd: int) -> Field:
        """The identity request (NULL without client parameters).  A scheme that fails
        (any exception: plugins are foreign code) is logged and, as when the parameters are
        missing, a NULL request goes out instead; the server's error response to it resets
        the association, so the dance starts again and VRFY stays dark."""
        self._challenge = None
        null = Field.short_form(NULL, associd)
        with log.failuresHandled("Cannot load the identity scheme to challenge {peer} with",
                                 peer=self._peer_name) as op:
            scheme = self._client_scheme()
        if op.failed or scheme is None:
            return null
        with log.failuresHandled("Identity scheme {scheme} failed to make a challenge for "
                                 "{peer}", scheme=self._scheme_name, peer=self._peer_name
                                 ) as op:
            challenge = bytes(scheme.make_challenge())
            code = int(scheme.message_code)
            filestamp = int(scheme.client_filestamp or 0)
        if op.failed:
            return null
        self._challenge = challenge
        f = Field(code=code, associd=associd, timestamp=now, filestamp=filestamp,
                  value=challenge)
        return self.host.sign_field(f) if now else f

    # -- receive ---------------------------------------------------------------------------

    def receive(self, fields: Iterable[Field], *, packet_mode: int, now: int,
                proven: bool) -> list[Verdict]:
        """Process the extension fields of a packet from the peer, in order, and return one
        :class:`~ntpauto.verdict.Verdict` per field processed; processing stops after the
        first failed one.  ``packet_mode`` is the packet's mode, ``now`` the crypto time and
        ``proven`` whether the packet passed the origin test (it answers our last transmit).

        State changes only on a verified verdict: a signed response whose timestamp is fresh
        and whose signature verifies, a certificate whose link verifies, an identity proof,
        or an unsigned field (ASSOC, CERT) that answers our request in a proven packet.  A
        protocol error is a failed verdict with ``Event.ERR``: the caller decides whether the
        dance restarts (never for a packet that is not proven)."""
        verdicts: list[Verdict] = []
        for f in fields:
            verdict = self._receive_one(f, packet_mode, int(now), proven)
            verdicts.append(verdict)
            if verdict.failed:
                break
        return verdicts

    def mobilised_by(self, f: Field) -> Verdict:
        """Take the peer's status word and name from the ASSOC response of the broadcast
        that mobilises a broadcast client (RFC 5906 section 11.4.2: the one unsigned field
        the RFC accepts without a request of ours)."""
        if self._status or not f.response or f.code != ASSOC:
            return _fail(Check.FIELD, "only an ASSOC response mobilises a broadcast client")
        return self._take_assoc(f, MODE_BROADCAST)

    def _receive_one(self, f: Field, mode: int, now: int, proven: bool) -> Verdict:
        if f.error:
            return _fail(Check.FIELD, f"{f.name} field with the error bit ({f.opcode:#06x})")
        if f.version != CRYPTO_VN:
            return _fail(Check.FIELD, f"{f.name} field of version {f.version}")
        if mode == MODE_BROADCAST and (not f.response or f.code not in (ASSOC, AUTO)):
            return _fail(Check.FIELD, f"{f.name} in a broadcast (broadcasts carry ASSOC and "
                                      "AUTO responses only)")
        if not f.response:
            return self._request(f, mode)
        if f.short and (f.code in _EMPTY_ANSWERS or f.code in _identity_codes()):
            # The responder's "nothing": no certificate for that name, not synchronised, or
            # an unproven source asking for costly work (amplification limit).  Nothing to
            # take, nothing wrong; the request repeats.
            return Verdict.na(Check.FIELD, f"empty {f.name} response",
                              Event.CRT if f.code == CERT else Event.LEN)
        code = f.code
        if code == ASSOC:
            return self._assoc(f, mode, proven)
        if code == CERT:
            return self._cert(f, now, proven)
        if code == COOK:
            return self._cook(f, mode)
        if code == AUTO:
            return self._auto(f)
        if code == LEAP:
            return self._leap(f, now)
        if code == SIGN:
            return self._sign(f, now)
        if code in _identity_codes():
            return self._identity(f)
        return _fail(Check.FIELD, f"unknown response code {code} ({f.opcode:#06x})")

    def _request(self, f: Field, mode: int) -> Verdict:
        """A request from a symmetric peer: queued for our next transmission (one at a
        time, a second is dropped); ignored in other modes.  Requests are unsigned by design
        and their answers public or paid from the private-key budget, except COOK, whose
        answer is our cookie: a COOK request must carry the peer's valid signature over the
        key we encrypt to."""
        if mode not in _SYMMETRIC:
            return Verdict.na(Check.FIELD, f"{f.name} request outside symmetric modes")
        if f.code == ASSOC:
            if self._status & Flag.CERT:
                return _fail(Check.FIELD, "ASSOC request after CERT: the peer restarted")
            if not self._status:
                verdict = self._take_assoc(f, mode)
            elif f.associd != self.peer_associd:
                return _fail(Check.FIELD, f"ASSOC request with association ID {f.associd}, "
                                          f"expected {self.peer_associd}")
            else:
                verdict = Verdict.na(Check.FIELD, "ASSOC request repeated")
            if not verdict.failed:
                self._queued = (f, mode)
            return verdict
        verdict = Verdict.na(Check.FIELD, f"{f.name} request (requests are unsigned)")
        if f.code == COOK:
            verdict = self._signed_by_peer(f)
            if not verdict.verified:
                return verdict
        if self._queued is None:
            self._queued = (f, mode)
        return verdict

    def _assoc(self, f: Field, mode: int, proven: bool) -> Verdict:
        if self._status:
            if f.associd != self.peer_associd:
                return _fail(Check.FIELD, f"ASSOC with association ID {f.associd}, expected "
                                          f"{self.peer_associd}")
            return Verdict.na(Check.FIELD, "ASSOC response after the dance began")
        if not proven:
            return _fail(Check.ORIGIN, "ASSOC response in a packet that does not answer ours",
                         Event.CRT)
        return self._take_assoc(f, mode)

    def _take_assoc(self, f: Field, mode: int) -> Verdict:
        """The peer's status word, name and association ID from its ASSOC message, at the
        start of the dance."""
        try:
            name = decode_assoc_name(f.value)
        except FieldError as exc:
            return _fail(Check.FIELD, exc.message, exc.event)
        word, event = apply_peer_status(self.host.status, f.filestamp, mode, _nid_digests())
        if event is not Event.OK:
            return _fail(Check.FIELD, f"ASSOC status word {f.filestamp:#x}", event)
        try:
            profile = get_profile(word_nid(word))
        except UnsupportedProfile:
            return _fail(Check.FIELD, f"ASSOC signature NID {word_nid(word)}", Event.MD)
        self._status = word
        self._peer_name = name
        self.issuer = name
        self.peer_associd = f.associd
        self._profile = profile
        self.hcookie = random_cookie(self.rng)
        if self.host.private:
            self._scheme_name = "pc"
        return Verdict.ok(Check.FIELD, f"ASSOC from {name}")

    def _verify_key(self) -> Any:
        if self.host.private and self._status & Flag.PRIV:
            return self.host.sign_key.public_key()
        return self.peer_key

    def _form(self, f: Field) -> Verdict | None:
        """The checks of a signed response that need no key, in the reference's order
        (interop.md 5.9): length, association ID, value and signature bounds, Timestamp
        != 0, Timestamp >= Filestamp.  None when they pass."""
        if f.short:
            return _fail(Check.FIELD, f"short {f.name} response", Event.LEN)
        expected = self.peer_associd if f.code == AUTO and not self.symmetric else self.associd
        if f.associd != expected:
            return _fail(Check.FIELD, f"{f.name} response for association {f.associd}, "
                                      f"expected {expected}")
        if not 0 < len(f.value) <= MAX_VALUE_LEN or len(f.signature) > MAX_VALUE_LEN:
            return _fail(Check.FIELD, f"{f.name} value of {len(f.value)} octets", Event.LEN)
        if f.timestamp == 0 or f.timestamp < f.filestamp:
            return _fail(Check.FRESHNESS, f"{f.name} Timestamp {f.timestamp} (Filestamp "
                                          f"{f.filestamp})", Event.TSP)
        return None

    def _fresh(self, kind: tuple[Any, ...], f: Field) -> Verdict | None:
        """Freshness, before any signature work (RFC 5906 section 8): a value of ``kind`` is
        accepted only with a Timestamp newer than the last accepted one of that kind.  The
        values a server signs once and sends again unchanged (CERT, LEAP and AUTO: the same
        stamps, value and signature, e.g. after our dance restarted) are known and verified
        already; COOK, SIGN and identity responses are signed for each request, so a copy is
        a replay.  None: new, verify its signature."""
        last = self._accepted.get(kind)
        if last is None or f.timestamp > last[0]:
            return None
        if kind[0] in _RESENT and (f.timestamp, f.filestamp, f.value, f.signature) == last:
            return Verdict.ok(Check.FRESHNESS, f"{f.name} accepted before, unchanged")
        return _fail(Check.FRESHNESS, f"{f.name} Timestamp {f.timestamp} is not newer than "
                                      f"{last[0]}", Event.TSP)

    def _accept(self, kind: tuple[Any, ...], f: Field) -> None:
        """Remember ``f`` as the last accepted value of ``kind`` (bounded: one per kind;
        certificates by the name asked for, at most :data:`MAX_TRAIL` of them)."""
        self._accepted[kind] = (f.timestamp, f.filestamp, f.value, f.signature)

    def _signed_by_peer(self, f: Field) -> Verdict:
        """``f``'s signature under the peer's key (or, PC, the group key): any valid
        signature of the peer's profile (the maximum-length rule applies only to what we
        send)."""
        key = self._verify_key()
        if not f.signature:
            return _fail(Check.SIGNATURE, f"unsigned {f.name}")
        if key is None or self._profile is None:
            return _fail(Check.SIGNATURE, f"signed {f.name} before the peer key is known")
        try:
            size = self._profile.max_signature_size(key)
        except TypeError:
            return _fail(Check.SIGNATURE, f"{f.name}: the peer key does not fit its profile",
                         Event.PUB)
        if len(f.signature) > size:
            return _fail(Check.SIGNATURE, f"{f.name} signature of {len(f.signature)} octets "
                                          f"(at most {size})", Event.SGL)
        if not self._profile.verify(key, f.signature, signed_octets(f)):
            return _fail(Check.SIGNATURE, f"{f.name} signature does not verify", Event.SIG)
        return Verdict.ok(Check.SIGNATURE, f"{f.name} signed by {self._peer_name}")

    def _verify(self, f: Field, kind: tuple[Any, ...], floor: int = 0) -> Verdict:
        """A signed response: its form, freshness (stamps not under ``floor``, the Timestamp
        newer than the last of its kind), then the signature (interop.md 5.9, stricter
        on freshness).  PROV lights on the first signature verified while VRFY is lit."""
        verdict = self._form(f)
        if verdict is None:
            verdict = self._fresh(kind, f)
        if verdict is None and floor and (f.timestamp < floor or f.filestamp < floor):
            verdict = _fail(Check.FRESHNESS, f"{f.name} stamps older than the filestamp "
                                             f"{floor}", Event.FSP)
        if verdict is None:
            verdict = self._signed_by_peer(f)
        if verdict.verified and self._status & Flag.VRFY:
            self._status |= Flag.PROV
        return verdict

    def _cert(self, f: Field, now: int, proven: bool) -> Verdict:
        form = self._form(f)
        if form is not None:
            return form
        if not proven:
            return _fail(Check.ORIGIN, "CERT response in a packet that does not answer ours",
                         Event.CRT)
        if self.issuer is None or self._status & Flag.CERT or len(self._trail) >= MAX_TRAIL:
            return _fail(Check.CERTIFICATE, "CERT response not asked for", Event.CRT)
        kind = (CERT, self.issuer)
        fresh = self._fresh(kind, f)
        if fresh is not None and fresh.failed:
            return fresh
        try:
            info = check_cert_response(f.value, f.filestamp, self.host.name, now)
        except CertificateError as exc:
            return _fail(Check.CERTIFICATE, exc.message, exc.event)
        if info.subject == self.host.name:
            return _fail(Check.CERTIFICATE, f"the certificate is for our own name "
                                            f"{info.subject}: the peer must have another "
                                            "host name", Event.CRT)
        if info.subject != self.issuer:
            return _fail(Check.CERTIFICATE, f"certificate for {info.subject}, asked for "
                                            f"{self.issuer}", Event.CRT)
        if self._last_cert is not None:
            event = check_trail_link(self._last_cert, info)
            if event is not Event.OK:
                return _fail(Check.CERTIFICATE, f"{self._last_cert.subject} is not issued "
                                                f"by {info.subject}", event)
        self._accept(kind, f)
        self._last_cert = info
        self._pending.append((info, f.filestamp))
        self._trail.append((info.subject, info.issuer))
        self.issuer = info.issuer
        if self.peer_key is None:
            self.peer_key = info.public_key
        if info.self_signed and info.trusted:
            # The trail ends at a trusted certificate: every link verified; only now do its
            # certificates enter our cache (and are signed there, once).
            self.host.install_certificates(self._pending, now)
            self._pending = []
            self._status |= Flag.CERT
            self._trusted_cert = info
            if self.ident is None or not self._status & _scheme_mask():
                self._status |= Flag.VRFY
                self._scheme_name = "tc"
        return Verdict.ok(Check.CERTIFICATE, f"{info.subject} issued by {info.issuer}")

    def _cook(self, f: Field, mode: int) -> Verdict:
        if not self._cook_pending:
            return _fail(Check.FIELD, "COOK response not asked for", Event.CKY)
        verdict = self._verify(f, (COOK,))
        if not verdict.verified:
            return verdict
        self._cook_pending = False  # one decryption per request, whatever the peer sends
        try:
            received = decrypt_cookie(f.value, self.host.host_key)
        except FieldError as exc:
            return _fail(Check.FIELD, exc.message, exc.event)
        self._accept((COOK,), f)
        self._cookie = combine_cookie(self.hcookie or 0, received, mode)
        self._status |= Flag.COOK
        self.keylist_generation += 1
        return verdict

    def _auto(self, f: Field) -> Verdict:
        verdict = self._verify(f, (AUTO,), floor=self.auto_filestamp)
        if not verdict.verified:
            return verdict
        if verdict.check is Check.FRESHNESS:
            # The values we hold, sent again: AUTO lights again (it is cleared to ask for
            # them when no packet passed the autokey test for a while); the key-ID chain
            # state stays where the accepted packets left it.
            self._status |= Flag.AUTO
            return verdict
        try:
            value = AutoValue.decode(f.value)
        except FieldError as exc:
            return _fail(Check.FIELD, exc.message, exc.event)
        self._accept((AUTO,), f)
        self._autokey = value
        self.auto_timestamp = f.timestamp
        self.auto_filestamp = f.filestamp
        self.pkeyid = value.keyid
        self.seq = value.seq
        self._status |= Flag.AUTO
        return verdict

    def _leap(self, f: Field, now: int) -> Verdict:
        verdict = self._verify(f, (LEAP,))
        if not verdict.verified:
            return verdict
        if verdict.check is Check.FRESHNESS:
            self._status |= Flag.LEAP  # the values we took already: nothing to install
            return verdict
        try:
            value = LeapValue.decode(f.value)
        except FieldError as exc:
            return _fail(Check.FIELD, exc.message, exc.event)
        self._accept((LEAP,), f)
        self.host.install_leap(value, now)
        self._status |= Flag.LEAP
        return verdict

    def _sign(self, f: Field, now: int) -> Verdict:
        verdict = self._verify(f, (SIGN,))
        if not verdict.verified:
            return verdict
        try:
            info = check_cert_response(f.value, f.filestamp, self.host.name, now)
        except CertificateError as exc:
            return _fail(Check.CERTIFICATE, exc.message, exc.event)
        own = self.host.certificate
        if info.subject != own.subject or \
                info.public_key.public_numbers() != own.public_key.public_numbers():
            return _fail(Check.CERTIFICATE, f"SIGN response for {info.subject}, not our own "
                                            "certificate", Event.CRT)
        signer = self._verify_key()
        try:
            profile = profile_for_certificate(info)
        except UnsupportedProfile:
            return _fail(Check.CERTIFICATE, "SIGN response in an unknown profile", Event.CRT)
        if signer is None or not profile.verify(signer, info.signature, info.tbs):
            return _fail(Check.CERTIFICATE, "our certificate is not signed by the peer",
                         Event.VFY)
        self._accept((SIGN,), f)
        self.host.install_certificate(info, f.filestamp, now, own=True)
        self._status |= Flag.SIGN
        return Verdict.ok(Check.CERTIFICATE, f"our certificate signed by {info.issuer}")

    def _identity(self, f: Field) -> Verdict:
        scheme = self._scheme
        challenge = self._challenge
        if challenge is None or scheme is None or f.code != int(scheme.message_code):
            return _fail(Check.IDENTITY, f"{f.name} response without our challenge", Event.ID)
        verdict = self._verify(f, (f.code,))
        if not verdict.verified:
            return verdict
        self._challenge = None
        outcome = _fail(Check.IDENTITY, f"{self._scheme_name} proof of {self._peer_name} "
                                        "does not verify", Event.ID)
        with log.failuresHandled("Identity scheme {scheme} failed to verify the response of "
                                 "{peer}", scheme=self._scheme_name, peer=self._peer_name):
            if not scheme.accepts_filestamp(f.filestamp):
                outcome = _fail(Check.IDENTITY, f"{f.name} Filestamp {f.filestamp} does not "
                                                "match our parameters", Event.FSP)
            elif scheme.verify_response(challenge, f.value) is True:
                outcome = Verdict.ok(Check.IDENTITY, f"{self._scheme_name} proof of "
                                                     f"{self._peer_name}")
        if not outcome.verified:
            log.warn("{peer}: {reason}", peer=self._peer_name, reason=outcome.reason)
            return outcome
        self._accept((f.code,), f)
        self._status |= Flag.VRFY
        return outcome


def _fail(check: Check, reason: str, event: Event = Event.ERR) -> Verdict:
    return Verdict.fail(check, reason, event)
