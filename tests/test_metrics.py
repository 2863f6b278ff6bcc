"""Tests for ntpauto.metrics (collection and the exposition format), ntpauto.statsweb (the
/metrics resource) and the ``statsaddress`` directive."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from twisted.logger import capturedLogs
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from ntpauto.autokey.fields import Field
from ntpauto.autokey.host import load_host
from ntpauto.cli.query import query
from ntpauto.config import ConfigError, default_config, parse_config
from ntpauto.engine import RX_MODE_COUNTERS, Engine
from ntpauto.metrics import CONTENT_TYPE, RX_MODES, EngineCollector, exposition, mode6_variables
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from ntpauto.statsweb import stats_resource
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import Header
from ntpauto.wire.timestamps import unix_to_ntp
from tests.test_service import in_thread, stop

CLIENT = ("192.0.2.10", 40000)
T0 = 1000.0
EPOCH = 1_795_460_000.0  # inside the vectors' certificate validity (test_engine_autokey.py)


def engine_for(text: str) -> Engine:
    """A started engine whose simulated clock reads true time."""
    engine = Engine(parse_config(text), SimulatedClock(lambda: T0, epoch=1_795_000_000.0))
    engine.start(T0)
    return engine


def packet(mode: int = 3, version: int = 4, transmit: int = 0xEEAE_0000_1234_5678) -> bytes:
    return Header(0, version, mode, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit).encode()


def receive(engine: Engine, data: bytes, source: tuple[str, int] = CLIENT) -> list[Any]:
    return engine.receive(data, source, unix_to_ntp(engine.clock.now()), T0)


def families(text: str) -> dict[str, Any]:
    """The metric families of an exposition, read by prometheus_client's own parser (the
    oracle: what a Prometheus server reads), each family once."""
    parsed = list(text_string_to_metric_families(text))
    names = [family.name for family in parsed]
    assert len(names) == len(set(names)), names
    return {family.name: family for family in parsed}


def scrape(engine: Engine) -> list[Sample]:
    """Every sample of ``engine``'s exposition, as the parser reads it."""
    return [s for family in families(exposition(engine).decode()).values()
            for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of ``name`` with exactly ``labels``."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def packets(samples: list[Sample], mode: str, outcome: str = "received") -> float:
    return value(samples, "ntpauto_packets_total", mode=mode, outcome=outcome)


def dropped(samples: list[Sample], reason: str) -> float:
    return value(samples, "ntpauto_packets_dropped_total", reason=reason)


# -- the metrics of a driven engine ----------------------------------------------------------


def test_served_client_request():
    """A client request the fast path answers counts as a client packet received and served,
    and nothing else moves."""
    engine = engine_for("localclock stratum 1\n")
    assert len(receive(engine, packet())) == 1
    samples = scrape(engine)
    assert packets(samples, "client") == 1
    assert packets(samples, "client", "served") == 1
    assert sum(s.value for s in samples if s.name == "ntpauto_packets_total") == 2
    assert sum(s.value for s in samples if s.name == "ntpauto_packets_dropped_total") == 0


@pytest.mark.parametrize("data, mode", [
    (packet()[:20], "client"),  # mode 3 in the first octet, but too short
    (packet(mode=1) + b"\x01\x02\x03", "active"),  # trailing octets
    (b"", "none"),
])
def test_malformed_packet_raises_its_drop_reason(data, mode):
    """A malformed datagram is dropped with reason badlength, counted under its wire mode."""
    engine = engine_for("localclock stratum 1\n")
    assert receive(engine, data) == []
    samples = scrape(engine)
    assert dropped(samples, "badlength") == 1
    assert packets(samples, mode) == 1
    assert packets(samples, "client", "served") == 0


def test_modes_and_drop_reasons_of_the_full_path():
    """Packets of each mode are counted by mode; their drops by reason: a server reply with
    no association (noassoc), a broadcast without broadcastclient (declined), mode 0 from
    version 4 (badlength), a restricted client (restricted, counted as a client packet)."""
    engine = engine_for("localclock stratum 1\nrestrict 192.0.2.99 noserve\n")
    receive(engine, packet(mode=4))
    receive(engine, packet(mode=5))
    receive(engine, packet(mode=0))
    receive(engine, packet(), ("192.0.2.99", 123))
    samples = scrape(engine)
    assert (packets(samples, "server"), packets(samples, "broadcast"),
            packets(samples, "reserved"), packets(samples, "client")) == (1, 1, 1, 1)
    assert (dropped(samples, "noassoc"), dropped(samples, "declined"),
            dropped(samples, "badlength"), dropped(samples, "restricted")) == (1, 1, 1, 1)
    assert packets(samples, "client", "served") == 0


def test_rate_limited_client_gets_a_kiss():
    """restrict limited kod: the second request within the minimum interval is dropped
    (limited) and answered with a RATE kiss (client outcome kod_sent)."""
    engine = engine_for("localclock stratum 1\nrestrict default limited kod\n")
    receive(engine, packet())
    receive(engine, packet(transmit=0xEEAE_0000_1234_9999))
    samples = scrape(engine)
    assert packets(samples, "client") == 2
    assert packets(samples, "client", "served") == 1
    assert packets(samples, "client", "kod_sent") == 1
    assert dropped(samples, "limited") == 1


def test_unknown_counters_are_events():
    """A counter no table names (e.g. from a newer engine) is not lost: it is an event."""
    engine = engine_for("localclock stratum 1\n")
    engine.counters["something_new"] += 3
    samples = scrape(engine)
    assert value(samples, "ntpauto_events_total", event="something_new") == 3
    assert value(samples, "ntpauto_events_total", event="steps") == 0


def test_kernel_drops_have_their_own_metric():
    """The datagrams the kernel dropped at our sockets (counted by the port, never seen by
    the engine) are a metric of their own, in mode 6 too, and not an event."""
    engine = engine_for("localclock stratum 1\n")
    assert value(scrape(engine), "ntpauto_kernel_drops_total") == 0
    engine.counters["kernel_drops"] += 12
    samples = scrape(engine)
    assert value(samples, "ntpauto_kernel_drops_total") == 12
    assert ("kernel_drops", "12") in mode6_variables(engine)
    assert not [s for s in samples if s.labels.get("event") == "kernel_drops"]


def test_every_wire_mode_counter_has_a_label():
    """Each engine receive-mode counter maps onto a mode label (no packet goes uncounted)."""
    assert set(RX_MODE_COUNTERS) | {"rx_empty"} == set(RX_MODES)


def test_associations_by_state():
    """A client synchronised to one server and polling one that never answers: the gauges
    count both by mode and reach, and the selection status of each."""
    net = SimulatedNetwork(seed=1, latency=0.01)
    net.add_host("10.0.0.1", "localclock stratum 1\n")
    client = net.add_host("10.0.0.2", "server 10.0.0.1 iburst minpoll 4\n"
                                      "server 10.0.0.9 minpoll 4\n")
    net.run(120)
    samples = scrape(client.engine)
    assert value(samples, "ntpauto_associations", mode="client", reach="reachable") == 1
    assert value(samples, "ntpauto_associations", mode="client", reach="unreachable") == 1
    assert value(samples, "ntpauto_associations_selection", status="system_peer") == 1
    assert value(samples, "ntpauto_associations_selection", status="no_sample") == 1
    assert packets(samples, "server") == value(samples, "ntpauto_samples_total") > 0
    assert value(samples, "ntpauto_packets_sent_total") > packets(samples, "server")
    assert not any(s.name.startswith("ntpauto_autokey") for s in samples)


def _host(vectors: Path, name: str, password: str) -> Any:
    return load_host(vectors / "keys" / "iff-trad" / name, host=name, password=password)


def test_autokey_dance_counts_requests_and_key_operations(vectors):
    """Brenda runs the IFF client dance with alice: alice's responder counts one answer per
    request type and the private-key work behind them; brenda's association has every
    progress flag lit."""
    net = SimulatedNetwork(seed=1, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host("10.0.0.1", "localclock stratum 1\n",
                         autokey=_host(vectors, "alice", "alicepw"))
    brenda = net.add_host("10.0.0.2", "server 10.0.0.1 autokey ident alice iburst minpoll 4\n",
                          autokey=_host(vectors, "brenda", "brendapw"), offset=0.05)
    net.run(300)
    served = scrape(alice.engine)
    for kind in ("assoc", "cert", "cookie", "sign", "iff", "leap"):
        assert value(served, "ntpauto_autokey_requests_total", type=kind,
                     outcome="response") >= 1, kind
    for kind in ("auto", "gq", "mv", "other"):
        assert value(served, "ntpauto_autokey_requests_total", type=kind,
                     outcome="response") == 0, kind
    assert sum(s.value for s in served if s.name == "ntpauto_autokey_requests_total"
               and s.labels["outcome"] == "error") == 0

    def operations(name: str) -> float:
        return value(served, "ntpauto_autokey_key_operations_total", operation=name)

    cookies = value(served, "ntpauto_autokey_requests_total", type="cookie",
                    outcome="response")
    signs = value(served, "ntpauto_autokey_requests_total", type="sign", outcome="response")
    identities = value(served, "ntpauto_autokey_requests_total", type="iff",
                       outcome="response")
    assert operations("cookie_encryption") == cookies
    assert operations("certificate_signature") == signs
    assert operations("identity_response") == identities
    # COOK, SIGN and IFF responses are signed when made (the clock is synchronised).
    assert operations("signature") == cookies + signs + identities
    # Every request is answered: served, or cut to the empty response while the source
    # had not yet echoed one of our replies (the amplification limit).
    assert packets(served, "client", "served") + value(
        served, "ntpauto_events_total", event="autokey_amplification") \
        == packets(served, "client") > 0

    client = scrape(brenda.engine)
    assert value(client, "ntpauto_autokey_associations") == 1
    for flag in ("cert", "vrfy", "prov", "cook", "auto", "sign", "leap"):
        assert value(client, "ntpauto_autokey_association_flags", flag=flag) == 1, flag
    # A client's autokey values go to nobody: its key lists are never signed.
    assert value(client, "ntpauto_autokey_key_operations_total",
                 operation="keylist_signature") == 0
    assert value(client, "ntpauto_associations_selection", status="system_peer") == 1
    assert dropped(client, "autokey_nosample") > 0  # replies carrying fields


def test_error_responses_by_type(vectors):
    """A request the responder cannot answer (an unknown code, an AUTO for no association)
    is an error response of its type."""
    engine = Engine(parse_config("localclock stratum 1\n"),
                    SimulatedClock(lambda: T0, epoch=EPOCH))
    from ntpauto.autokey.serving import AutokeyNode

    engine.autokey = AutokeyNode(_host(vectors, "alice", "alicepw"))
    responder = engine.autokey.responder
    for code in (4, 42):
        response = responder.respond(Field.short_form(code, 7), packet_mode=3, now=0)
        assert response is not None and response.error
    samples = scrape(engine)
    assert value(samples, "ntpauto_autokey_requests_total", type="auto", outcome="error") == 1
    assert value(samples, "ntpauto_autokey_requests_total", type="other", outcome="error") == 1


# -- the exposition format -------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def docs_example() -> dict[str, Any]:
    """The families of docs/metrics.md's example scrape, read by the parser."""
    text = DOCS.read_text()
    block = text.split("## An example scrape", 1)[1].split("```text\n", 1)[1].split("```")[0]
    return families(block)


def autokey_server() -> Engine:
    """An engine with Autokey credentials (every family is present)."""
    from ntpauto.autokey.serving import AutokeyNode

    engine = engine_for("localclock stratum 1\n")
    engine.autokey = AutokeyNode(_host(Path(__file__).parent / "vectors", "alice", "alicepw"))
    return engine


def test_exposition_matches_the_documented_families():
    """Every family of an Autokey engine's exposition is the documented one: same name, type,
    help text and labels (a dashboard built on the docs keeps working), and no other."""
    documented = docs_example()
    exposed = families(exposition(autokey_server()).decode())
    assert set(exposed) == set(documented)
    for name, family in exposed.items():
        doc = documented[name]
        assert (family.type, family.documentation) == (doc.type, doc.documentation), name
        assert {frozenset(s.labels) for s in family.samples} == {
            frozenset(s.labels) for s in doc.samples}, name
        assert {s.name for s in family.samples} == {s.name for s in doc.samples}, name
        # Every label value the docs show exists (zeros included from the first scrape).
        assert {frozenset(s.labels.items()) for s in doc.samples} <= {
            frozenset(s.labels.items()) for s in family.samples}, name


def test_counters_are_counters_and_end_in_total():
    """Counter samples are named ``<family>_total``, gauges never; no ``_created`` samples
    (the engine's counters have no creation time of their own)."""
    for family in families(exposition(autokey_server()).decode()).values():
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name == family.name + "_total"
            else:
                assert family.type == "gauge" and sample.name == family.name


def test_exposition_of_a_driven_engine():
    """What a scraper reads equals the engine's counters, through the real writer and
    parser."""
    engine = engine_for("localclock stratum 1\n")
    receive(engine, packet())
    engine.counters["something_new"] += 7
    parsed = families(exposition(engine).decode())
    assert parsed["ntpauto_packets"].type == "counter"
    assert parsed["ntpauto_associations"].type == "gauge"
    samples = [s for f in parsed.values() for s in f.samples]
    assert packets(samples, "client", "served") == 1
    assert value(samples, "ntpauto_events_total", event="something_new") == 7
    assert not any(name.startswith("ntpauto_autokey") for name in parsed)


def test_collector_on_a_registry_of_ones_own():
    """The collector is an ordinary prometheus_client collector: registered next to other
    metrics, each scrape reads the engine afresh."""
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    engine = engine_for("localclock stratum 1\n")
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    Counter("app_things", "Things of the embedding application.", registry=registry).inc(2)
    before = families(generate_latest(registry).decode())
    receive(engine, packet())
    after = families(generate_latest(registry).decode())
    assert before["app_things"].samples[0].value == 2
    assert value(before["ntpauto_packets"].samples, "ntpauto_packets_total", mode="client",
                 outcome="served") == 0
    assert value(after["ntpauto_packets"].samples, "ntpauto_packets_total", mode="client",
                 outcome="served") == 1


def test_mode6_variables():
    """Flat names for ntpq: name without prefix and _total, label values appended; unique
    and safe for a mode 6 variable list."""
    engine = engine_for("localclock stratum 1\n")
    receive(engine, packet())
    receive(engine, b"\x23")
    variables = mode6_variables(engine)
    names = [name for name, _ in variables]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in names)
    found = dict(variables)
    assert found["packets_client_served"] == "1"
    assert found["packets_client_received"] == "2"
    assert found["packets_dropped_badlength"] == "1"
    assert found["associations_refclock_reachable"] == "1"
    assert found["associations_selection_system_peer"] == "1"


# -- the twisted.web resource ------------------------------------------------------------------


def render(resource: Any, path: bytes, method: bytes = b"GET") -> tuple[DummyRequest, bytes]:
    """Render ``path`` through ``resource`` as twisted.web's site would."""
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.method = method
    child = getChildForRequest(resource, request)
    body = child.render(request)
    if body is NOT_DONE_YET:  # written asynchronously (twisted.web.pages renders so)
        assert request.finished
        body = b"".join(request.written)
    return request, body


def test_resource_serves_metrics():
    """GET /metrics answers 200 with the 0.0.4 content type and the engine's metrics now."""
    engine = engine_for("localclock stratum 1\n")
    resource = stats_resource(engine)
    receive(engine, packet())
    request, body = render(resource, b"/metrics")
    assert request.responseCode in (None, 200)
    assert request.responseHeaders.getRawHeaders(b"content-type") == [CONTENT_TYPE.encode()]
    samples = families(body.decode("utf-8"))["ntpauto_packets"].samples
    assert packets(samples, "client", "served") == 1
    receive(engine, packet(transmit=1))
    _, body = render(resource, b"/metrics")
    assert packets(families(body.decode())["ntpauto_packets"].samples, "client", "served") == 2


@pytest.mark.parametrize("path", [b"/", b"/metric", b"/metrics/extra", b"/metrics/",
                                  b"/other/metrics"])
def test_resource_other_paths_are_404(path):
    request, body = render(stats_resource(engine_for("localclock stratum 1\n")), path)
    assert request.responseCode == 404
    assert b"ntpauto_" not in body


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE"])
def test_resource_is_get_only(method):
    """Other methods are refused with 405 Method Not Allowed and the Allow header."""
    request, body = render(stats_resource(engine_for("localclock stratum 1\n")), b"/metrics",
                           method)
    assert request.responseCode == 405
    assert request.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]
    assert b"ntpauto_" not in body


def test_resource_head():
    """HEAD gets the headers of GET (twisted.web drops the body)."""
    request, _ = render(stats_resource(engine_for("localclock stratum 1\n")), b"/metrics",
                        b"HEAD")
    assert request.responseCode in (None, 200)
    assert request.responseHeaders.getRawHeaders(b"content-type") == [CONTENT_TYPE.encode()]


# -- the statsaddress directive ----------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("9123", ("127.0.0.1", 9123)),
    ("127.0.0.1:9123", ("127.0.0.1", 9123)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:9123", ("::1", 9123)),
    ("[::]:9123", ("::", 9123)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_statsaddress(text, expected):
    assert parse_config(f"statsaddress {text}\n").statsaddress == expected


def test_statsaddress_absent_and_last_wins():
    assert parse_config("localclock\n").statsaddress is None
    assert default_config().statsaddress is None
    config = parse_config("statsaddress 1\nstatsaddress 2\n")
    assert config.statsaddress == ("127.0.0.1", 2)


@pytest.mark.parametrize("text, message", [
    ("", "statsaddress needs an argument"),
    ("9123 9124", "unexpected '9124'"),
    ("65536", "out of range 0..65535"),
    ("-1", "out of range 0..65535"),
    ("http", "must be an integer"),
    ("127.0.0.1:", "must be an integer"),
    ("::1:9123", "needs PORT, IPV4:PORT or [IPV6]:PORT"),
    ("[127.0.0.1]:9123", "needs PORT, IPV4:PORT or [IPV6]:PORT"),
    ("localhost:9123", "needs PORT, IPV4:PORT or [IPV6]:PORT"),
    ("[::1]", "needs PORT, IPV4:PORT or [IPV6]:PORT"),
])
def test_statsaddress_errors_name_file_and_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"localclock\nstatsaddress {text}\n", "/etc/ntpauto/ntp.conf")
    assert str(caught.value).startswith("/etc/ntpauto/ntp.conf:2: ")
    assert message in str(caught.value)


# -- the service, on loopback with the real reactor ---------------------------------------------


def fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_service_serves_metrics_over_http():
    """With ``statsaddress 127.0.0.1:0`` the service answers an NTP query and then an HTTP
    GET /metrics that shows it; a POST is 405 and other paths 404; stopping closes it."""
    config = attrs.evolve(default_config(port=0), statsaddress=("127.0.0.1", 0))
    service = NTPAutokeyService(config)
    service.startService()
    try:
        address = service.stats_port.getHost()
        assert address.host == "127.0.0.1" and address.port != 0
        in_thread(lambda: query(*service.address, timeout=5.0))
        base = f"http://127.0.0.1:{address.port}"
        status, content_type, body = in_thread(lambda: fetch(base + "/metrics"))
        with pytest.raises(urllib.error.HTTPError) as missing:
            in_thread(lambda: fetch(base + "/"))
        with pytest.raises(urllib.error.HTTPError) as posted:
            in_thread(lambda: urllib.request.urlopen(
                urllib.request.Request(base + "/metrics", data=b"x"), timeout=5.0))
    finally:
        stop(service)
    assert status == 200 and content_type == CONTENT_TYPE
    assert packets(families(body)["ntpauto_packets"].samples, "client", "served") == 1
    assert missing.value.code == 404 and posted.value.code == 405
    assert service.stats_port is None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", address.port)) != 0


def test_service_without_statsaddress_has_no_endpoint():
    service = NTPAutokeyService(default_config(port=0))
    service.startService()
    try:
        assert service.stats_port is None
    finally:
        stop(service)


def test_stats_port_in_use_is_logged_not_fatal():
    """An address already in use costs the metrics endpoint (logged), not the NTP service."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        config = attrs.evolve(default_config(port=0),
                              statsaddress=("127.0.0.1", taken.getsockname()[1]))
        service = NTPAutokeyService(config)
        with capturedLogs() as events:
            service.startService()
        try:
            assert service.stats_port is None and service.port is not None
            result = in_thread(lambda: query(*service.address, timeout=5.0))
        finally:
            stop(service)
    assert result["stratum"] == 1
    errors = [e for e in events if e.get("log_format", "").startswith("no metrics endpoint")]
    assert len(errors) == 1
