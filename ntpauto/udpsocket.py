"""Socket options of the daemon's UDP ports: the receive buffer, the kernel's drop count and
the destination address of each datagram (no Twisted here: plain ``socket`` objects).

* :func:`set_receive_buffer` asks for ``SO_RCVBUF`` (``SO_RCVBUFFORCE`` when privileged,
  which passes Linux's ``net.core.rmem_max`` cap) and returns what the kernel granted.
* :func:`kernel_drops` reads how many datagrams the kernel dropped at a socket because its
  receive buffer was full (Linux ``SO_MEMINFO``: one ``getsockopt``, asked for once a
  readiness event at most, so that the read loop pays nothing per datagram for it).
* :func:`reuseport_group` binds the sockets of a server's worker processes to one address
  and port (``SO_REUSEPORT``) and attaches :func:`steering_program` (Linux
  ``SO_ATTACH_REUSEPORT_CBPF``), which gives the kernel's choice of socket a rule: client
  requests of at most 72 octets and NTS requests (the ones a worker answers by itself) go
  to the socket chosen by a hash of their source address, everything else to the first
  socket, whose process owns the associations.
* :class:`Destinations`, on a wildcard bind (``0.0.0.0``, ``::``), has the kernel report
  each datagram's destination address (``IP_PKTINFO``, ``IPV6_RECVPKTINFO``) and gives the
  ancillary data that sends the reply *from* that address (``sendmsg``): a host with several
  addresses answers from the one the client asked, and Autokey, whose session keys hash the
  server's address, uses the address the client used.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

LINUX = sys.platform.startswith("linux")
_GENERIC_NUMBERS = LINUX and not os.uname().machine.startswith(("alpha", "parisc", "sparc"))
"""Linux numbers the socket options below as asm-generic/socket.h does except on alpha,
parisc and sparc (where this module leaves them alone rather than guess)."""

SO_RCVBUFFORCE: int | None = getattr(socket, "SO_RCVBUFFORCE", 33 if _GENERIC_NUMBERS else None)
SO_MEMINFO: int | None = getattr(socket, "SO_MEMINFO", 55 if _GENERIC_NUMBERS else None)
IP_PKTINFO: int | None = getattr(socket, "IP_PKTINFO", 8 if LINUX else None)
IPV6_RECVPKTINFO: int | None = getattr(socket, "IPV6_RECVPKTINFO", None)
IPV6_PKTINFO: int | None = getattr(socket, "IPV6_PKTINFO", None)
SO_REUSEPORT: int | None = getattr(socket, "SO_REUSEPORT", None)
SO_ATTACH_REUSEPORT_CBPF: int | None = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF",
                                               51 if _GENERIC_NUMBERS else None)

_MEMINFO = struct.Struct("=9I")
"""``SO_MEMINFO`` up to ``SK_MEMINFO_DROPS`` (Linux 4.14), the last of the nine."""
_IN_PKTINFO = struct.Struct("=i4s4s")
"""``struct in_pktinfo``: interface index, local address (a reply's source), destination."""
_IN6_PKTINFO = struct.Struct("=16sI")
"""``struct in6_pktinfo``: destination address, interface index."""

CACHE_LIMIT = 64
"""Distinct destinations remembered per socket (the host's own addresses: a handful)."""

Cmsg = tuple[int, int, bytes]
Destination = tuple[tuple[str, int], list[Cmsg]]
"""A datagram's local ``(address, port)`` and the ancillary data that replies from it."""


def receive_buffer(sock: socket.socket) -> int:
    """The socket's receive buffer in the units ``SO_RCVBUF`` is set in (Linux reports twice
    the size it was set to, the rest being its bookkeeping allowance: halved here)."""
    size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return size // 2 if LINUX else size


def set_receive_buffer(sock: socket.socket, size: int, *, force: bool) -> int:
    """Ask for a ``size``-byte receive buffer and return what the kernel granted (see
    :func:`receive_buffer`), which is less when ``net.core.rmem_max`` caps it.  ``force``
    (the process is privileged) uses ``SO_RCVBUFFORCE`` past the cap, falling back quietly to
    ``SO_RCVBUF`` when the kernel refuses it."""
    if force and SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            return receive_buffer(sock)
        except OSError:
            pass
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return receive_buffer(sock)


def privileged() -> bool:
    """True when the process may pass the kernel's buffer caps (root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped at ``sock`` since it was made, modulo 2**32 (its receive
    buffer was full, or a bad checksum); None where the system does not say."""
    if SO_MEMINFO is None:
        return None
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return None
    if len(info) < _MEMINFO.size:
        return None
    return _MEMINFO.unpack(info)[-1]


def is_wildcard(address: str) -> bool:
    """The address of a socket bound to every interface."""
    return address in ("0.0.0.0", "::")


class Destinations:
    """Each datagram's destination address, on a socket bound to a wildcard address.

    After :meth:`enable`, ``recvmsg(size, self.size)`` returns the destination in its
    ancillary data; :meth:`read` turns that into a :data:`Destination`.  The answers are
    cached by the raw ancillary value (``cached``: the cache's ``get``, for the read loop).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.size = 0
        """The ancillary buffer ``recvmsg`` needs."""
        self.recvmsg: Callable[[int, int], tuple[bytes, list[Cmsg], int, Any]] | None = None
        """The socket's ``recvmsg``, once enabled."""
        self._cache: dict[bytes, Destination] = {}
        self.cached = self._cache.get

    def enable(self, sock: socket.socket) -> bool:
        """Ask the kernel for each datagram's destination; False where it cannot say."""
        if sock.family == socket.AF_INET6:
            level, option, length = socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, _IN6_PKTINFO.size
        else:
            level, option, length = socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.size
        if option is None:
            return False
        try:
            sock.setsockopt(level, option, 1)
        except OSError:
            return False
        self.size = socket.CMSG_SPACE(length)
        self.recvmsg = sock.recvmsg
        return True

    def read(self, ancdata: list[Cmsg]) -> Destination | None:
        """The datagram's destination from its ancillary data (None: it does not say)."""
        for level, kind, data in ancdata:
            answer = self._cache.get(data) or self._parse(level, kind, data)
            if answer is not None:
                return answer
        return None

    def _parse(self, level: int, kind: int, data: bytes) -> Destination | None:
        """One ``*_pktinfo`` value, remembered (in a bounded cache)."""
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO \
                and len(data) >= _IN_PKTINFO.size:
            _, local, destination = _IN_PKTINFO.unpack_from(data)
            # Reply from the local address the kernel gives (the destination itself; the
            # interface's address for a broadcast), routed as usual (interface 0).
            reply: Cmsg = (level, kind, _IN_PKTINFO.pack(0, local, bytes(4)))
            address = socket.inet_ntop(socket.AF_INET, destination)
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO \
                and len(data) >= _IN6_PKTINFO.size:
            destination, index = _IN6_PKTINFO.unpack_from(data)
            # A multicast destination (ff00::/8) is no source: the kernel picks one.  The
            # interface index stays for a link-local one (fe80::/10: its scope) only.
            source = bytes(16) if destination[0] == 0xFF else destination
            link_local = destination[0] == 0xFE and destination[1] & 0xC0 == 0x80
            reply = (level, kind, _IN6_PKTINFO.pack(source, index if link_local else 0))
            address = socket.inet_ntop(socket.AF_INET6, destination)
        else:
            return None
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        answer = self._cache[data] = ((address, self.port), [reply])
        return answer


# -- several processes on one port ---------------------------------------------------------

MAX_WORKER_REQUEST = 72
"""The longest client request without extension fields (48 octets plain, 68 or 72 with a
MAC): a worker answers those; of the longer ones, only NTS requests (below)."""
NTP_HEADER = 48
NTS_UNIQUE_IDENTIFIER = 0x0104
"""The type of the extension field every NTS request carries (RFC 8915 section 5.3),
first in every client's we know of: a request whose first field is one is an NTS request,
which a worker answers (its cookie keys are the first process's); Autokey fields (first
octet 2) go to the first process."""
_SKF_NET_OFF = -0x100000
"""Classic BPF offset of the network header (a socket filter sees the UDP payload at 0)."""
_INSN = struct.Struct("=HBBI")
"""``struct sock_filter``: code, jump if true, jump if false, constant."""
_PROG = struct.Struct("@HP")
"""``struct sock_fprog``: the number of instructions, a pointer to them."""
# Classic BPF opcodes (linux/filter.h), as used below.
_LDB, _LDH_ABS, _LDW, _LDLEN = 0x30, 0x28, 0x20, 0x80  # ld byte/half/word at k, ld length
_AND, _RSH, _XOR, _MUL, _MOD = 0x54, 0x74, 0xA4, 0x24, 0x94  # A op= k
_XORX = 0xAC  # A ^= X
_JEQ, _JGT, _JA = 0x15, 0x25, 0x05  # jump if A == k, A > k; always
_TAX, _RETA, _RETK = 0x07, 0x16, 0x06


def steering_program(count: int) -> bytes:
    """A classic BPF program choosing one of ``count`` sockets for each datagram: a client
    request (mode 3) of at most :data:`MAX_WORKER_REQUEST` octets, or an NTS request (its
    first extension field a Unique Identifier), goes to socket ``hash of its source address
    modulo count``, anything else to socket 0.  The hash of an IPv6
    source is that of the exclusive-or of its four words; a source keeps its socket, so the
    rate limit and every other per-source table sees all of its requests."""
    if not 1 <= count <= 0xFFFF:
        raise ValueError(f"cannot steer to {count} sockets")
    net = _SKF_NET_OFF & 0xFFFFFFFF
    # (opcode, k, label if true, label if false); a label is where a jump goes.
    code: list[tuple[int, int, str, str] | str] = [
        (_LDB, 0, "", ""), (_AND, 7, "", ""), (_JEQ, 3, "", "owner"),  # mode 3 ...
        (_LDLEN, 0, "", ""), (_JGT, MAX_WORKER_REQUEST, "", "source"),  # ... short, or
        (_LDH_ABS, NTP_HEADER, "", ""), (_JEQ, NTS_UNIQUE_IDENTIFIER, "", "owner"),  # NTS
        "source", (_LDB, net, "", ""), (_RSH, 4, "", ""), (_JEQ, 6, "ipv6", ""),
        (_LDW, net + 12, "", ""), (_JA, 0, "mix", ""),                # IPv4 source
        "ipv6", (_LDW, net + 8, "", ""), (_TAX, 0, "", ""),
        (_LDW, net + 12, "", ""), (_XORX, 0, "", ""), (_TAX, 0, "", ""),
        (_LDW, net + 16, "", ""), (_XORX, 0, "", ""), (_TAX, 0, "", ""),
        (_LDW, net + 20, "", ""), (_XORX, 0, "", ""),
        "mix", (_TAX, 0, "", ""), (_RSH, 16, "", ""), (_XORX, 0, "", ""),
        (_MUL, 0x45D9F3B, "", ""), (_TAX, 0, "", ""), (_RSH, 16, "", ""), (_XORX, 0, "", ""),
        (_MOD, count, "", ""), (_RETA, 0, "", ""),
        "owner", (_RETK, 0, "", ""),
    ]
    labels: dict[str, int] = {}
    instructions: list[tuple[int, int, str, str]] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)
    out = []
    for index, (op, k, true, false) in enumerate(instructions):
        after = index + 1
        if op == _JA:
            k, true = labels[true] - after, ""
        jt = labels[true] - after if true else 0
        jf = labels[false] - after if false else 0
        out.append(_INSN.pack(op, jt, jf, k))
    return b"".join(out)


def reuseport_group(address: str, port: int, count: int, receive_buffer: int = 0, *,
                    force: bool = False) -> list[socket.socket]:
    """``count`` non-blocking UDP sockets bound to ``address`` and ``port`` (0: one the
    kernel picks) with ``SO_REUSEPORT``, in the kernel's order (the first is socket 0 of
    :func:`steering_program`), steered by it, each with ``receive_buffer`` bytes asked for
    (:func:`set_receive_buffer`).  OSError where the system cannot (no ``SO_REUSEPORT``, no
    classic BPF steering: not Linux), with every socket closed."""
    if SO_REUSEPORT is None or SO_ATTACH_REUSEPORT_CBPF is None:
        raise OSError(f"no SO_REUSEPORT steering on {sys.platform}")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    group: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            group.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
            if receive_buffer:
                set_receive_buffer(sock, receive_buffer, force=force)
            sock.bind((address, port))
            port = sock.getsockname()[1]
            sock.setblocking(False)
        program = ctypes.create_string_buffer(steering_program(count))
        fprog = _PROG.pack(len(program.raw) // _INSN.size, ctypes.addressof(program))
        group[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError:
        for sock in group:
            sock.close()
        raise
    return group
