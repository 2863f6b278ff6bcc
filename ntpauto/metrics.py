"""The engine's counters and state as labelled metrics, for Prometheus and for mode 6.

Sans-I/O: :class:`EngineCollector` is a ``prometheus_client`` custom collector that reads an
:class:`~ntpauto.engine.Engine` (its ``counters``, its associations and its Autokey responder)
into metric families at each scrape; ``prometheus_client`` writes the text exposition format
0.0.4 (:func:`exposition`) and :func:`mode6_variables` flattens the same families into
``name=value`` pairs for ntpq.  Nothing here counts: the counting happens where the packets
are handled (``Engine.counters``, ``Responder.requests`` and ``Responder.key_operations``)
and the tables below say what each engine counter means.
Association gauges are computed from ``engine.associations`` at collection time.
``docs/metrics.md`` describes every metric.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, GQ, IFF, LEAP, MV, SIGN
from ntpauto.autokey.status import Flag
from ntpauto.events import Event
from ntpauto.ntp.peer import MODE_NAMES
from ntpauto.wire.packet import MODE_BROADCAST

if TYPE_CHECKING:
    from ntpauto.engine import Engine
    from ntpauto.ntp.peer import Association

__all__ = [
    "CONTENT_TYPE",
    "DROP_REASONS",
    "EVENTS",
    "EngineCollector",
    "collect",
    "exposition",
    "mode6_variables",
    "registry",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The HTTP Content-Type of :func:`exposition` (``text/plain; version=0.0.4``)."""

PREFIX = "ntpauto_"

RX_MODES: Mapping[str, str] = {
    "rx_client": "client", "rx_server": "server", "rx_active": "active",
    "rx_passive": "passive", "rx_broadcast": "broadcast", "rx_control": "control",
    "rx_private": "private", "rx_mode0": "reserved", "rx_empty": "none",
}
"""Engine counter of the full receive path -> ``mode`` label (the wire mode, first octet & 7;
``none`` for an empty datagram).  Client requests the server's first stage answers are the
rest of ``received``."""

CLIENT_OUTCOMES: Mapping[str, str] = {"served": "served", "kodsent": "kod_sent"}
"""Engine counter -> ``outcome`` of client-mode requests (besides ``received``)."""

DROP_REASONS: Mapping[str, str] = {
    "badlength": "malformed: length, version, extension-field or MAC framing, source port 0",
    "restricted": "refused by restrict ignore, noserve or notrust",
    "limited": "over the rate limit of restrict limited (with kod, answered by a RATE kiss "
               "at most once per discard average interval)",
    "toomanyfields": "more than 2 extension fields (wire.packet.MAX_FIELDS)",
    "badauth": "authentication failed (dropped, or a request answered with a crypto-NAK)",
    "noassoc": "a server or passive reply matching no association",
    "declined": "may not mobilise an association (nopeer, enable auth, table full) or "
                "Autokey group mismatch",
    "badmode": "mode does not fit the association (e.g. a client packet to a client)",
    "bogusorg": "origin timestamp is not our last transmit (TEST2), or a stray crypto-NAK",
    "oldpkt": "duplicate transmit timestamp (TEST1)",
    "badxmt": "zero transmit timestamp (TEST3)",
    "unsync": "peer unsynchronised or stratum 16 (TEST6), or a kiss other than RATE/DENY",
    "baddist": "peer root distance or reference time out of bounds (TEST7)",
    "cryptonak": "crypto-NAK answering our packet (the Autokey association restarts)",
    "autokey_badfield": "malformed Autokey extension field",
    "autokey_protocol_error": "Autokey protocol violation (the association restarts when the "
                              "packet answers ours)",
    "autokey_sequence": "Autokey key ID sequence check failed (TEST8)",
    "autokey_nosample": "authentic Autokey reply with extension fields: no time sample",
    "bcast_not_assoc": "Autokey broadcast from a new server without an ASSOC response",
    "bcast_uncalibrated": "broadcast before the delay was calibrated",
    "bcast_early": "authentic broadcast sooner than the broadcast poll interval allows",
    "autokey_not_assoc": "symmetric Autokey packet without an association that is not an "
                         "ASSOC request (answered with a crypto-NAK)",
    "autokey_limited": "Autokey request with fields over the rate limit of restrict limited",
    "autokey_offload_busy": "identity request while the worker's job table was full",
}
"""Engine counter of a packet that gave no reply and no sample -> what it means.  The counter
name is the ``reason`` label (the names ntpd users know: badauth, oldpkt, bogusorg, ...)."""

EVENTS: Mapping[str, str] = {
    "kod": "kiss-o'-death received (RATE backs off, DENY/RSTR demobilise)",
    "steps": "clock steps",
    "panic": "offsets over the panic threshold (clock not set)",
    "demobilised": "associations demobilised",
    "autokey_resets": "Autokey associations restarted (refresh, crypto-NAK, error, step)",
    "kod_withheld": "rate-limited requests left without the RATE kiss: the source had one "
                    "within the discard average interval",
    "autokey_reset_limited": "restarts refused: one was made less than a poll interval ago",
    "autokey_refetch": "autokey values asked for again (the peer's key list changed)",
    "resync": "symmetric exchanges started over from origin 0 after three silent polls",
    "autokey_error_response": "client Autokey requests answered with an error response",
    "autokey_budget": "client Autokey requests left unanswered: the private-key budget was "
                      "spent",
    "autokey_amplification": "Autokey responses cut to the empty response (amplification "
                             "limit: the source has not completed an exchange)",
    "autokey_offloaded": "identity requests handed to the identity worker process",
    "autokey_offload_lost": "of those, unanswered: the worker ended first",
    "autokey_offload_expired": "of those, unanswered: the result came after the job timeout",
    "internal_error": "exceptions caught in the engine (each is logged)",
    "send_error": "datagrams the socket refused to send",
    "worker_restarts": "server worker processes started again after they ended",
}
"""Other engine counters -> what they count (``ntpauto_events_total{event}``).  Counters no
table names appear there too, under their own name."""

AUTOKEY_CHECKS: Mapping[str, str] = {
    f"autokey_{e.name.lower()}": e.name.lower() for e in Event if e is not Event.OK}
"""Engine counter of an Autokey value from a peer that failed a check -> ``event`` label
(the reference's XEVNT names)."""

NTS_OUTCOMES: Mapping[str, str] = {
    "nts_served": "NTS requests answered with new cookies (the reply as long as the request)",
    "nts_cookies_cut": "NTS requests answered with fewer cookies than asked, so that the "
                       "reply is no longer than the request",
    "nts_nak_sent": "NTS NAKs sent: a cookie we cannot open (unknown or expired master key) "
                    "or an authenticator that does not verify",
    "nts_badfield": "NTS requests with malformed NTS fields (no reply)",
    "nts_ke_served": "NTS-KE requests answered with keys and eight cookies",
    "nts_ke_refused": "NTS-KE requests answered with an Error record (bad request)",
    "nts_ke_dropped": "NTS-KE connections closed unanswered (no ntske/1 over TLS 1.3, no "
                      "complete request in time, TLS failure)",
    "nts_ke_busy": "NTS-KE connections refused: too many open",
    "nts_ke_restricted": "NTS-KE connections refused by restrict ignore or noserve",
    "nts_ke_started": "NTS-KE exchanges started by our NTS associations",
    "nts_ke_done": "of those, exchanges that gave keys and cookies",
    "nts_ke_failed": "of those, exchanges that failed (each retried after a back-off)",
    "nts_rekey": "NTS associations that needed new keys (no cookie left, NTS NAK, refresh)",
    "nts_badauth": "replies to NTS associations that failed the NTS check (dropped)",
    "nts_nak_received": "NTS NAKs answering our request (the association re-keys unless an "
                        "authentic reply comes)",
}
"""NTS engine counter -> what it counts (``ntpauto_nts_total{outcome}``, the counter name as
label)."""

OTHER_COUNTERS = frozenset({"received", "sent", "samples", "kernel_drops", *RX_MODES})

REQUEST_TYPES: Mapping[int, str] = {
    ASSOC: "assoc", CERT: "cert", COOK: "cookie", AUTO: "auto", LEAP: "leap", SIGN: "sign",
    IFF: "iff", GQ: "gq", MV: "mv"}
"""Autokey field code -> ``type`` label; any other code (NULL, plugin schemes) is ``other``."""

KEY_OPERATIONS = ("signature", "keylist_signature", "certificate_signature",
                  "cookie_encryption", "identity_response")

AUTOKEY_FLAGS = (Flag.CERT, Flag.VRFY, Flag.PROV, Flag.COOK, Flag.AUTO, Flag.SIGN, Flag.LEAP)
SELECTION = ("system_peer", "candidate", "rejected", "no_sample", "noselect")
ASSOCIATION_MODES = ("client", "active", "passive", "broadcast", "bclient", "refclock")

# -- collection -----------------------------------------------------------------------------


def _counter(name: str, help_text: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help_text, labels=labels)


def _gauge(name: str, help_text: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help_text, labels=labels)


class EngineCollector(Collector):
    """A ``prometheus_client`` collector over ``engine``: every scrape reads its counters,
    associations and Autokey responder afresh (families in a fixed order, zeros included).
    Register it on any ``CollectorRegistry`` (:func:`registry` makes one of its own)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        """The metric families of the engine now."""
        yield from _packets(self.engine.counters)
        yield GaugeMetricFamily(PREFIX + "server_processes",
                                "Processes answering client requests (workers).",
                                value=self.engine.server_processes)
        yield from _associations(self.engine)
        if self.engine.autokey is not None:
            yield from _autokey(self.engine)
        if self.engine.nts_server is not None or any(
                a.nts is not None for a in self.engine.associations.values()):
            yield from _nts(self.engine)

    def describe(self) -> list[Metric]:
        """Nothing: the families depend on the engine (Autokey or not, unknown counters), so
        the registry does not check their names against other collectors'."""
        return []


def registry(engine: Engine) -> CollectorRegistry:
    """A registry of its own holding only ``engine``'s collector (no process metrics)."""
    result = CollectorRegistry(auto_describe=False)
    result.register(EngineCollector(engine))
    return result


def collect(engine: Engine) -> list[Metric]:
    """Every metric family of ``engine`` now."""
    return list(EngineCollector(engine).collect())


def exposition(engine: Engine) -> bytes:
    """The Prometheus text exposition (format 0.0.4, :data:`CONTENT_TYPE`) of ``engine``."""
    return generate_latest(registry(engine))


def _packets(counters: Mapping[str, int]) -> Iterator[Metric]:
    family = _counter("packets_total", "NTP packets received, by mode and outcome.",
                      "mode", "outcome")
    received = counters.get("received", 0)
    full_path = sum(counters.get(c, 0) for c in RX_MODES)
    client = received - full_path + counters.get("rx_client", 0)
    for counter, mode in RX_MODES.items():
        family.add_metric([mode, "received"],
                          client if mode == "client" else counters.get(counter, 0))
    for counter, outcome in CLIENT_OUTCOMES.items():
        family.add_metric(["client", outcome], counters.get(counter, 0))
    yield family
    yield CounterMetricFamily(
        PREFIX + "packets_sent_total",
        "Packets sent by associations (polls, symmetric and broadcast).",
        value=counters.get("sent", 0))
    family = _counter("packets_dropped_total",
                      "Packets not used (no reply, no time sample), by reason.", "reason")
    for reason in DROP_REASONS:
        family.add_metric([reason], counters.get(reason, 0))
    yield family
    yield CounterMetricFamily(
        PREFIX + "kernel_drops_total",
        "Datagrams the kernel dropped at our sockets (receive buffer full).",
        value=counters.get("kernel_drops", 0))
    yield CounterMetricFamily(PREFIX + "samples_total",
                              "Time samples entered into clock filters.",
                              value=counters.get("samples", 0))
    known = DROP_REASONS.keys() | EVENTS.keys() | CLIENT_OUTCOMES.keys() | OTHER_COUNTERS \
        | AUTOKEY_CHECKS.keys() | NTS_OUTCOMES.keys()
    family = _counter("events_total", "Other engine events, by event.", "event")
    for event in [*EVENTS, *sorted(k for k in counters if k not in known)]:
        family.add_metric([event], counters.get(event, 0))
    yield family


def _selection(engine: Engine, a: Association) -> str:
    """The association's clock selection status (see SELECTION)."""
    if a.noselect or a.hmode == MODE_BROADCAST:
        return "noselect"
    if a.associd == engine.sys.peer:
        return "system_peer"
    if not a.has_sample:
        return "no_sample"
    if a.peer_flash or (a.autokey is not None and not a.autokey.state.proventic):
        return "rejected"
    return "candidate"


def _associations(engine: Engine) -> Iterator[Metric]:
    reach: dict[tuple[str, str], int] = {
        (m, r): 0 for m in ASSOCIATION_MODES for r in ("reachable", "unreachable")}
    selection = dict.fromkeys(SELECTION, 0)
    for a in engine.associations.values():
        mode = "refclock" if a.is_refclock else MODE_NAMES.get(a.hmode, str(a.hmode))
        key = (mode, "reachable" if a.reach else "unreachable")
        reach[key] = reach.get(key, 0) + 1
        selection[_selection(engine, a)] += 1
    family = _gauge("associations", "Associations, by mode and whether the peer is reachable.",
                    "mode", "reach")
    for (mode, state), value in reach.items():
        family.add_metric([mode, state], value)
    yield family
    family = _gauge("associations_selection",
                    "Associations by clock selection status (each in one status).", "status")
    for status, value in selection.items():
        family.add_metric([status], value)
    yield family


def _autokey(engine: Engine) -> Iterator[Metric]:
    responder = engine.autokey.responder  # type: ignore[union-attr]
    requests: dict[tuple[str, str], int] = {
        (t, o): 0 for t in (*REQUEST_TYPES.values(), "other") for o in ("response", "error")}
    for (code, error), count in responder.requests.items():
        key = (REQUEST_TYPES.get(code, "other"), "error" if error else "response")
        requests[key] += count
    family = _counter("autokey_requests_total",
                      "Autokey requests answered, by message type and outcome.",
                      "type", "outcome")
    for (kind, outcome), value in requests.items():
        family.add_metric([kind, outcome], value)
    yield family
    operations = responder.key_operations
    family = _counter("autokey_key_operations_total",
                      "Public-key operations made for Autokey, by operation.", "operation")
    for operation in [*KEY_OPERATIONS, *sorted(set(operations) - set(KEY_OPERATIONS))]:
        family.add_metric([operation], operations.get(operation, 0))
    yield family
    family = _counter("autokey_check_failures_total",
                      "Autokey values from peers that failed a check, by event.", "event")
    for counter, event in AUTOKEY_CHECKS.items():
        family.add_metric([event], engine.counters.get(counter, 0))
    yield family
    flags = dict.fromkeys(AUTOKEY_FLAGS, 0)
    total = 0
    for a in engine.associations.values():
        if a.autokey is None:
            continue
        total += 1
        status = a.autokey.state.status
        for flag in AUTOKEY_FLAGS:
            if status & flag:
                flags[flag] += 1
    yield GaugeMetricFamily(PREFIX + "autokey_associations", "Associations using Autokey.",
                            value=total)
    family = _gauge("autokey_association_flags",
                    "Autokey associations with each progress flag lit.", "flag")
    for flag, value in flags.items():
        family.add_metric([str(flag.name).lower()], value)
    yield family


def _nts(engine: Engine) -> Iterator[Metric]:
    family = _counter("nts_total", "NTS outcomes, server and client side, by outcome.",
                      "outcome")
    for outcome in NTS_OUTCOMES:
        family.add_metric([outcome], engine.counters.get(outcome, 0))
    yield family
    sessions = [a.nts for a in engine.associations.values() if a.nts is not None]
    yield GaugeMetricFamily(PREFIX + "nts_associations", "Associations using NTS.",
                            value=len(sessions))
    yield GaugeMetricFamily(PREFIX + "nts_cookies",
                            "NTS cookies held by our NTS associations.",
                            value=sum(len(s.cookies) for s in sessions))


# -- mode 6 ---------------------------------------------------------------------------------


def _mode6_value(value: float) -> str:
    return str(value) if isinstance(value, int) else floatToGoString(value)


def mode6_variables(engine: Engine) -> list[tuple[str, str]]:
    """The metrics as flat mode 6 variables (``packets_client_served``, ``"123"``): the
    sample name without ``ntpauto_`` and ``_total``, then the label values joined by ``_``."""
    variables = []
    for family in collect(engine):
        for sample in family.samples:
            name = sample.name.removeprefix(PREFIX).removesuffix("_total")
            labels = (re.sub(r"[^A-Za-z0-9_]", "_", v) for v in sample.labels.values())
            variables.append(("_".join([name, *labels]), _mode6_value(sample.value)))
    return variables
