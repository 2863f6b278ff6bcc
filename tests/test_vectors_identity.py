"""The reference's identity files and captured identity exchanges, checked offline
(vectors keys/ and pcap/<scenario>/; RESULTS.md; interop.md 5.8, 6, 6.4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from ntpauto.identity import gq, iff, mv
from ntpauto.identity.common import decode_challenge, decode_der_integers
from ntpauto.pki.certificates import parse_certificate
from ntpauto.pki.keyfiles import read_key_file

CLIENT_ADDRESS = "127.0.0.3"
SERVER_ADDRESS = "127.0.0.1"


def exchanges(vectors: Path, scenario: str, code: int) -> list[tuple[dict, dict, dict, dict]]:
    """(request field, response field, request packet, response packet) of every identity
    exchange with message ``code`` in a capture, pairing each response with the request
    before it."""
    packets = json.loads((vectors / "pcap" / scenario / "packets.json").read_text())
    pending = None
    found = []
    for packet in packets:
        for field in packet["exts"]:
            if field["code"] != code:
                continue
            if not field["R"]:
                pending = (field, packet)
            elif pending is not None:
                found.append((pending[0], field, pending[1], packet))
                pending = None
    return found


def values(request: dict, response: dict) -> tuple[bytes, bytes]:
    """The challenge and response value octets."""
    return bytes.fromhex(request["value"]), bytes.fromhex(response["value"])


def certificate(path: Path):
    """CertInfo of the certificate file at ``path``."""
    cert = read_key_file(path).certificate
    return parse_certificate(cert.public_bytes(serialization.Encoding.DER))


# --- the reference's files load ------------------------------------------------------------


def test_reference_iff_files_load(vectors):
    """IFF server key (encrypted PKCS#8), the -e export (PKCS#8) and the traditional
    workaround load; PKCS#8 loses v (it becomes g), traditional PEM keeps it."""
    keys = vectors / "keys"
    server, stamp = iff.load_server_key(keys / "iff/alice/ntpkey_iffkey_alice", "alicepw")
    assert stamp == 4004436521
    assert server.p.bit_length() == 512 and server.q.bit_length() == 160
    pkcs8, stamp8 = iff.load_client_parameters(keys / "iff/brenda/ntpkey_iffpar_alice")
    trad, stamp_trad = iff.load_client_parameters(keys / "iff-trad/brenda/ntpkey_iffpar_alice")
    assert stamp8 == stamp_trad == stamp
    assert (pkcs8.p, pkcs8.q, pkcs8.g) == (trad.p, trad.q, trad.g) == \
        (server.p, server.q, server.g)
    assert pkcs8.public_value_recomputed and pkcs8.v == pkcs8.g
    assert not trad.public_value_recomputed and trad.v == server.v
    unencrypted = keys / "unencrypted/iff/alice/ntpkey_IFFkey_alice.4004436521.unencrypted.pem"
    assert iff.load_server_key(unencrypted, None)[0] == server


def test_reference_gq_files_load(vectors):
    """GQ server key and client parameters load (RSA cuckoo, no validation); the
    certificate carries v in its Subject Key Identifier."""
    keys = vectors / "keys"
    server, stamp = gq.load_server_key(keys / "gq/alice/ntpkey_gqkey_alice", "alicepw")
    client, client_stamp = gq.load_client_parameters(keys / "gq/brenda/ntpkey_gqpar_alice")
    assert stamp == client_stamp == 4004436524
    assert server.n.bit_length() == 256 and client == server.client_parameters()
    cert = certificate(keys / "gq/alice/ntpkey_cert_alice")
    assert cert.gq_key == cert.gq_key_correct == server.v
    assert gq.peer_key_from_certificate(cert) == server.v


def test_reference_mv_files_load(vectors):
    """MV bundle (5 keys for -V 3), server key and client key load, PKCS#8 and traditional;
    the PKCS#8 ones lost their public values, the traditional bundle is complete."""
    keys = vectors / "keys"
    bundle, stamp = mv.load_bundle(keys / "mv/alice/ntpkey_mvta_alice", "alicepw")
    assert stamp == 4004436526 and len(bundle.clients) == 3
    assert bundle.p.bit_length() == 256 and bundle.q.bit_length() == 255
    assert bundle.server.public_value_recomputed and bundle.primes is None
    server, _ = mv.load_server_key(keys / "mv/alice/ntpkey_mvkey_alice", "alicepw")
    assert server.ghat == pow(server.e, server.gbar, server.p)  # recomputed as g^x
    client, _ = mv.load_client_key(keys / "mv/brenda/ntpkey_mvpar_alice")
    assert client.public_value_recomputed and client.xhat == 1  # 1^xbar
    assert client.xbar == bundle.client(1).xbar

    trad = vectors / "pcap/mv-trad/keys"
    system, stamp = mv.load_bundle(trad / "alice/ntpkey_mvta_alice", "alicepw")
    assert stamp == 4004437967
    assert system.revoked == frozenset({3}) and system.primes is not None
    assert all(s.bit_length() == 85 for s in system.primes)
    assert system.server == system.server_key({3})
    assert mv.load_server_key(trad / "alice/ntpkey_mvkey_alice", "alicepw")[0] == system.server
    assert mv.load_client_key(trad / "brenda/ntpkey_mvpar_alice")[0] == system.client(1)


# --- IFF captures --------------------------------------------------------------------------


def test_iff_trad_capture_verifies(vectors):
    """iff-trad: the captured exchange verifies with the client's traditional parameter
    file, and its filestamps follow the rules."""
    client = iff.IFFScheme.from_keysdir(vectors / "pcap/iff-trad/keys/brenda", "alice")
    found = exchanges(vectors, "iff-trad", 7)
    assert len(found) == 1
    for request, response, request_packet, response_packet in found:
        assert (request_packet["src"], response_packet["src"]) == (CLIENT_ADDRESS,
                                                                   SERVER_ADDRESS)
        assert request["fstamp"] == client.client_filestamp
        assert client.accepts_filestamp(response["fstamp"])
        assert request["vallen"] == 20
        assert client.verify_response(*values(request, response))


def test_iff_capture_fails_with_pkcs8_file_and_why(vectors):
    """iff: every captured response is correct for the true v = g^(q-b) of the server key,
    but the client's PKCS#8 file loads v = g, so none verifies -- the reference's failure.
    The iff-trad client file, holding the true v, verifies the same responses."""
    keys = vectors / "pcap/iff/keys"
    pkcs8_client = iff.IFFScheme.from_keysdir(keys / "brenda", "alice")
    assert pkcs8_client.client.v == pkcs8_client.client.g
    server = iff.IFFScheme.from_keysdir(keys / "alice", "alice", "alicepw")
    true_v = iff.IFFScheme(client=server.server.client_parameters())
    trad_client = iff.IFFScheme.from_keysdir(vectors / "keys/iff-trad/brenda", "alice")
    found = exchanges(vectors, "iff", 7)
    assert len(found) == 14
    for request, response, _, _ in found:
        challenge, answer = values(request, response)
        assert not pkcs8_client.verify_response(challenge, answer)
        assert true_v.verify_response(challenge, answer)
        assert trad_client.verify_response(challenge, answer)
        assert pkcs8_client.accepts_filestamp(response["fstamp"])


def test_our_iff_server_answers_reference_challenges(vectors):
    """Our responder, with the reference's server key, answers the captured challenges in a
    form the reference-layout client verifies."""
    server = iff.IFFScheme.from_keysdir(vectors / "keys/iff/alice", "alice", "alicepw")
    client = iff.IFFScheme.from_keysdir(vectors / "keys/iff-trad/brenda", "alice")
    for request, _, _, _ in exchanges(vectors, "iff", 7):
        challenge = bytes.fromhex(request["value"])
        answer = server.respond(challenge)
        assert len(decode_der_integers(answer, 2)) == 2
        assert client.verify_response(challenge, answer)


# --- GQ captures ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["gq", "bcast-gq"])
def test_gq_captures_verify(vectors, scenario):
    """gq, bcast-gq: the exchange verifies with n, b from the gqpar file and v from the
    server's certificate (Subject Key Identifier, reference reading)."""
    keys = vectors / "pcap" / scenario / "keys"
    client = gq.GQScheme.from_keysdir(keys / "brenda", "alice")
    cert = certificate(keys / "alice/ntpkey_cert_alice")
    bound = client.with_peer_key(cert.gq_key)
    found = exchanges(vectors, scenario, 8)
    assert len(found) == 1
    for request, response, _, _ in found:
        challenge, answer = values(request, response)
        assert request["vallen"] == 32 == len(client.make_challenge())
        assert bound.verify_response(challenge, answer)
        assert client.for_peer(cert).verify_response(challenge, answer)
        assert not client.verify_response(challenge, answer)  # no v yet
        assert bound.accepts_filestamp(response["fstamp"])


# --- MV captures ---------------------------------------------------------------------------


def test_mv_trad_capture_verifies(vectors):
    """mv-trad: the exchange verifies with the client's traditional key file; our
    responder with the traditional server key answers the same challenge."""
    keys = vectors / "pcap/mv-trad/keys"
    client = mv.MVScheme.from_keysdir(keys / "brenda", "alice")
    server = mv.MVScheme.from_keysdir(keys / "alice", "alice", "alicepw")
    found = exchanges(vectors, "mv-trad", 9)
    assert len(found) == 1
    for request, response, _, _ in found:
        challenge, answer = values(request, response)
        assert request["vallen"] == 32
        assert len(decode_der_integers(answer, 3)) == 3
        assert client.verify_response(challenge, answer)
        assert client.accepts_filestamp(response["fstamp"])
        assert client.verify_response(challenge, server.respond(challenge))


def test_mv_capture_fails_with_pkcs8_files_and_why(vectors):
    """mv: no captured response verifies.  The PKCS#8 files lost the public values: the
    server answered with ghat := E^gbar (each captured B equals (y/r)^gbar, since y/r = E^k),
    and the client loaded xhat := 1; with these keys gbar^xhat ghat^xbar E != 1, so no
    response can verify."""
    keys = vectors / "pcap/mv/keys"
    client = mv.MVScheme.from_keysdir(keys / "brenda", "alice")
    server = mv.MVScheme.from_keysdir(keys / "alice", "alice", "alicepw")
    key, mine = server.server, client.client
    p = key.p
    assert key.public_value_recomputed and mine.public_value_recomputed
    assert mine.xhat == 1 and key.ghat == pow(key.e, key.gbar, p)
    assert pow(key.gbar, mine.xhat, p) * pow(key.ghat, mine.xbar, p) * key.e % p != 1
    found = exchanges(vectors, "mv", 9)
    assert len(found) == 14
    for request, response, _, _ in found:
        challenge, answer = values(request, response)
        r = int.from_bytes(challenge, "big")
        y, _, big_b = decode_der_integers(answer, 3)
        assert big_b == pow(y * pow(r, -1, p) % p, key.gbar, p)
        assert not client.verify_response(challenge, answer)
        assert client.accepts_filestamp(response["fstamp"])


@pytest.mark.parametrize("scenario, code, make", [
    ("iff", 7, lambda keys: iff.IFFScheme.from_keysdir(keys / "brenda", "alice")),
    ("iff-trad", 7, lambda keys: iff.IFFScheme.from_keysdir(keys / "brenda", "alice")),
    ("gq", 8, lambda keys: gq.GQScheme.from_keysdir(keys / "brenda", "alice").for_peer(
        certificate(keys / "alice/ntpkey_cert_alice"))),
    ("bcast-gq", 8, lambda keys: gq.GQScheme.from_keysdir(keys / "brenda", "alice").for_peer(
        certificate(keys / "alice/ntpkey_cert_alice"))),
    ("mv", 9, lambda keys: mv.MVScheme.from_keysdir(keys / "brenda", "alice")),
    ("mv-trad", 9, lambda keys: mv.MVScheme.from_keysdir(keys / "brenda", "alice")),
])
def test_captured_values_pass_the_checks(vectors, scenario, code, make):
    """Every captured challenge passes the server's checks (L octets, 0 < r < M) and every
    INTEGER of every captured response its range and group check -- the PKCS#8 captures'
    included, whose responses are genuine but made with other keys than the client's."""
    client = make(vectors / "pcap" / scenario / "keys")
    found = exchanges(vectors, scenario, code)
    assert found
    for request, response, _, _ in found:
        challenge, answer = values(request, response)
        assert decode_challenge(challenge, client._client_modulus()) > 0
        client._check_response(decode_der_integers(answer, client.response_integers))


def test_challenge_lengths_match_captures(vectors):
    """Our challenges have the captured lengths: 20 (IFF), 32 (GQ), 32 (MV) octets."""
    keys = vectors / "keys"
    assert len(iff.IFFScheme.from_keysdir(keys / "iff/brenda", "alice").make_challenge()) == 20
    assert len(gq.GQScheme.from_keysdir(keys / "gq/brenda", "alice").make_challenge()) == 32
    assert len(mv.MVScheme.from_keysdir(keys / "mv/brenda", "alice").make_challenge()) == 32


@pytest.fixture(scope="module")
def reference_schemes(vectors):
    """Server and client schemes of the reference's IFF (traditional client), GQ and MV
    (traditional) files."""
    keys = vectors / "keys"
    trad = vectors / "pcap/mv-trad/keys"
    gq_cert = certificate(keys / "gq/alice/ntpkey_cert_alice")
    return [
        (iff.IFFScheme.from_keysdir(keys / "iff/alice", "alice", "alicepw"),
         iff.IFFScheme.from_keysdir(keys / "iff-trad/brenda", "alice")),
        (gq.GQScheme.from_keysdir(keys / "gq/alice", "alice", "alicepw"),
         gq.GQScheme.from_keysdir(keys / "gq/brenda", "alice").for_peer(gq_cert)),
        (mv.MVScheme.from_keysdir(trad / "alice", "alice", "alicepw"),
         mv.MVScheme.from_keysdir(trad / "brenda", "alice")),
    ]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120), which=st.integers(min_value=0, max_value=2))
def test_arbitrary_input_never_raises_unexpectedly(reference_schemes, data, which):
    """Arbitrary octets: the responder answers (only an L-octet 0 < r < M) or raises
    ValueError; the client returns a bool and never raises."""
    server, client = reference_schemes[which]
    try:
        answer = server.respond(data)
    except ValueError:
        answer = None
    if answer is not None:
        assert len(data) == len(client.make_challenge())
        assert client.verify_response(data, answer) is True
    challenge = client.make_challenge()
    assert client.verify_response(challenge, data) is False
