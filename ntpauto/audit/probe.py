"""What ``ntpauto audit`` asks a server, and what it records (:class:`Observations`).

One request at a time, from one UDP port connected to the server (:class:`Prober`):

1. a plain time request (version, stratum, leap indicator);
2. a mode 6 read of the system variables (its size; the Autokey ``host`` name there);
3. an ASSOC request, under an MD5 session key and, if that gets a crypto-NAK, SHA1 (the
   digest is not signalled otherwise): the server's name and status word;
4. the whole client dance through :func:`ntpauto.client.query` (the daemon's checks), every
   datagram tapped for the certificates and signatures it carries;
5. CERT for each name of the trail, COOK, LEAP, SIGN and, with client parameters, the
   identity request, each sent twice: first with origin 0, as from a source that never
   completed an exchange (possibly a spoofed one): the reply's size over the request's is its
   amplification; then echoing that reply, for the full response (the cookie, decrypted
   with our host key; the LEAP values);
6. a mode 7 MON_GETLIST request (ntpd's monlist, the classic amplifier).

Without the user's keys the audit is ``audit@GROUP`` with a new RSA key and a self-signed
certificate made in memory (GROUP from ``--group``, or the group of the name mode 6 gave):
enough for everything but an identity proof.  Responses here are recorded as received:
what is *verified* comes from the dance alone.
"""

from __future__ import annotations

import errno
import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from ntpauto.auth.autokey import mac as autokey_mac
from ntpauto.auth.autokey import server_reply_key, session_key, verify_mac
from ntpauto.autokey.cookie import server_cookie
from ntpauto.autokey.fields import ASSOC, CERT, LEAP, Field, decode_all
from ntpauto.autokey.host import HostCredentials
from ntpauto.autokey.values import LeapValue, decode_assoc_name, decrypt_cookie
from ntpauto.client.errors import PORT_UNREACHABLE, PortUnreachable, QueryFailed, no_answer
from ntpauto.client.oneshot import (
    AutokeyKeys,
    Outcome,
    listen_connected,
    local_address_for,
    query_outcome,
)
from ntpauto.events import FieldError
from ntpauto.mode6 import OP_READVAR
from ntpauto.mode6_client import parse_variables, request
from ntpauto.pki.certificates import (
    CertificateError,
    CertInfo,
    build_self_signed,
    parse_certificate,
)
from ntpauto.pki.profiles import get_profile
from ntpauto.wire.packet import MODE_CLIENT, Header, MalformedPacket, Packet, build, parse
from ntpauto.wire.timestamps import ntp_seconds, unix_to_ntp

__all__ = ["PROBE_WAIT", "Amplification", "Observations", "audit_credentials", "observe"]

PROBE_WAIT = 1.0
"""Seconds to wait for the reply to one probe."""
SETTLE = 0.05
"""Seconds to wait for more datagrams after the first reply (mode 6 fragments)."""
AUDIT_BITS = 2048
"""The size of the audit's own RSA key (the COOK response is as long as it)."""
MON_GETLIST = bytes([0x17, 0x00, 0x03, 0x2A]) + bytes(44)
"""A mode 7 MON_GETLIST_1 request (ntpd's monlist), 48 octets as ntpdc sends it."""
DIGESTS = ("md5", "sha1")


@attrs.frozen
class Amplification:
    """One request sent as from a source that never completed an exchange."""

    request: str
    sent: int
    """Octets of the request."""
    received: int
    """Octets of every datagram answering it (0: no answer)."""

    @property
    def factor(self) -> float:
        """Reply octets per request octet."""
        return self.received / self.sent


@attrs.define
class Observations:
    """Everything the audit saw of the server (see the module docstring)."""

    address: str
    port: int
    client: str
    """Our address as the server sees it (the cookie's other half)."""
    header: Header | None = None
    variables: dict[str, str] = attrs.Factory(dict)
    """Mode 6 system variables."""
    name: str | None = None
    status: int | None = None
    digest: str | None = None
    certificates: list[tuple[CertInfo, int]] = attrs.Factory(list)
    """Certificates of the CERT responses with their Filestamps, the server's first."""
    signatures: list[tuple[str, int]] = attrs.Factory(list)
    """(message name, signature octets) of every signed response seen."""
    cookie: int | None = None
    seed_zero_cookie: int | None = None
    """The cookie a server seed of 0 would give us: H(client, server, 0, 0)."""
    leap: LeapValue | None = None
    amplification: list[Amplification] = attrs.Factory(list)
    outcome: Outcome | None = None
    failure: QueryFailed | None = None
    """Why the dance failed, if it did."""
    identity: str | None = None
    """The group of the client parameters we hold (the identity was proven with them)."""
    identity_bits: dict[str, int] = attrs.Factory(dict)
    """Parameter sizes of the scheme we hold client parameters for."""
    own_keys: bool = False
    """The audit used the user's key material (else its own, made for the audit)."""


class Prober(DatagramProtocol):
    """One request at a time on a connected UDP port: :meth:`exchange` sends it and fires
    with every datagram received until :data:`SETTLE` after the first, or the wait."""

    def __init__(self, reactor: Any, wait: float) -> None:
        self.reactor = reactor
        self.wait = wait
        self._replies: list[bytes] = []
        self._done: defer.Deferred[list[bytes]] | None = None
        self._timer: Any = None
        self.error = 0
        """The last ICMP error (an errno), 0 for none."""

    def exchange(self, data: bytes) -> defer.Deferred[list[bytes]]:
        """Send ``data``; the datagrams that came back."""
        self._replies = []
        self._done = defer.Deferred()
        self._timer = self.reactor.callLater(self.wait, self._finish)
        self.transport.write(data)
        return self._done

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        if self._done is None:
            return
        if not self._replies:
            self._timer.reset(SETTLE)
        self._replies.append(datagram)

    def socket_error(self, code: int) -> None:
        """An ICMP error on the connected port (:class:`ConnectedPort`)."""
        self.error = code
        if self._done is not None:
            self._timer.reset(0)

    def connectionRefused(self) -> None:  # noqa: N802 - Twisted's name
        self.socket_error(errno.ECONNREFUSED)

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done.callback(self._replies)


def _header(transmit: int, origin: int = 0) -> bytes:
    return build(Header(0, 4, MODE_CLIENT, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, origin, 0,
                        transmit))


def _parsed(replies: list[bytes], transmit: int) -> Packet | None:
    """The reply to our request of ``transmit`` among ``replies``."""
    for data in replies:
        try:
            packet = parse(data)
        except MalformedPacket:
            continue
        if packet.header.origin == transmit:
            return packet
    return None


class _Session:
    """The raw Autokey requests of the audit, under one identity and digest."""

    def __init__(self, prober: Prober, obs: Observations, host: HostCredentials) -> None:
        self.prober = prober
        self.obs = obs
        self.host = host

    def packet(self, f: Field, origin: int = 0) -> tuple[bytes, int, int]:
        """A client request carrying ``f`` under a cookie-0 session key: (octets, transmit
        timestamp, key ID)."""
        transmit = unix_to_ntp(time.time())
        keyid = secrets.randbelow(0xFFFF0000) + 0x10000
        data = _header(transmit, origin) + f.encode()
        key = session_key(self.obs.client, self.obs.address, keyid, 0, self.host.digest)
        return data + autokey_mac(key, keyid, data, self.host.digest), transmit, keyid

    @defer.inlineCallbacks
    def ask(self, f: Field, origin: int = 0) -> Any:
        """Send ``f``; (the reply's fields or None, all octets received, the reply packet).
        A reply whose MAC does not verify counts for its size only."""
        data, transmit, keyid = self.packet(f, origin)
        replies = yield self.prober.exchange(data)
        packet = _parsed(replies, transmit)
        fields = None
        if packet is not None and packet.keyid == keyid:
            key = server_reply_key(self.obs.address, self.obs.client, keyid, 0,
                                   has_fields=True, digest=self.host.digest)
            if verify_mac(key, packet.authenticated_part, packet.digest, self.host.digest):
                try:
                    fields = decode_all(packet)
                except FieldError:
                    fields = None
        return fields, sum(len(r) for r in replies), packet, len(data)

    @defer.inlineCallbacks
    def probe(self, name: str, f: Field) -> Any:
        """``f`` as from a source with no exchange (its amplification recorded), then
        echoing that reply: the response field of the second (or the first) reply."""
        fields, received, packet, sent = yield self.ask(f)
        self.obs.amplification.append(Amplification(name, sent, received))
        if packet is not None:
            again, _, _, _ = yield self.ask(f, origin=packet.header.transmit)
            fields = again if again is not None else fields
        response = _response(fields, f.code)
        if response is not None and response.signature:
            self.obs.signatures.append((response.name, len(response.signature)))
        return response


def _response(fields: list[Field] | None, code: int) -> Field | None:
    for f in fields or ():
        if f.response and not f.error and not f.short and f.code == code:
            return f
    return None


def audit_credentials(group: str | None, digest: str) -> HostCredentials:
    """The audit's own Autokey identity: ``audit@GROUP`` with a new RSA key and a
    self-signed certificate, in memory."""
    key = rsa.generate_private_key(65537, AUDIT_BITS)
    name = f"audit@{group}" if group else "audit"
    stamp = ntp_seconds(time.time()) - 3600
    info = parse_certificate(build_self_signed(name, key, get_profile("RSA-SHA256"), stamp))
    return HostCredentials(host_key=key, certificate=info, cert_filestamp=stamp,
                           host_filestamp=stamp, digest=digest)


@defer.inlineCallbacks
def observe(reactor: Any, address: str, port: int, *, keys: AutokeyKeys | None = None,
            group: str | None = None, timeout: float = 10.0,
            wait: float = PROBE_WAIT) -> Any:
    """Ask the server at ``address`` everything of the module docstring; fires with the
    :class:`Observations`, or fails with PortUnreachable or QueryFailed (no answer)."""
    obs = Observations(address, port, local_address_for((address, port)))
    prober = Prober(reactor, wait)
    listening = listen_connected(reactor, prober, obs.client, (address, port))
    try:
        yield _time_and_variables(prober, obs)
        if prober.error == errno.ECONNREFUSED:
            raise PortUnreachable(address, port, PORT_UNREACHABLE)
        host = yield _associate(prober, obs, keys, group)
        if host is None and obs.header is None:
            raise QueryFailed(address, port, no_answer(wait))
        if host is not None:
            yield _dance(reactor, obs, host, timeout)
            yield _fields(prober, obs, host)
        replies = yield prober.exchange(MON_GETLIST)
        obs.amplification.append(Amplification("mode 7 MON_GETLIST (monlist)",
                                               len(MON_GETLIST), sum(map(len, replies))))
    finally:
        yield defer.maybeDeferred(listening.stopListening)
    return obs


@defer.inlineCallbacks
def _time_and_variables(prober: Prober, obs: Observations) -> Any:
    transmit = unix_to_ntp(time.time())
    data = _header(transmit)
    replies = yield prober.exchange(data)
    packet = _parsed(replies, transmit)
    obs.header = packet.header if packet is not None else None
    obs.amplification.append(Amplification("mode 3 time request", len(data),
                                           sum(map(len, replies))))
    readvar = request(OP_READVAR, 1)
    replies = yield prober.exchange(readvar)
    obs.amplification.append(Amplification("mode 6 read variables", len(readvar),
                                            sum(map(len, replies))))
    for data in replies:
        try:
            obs.variables.update(parse_variables(data[12:]))
        except ValueError:
            continue


@defer.inlineCallbacks
def _associate(prober: Prober, obs: Observations, keys: AutokeyKeys | None,
               group: str | None) -> Any:
    """The ASSOC exchange under each digest until one is answered; the identity it used."""
    known = obs.variables.get("host", "").strip('"')
    group = group or (known.split("@", 1)[1] if "@" in known else None)
    own: HostCredentials | None = None
    for digest in DIGESTS:
        if keys is not None:
            host = attrs.evolve(keys, digest=digest).load()
        else:
            own = host = _with_digest(own, digest) if own else audit_credentials(group, digest)
        session = _Session(prober, obs, host)
        fields, received, _, sent = yield session.ask(
            host.assoc_field(secrets.randbelow(65535) + 1, response=False))
        assoc = _response(fields, ASSOC)
        if assoc is None:
            continue
        obs.amplification.append(Amplification("ASSOC", sent, received))
        obs.digest = digest
        obs.own_keys = keys is not None
        try:
            obs.name = decode_assoc_name(assoc.value)
        except FieldError:
            obs.name = None
        obs.status = assoc.filestamp
        return host
    return None


def _with_digest(host: HostCredentials, digest: str) -> HostCredentials:
    """``host``'s key and certificate with another session-key digest."""
    return HostCredentials(host_key=host.host_key, certificate=host.certificate,
                           cert_filestamp=host.cert_filestamp,
                           host_filestamp=host.host_filestamp, digest=digest)


@defer.inlineCallbacks
def _dance(reactor: Any, obs: Observations, host: HostCredentials, timeout: float) -> Any:
    """The client dance, checked by the daemon's code; its datagrams tapped."""
    try:
        obs.outcome = yield query_outcome(reactor, obs.address, obs.port, autokey=host,
                                          timeout=timeout, tap=_tap(obs))
    except QueryFailed as exc:
        obs.failure = exc
    if host.ident and obs.outcome is not None and obs.outcome.sample.autokey is not None:
        scheme = obs.outcome.sample.autokey.scheme
        client = host.client_scheme(scheme, host.ident)
        if client is not None:
            obs.identity = host.ident
            obs.identity_bits = _parameter_bits(client.client)


def _tap(obs: Observations) -> Callable[[bytes], None]:
    """Records the signatures of the dance's signed responses."""

    def tap(data: bytes) -> None:
        try:
            fields = decode_all(parse(data))
        except (MalformedPacket, FieldError):
            return
        for f in fields:
            if f.response and f.signature:
                obs.signatures.append((f.name, len(f.signature)))

    return tap


def _parameter_bits(parameters: Any) -> dict[str, int]:
    """Bit sizes of an identity scheme's public parameters (IFF p, q; GQ n; MV p, q)."""
    return {name: int(getattr(parameters, name)).bit_length()
            for name in ("p", "q", "n") if isinstance(getattr(parameters, name, None), int)}


@defer.inlineCallbacks
def _fields(prober: Prober, obs: Observations, host: HostCredentials) -> Any:
    """The field probes: the trail's certificates, COOK, LEAP, SIGN, identity."""
    session = _Session(prober, obs, host)
    associd = secrets.randbelow(65535) + 1
    host.signature_update(ntp_seconds(time.time()))  # our COOK and SIGN requests, signed
    name, seen = obs.name, set()
    while name and name not in seen and len(seen) < 8:
        seen.add(name)
        response = yield session.probe(f"CERT {name}", Field(
            code=CERT, associd=associd, value=name.encode("ascii", "replace")))
        if response is None:
            break
        try:
            info = parse_certificate(response.value)
        except CertificateError:
            break
        obs.certificates.append((info, response.filestamp))
        name = None if info.self_signed else info.issuer
    cook = yield session.probe("COOK", host.cook_request(associd))
    if cook is not None:
        try:
            obs.cookie = decrypt_cookie(cook.value, host.host_key)
        except FieldError:
            obs.cookie = None
    obs.seed_zero_cookie = server_cookie(obs.client, obs.address, 0, host.digest)
    leap = yield session.probe("LEAP", Field.short_form(LEAP, associd))
    if leap is not None:
        try:
            obs.leap = LeapValue.decode(leap.value)
        except FieldError:
            obs.leap = None
    yield session.probe("SIGN", host.sign_request(associd))
    yield _identity_probe(session, obs, host, associd)


@defer.inlineCallbacks
def _identity_probe(session: _Session, obs: Observations, host: HostCredentials,
                    associd: int) -> Any:
    """The identity request, with a real challenge of the scheme we hold parameters for."""
    proof = obs.outcome.sample.autokey if obs.outcome is not None else None
    if proof is None or obs.identity is None:
        return None
    client = host.client_scheme(proof.scheme, obs.identity)
    if client is None:
        return None
    challenge = Field(code=int(client.message_code), associd=associd,
                      value=bytes(client.make_challenge()))
    yield session.probe(f"{proof.scheme.upper()} identity", challenge)
    return None

