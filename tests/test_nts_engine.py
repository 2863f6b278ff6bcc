"""NTS on the simulated network (ntpauto.testing): an NTS client association of one engine
against the NTS server of another, and what a man in the middle, a replay, a forged NAK,
a key rotation or an unreachable NTS-KE server can and cannot do (RFC 8915 sections 5.7,
8 and 9.1).  NTS-KE itself is simulated here (keys and cookies as the exchange ends); the
real TLS exchange is tests/test_nts_ke.py's."""

from __future__ import annotations

from ntpauto.nts import fields as f
from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
from ntpauto.nts.cookies import CookieKeys
from ntpauto.nts.records import KeResponse
from ntpauto.nts.serving import NtsServer
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import MODE_CLIENT, MODE_SERVER, MalformedPacket, parse

SERVER, CLIENT, OTHER = "10.0.0.1", "10.0.0.2", "10.0.0.3"
NTS_CLIENT = f"server {SERVER} nts iburst minpoll 4 maxpoll 6\n"


def network(**kw) -> tuple[SimulatedNetwork, object, object]:
    net = SimulatedNetwork(seed=3, latency=0.01, jitter=0.002, **kw)
    server = net.add_host(SERVER, "localclock stratum 1\n", nts_server=True)
    client = net.add_host(CLIENT, NTS_CLIENT, offset=0.2)
    return net, server, client


def association(host):
    [assoc] = host.engine.associations.values()
    return assoc


def packets(net, source: str, mode: int) -> list[bytes]:
    out = []
    for d in net.capture:
        if d.source[0] == source and not d.dropped:
            try:
                pkt = parse(d.data)
            except MalformedPacket:
                continue
            if pkt.header.mode == mode:
                out.append(d.data)
    return out


def test_client_synchronises_with_nts_only() -> None:
    net, server, client = network()
    net.run(300)
    assoc = association(client)
    assert assoc.reach and client.engine.sys.peer == assoc.associd
    assert abs(client.engine.sys.offset + 0.2) < 0.005
    requests, replies = packets(net, CLIENT, MODE_CLIENT), packets(net, SERVER, MODE_SERVER)
    assert requests and all(parse(r).nts for r in requests)
    assert replies and all(parse(r).nts for r in replies)
    counters = client.engine.counters
    assert counters["nts_ke_done"] == 1 and counters["nts_badauth"] == 0
    assert server.engine.counters["nts_served"] == len(replies)
    [status] = client.engine.status()["associations"]
    assert status["nts"]["cookies"] == 8 and status["nts"]["aead"] == 15


def test_replies_are_exactly_as_long_as_requests() -> None:
    """Section 8.4: no reply is larger than its request (each answers one request)."""
    net, _, _ = network()
    net.run(200)
    requests, replies = packets(net, CLIENT, MODE_CLIENT), packets(net, SERVER, MODE_SERVER)
    by_origin = {parse(r).header.transmit: len(r) for r in requests}
    assert replies
    for reply in replies:
        assert len(reply) == by_origin[parse(reply).header.origin]


def test_no_cookie_or_unique_identifier_is_ever_sent_twice() -> None:
    """Section 9.1, on the wire: every request carries its own cookie and identifier."""
    net, _, _ = network()
    net.run(600)
    cookies, ids = [], []
    for request in packets(net, CLIENT, MODE_CLIENT):
        body = {fld.word >> 16: fld.data[4:] for fld in parse(request).fields}
        cookies.append(body[f.COOKIE])
        ids.append(body[f.UNIQUE_IDENTIFIER])
    assert len(cookies) > 20
    assert len(set(cookies)) == len(cookies) and len(set(ids)) == len(ids)


def test_a_server_without_nts_is_never_used() -> None:
    """NTS stripping (section 8.7): a server that ignores the fields answers plainly; the
    NTS association takes none of it.  Here the NTS-KE server is one host and the NTP
    server it names another, without NTS."""
    net = SimulatedNetwork(seed=4, latency=0.01)
    net.add_host(SERVER, "localclock stratum 1\n")
    client = net.add_host(CLIENT, NTS_CLIENT)
    keys = SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(32), bytes(32))
    client.engine.nts.starter = lambda request: client.engine.nts.keyed(
        request.associd, KeResponse(15, (bytes(104),) * 8), keys, None,
        net.reactor.seconds())
    net.run(300)
    assert client.engine.counters["samples"] == 0
    assert client.engine.counters["nts_badauth"] > 5
    assert association(client).reach == 0


def test_man_in_the_middle_cannot_strip_or_change_replies() -> None:
    """Stripping the NTS fields, or changing a timestamp, leaves the client without any
    sample (the NTS verdict fails first)."""
    for attack in ("strip", "shift"):
        net, _, client = network()

        def tamper(data, source, destination, attack=attack):
            if source[0] != SERVER:
                return data
            if attack == "strip":
                return data[:48]
            shifted = bytearray(data)
            shifted[40] ^= 0x01  # the transmit timestamp's seconds
            return bytes(shifted)

        net.add_interceptor(tamper)
        net.run(300)
        assert client.engine.counters["samples"] == 0, attack
        assert client.engine.counters["nts_badauth"] > 5, attack


def test_a_replayed_reply_is_refused() -> None:
    """Section 8.6 (and 5.7): an authentic reply sent again, late, is not taken: its
    unique identifier was used up by the first copy."""
    net, _, client = network()
    net.run(100)
    [first] = packets(net, SERVER, MODE_SERVER)[:1]
    samples = client.engine.counters["samples"]
    net.inject(first, (SERVER, 123), (CLIENT, 123))
    net.run(0.1)
    assert client.engine.counters["samples"] == samples
    assert client.engine.counters["nts_badauth"] == 1


def test_rotated_server_secret_gives_a_nak_then_new_keys() -> None:
    """A server whose secret changed (section 8.2) NAKs our cookies; the client re-keys
    and goes on."""
    net, server, client = network()
    net.run(120)
    server.engine.nts_server = NtsServer(CookieKeys(bytes(range(32))), server.clock.now)
    net.run(600)
    counters = client.engine.counters
    assert counters["nts_nak_received"] >= 1 and counters["nts_rekey"] >= 1
    assert counters["nts_ke_done"] == 2
    assert server.engine.counters["nts_nak_sent"] >= 1
    assert association(client).reach & 1


def test_naks_count_only_with_our_identifier_and_our_origin() -> None:
    """An NTS NAK is not authenticated: it re-keys only when it echoes our request's unique
    identifier and answers our last transmit (a positive control last)."""
    net, _, client = network()
    net.run(100)
    assoc = association(client)
    silence = net.add_interceptor  # the server's replies stop: our request stays open
    silence(lambda data, s, d: None if s[0] == SERVER else data)
    net.run(64)
    request = packets(net, CLIENT, MODE_CLIENT)[-1]
    unique_id = {fld.word >> 16: fld.data[4:] for fld in parse(request).fields}[
        f.UNIQUE_IDENTIFIER]
    origin = parse(request).header.transmit
    assert assoc.xmt == origin
    from ntpauto.wire.packet import Header

    def nak(origin: int, unique_id: bytes) -> bytes:
        return Header(3, 4, MODE_SERVER, 0, 4, -20, 0, 0, b"NTSN", 0, origin, 1, 1).encode() \
            + f.field(f.UNIQUE_IDENTIFIER, unique_id)

    counters = client.engine.counters
    client.engine.receive(nak(origin, bytes(32)), (SERVER, 123), 0, net.reactor.seconds())
    assert counters["nts_badauth"] == 1 and counters["nts_nak_received"] == 0
    client.engine.receive(nak(origin + 1, unique_id), (SERVER, 123), 0, net.reactor.seconds())
    assert counters["bogusorg"] == 1 and counters["nts_nak_received"] == 0
    assert assoc.nts.rekey_due(net.reactor.seconds()) is None
    client.engine.receive(nak(origin, unique_id), (SERVER, 123), 0, net.reactor.seconds())
    assert counters["nts_nak_received"] == 1
    assert assoc.nts.rekey_due(net.reactor.seconds()).reason.startswith("NTS NAK")


def test_unreachable_ke_server_backs_off_and_sends_no_ntp() -> None:
    net, _, client = network()
    net.ke_reachable = lambda a, b: False
    net.run(16 + 32 + 64 + 1)
    counters = client.engine.counters
    assert counters["nts_ke_failed"] == 4 and counters["sent"] == 0
    assert client.engine.nts.last_error[association(client).associd] == "connection refused"
    net.ke_reachable = lambda a, b: True
    net.run(200)
    assert counters["nts_ke_done"] == 1 and association(client).reach


def test_a_silent_server_uses_up_the_jar_then_a_new_exchange_starts() -> None:
    net, _, client = network()
    net.run(60)
    cut = [True]
    net.add_interceptor(lambda data, s, d: None if cut[0] and s[0] == SERVER else data)
    net.run(20 * 64)
    counters = client.engine.counters
    assert counters["nts_rekey"] >= 1 and counters["nts_ke_done"] >= 2
    cut[0] = False
    net.run(300)
    assert association(client).reach & 1


def test_cookies_outlive_master_key_rotation() -> None:
    """Rotating every ten minutes: each reply brings cookies of the current key, so the
    client never falls behind; no NAK, one exchange."""
    net, server, client = network()
    server.engine.nts_server.cookie_keys.rotate = 600
    net.run(4 * 3600)
    counters = client.engine.counters
    assert counters["nts_nak_received"] == 0 and counters["nts_ke_done"] == 1
    assert association(client).reach == 0xFF


def test_a_farm_sharing_the_secret_serves_cookies_of_its_members() -> None:
    """The NTS-KE server names another host for NTP (server negotiation); that host shares
    the cookie secret and opens the cookies, so the client synchronises to it."""
    net = SimulatedNetwork(seed=5, latency=0.01)
    ke = net.add_host(SERVER, "localclock stratum 1\n", nts_server=True)
    member = net.add_host(OTHER, "localclock stratum 1\n")
    member.engine.nts_server = NtsServer(ke.engine.nts_server.cookie_keys, member.clock.now)
    client = net.add_host(CLIENT, NTS_CLIENT)

    def exchange(request):
        keys = SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(range(32)), bytes(range(1, 33)))
        cookies = tuple(ke.engine.nts_server.cookie_keys.seal(keys, ke.clock.now())
                        for _ in range(8))
        client.engine.nts.keyed(request.associd, KeResponse(15, cookies), keys, (OTHER, 123),
                                net.reactor.seconds())

    client.engine.nts.starter = exchange
    net.run(200)
    assoc = association(client)
    assert assoc.address == (OTHER, 123) and assoc.reach
    assert member.engine.counters["nts_served"] > 3 and ke.engine.counters["nts_served"] == 0


def test_nts_server_answers_plain_clients_too() -> None:
    """One port, old and new clients: a plain client of the NTS server synchronises."""
    net, server, _ = network()
    plain = net.add_host(OTHER, f"server {SERVER} iburst\n")
    net.run(200)
    assert association(plain).reach and plain.engine.counters["samples"] > 3
