"""Fuzz targets shared by the seeded Hypothesis slice (``test_fuzz.py``) and the long campaign
(``benchmarks/fuzz_campaign.py``).

A target is a function ``run(data: bytes) -> None`` with a tuple of *expected* exception types:
the errors the module under test declares for bad input (MalformedPacket, FieldError,
CertificateError, KeyFileError, ConfigError, ...).  Any other exception escaping ``run`` is a
bug.  Seed corpora come from the reference vectors (``tests/vectors``): the captured
packets, the ntpd configurations, the ntp-keygen files and the certificates inside them.

Targets:

``packet``   :func:`ntpauto.wire.packet.parse`
``fields``   the extension fields of a packet and each value decoder (ASSOC name, AUTO and
             LEAP values, COOK public key and ciphertext, DER identity values)
``autokey``  the fields through the responder (requests) and an association's state machine
             (responses), as the engine feeds them
``cert``     :func:`ntpauto.pki.certificates.parse_certificate` and ``check_cert_response``
``keyfile``  :func:`ntpauto.pki.keyfiles.read_key_file` and the IFF/GQ/MV file readers
``config``   :func:`ntpauto.config.parse_config`
``engine``   :meth:`ntpauto.engine.Engine.receive` (any exception is a bug: bad packets are
             dropped and counted), for a plain, a symmetric-key and an Autokey engine
``mode6``    :func:`ntpauto.mode6.handle` and the ``ntpauto.mode6_client`` parsers
``nts_ke``   NTS-KE messages: :class:`ntpauto.nts.records.MessageReader`, the server's
             :func:`~ntpauto.nts.records.answer`, the client's
             :func:`~ntpauto.nts.records.read_response`
``nts``      NTS packets: the field readers, an NTS client session's check, and the
             receive paths of an NTS server engine and an NTS client engine
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ntpauto import mode6
from ntpauto import mode6_client as mc
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.association import AutokeyAssociation
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, LEAP, SIGN, decode, decode_all
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.values import (
    AutoValue,
    LeapValue,
    decode_assoc_name,
    decode_public_key,
    decrypt_cookie,
)
from ntpauto.config import ConfigError, parse_config
from ntpauto.engine import Engine
from ntpauto.events import FieldError
from ntpauto.identity import gq, iff, mv
from ntpauto.identity.common import decode_der_integers
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.nts.fields import NtsFieldError
from ntpauto.nts.records import KeError
from ntpauto.pki.certificates import CertificateError, check_cert_response, parse_certificate
from ntpauto.pki.keyfiles import KeyFileError, read_key_file
from ntpauto.wire.packet import MODE_ACTIVE, MODE_CLIENT, MalformedPacket, parse
from ntpauto.wire.timestamps import unix_to_ntp

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
PCAP = VECTORS / "pcap"
KEYS = VECTORS / "keys"
EPOCH = 1_795_460_000.0
"""Inside the vectors' certificate validity (as tests/autokey_groups.py)."""
NTP_NOW = int(EPOCH) + 2_208_988_800
PASSWORDS = {"alice": "alicepw", "brenda": "brendapw", "carol": "carolpw"}
SCENARIOS = ("tc-rsa-md5", "tc-dsa-sha1", "tc-rsa-sha1", "gq", "iff-trad", "mv-trad", "pc",
             "sym", "bcast-tc")


@dataclass(frozen=True)
class Target:
    """One fuzz target: ``run`` and the exception types it may legitimately raise."""

    name: str
    run: Callable[[bytes], None]
    expected: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


# ------------------------------------------------------------------ seed corpora


@functools.cache
def captured_packets() -> tuple[tuple[bytes, str, int], ...]:
    """(raw packet, source address, mode) of every captured packet of the vectors."""
    out = []
    for path in sorted(PCAP.glob("*/packets.json")):
        for record in json.loads(path.read_text()):
            out.append((bytes.fromhex(record["raw"]), record["src"], record["mode"]))
    return tuple(out)


def packet_seeds() -> list[bytes]:
    return [raw for raw, _, _ in captured_packets()]


@functools.cache
def certificate_ders() -> tuple[bytes, ...]:
    """Every certificate DER of the vectors: the key files' and those carried in CERT and
    SIGN responses."""
    ders: set[bytes] = set()
    for path in sorted(KEYS.glob("*/*/ntpkey_*cert_*.*")):
        for block in re.findall(rb"-----BEGIN CERTIFICATE-----(.*?)-----END", path.read_bytes(),
                                re.DOTALL):
            ders.add(base64.b64decode(block))
    for raw, _, _ in captured_packets():
        try:
            for f in decode_all(parse(raw)):
                if f.code in (CERT, SIGN) and f.response and len(f.value) > 100:
                    ders.add(f.value)
        except (MalformedPacket, FieldError):
            continue
    return tuple(sorted(ders))


def cert_seeds() -> list[bytes]:
    return list(certificate_ders())


@functools.cache
def key_file_texts() -> tuple[bytes, ...]:
    """Unencrypted identity and host key files (the readers' input), and the encrypted
    ntp-keygen identity files, as bytes."""
    files = sorted(KEYS.glob("unencrypted/*/*/ntpkey_*"))
    files += sorted(p for p in KEYS.glob("*/*/ntpkey_*.*")
                    if re.search(r"(iff|gq|mv)(par|key)_|MVta_|IFFkey_|GQkey_", p.name))
    return tuple(p.read_bytes() for p in files if p.is_file() and not p.is_symlink())


def keyfile_seeds() -> list[bytes]:
    return list(key_file_texts())


@functools.cache
def config_texts() -> tuple[bytes, ...]:
    paths = sorted(PCAP.glob("*/*.ntp.conf")) + sorted((REPO / "etc").glob("*.conf"))
    return tuple(p.read_bytes() for p in paths)


def config_seeds() -> list[bytes]:
    return list(config_texts())


# ------------------------------------------------------------------ packet and fields


def run_packet(data: bytes) -> None:
    """The wire parser: a Packet or MalformedPacket, and a Packet is self-consistent."""
    pkt = parse(data)
    assert pkt.mac_offset <= len(data)
    assert b"".join(f.data for f in pkt.fields) == data[48:48 + sum(len(f.data)
                                                                      for f in pkt.fields)]


@functools.cache
def _host(scenario: str, name: str):
    from ntpauto.autokey.host import load_host

    return load_host(PCAP / scenario / "keys" / name, host=name if scenario != "pc" else "alice",
                     password=PASSWORDS["alice" if scenario == "pc" else name],
                     rng=random.Random(1))


def _decode_value(f, host_key) -> None:
    """Run the value decoder the field's code calls for (FieldError, CertificateError or
    ValueError from the DER reader are the declared failures)."""
    value = f.value
    if f.code == ASSOC:
        decode_assoc_name(value)
    elif f.code == AUTO and f.response:
        AutoValue.decode(value)
    elif f.code == LEAP and f.response:
        LeapValue.decode(value)
    elif f.code == COOK and not f.response:
        decode_public_key(value)
    elif f.code == COOK and f.response:
        decrypt_cookie(value, host_key)
    elif f.code in (CERT, SIGN) and f.response and value:
        parse_certificate(value)
    elif f.code >= 7 and f.response:
        try:
            decode_der_integers(value)
        except ValueError as exc:
            raise _DerError(str(exc)) from None


class _DerError(Exception):
    """decode_der_integers' declared ValueError, told apart from any other ValueError."""


def run_fields(data: bytes) -> None:
    host = _host("tc-rsa-md5", "brenda")
    pkt = parse(data)
    for item in pkt.fields:
        f = decode(item.data, item.offset)
        f.encode()
        _decode_value(f, host.host_key)


# ------------------------------------------------------------------ autokey state machines


class _AutokeyHarness:
    """A server-side responder and client/symmetric association states that every input
    goes through; the states are rebuilt every few hundred inputs so that they are sometimes
    fresh and sometimes part-way through a dance."""

    def __init__(self) -> None:
        self.count = 0
        self._fresh()

    def _fresh(self) -> None:
        server = _host("tc-rsa-md5", "alice")
        client = _host("tc-rsa-md5", "brenda")
        self.responder = Responder(server)
        self.states = [
            AutokeyAssociation(client, associd=0x0E6F, hmode=MODE_CLIENT,
                               rng=random.Random(2)),
            AutokeyAssociation(client, associd=0x0E6F, hmode=MODE_ACTIVE,
                               responder=Responder(client), rng=random.Random(3)),
        ]

    def run(self, data: bytes) -> None:
        self.count += 1
        if self.count % 300 == 0:
            self._fresh()
        pkt = parse(data)
        fields = decode_all(pkt)
        for f in fields:
            self.responder.respond(f, packet_mode=pkt.header.mode, now=NTP_NOW,
                                   own_associd=7, client="127.0.0.3", server="127.0.0.1")
        for state in self.states:
            for proven in (False, True):
                verdicts = state.receive(fields, packet_mode=pkt.header.mode, now=NTP_NOW,
                                         proven=proven)
                if any(v.protocol_error for v in verdicts):
                    state.reset()
            state.next_fields(NTP_NOW, synchronized=True)


_autokey_harness: _AutokeyHarness | None = None


def run_autokey(data: bytes) -> None:
    global _autokey_harness
    if _autokey_harness is None:
        _autokey_harness = _AutokeyHarness()
    _autokey_harness.run(data)


# ------------------------------------------------------------------ certificates


def run_cert(data: bytes) -> None:
    info = parse_certificate(data)
    str(info.subject), str(info.issuer)
    check_cert_response(info, 0, "brenda", NTP_NOW)


# ------------------------------------------------------------------ key files

_LOADERS = (
    lambda p: read_key_file(p, "alicepw"),
    lambda p: read_key_file(p, None, allow_locked=True, require_filestamp=False),
    lambda p: iff.load_server_key(p, "alicepw"),
    lambda p: iff.load_client_parameters(p),
    lambda p: gq.load_server_key(p, "alicepw"),
    lambda p: gq.load_client_parameters(p),
    lambda p: mv.load_server_key(p, "alicepw"),
    lambda p: mv.load_client_key(p),
    lambda p: mv.load_bundle(p, "alicepw"),
)


@functools.cache
def _scratch() -> Path:
    """The keyfile target's directory: one per process, removed when the process exits."""
    folder = tempfile.TemporaryDirectory(prefix="ntpauto-fuzz-")
    atexit.register(folder.cleanup)
    return Path(folder.name)


def run_keyfile(data: bytes) -> None:
    """Write the input as an ntpkey file and read it with every reader (each may only raise
    KeyFileError)."""
    path = _scratch() / "ntpkey_fuzz_alice.4004436515"
    path.write_bytes(data)
    for load in _LOADERS:
        try:
            load(path)
        except KeyFileError:
            continue


# ------------------------------------------------------------------ config


def run_config(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    parse_config(text, "/nonexistent/ntp.conf")


# ------------------------------------------------------------------ engine

ENGINE_KEYS = "1 MD5 sharedsecret\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n"
SERVER, PEER, CLIENT = "127.0.0.1", "127.0.0.3", "192.0.2.9"


class _EngineHarness:
    """Three engines fed every input: a plain client/server with a configured server and
    peer, a symmetric-key one (half of the inputs are re-signed with key 1 so that they pass
    authentication and reach the on-wire tests), and an Autokey server with a client
    association (captured Autokey packets come from its peer's address)."""

    def __init__(self) -> None:
        self.count = 0
        self.now = 1000.0
        self.rng = random.Random(4)
        self._fresh()

    def _fresh(self) -> None:
        clock = SimulatedClock(lambda: self.now, epoch=EPOCH)
        parsed = parse_keys(ENGINE_KEYS)
        keys = KeyStore(parsed, parsed.keys())
        config = (f"localclock stratum 1\nserver {SERVER} minpoll 4\npeer {PEER} key 1\n"
                  "broadcastclient\nrestrict 192.0.2.0 mask 255.255.255.0 limited kod\n"
                  "discard average 2 minimum 1\n")
        plain = Engine(parse_config(config), clock, keys=keys, rng=random.Random(5))
        host = _host("tc-rsa-md5", "brenda")
        autokey = Engine(parse_config(f"server {SERVER} autokey minpoll 4\nbroadcastclient\n"),
                         clock, keys=keys, rng=random.Random(6),
                         autokey=AutokeyNode(host), local_address=PEER)
        self.engines = [plain, autokey]
        for engine in self.engines:
            engine.start(self.now)

    def run(self, data: bytes) -> None:
        self.count += 1
        if self.count % 2000 == 0:
            self._fresh()
        self.now += 0.25
        rx = unix_to_ntp(EPOCH + self.now)
        source = (SERVER, 123) if self.count % 3 else (self.rng.choice((PEER, CLIENT)),
                                                       self.rng.choice((123, 40000, 0)))
        if self.count % 2:
            # Re-sign with key 1 (in place of its MAC) so the packet passes authentication.
            try:
                body = parse(data).authenticated_part
            except MalformedPacket:
                pass
            else:
                data = body + self.engines[0].keys.sign(1, body)
        for engine in self.engines:
            engine.receive(data, source, rx, self.now, local=(PEER, 123))
            if self.count % 50 == 0:
                engine.fire_timers(self.now)
                engine.status()


_engine_harness: _EngineHarness | None = None


def run_engine(data: bytes) -> None:
    global _engine_harness
    if _engine_harness is None:
        _engine_harness = _EngineHarness()
    _engine_harness.run(data)


# ------------------------------------------------------------------ mode 6


class _Mode6Harness:
    """The mode 6 server (``ntpauto.mode6.handle``, which may raise nothing) on an engine
    with an Autokey association, and the client side (``ntpauto.mode6_client``: response
    reassembly and the variable/association parsers, ControlError only) fed the same
    mutated datagram as a response."""

    def __init__(self) -> None:
        self.now = 1000.0
        clock = SimulatedClock(lambda: self.now, epoch=EPOCH)
        host = _host("tc-rsa-md5", "brenda")
        self.engine = Engine(parse_config(f"server {SERVER} autokey\nserver 10.0.0.9\n"
                                          "localclock stratum 2\n"), clock,
                             rng=random.Random(7), autokey=AutokeyNode(host),
                             local_address=PEER)
        self.engine.start(self.now)
        self.engine.fire_timers(self.now + 2)

    def run(self, data: bytes) -> None:
        if not data:
            return
        data = bytes([(data[0] & 0xF8) | 6]) + data[1:] if data[0] & 7 != 7 else data
        mode6.handle(self.engine, data, frozenset(), self.now)
        if len(data) < 12:
            return
        response = mc.Response(data[1] & 0x1F, int.from_bytes(data[2:4], "big"))
        if response.add(bytes([data[0], data[1] | 0x80]) + data[2:]) and response.complete:
            mc.parse_variables(response.data)
            mc.parse_associations(response.data)


def mode6_seeds() -> list[bytes]:
    """Requests for every opcode (status, variables, the Autokey ones), and the engine's
    answers to them."""
    harness = _Mode6Harness()
    out = []
    associds = [0, *harness.engine.associations]
    for opcode in range(0, 32):
        for associd in associds[:3]:
            for body in (b"", b"stratum,offset,flags", b"cert,hostname,signature",
                         b"x" * 40):
                req = mc.request(opcode, opcode * 7 + 1, associd, body)
                out.append(req)
                out.extend(mode6.handle(harness.engine, req, frozenset(), harness.now))
    return out


_mode6_harness: _Mode6Harness | None = None


def run_mode6(data: bytes) -> None:
    global _mode6_harness
    if _mode6_harness is None:
        _mode6_harness = _Mode6Harness()
    _mode6_harness.run(data)


# ------------------------------------------------------------------ NTS


def run_nts_ke(data: bytes) -> None:
    """An NTS-KE message through the reader, the server's answer and the client's reading
    (``ntpauto.nts.records``): KeError only."""
    from ntpauto.nts import records

    message = records.MessageReader().feed(data)
    if message is None:
        return
    try:
        records.answer(message, lambda aead: [bytes(104)] * 8, port=123)
    except records.KeError:
        pass
    records.read_response(message)


def nts_ke_seeds() -> list[bytes]:
    """The client's request, a server's response, an error response, and a response with
    port and server negotiation."""
    from ntpauto.nts import records

    response = records.answer(records.decode_message(records.request()),
                              lambda aead: [bytes([i]) * 104 for i in range(8)],
                              port=12300, server="ntp.example.org")
    return [records.request(), records.encode_message(response),
            records.encode_message(records.error_response(1)),
            records.encode_message(response[:2] + response[-1:])]


class _NtsHarness:
    """An NTS server engine and an NTS client engine whose association holds keys and has a
    request in flight: NTS fields through the field readers, the server's answer, the
    session's check and both engines' receive paths (which must raise nothing)."""

    def __init__(self) -> None:
        from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
        from ntpauto.nts.cookies import CookieKeys
        from ntpauto.nts.records import KeResponse
        from ntpauto.nts.serving import NtsServer

        self.now = 1000.0
        clock = SimulatedClock(lambda: self.now, epoch=EPOCH)
        self.server = Engine(parse_config("localclock stratum 1\n"), clock,
                             rng=random.Random(8),
                             nts_server=NtsServer(CookieKeys(bytes(range(32))), clock.now))
        self.client = Engine(parse_config(f"server {SERVER} nts minpoll 4\n"), clock,
                             rng=random.Random(9))
        self.keys = SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(range(32)), bytes(range(1, 33)))
        self.cookies = tuple(self.server.nts_server.cookie_keys.seal(self.keys, clock.now())
                             for _ in range(8))
        self.client.start(self.now)
        [self.assoc] = self.client.associations.values()
        self.client.nts.keyed(self.assoc.associd, KeResponse(15, self.cookies), self.keys,
                              None, self.now)
        self.rekey = KeResponse
        self.requests = self.client.fire_timers(self.now)

    def run(self, data: bytes) -> None:
        from ntpauto.nts import fields as nf

        self.now += 0.25
        rx = unix_to_ntp(EPOCH + self.now)
        self.server.receive(data, (CLIENT, 123), rx, self.now)
        self.client.receive(data, (SERVER, 123), rx, self.now)
        if self.assoc.nts.rekey_due(self.now) is not None:
            self.client.nts.keyed(self.assoc.associd, self.rekey(15, self.cookies), self.keys,
                                  None, self.now)
            self.client.fire_timers(self.now + 100)
        try:
            pkt = parse(data)
        except MalformedPacket:
            return
        self.assoc.nts.check(pkt)
        nf.response_fields(pkt)
        nf.request_fields(pkt)


def nts_seeds() -> list[bytes]:
    """NTS requests (every jar size), the server's replies, an NTS NAK."""
    harness = _NtsHarness()
    out = [d.data for d in harness.requests]
    from ntpauto.nts.records import KeResponse
    from ntpauto.nts.session import NtsSession

    for count in range(1, 9):
        session = NtsSession("x", 4460)
        session.keyed(KeResponse(15, harness.cookies[:count]), harness.keys, 0.0)
        request = session.request(bytes([0x23]) + bytes(39) + bytes(range(8)))
        out.append(request)
        out.extend(d.data for d in harness.server.receive(request, (CLIENT, 123),
                                                          1 << 32, harness.now))
    stranger = NtsSession("x", 4460)
    stranger.keyed(KeResponse(15, (bytes(104),)), harness.keys, 0.0)
    out.extend(d.data for d in harness.server.receive(
        stranger.request(bytes([0x23]) + bytes(47)), (CLIENT, 123), 1 << 32, harness.now))
    return out


_nts_harness: _NtsHarness | None = None


def run_nts(data: bytes) -> None:
    global _nts_harness
    if _nts_harness is None:
        _nts_harness = _NtsHarness()
    _nts_harness.run(data)


# ------------------------------------------------------------------ registry


def targets() -> dict[str, Target]:
    """Every fuzz target by name."""
    out = {
        "packet": Target("packet", run_packet, (MalformedPacket,), packet_seeds),
        "fields": Target("fields", run_fields,
                         (MalformedPacket, FieldError, CertificateError, _DerError),
                         packet_seeds),
        "autokey": Target("autokey", run_autokey, (MalformedPacket, FieldError),
                          packet_seeds),
        "cert": Target("cert", run_cert, (CertificateError,), cert_seeds),
        "keyfile": Target("keyfile", run_keyfile, (KeyFileError,), keyfile_seeds),
        "config": Target("config", run_config, (ConfigError,), config_seeds),
        "engine": Target("engine", run_engine, (), packet_seeds),
        # The server must raise nothing; the client may raise only its ControlError.
        "mode6": Target("mode6", run_mode6, (mc.ControlError,), mode6_seeds),
        "nts_ke": Target("nts_ke", run_nts_ke, (KeError,), nts_ke_seeds),
        "nts": Target("nts", run_nts, (MalformedPacket, NtsFieldError), nts_seeds),
    }
    return out


def private_key_der(pem_text: bytes) -> list[bytes]:
    """The DER of each unencrypted PEM block of a key file (for structure-aware mutation)."""
    out = []
    for block in re.findall(rb"-----BEGIN ([A-Z ]+)-----\r?\n(.*?)-----END", pem_text,
                            re.DOTALL):
        label, body = block
        if b"ENCRYPTED" in body or label == b"ENCRYPTED PRIVATE KEY":
            continue
        try:
            out.append(base64.b64decode(body))
        except ValueError:
            continue
    return out


def rewrap(pem_text: bytes, ders: list[bytes]) -> bytes:
    """``pem_text`` with its unencrypted PEM blocks replaced by ``ders`` in order."""
    it = iter(ders)

    def swap(match: re.Match[bytes]) -> bytes:
        label, body = match.group(1), match.group(2)
        if b"ENCRYPTED" in body or label == b"ENCRYPTED PRIVATE KEY":
            return match.group(0)
        der = next(it, None)
        if der is None:
            return match.group(0)
        b64 = base64.encodebytes(der)
        return b"-----BEGIN " + label + b"-----\n" + b64 + b"-----END " + label + b"-----"

    return re.sub(rb"-----BEGIN ([A-Z ]+)-----\r?\n(.*?)-----END \1-----", swap, pem_text,
                  flags=re.DOTALL)


__all__ = ["Target", "captured_packets", "certificate_ders", "config_texts", "key_file_texts",
           "private_key_der", "rewrap", "targets"]
