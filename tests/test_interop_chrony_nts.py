"""NTS interoperability with chrony, on loopback, both roles (RFC 8915): chronyd as an NTS
client of ntpauto, and ntpauto as an NTS client of chronyd.

As in tests/test_interop_chrony.py: chronyd runs with ``-x`` (never touches the system
clock) and ``-d`` (foreground), its files in the test's temporary directory, on free high
ports; both sides read the same clock, so the true offset is 0.  The certificate comes
from ntpauto.nts.certs (a private CA the client trusts; the server's name is 127.0.0.1)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from ntpauto.nts import certs
from ntpauto.nts import fields as f
from ntpauto.wire.packet import parse
from tests.test_interop_chrony import (
    CHRONYD,
    CHRONYD_PLACES,
    DEADLINE,
    TOLERANCE,
    chronyd,  # noqa: F401 - the fixture
    four_samples,
    free_udp_port,
    record_lengths,
    spin,
    start_service,
    stop_service,
)
from tests.test_nts_service import free_tcp_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHRONYD is None, reason="needs chronyd: not on PATH nor in "
                       + ", ".join(CHRONYD_PLACES) + " (.ci/run unpacks it)"),
]


def record_datagrams(service: Any) -> list[bytes]:
    """Every datagram the service receives from now on."""
    seen: list[bytes] = []
    protocol = service.protocol
    original = protocol.datagramReceived

    def recording(data: bytes, addr: Any) -> None:
        seen.append(data)
        original(data, addr)

    protocol.datagramReceived = recording  # type: ignore[method-assign]
    return seen


def test_chronyd_nts_client_of_our_server(tmp_path: Path, chronyd) -> None:  # noqa: F811
    """chronyd runs NTS-KE with us and measures our server with NTS-protected packets only:
    its offsets are within 1 ms of zero and every request it sent carried a cookie we
    opened and an authenticator that verified."""
    pki = certs.write_test_pki(tmp_path, ["127.0.0.1"])
    ntp_port, ke_port = free_udp_port(), free_tcp_port()
    service = start_service(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 0\n"
        f"ntsservercert {pki.cert}\nntsserverkey {pki.key}\nntsport {ke_port}\n",
        tmp_path / "ntp.conf", ntp_port)
    datagrams = record_datagrams(service)
    try:
        chrony = chronyd(["port 0", f"ntstrustedcerts {pki.ca}",
                          f"server 127.0.0.1 port {ntp_port} nts ntsport {ke_port} "
                          "minpoll -4 maxpoll -4 iburst"], None)
        offsets = spin(lambda: len(chrony.measured_offsets()) >= 12
                       and chrony.measured_offsets(), DEADLINE, "chronyd measurements",
                       chrony.output)
    finally:
        stop_service(service)
    assert abs(statistics.median(offsets[-12:])) < TOLERANCE, offsets
    counters = service.engine.counters
    assert counters["nts_ke_served"] >= 1
    assert counters["nts_served"] >= 12
    assert counters["nts_nak_sent"] == counters["nts_badfield"] == 0
    assert counters["internal_error"] == 0
    packets = [parse(d) for d in datagrams]
    assert packets and all(p.nts for p in packets)
    kinds = {fld.word >> 16 for p in packets for fld in p.fields}
    assert {f.UNIQUE_IDENTIFIER, f.COOKIE, f.AUTHENTICATOR} <= kinds


def test_our_nts_client_of_chronyd(tmp_path: Path, chronyd) -> None:  # noqa: F811
    """Our ``server 127.0.0.1 nts`` association runs NTS-KE with chronyd (its certificate
    checked against our private CA), takes the NTP port chronyd negotiates, and measures an
    offset within 1 ms of zero from NTS-protected replies only."""
    pki = certs.write_test_pki(tmp_path, ["127.0.0.1"])
    chrony_port, ke_port = free_udp_port(), free_tcp_port()
    dump = tmp_path / "chrony-nts"
    dump.mkdir()
    chrony = chronyd([f"port {chrony_port}", "bindaddress 127.0.0.1", "allow 127.0.0.1",
                      "local stratum 1", f"ntsservercert {pki.cert}",
                      f"ntsserverkey {pki.key}", f"ntsport {ke_port}",
                      f"ntsdumpdir {dump}"], None)
    service = start_service(
        f"server 127.0.0.1 nts ntsport {ke_port} minpoll 3 iburst\n"
        f"ntstrustedcerts {pki.ca}\n", tmp_path / "ntp.conf", 0)
    lengths = record_lengths(service)
    assoc = four_samples(service, chrony)
    assert abs(assoc["offset"]) < TOLERANCE, assoc
    assert assoc["port"] == chrony_port and assoc["stratum"] == 1
    counters = service.engine.counters
    assert counters["nts_ke_done"] == 1 and counters["nts_badauth"] == 0
    assert counters["internal_error"] == 0
    assert lengths and min(lengths) > 48  # every reply carried NTS fields
