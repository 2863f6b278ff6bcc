"""The forger's cases: which packet it pretends to send, with which field, and how it lies.

A case is one cell of the matrix *role x field code x direction x attack kind*, refined by a
variant of the attack and by the address it is sent from:

* role: what the forger pretends to be, i.e. the mode of its packet: ``client`` (3),
  ``server`` (4), ``active`` (1), ``passive`` (2), ``broadcast`` (5, to the broadcast
  address), ``bclient`` (3, as a broadcast client's volley, for the broadcast association);
* code: the extension field it carries: NULL 0, ASSOC 1 ... MV 9, an unknown code 10, or
  none at all (``None``, only for the kinds that need no field);
* direction: the field as a ``request`` or a ``response``;
* kind and variant: :data:`KINDS`;
* source: ``peer`` (the genuine peer's address and port) or ``stranger`` (an address the
  victim never heard of; a new one for every case).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from itertools import product

from attrs import frozen

from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CERT,
    CODE_NAMES,
    COOK,
    GQ,
    IFF,
    LEAP,
    MV,
    NULL,
    SIGN,
)

__all__ = ["CODES", "DIRECTIONS", "KINDS", "ROLES", "ROLE_MODES", "SOURCES", "UNKNOWN", "Case",
           "all_cases", "code_name", "sample"]

UNKNOWN = 0x0A
"""A field code no Autokey version defines."""
ROLES = ("client", "server", "active", "passive", "broadcast", "bclient")
ROLE_MODES = {"client": 3, "server": 4, "active": 1, "passive": 2, "broadcast": 5,
              "bclient": 3}
CODES: tuple[int, ...] = (NULL, ASSOC, CERT, COOK, AUTO, LEAP, SIGN, IFF, GQ, MV, UNKNOWN)
DIRECTIONS = ("request", "response")
SOURCES = ("peer", "stranger")
KINDS: dict[str, tuple[str, ...]] = {
    "junk-signature": ("random", "transplant"),
    "identity-values": ("zero", "one", "modulus", "modulus-multiple"),
    "timestamps": ("field-stale", "field-equal", "header-equal", "header-stale"),
    "wrong-associd": ("other", "zero"),
    "replay": ("packet", "field"),
    "cookie-0": ("fields", "public-cookie", "error"),
    "no-mac": ("none", "crypto-nak"),
}
"""Attack kinds and their variants:

* ``junk-signature``: the forger's own field values with a signature of the right length,
  random (``random``) or a genuine signature of another field (``transplant``);
* ``identity-values``: degenerate values where the field has a number: 0, 1, the modulus
  (identity modulus for IFF/GQ/MV, the peer's RSA modulus otherwise) or a multiple of it;
* ``timestamps``: a field Timestamp older than (``field-stale``) or equal to
  (``field-equal``) the last genuine one of its kind, or a packet transmit timestamp equal to
  (``header-equal``) or older than (``header-stale``) the peer's last one;
* ``wrong-associd``: another association ID (``other``) or 0;
* ``replay``: a genuine captured packet byte for byte (``packet``), or a genuine captured
  field in a new packet (``field``);
* ``cookie-0``: the forger's field in a packet MACed under cookie 0 as RFC 5906 has every
  packet with fields (``fields``), under another public value (``public-cookie``), or an
  error response (E bit) under cookie 0 (``error``);
* ``no-mac``: no MAC at all (``none``), or a crypto-NAK (``crypto-nak``).
"""
_FIELDLESS = {"timestamps": ("header-equal", "header-stale"), "replay": ("packet",),
              "cookie-0": ("fields", "public-cookie"), "no-mac": ("none", "crypto-nak")}
"""The variants that make sense for a packet without an extension field."""


def code_name(code: int | None) -> str:
    """``"COOK"``, ``"code10"``, or ``"none"`` for a packet without fields."""
    if code is None:
        return "none"
    return CODE_NAMES.get(code, f"code{code}")


@frozen
class Case:
    """One forged packet to try (see the module docstring)."""

    role: str
    code: int | None
    direction: str
    kind: str
    variant: str
    source: str

    @property
    def cell(self) -> tuple[str, int | None, str, str]:
        """(role, code, direction, kind): the cell of the matrix this case covers."""
        return self.role, self.code, self.direction, self.kind

    @property
    def mode(self) -> int:
        """The NTP mode of the forged packet."""
        return ROLE_MODES[self.role]

    @property
    def response(self) -> bool:
        """The field is a response."""
        return self.direction == "response"

    def __str__(self) -> str:
        return (f"{self.role} {code_name(self.code)} {self.direction} "
                f"{self.kind}/{self.variant} from {self.source}")


def all_cases(roles: Iterable[str] = ROLES) -> list[Case]:
    """Every case: each role, code, direction, kind, variant and source, and the packets
    without a field (code ``None``, direction ``request``)."""
    out = [Case(role, code, direction, kind, variant, source)
           for role, code, direction, (kind, variants), source
           in product(roles, CODES, DIRECTIONS, KINDS.items(), SOURCES)
           for variant in variants]
    out += [Case(role, None, "request", kind, variant, source)
            for role, (kind, variants), source in product(roles, _FIELDLESS.items(), SOURCES)
            for variant in variants]
    return out


def sample(cases: Iterable[Case], per_cell: int, rng: random.Random) -> Iterator[Case]:
    """At most ``per_cell`` cases of each cell (variant and source drawn with ``rng``), in
    the order the cells first appear."""
    cells: dict[tuple[str, int | None, str, str], list[Case]] = {}
    for case in cases:
        cells.setdefault(case.cell, []).append(case)
    for members in cells.values():
        yield from rng.sample(members, min(per_cell, len(members)))
