"""The stateless server of an NTP node: replies to client requests and stateless passive
replies (RFC 5905 A.5.3 fast_xmit), plain, under a symmetric key or an Autokey session key.

Restrict flags (``noserve``, ``notrust``, ``limited``/``kod``) apply first.  Autokey requests
with extension fields get the response to their first field (REFERENCE-NOTES 3.5, 8.2); those
costing private-key work pass the per-source rate limit, the private-key budget and, from a
source that has not completed a normal exchange, the amplification limit
(:mod:`ntpauto.autokey.amplification`); identity requests may be answered by the identity
worker (:mod:`ntpauto.autokey.offload`).  The common requests take the hot path
(:mod:`ntpauto.fastpath`), which writes the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ntpauto.autokey.amplification import ExchangeTable, cut_reply
from ntpauto.autokey.association import group_gate
from ntpauto.autokey.budget import BudgetExceeded
from ntpauto.autokey.fields import Field
from ntpauto.autokey.fields import decode as decode_field
from ntpauto.autokey.offload import IdentityJob
from ntpauto.events import AutokeyError, FieldError
from ntpauto.fastpath import FastServer
from ntpauto.ntp.peer import is_wildcard
from ntpauto.wire.packet import (
    CRYPTO_NAK,
    KISS_RATE,
    LEAP_UNSYNC,
    MODE_SERVER,
    Datagram,
    Header,
    Packet,
)

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["AUTH_AUTOKEY", "AUTH_ERROR", "AUTH_NAK", "AUTH_NONE", "AUTH_OK", "Server"]

AUTH_NONE = 0
AUTH_OK = 1
AUTH_ERROR = 2
AUTH_NAK = 3
AUTH_AUTOKEY = 4
"""An Autokey key ID (> 65535): verified later with the session key of its context."""


class Server:
    """The stateless server of one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exchanges = ExchangeTable()
        """Sources that completed a normal exchange (the amplification limit)."""
        self.fast = FastServer(engine, self.server_address)

    def server_address(self, local: tuple[str, int] | None) -> str:
        """The address a client's request reached us on (our side of its session keys)."""
        if local is not None and not is_wildcard(local[0]):
            return local[0]
        return self.engine.local_address or "0.0.0.0"

    def reply_header(self, version_bits: int, poll: int, origin: bytes, rx: int, now: float,
                     mode: int) -> bytes:
        """A server (or stateless passive) reply header (see FastServer.header)."""
        return self.fast.header(version_bits, poll, origin, rx, now, mode)

    def serve(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
              flags: frozenset[str], auth: int, keyid: int | None,
              reply_mode: int) -> list[Datagram]:
        """The stateless server reply (RFC 5905 A.5.3 fast_xmit)."""
        engine = self.engine
        counters = engine.counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if "notrust" in flags and auth != AUTH_OK:
            counters["restricted"] += 1
            return []
        if auth == AUTH_NAK:
            counters["badauth"] += 1
            return []
        request = pkt.header
        if "limited" in flags and engine.limiter.check(source[0], now):
            counters["limited"] += 1
            if "kod" not in flags:
                return []
            counters["kodsent"] += 1
            kod = Header(LEAP_UNSYNC, request.version, reply_mode, 0, request.poll,
                         engine.precision, 0, 0, KISS_RATE, 0, request.transmit, rx, rx)
            return [Datagram(kod.encode(), source)]
        data = self.reply_header(request.version << 3, request.poll & 0xFF,
                                 request.transmit.to_bytes(8, "big"), rx, now, reply_mode)
        if auth == AUTH_OK:
            data += engine.keys.sign(keyid, data)
        elif auth == AUTH_ERROR:
            counters["badauth"] += 1
            data += CRYPTO_NAK
        counters["served"] += 1
        return [Datagram(data, source)]

    def serve_autokey(self, pkt: Packet, source: tuple[str, int], rx: int, now: float,
                      flags: frozenset[str], local: tuple[str, int] | None
                      ) -> list[Datagram]:
        """A client request under an Autokey session key: stateless reply with the response
        to its first extension field (REFERENCE-NOTES 3.5, 8.2).  Requests with fields
        pass ``limited`` (the per-source rate, dropped when over) and, from a source that has
        not completed a normal exchange, the amplification limit (docs/autokey.md)."""
        engine = self.engine
        counters = engine.counters
        if "noserve" in flags:
            counters["restricted"] += 1
            return []
        if pkt.fields and "limited" in flags and engine.limiter.check(source[0], now):
            counters["autokey_limited"] += 1
            return []
        request = pkt.header
        reply = self.reply_header(request.version << 3, request.poll & 0xFF,
                                  request.transmit.to_bytes(8, "big"), rx, now, MODE_SERVER)
        if engine.autokey is None:
            counters["badauth"] += 1
            return [Datagram(reply + CRYPTO_NAK, source)]
        server = self.server_address(local)
        node = engine.autokey
        first: Field | None = None
        for f in pkt.fields[:1]:
            try:
                first = decode_field(f.data)
            except FieldError:
                break
            if not group_gate(node.host.name, first, engine.config.ident):
                counters["declined"] += 1
                return []
        limit = engine.config.amplification_limit and first is not None \
            and not self.exchanges.echoed(source[0], pkt.data[24:32])
        node.responder.last_error = None
        if limit and node.responder.costly(first.code):
            # Unproven: no private-key work, the empty response (never larger).
            data, outcome = node.serve_empty(pkt, reply, source[0], server)
        else:
            queued = None
            if first is not None and first.code in engine.offload_codes and not first.response:
                queued = self._offload_identity(pkt, first, reply, source, server, rx, now,
                                                limit)
            data, outcome = queued or node.serve(pkt, reply, source[0], server,
                                                 engine.crypto_now(), engine.glue.auto_for)
        error = node.responder.last_error
        if isinstance(error, BudgetExceeded):
            # Over the private-key budget: no reply at all; the client asks again at its
            # next poll and keeps its progress (an error response would reset its dance).
            counters["autokey_budget"] += 1
            return []
        counters[outcome] += 1
        if error is not None:
            counters["autokey_error_response"] += 1
        if data is None:
            return []
        return self._autokey_reply_out(data, reply, first, pkt.keyid or 0, source, server,
                                       limit, len(pkt.data))

    def _autokey_reply_out(self, data: bytes, reply: bytes, request: Field | None,
                           keyid: int, source: tuple[str, int], server: str, limit: bool,
                           request_size: int) -> list[Datagram]:
        """An Autokey server reply on its way out: cut when the amplification limit applies
        and it is larger than the request; its transmit timestamp remembered (the echo
        that proves the source next time)."""
        if limit and request is not None and len(data) > request_size:
            self.engine.counters["autokey_amplification"] += 1
            data = cut_reply(reply, request, keyid, source[0], server,
                             self.engine.autokey.digest)
        self.exchanges.sent(source[0], data[40:48])
        return [Datagram(data, source)]

    def _offload_identity(self, pkt: Packet, request: Field, reply: bytes,
                          source: tuple[str, int], server: str, rx: int, now: float,
                          limit: bool) -> tuple[bytes | None, str] | None:
        """An identity request for the worker (:mod:`ntpauto.autokey.offload`): checked and
        admitted here, answered by :meth:`finish_identity` when its value comes back.
        Returns what :meth:`AutokeyNode.serve` would (the datagram now, if any, and the
        counter), or None: answer it in process (a request the responder refuses)."""
        engine = self.engine
        node = engine.autokey
        assert node is not None and engine.offload is not None
        checked = node.check_request(pkt, source[0], server)
        if isinstance(checked, str):
            return node.refused(reply, checked)
        try:
            node.responder.begin_identity(request, source[0])
        except BudgetExceeded:
            return None, "autokey_budget"
        except AutokeyError:
            return None
        header = pkt.header
        job = engine.offload.submit(
            now, request=request, source=source, server=server, keyid=pkt.keyid or 0,
            version_bits=header.version << 3, poll=header.poll & 0xFF,
            origin=header.transmit.to_bytes(8, "big"), rx=rx, request_size=len(pkt.data),
            limit=limit)
        return None, "autokey_offloaded" if job is not None else "autokey_offload_busy"

    def finish_identity(self, job: IdentityJob, status: int, seconds: float,
                        payload: bytes, now: float) -> list[Datagram]:
        """The reply to the client's offloaded identity request ``job`` once the worker
        answered: the signed response under a fresh transmit timestamp."""
        engine = self.engine
        counters = engine.counters
        node = engine.autokey
        crypto_now = engine.crypto_now()
        response = node.responder.end_identity(job.request, status, payload, seconds,
                                               crypto_now)
        reply = self.reply_header(job.version_bits, job.poll, job.origin, job.rx, now,
                                  MODE_SERVER)
        data = node.finish(reply, response, job.source[0], job.server, job.keyid, crypto_now)
        counters["served"] += 1
        if response is not None and response.error:
            counters["autokey_error_response"] += 1
        return self._autokey_reply_out(data, reply, job.request, job.keyid, job.source,
                                       job.server, job.limit, job.request_size)
