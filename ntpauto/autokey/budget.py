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

The budget is sans-I/O: no reactor, only the injected timer (tests pass a fake one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ntpauto.autokey.errors import AutokeyError, Event

__all__ = [
    "DEFAULT_BURST",
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
MAX_COOKIE_KEY_BITS = 16384
"""Largest requester RSA modulus a COOK response is encrypted to (OpenSSL's own limit; the
reference's keys are 512 to 2048 bits).  Costs ~1.4 ms with e = 65537."""
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
    in seconds (``time.perf_counter``), used both to refill the bucket and to measure each
    operation.  Counters: :attr:`granted`, :attr:`refused`, :attr:`spent` (seconds) and
    :attr:`longest` (the slowest single operation, seconds).
    """

    def __init__(self, share: float | None = DEFAULT_SHARE, burst: float = DEFAULT_BURST,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"private-key share {share} is not in (0, 1]")
        if burst <= 0:
            raise ValueError(f"private-key burst {burst} must be positive")
        self.share = share
        self.burst = float(burst)
        self.timer = timer
        self.balance = float(burst)
        self._last = timer()
        self.granted = 0
        self.refused = 0
        self.spent = 0.0
        self.longest = 0.0

    def _refill(self) -> None:
        now = self.timer()
        if self.share is not None and now > self._last:
            self.balance = min(self.burst, self.balance + (now - self._last) * self.share)
        self._last = max(self._last, now)

    def allow(self) -> bool:
        """May one more private-key operation run now?  Counts the answer."""
        self._refill()
        if self.share is None or self.balance > 0:
            self.granted += 1
            return True
        self.refused += 1
        return False

    def admit(self, what: str = "request") -> None:
        """:meth:`allow`, raising :class:`BudgetExceeded` when refused."""
        if not self.allow():
            raise BudgetExceeded(f"private-key budget exceeded: {what} refused")

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
                "granted": self.granted, "refused": self.refused, "spent": self.spent,
                "longest": self.longest}
