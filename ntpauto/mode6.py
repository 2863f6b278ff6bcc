"""Mode 6 control messages (what ``ntpq`` speaks), read-only, sans-I/O.

RFC 9327 (and RFC 1305 appendix B) define the 12-octet control header::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |LI | VN  |Mode |R|E|M| OpCode  |       Sequence Number         |
    |            Status             |       Association ID          |
    |            Offset             |            Count              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .             Data (up to 468 octets), padding, MAC               .

:func:`handle` takes one mode 6 (or mode 7) datagram and the engine (read only) and returns
the response datagrams.  The variables, their order and value formats are ntpd 4.2.8's
(``ntpd/ntp_control.c``), the Autokey ones as interop.md section 9 says, so ``ntpq``
(classic or NTPsec) reads them as it reads ntpd.  Nothing can be written: the write opcodes
are refused with CERR_PERMISSION, as ntpd refuses unauthenticated writes.  Requests that are
malformed (length, count, offset, flags, version), responses (R bit: no ping-pong), mode 7
and requests from ``restrict ... noquery`` sources are dropped, each with its counter.
Responses carry no padding beyond the 32-bit alignment the format requires.

ntpauto keeps no event log: the event code and count of the status words are derived from
the state (see :func:`peer_status` and :func:`system_status`).
"""

from __future__ import annotations

import datetime
import functools
import platform
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ntpauto import __version__
from ntpauto.autokey.status import NID_LONG_NAMES, word_nid
from ntpauto.metrics import mode6_variables
from ntpauto.ntp.constants import PHI
from ntpauto.ntp.peer import Flash
from ntpauto.nts.aead import AEAD_NAMES
from ntpauto.wire.packet import LEAP_UNSYNC, MODE_BROADCAST, MODE_CONTROL, MODE_PRIVATE
from ntpauto.wire.timestamps import NTP_UNIX_OFFSET, unix_to_ntp

if TYPE_CHECKING:
    from ntpauto.engine import Engine
    from ntpauto.ntp.peer import Association

__all__ = [
    "CERR_BADASSOC", "CERR_BADFMT", "CERR_BADOP", "CERR_PERMISSION", "CERR_UNKNOWNVAR",
    "ControlHeader", "HEADER", "HEADER_LEN", "MAX_DATA", "MAX_REQUEST", "OP_READCLOCK",
    "OP_READSTAT", "OP_READVAR", "OP_UNSPEC", "handle", "peer_status", "system_status",
]

HEADER = struct.Struct("!BBHHHHH")
"""LI/VN/mode, R/E/M/opcode, sequence, status, association ID, offset, count."""
HEADER_LEN = 12
MAX_DATA = 468
"""Data octets per datagram (ntpd CTL_MAX_DATA_LEN); longer responses are fragmented."""
MAX_REQUEST = HEADER_LEN + MAX_DATA + 4 + 20
"""The longest request accepted: full data, then a key ID and a SHA-1 digest."""

RESPONSE = 0x80
ERROR = 0x40
MORE = 0x20
OP_MASK = 0x1F

OP_UNSPEC = 0
OP_READSTAT = 1
OP_READVAR = 2
OP_WRITEVAR = 3
OP_READCLOCK = 4
OP_WRITECLOCK = 5
OP_SETTRAP = 6
OP_CONFIGURE = 8
OP_SAVECONFIG = 9
OP_READ_MRU = 10
OP_READ_ORDLIST_A = 11
OP_REQ_NONCE = 12
OP_UNSETTRAP = 31
WRITE_OPCODES = frozenset({OP_WRITEVAR, OP_WRITECLOCK, OP_SETTRAP, OP_CONFIGURE,
                           OP_SAVECONFIG, OP_READ_ORDLIST_A, OP_UNSETTRAP})
"""The opcodes ntpd accepts only authenticated: never allowed here."""

CERR_UNSPEC = 0
CERR_PERMISSION = 1
CERR_BADFMT = 2
CERR_BADOP = 3
CERR_BADASSOC = 4
CERR_UNKNOWNVAR = 5
CERR_BADVALUE = 6
CERR_RESTRICT = 7

# Peer status word (ntpq "as"): bits of the high octet, then the selection code.
PST_CONFIG = 0x80
PST_AUTHENABLE = 0x40
PST_AUTHENTIC = 0x20
PST_REACH = 0x10
PST_BCAST = 0x08
SEL_REJECT = 0
SEL_CANDIDATE = 4
SEL_SYSPEER = 6
PEVNT_MOBIL = 1
PEVNT_UNREACH = 3
PEVNT_REACH = 4
PEVNT_NEWPEER = 10
# System status word: clock source and events.
SST_UNSPEC = 0
SST_LOCAL = 5
SST_NTP = 6
EVNT_SYNC = 5
EVNT_SYSRESTART = 6
EVNT_CLOCKRESET = 12

MAX_LINE = 72
"""ntpd starts a new line (CR LF) before an item that would make a line this long."""
MAX_NAME = 128
"""A requested variable name (and value) longer than this is a bad request (ntpd)."""
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class ControlHeader(NamedTuple):
    """A decoded mode 6 header."""

    leap: int
    version: int
    mode: int
    r_e_m_op: int
    sequence: int
    status: int
    associd: int
    offset: int
    count: int

    @property
    def opcode(self) -> int:
        return self.r_e_m_op & OP_MASK

    @classmethod
    def decode(cls, data: bytes) -> ControlHeader:
        """The first 12 octets of ``data``."""
        lvm, rem, sequence, status, associd, offset, count = HEADER.unpack_from(data)
        return cls(lvm >> 6, (lvm >> 3) & 7, lvm & 7, rem, sequence, status, associd,
                   offset, count)


# -- the request path ---------------------------------------------------------------------


def handle(engine: Engine, data: bytes, flags: frozenset[str], now: float) -> list[bytes]:
    """Answer one mode 6 datagram (mode 7 is only counted); ``flags`` are the source's
    restrictions.  The result is the datagrams to send back to the source (maybe none)."""
    counters = engine.counters
    if data[0] & 7 == MODE_PRIVATE:
        counters["mode7"] += 1
        return []
    counters["control"] += 1
    if "noquery" in flags:
        counters["control_noquery"] += 1
        return []
    reason = _malformed(data)
    if reason is not None:
        counters[reason] += 1
        return []
    request = ControlHeader.decode(data)
    body = data[HEADER_LEN:HEADER_LEN + request.count]
    reply = _Reply(engine, request)
    opcode = request.opcode
    handler = _HANDLERS.get(opcode)
    if handler is not None:
        handler(_Context(engine, now), request, body, reply)
    elif opcode in WRITE_OPCODES:
        counters["control_denied"] += 1
        reply.error(CERR_PERMISSION)
    else:
        counters["control_badop"] += 1
        reply.error(CERR_BADOP)
    if reply.error_code is not None:
        counters["control_errors"] += 1
    else:
        counters["control_answered"] += 1
    counters["control_sent"] += len(reply.datagrams)
    return reply.datagrams


def _malformed(data: bytes) -> str | None:
    """The drop counter for a request that must not be answered, or None."""
    size = len(data)
    if size < HEADER_LEN:
        return "control_tooshort"
    if size > MAX_REQUEST:
        return "control_toolong"
    header = ControlHeader.decode(data)
    if header.r_e_m_op & RESPONSE:
        return "control_response"
    if header.r_e_m_op & (ERROR | MORE):
        return "control_badflags"
    if header.offset:
        return "control_badoffset"
    if not 1 <= header.version <= 4:
        return "control_badversion"
    if size % 4:
        return "control_badlength"
    if header.count > size - HEADER_LEN or header.count > MAX_DATA:
        return "control_badcount"
    return None


class _Reply:
    """Collects a response and fragments it like ntpd's ctl_putdata()/ctl_flushpkt()."""

    def __init__(self, engine: Engine, request: ControlHeader) -> None:
        self._lvm = (engine.sys.leap << 6) | (request.version << 3) | MODE_CONTROL
        self._request = request
        self.status = 0
        self.error_code: int | None = None
        self.datagrams: list[bytes] = []

    def _packet(self, flags: int, status: int, offset: int, chunk: bytes) -> bytes:
        request = self._request
        header = HEADER.pack(self._lvm, RESPONSE | flags | request.opcode, request.sequence,
                             status, request.associd, offset, len(chunk))
        return header + chunk + b"\0" * (-len(chunk) % 4)

    def error(self, code: int) -> None:
        """An error response: header only, the code in the status high octet."""
        self.error_code = code
        self.datagrams = [self._packet(ERROR, (code << 8) & 0xFF00, 0, b"")]

    def send(self, data: bytes, *, text: bool) -> None:
        """The response data in as many fragments as needed; text ends with CR LF when it
        fits in the last fragment (as ntpd does)."""
        chunks = [data[i:i + MAX_DATA] for i in range(0, len(data), MAX_DATA)] or [b""]
        if text and data and len(chunks[-1]) + 2 < MAX_DATA:
            chunks[-1] += b"\r\n"
        offset = 0
        for index, chunk in enumerate(chunks):
            more = MORE if index < len(chunks) - 1 else 0
            self.datagrams.append(self._packet(more, self.status, offset, chunk))
            offset += len(chunk)


def pack_items(items: Iterable[str]) -> bytes:
    """``name=value`` items joined as ntpd joins them: ", " and a CR LF before an item that
    would make the line reach 72 characters."""
    out: list[str] = []
    line = 0
    for item in items:
        if out:
            out.append(",")
            line += 1
            if len(item) + line + 1 >= MAX_LINE:
                out.append("\r\n")
                line = 0
            else:
                out.append(" ")
                line += 1
        out.append(item)
        line += len(item)
    return "".join(out).encode("ascii", "replace")


def _requested(body: bytes) -> list[str] | None:
    """The variable names of a READVAR request (values after '=' are ignored), or None when
    the list is not printable ASCII or an item is over-long (CERR_BADFMT)."""
    try:
        text = body.decode("ascii").rstrip("\0")
    except UnicodeDecodeError:
        return None
    names = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if len(item) > MAX_NAME or _PRINTABLE.search(item):
            return None
        names.append(item.split("=", 1)[0].strip())
    return names


# -- value formats (ntpd ctl_put*) --------------------------------------------------------


def _quoted(name: str, value: str) -> str:
    """``name="value"``; characters that would break the list become '?'."""
    return f'{name}="{_PRINTABLE.sub("?", value).replace(chr(34), "?")}"'


def _ts(name: str, value: int) -> str:
    return f"{name}=0x{(value >> 32) & 0xFFFFFFFF:08x}.{value & 0xFFFFFFFF:08x}"


def _ms(name: str, seconds: float, digits: int = 3) -> str:
    return f"{name}={seconds * 1e3:.{digits}f}"


def _filestamp(name: str, ntp_seconds: int) -> str:
    """YYYYMMDDHHMM in UTC (ntpd ctl_putfs)."""
    moment = datetime.datetime.fromtimestamp(ntp_seconds - NTP_UNIX_OFFSET, datetime.UTC)
    return f"{name}={moment:%Y%m%d%H%M}"


def _calendar(name: str, moment: datetime.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return f"{name}={moment:%Y%m%d%H%M}"


def _refid(name: str, refid: bytes, stratum: int, text: bool = False) -> str:
    """ASCII for stratum 0/1/16 and refclocks (unprintables as '.'), else a dotted quad."""
    if text or stratum <= 1 or stratum >= 16:
        chars = []
        for octet in refid[:4]:
            if octet == 0:
                break
            chars.append(chr(octet) if 0x21 <= octet <= 0x7E and octet != 0x2C else ".")
        return f"{name}={''.join(chars)}"
    return f"{name}={'.'.join(str(b) for b in refid[:4])}"


def _array(name: str, values: Iterable[float]) -> str:
    return f"{name}=" + "".join(f" {v * 1e3:.2f}" for v in values)


@functools.lru_cache(maxsize=1)
def _platform() -> tuple[str, str]:
    uname = platform.uname()
    return uname.machine or "unknown", f"{uname.system}/{uname.release}"


# -- status words -------------------------------------------------------------------------


def selection(engine: Engine, assoc: Association) -> int:
    """The select code of the peer status word: 6 sys.peer; 4 candidate (a sample, no peer
    test failing, proventic when Autokey); 0 reject."""
    if assoc.associd == engine.sys.peer:
        return SEL_SYSPEER
    autokey = assoc.autokey
    if assoc.has_sample and assoc.reach and not assoc.peer_flash and not assoc.noselect \
            and assoc.hmode != MODE_BROADCAST \
            and (autokey is None or autokey.state.proventic):
        return SEL_CANDIDATE
    return SEL_REJECT


def peer_status(engine: Engine, assoc: Association) -> int:
    """The 16-bit peer status word (RFC 9327 figure 7; ntpd ctlpeerstatus()).

    Event code and count are derived: mobilize, then reachable (or unreachable once polls
    went unanswered), then sys_peer while it is the system peer; the count is how many of
    those steps the association has been through."""
    bits = 0
    if not assoc.ephemeral:
        bits |= PST_CONFIG
    authenticated = assoc.keyid is not None or assoc.autokey is not None \
        or assoc.nts is not None
    if authenticated:
        bits |= PST_AUTHENABLE
        if assoc.reach and not assoc.flash & (Flash.TEST5 | Flash.TEST8 | Flash.TEST9):
            bits |= PST_AUTHENTIC
    if assoc.reach:
        bits |= PST_REACH
    if assoc.hmode == MODE_BROADCAST:
        bits |= PST_BCAST
    event, count = PEVNT_MOBIL, 1
    if assoc.reach or assoc.has_sample:
        event, count = PEVNT_REACH, 2
        if assoc.associd == engine.sys.peer:
            event, count = PEVNT_NEWPEER, 3
    elif assoc.unreach:
        event, count = PEVNT_UNREACH, 2
    return ((bits | selection(engine, assoc)) << 8) | (count << 4) | event


def system_status(engine: Engine) -> int:
    """The 16-bit system status word: leap, clock source (LOCAL or NTP for the system
    peer), derived event (restart, then clock_sync while synchronised or clock_step after a
    step) and count."""
    sys = engine.sys
    source = SST_UNSPEC
    peer = engine.associations.get(sys.peer) if sys.peer is not None else None
    if peer is not None:
        source = SST_LOCAL if peer.is_refclock else SST_NTP
    event, count = EVNT_SYSRESTART, 1
    if engine.counters["steps"]:
        event, count = EVNT_CLOCKRESET, 2
    if sys.leap != LEAP_UNSYNC and peer is not None:
        event, count = EVNT_SYNC, count + 1
    return ((sys.leap & 3) << 14) | ((source << 8) & 0x3F00) | ((count << 4) & 0xF0) | event


# -- variables ----------------------------------------------------------------------------


class _Context:
    """What one request reads: the engine and the reactor time."""

    def __init__(self, engine: Engine, now: float) -> None:
        self.engine = engine
        self.now = now

    @property
    def root_dispersion(self) -> float:
        sys = self.engine.sys
        if sys.leap == LEAP_UNSYNC:
            return sys.root_dispersion
        return sys.root_dispersion + PHI * max(self.now - sys.epoch, 0.0)

    @property
    def uptime(self) -> int:
        started = getattr(self.engine, "started", None)
        return int(max(self.now - started, 0.0)) if started is not None else 0


Items = list[str]
SystemVar = Callable[[_Context], Items]
PeerVar = Callable[[_Context, "Association"], Items]


def _one(item: str | None) -> Items:
    return [item] if item is not None else []


def _discipline(ctx: _Context) -> Any:
    return ctx.engine.discipline


def _sys_tc(ctx: _Context) -> Items:
    engine = ctx.engine
    if engine.discipline is not None:
        return [f"tc={engine.discipline.poll}"]
    peer = engine.associations.get(engine.sys.peer) if engine.sys.peer is not None else None
    return [f"tc={peer.hpoll if peer is not None else 6}"]


def _leap_table(ctx: _Context) -> Any:
    return ctx.engine.leap_table


def _ntp_now(ctx: _Context) -> int:
    return int(ctx.engine.clock.now()) + NTP_UNIX_OFFSET


def _sys_tai(ctx: _Context) -> Items:
    table = _leap_table(ctx)
    offset = table.tai_offset(_ntp_now(ctx)) if table is not None else 0
    return [f"tai={offset}"] if offset > 0 else []


def _sys_leapsec(ctx: _Context) -> Items:
    table = _leap_table(ctx)
    if table is None or not table.entries:
        return []
    return [_filestamp("leapsec", table.entries[-1][0])]


def _sys_expire(ctx: _Context) -> Items:
    table = _leap_table(ctx)
    return [_filestamp("expire", table.expires)] if table is not None and table.expires else []


def _host(ctx: _Context) -> Any:
    node = ctx.engine.autokey
    return node.host if node is not None else None


def _sys_autokey(render: Callable[[Any], Items]) -> SystemVar:
    def variable(ctx: _Context) -> Items:
        host = _host(ctx)
        return render(host) if host is not None else []
    return variable


def _certificates(host: Any) -> Items:
    items = []
    for entry in host.cache:
        items.append(_quoted("cert", f"{entry.subject} {entry.issuer} 0x{entry.flags:x}"))
        items.append(_calendar("until", entry.cert.not_after))
    return items


def _signature_name(host: Any) -> str:
    return NID_LONG_NAMES.get(host.nid, host.profile.signature_name)


SS_COUNTERS = {
    "ss_received": ("received",), "ss_badformat": ("badlength", "toomanyfields"),
    "ss_badauth": ("badauth",), "ss_declined": ("declined",),
    "ss_restricted": ("restricted",), "ss_limited": ("limited",),
    "ss_kodsent": ("kodsent",), "ss_processed": ("served", "samples"),
}
"""ntpd's sysstats variables and the engine counters each one sums."""


def _ss(name: str, counters: tuple[str, ...]) -> SystemVar:
    return lambda ctx: [f"{name}={sum(ctx.engine.counters[c] for c in counters)}"]


def _ss_version(name: str, counter: str) -> SystemVar:
    """ss_thisver/ss_oldver: shown only once the engine counts packets by version."""
    def variable(ctx: _Context) -> Items:
        counters = ctx.engine.counters
        return [f"{name}={counters[counter]}"] if counter in counters else []
    return variable


def _sys_peeradr(ctx: _Context) -> Items:
    sys = ctx.engine.sys
    peer = ctx.engine.associations.get(sys.peer) if sys.peer is not None else None
    if peer is None:
        return ["peeradr=0.0.0.0:0"]
    return [f"peeradr={peer.address[0]}:{peer.address[1]}"]


def _sys_peermode(ctx: _Context) -> Items:
    sys = ctx.engine.sys
    peer = ctx.engine.associations.get(sys.peer) if sys.peer is not None else None
    return [f"peermode={peer.hmode if peer is not None else 0}"]


SYSTEM_VARIABLES: dict[str, SystemVar] = {
    "leap": lambda c: [f"leap={c.engine.sys.leap}"],
    "stratum": lambda c: [f"stratum={c.engine.sys.stratum}"],
    "precision": lambda c: [f"precision={c.engine.precision}"],
    "rootdelay": lambda c: [_ms("rootdelay", c.engine.sys.root_delay)],
    "rootdisp": lambda c: [_ms("rootdisp", c.root_dispersion)],
    "refid": lambda c: [_refid("refid", c.engine.sys.refid, c.engine.sys.stratum)],
    "reftime": lambda c: [_ts("reftime", c.engine.sys.reftime)],
    "tc": _sys_tc,
    "peer": lambda c: [f"peer={c.engine.sys.peer or 0}"],
    "offset": lambda c: [_ms("offset", _discipline(c).offset if _discipline(c) is not None
                             else c.engine.sys.offset, 6)],
    "frequency": lambda c: [f"frequency={_discipline(c).frequency_ppm:.3f}"
                            if _discipline(c) is not None else "frequency=0.000"],
    "sys_jitter": lambda c: [_ms("sys_jitter", c.engine.sys.jitter, 6)],
    "clk_jitter": lambda c: [_ms("clk_jitter", _discipline(c).jitter
                                 if _discipline(c) is not None else 2.0**c.engine.precision)],
    "clock": lambda c: [_ts("clock", unix_to_ntp(c.engine.clock.now()))],
    "processor": lambda c: [_quoted("processor", _platform()[0])],
    "system": lambda c: [_quoted("system", _platform()[1])],
    "version": lambda c: [_quoted("version", f"ntpauto {__version__}")],
    "clk_wander": lambda c: [f"clk_wander={_discipline(c).wander * 1e6:.3f}"
                             if _discipline(c) is not None else "clk_wander=0.000"],
    "sys_var_list": lambda c: [_quoted("sys_var_list", ",".join(_system_names(c)))],
    "tai": _sys_tai,
    "leapsec": _sys_leapsec,
    "expire": _sys_expire,
    "mintc": lambda c: ["mintc=3"],
    "ss_uptime": lambda c: [f"ss_uptime={c.uptime}"],
    "ss_reset": lambda c: [f"ss_reset={c.uptime}"],
    **{name: _ss(name, counters) for name, counters in SS_COUNTERS.items()},
    "ss_thisver": _ss_version("ss_thisver", "thisver"),
    "ss_oldver": _ss_version("ss_oldver", "oldver"),
    "peeradr": _sys_peeradr,
    "peermode": _sys_peermode,
    "flags": _sys_autokey(lambda h: [f"flags=0x{h.status:x}"] if h.status else []),
    "host": _sys_autokey(lambda h: [_quoted("host", h.name)]),
    "update": _sys_autokey(lambda h: [_filestamp("update", h.update)] if h.update else []),
    "cert": _sys_autokey(_certificates),
    "signature": _sys_autokey(lambda h: [_quoted("signature", _signature_name(h))]),
    "until": lambda c: [],  # output with each cert
    "ident": _sys_autokey(lambda h: [_quoted("ident", h.ident)] if h.ident else []),
    "digest": _sys_autokey(lambda h: [_quoted("digest", h.digest.lower())]),
}
"""ntpd's system variables that ntpauto has, in ntpd's table order."""

DEFAULT_SYSTEM = (
    "version", "processor", "system", "leap", "stratum", "precision", "rootdelay",
    "rootdisp", "refid", "reftime", "clock", "peer", "tc", "mintc", "offset", "frequency",
    "sys_jitter", "clk_jitter", "clk_wander", "tai", "leapsec", "expire",
    "host", "ident", "flags", "digest", "signature", "update", "cert",
)
"""What ``rv`` shows (ntpd def_sys_var[], without the leap smear it does not have)."""


def _system_names(ctx: _Context) -> list[str]:
    return [*SYSTEM_VARIABLES, "counters", *_extra_names(ctx)]


def _metrics(engine: Engine) -> list[tuple[str, str]]:
    """ntpauto.metrics' variables."""
    return mode6_variables(engine)


def _extra_names(ctx: _Context) -> list[str]:
    """Counters (and metrics) readable by name when requested explicitly."""
    names = [name for name in sorted(ctx.engine.counters) if name not in SYSTEM_VARIABLES]
    names.append("metrics")
    names.extend(n for n, _ in _metrics(ctx.engine) if n not in SYSTEM_VARIABLES)
    return names


def _extra(ctx: _Context, name: str) -> Items | None:
    """An explicitly requested ntpauto variable: ``counters`` (all engine counters),
    ``metrics`` (all metrics), or one counter or metric by name; None if unknown."""
    counters = ctx.engine.counters
    if name == "counters":
        return [f"{n}={counters[n]}" for n in sorted(counters)]
    if name in counters:
        return [f"{name}={counters[name]}"]
    metrics = _metrics(ctx.engine)
    if name == "metrics":
        return [f"{n}={v}" for n, v in metrics]
    for n, v in metrics:
        if n == name:
            return [f"{n}={v}"]
    return None


# Peer variables.


def _peer_srcport(ctx: _Context, a: Association) -> Items:
    return [f"srcport={a.address[1] or 123}"]


def _peer_dstadr(ctx: _Context, a: Association) -> Items:
    if a.is_refclock:
        return ["dstadr=127.0.0.1"]
    return [f"dstadr={a.local_address or ctx.engine.local_address or '0.0.0.0'}"]


def _peer_stratum(a: Association) -> int:
    return a.refclock_stratum if a.is_refclock else a.stratum


def _peer_refid(ctx: _Context, a: Association) -> Items:
    if a.is_refclock:
        return [_refid("refid", a.refclock_refid, 0, text=True)]
    return [_refid("refid", a.refid, a.stratum)]


def _peer_keyid(ctx: _Context, a: Association) -> Items:
    keyid = a.keyid or 0
    if a.autokey is not None:
        keyid = getattr(a.autokey, "sent_keyid", 0) or 0
    return [f"keyid=0x{keyid:x}" if keyid > 65535 else f"keyid={keyid}"]


def _stages(a: Association) -> list[Any]:
    return a.filter.stages()


def _state(a: Association) -> Any:
    return a.autokey.state if a.autokey is not None else None


def _peer_autokey(render: Callable[[Any], Items]) -> PeerVar:
    def variable(ctx: _Context, a: Association) -> Items:
        state = _state(a)
        return render(state) if state is not None else []
    return variable


def _initsequence(state: Any) -> Items:
    value = state.autokey
    if value is None:
        return []
    items = [f"initsequence={value.seq}", f"initkey=0x{value.keyid:x}"]
    if state.auto_timestamp:
        items.append(_filestamp("timestamp", state.auto_timestamp))
    return items


def _peer_signature(state: Any) -> Items:
    if not state.status:
        return []
    nid = word_nid(state.status)
    return [_quoted("signature", NID_LONG_NAMES.get(nid, f"NID {nid}"))]


PEER_VARIABLES: dict[str, PeerVar] = {
    "config": lambda c, a: [f"config={int(not a.ephemeral)}"],
    "authenable": lambda c, a: [
        f"authenable={int(a.keyid is None and a.autokey is None and a.nts is None)}"],
    "authentic": lambda c, a: [f"authentic={int(bool(peer_status(c.engine, a) & 0x2000))}"],
    "srcadr": lambda c, a: [f"srcadr={a.address[0]}"],
    "srcport": _peer_srcport,
    "dstadr": _peer_dstadr,
    "dstport": lambda c, a: [f"dstport={c.engine.config.port}"],
    "leap": lambda c, a: [f"leap={0 if a.is_refclock else a.leap}"],
    "hmode": lambda c, a: [f"hmode={a.hmode}"],
    "stratum": lambda c, a: [f"stratum={_peer_stratum(a)}"],
    "ppoll": lambda c, a: [f"ppoll={a.hpoll if a.is_refclock else a.ppoll}"],
    "hpoll": lambda c, a: [f"hpoll={a.hpoll}"],
    "precision": lambda c, a: [f"precision={c.engine.precision}"] if a.is_refclock else [],
    "rootdelay": lambda c, a: [_ms("rootdelay", a.root_delay)],
    "rootdisp": lambda c, a: [_ms("rootdisp", a.root_dispersion)],
    "refid": _peer_refid,
    "reftime": lambda c, a: [_ts("reftime", a.reftime)],
    "org": lambda c, a: [_ts("org", a.org)],
    "rec": lambda c, a: [_ts("rec", a.rec)],
    "reach": lambda c, a: [f"reach=0x{a.reach:x}"],
    "unreach": lambda c, a: [f"unreach={a.unreach}"],
    "timer": lambda c, a: [f"timer={max(int(a.nextdate - c.now), 0)}"],
    "delay": lambda c, a: [_ms("delay", a.delay)],
    "offset": lambda c, a: [_ms("offset", a.offset)],
    "jitter": lambda c, a: [_ms("jitter", a.jitter)],
    "dispersion": lambda c, a: [_ms("dispersion", a.dispersion)],
    "keyid": _peer_keyid,
    "filtdelay": lambda c, a: [_array("filtdelay", (s.delay for s in _stages(a)))],
    "filtoffset": lambda c, a: [_array("filtoffset", (s.offset for s in _stages(a)))],
    "pmode": lambda c, a: [f"pmode={a.pmode}"],
    "filtdisp": lambda c, a: [_array("filtdisp", (s.dispersion for s in _stages(a)))],
    "flash": lambda c, a: [f"flash=0x{int(a.flash | a.peer_flash):x}"],
    "peer_var_list": lambda c, a: [_quoted("peer_var_list", ",".join(PEER_VARIABLES))],
    "headway": lambda c, a: ["headway=0"],
    "srchost": lambda c, a: ([_quoted("srchost", f"LOCAL({a.address[0].rsplit('.', 1)[-1]})")]
                             if a.is_refclock else []),
    "candidate": lambda c, a: [f"candidate={selection(c.engine, a)}"],
    "flags": _peer_autokey(lambda s: [f"flags=0x{s.status:x}"] if s.status else []),
    "host": _peer_autokey(lambda s: [_quoted("host", s.peer_name)] if s.peer_name else []),
    "valid": lambda c, a: [],  # never output (ntpd)
    "initsequence": _peer_autokey(_initsequence),
    "signature": _peer_autokey(_peer_signature),
    "ident": _peer_autokey(lambda s: [_quoted("ident", s.ident)] if s.ident else []),
}
"""ntpd's peer variables that ntpauto has, in ntpd's table order."""

def _peer_nts(render: Callable[[Any, Any, Any], Items]) -> PeerVar:
    """A variable of an NTS association (none for the others)."""
    def variable(ctx: _Context, a: Association) -> Items:
        return render(ctx, a, a.nts) if a.nts is not None else []
    return variable


def _nts_ke(ctx: _Context, a: Association, nts: Any) -> Items:
    if nts.keyed_at is None:
        return []
    return [f"nts_ke={int(ctx.now - nts.keyed_at)}"]


PEER_EXTENSIONS: dict[str, PeerVar] = {
    "scheme": _peer_autokey(lambda s: [_quoted("scheme", s.scheme_name)]
                            if s.scheme_name else []),
    "trail": _peer_autokey(lambda s: [_quoted("trail", ";".join(f"{subject} {issuer}"
                                                              for subject, issuer in s.trail))]
                           if s.trail else []),
    "nts_host": _peer_nts(lambda c, a, n: [_quoted("nts_host", f"{n.host} {n.port}")]),
    "nts_cookies": _peer_nts(lambda c, a, n: [f"nts_cookies={len(n.cookies)}"]),
    "nts_aead": _peer_nts(lambda c, a, n: [_quoted("nts_aead", AEAD_NAMES.get(
        n.keys.aead, str(n.keys.aead)))] if n.keys else []),
    "nts_ke": _peer_nts(_nts_ke),
    "nts_error": _peer_nts(lambda c, a, n: [_quoted("nts_error", c.engine.nts.last_error[
        a.associd])] if a.associd in c.engine.nts.last_error else []),
}
"""ntpauto-only peer variables: the identity scheme in use and the certificate trail as
received (``subject issuer`` links separated by ';'), output only when requested by name;
and an NTS association's state (RFC 8915): its NTS-KE server (``name port``), the cookies
it holds, the AEAD algorithm, the seconds since its last NTS-KE exchange and why the last
one failed, output with the default variables too."""

DEFAULT_PEER = (
    "srcadr", "srcport", "srchost", "dstadr", "dstport", "leap", "stratum", "precision",
    "rootdelay", "rootdisp", "refid", "reftime", "rec", "reach", "unreach", "hmode", "pmode",
    "hpoll", "ppoll", "headway", "flash", "keyid", "offset", "delay", "dispersion", "jitter",
    "filtdelay", "filtoffset", "filtdisp", "host", "flags", "signature", "valid",
    "initsequence", "ident", "nts_host", "nts_cookies", "nts_aead", "nts_ke", "nts_error",
)
"""What ``rv ASSOC`` shows (ntpd def_peer_var[], without what ntpauto does not have)."""


# -- opcodes ------------------------------------------------------------------------------


def _find(ctx: _Context, associd: int, reply: _Reply) -> Association | None:
    assoc = ctx.engine.associations.get(associd)
    if assoc is None:
        ctx.engine.counters["control_badassoc"] += 1
        reply.error(CERR_BADASSOC)
    return assoc


def _unspec(ctx: _Context, request: ControlHeader, body: bytes, reply: _Reply) -> None:
    """Opcode 0: no data, just the status word (ntpd control_unspec())."""
    if request.associd:
        assoc = _find(ctx, request.associd, reply)
        if assoc is None:
            return
        reply.status = peer_status(ctx.engine, assoc)
    else:
        reply.status = system_status(ctx.engine)
    reply.send(b"", text=False)


def _read_status(ctx: _Context, request: ControlHeader, body: bytes, reply: _Reply) -> None:
    """Opcode 1: association IDs and status words, or one association's variables."""
    engine = ctx.engine
    if request.associd:
        assoc = _find(ctx, request.associd, reply)
        if assoc is None:
            return
        reply.status = peer_status(engine, assoc)
        reply.send(pack_items(_peer_items(ctx, assoc, DEFAULT_PEER)), text=True)
        return
    reply.status = system_status(engine)
    data = b"".join(struct.pack("!HH", associd, peer_status(engine, assoc))
                    for associd, assoc in sorted(engine.associations.items()))
    reply.send(data, text=False)


def _peer_items(ctx: _Context, assoc: Association, names: Iterable[str]) -> Iterator[str]:
    for name in names:
        variable = PEER_VARIABLES.get(name) or PEER_EXTENSIONS[name]
        yield from variable(ctx, assoc)


def _read_variables(ctx: _Context, request: ControlHeader, body: bytes,
                    reply: _Reply) -> None:
    """Opcode 2: the requested variables (in table order), or the default list."""
    engine = ctx.engine
    names = _requested(body)
    if names is None:
        engine.counters["control_badfmt"] += 1
        reply.error(CERR_BADFMT)
        return
    if request.associd:
        assoc = _find(ctx, request.associd, reply)
        if assoc is None:
            return
        if any(n not in PEER_VARIABLES and n not in PEER_EXTENSIONS for n in names):
            engine.counters["control_unknownvar"] += 1
            reply.error(CERR_UNKNOWNVAR)
            return
        wanted = [n for n in (*PEER_VARIABLES, *PEER_EXTENSIONS) if n in names]
        reply.status = peer_status(engine, assoc)
        reply.send(pack_items(_peer_items(ctx, assoc, wanted or DEFAULT_PEER)), text=True)
        return
    extra: list[str] = []
    for name in names:
        if name in SYSTEM_VARIABLES or name in extra:
            continue
        items = _extra(ctx, name)
        if items is None:
            engine.counters["control_unknownvar"] += 1
            reply.error(CERR_UNKNOWNVAR)
            return
        extra.append(name)
    reply.status = system_status(engine)
    if not names:
        items = [i for n in DEFAULT_SYSTEM for i in SYSTEM_VARIABLES[n](ctx)]
    else:
        items = [i for n in SYSTEM_VARIABLES if n in names for i in SYSTEM_VARIABLES[n](ctx)]
        for name in extra:
            items.extend(_extra(ctx, name) or [])
    reply.send(pack_items(items), text=True)


def _read_clock(ctx: _Context, request: ControlHeader, body: bytes, reply: _Reply) -> None:
    """Opcode 4: the LOCAL driver's few clock variables; other associations have no clock
    (CERR_BADASSOC, as ntpd answers)."""
    engine = ctx.engine
    associd = request.associd or engine.sys.peer or 0
    assoc = engine.associations.get(associd)
    if assoc is None or not assoc.is_refclock:
        engine.counters["control_badassoc"] += 1
        reply.error(CERR_BADASSOC)
        return
    reply.status = 0
    reply.send(pack_items([_quoted("device", "Undisciplined local clock"),
                           f"stratum={assoc.refclock_stratum}",
                           _refid("refid", assoc.refclock_refid, 0, text=True)]), text=True)


def _no_mru(ctx: _Context, request: ControlHeader, body: bytes, reply: _Reply) -> None:
    """MRU list and its nonce: not kept (ntpd's answer under ``restrict ... nomrulist``)."""
    ctx.engine.counters["control_denied"] += 1
    reply.error(CERR_PERMISSION)


_HANDLERS: dict[int, Callable[[_Context, ControlHeader, bytes, _Reply], None]] = {
    OP_UNSPEC: _unspec,
    OP_READSTAT: _read_status,
    OP_READVAR: _read_variables,
    OP_READCLOCK: _read_clock,
    OP_READ_MRU: _no_mru,
    OP_REQ_NONCE: _no_mru,
}
