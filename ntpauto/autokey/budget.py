"""The private-key budget: a global cap on the CPU the Autokey responder spends on expensive
responses, the clogging defence of RFC 5906 section 12.2.

Every response that uses the host's private key (or does comparable bignum work) costs the
server real CPU on the reactor thread: measured on the reference machine (one core, Python
3.11, OpenSSL 3), an RSA-2048 signature is ~0.3 ms, RSA-4096 ~1.8 ms, an IFF-2048 response
~0.5 ms, GQ-2048 ~30 ms and MV-2048 ~12 ms (with :mod:`ntpauto.identity.fixedbase`;
``benchmarks/identity.py`` prints them).  A flood of cheap requests asking for them
would otherwise starve everything else, so the budget is counted in *seconds of private-key
CPU per second of wall time*: a token bucket holding at most ``burst`` seconds, refilled at
``share`` seconds per second (default 0.2: a fifth of one core).  The bucket may go into
debt by one operation (its cost is known only afterwards, by measurement with the injected
monotonic ``timer``), and nothing is admitted while it is in debt.  Over any window of ``W``
seconds the responder therefore spends at most ``burst + share * W`` plus one operation.

The identity schemes are pure-Python ``pow`` holding the GIL for their whole duration, so
the daemon computes the stateless server's identity responses in a worker process
(:mod:`ntpauto.autokey.offload`); their CPU seconds, measured there, are charged here all
the same.  Signatures (about a millisecond) stay on the reactor thread.  What bounds a
single operation is the size of the parameters: the host's own keys and identity
parameters (the operator's choice: GQ/MV-2048 are the most expensive) and the
requester-supplied values, which :func:`check_cookie_key` caps.

Fairness: many real-address sources asking for expensive responses, each inside its
``discard`` rate, would share the budget with a new honest client as equals, and delay its
dance by minutes.  So the lower half of the bucket is a *reserve* for fresh sources: while
the balance is at or below ``burst / 2`` only a source that was granted fewer than
``fresh_ops`` operations (default 3: one dance's identity, COOK and SIGN) in the last
``fresh_window`` seconds (default 300) is admitted.  A flooder spends its allowance once
and then only competes for what refills above the reserve; a client starting its dance
finds the reserve.  The per-source grant times live in a bounded table (``sources``,
least recently granted evicted).  Requests without a source (a symmetric peer's, answered
in its association: those are few and bounded by the association table) count as fresh.

The budget is sans-I/O: no reactor, only the injected timer (tests pass a fake one).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ntpauto.events import AutokeyError, Event

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_FRESH_OPS",
    "DEFAULT_FRESH_WINDOW",
    "DEFAULT_SOURCES",
    "DEFAULT_SHARE",
    "MAX_COOKIE_EXPONENT_BITS",
    "MAX_COOKIE_KEY_BITS",
    "BudgetExceeded",
    "PrivateKeyBudget",
    "check_cookie_key",
]

DEFAULT_SHARE = 0.2
"""Seconds of private-key CPU per second: at most a fifth of one core."""
DEFAULT_BURST = 0.5
"""Seconds of private-key CPU that may be spent at once after a quiet spell."""
DEFAULT_FRESH_OPS = 3
"""Operations a source may be granted within the window and still draw on the reserve."""
DEFAULT_FRESH_WINDOW = 300.0
"""Seconds over which a source's grants are counted."""
DEFAULT_SOURCES = 4096
"""Sources whose grant times are kept (the least recently granted is forgotten)."""
MAX_COOKIE_KEY_BITS = 16384
"""Largest requester RSA modulus a COOK response is encrypted to (OpenSSL's own limit; the
reference's keys are 512 to 2048 bits).  Costs ~1.4 ms with e = 65537.  The responder
refuses smaller ones too, before encrypting, when the response would not fit a packet
(about 15700 bits with a 512-bit host key)."""
MAX_COOKIE_EXPONENT_BITS = 32
"""Largest requester public exponent: OpenSSL accepts an exponent as large as the modulus
up to 3072 bits, which makes one OAEP encryption as slow as a private-key operation (6 ms
at 3072 bits); every real key uses 3 or 65537."""


class BudgetExceeded(AutokeyError):
    """The private-key budget is spent: the request gets an unsigned error response."""

    def __init__(self, message: str = "private-key budget exceeded") -> None:
        super().__init__(Event.ERR, message)


def check_cookie_key(key: object) -> None:
    """Refuse (``AutokeyError`` with ``Event.PUB``) a COOK request's RSA public key whose
    modulus or exponent would make the encryption a clogging tool."""
    numbers = key.public_numbers()  # type: ignore[attr-defined]
    if numbers.n.bit_length() > MAX_COOKIE_KEY_BITS:
        raise AutokeyError(Event.PUB, f"COOK key of {numbers.n.bit_length()} bits is too large")
    if numbers.e.bit_length() > MAX_COOKIE_EXPONENT_BITS:
        raise AutokeyError(Event.PUB, f"COOK key exponent of {numbers.e.bit_length()} bits "
                                      "is too large")


class PrivateKeyBudget:
    """A token bucket of private-key CPU seconds (see the module docstring).

    ``share``: seconds of CPU per second of wall time (``None``: unlimited, the operations
    are still measured); ``burst``: the bucket size in seconds; ``timer``: a monotonic clock
    in seconds (``time.perf_counter``), used to refill the bucket, to measure each operation
    and to age the grants; ``fresh_ops``, ``fresh_window`` and ``sources``: the reserve for
    fresh sources (module docstring).  Counters: :attr:`granted`, :attr:`refused` (of which
    :attr:`refused_reserve`: refused only because the source is not fresh), :attr:`spent`
    (seconds) and :attr:`longest` (the slowest single operation, seconds).
    """

    def __init__(self, share: float | None = DEFAULT_SHARE, burst: float = DEFAULT_BURST,
                 timer: Callable[[], float] = time.perf_counter, *,
                 fresh_ops: int = DEFAULT_FRESH_OPS,
                 fresh_window: float = DEFAULT_FRESH_WINDOW,
                 sources: int = DEFAULT_SOURCES) -> None:
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"private-key share {share} is not in (0, 1]")
        if burst <= 0:
            raise ValueError(f"private-key burst {burst} must be positive")
        if fresh_ops < 1 or fresh_window <= 0 or sources < 1:
            raise ValueError("the fresh-source reserve needs positive settings")
        self.share = share
        self.burst = float(burst)
        self.reserve = self.burst / 2
        """At or below this balance only fresh sources are admitted."""
        self.timer = timer
        self.balance = float(burst)
        self._last = timer()
        self.fresh_ops = fresh_ops
        self.fresh_window = float(fresh_window)
        self.sources = sources
        self._grants: OrderedDict[str, list[float]] = OrderedDict()
        self.granted = 0
        self.refused = 0
        self.refused_reserve = 0
        self.spent = 0.0
        self.longest = 0.0

    def _refill(self) -> None:
        now = self.timer()
        if self.share is not None and now > self._last:
            self.balance = min(self.burst, self.balance + (now - self._last) * self.share)
        self._last = max(self._last, now)

    def allow(self, source: str | None = None) -> bool:
        """May one more private-key operation for ``source`` (the requester's address, None
        when unknown) run now?  Counts the answer and records the grant."""
        self._refill()
        if self.share is None or self.balance > self.reserve:
            return self._grant(source)
        if self.balance > 0:
            if self._fresh(source):
                return self._grant(source)
            self.refused_reserve += 1
        self.refused += 1
        return False

    def admit(self, what: str = "request", source: str | None = None) -> None:
        """:meth:`allow`, raising :class:`BudgetExceeded` when refused."""
        if not self.allow(source):
            raise BudgetExceeded(f"private-key budget exceeded: {what} refused")

    def _fresh(self, source: str | None) -> bool:
        """True when ``source`` was granted fewer than ``fresh_ops`` operations within the
        window (None: always)."""
        if source is None:
            return True
        times = self._grants.get(source)
        if times is None:
            return True
        horizon = self._last - self.fresh_window
        while times and times[0] <= horizon:
            times.pop(0)
        return len(times) < self.fresh_ops

    def _grant(self, source: str | None) -> bool:
        self.granted += 1
        if source is not None:
            grants = self._grants
            times = grants.get(source)
            if times is None:
                if len(grants) >= self.sources:
                    grants.popitem(last=False)
                times = grants[source] = []
            else:
                grants.move_to_end(source)
            times.append(self._last)
            del times[:-self.fresh_ops]  # only the newest ones decide
        return True

    def charge(self, seconds: float) -> None:
        """Record ``seconds`` of private-key CPU spent (e.g. a signature update)."""
        seconds = max(0.0, seconds)
        self._refill()
        self.balance -= seconds
        self.spent += seconds
        self.longest = max(self.longest, seconds)

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Time the enclosed operation with :attr:`timer` and :meth:`charge` it."""
        start = self.timer()
        try:
            yield
        finally:
            self.charge(self.timer() - start)

    def stats(self) -> dict[str, float | int | None]:
        """The counters and settings, for status displays."""
        self._refill()
        return {"share": self.share, "burst": self.burst, "balance": self.balance,
                "granted": self.granted, "refused": self.refused,
                "refused_reserve": self.refused_reserve, "spent": self.spent,
                "longest": self.longest, "sources": len(self._grants)}
