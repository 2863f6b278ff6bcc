"""An NTS client association's state (RFC 8915 sections 5.7 and 9.1), sans-I/O.

The keys and cookies of the last NTS-KE exchange, and the request in flight.  Each request
spends one cookie (never sent twice) under a fresh 32-octet unique identifier and a fresh
nonce, and asks with cookie placeholders for as many new cookies as the jar lacks; so two
requests share nothing an observer could link (section 9.1), and the jar stays full while
the server answers.  A reply counts only when its unique identifier is the one of our
request in flight and its authenticator verifies under the server-to-client key; the first
such reply uses the identifier up (a second copy, or a replay, fails).

Re-keying (a new NTS-KE exchange) is due when the jar is empty (a server that stopped
answering has used it up), when an NTS NAK answered our request and no authentic reply did
(the server no longer opens our cookies: it rotated its keys or lost them), or when the keys
are older than :data:`REFRESH` (chrony's ``ntsrefresh`` default).
"""

from __future__ import annotations

import hmac
import os
from collections import deque

from attrs import frozen

from ntpauto.nts import fields as f
from ntpauto.nts.aead import AeadError, SessionKeys
from ntpauto.nts.records import MAX_COOKIES, KeResponse
from ntpauto.verdict import Check, Verdict
from ntpauto.wire.packet import KISS_NTSN, Packet

__all__ = ["MAX_PLACEHOLDERS", "REFRESH", "NtsSession", "Rekey"]

REFRESH = 14 * 86400.0
"""Seconds after which the keys are refreshed with a new NTS-KE exchange."""
MAX_PLACEHOLDERS = MAX_COOKIES - 1
"""Placeholders a request carries at most: with its cookie, eight new cookies."""


@frozen
class Rekey:
    """Why a new NTS-KE exchange is due."""

    reason: str


class NtsSession:
    """The NTS side of one client association.  ``host`` is the NTS-KE server's name as
    configured (what its certificate must name), ``port`` its NTS-KE port, ``address`` its
    address (None: ``host`` is one) and ``ntp_port`` the NTP port to use unless the server
    negotiates another."""

    def __init__(self, host: str, port: int, address: str | None = None,
                 ntp_port: int = 123) -> None:
        self.host = host
        self.port = port
        self.address = address or host
        self.ntp_port = ntp_port
        self.keys: SessionKeys | None = None
        self.cookies: deque[bytes] = deque(maxlen=MAX_COOKIES)
        self.keyed_at: float | None = None
        """Reactor seconds of the last NTS-KE exchange that gave keys."""
        self.ke_exchanges = 0
        self._unique_id: bytes | None = None
        self._nak = False
        self._answered = True
        self.sent_unique_ids = 0
        """Requests sent under these keys (each with its own identifier and cookie)."""

    # -- keys -----------------------------------------------------------------------------

    def keyed(self, response: KeResponse, keys: SessionKeys, now: float) -> None:
        """Install what an NTS-KE exchange gave: its keys and cookies."""
        self.keys = keys
        self.cookies.clear()
        self.cookies.extend(response.cookies)
        self.keyed_at = now
        self.ke_exchanges += 1
        self._unique_id = None
        self._nak = False
        self._answered = True

    def rekey_due(self, now: float) -> Rekey | None:
        """Why the association needs a new NTS-KE exchange before its next request."""
        if self.keys is None:
            return Rekey("no keys yet")
        if self._nak and not self._answered:
            return Rekey("NTS NAK: the server no longer takes our cookies")
        if not self.cookies:
            return Rekey("no cookie left")
        if self.keyed_at is not None and now - self.keyed_at >= REFRESH:
            return Rekey("the keys are due for refresh")
        return None

    def forget(self) -> None:
        """Drop the keys and cookies (a new exchange is needed)."""
        self.keys = None
        self.cookies.clear()
        self._unique_id = None

    # -- requests -------------------------------------------------------------------------

    def request(self, header: bytes) -> bytes:
        """``header`` with the NTS fields of a new request (the caller checked
        :meth:`rekey_due`): a fresh unique identifier, the oldest cookie, placeholders for
        the cookies the jar lacks, and the authenticator."""
        assert self.keys is not None and self.cookies
        cookie = self.cookies.popleft()
        self._unique_id = os.urandom(f.MIN_UNIQUE_ID)
        self._nak = False
        self._answered = False
        self.sent_unique_ids += 1
        placeholders = min(MAX_COOKIES - len(self.cookies) - 1, MAX_PLACEHOLDERS)
        data = (header + f.field(f.UNIQUE_IDENTIFIER, self._unique_id)
                + f.field(f.COOKIE, cookie)
                + f.field(f.COOKIE_PLACEHOLDER, bytes(len(cookie))) * placeholders)
        return f.seal(data, self.keys.c2s, os.urandom(f.NONCE_LENGTH))

    # -- replies --------------------------------------------------------------------------

    def check(self, pkt: Packet) -> Verdict:
        """The NTS verdict on a reply: verified (its new cookies are taken and our unique
        identifier is used up), not applicable for an NTS NAK that echoes our identifier
        (:meth:`nak` decides once the origin test passed), or failed."""
        if not pkt.nts or self.keys is None:
            return Verdict.fail(Check.NTS, "no NTS fields" if self.keys else "no keys")
        try:
            fields = f.response_fields(pkt)
        except f.NtsFieldError as e:
            return Verdict.fail(Check.NTS, str(e))
        expected = self._unique_id
        if expected is None or fields.unique_id is None \
                or not hmac.compare_digest(fields.unique_id, expected):
            return Verdict.fail(Check.NTS, "not the unique identifier of our request")
        if fields.auth is None:
            header = pkt.header
            if header.stratum == 0 and header.refid == KISS_NTSN:
                return Verdict.na(Check.NTS, "NTS NAK")
            return Verdict.fail(Check.NTS, "no authenticator")
        try:
            plaintext = fields.auth.open(self.keys.s2c, pkt.data)
            cookies = [body for kind, body in f.inner_fields(plaintext)
                       if kind == f.COOKIE and 0 < len(body) <= f.MAX_COOKIE
                       and not len(body) % 4]
        except (AeadError, f.NtsFieldError) as e:
            return Verdict.fail(Check.NTS, f"authenticator: {e}")
        self._unique_id = None
        self._answered = True
        self.cookies.extend(cookies[:MAX_COOKIES - len(self.cookies)])
        return Verdict.ok(Check.NTS, f"{len(cookies)} new cookies")

    def nak(self) -> None:
        """An NTS NAK that echoes our request's identifier and answers our last transmit:
        unless an authentic reply comes for this request, re-key before the next."""
        self._nak = True
        self._unique_id = None

