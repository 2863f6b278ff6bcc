"""What the adversary compares before and after a forged packet: a snapshot of the victim.

Each part answers one invariant (:mod:`ntpauto.adversary.invariants`): the association
table; per association its time samples, its on-wire state, and everything else it holds
(the peer's packet variables, reach and poll, and the whole Autokey state: status word, key
IDs and sequence, cookie, autokey values, trail and certificates, identity scheme and
challenge, the last accepted signed values, the queued request); the host's certificate
cache and leap values; the counters; and the work done (the responder's private-key
operations and budget, and the signature checks counted while the packet was processed).

Diagnostics a packet may change without effect are left out: ``flash`` (the last packet's
failed tests) and ``peer_flash``, and the counters other than those the invariants name.
The Autokey state has no public accessor for a few of its fields (the accepted signed
values, the cookie request outstanding, the last error restart); they are read by name and
compared as they are.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attrs import frozen

from ntpauto.engine import Engine
from ntpauto.ntp.peer import Association

__all__ = ["NAMES", "AssociationView", "Snapshot", "diff", "take"]

NAMES = {
    "samples": ("filter", "offset", "delay", "dispersion", "jitter", "epoch", "has_sample"),
    "onwire": ("org", "rec", "xmt", "bcast_at", "exchanged_at"),
    "state": ("leap", "stratum", "pmode", "ppoll", "root_delay", "root_dispersion", "refid",
              "reftime", "reach", "unreach", "hpoll", "nextdate", "burst", "volley",
              "caldelay", "keyid", "local_address", "broadcast_address"),
    "autokey": ("status", "cookie", "hcookie", "autokey values", "auto timestamp",
                "auto filestamp", "pkeyid", "seq", "peer associd", "peer name", "issuer",
                "trail", "peer certificate", "peer key", "scheme", "challenge", "queued request",
                "offloading", "keylist generation", "reset_at", "accepted values",
                "cookie request", "error reset", "keyed polls", "sent key ID", "key list"),
    "host": ("host certificate cache", "host leap values", "host signature update",
             "host status"),
}
"""The names of each part's values, in order (for :func:`diff`)."""
_SHORT = 40


@frozen
class AssociationView:
    """One association, split by invariant."""

    address: tuple[str, int]
    hmode: int
    samples: tuple[Any, ...]
    onwire: tuple[Any, ...]
    state: tuple[Any, ...]
    autokey: tuple[Any, ...] | None

    @property
    def autokey_status(self) -> int | None:
        """The Autokey status word (None without Autokey)."""
        return None if self.autokey is None else self.autokey[0]


@frozen
class Snapshot:
    """The victim at one instant (see the module docstring)."""

    associations: dict[int, AssociationView]
    system: tuple[Any, ...]
    host: tuple[Any, ...]
    counters: Counter[str]
    key_operations: Counter[str]
    budget_granted: int | None


def take(engine: Engine) -> Snapshot:
    """A snapshot of ``engine`` now."""
    node = engine.autokey
    responder = node.responder if node is not None else None
    budget = responder.budget if responder is not None else None
    return Snapshot(
        associations={associd: _view(a) for associd, a in engine.associations.items()},
        system=_system(engine),
        host=_host(node.host) if node is not None else (),
        counters=Counter(engine.counters),
        key_operations=Counter(responder.key_operations) if responder is not None
        else Counter(),
        budget_granted=budget.granted if budget is not None else None,
    )


def diff(part: str, old: tuple[Any, ...] | None, new: tuple[Any, ...] | None) -> list[str]:
    """``name: old -> new`` for each value of ``part`` that differs."""
    if old == new:
        return []
    if old is None or new is None:
        return [f"{part}: {_short(old)} -> {_short(new)}"]
    return [f"{name}: {_short(a, name)} -> {_short(b, name)}"
            for name, a, b in zip(NAMES[part], old, new, strict=True) if a != b]


def _short(value: Any, name: str = "") -> str:
    if isinstance(value, int) and name in ("status", "host status", "org", "rec", "xmt",
                                            "pkeyid"):
        return f"{value:#x}"
    text = repr(value)
    return text if len(text) <= _SHORT else text[:_SHORT - 3] + "..."


def _system(engine: Engine) -> tuple[Any, ...]:
    sys = engine.sys
    return (sys.leap, sys.stratum, sys.refid, sys.reftime, sys.root_delay,
            sys.root_dispersion, sys.offset, sys.jitter, sys.peer, sys.epoch)


def _view(a: Association) -> AssociationView:
    return AssociationView(
        address=a.address, hmode=a.hmode,
        samples=(tuple(a.filter.stages()), a.offset, a.delay, a.dispersion, a.jitter, a.epoch,
                 a.has_sample),
        onwire=(a.org, a.rec, a.xmt, a.bcast_at, a.exchanged_at),
        state=(a.leap, a.stratum, a.pmode, a.ppoll, a.root_delay, a.root_dispersion, a.refid,
               a.reftime, a.reach, a.unreach, a.hpoll, a.nextdate, a.burst, a.volley,
               a.caldelay, a.keyid, a.local_address, a.broadcast_address),
        autokey=_autokey(a.autokey) if a.autokey is not None else None)


def _autokey(session: Any) -> tuple[Any, ...]:
    state = session.state
    certificate = state.peer_certificate
    keylist = session.keylist
    return (
        state.status, state.cookie, state.hcookie, state.autokey, state.auto_timestamp,
        state.auto_filestamp, state.pkeyid, state.seq, state.peer_associd, state.peer_name,
        state.issuer, tuple(state.trail), certificate.der if certificate else None,
        _key_numbers(state.peer_key), state.scheme_name, state.challenge_outstanding,
        state.queued_request, state.offloading, state.keylist_generation, state.reset_at,
        dict(getattr(state, "_accepted", {})), getattr(state, "_cook_pending", None),
        getattr(state, "_error_reset_at", None), session.keyed_polls, session.sent_keyid,
        (keylist.final, keylist.remaining) if keylist is not None else None)


def _key_numbers(key: Any) -> Any:
    """A public key as comparable numbers (None when there is none)."""
    if key is None:
        return None
    numbers = key.public_numbers()
    return getattr(numbers, "n", None), getattr(numbers, "e", None), getattr(numbers, "y", None)


def _host(host: Any) -> tuple[Any, ...]:
    """The host's certificate cache (subject, issuer, certificate, flags) and leap values."""
    cache = tuple((e.subject, e.cert.issuer, e.cert.der, e.flags, e.filestamp)
                  for e in host.cache)
    return cache, host.leap_values, host.update, host.status
