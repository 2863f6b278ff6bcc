"""The Autokey responder: builds the response to one request field.

RFC 5906 sections 10.2-10.9 (message responses) and interop.md sections 4.1/4.3
(cookies), 5 (message contents), 8.2 (the association-less server answers the first field of
a client request) and 8.5 (error responses).

One :class:`Responder` serves a host (:class:`~ntpauto.autokey.host.HostCredentials`): the
engine calls it association-less for client-mode requests (mode 3, replies in mode 4) and
the symmetric association calls it for the request the peer queued.  Requests are never
signature-checked (interop.md 5.9).  Responses echo the request's association ID,
except the ASSOC response to a symmetric-mode request, which carries our own ID
(interop.md 1.5).

========  ===================================================================================
request   response
========  ===================================================================================
ASSOC     our name, Timestamp = update, status word in the Filestamp slot, unsigned
CERT      the cached certificate for the requested name (cache lookup of interop.md
          5.3), Timestamp = update, Filestamp = the certificate's, signed; the 8-octet
          "nothing" response (no E bit) when there is none, when unsynchronised or before the
          first signature update; error response for a name of 0 or more than 512 octets
COOK      the cookie RSA-OAEP encrypted to the requester's PKCS#1 host key: the server cookie
          of (client, server) in client/server mode, the association's hcookie in symmetric
          modes; Timestamp = now, Filestamp = update, signed when now != 0; error response
          for a value that is not an RSA PKCS#1 public key
AUTO      the association's signed autokey values (given by the caller); error response when
          there are none (unknown association)
LEAP      the 12-octet leap values signed at the last update
SIGN      the requester's certificate signed by us (interop.md 5.7): Timestamp = now,
          Filestamp = the request's; error response when unsynchronised, the certificate is
          unusable, our certificate is not valid now, or the policy below refuses it
IFF/GQ/MV the identity scheme's response to the challenge (plugin schemes too, by their
          code); error response without the server key, for a malformed challenge, or when
          the scheme fails in any other way (the exception is logged with
          ``failuresHandled``, never propagated)
other     error response (E bit), including NULL
========  ===================================================================================

Error responses are the 8-octet short form with R and E set (e.g. ``0xC2030008``).

Size (interop.md 1.1): a response must fit a packet, at most :data:`MAX_RESPONSE_LEN`
(2048) octets between the 48-octet header and a MAC of at most 24, so that no reply is ever
longer than 2120 octets.  A response that would not fit gets the error response
(``Event.LEN``), decided before the work where its size is known beforehand: a COOK
response to a requester key over about 14000 bits (the value is as long as the modulus),
CERT of a huge cached certificate, SIGN of a certificate whose key and extensions alone
would not fit, an identity scheme's (a plugin's) overlong answer before it is signed; any
other response is checked once built.

Clogging (RFC 5906 section 12.2): with a ``budget``
(:class:`~ntpauto.autokey.budget.PrivateKeyBudget`), COOK, SIGN and identity requests are
admitted only while private-key CPU remains, and their time (and CERT's: a certificate's
signature is made once per signature update, then cached) is charged to it; a CERT request
for a certificate not signed yet (installed while an update was refused or unsynchronised)
is admitted like them.  A refused
request gets no response at all (:meth:`Responder.respond` returns None, ``last_error`` is
the :class:`~ntpauto.autokey.budget.BudgetExceeded`): an error response would make the
requester, ours or the reference, restart its whole dance (security CASES 43), while no
answer only makes it ask again at its next poll, keeping what it has.  COOK keys with a modulus over
16384 bits or an exponent over 32 bits are refused (their encryption would be a private-key
operation's worth of work).

SIGN policy (security CASES 38).  The reference signs any parsable certificate, including
one carrying EKU trustRoot (the sym capture has alice signing carol's trusted certificate).
Signing a trusted certificate gives nothing to the requester in the reference's trust model
(the copy is not self-signed, so it is never a trail root), but a server should not hand its
signature to strangers, so by default (``allow_trust_root=None``) we:

* sign a trustRoot request only when it arrived in a symmetric-mode packet (a peer, which
  the reference's symmetric dance needs), never for client-mode requests;
* when we belong to a group (our name is ``host@group``), sign only certificates whose
  subject is a member: its group equals ours or one of ``sign_groups``.

``allow_trust_root=True`` signs trustRoot requests in every mode (the reference), ``False``
never.  ``sign_groups=()`` with ``members_only=False`` lifts the membership rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from twisted.logger import Logger

from ntpauto.autokey.budget import BudgetExceeded, PrivateKeyBudget, check_cookie_key
from ntpauto.autokey.cookie import ServerSeed
from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CERT,
    COOK,
    LEAP,
    SIGN,
    VALUE_LEN,
    Field,
    pad4,
)
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.values import MAX_HOSTNAME, decode_public_key, encrypt_cookie
from ntpauto.events import AutokeyError, Event
from ntpauto.pki.certificates import CertificateError, parse_certificate, sign_request
from ntpauto.wire.packet import HEADER_LEN, MAX_EXTENSION_END, MODE_ACTIVE, MODE_PASSIVE

__all__ = ["MAX_RESPONSE_LEN", "MAX_VALUE_LEN", "Responder", "error_response"]

MAX_VALUE_LEN = 65511
"""reference: the largest value (or signature) length accepted (COOK requests need less)."""
MAX_RESPONSE_LEN = MAX_EXTENSION_END - HEADER_LEN
"""The largest response field a packet carries: the reference appends no field ending past
octet 2096 (interop.md 1.1), which leaves room for a MAC of 24 octets in 2120."""

_SYMMETRIC = (MODE_ACTIVE, MODE_PASSIVE)
_SIGNING = frozenset({COOK, SIGN})
"""Requests whose every answer is private-key work (with the identity schemes' codes)."""
_COSTLY = _SIGNING | {CERT}
"""...and CERT, whose answer is a signature made once per certificate and update."""

log = Logger()


def error_response(request: Field) -> Field:
    """The 8-octet error response to ``request``: R and E set, its code and association ID."""
    return Field.short_form(request.code, request.associd, response=True, error=True)


class Responder:
    """Answers Autokey requests for ``host`` (see the module docstring).

    ``seed`` is the server seed for client/server cookies (a fresh random
    :class:`~ntpauto.autokey.cookie.ServerSeed` by default).  :attr:`last_error` holds the
    reason of the last error response (an :class:`AutokeyError`), for counters and logs.
    """

    def __init__(
        self,
        host: HostCredentials,
        seed: ServerSeed | None = None,
        *,
        allow_trust_root: bool | None = None,
        sign_groups: Collection[str] = (),
        members_only: bool = True,
        budget: PrivateKeyBudget | None = None,
    ) -> None:
        self.host = host
        self.seed = seed if seed is not None else ServerSeed()
        self.allow_trust_root = allow_trust_root
        self.sign_groups = frozenset(sign_groups)
        self.members_only = members_only
        self.budget = budget
        """The private-key budget COOK, SIGN and identity requests pass (None: unlimited);
        refused requests get no response (BudgetExceeded in ``last_error``).  The host's
        signature updates for peers' values draw on it too (HostCredentials.refresh)."""
        if budget is not None:
            host.budget = budget
        self.last_error: AutokeyError | None = None
        self.requests: Counter[tuple[int, bool]] = Counter()
        """Requests answered, by (field code, error response?), for ntpauto.metrics."""
        self.key_operations: Counter[str] = Counter()
        """Public-key work done answering: ``signature`` (a response signed now),
        ``certificate_signature`` (SIGN), ``cookie_encryption``, ``identity_response``."""

    def costly(self, code: int) -> bool:
        """True for a request answered with private-key work (CERT, COOK, SIGN, identity):
        the ones charged to the budget and answered empty to an unproven source."""
        return code in _COSTLY or self.host.server_scheme(code) is not None

    def _budgeted(self, code: int) -> bool:
        """True for a request admitted only while the budget lasts: every costly one but
        CERT (its signature is cached after the first)."""
        return code in _SIGNING or self.host.server_scheme(code) is not None

    def server_cookie(self, client: str, server: str, now: int) -> int:
        """The client/server cookie for ``client`` (the request's source) and ``server``
        (the local address it arrived on).  The engine uses the same value for the MACs of
        packets without extension fields.  ``now`` = 0 (unsynchronised) reuses the last
        non-zero time, so losing synchronisation never refreshes the seed."""
        return self.seed.cookie(client, server, now, self.host.digest)

    def respond(
        self,
        request: Field,
        *,
        packet_mode: int,
        now: int,
        own_associd: int = 0,
        client: str | None = None,
        server: str | None = None,
        autokey_value: Field | None = None,
        hcookie: int | None = None,
    ) -> Field | None:
        """The response to ``request`` (``None`` for a field that is not a request).

        ``packet_mode`` is the mode of the packet that carried the request (3: association-
        less client/server; 1/2: symmetric), ``now`` the crypto time (NTP seconds, 0 when
        unsynchronised), ``own_associd`` our association ID for the peer (symmetric ASSOC
        responses), ``client``/``server`` the request's source and destination addresses
        (client/server COOK), ``autokey_value`` the association's signed AUTO response
        (:meth:`HostCredentials.autokey_field`) and ``hcookie`` the association's own
        symmetric cookie."""
        if request.response or request.error:
            return None
        return self._counted(request, lambda: self._respond(
            request, packet_mode, int(now), own_associd, client, server, autokey_value,
            hcookie))

    def _counted(self, request: Field, answer: Callable[[], Field]) -> Field | None:
        """``answer()``, counted in :attr:`requests`: an AutokeyError becomes the error
        response and BudgetExceeded no response, either kept in :attr:`last_error`."""
        self.last_error = None
        try:
            response = answer()
            if response is not None and response.length > MAX_RESPONSE_LEN:
                raise AutokeyError(Event.LEN, f"{request.name} response of {response.length} "
                                              "octets does not fit a packet")
        except BudgetExceeded as exc:
            self.last_error = exc
            self.requests[request.code, True] += 1
            return None  # no answer: asked again next poll (module docstring)
        except AutokeyError as exc:
            self.last_error = exc
            self.requests[request.code, True] += 1
            return error_response(request)
        self.requests[request.code, False] += 1
        return response

    def _respond(self, request: Field, mode: int, now: int, own_associd: int,
                 client: str | None, server: str | None, autokey_value: Field | None,
                 hcookie: int | None) -> Field:
        """:meth:`_answer`, through the private-key budget for the costly requests."""
        budget = self.budget
        code = request.code
        if budget is not None and self.costly(code):
            if self._budgeted(code):
                budget.admit(request.name, client)
            with budget.measure():
                return self._answer(request, mode, now, own_associd, client, server,
                                    autokey_value, hcookie)
        return self._answer(request, mode, now, own_associd, client, server, autokey_value,
                            hcookie)

    def _answer(self, request: Field, mode: int, now: int, own_associd: int,
                client: str | None, server: str | None, autokey_value: Field | None,
                hcookie: int | None) -> Field:
        code = request.code
        if code == ASSOC:
            associd = own_associd if mode in _SYMMETRIC else request.associd
            return self.host.assoc_field(associd, response=True)
        if code == CERT:
            return self._cert(request, now, client)
        if code == COOK:
            return self._cook(request, mode, now, client, server, hcookie)
        if code == AUTO:
            if autokey_value is None or not autokey_value.value:
                raise AutokeyError(Event.ERR, "no autokey values for this association")
            return attrs.evolve(autokey_value, associd=request.associd, response=True,
                                error=False)
        if code == LEAP:
            return self.host.leap_field(request.associd)
        if code == SIGN:
            return self._sign(request, mode, now)
        scheme = self.host.server_scheme(code)
        if scheme is not None:
            return self._identity(request, scheme, now)
        raise AutokeyError(Event.ERR, f"no response to a {request.name} request")

    def _fit(self, request: Field, value_len: int, signed: bool) -> None:
        """Refuse (``Event.LEN``) the response to ``request`` when a value of ``value_len``
        octets, with our signature if ``signed``, would not fit a packet."""
        length = VALUE_LEN + pad4(value_len) + (pad4(self.host.signature_size) if signed else 0)
        if length > MAX_RESPONSE_LEN:
            raise AutokeyError(Event.LEN, f"{request.name} response of {length} octets would "
                                          "not fit a packet")

    def _cert(self, request: Field, now: int, client: str | None) -> Field:
        if not 1 <= len(request.value) <= MAX_HOSTNAME:
            raise AutokeyError(Event.LEN, f"CERT request name of {len(request.value)} octets")
        nothing = Field.short_form(CERT, request.associd, response=True)
        try:
            name = request.value.decode("ascii")
        except UnicodeDecodeError:
            return nothing
        entry = self.host.cache.lookup(name)
        if entry is None or not now or not self.host.update:
            return nothing
        self._fit(request, len(entry.cert.der), signed=True)
        if self.budget is not None and not self.host.has_signature(entry):
            self.budget.admit(request.name, client)  # its first CERT response signs it
        return self.host.certificate_field(entry, request.associd)

    def _cook(self, request: Field, mode: int, now: int, client: str | None,
              server: str | None, hcookie: int | None) -> Field:
        if not 0 < len(request.value) < MAX_VALUE_LEN:
            raise AutokeyError(Event.LEN, f"COOK request value of {len(request.value)} octets")
        key = decode_public_key(request.value)
        check_cookie_key(key)
        self._fit(request, (key.key_size + 7) // 8, signed=bool(now))  # before encrypting
        if mode in _SYMMETRIC:
            if hcookie is None:
                raise AutokeyError(Event.CKY, "no symmetric cookie for this association")
            cookie = hcookie
        else:
            if client is None or server is None:
                raise AutokeyError(Event.CKY, "client/server cookie needs both addresses")
            cookie = self.server_cookie(client, server, now)
        try:
            value = encrypt_cookie(cookie, key)
        except ValueError as exc:
            raise AutokeyError(Event.CKY, f"cannot encrypt the cookie: {exc}") from None
        self.key_operations["cookie_encryption"] += 1
        f = Field(code=COOK, response=True, associd=request.associd, timestamp=now,
                  filestamp=self.host.update, value=value)
        return self._signed(f) if now else f

    def _signed(self, f: Field) -> Field:
        """``f`` signed with the host key (counted in :attr:`key_operations`)."""
        self.key_operations["signature"] += 1
        return self.host.sign_field(f)

    def _sign(self, request: Field, mode: int, now: int) -> Field:
        if not now:
            raise AutokeyError(Event.TSP, "cannot sign a certificate while unsynchronised")
        if not 0 < len(request.value) <= MAX_VALUE_LEN:
            raise AutokeyError(Event.LEN, f"SIGN request value of {len(request.value)} octets")
        info = parse_certificate(request.value)
        self._check_member(info.subject)
        self._fit(request, _signed_certificate_floor(info, self.host.signature_size),
                  signed=True)
        allow = self.allow_trust_root
        if allow is None:
            allow = mode in _SYMMETRIC
        host = self.host
        try:
            der = sign_request(request.value, host.name, host.sign_key, host.profile, now,
                               host.certificate, allow_trust_root=allow)
        except CertificateError:
            raise
        except (TypeError, ValueError) as exc:
            raise AutokeyError(Event.CRT, f"cannot sign {info.subject}: {exc}") from None
        self.key_operations["certificate_signature"] += 1
        self._fit(request, len(der), signed=True)
        f = Field(code=SIGN, response=True, associd=request.associd, timestamp=now,
                  filestamp=request.filestamp, value=der)
        return self._signed(f)

    def _check_member(self, subject: str) -> None:
        own = self.host.group
        if not self.members_only or own is None:
            return
        _, at, group = subject.partition("@")
        if not at or (group != own and group not in self.sign_groups):
            raise AutokeyError(Event.CRT, f"refusing to sign {subject}: not a member of "
                                          f"group {own}")

    def _identity(self, request: Field, scheme: Any, now: int) -> Field:
        _check_challenge(request)
        refused: ValueError | None = None
        value = b""
        with log.failuresHandled("Identity scheme {scheme} failed to answer a {request} "
                                 "challenge", scheme=getattr(scheme, "name", "?"),
                                 request=request.name) as op:
            try:
                value = bytes(scheme.respond(request.value))
            except ValueError as exc:
                refused = exc
        if refused is not None:
            raise AutokeyError(Event.ID, f"{request.name} challenge refused: {refused}")
        if op.failed:
            raise AutokeyError(Event.ID, f"{request.name}: the identity scheme failed")
        return self._identity_field(request, scheme, value, now)

    def _identity_field(self, request: Field, scheme: Any, value: bytes, now: int) -> Field:
        """The identity response carrying ``value``, signed (when synchronised)."""
        if not 0 < len(value) <= MAX_VALUE_LEN:
            raise AutokeyError(Event.ID, f"{request.name}: the identity scheme answered "
                                         f"{len(value)} octets")
        self._fit(request, len(value), signed=bool(now))
        self.key_operations["identity_response"] += 1
        f = Field(code=request.code, response=True, associd=request.associd, timestamp=now,
                  filestamp=int(scheme.server_filestamp or 0), value=value)
        return self._signed(f) if now else f

    # -- identity responses computed elsewhere (ntpauto.autokey.offload) ------------------

    def begin_identity(self, request: Field, source: str | None = None) -> None:
        """Admit an identity request (from ``source``) whose value a worker will compute:
        the checks the in-process answer makes first (AutokeyError: answer with the error
        response) and the private-key budget (BudgetExceeded: no reply).  Counted when it
        ends."""
        if self.host.server_scheme(request.code) is None:
            raise AutokeyError(Event.ERR, f"no response to a {request.name} request")
        _check_challenge(request)
        if self.budget is not None:
            try:
                self.budget.admit(request.name, source)
            except BudgetExceeded as exc:  # counted as the in-process refusal is
                self.last_error = exc
                self.requests[request.code, True] += 1
                raise

    def end_identity(self, request: Field, status: int, payload: bytes, seconds: float,
                     now: int) -> Field | None:
        """The response to an identity request admitted by :meth:`begin_identity`, from the
        worker's result (:mod:`ntpauto.autokey.offload` status, value or message, CPU
        seconds, which the budget is charged): signed, or the error response."""
        return self._counted(request, lambda: self._end_identity(request, status, payload,
                                                                 seconds, now))

    def _end_identity(self, request: Field, status: int, payload: bytes, seconds: float,
                      now: int) -> Field:
        from ntpauto.autokey.offload import OK, REFUSED

        scheme = self.host.server_scheme(request.code)
        if status == REFUSED:
            raise AutokeyError(Event.ID, f"{request.name} challenge refused: "
                                         f"{payload.decode('utf-8', 'replace')}")
        if status != OK or scheme is None:
            raise AutokeyError(Event.ID, f"{request.name}: the identity scheme failed")
        budget = self.budget
        if budget is None:
            return self._identity_field(request, scheme, payload, now)
        budget.charge(seconds)
        with budget.measure():
            return self._identity_field(request, scheme, payload, now)


def _signed_certificate_floor(info: Any, signature_size: int) -> int:
    """Octets the certificate we would sign for ``info`` takes at least: its public key and
    extensions are copied (:func:`~ntpauto.pki.certificates.sign_request`) and it carries
    our signature."""
    key = info.public_key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return len(key) + sum(len(e.value) for e in info.extensions) + signature_size


def _check_challenge(request: Field) -> None:
    if not 0 < len(request.value) <= MAX_VALUE_LEN:
        raise AutokeyError(Event.LEN, f"{request.name} challenge of {len(request.value)} "
                                      "octets")
