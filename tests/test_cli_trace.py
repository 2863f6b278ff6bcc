"""``ntpauto trace``: the reference captures check clean, with the counts the independent
offline checker of the vectors reports (``pcap/<scenario>/verify.txt``); a flipped byte in a
signed value or a MAC is reported on exactly that field or MAC; other link types, pcapng and
IPv6 read the same; broken files give one line and exit status 2."""

from __future__ import annotations

import functools
import gzip
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether, Loopback
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapReader, PcapWriter

from ntpauto.auth.autokey import sign_packet
from ntpauto.autokey.cookie import server_cookie
from ntpauto.autokey.fields import ASSOC, Field
from ntpauto.cli import main
from ntpauto.trace import CaptureError, Status, analyse, read_capture
from ntpauto.wire.packet import Header

SCENARIOS = (
    "bcast-gq", "bcast-tc", "gq", "iff", "iff-trad", "mv", "mv-trad", "pc", "sym",
    "tc-dsa-sha1", "tc-rsa-md5", "tc-rsa-sha1",
)
ETHER = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
"""Explicit addresses: scapy would otherwise resolve the destination on the network."""


def trace(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """Run ``ntpauto trace ARGS``: exit status, stdout, stderr."""
    rc = main(["trace", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def traced_json(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, dict[str, Any]]:
    rc, out, _ = trace(capsys, *args, "--json")
    return rc, json.loads(out)


@functools.cache
def _verify_counts(path: str) -> dict[str, int]:
    """'<what>  N ok, M failed' lines of a verify.txt summary."""
    text = Path(path).read_text()
    return {m[0].strip(): int(m[1]) for m in re.findall(r"^  (.+?)\s+(\d+) ok, 0 failed$",
                                                        text, re.MULTILINE)}


def verify_counts(vectors: Path, scenario: str) -> dict[str, int]:
    return _verify_counts(str(vectors / "pcap" / scenario / "verify.txt"))


def failing(report: dict[str, Any]) -> list[tuple[int, str]]:
    """(packet index, failure) pairs of a --json report."""
    return [(p["index"], what) for p in report["packets"] for what in p["failures"]]


def flip(data: bytearray, at: int) -> bytes:
    data[at] ^= 0x5A
    return bytes(data)


def payload_offset(capture: Path, index: int) -> int:
    """Where the UDP payload of NTP packet ``index`` starts in the capture file."""
    datagrams, _ = read_capture(capture)
    data = capture.read_bytes()
    at = data.find(datagrams[index].payload)
    assert at > 0
    return at


# The reference captures ------------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reference_capture_is_clean(vectors: Path, capsys: pytest.CaptureFixture[str],
                                    scenario: str) -> None:
    """No option: nothing fails, exit status 0, one line per packet and a summary."""
    capture = vectors / "pcap" / f"{scenario}.pcap"
    rc, out, err = trace(capsys, capture)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[-1] == "result: clean"
    packets = len(read_capture(capture)[0])
    assert sum(1 for line in lines if re.match(r"^ +\d+ \d\d:\d\d:\d\d\.\d{6} ", line)) == packets
    assert "FAIL" not in out


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in ("sym", "pc")])
def test_counts_match_the_offline_checker(vectors: Path, capsys: pytest.CaptureFixture[str],
                                          scenario: str) -> None:
    """With the reference's server seed (0) every MAC is computable; signatures, MACs,
    key-ID chain links and echoed reply key IDs are exactly those verify.txt confirms."""
    rc, report = traced_json(capsys, vectors / "pcap" / f"{scenario}.pcap", "--seed", "0")
    expected = verify_counts(vectors, scenario)
    summary = report["summary"]
    assert rc == 0 and summary["clean"]
    assert summary["signatures"]["ok"] == expected["extension field signatures"]
    assert summary["signatures"]["failed"] == summary["signatures"]["not checked"] == 0
    assert summary["macs"]["ok"] == expected["autokey MACs"] == summary["packets"]
    links = expected.get("key-ID hash chain links", 0)
    assert summary["chains"]["ok"] == links + summary["auto_anchors"]
    assert summary["chains"]["failed"] == 0
    assert summary["echoes"]["ok"] == expected["server response echoes request key ID"]


def test_without_the_seed_plain_client_server_macs_are_not_computable(vectors: Path) -> None:
    """Without --seed only packets with fields (cookie 0) have computable MACs."""
    reports, summary = analyse(read_capture(vectors / "pcap" / "tc-rsa-md5.pcap")[0])
    for report in reports:
        status = report.mac.status
        assert status is (Status.OK if report.fields else Status.NOT_COMPUTABLE), report.index
    assert summary.macs["not computable"] == sum(1 for r in reports if not r.fields) > 0


def test_symmetric_capture_with_both_host_keys(vectors: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The COOK responses decrypt with the peers' host keys (carol 0xc14b05a3, alice
    0x8a5041ad); with their XOR every MAC and chain link of sym verifies."""
    keys = vectors / "pcap" / "sym" / "keys"
    rc, report = traced_json(capsys, vectors / "pcap" / "sym.pcap",
                             "--key", keys / "alice" / "ntpkey_host_alice",
                             "--key", keys / "carol" / "ntpkey_host_carol",
                             "-p", "alicepw", "-p", "carolpw")
    expected = verify_counts(vectors, "sym")
    summary = report["summary"]
    assert rc == 0 and summary["clean"]
    assert summary["macs"]["ok"] == expected["autokey MACs"] == 18
    assert summary["chains"]["ok"] == expected["key-ID hash chain links"] + 1  # + pkt 6 AUTO
    assert summary["signatures"]["ok"] == expected["extension field signatures"]
    cookies = [f["description"] for p in report["packets"] for f in p["fields"]
               if f["label"] == "COOK resp"]
    assert cookies == ["encrypted cookie (64 octets) = c14b05a3",
                       "encrypted cookie (64 octets) = 8a5041ad"]
    # Without the keys the same packets are "not computable", never failed.
    _, bare = traced_json(capsys, vectors / "pcap" / "sym.pcap")
    assert bare["summary"]["macs"]["not computable"] == 6
    assert bare["summary"]["macs"]["failed"] == bare["summary"]["chains"]["failed"] == 0


def test_pc_capture_signatures_need_the_shared_certificate(
        vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The PC scheme never sends a certificate: its signatures are "not checked" unless the
    shared certificate is given with --cert."""
    capture = vectors / "pcap" / "pc.pcap"
    _, bare = traced_json(capsys, capture)
    assert bare["summary"]["signatures"]["not checked"] == 2
    rc, report = traced_json(capsys, capture, "--cert",
                             vectors / "pcap" / "pc" / "keys" / "alice" / "ntpkey_cert_alice")
    assert rc == 0
    assert report["summary"]["signatures"]["ok"] == verify_counts(vectors, "pc")[
        "extension field signatures"] == 2


def test_broadcast_signature_waits_for_the_certificate(vectors: Path) -> None:
    """bcast-tc opens with a signed AUTO broadcast before any certificate: it is verified
    once the CERT response (packet 3) arrives, and its key ID reaches its AUTO key."""
    reports, _ = analyse(read_capture(vectors / "pcap" / "bcast-tc.pcap")[0])
    auto = reports[0].fields[0]
    assert auto.label == "AUTO resp"
    assert auto.signature.status is Status.OK and "alice@alice" in auto.signature.reason
    assert reports[0].chain.status is Status.OK and "AUTO key" in reports[0].chain.reason
    assert reports[1].chain.reason.startswith("H^1 = key ID of packet 0")


def test_short_dsa_signatures_are_noted(vectors: Path) -> None:
    """tc-dsa-sha1: valid DSA signatures shorter than 48 octets verify, with a note that the
    reference receiver refuses them (interop.md 5.9)."""
    reports, _ = analyse(read_capture(vectors / "pcap" / "tc-dsa-sha1.pcap")[0])
    noted = [f for r in reports for f in r.fields if any("bad signature length" in n
                                                         for n in f.notes)]
    assert noted and all(f.signature.status is Status.OK for f in noted)
    assert all(f.signature_length < 48 for f in noted)


# Tampering ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("scenario", "index", "position", "label", "from_end"), [
    ("tc-rsa-md5", 3, 0, "CERT resp", 10),   # inside the certificate's own signature
    ("tc-rsa-md5", 5, 0, "COOK resp", 30),   # inside the encrypted cookie
    ("sym", 7, 0, "AUTO resp", 3),           # inside the AUTO values (final key ID)
])
def test_flipped_byte_in_a_signed_value_fails_exactly_that_field(
        vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str,
        index: int, position: int, label: str, from_end: int) -> None:
    capture = vectors / "pcap" / f"{scenario}.pcap"
    reports, _ = analyse(read_capture(capture)[0])
    field = reports[index].fields[position]
    assert field.label == label
    value_end = field.offset + 20 + field.value_length
    at = payload_offset(capture, index) + value_end - from_end
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(flip(bytearray(capture.read_bytes()), at))
    rc, report = traced_json(capsys, bad)
    assert rc == 1 and not report["summary"]["clean"]
    fields = [(p["index"], f["label"]) for p in report["packets"] for f in p["fields"]
              if f["failures"]]
    assert fields == [(index, label)]
    (failed,) = [f for f in report["packets"][index]["fields"] if f["failures"]]
    assert "signature" in failed["failures"]
    assert failed["signature"]["status"] == "failed"
    # The MAC covers the field, so it fails too; nothing else does.
    assert {what for _, what in failing(report)} <= {"MAC", f"{label} signature",
                                                     f"{label} certificate"}
    assert {i for i, _ in failing(report)} == {index}
    assert report["summary"]["signatures"]["failed"] == 1
    rc, out, _ = trace(capsys, bad)
    line = next(ln for ln in out.splitlines() if re.match(rf"^ +{index} ", ln))
    assert f"FAIL: MAC, {label} signature" in line


@pytest.mark.parametrize(("scenario", "index", "seed"), [
    ("tc-rsa-md5", 9, "0"),   # no fields: server cookie from the seed
    ("sym", 3, None),          # with fields: cookie 0
    ("bcast-gq", 1, None),     # broadcast: cookie 0
])
def test_flipped_mac_byte_fails_exactly_that_mac(
        vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str,
        index: int, seed: str | None) -> None:
    capture = vectors / "pcap" / f"{scenario}.pcap"
    datagrams, _ = read_capture(capture)
    end = payload_offset(capture, index) + len(datagrams[index].payload)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(flip(bytearray(capture.read_bytes()), end - 1))
    args = ("--seed", seed) if seed is not None else ()
    rc, report = traced_json(capsys, bad, *args)
    assert rc == 1
    assert failing(report) == [(index, "MAC")]
    assert report["summary"]["macs"]["failed"] == 1
    assert report["packets"][index]["mac"]["reason"].startswith("wrong: MD5, cookie")


# Other file and link types -----------------------------------------------------------------

def _packets(capture: Path) -> list[Any]:
    with PcapReader(str(capture)) as reader:  # type: ignore[no-untyped-call]
        return list(reader)


def _without_frame(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "frame"} for p in report["packets"]]


def test_pcapng_conversion_reads_the_same(vectors: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    capture = vectors / "pcap" / "bcast-gq.pcap"
    converted = tmp_path / "bcast-gq.pcapng"
    writer = PcapNgWriter(str(converted))
    for packet in _packets(capture):
        writer.write(packet)
    writer.close()
    assert converted.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    _, original = traced_json(capsys, capture, "--seed", "0")
    rc, again = traced_json(capsys, converted, "--seed", "0")
    assert rc == 0
    assert again["packets"] == original["packets"]
    assert again["summary"] == original["summary"]
    compressed = tmp_path / "bcast-gq.pcapng.gz"
    compressed.write_bytes(gzip.compress(converted.read_bytes()))
    rc, unzipped = traced_json(capsys, compressed, "--seed", "0")
    assert rc == 0 and unzipped["packets"] == original["packets"]


@pytest.mark.parametrize(("linktype", "wrap"), [
    (113, lambda ip: CookedLinux(pkttype=0, lladdrtype=772, proto=0x0800) / ip),   # SLL
    (276, lambda ip: CookedLinuxV2(proto=0x0800, lladdrtype=772) / ip),            # SLL2
    (101, lambda ip: ip),                                                          # raw IP
    (0, lambda ip: Loopback(type=2) / ip),                                         # BSD lo
])
def test_link_types(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    linktype: int, wrap: Any) -> None:
    """The same IP packets behind Linux cooked (v1, v2), raw-IP or BSD loopback headers
    trace the same."""
    capture = vectors / "pcap" / "sym.pcap"
    relinked = tmp_path / "relinked.pcap"
    writer = PcapWriter(str(relinked), linktype=linktype)
    for packet in _packets(capture):
        frame = wrap(packet[IP])
        frame.time = packet.time
        writer.write(frame)
    writer.close()
    _, original = traced_json(capsys, capture)
    rc, again = traced_json(capsys, relinked)
    assert rc == 0
    assert _without_frame(again) == _without_frame(original)


def test_ipv6_and_another_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """IPv6 session keys use the 16-octet addresses; --port selects the NTP port."""
    client, server, port = "2001:db8::3", "2001:db8::1", 1123
    keyid = 0x12345678
    request = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 1).encode()
    request += Field(code=ASSOC, associd=7, value=b"brenda").encode()
    request = sign_packet(request, client, server, keyid, 0)
    cookie = server_cookie(client, server, 0)
    reply = Header(0, 4, 4, 1, 6, -20, 0, 0, b"LOCL", 0, 1, 2, 3).encode()
    reply = sign_packet(reply, server, client, keyid, cookie)
    path = tmp_path / "v6.pcap"
    writer = PcapWriter(str(path), linktype=1)
    for t, (src, dst, data) in enumerate([(client, server, request),
                                          (server, client, reply)]):
        frame = ETHER / IPv6(src=src, dst=dst) / UDP(sport=port, dport=port) / Raw(data)
        frame.time = 1795450000 + t
        writer.write(frame)
    writer.close()
    rc, report = traced_json(capsys, path, "--port", port, "--seed", "0")
    assert rc == 0
    first, second = report["packets"]
    assert (first["src"], first["dst"], first["mac"]["status"]) == (client, server, "ok")
    assert first["fields"][0]["description"] == "name=brenda"
    assert second["mac"]["status"] == "ok" and second["chain"]["status"] == "ok"
    _, out, _ = trace(capsys, path, "--port", port, "--seed", "0")
    assert f"[{client}]:{port} -> [{server}]:{port}" in out
    _, default_port = traced_json(capsys, path)
    assert default_port["packets"] == []


def _scapy_datagrams(capture: Path, port: int = 123) -> list[tuple[Any, ...]]:
    """The UDP datagrams to or from ``port`` as scapy dissects them (the oracle)."""
    found = []
    for packet in _packets(capture):
        udp = packet.getlayer(UDP)
        if udp is None or type(udp) is not UDP or port not in (udp.sport, udp.dport):
            continue  # none, or a UDP header quoted inside an ICMP error
        ip = udp.underlayer
        while not isinstance(ip, IP | IPv6):  # past IPv6 extension headers
            ip = ip.underlayer
        found.append((float(packet.time), str(ip.src), udp.sport, str(ip.dst), udp.dport,
                      bytes(udp.payload)))
    return found


def _ours(capture: Path, port: int = 123) -> list[tuple[Any, ...]]:
    datagrams, _ = read_capture(capture, port)
    return [(d.time, d.src, d.sport, d.dst, d.dport, d.payload) for d in datagrams]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reader_agrees_with_scapy_on_the_reference_captures(vectors: Path,
                                                             scenario: str) -> None:
    """Our pcap reader finds exactly the datagrams scapy finds, with the same times."""
    capture = vectors / "pcap" / f"{scenario}.pcap"
    assert _ours(capture) == _scapy_datagrams(capture) != []


def test_reader_agrees_with_scapy_on_other_layers(tmp_path: Path) -> None:
    """Nanosecond pcap, VLAN tags, IPv6 extension headers and fragment headers, IPv4 options,
    Ethernet padding, an ICMP error quoting a UDP header (not a datagram): as scapy reads
    them, in pcap and in pcapng."""
    data = bytes([0x23]) + bytes(47)
    a, b = "192.0.2.1", "192.0.2.2"
    frames = [
        ETHER / IP(src=a, dst=b) / UDP(sport=5000, dport=123) / Raw(data),
        ETHER / Dot1Q(vlan=5) / Dot1Q(vlan=7) / IP(src=a, dst=b) / UDP(sport=123, dport=123)
        / Raw(data),
        ETHER / IP(src=a, dst=b, options=b"\x01\x01\x01\x00") / UDP(sport=5000, dport=123)
        / Raw(data),
        ETHER / IP(src=a, dst=b) / UDP(sport=123, dport=5000) / Raw(b"1"),  # padded frame
        ETHER / IP(src="192.0.2.9", dst=a) / ICMP(type=3, code=3) / IP(src=a, dst="192.0.2.9")
        / UDP(sport=123, dport=123) / Raw(data),
        ETHER / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrFragment(offset=0, m=0, id=7) / UDP(sport=123, dport=123) / Raw(data),
        ETHER / IP(src=a, dst=b) / UDP(sport=5000, dport=53) / Raw(b"x"),
    ]
    for t, frame in enumerate(frames):
        frame.time = 1795450000 + t + 0.123456789
    nano = tmp_path / "nano.pcap"
    with PcapWriter(str(nano), linktype=1, nano=True) as writer:
        for frame in frames:
            writer.write(frame)
    converted = tmp_path / "frames.pcapng"
    with PcapNgWriter(str(converted)) as writer:
        for frame in frames:
            writer.write(frame)
    for capture in (nano, converted):
        ours = _ours(capture)
        assert ours == _scapy_datagrams(capture)
        assert len(ours) == 5 and read_capture(capture)[1] == len(frames)
    assert _ours(nano)[0][0] == 1795450000.123456789


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


SHB = _block(0x0A0D0D0A, bytes.fromhex("4d3c2b1a") + struct.pack("<HHq", 1, 0, -1))
"""A little-endian pcapng section header."""


def _idb(linktype: int, options: bytes = b"") -> bytes:
    """An interface description block (``options`` without the end-of-options)."""
    return _block(1, struct.pack("<HHI", linktype, 0, 0)
                  + (options + struct.pack("<HH", 0, 0) if options else b""))


def _epb(interface: int, ticks: int, frame: bytes) -> bytes:
    """An enhanced packet block: ``ticks`` in its interface's timestamp units."""
    padded = frame + bytes(-len(frame) % 4)
    return _block(6, struct.pack("<IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF,
                                 len(frame), len(frame)) + padded)


def test_pcapng_with_two_interfaces_of_their_own_link_type_and_clock(tmp_path: Path) -> None:
    """Each packet is read with its interface's link type, timestamp resolution and offset
    (a capture on several interfaces); a second section starts a new interface list."""
    layers = IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=123, dport=123) / Raw(b"ntp!")
    ip, frame = bytes(layers), bytes(ETHER / layers)
    ether = _idb(1)  # Ethernet, microseconds
    raw = _idb(101, struct.pack("<HHB3x", 9, 1, 9)  # raw IP, nanoseconds, 100 s later
               + struct.pack("<HHq", 14, 8, 100))
    path = tmp_path / "two.pcapng"
    path.write_bytes(SHB + ether + raw + _epb(0, 1_795_450_000_250_000, frame)
                     + _epb(1, 1_795_450_000_500_000_000, ip)
                     + SHB + raw + _epb(0, 1_795_450_001_000_000_000, ip))
    datagrams, frames = read_capture(path)
    assert frames == 3
    assert [d.time for d in datagrams] == [1795450000.25, 1795450100.5, 1795450101.0]
    assert {d.payload for d in datagrams} == {b"ntp!"}
    (tmp_path / "orphan.pcapng").write_bytes(SHB + _epb(0, 0, frame))
    with pytest.raises(CaptureError, match="malformed pcapng packet block"):
        read_capture(tmp_path / "orphan.pcapng")


def test_a_time_no_date_holds_is_shown_as_unreadable(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt timestamp (here 2**40 seconds: beyond the year 9999) prints as question
    marks; the packet is still checked."""
    frame = bytes(ETHER / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=123, dport=123)
                  / Raw(bytes([0x23]) + bytes(47)))
    path = tmp_path / "far.pcapng"
    path.write_bytes(SHB + _idb(1, struct.pack("<HHB3x", 9, 1, 0)) + _epb(0, 1 << 40, frame))
    rc, out, err = trace(capsys, path)
    assert (rc, err) == (0, "")
    assert "from ????-??-?? ??:??:?? UTC" in out
    assert re.search(r"^ +0 \?\?:\?\?:\?\?\.\?{6} ", out, re.MULTILINE)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_capture_files_never_crash_the_reader(vectors: Path, tmp_path: Path,
                                                      seed: int) -> None:
    """Random octet changes anywhere in a capture file (headers, lengths, link, IP and UDP
    headers) give datagrams or a CaptureError, never another exception."""
    import random

    rng = random.Random(seed)
    capture = vectors / "pcap" / "sym.pcap"
    if seed % 2:  # pcapng: block lengths, interface options, packet blocks
        capture = tmp_path / "sym.pcapng"
        with PcapNgWriter(str(capture)) as writer:
            for packet in _packets(vectors / "pcap" / "sym.pcap"):
                writer.write(packet)
    source = capture.read_bytes()
    path = tmp_path / "mutated.pcap"
    for _ in range(150):
        data = bytearray(source)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.choice([0, 0x11, 0x2C, 0x80, 0xFF,
                                                         rng.randrange(256)])
        path.write_bytes(bytes(data))
        try:
            read_capture(path)
        except CaptureError:
            pass


# Bad files and output forms ----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda data: data[:10],                   # inside the file header
    lambda data: b"",                         # empty
    lambda data: b"this is not a capture\n" * 20,
    lambda data: b"\x0a\x0d\x0d\x0a" + data[4:40],  # pcapng magic, garbage blocks
])
def test_bad_files_give_one_line_and_status_2(vectors: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              make: Any) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(make((vectors / "pcap" / "sym.pcap").read_bytes()))
    rc, out, err = trace(capsys, bad)
    assert rc == 2 and out == ""
    assert err.startswith(f"ntpauto trace: {bad}: not a pcap or pcapng file")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("name", "cut", "packets"), [
    ("sym.pcap", lambda data: data[:-7], 17),               # last record cut short
    ("sym.pcap", lambda data: data[:24 + 16 + 10], 0),      # inside the first packet
    ("sym.pcap", lambda data: data[:30], 0),                # inside the first record header
    ("sym.pcapng", lambda data: data[:-7], 17),             # last block cut short
])
def test_truncated_capture_reports_what_it_read_then_the_cut(
        vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
        cut: Any, packets: int) -> None:
    """A capture cut short: the complete records are checked and listed as usual, then one
    line on stderr says where it was cut; exit status 2 (``truncated`` in the JSON)."""
    source = vectors / "pcap" / "sym.pcap"
    if name.endswith("pcapng"):
        source = tmp_path / name
        with PcapReader(str(vectors / "pcap" / "sym.pcap")) as reader, \
                PcapNgWriter(str(source)) as writer:
            for packet in reader:
                writer.write(packet)
    cut_file = tmp_path / f"cut-{name}"
    cut_file.write_bytes(cut(source.read_bytes()))
    rc, out, err = trace(capsys, cut_file)
    assert rc == 2
    assert f"{_plural_packets(packets)} on port 123" in out
    assert out.splitlines()[-1] == "result: clean"
    assert len(re.findall(r"^ +\d+ \d\d:\d\d:", out, re.MULTILINE)) == packets
    unit = "block" if name.endswith("pcapng") else "packet"
    assert re.fullmatch(rf"ntpauto trace: {re.escape(str(cut_file))}: truncated after \d+ "
                        rf"{unit}s?; the last record is cut short, the ones before it were "
                        r"checked\n", err), err
    rc, report = traced_json(capsys, cut_file)
    assert rc == 2 and len(report["packets"]) == packets
    assert report["truncated"].startswith("truncated after ")


def _plural_packets(count: int) -> str:
    return f"{count} NTP packet{'' if count == 1 else 's'}"


def test_missing_file_and_bad_key_file(vectors: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = trace(capsys, tmp_path / "missing.pcap")
    assert rc == 2 and err.count("\n") == 1 and "No such file" in err
    key = vectors / "pcap" / "sym" / "keys" / "alice" / "ntpkey_host_alice"
    rc, out, err = trace(capsys, vectors / "pcap" / "sym.pcap", "--key", key, "-p", "wrong")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("ntpauto trace: ")


def test_json_and_verbose_forms(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = vectors / "pcap" / "sym.pcap"
    rc, report = traced_json(capsys, capture)
    assert rc == 0 and report["file"] == str(capture) and report["port"] == 123
    assert len(report["packets"]) == report["summary"]["packets"] == 18
    first = report["packets"][0]
    assert (first["mode"], first["keyid"], first["fields"][0]["label"]) == (
        1, 0x148F2ABA, "ASSOC req")
    assert first["fields"][0]["description"] == "name=carol@alice"
    rc, out, _ = trace(capsys, capture, "-v")
    assert rc == 0
    assert "signature: ok (RSA-MD5 by carol@alice)" in out
    assert "certificate: ok (self-signature verifies)" in out
    assert "mac: ok (MD5, cookie 00000000 (extension fields))" in out
    rc, out, _ = trace(capsys, capture)
    assert re.search(r"^ +2 .*sym_act +e217bfb3 +CERT resp subject=carol@alice "
                     r"issuer=carol@alice \[sig ok, cert ok\]; CERT req name=alice@alice"
                     r" +ok \(mac ok, chain ok\)$", out, re.MULTILINE)


def test_odd_traffic_is_reported_not_fatal(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Non-UDP frames are skipped; a short datagram is a malformed packet (a failure);
    control messages and crypto-NAKs are listed without failing."""
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 1).encode()
    control = bytes([0x16, 2]) + bytes(10)  # mode 6 READSTAT
    frames = [
        ETHER / IP(src="192.0.2.1", dst="192.0.2.2") / Raw(b"not udp"),
        ETHER / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5000, dport=53) / Raw(b"x"),
        ETHER / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5000, dport=123) / Raw(b"1"),
        ETHER / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5000, dport=123) / Raw(control),
        ETHER / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=123, dport=123)
        / Raw(header + bytes(4)),
        ETHER / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=123, dport=123)
        / Raw(header + bytes.fromhex("0201ffff") + bytes(40)),
    ]
    path = tmp_path / "odd.pcap"
    writer = PcapWriter(str(path), linktype=1)
    for frame in frames:
        writer.write(frame)
    writer.close()
    rc, report = traced_json(capsys, path)
    assert rc == 1
    short, control_msg, nak, bad_field = report["packets"]
    assert report["summary"]["frames"] == 6 and report["summary"]["packets"] == 4
    assert short["failures"] == ["packet"] and "shorter than the header" in short["malformed"]
    assert control_msg["failures"] == [] and control_msg["mode"] == 6
    assert nak["failures"] == [] and nak["mac"]["reason"] == "crypto-NAK"
    assert bad_field["failures"] == ["packet"]
    assert "extension field length" in bad_field["malformed"]


@pytest.mark.parametrize("scenario", ["sym", "bcast-gq", "iff", "tc-dsa-sha1"])
def test_mutated_packets_never_crash(vectors: Path, scenario: str) -> None:
    """Random octet changes in genuine packets (fields, certificates, MACs) give reports,
    never exceptions."""
    import random

    rng = random.Random(scenario)
    datagrams, _ = read_capture(vectors / "pcap" / f"{scenario}.pcap")
    mutated = []
    for datagram in datagrams:
        data = bytearray(datagram.payload)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        mutated.append(type(datagram)(datagram.frame, datagram.time, datagram.src,
                                      datagram.sport, datagram.dst, datagram.dport,
                                      bytes(data)))
    reports, summary = analyse(mutated, seed=0)
    assert len(reports) == len(datagrams) and not summary.clean


def test_trace_needs_no_scapy(vectors: Path) -> None:
    """scapy is a test dependency only: ``ntpauto trace`` runs where it cannot be imported."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['scapy'] = None; from ntpauto.cli import main; "
            "sys.exit(main(['trace', sys.argv[1]]))")
    done = subprocess.run([sys.executable, "-c", code, str(vectors / "pcap" / "sym.pcap")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "result: clean"
