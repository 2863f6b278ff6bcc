"""Read NTP datagrams out of pcap and pcapng files (the I/O half of ``ntpauto trace``).

Scapy reads both file formats and dissects the link layers tcpdump writes (Ethernet, Linux
cooked SLL and SLL2, raw IP, BSD loopback); this module only picks the UDP datagrams to or
from the NTP port and hands their payloads, addresses and times to the sans-I/O analysis
(:mod:`ntpauto.trace.analysis`).

Scapy stops quietly (with a logged warning) at a truncated record, so the record framing is
checked first: the records before one that is cut short are read, and then the truncation is
reported (:class:`TruncatedCapture`, which carries them); a file that is not a capture at all
is a :class:`CaptureError`.
"""

from __future__ import annotations

import gzip
import io
import logging
import struct
from pathlib import Path
from typing import Any

from attrs import frozen

__all__ = ["CaptureError", "Datagram", "NTP_PORT", "TruncatedCapture", "check_framing",
           "read_capture"]

NTP_PORT = 123

_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">", b"\xd4\xc3\xb2\xa1": "<",  # microsecond timestamps
    b"\xa1\xb2\x3c\x4d": ">", b"\x4d\x3c\xb2\xa1": "<",  # nanosecond timestamps
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BYTE_ORDER = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
_PCAP_HEADER_LEN = 24
_PCAP_RECORD_LEN = 16


class CaptureError(ValueError):
    """The file is not a readable pcap or pcapng capture (or it is truncated)."""


class TruncatedCapture(CaptureError):
    """The capture ends inside a record or block; ``datagrams`` and ``frames`` are what
    :func:`read_capture` read from the complete records before it."""

    def __init__(self, message: str, datagrams: list[Datagram], frames: int) -> None:
        super().__init__(message)
        self.datagrams = datagrams
        self.frames = frames


@frozen
class Datagram:
    """One UDP datagram from a capture: frame number (0-based), capture time (Unix
    seconds), endpoints and payload."""

    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def check_framing(data: bytes) -> str:
    """Walk the record (pcap) or block (pcapng) headers of a whole capture file and return
    its format, ``"pcap"`` or ``"pcapng"``; :class:`CaptureError` when the file is neither or
    its last record or block does not end exactly at the end of the file."""
    kind, _end, problem = _framing(data)
    if problem is not None:
        raise CaptureError(problem)
    return kind


def _framing(data: bytes) -> tuple[str, int, str | None]:
    """(format, length of the complete records, what cuts the file short or None);
    :class:`CaptureError` when the file is not a capture (its own header incomplete)."""
    magic = data[:4]
    if magic in _PCAP_MAGICS:
        endian = _PCAP_MAGICS[magic]
        if len(data) < _PCAP_HEADER_LEN:
            raise CaptureError("truncated pcap file header")
        offset, count = _PCAP_HEADER_LEN, 0
        while offset < len(data):
            caplen = struct.unpack_from(endian + "I", data, offset + 8)[0] \
                if len(data) - offset >= _PCAP_RECORD_LEN else None
            if caplen is None or offset + _PCAP_RECORD_LEN + caplen > len(data):
                return "pcap", offset, f"truncated after {_packets(count)}"
            offset += _PCAP_RECORD_LEN + caplen
            count += 1
        return "pcap", offset, None
    if magic == _PCAPNG_SHB:
        offset, blocks, endian = 0, 0, "<"
        while offset < len(data):
            if len(data) - offset < 12:
                return _pcapng_cut(offset, blocks)
            if data[offset:offset + 4] == _PCAPNG_SHB:
                order = data[offset + 8:offset + 12]
                if order not in _PCAPNG_BYTE_ORDER:
                    raise CaptureError("bad pcapng byte-order magic")
                endian = _PCAPNG_BYTE_ORDER[order]
            length = struct.unpack_from(endian + "I", data, offset + 4)[0]
            if length < 12 or length % 4 or offset + length > len(data):
                return _pcapng_cut(offset, blocks)
            offset += length
            blocks += 1
        return "pcapng", offset, None
    raise CaptureError("unknown file format")


def _packets(count: int) -> str:
    return f"{count} packet{'' if count == 1 else 's'}"


def _pcapng_cut(offset: int, blocks: int) -> tuple[str, int, str]:
    if blocks == 0:
        raise CaptureError("truncated pcapng section header")
    return "pcapng", offset, f"truncated after {blocks} block{'' if blocks == 1 else 's'}"


def _quiet_scapy() -> None:
    # Scapy logs a warning for every oddity; our own framing check reports those instead.
    logging.getLogger("scapy").setLevel(logging.ERROR)


def _endpoints(packet: Any) -> tuple[str, int, str, int, bytes] | None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    udp = packet.getlayer(UDP)
    if udp is None or type(udp) is not UDP:
        return None  # none, or a UDP header quoted inside an ICMP error
    ip = udp.underlayer
    while ip is not None and not isinstance(ip, IP | IPv6):
        ip = ip.underlayer
    if ip is None:
        return None
    raw = bytes(udp.original or b"")
    payload = raw[8:udp.len] if udp.len and udp.len >= 8 else raw[8:]
    return str(ip.src), int(udp.sport), str(ip.dst), int(udp.dport), payload


def read_capture(path: str | Path, port: int = NTP_PORT) -> tuple[list[Datagram], int]:
    """The UDP datagrams from or to ``port`` in a pcap or pcapng file (gzip-compressed
    files too), in capture order, and the number of frames read in all.

    :class:`CaptureError` when the file is not a capture, :class:`TruncatedCapture` (with
    the datagrams of the complete records) when it is cut short; ``OSError`` when it cannot
    be read."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CaptureError(f"bad gzip stream: {exc}") from None
    _kind, end, truncated = _framing(data)
    data = data[:end]
    _quiet_scapy()
    from scapy.error import Scapy_Exception
    from scapy.layers import inet, inet6, l2  # noqa: F401  (register the link types)
    from scapy.utils import PcapReader

    out: list[Datagram] = []
    frames = 0
    try:
        with PcapReader(io.BytesIO(data)) as reader:  # type: ignore[no-untyped-call]
            for frames, packet in enumerate(reader, start=1):
                endpoints = _endpoints(packet)
                if endpoints is None:
                    continue
                src, sport, dst, dport, payload = endpoints
                if port not in (sport, dport):
                    continue
                out.append(Datagram(frames - 1, float(packet.time), src, sport, dst, dport,
                                    payload))
    except (Scapy_Exception, EOFError, struct.error, ValueError) as exc:
        raise CaptureError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) \
            from None
    if truncated is not None:
        raise TruncatedCapture(truncated, out, frames)
    return out, frames
