"""What ``ntpauto trace`` says about a capture: per-check, per-field and per-packet verdicts
and the summary counts.  Plain data; :meth:`PacketReport.as_dict` and
:meth:`Summary.as_dict` give the ``--json`` form."""

from __future__ import annotations

import enum
from typing import Any

from attrs import define, field

__all__ = ["Check", "FieldReport", "PacketReport", "Status", "Summary"]


class Status(enum.Enum):
    """Outcome of one check."""

    OK = "ok"
    FAILED = "failed"
    NOT_COMPUTABLE = "not computable"
    """A secret this trace does not have is needed (cookie, server seed, symmetric key)."""
    NOT_CHECKED = "not checked"
    """Nothing to check against (no certificate, no AUTO values yet, a crypto-NAK...)."""
    ABSENT = "none"
    """Nothing there (unsigned field, no MAC)."""
    PENDING = "pending"
    """Waiting for a certificate later in the capture (never left after ``finish``)."""


@define
class Check:
    """One check: what was checked, its status and why (or how it was done)."""

    status: Status
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason}


@define
class FieldReport:
    """One extension field: its header values, a one-line description of its value and the
    checks made on it (``signature`` and any ``extra`` checks, e.g. a certificate's own
    signature)."""

    position: int
    offset: int
    name: str
    response: bool
    error: bool
    associd: int
    length: int
    timestamp: int | None = None
    filestamp: int | None = None
    value_length: int = 0
    signature_length: int = 0
    description: str = ""
    signature: Check = field(factory=lambda: Check(Status.ABSENT, "unsigned"))
    extra: dict[str, Check] = field(factory=dict)
    notes: list[str] = field(factory=list)
    decode_error: str | None = None

    @property
    def label(self) -> str:
        """``"CERT resp"``, ``"ASSOC req"``, ``"COOK resp error"``."""
        text = f"{self.name} {'resp' if self.response else 'req'}"
        return text + (" error" if self.error else "")

    @property
    def failures(self) -> list[str]:
        """What failed in this field (``"signature"``, ``"format"``, ...)."""
        out = ["format"] if self.decode_error else []
        if self.signature.failed:
            out.append("signature")
        out.extend(name for name, check in self.extra.items() if check.failed)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position, "offset": self.offset, "name": self.name,
            "label": self.label, "response": self.response, "error": self.error,
            "associd": self.associd, "length": self.length, "timestamp": self.timestamp,
            "filestamp": self.filestamp, "value_length": self.value_length,
            "signature_length": self.signature_length, "description": self.description,
            "signature": self.signature.as_dict(),
            "checks": {name: check.as_dict() for name, check in self.extra.items()},
            "notes": list(self.notes), "decode_error": self.decode_error,
            "failures": self.failures,
        }


@define
class PacketReport:
    """One NTP datagram: where it went, its header essentials, its fields and the MAC and
    key-ID chain checks."""

    index: int
    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    length: int
    mode: int | None = None
    version: int | None = None
    stratum: int | None = None
    keyid: int | None = None
    mac_length: int = 0
    fields: list[FieldReport] = field(factory=list)
    mac: Check = field(factory=lambda: Check(Status.ABSENT, "no MAC"))
    chain: Check = field(factory=lambda: Check(Status.ABSENT, ""))
    chain_kind: str = "chain"
    """``"chain"`` (key ID hashes to an earlier one) or ``"echo"`` (a server reply carries
    the request's key ID)."""
    malformed: str | None = None
    notes: list[str] = field(factory=list)

    @property
    def failures(self) -> list[str]:
        """Everything that failed: ``"packet"``, ``"MAC"``, ``"chain"`` and
        ``"<field label> <what>"`` for each failing field."""
        out = ["packet"] if self.malformed else []
        if self.mac.failed:
            out.append("MAC")
        if self.chain.failed:
            out.append("chain")
        for f in self.fields:
            out.extend(f"{f.label} {what}" for what in f.failures)
        return out

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "frame": self.frame, "time": self.time,
            "src": self.src, "sport": self.sport, "dst": self.dst, "dport": self.dport,
            "length": self.length, "mode": self.mode, "version": self.version,
            "stratum": self.stratum, "keyid": self.keyid, "mac_length": self.mac_length,
            "fields": [f.as_dict() for f in self.fields], "mac": self.mac.as_dict(),
            "chain": self.chain.as_dict(), "chain_kind": self.chain_kind,
            "malformed": self.malformed,
            "notes": list(self.notes), "failures": self.failures,
        }


def _tally(checks: list[Check]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status if status is not Status.PENDING}
    for check in checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    return counts


@define
class Summary:
    """Counts over a whole capture."""

    frames: int
    packets: int
    fields: int
    malformed: int
    signatures: dict[str, int]
    macs: dict[str, int]
    chains: dict[str, int]
    echoes: dict[str, int]
    auto_anchors: int
    certificates: int
    failed_packets: int

    @classmethod
    def of(cls, reports: list[PacketReport], frames: int, certificates: int) -> Summary:
        """Tally ``reports`` (after :meth:`Tracer.finish`)."""
        fields = [f for r in reports for f in r.fields]
        return cls(
            frames=frames,
            packets=len(reports),
            fields=len(fields),
            malformed=sum(1 for r in reports if r.malformed),
            signatures=_tally([f.signature for f in fields if f.signature.status
                               is not Status.ABSENT]),
            macs=_tally([r.mac for r in reports]),
            chains=_tally([r.chain for r in reports if r.chain_kind == "chain"
                           and r.chain.status is not Status.ABSENT]),
            echoes=_tally([r.chain for r in reports if r.chain_kind == "echo"]),
            auto_anchors=sum(1 for r in reports if r.chain.status is Status.OK
                             and "AUTO" in r.chain.reason),
            certificates=certificates,
            failed_packets=sum(1 for r in reports if r.failed),
        )

    @property
    def clean(self) -> bool:
        """Nothing failed."""
        return self.failed_packets == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "packets": self.packets, "fields": self.fields,
            "malformed": self.malformed, "signatures": dict(self.signatures),
            "macs": dict(self.macs), "chains": dict(self.chains), "echoes": dict(self.echoes),
            "auto_anchors": self.auto_anchors, "certificates": self.certificates,
            "failed_packets": self.failed_packets, "clean": self.clean,
        }
