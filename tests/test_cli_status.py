"""Tests for ``ntpauto status``: rendering and the local status socket."""

from __future__ import annotations

import argparse
import io
import json

from ntpauto.cli import status as status_cli
from ntpauto.control import StatusFactory, StatusProtocol, default_status_socket

DOCUMENT = {
    "system": {"stratum": 2, "refid": "10.0.0.1", "offset": -0.05, "jitter": 0.001, "leap": 0,
               "discipline": "disabled",
               "autokey": {"host": "brenda@alice", "flags": ["ENAB", "TAI"], "digest": "md5",
                           "signature": "md5WithRSAEncryption", "update": 1,
                           "certificates": [{"subject": "brenda@alice", "issuer": "alice@alice",
                                             "flags": 4, "until": "2027-11-23T18:53:28"}]}},
    "associations": [{
        "associd": 7, "address": "10.0.0.1", "port": 123, "mode": "client", "refclock": False,
        "stratum": 1, "reach": 255, "hpoll": 4, "offset": -0.05, "delay": 0.02,
        "jitter": 0.0001, "system_peer": True,
        "autokey": {"status": "0x87f23", "peer": "alice@alice", "scheme": "iff",
                    "flags": ["ENAB", "TAI", "IFF", "CERT", "VRFY", "PROV", "COOK", "AUTO",
                              "SIGN", "LEAP"],
                    "trail": [["alice@alice", "alice@alice"]],
                    "trusted_until": "2027-11-23T15:28:41", "proventic": True}}],
    "counters": {},
}


def test_render_shows_flags_scheme_and_trail():
    """The table names the Autokey flags, the scheme and the certificate trail."""
    out = io.StringIO()
    status_cli.render(DOCUMENT, out)
    text = out.getvalue()
    assert "* 10.0.0.1:123" in text and "11111111" in text
    assert "IFF CERT VRFY PROV COOK AUTO SIGN LEAP" in text
    assert "scheme iff" in text and "alice@alice (issuer alice@alice)" in text
    assert "brenda@alice issued by alice@alice" in text


def test_missing_daemon_is_a_one_line_error(tmp_path, capsys):
    """No daemon: exit status 1 and one line naming the socket."""
    args = argparse.Namespace(socket=str(tmp_path / "none.sock"), port=1, json=False,
                              timeout=1.0)
    assert status_cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.sock" in err


def test_status_protocol_writes_json_and_closes():
    """The socket protocol sends one JSON document and closes the connection."""
    from twisted.internet.testing import StringTransport

    factory = StatusFactory(lambda: DOCUMENT)
    protocol = factory.buildProtocol(None)
    assert isinstance(protocol, StatusProtocol)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert json.loads(transport.value()) == DOCUMENT
    assert transport.disconnecting


def test_status_protocol_reports_errors():
    """A failing status provider is reported in the document, not raised."""
    from twisted.internet.testing import StringTransport

    def broken():
        raise RuntimeError("boom")

    protocol = StatusFactory(broken).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert json.loads(transport.value()) == {"error": "boom"}


def test_default_socket_is_per_port():
    """Each daemon port gets its own socket path."""
    assert default_status_socket(123) != default_status_socket(12300)
    assert default_status_socket(12300).endswith("-12300.sock")
