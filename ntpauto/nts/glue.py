"""The engine's NTS client associations: when they may send, and their NTS-KE exchanges.

The engine stays sans-I/O: an association that needs keys (no keys yet, an empty cookie jar,
an NTS NAK with no authentic reply, keys due for refresh: :meth:`NtsSession.rekey_due
<ntpauto.nts.session.NtsSession.rekey_due>`) sends nothing and asks for an NTS-KE exchange,
a :class:`KeRequest` handed to :attr:`NtsClients.starter` (the Twisted layer,
:mod:`ntpauto.nts.ke_client`) or, with no starter, left in :attr:`NtsClients.outbox`.  The
result comes back through :meth:`NtsClients.keyed` (the association sends at once) or
:meth:`NtsClients.failed` (it tries again after an exponential back-off, RFC 8915 section
4.2, from :data:`RETRY_MIN` up to :data:`RETRY_MAX` seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import frozen
from twisted.logger import Logger

from ntpauto.nts.aead import SessionKeys
from ntpauto.nts.records import KeResponse

if TYPE_CHECKING:
    from ntpauto.engine import Engine
    from ntpauto.ntp.peer import Association

__all__ = ["RETRY_MAX", "RETRY_MIN", "KeRequest", "NtsClients"]

RETRY_MIN = 16.0
"""Seconds before the first retry of a failed NTS-KE exchange (chrony's first back-off)."""
RETRY_MAX = 4096.0
"""The longest wait between two attempts."""

log = Logger()


@frozen
class KeRequest:
    """An NTS-KE exchange an association needs: with ``host`` (the name its certificate must
    carry) on TCP ``port``, and why."""

    associd: int
    host: str
    port: int
    reason: str


class NtsClients:
    """The NTS side of one engine's client associations (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.starter: Callable[[KeRequest], None] | None = None
        """Starts an exchange (the Twisted layer); None: requests wait in :attr:`outbox`."""
        self.outbox: list[KeRequest] = []
        self.in_flight: dict[int, KeRequest] = {}
        self._failures: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self.last_error: dict[int, str] = {}
        """The last failed exchange's reason, by association."""

    def ready(self, assoc: Association, now: float) -> bool:
        """May ``assoc`` send an NTS request at this poll?  When not, an exchange is
        started (unless one runs or its retry time has not come)."""
        session = assoc.nts
        due = session.rekey_due(now)
        if due is None:
            return True
        counters = self.engine.counters
        if session.keys is not None:
            session.forget()
            counters["nts_rekey"] += 1
            log.info("NTS association {associd} with {host}: new keys needed: {reason}",
                     associd=assoc.associd, host=session.host, reason=due.reason)
        associd = assoc.associd
        if associd in self.in_flight or now < self._retry_at.get(associd, now):
            return False
        request = KeRequest(associd, session.host, session.port, due.reason)
        self.in_flight[associd] = request
        counters["nts_ke_started"] += 1
        if self.starter is not None:
            self.starter(request)
        else:
            self.outbox.append(request)
        return False

    def keyed(self, associd: int, response: KeResponse, keys: SessionKeys,
              address: tuple[str, int] | None, now: float) -> None:
        """An exchange succeeded: the association takes its keys and cookies (at the NTP
        ``address`` the server negotiated, when it differs) and sends at once."""
        self.in_flight.pop(associd, None)
        self._failures.pop(associd, None)
        self._retry_at.pop(associd, None)
        self.last_error.pop(associd, None)
        engine = self.engine
        assoc = engine.associations.get(associd)
        if assoc is None or assoc.nts is None:
            return
        assoc.nts.keyed(response, keys, now)
        if address is not None and address != assoc.address:
            engine.readdress(assoc, address)
        engine.counters["nts_ke_done"] += 1
        assoc.nextdate = now
        engine.timers_changed()
        log.info("NTS association {associd} with {host}: {count} cookies, AEAD {aead}",
                 associd=associd, host=assoc.nts.host, count=len(response.cookies),
                 aead=keys.aead)

    def failed(self, associd: int, reason: str, now: float) -> None:
        """An exchange failed: the association tries again after the back-off."""
        self.in_flight.pop(associd, None)
        engine = self.engine
        engine.counters["nts_ke_failed"] += 1
        assoc = engine.associations.get(associd)
        if assoc is None or assoc.nts is None:
            return
        failures = self._failures[associd] = self._failures.get(associd, 0) + 1
        retry = min(RETRY_MIN * 2 ** (failures - 1), RETRY_MAX)
        self._retry_at[associd] = assoc.nextdate = now + retry
        self.last_error[associd] = reason
        engine.timers_changed()
        log.warn("NTS-KE with {host} port {port} failed ({reason}); next try in {retry:g} s",
                 host=assoc.nts.host, port=assoc.nts.port, reason=reason, retry=retry)
