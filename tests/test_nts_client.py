"""``ntpauto.client.query(..., nts=True)`` and ``ntpauto query --nts`` against an ntpauto NTS
server on loopback: the sample and what proved it, and each way NTS-KE can fail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor

from ntpauto.cli import main
from ntpauto.client import NtsFailed, QueryTimeout, query
from ntpauto.client.oneshot import query_outcome
from ntpauto.nts import certs
from tests.test_nts_ke import wait
from tests.test_nts_service import free_tcp_port, service
from tests.test_service import stop


@pytest.fixture(scope="module")
def nts_server(tmp_path_factory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("nts")
    pki = certs.write_test_pki(base, ["127.0.0.1"])
    other = base / "other"
    other.mkdir()
    ke_port = free_tcp_port()
    node = service(f"localclock stratum 1\nntsservercert {pki.cert}\n"
                   f"ntsserverkey {pki.key}\nntsport {ke_port}\n", base / "ntp.conf")
    yield {"node": node, "pki": pki, "ke": ke_port, "ntp": node.address[1],
           "other": certs.write_test_pki(other, ["127.0.0.1"])}
    stop(node)


def test_query_with_nts(nts_server) -> None:
    outcome = wait(query_outcome(reactor, "127.0.0.1", 123, nts=True, ntsport=nts_server["ke"],
                                 ntstrustedcerts=nts_server["pki"].ca))
    sample = outcome.sample
    assert sample.authentication == "nts" and sample.autokey is None
    assert sample.port == nts_server["ntp"]  # negotiated by the NTS-KE server
    assert sample.nts.host == "127.0.0.1" and sample.nts.aead == "AEAD_AES_SIV_CMAC_256"
    assert sample.nts.cookies == 8 and outcome.requests == 1
    assert sample.stratum == 1 and 0 <= sample.delay < 0.1


def test_untrusted_certificate_fails_typed(nts_server) -> None:
    failure = wait(query(reactor, "127.0.0.1", nts=True, ntsport=nts_server["ke"],
                         ntstrustedcerts=nts_server["other"].ca, timeout=5))
    assert isinstance(failure.value, NtsFailed)
    assert "certificate verify failed" in str(failure.value)


def test_no_ke_server_fails_typed(nts_server) -> None:
    failure = wait(query(reactor, "127.0.0.1", nts=True, ntsport=free_tcp_port(),
                         ntstrustedcerts=nts_server["pki"].ca, timeout=5))
    assert isinstance(failure.value, NtsFailed) and "refused" in str(failure.value)


def test_nts_does_not_mix_with_keys() -> None:
    failure = wait(query(reactor, "127.0.0.1", nts=True, key=1, keys="x"))
    assert isinstance(failure.value, ValueError)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["query", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_query_nts(nts_server, capsys) -> None:
    status, out, err = cli(capsys, "127.0.0.1", "--nts", "--ntsport", str(nts_server["ke"]),
                           "--ntstrustedcerts", nts_server["pki"].ca)
    assert status == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["authentic"] == "yes: NTS (RFC 8915)"
    assert fields["aead"] == "AEAD_AES_SIV_CMAC_256"
    assert fields["nts-ke"].startswith(f"127.0.0.1 port {nts_server['ke']}")
    assert fields["server"] == f"127.0.0.1 port {nts_server['ntp']}"


def test_cli_query_nts_json(nts_server, capsys) -> None:
    status, out, err = cli(capsys, "127.0.0.1", "--nts", "--ntsport", str(nts_server["ke"]),
                           "--ntstrustedcerts", nts_server["pki"].ca, "--json")
    assert status == 0, err
    document = json.loads(out)
    assert document["authentication"] == "nts" and document["nts"]["cookies"] == 8


def test_cli_query_nts_failure(nts_server, capsys) -> None:
    status, out, err = cli(capsys, "127.0.0.1", "--nts", "--ntsport", str(nts_server["ke"]),
                           "--ntstrustedcerts", nts_server["other"].ca, "--timeout", "5")
    assert status == 1 and out == ""
    assert err.startswith("ntpauto query: 127.0.0.1 port 123: NTS-KE with 127.0.0.1 port")


@pytest.mark.parametrize("argv, message", [
    (["--ntsport", "4460"], "--ntsport needs --nts"),
    (["--ntstrustedcerts", "ca.pem"], "--ntstrustedcerts needs --nts"),
    (["--nts", "--autokey"], "--nts does not go with"),
    (["--nts", "--ntsport", "0"], "out of range"),
])
def test_cli_arguments(capsys, argv: list[str], message: str) -> None:
    status, _, err = cli(capsys, "127.0.0.1", *argv)
    assert status == 1 and message in err


def test_query_times_out_in_nts_ke_stage(tmp_path: Path) -> None:
    """A TCP port that accepts and never answers: the query's own timeout ends it, saying
    it was waiting for NTS-KE."""
    from twisted.internet.protocol import Factory, Protocol

    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        failure = wait(query(reactor, "127.0.0.1", nts=True, ntsport=port.getHost().port,
                             timeout=0.5))
    finally:
        port.stopListening()
    assert isinstance(failure.value, QueryTimeout) and failure.value.stage == "NTS-KE"
