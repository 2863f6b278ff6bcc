"""The invariants a forged packet must not break, checked from what the victim did with it.

Each check takes an :class:`Observation` (the case, the forged datagrams, the victim's
snapshots before and after, its replies and the work done) and says whether the invariant
held, with a detail naming what changed.  The invariants (issue 14, docs/adversary.md):

``no-sample``           no time sample, no change of the clock filter or the system peer
``no-onwire-advance``   on-wire state (org, rec, xmt, the last broadcast) never advances
``no-state-change``     no other association state: the peer's variables, reach and poll,
                        and the whole Autokey state (status word, key IDs, cookie, autokey
                        values, certificates, identity, accepted signed values); nor the
                        host's certificate cache and leap values
``no-reset``            no Autokey restart, no demobilisation
``mobilise-validated``  no new association, except the two RFC 5905/5906 require (a
                        symmetric active peer's first packet, a broadcast client's first
                        ASSOC broadcast), and then within the association cap
``signed-fresh``        a signed value whose Timestamp is not newer than the last accepted
                        one of its kind is refused before any signature work
``nak-rate-limited``    a crypto-NAK or error response (sent twice) never demobilises and
                        restarts the dance at most once
``identity-checked``    degenerate identity values are refused: no identity work, no state
``bounded-work``        replies within 2120 octets, never larger than the request for a
                        source that has not proven its address; private-key work only
                        within the budget, and none for an unproven source
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from attrs import frozen

from ntpauto.adversary.cases import Case
from ntpauto.adversary.forger import SIGNED_RESPONSES, Forged
from ntpauto.adversary.snapshot import AssociationView, Snapshot, diff
from ntpauto.adversary.values import IDENTITY_CODES
from ntpauto.autokey.fields import decode
from ntpauto.events import FieldError
from ntpauto.ntp.peer import HMODE_BCLIENT
from ntpauto.wire.packet import MODE_PASSIVE, Datagram, MalformedPacket, parse

__all__ = ["INVARIANTS", "MAX_REPLY", "Observation", "evaluate"]

MAX_REPLY = 2120
"""Octets: the largest reply a forged packet may draw (an Autokey datagram's limit)."""
INVARIANTS = ("no-sample", "no-onwire-advance", "no-state-change", "no-reset",
              "mobilise-validated", "signed-fresh", "nak-rate-limited", "identity-checked",
              "bounded-work")
_KEYLISTS = "keylist_signature"
"""The responder's count of key lists signed (an association's AUTO values)."""


@frozen
class Observation:
    """What the victim did with one case's datagrams."""

    case: Case
    forged: Forged
    before: Snapshot
    after: Snapshot
    replies: tuple[Datagram, ...]
    """Everything the victim sent in answer (carried nowhere), with the first transmission
    of an association the packet mobilised."""
    signature_checks: int
    """Signature verifications while the victim processed the datagrams."""
    signatures: int
    """Signatures the victim made (private-key operations), including those of the first
    transmission of an association the packet mobilised."""
    operations: Counter[str]
    """The responder's ``key_operations`` the packet caused (the same span)."""
    amplification_limit: bool
    cap: int
    """Most associations the victim may hold."""


def evaluate(obs: Observation) -> list[tuple[str, bool, str]]:
    """(invariant, held, detail) for each invariant that applies to the case."""
    case = obs.case
    out = [("no-sample", *_no_sample(obs)),
           ("no-onwire-advance", *_unchanged(obs, "onwire")),
           ("no-state-change", *_no_state_change(obs)),
           ("no-reset", *_no_reset(obs)),
           ("mobilise-validated", *_mobilise(obs))]
    if case.response and case.code in SIGNED_RESPONSES and obs.forged.stale:
        out.append(("signed-fresh", *_fresh(obs)))
    if case.variant in ("crypto-nak", "error"):
        out.append(("nak-rate-limited", *_nak(obs)))
    if case.kind == "identity-values" and case.code in IDENTITY_CODES:
        out.append(("identity-checked", *_identity(obs)))
    out.append(("bounded-work", *_work(obs)))
    return out


# ------------------------------------------------------------------ the checks


def _kept(obs: Observation) -> Iterable[tuple[int, AssociationView, AssociationView]]:
    """(associd, before, after) of every association present before and after."""
    after = obs.after.associations
    for associd, view in obs.before.associations.items():
        if associd in after:
            yield associd, view, after[associd]


def _changes(obs: Observation, part: str) -> list[str]:
    out = []
    for associd, old, new in _kept(obs):
        out += [f"association {associd} {d}" for d in diff(part, getattr(old, part),
                                                           getattr(new, part))]
    return out


def _verdict(changes: list[str]) -> tuple[bool, str]:
    return (not changes, "; ".join(changes[:6]) + (" ..." if len(changes) > 6 else ""))


def _unchanged(obs: Observation, part: str) -> tuple[bool, str]:
    return _verdict(_changes(obs, part))


def _no_sample(obs: Observation) -> tuple[bool, str]:
    changes = _changes(obs, "samples")
    samples = obs.after.counters["samples"] - obs.before.counters["samples"]
    if samples:
        changes.append(f"{samples} sample(s) taken")
    if obs.after.system != obs.before.system:
        changes.append("system variables changed (clock selection)")
    return _verdict(changes)


def _no_state_change(obs: Observation) -> tuple[bool, str]:
    changes = _changes(obs, "state") + _changes(obs, "autokey")
    changes += diff("host", obs.before.host, obs.after.host)
    return _verdict(changes)


def _delta(obs: Observation, counter: str) -> int:
    return obs.after.counters[counter] - obs.before.counters[counter]


def _removed(obs: Observation) -> list[int]:
    return [a for a in obs.before.associations if a not in obs.after.associations]


def _no_reset(obs: Observation) -> tuple[bool, str]:
    changes = [f"association {a} demobilised" for a in _removed(obs)]
    for counter in ("autokey_resets", "demobilised", "evicted"):
        if _delta(obs, counter):
            changes.append(f"{counter} +{_delta(obs, counter)}")
    return _verdict(changes)


def _mobilise(obs: Observation) -> tuple[bool, str]:
    new = {a: v for a, v in obs.after.associations.items()
           if a not in obs.before.associations}
    if not new:
        return True, ""
    expected = MODE_PASSIVE if obs.case.role == "active" else HMODE_BCLIENT
    problems = []
    for associd, view in new.items():
        if not obs.forged.may_mobilise:
            problems.append(f"association {associd} (mode {view.hmode}) mobilised by a "
                            "packet no RFC has mobilise one")
        elif view.hmode != expected or view.address[0] != obs.forged.source[0]:
            problems.append(f"association {associd} of mode {view.hmode} with "
                            f"{view.address[0]}")
    if len(obs.after.associations) > obs.cap:
        problems.append(f"{len(obs.after.associations)} associations, over the cap "
                        f"{obs.cap}")
    if problems:
        return _verdict(problems)
    return True, f"mobilised {len(new)} association(s) as RFC 5905/5906 require"


def _fresh(obs: Observation) -> tuple[bool, str]:
    changes = _changes(obs, "autokey")
    if obs.signature_checks:
        changes.append(f"{obs.signature_checks} signature check(s) before refusing it")
    return _verdict(changes)


def _nak(obs: Observation) -> tuple[bool, str]:
    changes = [f"association {a} demobilised" for a in _removed(obs)]
    resets = _delta(obs, "autokey_resets")
    if resets > 1:
        changes.append(f"{resets} restarts for {len(obs.forged.datagrams)} packets")
    held, detail = _verdict(changes)
    return held, detail or (f"{resets} restart(s)" if resets else "")


def _identity(obs: Observation) -> tuple[bool, str]:
    changes = _changes(obs, "autokey")
    if obs.case.variant != "one":  # 1 is in range: a challenge of 1 may be answered
        answered = obs.operations["identity_response"]
        if answered:
            changes.append(f"{answered} identity response(s) computed")
        code = obs.case.code
        for reply in obs.replies:
            if any(f.code == code and f.response and not f.error and not f.short
                   for f in _fields(reply.data)):
                changes.append("the reply carries an identity response")
    return _verdict(changes)


def _work(obs: Observation) -> tuple[bool, str]:
    problems = []
    request = min(len(d) for d in obs.forged.datagrams)
    for reply in obs.replies:
        if len(reply.data) > MAX_REPLY:
            problems.append(f"reply of {len(reply.data)} octets")
        elif not obs.forged.proven_source and reply.address[0] == obs.forged.source[0] \
                and len(reply.data) > request:
            problems.append(f"reply of {len(reply.data)} octets to a {request}-octet packet "
                            "from an unproven source")
    private = obs.signatures + obs.operations["identity_response"]
    if private:
        what = f"{private} private-key operation(s)"
        keylists = obs.operations[_KEYLISTS]
        if keylists:
            what += f" ({keylists} key-list signature(s))"
        granted = obs.after.budget_granted
        if granted is None:
            problems.append(f"{what} with no budget")
        elif granted == obs.before.budget_granted:
            problems.append(f"{what} the budget did not admit")
        elif not obs.forged.proven_source and obs.amplification_limit:
            problems.append(f"{what} for an unproven source")
    return _verdict(problems)


def _fields(data: bytes) -> list[Any]:
    try:
        return [decode(f.data) for f in parse(data).fields]
    except (MalformedPacket, FieldError):
        return []
