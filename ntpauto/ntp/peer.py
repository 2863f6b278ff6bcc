"""Per-association (peer) variables of RFC 5905 section 9 and the reach/poll bookkeeping."""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ntpauto.ntp.filter import ClockFilter
from ntpauto.wire.packet import (
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_PASSIVE,
    MODE_SERVER,
)


class Flash(enum.IntFlag):
    """Packet (TEST1-TEST9) and peer (TEST10-TEST13) sanity tests, as ntpd numbers them
    (RFC 5905 sections 8 and 11.2.1).  An association's ``flash`` holds the failures of the
    last packet, its ``peer_flash`` why it is not a selection candidate."""

    TEST1 = 0x0001  # duplicate packet
    TEST2 = 0x0002  # bogus packet: origin does not match
    TEST3 = 0x0004  # protocol unsynchronised (zero transmit timestamp)
    TEST4 = 0x0008  # access denied
    TEST5 = 0x0010  # authentication failed
    TEST6 = 0x0020  # peer clock unsynchronised (leap 3 or stratum >= 16)
    TEST7 = 0x0040  # header distance exceeded / reference time after transmit
    TEST8 = 0x0080  # Autokey sequence failed
    TEST9 = 0x0100  # Autokey crypto failed
    TEST10 = 0x0200  # peer stratum or leap not valid for selection
    TEST11 = 0x0400  # peer root distance exceeded
    TEST12 = 0x0800  # synchronisation loop (the peer is synchronised to us)
    TEST13 = 0x1000  # peer unreachable


HMODE_BCLIENT = 6
"""Internal host mode of a broadcast-client association (ntpd's MODE_BCLIENT)."""
MODE_NAMES = {
    MODE_ACTIVE: "active", MODE_PASSIVE: "passive", MODE_CLIENT: "client",
    MODE_SERVER: "server", MODE_BROADCAST: "broadcast", HMODE_BCLIENT: "bclient",
}
"""Association modes by name, for logs and status."""
MAX_STRATUM = 16
"""Stratum 16: unsynchronised."""

BCOUNT = 8
"""Packets in a burst (RFC 5905 A.1.1)."""
BTIME = 2
"""Seconds between packets of a burst."""
UNREACH = 12
"""Polls without a reply before a configured association backs off its poll interval."""
UNREACH_EPHEMERAL = 8
"""Polls without a packet before an ephemeral association is demobilised."""
VOLLEY = 4
"""Client-mode packets a new broadcast client sends to calibrate the delay."""
RESYNC_POLLS = 3
"""Polls without a packet that answers ours after which a symmetric association forgets
the exchange (``org``) and sends origin 0, which its peer takes as the start of a new one:
two peers whose packets crossed each echo a timestamp the other no longer expects, and
unlike RFC 5905 we never take ``org`` from a packet that fails the origin test."""


@dataclass(slots=True, eq=False)
class Association:
    """One association: configuration, the peer's packet variables, on-wire and poll state."""

    associd: int
    address: tuple[str, int]
    hmode: int
    version: int = 4
    minpoll: int = 6
    maxpoll: int = 10
    keyid: int | None = None
    ephemeral: bool = False
    prefer: bool = False
    noselect: bool = False
    iburst: bool = False
    burst_option: bool = False
    refclock_stratum: int | None = None
    refclock_refid: bytes = b""
    # Packet variables from the peer's last accepted packet (RFC 5905 section 9.1).
    leap: int = 3
    stratum: int = 16
    pmode: int = 0
    ppoll: int = 0
    root_delay: float = 0.0
    root_dispersion: float = 0.0
    refid: bytes = b"\x00\x00\x00\x00"
    reftime: int = 0
    # On-wire state: org = the peer's last transmit timestamp (we echo it), rec = when we
    # received it, xmt = our last transmit timestamp (the peer must echo it).
    org: int = 0
    rec: int = 0
    xmt: int = 0
    owed: int = 0
    """An ephemeral Autokey association nobody has proven yet (``reach`` 0) sends only after
    hearing a packet since its last one, and no larger: the octets of that packet (0: none
    heard).  A forged packet that mobilised it gets at most one packet, no larger, back."""
    unanswered: list[int] = field(default_factory=list)
    """Symmetric modes: our transmit timestamps no packet has answered yet (the last
    :data:`BCOUNT`): the origin test passes for any of them, so that a peer that answers
    slower than we send still gets through (client mode has only ``xmt``)."""
    answered: int = 0
    """Symmetric modes: the transmit timestamp of ours a packet last answered; a second
    packet echoing it proves nothing by its origin (whoever saw our packet can echo it)."""
    exchanged_at: float | None = None
    """Reactor seconds of the last packet that started or continued the exchange (passed
    the origin test); a symmetric exchange silent for :data:`RESYNC_POLLS` polls starts
    again from origin 0."""
    # Poll process.
    hpoll: int = 6
    reach: int = 0
    unreach: int = 0
    burst: int = 0
    nextdate: float = 0.0
    outdate: float = 0.0
    good_polls: int = 0
    # Broadcast client calibration, and when its last broadcast sample was taken (reactor
    # seconds: the next comes no sooner than the broadcast poll interval allows).
    volley: int = 0
    caldelay: float | None = None
    bcast_at: float | None = None
    # Clock filter output.
    filter: ClockFilter = field(default_factory=ClockFilter)
    offset: float = 0.0
    delay: float = 0.0
    dispersion: float = 16.0
    jitter: float = 0.0
    epoch: float = 0.0
    has_sample: bool = False
    flash: Flash = Flash(0)
    peer_flash: Flash = Flash(0)
    local_refid: bytes = b""
    local_address: str | None = None
    """The address the peer's packets reach us on (our side of its session keys)."""
    broadcast_address: str | None = None
    """The address a broadcast client's broadcasts arrive on (their session keys' dst)."""
    autokey: Any = None
    """The association's :class:`~ntpauto.autokey.session.AutokeySession` (Autokey only)."""
    nts: Any = None
    """The association's :class:`~ntpauto.nts.session.NtsSession` (``server HOST nts``)."""
    """Our own address as a refid, as seen by this peer (TEST12 loop detection)."""
    on_reply: Any = None
    """``on_reply(assoc, header, now)``, called when a reply to this client association's
    request passed every check and advanced the exchange, before its time is looked at: the
    one-shot client (:mod:`ntpauto.client`) sends its next request from there instead of
    waiting a poll interval.  None (the daemon): the poll process alone paces requests."""

    @property
    def is_refclock(self) -> bool:
        return self.refclock_stratum is not None

    def clear_samples(self) -> None:
        """Forget every time sample (after a clock step, RFC 5905 clear())."""
        self.filter.reset()
        self.has_sample = False
        self.offset = self.delay = self.jitter = 0.0
        self.dispersion = 16.0
        self.epoch = 0.0


def refid_for(address: str) -> bytes:
    """The refid a downstream host shows for this upstream: IPv4 octets, or the first four
    octets of the MD5 of an IPv6 address (RFC 5905 section 7.3)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ip.packed
    return hashlib.md5(ip.packed).digest()[:4]


def refid_text(refid: bytes, stratum: int) -> str:
    """A refid for display: ASCII for stratum 0/1 and kiss codes, dotted quad otherwise."""
    if stratum <= 1 or stratum >= MAX_STRATUM:
        return refid.rstrip(b"\x00").decode("ascii", "replace")
    return ".".join(str(b) for b in refid)


def refid_or_empty(address: str) -> bytes:
    """:func:`refid_for` of ``address``, or b"" for one that is not an IP address."""
    try:
        return refid_for(address)
    except ValueError:
        return b""


def is_wildcard(address: str) -> bool:
    """The address of a socket bound to every interface (no address of its own)."""
    return address in ("0.0.0.0", "::")
