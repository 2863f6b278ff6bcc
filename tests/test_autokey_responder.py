"""Tests for ntpauto.autokey.responder: the response to every Autokey request
(interop.md 4, 5 and 8.5), byte for byte against the reference where it is
deterministic."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.autokey.cookie import ServerSeed, server_cookie
from ntpauto.autokey.fields import (
    ASSOC,
    AUTO,
    CERT,
    COOK,
    IFF,
    LEAP,
    NULL,
    SIGN,
    Field,
    decode,
    signed_octets,
)
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.responder import Responder, error_response
from ntpauto.autokey.values import AutoValue, LeapValue, decrypt_cookie, encode_public_key
from ntpauto.events import Event
from ntpauto.pki.certificates import build_self_signed, parse_certificate
from ntpauto.pki.profiles import RSA_SHA256
from ntpauto.wire.packet import MODE_ACTIVE, MODE_CLIENT, MODE_PASSIVE

LEAP_VALUES = LeapValue(37, 3692217600, 3694377600)
CLIENT, SERVER = "127.0.0.3", "127.0.0.1"


def captured(vectors: Path, scenario: str, index: int, ext: int = 0) -> Field:
    """A captured extension field, decoded."""
    packet = json.loads((vectors / "pcap" / scenario / "packets.json").read_text())[index]
    meta = packet["exts"][ext]
    raw = bytes.fromhex(packet["raw"])
    return decode(raw[meta["offset"]:meta["offset"] + meta["len"]])


def host(vectors: Path, scenario: str, who: str, **kwargs: Any) -> HostCredentials:
    """A host of a scenario (password '<who>pw')."""
    return load_host(vectors / "pcap" / scenario / "keys" / who, host=who,
                     password=f"{who}pw", **kwargs)


@pytest.fixture
def alice(vectors: Path) -> HostCredentials:
    """alice of tc-rsa-md5, updated as in the capture (4004438821)."""
    h = host(vectors, "tc-rsa-md5", "alice", leap=LEAP_VALUES)
    h.signature_update(4004438821)
    return h


@pytest.fixture
def brenda(vectors: Path) -> HostCredentials:
    """brenda of tc-rsa-md5 (never updated)."""
    return host(vectors, "tc-rsa-md5", "brenda")


@pytest.fixture
def responder(alice: HostCredentials) -> Responder:
    """alice's responder with a fixed seed."""
    return Responder(alice, ServerSeed(rng=random.Random(4)))


def ask(responder: Responder, request: Field, *, mode: int = MODE_CLIENT,
        now: int = 4004438858, **kwargs: Any) -> Field:
    """The response, which must exist."""
    response = responder.respond(request, packet_mode=mode, now=now, client=CLIENT,
                                 server=SERVER, **kwargs)
    assert response is not None
    return response


def is_error(field: Field, code: int) -> bool:
    """The 8-octet error response to a ``code`` request."""
    return field.short and field.response and field.error and field.code == code


# --- ASSOC ----------------------------------------------------------------------------


def test_assoc_response_is_the_captured_one(vectors: Path, responder: Responder) -> None:
    """The ASSOC response to the captured request is byte for byte the captured reply."""
    request = captured(vectors, "tc-rsa-md5", 0)
    assert ask(responder, request, now=4004438824) == captured(vectors, "tc-rsa-md5", 1)


def test_symmetric_assoc_response_carries_own_id(responder: Responder,
                                                 brenda: HostCredentials) -> None:
    """In symmetric modes the ASSOC response carries our own association ID."""
    request = brenda.assoc_field(64280, response=False)
    response = ask(responder, request, mode=MODE_PASSIVE, own_associd=6156)
    assert (response.response, response.associd, response.value) == \
        (True, 6156, b"alice@alice")
    assert ask(responder, request, own_associd=6156).associd == 64280


# --- CERT -----------------------------------------------------------------------------


def test_cert_response_is_the_captured_one(vectors: Path, responder: Responder) -> None:
    """The CERT response is the captured one: DER, update, file filestamp, signature."""
    request = captured(vectors, "tc-rsa-md5", 2)
    assert ask(responder, request) == captured(vectors, "tc-rsa-md5", 3)


@pytest.mark.parametrize("now", [0, 4004438858])
def test_cert_nothing_response(responder: Responder, now: int) -> None:
    """Unknown name, or unsynchronised: the 8-octet response without the E bit."""
    name = b"nobody@alice" if now else b"alice@alice"
    response = ask(responder, Field(code=CERT, associd=9, value=name), now=now)
    assert response == Field.short_form(CERT, 9, response=True)
    assert responder.last_error is None


def test_cert_nothing_before_first_update(vectors: Path) -> None:
    """A synchronised host that has not signed yet has no certificate to serve."""
    fresh = Responder(host(vectors, "tc-rsa-md5", "alice"))
    response = ask(fresh, Field(code=CERT, associd=9, value=b"alice@alice"))
    assert response == Field.short_form(CERT, 9, response=True)


@pytest.mark.parametrize("length", [0, 513])
def test_cert_bad_name_length_is_an_error(responder: Responder, length: int) -> None:
    """A name of 0 or 513 octets gets an error response (LEN)."""
    request = (Field.short_form(CERT, 9) if not length
               else Field(code=CERT, associd=9, value=b"a" * length))
    assert is_error(ask(responder, request), CERT)
    assert responder.last_error is not None and responder.last_error.event is Event.LEN


def test_untrusted_self_signed_is_never_served(brenda: HostCredentials,
                                              alice: HostCredentials) -> None:
    """brenda's own untrusted certificate is not served; the one alice signed is."""
    brenda.signature_update(4004438848)
    mine = Responder(brenda)
    request = Field(code=CERT, associd=1, value=b"brenda@alice")
    assert ask(mine, request).short
    signed = ask(Responder(alice), brenda.sign_request(1))
    brenda.install_certificate(parse_certificate(signed.value), signed.filestamp,
                               4004438858, own=True)
    served = ask(mine, request)
    assert parse_certificate(served.value).issuer == "alice@alice"
    assert served.filestamp == brenda.cert_filestamp


# --- COOK -----------------------------------------------------------------------------


def test_cook_client_server_cookie(responder: Responder, brenda: HostCredentials,
                                   alice: HostCredentials) -> None:
    """Client/server: the server cookie of (client, server) encrypted to the requester,
    signed, Timestamp = now, Filestamp = update."""
    response = ask(responder, brenda.cook_request(3695))
    cookie = decrypt_cookie(response.value, brenda.host_key)
    assert cookie == responder.server_cookie(CLIENT, SERVER, 4004438858)
    assert cookie == server_cookie(CLIENT, SERVER, responder.seed.current(4004438858))
    assert (response.associd, response.timestamp, response.filestamp) == \
        (3695, 4004438858, 4004438821)
    assert alice.profile.verify(alice.certificate.public_key, response.signature,
                                signed_octets(response))


def test_cook_unsigned_when_unsynchronised(responder: Responder,
                                           brenda: HostCredentials) -> None:
    """now = 0: the cookie is sent unsigned with Timestamp 0."""
    response = ask(responder, brenda.cook_request(1), now=0)
    assert (response.timestamp, response.signature) == (0, b"")


@pytest.mark.parametrize("mode", [MODE_ACTIVE, MODE_PASSIVE])
def test_cook_symmetric_uses_hcookie(responder: Responder, brenda: HostCredentials,
                                     mode: int) -> None:
    """Symmetric: the association's hcookie is encrypted, not the server cookie."""
    response = ask(responder, brenda.cook_request(1), mode=mode, hcookie=0x8A5041AD)
    assert decrypt_cookie(response.value, brenda.host_key) == 0x8A5041AD


def test_cook_symmetric_without_hcookie_is_an_error(responder: Responder,
                                                    brenda: HostCredentials) -> None:
    """Symmetric COOK with no hcookie (no ASSOC accepted) gets an error response."""
    assert is_error(ask(responder, brenda.cook_request(1), mode=MODE_ACTIVE), COOK)


def test_cook_with_non_pkcs1_value_is_an_error(responder: Responder,
                                               brenda: HostCredentials) -> None:
    """A SubjectPublicKeyInfo (not PKCS#1) or garbage value gets an error response."""
    from cryptography.hazmat.primitives import serialization

    spki = brenda.host_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for value in (spki, b"\x30\x03\x02\x01\x01"):
        request = attrs.evolve(brenda.cook_request(1), value=value)
        assert is_error(ask(responder, request), COOK)
        assert responder.last_error is not None and responder.last_error.event is Event.PUB


def test_server_cookie_survives_loss_of_sync(alice: HostCredentials) -> None:
    """Unsynchronised requests (now = 0) never refresh the seed."""
    r = Responder(alice, ServerSeed(revoke=100, rng=random.Random(2)))
    first = r.server_cookie(CLIENT, SERVER, 5000)
    assert r.server_cookie(CLIENT, SERVER, 0) == first
    assert r.server_cookie(CLIENT, SERVER, 5050) == first
    assert r.server_cookie(CLIENT, SERVER, 5100) != first


# --- AUTO / LEAP ----------------------------------------------------------------------


def test_auto_response_echoes_request_id(responder: Responder,
                                         alice: HostCredentials) -> None:
    """The association's signed values are returned with the request's ID."""
    value = alice.autokey_field(AutoValue(0x46079064, 99), timestamp=4004440112,
                                associd=53797)
    response = ask(responder, Field.short_form(AUTO, 53797), autokey_value=value)
    assert response == value
    assert ask(responder, Field.short_form(AUTO, 7), autokey_value=value).associd == 7


def test_auto_without_values_is_an_error(responder: Responder) -> None:
    """An AUTO request for an unknown association gets an error response."""
    assert is_error(ask(responder, Field.short_form(AUTO, 5)), AUTO)


def test_leap_response_is_the_captured_one(vectors: Path, alice: HostCredentials,
                                           responder: Responder) -> None:
    """The LEAP response is byte for byte the captured one (alice re-signed at 828)."""
    alice.signature_update(4004438828)
    request = captured(vectors, "tc-rsa-md5", 18)
    assert ask(responder, request) == captured(vectors, "tc-rsa-md5", 19)


# --- SIGN -----------------------------------------------------------------------------


def test_sign_response_is_the_captured_one(vectors: Path, responder: Responder) -> None:
    """The SIGN response (new certificate and all) is byte for byte the captured one."""
    request = captured(vectors, "tc-rsa-md5", 16)
    assert ask(responder, request, now=4004438858) == captured(vectors, "tc-rsa-md5", 17)


def test_sign_refused_when_unsynchronised(vectors: Path, responder: Responder) -> None:
    """No signing while unsynchronised: error response (TSP)."""
    request = captured(vectors, "tc-rsa-md5", 16)
    assert is_error(ask(responder, request, now=0), SIGN)
    assert responder.last_error is not None and responder.last_error.event is Event.TSP


def test_sign_refuses_garbage(responder: Responder) -> None:
    """A value that is not a certificate gets an error response (CRT)."""
    assert is_error(ask(responder, Field(code=SIGN, associd=1, value=b"\x30\x00")), SIGN)
    assert responder.last_error is not None and responder.last_error.event is Event.CRT


@pytest.mark.parametrize(("allow", "mode", "signed"), [
    (None, MODE_CLIENT, False),
    (None, MODE_ACTIVE, True),
    (True, MODE_CLIENT, True),
    (False, MODE_PASSIVE, False),
])
def test_sign_trust_root_policy(vectors: Path, alice: HostCredentials, allow: bool | None,
                                mode: int, signed: bool) -> None:
    """A trusted (trustRoot) certificate is signed for symmetric peers by default, never
    for clients; ``allow_trust_root`` overrides both ways (security CASES 38)."""
    carol = host(vectors, "sym", "carol")
    carol.signature_update(4004439672)
    r = Responder(alice, allow_trust_root=allow)
    response = ask(r, carol.sign_request(64280), mode=mode, hcookie=1)
    assert response.error is not signed
    if signed:
        assert parse_certificate(response.value).issuer == "alice@alice"


def test_sign_refuses_non_members(alice: HostCredentials) -> None:
    """A grouped host signs only certificates of its group (or of ``sign_groups``)."""
    key = rsa.generate_private_key(65537, 1024)
    der = build_self_signed("mallory@evil", key, RSA_SHA256, 4004438000)
    request = Field(code=SIGN, associd=1, timestamp=4004438000, filestamp=4004438000,
                    value=der)
    assert is_error(ask(Responder(alice), request), SIGN)
    assert not ask(Responder(alice, sign_groups={"evil"}), request).error
    assert not ask(Responder(alice, members_only=False), request).error


# --- identity -------------------------------------------------------------------------


def test_iff_response_verifies(vectors: Path) -> None:
    """An IFF challenge is answered with a signed response the client parameters verify;
    its Filestamp is the server key file's."""
    server = host(vectors, "iff-trad", "alice")
    server.signature_update(4004438821)
    client = host(vectors, "iff-trad", "brenda")
    scheme = client.client_scheme("iff", "alice")
    assert scheme is not None
    challenge = scheme.make_challenge()
    request = Field(code=IFF, associd=3, value=challenge)
    response = ask(Responder(server), request)
    assert response.filestamp == server.server_scheme(IFF).server_filestamp
    assert scheme.verify_response(challenge, response.value)
    assert server.profile.verify(server.certificate.public_key, response.signature,
                                 signed_octets(response))


def test_identity_bad_challenge_is_an_error(vectors: Path) -> None:
    """A challenge longer than the modulus gets an error response."""
    server = host(vectors, "iff-trad", "alice")
    request = Field(code=IFF, associd=3, value=b"\xff" * 64)
    assert is_error(ask(Responder(server), request), IFF)


def test_identity_without_server_key_is_an_error(responder: Responder) -> None:
    """An IFF request to a host without the IFF server key gets an error response."""
    assert is_error(ask(responder, Field(code=IFF, associd=3, value=b"\x01" * 20)), IFF)


# --- others ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [NULL, 10, 0xFF])
def test_null_and_unknown_requests_get_error_responses(responder: Responder,
                                                       code: int) -> None:
    """NULL and unknown requests are answered with R|E and their code (e.g. 0xC200)."""
    response = ask(responder, Field.short_form(code, 77))
    assert response == error_response(Field.short_form(code, 77))
    assert response.encode()[:2] == bytes([0xC2, code])


def test_responses_are_not_answered(responder: Responder) -> None:
    """A response (or error) field gets no answer."""
    assert responder.respond(Field.short_form(LEAP, 1, response=True),
                             packet_mode=MODE_CLIENT, now=1) is None
    assert responder.respond(Field.short_form(ASSOC, 1, error=True),
                             packet_mode=MODE_CLIENT, now=1) is None


def test_cook_request_value_is_pkcs1(brenda: HostCredentials) -> None:
    """The COOK request of the captures is our PKCS#1 public key."""
    assert brenda.cook_request(1).value == encode_public_key(brenda.host_key.public_key())
