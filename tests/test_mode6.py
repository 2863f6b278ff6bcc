"""Mode 6 (ntpq) through the engine: every opcode, fragments, variable lists, errors,
``noquery``, responses never answered and the malformed requests, each with its counter."""

from __future__ import annotations

import random
import struct

import pytest

from ntpauto import mode6
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.mode6_client import (
    ControlError,
    Response,
    parse_associations,
    parse_variables,
    peer_status,
    request,
)
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.timestamps import unix_to_ntp
from tests.test_engine_autokey import ALICE, EPOCH, host, server_dance

CLIENT = ("192.0.2.10", 40000)
T0 = 1000.0
PEER = "192.0.2.1"


def engine_for(text: str = "localclock stratum 1\n") -> Engine:
    clock = SimulatedClock(lambda: T0, epoch=1_795_000_000.0)
    engine = Engine(parse_config(text), clock)
    engine.start(T0)
    return engine


def send(engine: Engine, data: bytes, source=CLIENT, now: float = T0) -> list[bytes]:
    """Feed one datagram; the response datagrams (all addressed back to the source)."""
    out = engine.receive(data, source, unix_to_ntp(engine.clock.now()), now)
    assert all(d.address == source for d in out)
    return [d.data for d in out]


def ask(engine: Engine, opcode: int, associd: int = 0, data: bytes = b"", sequence: int = 7,
        now: float = T0) -> Response:
    """A request and its reassembled response (ControlError on an error response)."""
    response = Response(opcode, sequence)
    datagrams = send(engine, request(opcode, sequence, associd, data), now=now)
    assert datagrams
    done = [response.add(d) for d in datagrams]
    assert done[-1] and not any(done[:-1])
    return response


def names(response: Response) -> list[str]:
    return [name for name, _ in parse_variables(response.data)]


def values(response: Response) -> dict[str, str]:
    return dict(parse_variables(response.data))


def error_code(engine: Engine, opcode: int, associd: int = 0, data: bytes = b"") -> int:
    with pytest.raises(ControlError) as info:
        ask(engine, opcode, associd, data)
    return info.value.code


@pytest.fixture(scope="module")
def client_dance(vectors):
    """Brenda after the IFF client dance with alice (every flag lit, alice its peer)."""
    return server_dance(vectors, "iff-trad")


@pytest.fixture(scope="module")
def symmetric(vectors):
    """Carol after a symmetric dance with alice (autokey values received)."""
    net = SimulatedNetwork(seed=5, latency=0.01, epoch=EPOCH)
    net.add_host(ALICE, "localclock stratum 1\n", autokey=host(vectors, "sym", "alice"))
    carol = net.add_host("10.0.0.3", f"peer {ALICE} autokey iburst minpoll 4\n",
                         autokey=host(vectors, "sym", "carol"), offset=0.05)
    net.run(400)
    return net, carol


# -- opcodes ------------------------------------------------------------------------------


def test_unspec_returns_the_system_status_word_only():
    """Opcode 0: a 12-octet response with the system status word (leap none, source LOCAL,
    clock_sync after restart) and the request's sequence."""
    engine = engine_for()
    [datagram] = send(engine, request(mode6.OP_UNSPEC, 4242))
    header = mode6.ControlHeader.decode(datagram)
    assert len(datagram) == 12 and header.count == 0
    assert header.r_e_m_op == 0x80 and header.sequence == 4242 and header.mode == 6
    assert header.version == 2 and header.leap == 0
    assert header.status == 0x0525 == mode6.system_status(engine)
    assert engine.counters["control_answered"] == 1


def test_readstat_lists_associations_with_status_words():
    """READSTAT 0: (associd, status) pairs, sorted; the refclock is configured, reachable
    and the system peer (select 6), event sys_peer."""
    engine = engine_for("localclock stratum 1\nserver 192.0.2.1 iburst\n")
    response = ask(engine, mode6.OP_READSTAT)
    pairs = parse_associations(response.data)
    assert [a for a, _ in pairs] == sorted(engine.associations)
    statuses = {engine.associations[a].address[0]: peer_status(s) for a, s in pairs}
    local = statuses["127.127.1.0"]
    assert local.configured and local.reachable and local.condition == "sys.peer"
    assert local.auth == "none" and local.last_event == "sys_peer" and local.count == 3
    server = statuses[PEER]
    assert server.configured and not server.reachable and server.condition == "reject"
    assert response.status == mode6.system_status(engine)


def test_readstat_of_one_association_gives_its_default_variables():
    engine = engine_for()
    [associd] = engine.associations
    response = ask(engine, mode6.OP_READSTAT, associd)
    assert names(response)[:3] == ["srcadr", "srcport", "srchost"]
    assert values(response)["srchost"] == "LOCAL(0)"
    assert response.status == mode6.peer_status(engine, engine.associations[associd])


def test_readvar_system_default_list_in_ntpd_order():
    """rv 0: ntpd's default variables in its order and formats (ms, hex timestamps)."""
    engine = engine_for()
    response = ask(engine, mode6.OP_READVAR)
    assert names(response) == ["version", "processor", "system", "leap", "stratum",
                               "precision", "rootdelay", "rootdisp", "refid", "reftime",
                               "clock", "peer", "tc", "mintc", "offset", "frequency",
                               "sys_jitter", "clk_jitter", "clk_wander"]
    got = values(response)
    assert got["version"].startswith("ntpauto ") and got["stratum"] == "1"
    assert got["refid"] == "LOCL" and got["leap"] == "0"
    assert got["peer"] == str(engine.sys.peer)
    assert int(got["reftime"].split(".")[0], 16) == engine.sys.reftime >> 32
    assert b'version="ntpauto' in response.data and response.data.endswith(b"\r\n")


def test_readvar_variable_list_is_honoured_in_table_order():
    engine = engine_for()
    response = ask(engine, mode6.OP_READVAR, 0, b"peer, stratum,leap=2")
    assert names(response) == ["leap", "stratum", "peer"]


def test_unknown_variable_is_an_error():
    engine = engine_for()
    assert error_code(engine, mode6.OP_READVAR, 0, b"stratum,nosuch") == \
        mode6.CERR_UNKNOWNVAR
    [associd] = engine.associations
    assert error_code(engine, mode6.OP_READVAR, associd, b"srcadr,nosuch") == \
        mode6.CERR_UNKNOWNVAR
    assert engine.counters["control_unknownvar"] == 2


def test_bad_association_is_an_error():
    engine = engine_for()
    missing = next(i for i in range(1, 65536) if i not in engine.associations)
    for opcode in (mode6.OP_UNSPEC, mode6.OP_READSTAT, mode6.OP_READVAR):
        assert error_code(engine, opcode, missing) == mode6.CERR_BADASSOC
    assert engine.counters["control_badassoc"] == 3


def test_unprintable_variable_list_is_a_format_error():
    engine = engine_for()
    assert error_code(engine, mode6.OP_READVAR, 0, b"stra\x01tum") == mode6.CERR_BADFMT
    assert error_code(engine, mode6.OP_READVAR, 0, b"x" * 200) == mode6.CERR_BADFMT
    assert engine.counters["control_badfmt"] == 2


def test_sysstats_and_counters_by_name():
    """ss_* from the engine counters; any counter by name, all with ``counters``; neither
    in the default list."""
    engine = engine_for("restrict 192.0.2.99 ignore\nlocalclock stratum 1\n")
    send(engine, b"\x23" + b"\0" * 47, source=("192.0.2.99", 123))  # restricted
    send(engine, b"\x23" + b"\0" * 19)  # too short for NTP: badlength
    got = values(ask(engine, mode6.OP_READVAR, 0, b"ss_received,ss_restricted,ss_badformat,"
                                                  b"ss_uptime,restricted"))
    assert got["ss_restricted"] == "1" == got["restricted"]
    assert got["ss_badformat"] == "1"
    assert int(got["ss_received"]) == engine.counters["received"]  # with this request
    assert got["ss_uptime"] == "0"
    later = values(ask(engine, mode6.OP_READVAR, 0, b"ss_uptime", now=T0 + 90))
    assert later["ss_uptime"] == "90"
    everything = values(ask(engine, mode6.OP_READVAR, 0, b"counters"))
    assert everything["badlength"] == "1" and int(everything["control"]) >= 3
    assert "restricted" not in names(ask(engine, mode6.OP_READVAR))


def test_peer_variables_and_explicit_list():
    engine = engine_for("localclock stratum 1\nserver 192.0.2.1 iburst\n")
    [assoc] = [a for a in engine.associations.values() if not a.is_refclock]
    got = values(ask(engine, mode6.OP_READVAR, assoc.associd))
    assert got["srcadr"] == PEER and got["srcport"] == "123" and got["hmode"] == "3"
    assert got["reach"] == "0x0" and got["stratum"] == "16" and got["flash"] == "0x0"
    assert got["filtdisp"].split() == ["16000.00"] * 8
    assert "flags" not in got and "scheme" not in got
    listed = ask(engine, mode6.OP_READVAR, assoc.associd, b"hpoll,srcadr,reach")
    assert names(listed) == ["srcadr", "hpoll", "reach"]  # ntpd's table order


def test_readclock_of_the_local_clock_and_of_others():
    engine = engine_for("localclock stratum 1\nserver 192.0.2.1\n")
    local = next(a for a in engine.associations.values() if a.is_refclock)
    other = next(a for a in engine.associations.values() if not a.is_refclock)
    got = values(ask(engine, mode6.OP_READCLOCK, local.associd))
    assert got == {"device": "Undisciplined local clock", "stratum": "0", "refid": "LOCL"}
    assert values(ask(engine, mode6.OP_READCLOCK)) == got  # 0: the system peer's clock
    assert error_code(engine, mode6.OP_READCLOCK, other.associd) == mode6.CERR_BADASSOC


@pytest.mark.parametrize("opcode", [3, 5, 6, 8, 9, 11, 31])
def test_write_opcodes_are_refused(opcode):
    """WRITEVAR, WRITECLOCK, SETTRAP, CONFIGURE, SAVECONFIG, READ_ORDLIST_A, UNSETTRAP:
    CERR_PERMISSION, as ntpd answers unauthenticated writes; nothing changes."""
    engine = engine_for()
    before = engine.sys
    assert error_code(engine, opcode, 0, b"leap=3") == mode6.CERR_PERMISSION
    assert engine.sys is before and engine.counters["control_denied"] == 1


@pytest.mark.parametrize("opcode", [10, 12])
def test_mru_list_is_not_kept(opcode):
    engine = engine_for()
    assert error_code(engine, opcode) == mode6.CERR_PERMISSION


@pytest.mark.parametrize("opcode", [7, 13, 20, 30])
def test_unknown_opcode(opcode):
    engine = engine_for()
    assert error_code(engine, opcode) == mode6.CERR_BADOP
    assert engine.counters["control_badop"] == 1 and engine.counters["control_errors"] == 1


def test_error_response_format():
    """An error: R and E bits, the code in the status high octet, no data, 12 octets."""
    engine = engine_for()
    [datagram] = send(engine, request(20, 99, 5))
    header = mode6.ControlHeader.decode(datagram)
    assert len(datagram) == 12
    assert (header.r_e_m_op, header.status, header.sequence, header.associd) == \
        (0xC0 | 20, mode6.CERR_BADOP << 8, 99, 5)


# -- Autokey ------------------------------------------------------------------------------


def test_autokey_system_variables(client_dance):
    """The host's Autokey variables close ``rv 0`` in interop.md 9 order: host, flags,
    digest, signature, update, then each cached certificate with its until."""
    net, alice, brenda, assoc = client_dance
    engine = brenda.engine
    response = ask(engine, mode6.OP_READVAR, now=net.reactor.seconds())
    pairs = parse_variables(response.data)
    tail = [n for n, _ in pairs[[n for n, _ in pairs].index("host"):]]
    certificates = len(engine.autokey.host.cache)
    assert tail == ["host", "flags", "digest", "signature", "update"] + \
        ["cert", "until"] * certificates
    got = dict(pairs)
    hostcreds = engine.autokey.host
    assert got["host"] == "brenda@alice" and got["flags"] == f"0x{hostcreds.status:x}"
    assert got["digest"] == "md5" and got["signature"] == "md5WithRSAEncryption"
    assert len(got["update"]) == 12 and got["update"].isdigit()
    certs = [v for n, v in pairs if n == "cert"]
    assert "alice@alice alice@alice 0x5" in certs
    assert any(c.startswith("brenda@alice alice@alice 0x") for c in certs)
    assert b'host="brenda@alice"' in response.data and b"flags=0x80003" in response.data


def test_autokey_peer_variables_and_extensions(client_dance):
    """Per association: host, flags (the association word), signature, ident; the
    ntpauto-only scheme and trail only on request.  Client mode receives no autokey values,
    so initsequence is absent."""
    net, alice, brenda, assoc = client_dance
    engine = brenda.engine
    response = ask(engine, mode6.OP_READVAR, assoc.associd, now=net.reactor.seconds())
    got = values(response)
    assert got["flags"] == "0x87f23" and got["host"] == "alice@alice"
    assert got["signature"] == "md5WithRSAEncryption" and got["ident"] == "alice"
    assert names(response)[-4:] == ["host", "flags", "signature", "ident"]
    assert "initsequence" not in got and "scheme" not in got and "trail" not in got
    extra = values(ask(engine, mode6.OP_READVAR, assoc.associd, b"scheme,trail"))
    assert extra == {"scheme": "iff", "trail": "alice@alice alice@alice"}
    listing = ask(engine, mode6.OP_READSTAT, now=net.reactor.seconds())
    status = peer_status(dict(parse_associations(listing.data))[assoc.associd])
    assert status.auth == "ok" and status.condition == "sys.peer"


def test_autokey_values_of_a_symmetric_peer(symmetric):
    net, carol = symmetric
    [assoc] = carol.engine.associations.values()
    got = values(ask(carol.engine, mode6.OP_READVAR, assoc.associd, now=net.reactor.seconds()))
    value = assoc.autokey.state.autokey
    assert got["initsequence"] == str(value.seq) and got["initkey"] == f"0x{value.keyid:x}"
    assert len(got["timestamp"]) == 12
    assert got["hmode"] == "1" and got["pmode"] in ("1", "2")


# -- fragments ----------------------------------------------------------------------------


def test_long_responses_are_fragmented_and_reassemble(client_dance):
    """A response over 468 octets comes in fragments: More on all but the last, contiguous
    offsets, at most 468 data octets each, padded only to 32 bits; reassembled in any order
    (with duplicates) it is the same text."""
    net, alice, brenda, assoc = client_dance
    engine = brenda.engine
    datagrams = send(engine, request(mode6.OP_READVAR, 5, 0, b"sys_var_list,counters"),
                     now=net.reactor.seconds())
    datagrams += send(engine, request(mode6.OP_READVAR, 6), now=net.reactor.seconds())
    first = [d for d in datagrams if mode6.ControlHeader.decode(d).sequence == 5]
    assert len(first) >= 2
    offset = 0
    for index, datagram in enumerate(first):
        header = mode6.ControlHeader.decode(datagram)
        assert header.offset == offset and header.count <= mode6.MAX_DATA
        assert bool(header.r_e_m_op & mode6.MORE) == (index < len(first) - 1)
        assert len(datagram) == 12 + header.count + (-header.count % 4)
        offset += header.count
    in_order = Response(mode6.OP_READVAR, 5)
    assert [in_order.add(d) for d in first][-1]
    shuffled = first + first[:1]
    random.Random(3).shuffle(shuffled)
    other = Response(mode6.OP_READVAR, 5)
    for datagram in shuffled + datagrams:  # + another request's response: ignored
        other.add(datagram)
    assert other.complete and other.data == in_order.data
    assert len(in_order.data) == offset
    got = values(in_order)
    assert "sys_var_list" in got and got["control"] == str(engine.counters["control"] - 1)


def test_text_lines_are_wrapped_like_ntpd():
    engine = engine_for()
    text = ask(engine, mode6.OP_READVAR).data.decode()
    lines = text.split("\r\n")
    assert lines[-1] == "" and all(len(line) < 72 + 1 for line in lines)


# -- what is never answered ---------------------------------------------------------------


def test_noquery_gets_no_answer():
    engine = engine_for("restrict default noquery\nlocalclock stratum 1\n")
    assert send(engine, request(mode6.OP_READVAR, 1)) == []
    assert engine.counters["control_noquery"] == 1
    assert engine.counters["control_answered"] == 0


@pytest.mark.parametrize("bits", [0x80, 0xC0, 0xA0])
def test_responses_are_never_answered(bits):
    """R set (a response, an error response, a fragment of one): dropped, no ping-pong."""
    engine = engine_for()
    packet = bytearray(request(mode6.OP_READVAR, 1))
    packet[1] |= bits
    assert send(engine, bytes(packet)) == []
    assert engine.counters["control_response"] == 1


def test_two_engines_never_ping_pong():
    """An engine's response fed to another engine is not answered."""
    a, b = engine_for(), engine_for()
    [response] = send(a, request(mode6.OP_READSTAT, 1))
    assert send(b, response) == [] and b.counters["control_response"] == 1


def malformed(kind: str) -> bytes:
    if kind == "control_tooshort":
        return bytes([0x16, 2, 0, 1])
    if kind == "control_toolong":
        return request(mode6.OP_READVAR, 1, 0, b"x" * 468) + b"\0" * 28
    if kind == "control_badlength":
        return request(mode6.OP_READVAR, 1, 0, b"leap") + b"\0\0"
    if kind == "control_badcount":
        data = bytearray(request(mode6.OP_READVAR, 1, 0, b"leap"))
        struct.pack_into("!H", data, 10, 9)
        return bytes(data)
    if kind == "control_badoffset":
        data = bytearray(request(mode6.OP_READVAR, 1))
        struct.pack_into("!H", data, 8, 4)
        return bytes(data)
    if kind == "control_badflags":
        data = bytearray(request(mode6.OP_READVAR, 1))
        data[1] |= mode6.MORE
        return bytes(data)
    if kind == "control_badversion":
        return bytes([0x06]) + request(mode6.OP_READVAR, 1)[1:]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["control_tooshort", "control_toolong", "control_badlength",
                                  "control_badcount", "control_badoffset", "control_badflags",
                                  "control_badversion"])
def test_malformed_requests_are_dropped_and_counted(kind):
    engine = engine_for()
    assert send(engine, malformed(kind)) == []
    assert engine.counters[kind] == 1
    assert engine.counters["control"] == 1 and engine.counters["control_answered"] == 0


def test_largest_request_is_accepted():
    """468 data octets plus a key ID and a 20-octet MAC: 504 octets, still answered (with
    CERR_BADFMT here: the list is not a list of names)."""
    engine = engine_for()
    packet = request(mode6.OP_READVAR, 1, 0, b"x" * 468) + b"\0" * 24
    assert len(packet) == mode6.MAX_REQUEST
    [answer] = send(engine, packet)
    assert mode6.ControlHeader.decode(answer).status >> 8 == mode6.CERR_BADFMT


def test_mode_7_is_dropped_and_counted():
    engine = engine_for()
    assert send(engine, bytes([0x17, 0x00, 0x03, 0x2a]) + b"\0" * 44) == []
    assert engine.counters["mode7"] == 1 and engine.counters["control"] == 0


def test_malformed_ntp_packets_are_handled_as_before():
    """Other modes still go through the NTP parser: a short client packet is badlength."""
    engine = engine_for()
    assert send(engine, b"\x23" + b"\0" * 19) == []
    assert send(engine, b"") == []
    assert engine.counters["badlength"] == 2 and engine.counters["control"] == 0


# -- the client helpers -------------------------------------------------------------------


def test_parse_variables_handles_quotes_and_line_breaks():
    data = b'a=1, b="x, y", c=,\r\nd="", e, f= 2 \r\n\0\0'
    assert parse_variables(data) == [("a", "1"), ("b", "x, y"), ("c", ""), ("d", ""),
                                     ("e", ""), ("f", "2")]


def test_response_ignores_foreign_datagrams_and_raises_errors():
    engine = engine_for()
    response = Response(mode6.OP_READVAR, 2)
    [other] = send(engine, request(mode6.OP_READVAR, 3))
    assert not response.add(other) and not response.add(b"short")
    [wrong_opcode] = send(engine, request(mode6.OP_READSTAT, 2))
    assert not response.add(wrong_opcode)
    [error] = send(engine, request(mode6.OP_READVAR, 2, 0, b"nosuch"))
    with pytest.raises(ControlError, match="unknown variable"):
        response.add(error)


def test_response_with_a_hole_is_not_complete():
    engine = engine_for()
    datagrams = send(engine, request(mode6.OP_READVAR, 4, 0, b"sys_var_list,counters"))
    assert len(datagrams) >= 2
    response = Response(mode6.OP_READVAR, 4)
    assert not response.add(datagrams[-1])
    assert not response.complete


def test_metrics_are_readable_by_name_only_when_asked():
    """``metrics`` gives every metric of ntpauto.metrics as a flat variable; one metric by
    its name; none in the default list."""
    from ntpauto import metrics

    engine = engine_for()
    expected = metrics.mode6_variables(engine)
    assert expected
    got = parse_variables(ask(engine, mode6.OP_READVAR, 0, b"metrics").data)
    # The request itself adds control counters, hence metrics: the earlier ones are all there.
    assert {name for name, _ in expected} <= {name for name, _ in got}
    name = next(n for n, _ in expected if n not in engine.counters)
    assert names(ask(engine, mode6.OP_READVAR, 0, name.encode())) == [name]
    assert name not in names(ask(engine, mode6.OP_READVAR))
