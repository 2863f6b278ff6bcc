"""RFC 8915 section 8, one test (or a pointer to one) per consideration:

* 8.1 Protected modes: NTS is client-server only (here).
* 8.2 Cookie encryption key compromise: master keys rotate and a replaced secret revokes
  every cookie (test_nts_cookies.py test_accepted_window, test_nts_engine.py
  test_cookies_outlive_master_key_rotation and test_rotated_server_secret_gives_a_nak_...).
* 8.3 Sensitivity to DDoS attacks: the NTS-KE server's bounds (test_nts_ke.py), the
  client's back-off (test_nts_engine.py), and NTS requests under the rate limit (here).
* 8.4 Avoiding DDoS amplification: replies never larger than requests (here, on every kind
  of request; test_nts_fields.py, test_nts_engine.py).
* 8.5 Initial verification of server certificates: test_nts_ke.py test_certificate_checks.
* 8.6 Delay attacks: a reply delayed past the next request is refused (here); a replay
  (test_nts_engine.py).
* 8.7 NTS stripping: test_nts_engine.py and test_nts_fields.py (plain and stripped replies).
"""

from __future__ import annotations

import pytest

from ntpauto.config import ConfigError, parse_config
from ntpauto.nts import fields as f
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import MODE_ACTIVE, Header, parse
from tests.nts_helpers import keyed_session
from tests.test_nts_engine import CLIENT, SERVER, association, network, packets


@pytest.mark.parametrize("line", ["peer 192.0.2.1 nts", "broadcast 192.0.2.255 nts",
                                  "server 192.0.2.1 nts key 1", "server 192.0.2.1 nts autokey",
                                  "server 192.0.2.1 ntsport 4460"])
def test_nts_is_for_server_associations_only(line: str) -> None:
    """8.1: the configuration refuses NTS where it protects nothing."""
    with pytest.raises(ConfigError):
        parse_config(line + "\n", "/etc/ntp.conf")


def test_symmetric_packets_get_no_nts_service() -> None:
    """8.1: NTS fields in a symmetric active packet are not served (no cookies, no NTS
    reply): the server answers a symmetric packet only as it answers any."""
    net, server, _ = network()
    session = keyed_session(server.engine.nts_server, now=server.clock.now())
    data = session.request(Header(0, 4, MODE_ACTIVE, 2, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                                  123 << 32).encode())
    out = server.engine.receive(data, ("10.0.0.7", 123), 1 << 32, 0.0)
    assert all(not parse(d.data).nts for d in out)
    assert server.engine.counters["nts_served"] == 0


def test_nts_requests_obey_the_rate_limit() -> None:
    """8.3: a source over ``restrict limited`` gets no NTS work done (a RATE kiss at
    most): no cookie opened, no authenticator checked."""
    net = SimulatedNetwork(seed=7, latency=0.01)
    server = net.add_host(SERVER, "localclock stratum 1\nrestrict default limited kod\n"
                          "discard average 4 minimum 2\n", nts_server=True)
    session = keyed_session(server.engine.nts_server, now=server.clock.now())
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 1 << 32).encode()
    for i in range(8):
        server.engine.receive(session.request(header), (CLIENT, 123), 1 << 32, 100.0 + i * 0.01)
    counters = server.engine.counters
    assert counters["nts_served"] == 1 and counters["limited"] == 7
    assert counters["nts_nak_sent"] == counters["nts_badfield"] == 0


def test_every_kind_of_reply_is_no_larger_than_its_request() -> None:
    """8.4: served replies (every jar size), NAKs, and requests that ask too much."""
    net, server, _ = network()
    nts = server.engine.nts_server
    header = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, 1 << 32).encode()
    for count in range(1, 9):
        session = keyed_session(nts, count=count, now=server.clock.now())
        request = session.request(header)
        [reply] = server.engine.receive(request, (CLIENT, 123), 1 << 32, 0.0)
        assert len(reply.data) == len(request)
    stranger = keyed_session(nts, now=server.clock.now())
    stranger.cookies[0] = bytes(104)  # a cookie no key opens: a NAK
    request = stranger.request(header)
    [nak] = server.engine.receive(request, (CLIENT, 123), 1 << 32, 0.0)
    assert parse(nak.data).header.refid == b"NTSN" and len(nak.data) < len(request)


def test_a_reply_delayed_past_the_next_request_is_refused() -> None:
    """8.6: an attacker holding a reply until after our next request cannot pass it off
    as the answer to it (its unique identifier and origin are the old request's)."""
    net, server, client = network()
    net.run(60)
    held: list[bytes] = []

    def hold(data, source, destination):
        if source[0] == SERVER and not held:
            held.append(data)
            return None
        return data

    net.add_interceptor(hold)
    net.run(20)  # the next poll's reply is held; later replies pass
    assert held
    samples = client.engine.counters["samples"]
    net.inject(held[0], (SERVER, 123), (CLIENT, 123))
    net.run(0.05)
    assert client.engine.counters["samples"] == samples
    assert client.engine.counters["nts_badauth"] == 1


def test_requests_carry_no_linkable_value_across_key_exchanges() -> None:
    """9.1: across a re-key too, no cookie or identifier repeats, and NTS-KE gives
    cookies that share nothing with the old ones."""
    net, server, client = network()
    net.run(100)
    from ntpauto.nts.cookies import CookieKeys
    from ntpauto.nts.serving import NtsServer

    server.engine.nts_server = NtsServer(CookieKeys(bytes(range(32))), server.clock.now)
    net.run(300)
    assert client.engine.counters["nts_ke_done"] == 2
    seen = [{fld.word >> 16: fld.data[4:] for fld in parse(r).fields}
            for r in packets(net, CLIENT, 3)]
    for kind in (f.COOKIE, f.UNIQUE_IDENTIFIER):
        values = [s[kind] for s in seen]
        assert len(set(values)) == len(values)
    assert association(client).reach & 1
