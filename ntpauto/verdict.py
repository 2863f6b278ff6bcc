"""Verdicts: what a check that authenticates something found, as a value.

Every check that authenticates (a MAC, the Autokey session key and autokey test, a signature,
a certificate, an identity proof, timestamp freshness, the on-wire origin test) returns a
:class:`Verdict` made by the code that did the check.  The engine and the association decide
only from verdicts, never from what a packet looks like: a packet yields a time sample,
advances on-wire or key-list state, or changes a status bit only on a verified verdict for
everything it carries that RFC 5906 requires to be signed or keyed (docs/security.md).

A verdict is not a boolean on purpose: ``if verdict:`` raises, so that a caller says which
outcome it means (:attr:`Verdict.verified`, :attr:`Verdict.failed`).
"""

from __future__ import annotations

import enum

from attrs import frozen

from ntpauto.events import Event

__all__ = ["Check", "Outcome", "Verdict"]


class Outcome(enum.Enum):
    """What a check concluded."""

    VERIFIED = "verified"
    """The check ran and proved what it checks (with a secret or a private key, or, for the
    origin test, knowledge of our last transmit timestamp)."""
    NOT_APPLICABLE = "not applicable"
    """Nothing to prove, or nothing this check can prove: e.g. a MAC under cookie 0, which
    anyone can compute, proves nothing about its sender."""
    FAILED = "failed"
    """The check ran and the value is wrong (forged, stale, malformed)."""


class Check(enum.Enum):
    """Which check produced a verdict."""

    MAC = "MAC"
    """A symmetric-key or Autokey session-key MAC."""
    AUTOKEY = "autokey test"
    """The session key's key ID hashes to the peer's last accepted one (RFC 5906 section 7),
    or in client mode is the key ID of our request."""
    ORIGIN = "origin"
    """The on-wire test: the packet echoes our last transmit timestamp (TEST2)."""
    FRESHNESS = "freshness"
    """A signed value's timestamp is newer than the last accepted one of its kind."""
    SIGNATURE = "signature"
    """A field's signature under the peer's public key."""
    CERTIFICATE = "certificate"
    """A certificate and its link in the trail."""
    IDENTITY = "identity"
    """An identity scheme's proof (IFF, GQ, MV, plugins)."""
    FIELD = "field"
    """An extension field's form and its place in the dance (unsigned fields)."""
    NTS = "NTS"
    """An NTS reply: our request's unique identifier and the authenticator under the
    server-to-client key (RFC 8915 section 5.7)."""


@frozen
class Verdict:
    """One check's conclusion: :attr:`check`, :attr:`outcome` and why (:attr:`reason`;
    :attr:`event` is the reference's Autokey event code, for counters and cryptostats:
    always set on a failure)."""

    check: Check
    outcome: Outcome
    reason: str = ""
    event: Event = Event.OK

    @classmethod
    def ok(cls, check: Check, reason: str = "") -> Verdict:
        """A verified verdict."""
        return cls(check, Outcome.VERIFIED, reason)

    @classmethod
    def na(cls, check: Check, reason: str, event: Event = Event.OK) -> Verdict:
        """A not-applicable verdict: nothing proven, nothing wrong (``event`` may name what
        the reference would log, e.g. an empty CERT response)."""
        return cls(check, Outcome.NOT_APPLICABLE, reason, event)

    @classmethod
    def fail(cls, check: Check, reason: str, event: Event = Event.ERR) -> Verdict:
        """A failed verdict, with the Autokey event code that names the failure."""
        return cls(check, Outcome.FAILED, reason, event)

    @property
    def verified(self) -> bool:
        """The check proved what it checks."""
        return self.outcome is Outcome.VERIFIED

    @property
    def failed(self) -> bool:
        """The check found the value wrong."""
        return self.outcome is Outcome.FAILED

    @property
    def protocol_error(self) -> bool:
        """A failure the reference treats as a protocol error (its association restarts the
        dance): only ever acted on for a packet whose origin test passed."""
        return self.failed and self.event is Event.ERR

    def __bool__(self) -> bool:
        raise TypeError("a Verdict is not a truth value: use .verified or .failed")

    def __str__(self) -> str:
        text = f"{self.check.value} {self.outcome.value}"
        return f"{text}: {self.reason}" if self.reason else text
