"""Tests for ``ntpauto status``: the document and table built from mode 6 answers, and the
command over real UDP on 127.0.0.1."""

from __future__ import annotations

import argparse
import io
import json
import socket
import threading
import time

import pytest

from ntpauto import mode6
from ntpauto.cli import status as status_cli
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.mode6_client import (
    ControlError,
    Response,
    parse_associations,
    parse_variables,
    request,
)
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.wire.timestamps import unix_to_ntp
from tests.test_engine_autokey import server_dance


class EngineQuery:
    """The queries ``gather`` makes, answered by an engine directly (no sockets)."""

    def __init__(self, engine: Engine, now: float, *, ntpauto: bool = True) -> None:
        self.engine, self.now, self.ntpauto = engine, now, ntpauto
        self.sequence = 0

    def _ask(self, opcode: int, associd: int, data: bytes) -> Response:
        self.sequence += 1
        response = Response(opcode, self.sequence)
        rx = unix_to_ntp(self.engine.clock.now())
        for datagram in self.engine.receive(request(opcode, self.sequence, associd, data),
                                            ("127.0.0.1", 50000), rx, self.now):
            response.add(datagram.data)
        assert response.complete
        return response

    def variables(self, associd: int = 0, names: str = "") -> list[tuple[str, str]]:
        if not self.ntpauto and names:
            raise ControlError(mode6.CERR_UNKNOWNVAR, "unknown variable")  # as ntpd 4.2.8
        return parse_variables(self._ask(mode6.OP_READVAR, associd, names.encode()).data)

    def associations(self) -> list[tuple[int, int]]:
        return parse_associations(self._ask(mode6.OP_READSTAT, 0, b"").data)


@pytest.fixture(scope="module")
def dance(vectors):
    net, alice, brenda, assoc = server_dance(vectors, "iff-trad")
    return net, brenda.engine, assoc


def test_document_of_an_autokey_client(dance):
    """Flags by name, scheme, trail with its expiry, the system peer, counters."""
    net, engine, assoc = dance
    document = status_cli.document(status_cli.gather(EngineQuery(engine,
                                                                 net.reactor.seconds())))
    system = document["system"]
    assert system["peer"] == assoc.associd and system["stratum"] == 2
    assert system["autokey"]["host"] == "brenda@alice"
    expiry = assoc.autokey.state.peer_certificate.not_after.strftime("%Y-%m-%dT%H:%MZ")
    assert {"subject": "alice@alice", "issuer": "alice@alice", "flags": 5,
            "until": expiry} in system["autokey"]["certificates"]
    [association] = document["associations"]
    assert association["associd"] == assoc.associd and association["system_peer"]
    assert association["address"] == "10.0.0.1" and association["mode"] == "client"
    assert association["offset"] == pytest.approx(assoc.offset, abs=1e-6)
    autokey = association["autokey"]
    assert autokey["flags"] == ["ENAB", "TAI", "IFF", "CERT", "VRFY", "PROV", "COOK", "AUTO",
                                "SIGN", "LEAP"]
    assert autokey["scheme"] == "iff" and autokey["proventic"]
    assert autokey["trail"] == [["alice@alice", "alice@alice"]]
    expiry = assoc.autokey.state.peer_certificate.not_after
    assert autokey["trusted_until"] == expiry.strftime("%Y-%m-%dT%H:%MZ")
    assert document["counters"]["samples"] == engine.counters["samples"]


def test_document_from_a_daemon_without_ntpauto_variables(dance):
    """Against ntpd (no ``scheme``, ``trail``, ``counters``): the scheme comes from the
    flags and the trail from the certificate cache, hiked as the daemon hikes it."""
    net, engine, assoc = dance
    query = EngineQuery(engine, net.reactor.seconds(), ntpauto=False)
    document = status_cli.document(status_cli.gather(query))
    [association] = document["associations"]
    assert association["autokey"]["scheme"] == "iff"
    assert association["autokey"]["trail"] == [["alice@alice", "alice@alice"]]
    assert document["counters"] == {}


def test_render_shows_flags_scheme_and_trail(dance):
    net, engine, assoc = dance
    document = status_cli.document(status_cli.gather(EngineQuery(engine,
                                                                 net.reactor.seconds())))
    out = io.StringIO()
    status_cli.render(document, out)
    text = out.getvalue()
    assert "* 10.0.0.1:123" in text and f"{assoc.reach:08b}" in text
    assert "IFF CERT VRFY PROV COOK AUTO SIGN LEAP" in text
    assert "scheme iff" in text and "alice@alice (issuer alice@alice until 20" in text
    assert "certificate brenda@alice issued by alice@alice" in text


class UDPDaemon:
    """An engine answering on 127.0.0.1, port 0, from a thread (real datagrams)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, address = self.sock.recvfrom(2048)
            except OSError:
                return
            rx = unix_to_ntp(self.engine.clock.now())
            for datagram in self.engine.receive(data, address, rx, 1000.0):
                self.sock.sendto(datagram.data, datagram.address)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def daemon():
    clock = SimulatedClock(lambda: 1000.0, epoch=1_795_000_000.0)
    engine = Engine(parse_config("localclock stratum 1\nserver 127.0.0.1 port 9\n"), clock)
    engine.start(1000.0)
    server = UDPDaemon(engine)
    yield server
    server.close()


def test_status_over_udp(daemon):
    """The table and the JSON document from a daemon on a real UDP port."""
    out = io.StringIO()
    args = argparse.Namespace(host="127.0.0.1", port=daemon.port, json=False, timeout=5.0)
    assert status_cli.run(args, out) == 0
    text = out.getvalue()
    assert "system: stratum 1  refid LOCL" in text
    assert "* LOCAL(0)" in text and "  127.0.0.1:9" in text
    out = io.StringIO()
    args.json = True
    assert status_cli.run(args, out) == 0
    document = json.loads(out.getvalue())
    assert len(document["associations"]) == 2
    # Read by the second of five queries (system, counters, list, two associations).
    assert document["counters"]["control"] == daemon.engine.counters["control"] - 3


def test_status_into_a_closed_pipe_ends_quietly(daemon):
    """``ntpauto status | head -1`` once head has gone: no traceback, no message."""
    from ntpauto.cli import BROKEN_PIPE_STATUS
    from tests.test_cli_main import closed_pipe_run

    result = closed_pipe_run("status", "--port", str(daemon.port), "--timeout", "5")
    assert result.stderr == ""
    assert result.returncode == BROKEN_PIPE_STATUS


def test_parser_defaults():
    parser = argparse.ArgumentParser()
    status_cli.register(parser.add_subparsers())
    args = parser.parse_args(["status"])
    assert (args.host, args.port, args.json, args.timeout) == ("127.0.0.1", 12300, False, 5.0)


def test_missing_daemon_is_a_one_line_error(capsys):
    """Nothing listening: exit status 1 and one line naming host and port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but never answering
        args = argparse.Namespace(host="127.0.0.1", port=port, json=False, timeout=0.2)
        assert status_cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1 port {port}: no answer" in err


def test_status_and_query_word_failures_alike(capsys):
    """A silent port and a closed one: ``status`` and ``query`` print the same line after
    their names; the closed port is reported at once (ICMP port unreachable)."""
    from ntpauto.cli import main

    def both(port: int) -> tuple[str, str]:
        assert main(["status", "--port", str(port), "--timeout", "0.2"]) == 1
        status_err = capsys.readouterr().err
        assert main(["query", "127.0.0.1", "--port", str(port), "--timeout", "0.2"]) == 1
        query_err = capsys.readouterr().err
        assert status_err.startswith("ntpauto status: ")
        assert query_err.startswith("ntpauto query: ")
        return status_err.removeprefix("ntpauto status: "), \
            query_err.removeprefix("ntpauto query: ")

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        silent = both(port)
    assert silent[0] == silent[1] == (f"127.0.0.1 port {port}: no answer within 0.2 s (no "
                                      "server there, or it ignores this address)\n")
    started = time.monotonic()
    closed = both(port)
    assert time.monotonic() - started < 0.2  # neither waited for its timeout
    assert closed[0] == closed[1] == (f"127.0.0.1 port {port}: port unreachable (nothing "
                                      "listens on that port)\n")


def test_json_numbers_keep_the_precision_mode6_gave():
    """Milliseconds from mode 6 become seconds with no binary noise: 0.000954 ms is
    9.54e-07 s, not 9.539999999999999e-07."""
    raw = {"system": [("sys_jitter", "0.000954"), ("rootdisp", "5.057"), ("offset", "-1.5")],
           "counters": [], "associations": [
               {"associd": 1, "status": 0x9614, "variables": [
                   ("srcadr", "127.0.0.1"), ("offset", "0.123"), ("jitter", "0.001"),
                   ("delay", "12.345678")]}]}
    text = json.dumps(status_cli.document(raw))
    document = json.loads(text)
    assert document["system"]["jitter"] == 9.54e-07 and "9.539999" not in text
    assert document["system"]["root_dispersion"] == 0.005057
    assert document["system"]["offset"] == -0.0015
    association = document["associations"][0]
    assert (association["offset"], association["jitter"], association["delay"]) == \
        (0.000123, 1e-06, 0.012345678)
    assert "000000000" not in text and "99999999" not in text


def test_refused_query_is_a_one_line_error(capsys):
    """A daemon that refuses (noquery drops; here an error answer) is reported in a line."""
    clock = SimulatedClock(lambda: 1000.0, epoch=1_795_000_000.0)
    engine = Engine(parse_config("restrict default noquery\nlocalclock stratum 1\n"), clock)
    engine.start(1000.0)
    server = UDPDaemon(engine)
    try:
        args = argparse.Namespace(host="127.0.0.1", port=server.port, json=False,
                                  timeout=0.2)
        assert status_cli.run(args) == 1
    finally:
        server.close()
    assert "no answer" in capsys.readouterr().err
    assert engine.counters["control_noquery"] == 2  # the request and its retransmission
