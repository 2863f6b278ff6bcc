"""Two ntpauto daemons on loopback speaking NTS: the service listens for NTS-KE on
``ntsport`` beside its NTP port, its ``server HOST nts`` association runs NTS-KE (the NTP
port comes from the server's port negotiation) and then synchronises on NTS-protected
packets.  Real sockets and TLS; simulated clocks."""

from __future__ import annotations

import socket
from pathlib import Path

import attrs
import pytest
from twisted.internet import reactor

from ntpauto.config import ConfigError, ListenConfig, parse_config
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.nts import certs
from ntpauto.nts.tls import TlsFileError
from ntpauto.service import NTPAutokeyService
from tests.test_service import spin, stop


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service(text: str, path: Path) -> NTPAutokeyService:
    config = attrs.evolve(parse_config(text, str(path)), listen=(ListenConfig("127.0.0.1"),))
    if config.port == 123:
        config = attrs.evolve(config, port=0)
    node = NTPAutokeyService(config, clock=SimulatedClock(reactor.seconds,
                                                          epoch=1_800_000_000.0))
    node.startService()
    return node


def test_daemon_to_daemon(tmp_path: Path) -> None:
    pki = certs.write_test_pki(tmp_path, ["127.0.0.1"])
    ke_port = free_tcp_port()
    server = service(f"localclock stratum 1\nntsservercert {pki.cert}\n"
                     f"ntsserverkey {pki.key}\nntsport {ke_port}\nntsdumpdir {tmp_path}\n",
                     tmp_path / "server.conf")
    client = None
    try:
        client = service(f"server 127.0.0.1 nts ntsport {ke_port} minpoll 3 iburst\n"
                         f"ntstrustedcerts {pki.ca}\n", tmp_path / "client.conf")
        proven: list = []
        client.synchronised(proventic=True).addCallback(proven.append)
        spin(lambda: client.engine.counters["samples"] >= 3 and proven)
        [assoc] = client.engine.associations.values()
        assert assoc.address == ("127.0.0.1", server.address[1])  # negotiated port
        assert len(assoc.nts.cookies) == 8
        assert server.engine.counters["nts_ke_served"] == 1
        assert server.engine.counters["nts_served"] >= 3
        assert client.engine.counters["nts_badauth"] == 0
    finally:
        if client is not None:
            stop(client)
        stop(server)
    assert (tmp_path / "ntscookiekey").stat().st_mode & 0o777 == 0o600


def test_bad_certificate_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TlsFileError, match="cannot read"):
        NTPAutokeyService(parse_config(
            f"ntsservercert {tmp_path}/none.pem\nntsserverkey {tmp_path}/none.key\n"))
    with pytest.raises(ConfigError, match="ntsservercert needs ntsserverkey"):
        parse_config("ntsservercert cert.pem\n", "/etc/ntp.conf")
