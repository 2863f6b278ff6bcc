"""Autokey event codes (the reference's XEVNT_* values) and the exceptions that carry them.

RFC 5906 section 10 ("Error Detection") and interop.md sections 8.5 and 10.

reference: include/ntp_crypto.h defines ``XEVNT_CMD(x) = CRPT_EVENT | x`` with CRPT_EVENT = 0x100
and ntpd/ntp_control.c ``crypto_codes[]`` holds the text logged to cryptostats, e.g.
``107 bad_signature_length`` for XEVNT_SGL.  The enum value here is ``x`` (so that
``Event.OK`` is falsy and ``if error:`` reads naturally); :attr:`Event.code` is the logged value.
"""

from __future__ import annotations

import enum

CRPT_EVENT = 0x100
"""reference: the event class bit ORed into every Autokey event code."""


class Event(enum.IntEnum):
    """Outcome of an Autokey check, named after the reference's ``XEVNT_*`` constants."""

    OK = 0
    LEN = 1
    TSP = 2
    FSP = 3
    PUB = 4
    MD = 5
    KEY = 6
    SGL = 7
    SIG = 8
    VFY = 9
    PER = 10
    CKY = 11
    DAT = 12
    CRT = 13
    ID = 14
    ERR = 15
    SRV = 16

    @property
    def code(self) -> int:
        """The event code as the reference logs it (``CRPT_EVENT | value``)."""
        return CRPT_EVENT | self.value

    @property
    def text(self) -> str:
        """The reference's short description, spelled exactly as its cryptostats log it
        (including the two entries that mix spaces and underscores)."""
        return _TEXT[self]

    @property
    def resets(self) -> bool:
        """True when the reference resets the association (protocol error, section 8.5)."""
        return self is Event.ERR


_TEXT = {
    Event.OK: "success",
    Event.LEN: "bad_field_format_or_length",
    Event.TSP: "bad_timestamp",
    Event.FSP: "bad_filestamp",
    Event.PUB: "bad_or_missing_public_key",
    Event.MD: "unsupported_digest_type",
    Event.KEY: "unsupported_identity_type",
    Event.SGL: "bad_signature_length",
    Event.SIG: "signature_not_verified",
    Event.VFY: "certificate_not_verified",
    Event.PER: "host certificate_expired",
    Event.CKY: "bad_or_missing_cookie",
    Event.DAT: "bad_or_missing_leapsecond_table",
    Event.CRT: "bad_or_missing_certificate",
    Event.ID: "bad_or_missing_group_key",
    Event.ERR: "protocol_error",
    Event.SRV: "server certificate expired",
}


class AutokeyError(ValueError):
    """An Autokey check failed; ``event`` says which (the reference's XEVNT code)."""

    def __init__(self, event: Event, message: str) -> None:
        super().__init__(f"{event.name} ({event.text}): {message}")
        self.event = event
        self.message = message


class FieldError(AutokeyError):
    """An extension field or its value failed a receive-side check.

    ``offset`` is the field's offset in the packet when known (``None`` otherwise).
    """

    def __init__(self, event: Event, message: str, offset: int | None = None) -> None:
        super().__init__(event, message)
        self.offset = offset
