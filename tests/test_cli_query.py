"""Tests for ``ntpauto query`` against a scripted UDP server on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ntpauto.auth.keys import KeyStore, load_keys
from ntpauto.cli import main
from ntpauto.cli.query import refid_text
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, Header, build, parse
from ntpauto.wire.timestamps import ntp_to_unix, to_short, unix_to_ntp

Responder = Callable[[bytes], list[bytes]]


class ScriptedServer:
    """A UDP socket on 127.0.0.1 answering each datagram with what ``responder`` returns."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.received.append(data)
            for reply in self.responder(data):
                self.sock.sendto(reply, source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Responder], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(responder: Responder) -> ScriptedServer:
        server = ScriptedServer(responder)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def answer(request: bytes, *, shift: float = 0.0, stratum: int = 2,
           refid: bytes = bytes([192, 0, 2, 7]), mode: int = MODE_SERVER, leap: int = 0,
           origin: int | None = None) -> bytes:
    """A server reply to ``request`` whose clock reads ``shift`` seconds ahead."""
    header = parse(request).header
    now = ntp_to_unix(header.transmit) + shift
    return build(Header(leap, 4, mode, stratum, 6, -23, to_short(0.0125), to_short(0.03),
                        refid, unix_to_ntp(now - 10),
                        header.transmit if origin is None else origin,
                        unix_to_ntp(now), unix_to_ntp(now + 0.0001)))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["query", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_good_reply(serve, capsys) -> None:
    """A plain reply is measured and every header field printed; stratum 2 shows a dotted
    refid."""
    server = serve(lambda request: [answer(request, shift=1.5)])
    status, out, err = run(capsys, "127.0.0.1", "--port", str(server.port))
    assert status == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert abs(float(fields["offset"].split()[0]) - 1.5) < 0.05
    assert float(fields["delay"].split()[0]) >= 0
    assert fields["stratum"] == "2"
    assert fields["refid"] == "192.0.2.7"
    assert fields["leap"] == "0 (none)"
    assert fields["poll"].startswith("6 ")
    assert fields["precision"].startswith("-23 ")
    assert fields["authentic"] == "no"
    [request] = server.received
    header = parse(request).header
    assert (header.mode, header.version) == (MODE_CLIENT, 4)
    assert len(request) == 48


def test_json(serve, capsys) -> None:
    """``--json`` prints the same measurement for scripts."""
    import json

    server = serve(lambda request: [answer(request, shift=1.5)])
    status, out, _ = run(capsys, "127.0.0.1", "--port", str(server.port), "--json")
    document = json.loads(out)
    assert status == 0 and abs(document["offset"] - 1.5) < 0.05
    assert (document["stratum"], document["refid"], document["authenticated"]) == \
        (2, "192.0.2.7", False)


def test_ntp_version_option(serve, capsys) -> None:
    """``--ntp-version 3`` sends an NTPv3 request (``--version`` is ntpauto's own)."""
    server = serve(lambda request: [answer(request)])
    status, _, _ = run(capsys, "127.0.0.1", "--port", str(server.port), "--ntp-version", "3")
    assert status == 0
    assert parse(server.received[0]).header.version == 3


def test_stratum_one_refid_is_ascii(serve, capsys) -> None:
    """At stratum 1 the refid is the source's ASCII name."""
    server = serve(lambda request: [answer(request, stratum=1, refid=b"GPS\0", leap=3)])
    status, out, _ = run(capsys, "127.0.0.1", "--port", str(server.port))
    assert status == 0
    assert "refid       GPS\n" in out
    assert "leap        3 (unsynchronized)" in out


def test_kiss_of_death(serve, capsys) -> None:
    """A kiss-o'-death answer prints its kiss code and fails."""
    server = serve(lambda request: [answer(request, stratum=0, refid=b"RATE")])
    status, out, err = run(capsys, "127.0.0.1", "--port", str(server.port))
    assert status == 1
    assert out == ""
    assert "RATE" in err and len(err.splitlines()) == 1


def test_foreign_replies_are_ignored(serve, capsys) -> None:
    """Replies with the wrong origin, the wrong mode or garbage are skipped while waiting
    for the real answer."""
    server = serve(lambda request: [b"garbage", answer(request, origin=12345),
                                    answer(request, mode=MODE_CLIENT),
                                    answer(request, shift=-0.25)])
    status, out, _ = run(capsys, "127.0.0.1", "--port", str(server.port))
    assert status == 0
    assert "offset      -0.25" in out


def test_timeout(serve, capsys) -> None:
    """No answer within ``--timeout`` exits 1 with one line."""
    server = serve(lambda request: [])
    status, out, err = run(capsys, "127.0.0.1", "--port", str(server.port), "--timeout", "0.3")
    assert status == 1
    assert out == ""
    assert err.startswith(f"ntpauto query: 127.0.0.1 port {server.port}: no answer within "
                          "0.3 s") and err.count("\n") == 1


def closed_port() -> int:
    """A UDP port on 127.0.0.1 that was just free (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_port_is_reported_at_once(capsys) -> None:
    """Nothing listening: the ICMP port unreachable ends the wait at once (well before the
    timeout), with one line saying so."""
    port = closed_port()
    started = time.monotonic()
    status, out, err = run(capsys, "127.0.0.1", "--port", str(port), "--timeout", "5")
    assert time.monotonic() - started < 1.0
    assert status == 1 and out == ""
    assert err == (f"ntpauto query: 127.0.0.1 port {port}: port unreachable (nothing listens "
                   "on that port)\n")


def test_unresolvable_host(capsys) -> None:
    """A name that does not resolve is a one-line error."""
    status, _, err = run(capsys, "no-such-host.invalid", "--timeout", "0.5")
    assert status == 1
    assert "cannot resolve" in err


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "ntp.keys"
    path.write_text("1 MD5 sesame\n2 SHA1 " + "ab" * 20 + "\n")
    return path


def _signing_server(keys_file: Path, tamper: bool = False) -> Responder:
    store = KeyStore(load_keys(keys_file), trusted=[1, 2])

    def respond(request: bytes) -> list[bytes]:
        packet = parse(request)
        assert packet.has_mac
        if not store.verify(packet.keyid, packet.authenticated_part, packet.digest):
            return [answer(request) + struct.pack("!I", 0)]  # crypto-NAK
        reply = answer(request)
        mac = store.sign(packet.keyid, reply)
        if tamper:
            mac = mac[:-1] + bytes([mac[-1] ^ 1])
        return [reply + mac]

    return respond


@pytest.mark.parametrize("keyid, mac_length", [(1, 20), (2, 24)])
def test_authenticated(serve, capsys, keys_file, keyid, mac_length) -> None:
    """``--key ID --keys FILE`` signs the request (MD5 and SHA1) and verifies the reply."""
    server = serve(_signing_server(keys_file))
    status, out, err = run(capsys, "127.0.0.1", "--port", str(server.port),
                           "--key", str(keyid), "--keys", str(keys_file))
    assert status == 0, err
    assert "authentic   yes" in out
    assert len(server.received[0]) == 48 + mac_length


def test_bad_reply_mac(serve, capsys, keys_file) -> None:
    """A reply whose MAC does not verify is an error, not a measurement."""
    server = serve(_signing_server(keys_file, tamper=True))
    status, out, err = run(capsys, "127.0.0.1", "--port", str(server.port),
                           "--key", "1", "--keys", str(keys_file))
    assert status == 1 and out == ""
    assert "does not verify" in err


def test_crypto_nak(serve, capsys, tmp_path) -> None:
    """A server that does not know our key answers with a crypto-NAK, reported as such."""
    theirs = tmp_path / "theirs.keys"
    theirs.write_text("1 MD5 other\n")
    ours = tmp_path / "ours.keys"
    ours.write_text("1 MD5 sesame\n")
    server = serve(_signing_server(theirs))
    status, _, err = run(capsys, "127.0.0.1", "--port", str(server.port),
                         "--key", "1", "--keys", str(ours))
    assert status == 1
    assert "crypto-NAK" in err


def test_unsigned_reply_to_signed_request(serve, capsys, keys_file) -> None:
    """With ``--key``, an unauthenticated reply is rejected."""
    server = serve(lambda request: [answer(request)])
    status, _, err = run(capsys, "127.0.0.1", "--port", str(server.port),
                         "--key", "1", "--keys", str(keys_file))
    assert status == 1
    assert "not authenticated" in err


@pytest.mark.parametrize("argv, message", [
    (["--key", "1"], "--key needs --keys"),
    (["--keys", "x"], "--keys needs --key"),
    (["--key", "9", "--keys", "KEYS"], "no key 9"),
    (["--key", "1", "--keys", "/nonexistent/ntp.keys"], "/nonexistent/ntp.keys"),
    (["--timeout", "0"], "--timeout"),
    (["--port", "70000"], "--port"),
])
def test_argument_errors(capsys, keys_file, argv, message) -> None:
    """Inconsistent options are one-line errors with status 1."""
    argv = [str(keys_file) if arg == "KEYS" else arg for arg in argv]
    status, _, err = run(capsys, "127.0.0.1", *argv)
    assert status == 1
    assert message in err and err.count("\n") == 1


def test_refid_text() -> None:
    """Refids are ASCII at stratum 0/1 (NULs dropped) and dotted quads above."""
    assert refid_text(1, b"PPS\0") == "PPS"
    assert refid_text(0, b"DENY") == "DENY"
    assert refid_text(3, bytes([10, 1, 2, 3])) == "10.1.2.3"
