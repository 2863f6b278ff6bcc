"""The engine's counters and state as labelled metrics, for Prometheus and for mode 6.

Sans-I/O: :func:`collect` reads an :class:`~ntpauto.engine.Engine` (its ``counters``, its
associations and its Autokey responder) and returns :class:`Sample` values;
:func:`render_prometheus` turns them into the Prometheus text exposition format 0.0.4 and
:func:`mode6_variables` into flat ``name=value`` pairs for ntpq.  Nothing here counts: the
counting happens where the packets are handled (``Engine.counters``, ``Responder.requests``
and ``Responder.key_operations``) and the tables below say what each engine counter means.
Association gauges are computed from ``engine.associations`` at collection time.
``docs/metrics.md`` describes every metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import field, frozen

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
    "Sample",
    "collect",
    "mode6_variables",
    "render_prometheus",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The HTTP Content-Type of :func:`render_prometheus` output."""

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
}
"""Other engine counters -> what they count (``ntpauto_events_total{event}``).  Counters no
table names appear there too, under their own name."""

AUTOKEY_CHECKS: Mapping[str, str] = {
    f"autokey_{e.name.lower()}": e.name.lower() for e in Event if e is not Event.OK}
"""Engine counter of an Autokey value from a peer that failed a check -> ``event`` label
(the reference's XEVNT names)."""

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

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = ("counter", "gauge", "untyped")


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not _METRIC_NAME.fullmatch(value):
        raise ValueError(f"invalid metric name {value!r}")


def _check_labels(_instance: object, _attribute: object,
                  value: tuple[tuple[str, str], ...]) -> None:
    for name, _ in value:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")


def _check_type(_instance: object, _attribute: object, value: str) -> None:
    if value not in _TYPES:
        raise ValueError(f"invalid metric type {value!r}")


@frozen
class Sample:
    """One value of one metric: ``name`` (with ``_total`` for counters), its ``help`` text and
    ``type`` (counter or gauge), its ``labels`` as (name, value) pairs, and ``value``."""

    name: str = field(validator=_check_name)
    help: str
    type: str = field(validator=_check_type)
    labels: tuple[tuple[str, str], ...] = field(default=(), validator=_check_labels)
    value: float = 0


# -- collection -----------------------------------------------------------------------------


def collect(engine: Engine) -> list[Sample]:
    """Every metric of ``engine`` now (families in a fixed order, zeros included)."""
    out: list[Sample] = []
    _packets(engine.counters, out)
    _associations(engine, out)
    if engine.autokey is not None:
        _autokey(engine, out)
    return out


def _packets(counters: Mapping[str, int], out: list[Sample]) -> None:
    name, text = PREFIX + "packets_total", "NTP packets received, by mode and outcome."
    received = counters.get("received", 0)
    full_path = sum(counters.get(c, 0) for c in RX_MODES)
    client = received - full_path + counters.get("rx_client", 0)
    for counter, mode in RX_MODES.items():
        value = client if mode == "client" else counters.get(counter, 0)
        out.append(Sample(name, text, "counter", (("mode", mode), ("outcome", "received")),
                          value))
    for counter, outcome in CLIENT_OUTCOMES.items():
        out.append(Sample(name, text, "counter", (("mode", "client"), ("outcome", outcome)),
                          counters.get(counter, 0)))
    out.append(Sample(PREFIX + "packets_sent_total",
                      "Packets sent by associations (polls, symmetric and broadcast).",
                      "counter", (), counters.get("sent", 0)))
    for reason in DROP_REASONS:
        out.append(Sample(PREFIX + "packets_dropped_total",
                          "Packets not used (no reply, no time sample), by reason.",
                          "counter", (("reason", reason),), counters.get(reason, 0)))
    out.append(Sample(PREFIX + "kernel_drops_total",
                      "Datagrams the kernel dropped at our sockets (receive buffer full).",
                      "counter", (), counters.get("kernel_drops", 0)))
    out.append(Sample(PREFIX + "samples_total", "Time samples entered into clock filters.",
                      "counter", (), counters.get("samples", 0)))
    known = DROP_REASONS.keys() | EVENTS.keys() | CLIENT_OUTCOMES.keys() | OTHER_COUNTERS \
        | AUTOKEY_CHECKS.keys()
    events = list(EVENTS) + sorted(k for k in counters if k not in known)
    for event in events:
        out.append(Sample(PREFIX + "events_total", "Other engine events, by event.",
                          "counter", (("event", event),), counters.get(event, 0)))


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


def _associations(engine: Engine, out: list[Sample]) -> None:
    reach: dict[tuple[str, str], int] = {
        (m, r): 0 for m in ASSOCIATION_MODES for r in ("reachable", "unreachable")}
    selection = dict.fromkeys(SELECTION, 0)
    for a in engine.associations.values():
        mode = "refclock" if a.is_refclock else MODE_NAMES.get(a.hmode, str(a.hmode))
        key = (mode, "reachable" if a.reach else "unreachable")
        reach[key] = reach.get(key, 0) + 1
        selection[_selection(engine, a)] += 1
    for (mode, state), value in reach.items():
        out.append(Sample(PREFIX + "associations",
                          "Associations, by mode and whether the peer is reachable.",
                          "gauge", (("mode", mode), ("reach", state)), value))
    for status, value in selection.items():
        out.append(Sample(PREFIX + "associations_selection",
                          "Associations by clock selection status (each in one status).",
                          "gauge", (("status", status),), value))


def _autokey(engine: Engine, out: list[Sample]) -> None:
    responder = engine.autokey.responder  # type: ignore[union-attr]
    requests: dict[tuple[str, str], int] = {
        (t, o): 0 for t in (*REQUEST_TYPES.values(), "other") for o in ("response", "error")}
    for (code, error), count in responder.requests.items():
        key = (REQUEST_TYPES.get(code, "other"), "error" if error else "response")
        requests[key] += count
    for (kind, outcome), value in requests.items():
        out.append(Sample(PREFIX + "autokey_requests_total",
                          "Autokey requests answered, by message type and outcome.",
                          "counter", (("type", kind), ("outcome", outcome)), value))
    operations = responder.key_operations
    for operation in [*KEY_OPERATIONS, *sorted(set(operations) - set(KEY_OPERATIONS))]:
        out.append(Sample(PREFIX + "autokey_key_operations_total",
                          "Public-key operations made for Autokey, by operation.",
                          "counter", (("operation", operation),), operations.get(operation, 0)))
    counters = engine.counters
    for counter, event in AUTOKEY_CHECKS.items():
        out.append(Sample(PREFIX + "autokey_check_failures_total",
                          "Autokey values from peers that failed a check, by event.",
                          "counter", (("event", event),), counters.get(counter, 0)))
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
    out.append(Sample(PREFIX + "autokey_associations", "Associations using Autokey.",
                      "gauge", (), total))
    for flag, value in flags.items():
        out.append(Sample(PREFIX + "autokey_association_flags",
                          "Autokey associations with each progress flag lit.",
                          "gauge", (("flag", str(flag.name).lower()),), value))


# -- rendering ------------------------------------------------------------------------------


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_prometheus(samples: Iterable[Sample]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of ``samples``: one ``# HELP``
    and ``# TYPE`` line per metric, then its samples (grouped even when interleaved)."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name, group in families.items():
        first = group[0]
        lines.append(f"# HELP {name} {_escape_help(first.help)}")
        lines.append(f"# TYPE {name} {first.type}")
        for sample in group:
            labels = ""
            if sample.labels:
                labels = "{" + ",".join(f'{k}="{_escape_label(v)}"'
                                        for k, v in sample.labels) + "}"
            lines.append(f"{name}{labels} {_format_value(sample.value)}")
    return "".join(line + "\n" for line in lines)


def _flat_name(sample: Sample) -> str:
    name = sample.name.removeprefix(PREFIX)
    if sample.type == "counter":
        name = name.removesuffix("_total")
    parts = [name, *(re.sub(r"[^A-Za-z0-9_]", "_", v) for _, v in sample.labels)]
    return "_".join(parts)


def mode6_variables(engine: Engine) -> list[tuple[str, str]]:
    """The metrics as flat mode 6 variables (``packets_client_served``, ``"123"``): the
    name without ``ntpauto_`` and ``_total``, then the label values joined by ``_``."""
    return [(_flat_name(s), _format_value(s.value)) for s in collect(engine)]

