"""Read NTP datagrams out of pcap and pcapng files (the I/O half of ``ntpauto trace``).

The two file formats are simple enough to read here, with no dependency: pcap is a file
header and records (draft-ietf-opsawg-pcap), pcapng a sequence of blocks of which we read the
section header, the interface descriptions (link type, timestamp resolution and offset) and
the enhanced, simple and obsolete packet blocks (draft-ietf-opsawg-pcapng).  The link layers
are the ones tcpdump writes: Ethernet (with 802.1Q/802.1ad tags), Linux cooked SLL and SLL2,
raw IP and BSD loopback; then IPv4 or IPv6 (extension headers skipped) and UDP.  Datagrams
are not reassembled from IP fragments: the first fragment gives what it holds.  This module
picks the UDP datagrams to or from the NTP port and hands their payloads, addresses and times
to the sans-I/O analysis (:mod:`ntpauto.trace.analysis`).

A record or block cut short ends the reading: the datagrams of the complete ones before it
are kept and the truncation is reported (:class:`TruncatedCapture`, which carries them); a
file that is not a capture at all is a :class:`CaptureError`.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from pathlib import Path

from attrs import frozen

__all__ = ["CaptureError", "Datagram", "NTP_PORT", "TruncatedCapture", "read_capture"]

NTP_PORT = 123

_PCAP_MAGICS = {  # magic -> (byte order, timestamp units per second)
    b"\xa1\xb2\xc3\xd4": (">", 10**6), b"\xd4\xc3\xb2\xa1": ("<", 10**6),
    b"\xa1\xb2\x3c\x4d": (">", 10**9), b"\x4d\x3c\xb2\xa1": ("<", 10**9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
_IDB, _OPB, _SPB, _EPB = 1, 2, 3, 6
_IF_TSRESOL, _IF_TSOFFSET = 9, 14

Frame = tuple[float, int, bytes]
"""One captured frame: (time in Unix seconds, link type, the frame's octets)."""


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


# -- the file formats --------------------------------------------------------------------------


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _pcap_frames(data: bytes) -> tuple[list[Frame], str | None]:
    """The (time, link type, frame) of each record, and what cuts the file short or None."""
    endian, units = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise CaptureError("truncated pcap file header")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0xFFFF
    frames: list[Frame] = []
    offset = 24
    while offset < len(data):
        if len(data) - offset < 16:
            return frames, f"truncated after {_plural(len(frames), 'packet')}"
        seconds, fraction, caplen = struct.unpack_from(endian + "III", data, offset)
        end = offset + 16 + caplen
        if end > len(data):
            return frames, f"truncated after {_plural(len(frames), 'packet')}"
        frames.append(((seconds * units + fraction) / units, linktype, data[offset + 16:end]))
        offset = end
    return frames, None


def _options(block: bytes, start: int, endian: str) -> dict[int, bytes]:
    """The options of a pcapng block from ``start`` (first value of each code)."""
    found: dict[int, bytes] = {}
    offset = start
    while offset + 4 <= len(block) - 4:
        code, length = struct.unpack_from(endian + "HH", block, offset)
        if code == 0:
            break
        found.setdefault(code, block[offset + 4:offset + 4 + length])
        offset += 4 + (length + 3) // 4 * 4
    return found


def _interface(block: bytes, endian: str) -> tuple[int, int, int]:
    """(link type, timestamp units per second, offset in seconds) of an IDB."""
    if len(block) < 20:
        raise CaptureError("malformed pcapng interface description block")
    linktype = struct.unpack_from(endian + "H", block, 8)[0]
    options = _options(block, 16, endian)
    units = 10**6
    if (resolution := options.get(_IF_TSRESOL)) is not None and resolution:
        exponent = resolution[0] & 0x7F
        units = 2**exponent if resolution[0] & 0x80 else 10**exponent
    offset = 0
    if (value := options.get(_IF_TSOFFSET)) is not None and len(value) == 8:
        offset = struct.unpack(endian + "q", value)[0]
    return linktype, units, offset


def _pcapng_packet(kind: int, block: bytes, endian: str,
                   interfaces: list[tuple[int, int, int]]) -> Frame:
    """(time, link type, frame) of an EPB, OPB or SPB (an SPB has no time: 0)."""
    try:
        if kind == _SPB:
            interface, ticks = 0, 0
            caplen = min(struct.unpack_from(endian + "I", block, 8)[0], len(block) - 16)
            start = 12
        elif kind == _EPB:
            interface, high, low, caplen = struct.unpack_from(endian + "IIII", block, 8)
            ticks, start = high << 32 | low, 28
        else:
            interface, _drops, high, low, caplen = struct.unpack_from(endian + "HHIII", block, 8)
            ticks, start = high << 32 | low, 28
        linktype, units, seconds = interfaces[interface]
    except (struct.error, IndexError):
        raise CaptureError("malformed pcapng packet block") from None
    if start + caplen > len(block) - 4:
        raise CaptureError("malformed pcapng packet block")
    return (seconds * units + ticks) / units, linktype, block[start:start + caplen]


def _pcapng_frames(data: bytes) -> tuple[list[Frame], str | None]:
    """The (time, link type, frame) of each packet block, and what cuts the file short or
    None; every section header starts a new list of interfaces and may change byte order."""
    frames: list[Frame] = []
    interfaces: list[tuple[int, int, int]] = []
    offset, blocks, endian = 0, 0, "<"
    while offset < len(data):
        if len(data) - offset < 12:
            break
        if data[offset:offset + 4] == _PCAPNG_SHB.to_bytes(4, "big"):
            order = data[offset + 8:offset + 12]
            if order not in _PCAPNG_BYTE_ORDER:
                raise CaptureError("bad pcapng byte-order magic")
            endian, interfaces = _PCAPNG_BYTE_ORDER[order], []
        kind, length = struct.unpack_from(endian + "II", data, offset)
        if length < 12 or length % 4 or offset + length > len(data):
            break
        block = data[offset:offset + length]
        if kind == _IDB:
            interfaces.append(_interface(block, endian))
        elif kind in (_EPB, _OPB, _SPB):
            frames.append(_pcapng_packet(kind, block, endian, interfaces))
        offset += length
        blocks += 1
    else:
        return frames, None
    if blocks == 0:
        raise CaptureError("truncated pcapng section header")
    return frames, f"truncated after {_plural(blocks, 'block')}"


# -- the link, network and transport layers ----------------------------------------------------


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a frame of ``linktype``, or None (other protocols and links)."""
    if linktype == 1:  # Ethernet
        ethertype, at = int.from_bytes(frame[12:14], "big"), 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= at + 4:  # VLAN tags
            ethertype, at = int.from_bytes(frame[at + 2:at + 4], "big"), at + 4
        return frame[at:] if ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:  # Linux cooked (SLL)
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == 276:  # Linux cooked v2 (SLL2)
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in (0, 108):  # BSD loopback: 4-octet address family, IP version follows
        return frame[4:]
    if linktype in (12, 14, 101, 228, 229):  # raw IP (DLT_RAW and LINKTYPE_IPV4/IPV6)
        return frame
    return None


_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options: (len + 1) * 8
_IPV6_FRAGMENT, _IPV6_AH = 44, 51


def _udp(packet: bytes) -> tuple[str, str, bytes] | None:
    """(source, destination, UDP header and data) of an IPv4 or IPv6 packet carrying UDP
    (the first fragment, if fragmented), or None."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big") or len(packet)  # 0: segmentation offload
        if packet[9] != 17 or int.from_bytes(packet[6:8], "big") & 0x1FFF or header < 20:
            return None
        src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
        return str(src), str(dst), packet[header:total]
    if version == 6 and len(packet) >= 40:
        following, at = packet[6], 40
        end = 40 + int.from_bytes(packet[4:6], "big")
        while following != 17:
            if len(packet) < at + 8:
                return None
            if following in _IPV6_EXTENSIONS:
                following, at = packet[at], at + (packet[at + 1] + 1) * 8
            elif following == _IPV6_FRAGMENT:
                if int.from_bytes(packet[at + 2:at + 4], "big") & 0xFFF8:
                    return None  # not the first fragment
                following, at = packet[at], at + 8
            elif following == _IPV6_AH:
                following, at = packet[at], at + (packet[at + 1] + 2) * 4
            else:
                return None
        src, dst = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
        return str(src), str(dst), packet[at:end]
    return None


def _datagram(index: int, time: float, linktype: int, frame: bytes) -> Datagram | None:
    packet = _ip_packet(linktype, frame)
    found = _udp(packet) if packet is not None else None
    if found is None or len(found[2]) < 8:
        return None
    src, dst, udp = found
    sport, dport, length = struct.unpack_from(">HHH", udp)
    payload = udp[8:length] if length >= 8 else udp[8:]
    return Datagram(index, time, src, sport, dst, dport, payload)


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
    if data[:4] in _PCAP_MAGICS:
        frames, truncated = _pcap_frames(data)
    elif data[:4] == _PCAPNG_SHB.to_bytes(4, "big"):
        frames, truncated = _pcapng_frames(data)
    else:
        raise CaptureError("unknown file format")
    out = []
    for index, (time, linktype, frame) in enumerate(frames):
        datagram = _datagram(index, time, linktype, frame)
        if datagram is not None and port in (datagram.sport, datagram.dport):
            out.append(datagram)
    if truncated is not None:
        raise TruncatedCapture(truncated, out, len(frames))
    return out, len(frames)
