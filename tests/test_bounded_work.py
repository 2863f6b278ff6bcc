"""Bounded work per packet (issue 14): every response fits a 2120-octet packet and is
refused with an error response, before the work where it can be, when it would not; no
private-key operation runs for a packet outside the private-key budget; no reply is ever
over 2120 octets, nor larger than its request for a source that has not completed an
exchange.  Private-key work is made to "cost" fake seconds (tests/test_clogging.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntpauto.auth.autokey import mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey import responder as responder_module
from ntpauto.autokey.budget import BudgetExceeded, PrivateKeyBudget
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, LEAP, SIGN, Field, decode
from ntpauto.autokey.offload import OK
from ntpauto.autokey.responder import MAX_RESPONSE_LEN, Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.values import LeapValue, encode_public_key
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.events import Event
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.pki.certificates import build_self_signed, parse_certificate
from ntpauto.pki.profiles import get_profile
from ntpauto.wire.packet import MAX_PACKET, Header, parse
from ntpauto.wire.timestamps import unix_to_ntp
from tests.test_clogging import (
    CLIENT,
    EPOCH,
    NOW,
    SERVER,
    T0,
    FakeTimer,
    costly_signatures,
    creds,
)

KEYID = 0x1234_5678


@pytest.fixture
def alice(vectors: Path):
    """alice (tc-rsa-md5, 512-bit keys: 64-octet signatures) with a budget whose private-key
    work costs 10 fake ms a signature; (responder, timer, signature calls)."""
    host = creds(vectors, "tc-rsa-md5", "alice")
    host.signature_update(NOW)
    timer = FakeTimer()
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=timer)
    responder = Responder(host, budget=budget)
    return responder, timer, costly_signatures(host, timer, 0.01)


def respond(responder: Responder, request: Field) -> Field | None:
    return responder.respond(request, packet_mode=3, now=NOW, client=CLIENT[0],
                             server=SERVER[0])


def huge_key(bits: int) -> rsa.RSAPublicKey:
    """An RSA public key with a ``bits``-bit modulus (not a product of primes: only its
    size matters, and nobody decrypts)."""
    return rsa.RSAPublicNumbers(65537, (1 << bits) - 1).public_key()


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def big_certificate(name: str, gq_bits: int, *, trusted: bool) -> bytes:
    """A self-signed certificate made big by a GQ key of ``gq_bits`` in its SKI."""
    return build_self_signed(name, _key(), get_profile("RSA-SHA256"), NOW - 86400,
                             trusted=trusted, gq_key=(1 << gq_bits) - 1)


# --- responses that would not fit a packet ----------------------------------------------


def test_cook_for_a_16384_bit_key_gets_an_error_response_before_encrypting(alice, monkeypatch):
    """The largest key check_cookie_key allows would make a 2100-octet COOK response:
    refused with the error response, and nothing is encrypted or signed."""
    responder, _, calls = alice
    encrypted = []
    real = responder_module.encrypt_cookie
    monkeypatch.setattr(responder_module, "encrypt_cookie",
                        lambda cookie, key: encrypted.append(key) or real(cookie, key))
    response = respond(responder, Field(code=COOK, associd=5,
                                        value=encode_public_key(huge_key(16384))))
    assert response.error and response.length == 8
    assert responder.last_error.event is Event.LEN
    assert encrypted == [] and calls == []
    fits = respond(responder, Field(code=COOK, associd=5,
                                    value=encode_public_key(huge_key(15680))))
    assert not fits.error and fits.length == MAX_RESPONSE_LEN  # 24 + 1960 + 64
    assert len(encrypted) == 1


def test_cert_of_a_huge_cached_certificate_gets_an_error_response(alice):
    responder, _, calls = alice
    der = big_certificate("mallory", 15200, trusted=True)
    responder.host.cache.install(parse_certificate(der), NOW - 100)
    response = respond(responder, Field(code=CERT, associd=5, value=b"mallory"))
    assert len(der) > 1900 and response.error and responder.last_error.event is Event.LEN
    assert calls == []  # not even its cache signature


def test_sign_of_a_huge_certificate_is_refused(alice):
    """A key and extensions that alone would not fit: refused before the certificate is
    signed; one whose signed copy turns out too big: refused before the response is."""
    responder, _, calls = alice
    # The largest SKI whose floor (key, extensions, signature) still fits: its signed copy,
    # names and validity added, does not.
    barely = max(bits for bits in range(12000, 15000, 32)
                 if 24 + _floor(bits) + 64 <= MAX_RESPONSE_LEN)
    signed = responder.key_operations
    for bits, signatures in ((15500, 0), (barely, 1)):
        before = signed["certificate_signature"]
        request = Field(code=SIGN, associd=5, timestamp=NOW, filestamp=NOW - 86400,
                        value=big_certificate("eve@alice", bits, trusted=False))
        response = respond(responder, request)
        assert response.error and responder.last_error.event is Event.LEN, bits
        assert signed["certificate_signature"] - before == signatures, bits
        assert calls == []  # the response itself is never signed
    small = Field(code=SIGN, associd=5, timestamp=NOW, filestamp=NOW - 86400,
                  value=big_certificate("eve@alice", 64, trusted=False))
    assert not respond(responder, small).error


def _floor(gq_bits: int) -> int:
    info = parse_certificate(big_certificate("eve@alice", gq_bits, trusted=False))
    return (responder_module._signed_certificate_floor(info, 64) + 3) & ~3


class Chatty:
    """A plugin identity scheme whose answer is too long for a packet."""

    name = "chatty"
    message_code = 200
    status_bit = 0
    server_filestamp = 1

    def respond(self, challenge: bytes) -> bytes:
        return bytes(2100)


def test_overlong_identity_answer_gets_an_error_response_unsigned(alice):
    responder, _, calls = alice
    responder.host.server_schemes[Chatty.message_code] = Chatty()
    request = Field(code=Chatty.message_code, associd=5, value=bytes(16))
    response = respond(responder, request)
    assert response.error and responder.last_error.event is Event.LEN and calls == []
    # The same answer computed by the identity worker.
    responder.begin_identity(request, CLIENT[0])
    late = responder.end_identity(request, OK, bytes(2100), 0.01, NOW)
    assert late.error and responder.last_error.event is Event.LEN and calls == []


def test_any_other_oversized_response_becomes_an_error_response(alice):
    """The final check: an AUTO value the caller hands in that is too big."""
    responder, _, _ = alice
    auto = Field(code=AUTO, response=True, timestamp=NOW, value=bytes(2100))
    response = responder.respond(Field.short_form(AUTO, 5), packet_mode=3, now=NOW,
                                 autokey_value=auto)
    assert response.error and responder.last_error.event is Event.LEN


# --- private-key work outside the budget ---------------------------------------------------


def test_cert_of_an_unsigned_certificate_is_budgeted(alice):
    """A certificate installed while the update was refused (or unsynchronised) is signed
    by its first CERT response: admitted by the budget like COOK; over budget, no response
    and no signature."""
    responder, timer, calls = alice
    host = responder.host
    der = big_certificate("carol", 64, trusted=True)
    host.cache.install(parse_certificate(der), NOW - 100)  # no update: not signed
    responder.budget.charge(1000.0)
    request = Field(code=CERT, associd=5, value=b"carol")
    assert respond(responder, request) is None
    assert isinstance(responder.last_error, BudgetExceeded) and calls == []
    timer.t += 6000.0
    response = respond(responder, request)
    assert not response.error and response.value == der and len(calls) == 1
    assert respond(responder, request) == response and len(calls) == 1  # cached


def test_signature_updates_for_peer_values_are_budgeted(alice):
    """Every accepted LEAP response and new certificate re-signs all our values (up to 66
    signatures): a peer sending them back to back gets updates only within the budget, and
    the values we serve stay consistent with their signatures."""
    responder, timer, calls = alice
    host = responder.host
    for i in range(200):
        host.install_leap(LeapValue(37, NOW - 10**6 + i, NOW + 10**6 + i), NOW + i)
        host.install_certificate(parse_certificate(big_certificate(f"c{i}", 64, trusted=True)),
                                 NOW - 100, NOW + i)
    budget = responder.budget
    assert budget.refused > 300 and budget.spent == pytest.approx(0.01 * len(calls))
    assert budget.spent <= 0.5 + 0.01 * (2 + len(host.cache))  # the burst and one update
    leap = host.leap_field(1)
    assert host.profile.verify(host.certificate.public_key, leap.signature,
                               _signed(leap))
    timer.t += 100.0
    host.install_leap(LeapValue(37, NOW, NOW + 10**7), NOW + 500)  # the budget refilled
    assert host.update == NOW + 500 and host.leap_field(1).value == \
        LeapValue(37, NOW, NOW + 10**7).encode()


def _signed(f: Field) -> bytes:
    from ntpauto.autokey.fields import signed_octets

    return signed_octets(f)


# --- the engine: no reply over 2120 octets, none larger than its request -----------------


def engine(vectors: Path) -> Engine:
    host = creds(vectors, "tc-rsa-md5", "alice")
    node = AutokeyNode(host, Responder(host, budget=PrivateKeyBudget(share=None)))
    e = Engine(parse_config("localclock stratum 1\n"), SimulatedClock(lambda: T0, epoch=EPOCH),
               keys=KeyStore(parse_keys("1 MD5 boundedsecret\n"), [1]), autokey=node)
    e.start(T0)
    e.sys = attrs.evolve(e.sys, leap=0, stratum=1, refid=b"LOCL")
    host.signature_update(e.crypto_now())
    return e


def header(origin: int = 0, mode: int = 3) -> bytes:
    return Header(0, 4, mode, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, origin, 0,
                  0xEEAE_0000_1234_5678).encode()


def autokey_request(e: Engine, fields: list[bytes], source=CLIENT, origin: int = 0,
                    mode: int = 3) -> bytes:
    data = header(origin, mode) + b"".join(fields)
    cookie = 0 if fields else e.autokey.responder.server_cookie(source[0], SERVER[0],
                                                                e.crypto_now())
    return data + mac(session_key(source[0], SERVER[0], KEYID, cookie), KEYID, data)


def test_cook_request_with_the_largest_key_that_fits_gets_an_error_response(vectors):
    """Over the wire: the biggest requester key a request can carry (15872 bits) would make
    a 2130-octet reply; the proven source gets an error response instead."""
    e = engine(vectors)
    hello = autokey_request(e, [Field.short_form(LEAP, 0).encode()])
    [first] = e.receive(hello, CLIENT, unix_to_ntp(e.clock.now()), T0, SERVER)
    cook = Field(code=COOK, value=encode_public_key(huge_key(15872))).encode()
    data = autokey_request(e, [cook], origin=parse(first.data).header.transmit)
    assert len(data) <= MAX_PACKET
    [reply] = e.receive(data, CLIENT, unix_to_ntp(e.clock.now()), T0 + 1, SERVER)
    response = decode(parse(reply.data).fields[0].data)
    assert response.error and len(reply.data) < 100
    assert e.counters["autokey_error_response"] == 1


@st.composite
def fields(draw) -> bytes:
    """One Autokey field: a request of any code with a value fit for it (or not), now and
    then a response or a short form."""
    code = draw(st.sampled_from([ASSOC, CERT, COOK, AUTO, LEAP, SIGN, 7, 8, 9, 0, 200]))
    if code == COOK:
        value = encode_public_key(huge_key(draw(st.sampled_from([512, 2048, 8192, 15872]))))
    elif code == CERT:
        value = draw(st.sampled_from([b"alice@alice", b"alice", b"x" * 513]))
    elif code == SIGN:
        value = big_certificate("eve@alice", draw(st.sampled_from([64, 8000, 13000])),
                                trusted=False)
    else:
        value = draw(st.sampled_from([b"", b"bob", b"y" * 600, b"z" * 1900]))
    short = not value or draw(st.integers(0, 9)) == 0
    return Field(code=code, associd=draw(st.integers(0, 9)), response=draw(st.integers(0, 9)) == 0,
                 short=short, value=b"" if short else value).encode()


@st.composite
def requests(draw, e: Engine) -> tuple[bytes, bool]:
    """A client (or symmetric active) request of any kind, and whether its source has
    completed an exchange."""
    kind = draw(st.sampled_from(["plain", "md5", "autokey", "fields", "fields", "garbage"]))
    mode = draw(st.sampled_from([3, 3, 3, 1]))
    proven = draw(st.booleans())
    if kind == "plain":
        data = header(mode=mode)
    elif kind == "md5":
        data = header(mode=mode)
        data += KeyStore(parse_keys("1 MD5 boundedsecret\n"), [1]).sign(1, data)
        if draw(st.booleans()):
            data = data[:-1] + b"\0"
    elif kind == "autokey":
        data = autokey_request(e, [], mode=mode)
    elif kind == "fields":
        count = draw(st.sampled_from([1, 1, 1, 2, 3]))
        data = autokey_request(e, [draw(fields()) for _ in range(count)], mode=mode)
    else:
        data = header(mode=mode) + draw(st.binary(max_size=64))
    return data, proven


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_reply_over_2120_nor_larger_than_the_request_when_unproven(vectors, data):
    e = engine(vectors)
    request, proven = data.draw(requests(e))
    source = CLIENT
    origin = 0
    if proven:  # a plain exchange first: its reply's transmit timestamp is echoed
        hello = autokey_request(e, [Field.short_form(LEAP, 0).encode()])
        [first] = e.receive(hello, source, unix_to_ntp(e.clock.now()), T0, SERVER)
        origin = parse(first.data).header.transmit
        request = request[:24] + origin.to_bytes(8, "big") + request[32:]
        if len(request) > 48 and request[48:52] != bytes(4):  # re-MAC under the new origin
            request = _remac(e, request)
    replies = e.receive(request, source, unix_to_ntp(e.clock.now()), T0 + 1, SERVER)
    for reply in replies:
        assert len(reply.data) <= MAX_PACKET
        if not proven:
            assert len(reply.data) <= len(request)


def _remac(e: Engine, request: bytes) -> bytes:
    """``request`` with its MAC recomputed (its origin was changed)."""
    try:
        pkt = parse(request)
    except Exception:
        return request
    if pkt.keyid is None or not pkt.digest:
        return request
    body = pkt.authenticated_part
    if pkt.keyid <= 65535:
        return body + KeyStore(parse_keys("1 MD5 boundedsecret\n"), [1]).sign(1, body)
    cookie = 0 if pkt.fields else e.autokey.responder.server_cookie(CLIENT[0], SERVER[0],
                                                                    e.crypto_now())
    return body + mac(session_key(CLIENT[0], SERVER[0], pkt.keyid, cookie), pkt.keyid, body)
