"""Tests for ntpauto.identity.gq: the GQ (Guillou-Quisquater) exchange, v from the
certificate, generation and files (interop.md 6.2, 6.4, 7.1)."""

from __future__ import annotations

import io
import math
import os
import random
import stat
import types

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from ntpauto.identity import gq
from ntpauto.identity.common import (
    MissingKeyError,
    bignum_digest,
    decode_der_integers,
    encode_der_integers,
)
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki import keyfiles
from ntpauto.pki.certificates import build_self_signed, parse_certificate
from ntpauto.pki.keyfiles import KeyFileError
from ntpauto.pki.profiles import get_profile


@pytest.fixture(scope="module")
def small() -> gq.GQParameters:
    """GQ values at the reference's size (256 bits), deterministic."""
    return gq.generate_gq(gq.REFERENCE_BITS, random.Random(11).getrandbits)


@pytest.fixture(scope="module")
def default() -> gq.GQParameters:
    """GQ values at our default size (2048 bits)."""
    return gq.generate_gq()


def pair(params: gq.GQParameters, seed: int = 0) -> gq.GQScheme:
    """A scheme with the server key, the client parameters and the server's v."""
    return gq.GQScheme(server=params, client=params.client_parameters(), peer_key=params.v,
                       server_filestamp=20, client_filestamp=20,
                       rng=random.Random(seed).getrandbits)


def test_provides_interfaces(small):
    """Schemes and the factory provide their interfaces."""
    for scheme in (pair(small), gq.GQScheme(server=small),
                   gq.GQScheme(client=small.client_parameters())):
        assert verifyObject(IIdentityScheme, scheme)
    assert verifyObject(IIdentitySchemeFactory, gq.GQSchemeFactory())


def test_scheme_constants(small):
    """GQ is message code 8 and status bit 0x40."""
    scheme = pair(small)
    assert (scheme.name, scheme.message_code, scheme.status_bit) == ("gq", 8, 0x40)


def test_generated_values(small):
    """n of the asked size, v = (u^-1)^b mod n, u invertible."""
    assert small.n.bit_length() == 256
    assert math.gcd(small.u, small.n) == 1
    assert small.v * pow(small.u, small.b, small.n) % small.n == 1
    assert 1 < small.b < small.n
    with pytest.raises(ValueError):
        gq.generate_gq(128)


def test_default_size(default):
    """Our default modulus is 2048 bits."""
    assert default.n.bit_length() == gq.DEFAULT_BITS == 2048
    assert default.v * pow(default.u, default.b, default.n) % default.n == 1


def test_challenge_is_n_octets(small):
    """The challenge is L = octets of n = 32 octets for 256 bits."""
    assert len(pair(small).make_challenge()) == 32


def test_response_formula(small):
    """k uniform mod n (|n| + 64 random bits reduced); y = k u^r mod n; second INTEGER
    h(k^b)."""
    drawn = []

    def rng(bits):
        drawn.append(bits)
        return (1 << bits) - 2

    scheme = gq.GQScheme(server=small, rng=rng)
    r = 99991
    y, digest = decode_der_integers(scheme.respond(r.to_bytes(32, "big")), 2)
    k = ((1 << 320) - 2) % small.n
    assert drawn == [256 + 64]
    assert y == k * pow(small.u, r, small.n) % small.n
    assert digest == bignum_digest(pow(k, small.b, small.n))


def test_nonce_drawn_again_when_y_would_be_degenerate(small):
    """A k that makes y = 1 or n - 1 (refused by every client) is replaced by the next
    draw."""
    r = 31337
    n = small.n
    inverse = pow(pow(small.u, r, n), -1, n)
    draws = iter([inverse, n - inverse, 7])
    scheme = gq.GQScheme(server=small, rng=lambda bits: next(draws))
    y, digest = decode_der_integers(scheme.respond(r.to_bytes(32, "big")), 2)
    assert y == 7 * pow(small.u, r, n) % n
    assert digest == bignum_digest(pow(7, small.b, n))


@settings(max_examples=60, deadline=None)
@given(r=st.integers(min_value=1), seed=st.integers(min_value=0, max_value=2**32))
def test_honest_responses_verify(small, r, seed):
    """Any challenge 0 < r < n answered with u verifies with v."""
    r = r % (small.n - 1) + 1
    scheme = pair(small, seed)
    challenge = r.to_bytes(32, "big")
    assert scheme.verify_response(challenge, scheme.respond(challenge))


@settings(max_examples=40, deadline=None)
@given(r=st.integers(min_value=1), wrong=st.integers(min_value=2))
def test_wrong_private_key_does_not_verify(small, r, wrong):
    """A response made with another private key u' does not verify against v."""
    r = r % (small.n - 1) + 1
    u_wrong = wrong % (small.n - 2) + 2
    if u_wrong == small.u or math.gcd(u_wrong, small.n) != 1:
        return
    forger = gq.GQScheme(server=gq.GQParameters(n=small.n, b=small.b, u=u_wrong, v=small.v))
    challenge = r.to_bytes(32, "big")
    assert not pair(small).verify_response(challenge, forger.respond(challenge))


def test_no_peer_key_no_verification(small):
    """Without v (no GQ key in the certificate) nothing verifies."""
    scheme = pair(small).with_peer_key(None)
    challenge = scheme.make_challenge()
    assert not scheme.verify_response(challenge, pair(small).respond(challenge))
    assert not scheme.for_peer(None).verify_response(challenge, pair(small).respond(challenge))


def test_server_input_checks(small):
    """Empty, not 32 octets, zero, or >= n challenges are ValueErrors on the server."""
    scheme = gq.GQScheme(server=small)
    for bad in (b"", bytes(33), b"\x01", bytes(32), small.n.to_bytes(32, "big"),
                b"\xff" * 32):
        with pytest.raises(ValueError):
            scheme.respond(bad)
    with pytest.raises(MissingKeyError):
        gq.GQScheme(client=small.client_parameters()).respond(b"\x01")


@pytest.mark.parametrize("response", [
    b"", b"\x30\x00", encode_der_integers(5), encode_der_integers(1, 2, 3),
    encode_der_integers(1, 2) + b"\x01", bytes.fromhex("3006020100050100"),
])
def test_client_rejects_bad_der(small, response):
    """Malformed responses are not verified and raise nothing."""
    assert pair(small).verify_response(b"\x02" * 32, response) is False


def test_filestamp_rule(small):
    """GQ accepts a response Filestamp at least the client's (reference: >=)."""
    scheme = pair(small)
    assert scheme.accepts_filestamp(20) and scheme.accepts_filestamp(21)
    assert not scheme.accepts_filestamp(19)


def _certificate(v: int):
    key = rsa.generate_private_key(65537, 1024)
    der = build_self_signed("alice@grp", key, get_profile("RSA-SHA256"), 4000000000,
                            trusted=True, gq_key=v)
    return parse_certificate(der)


def test_for_peer_takes_v_from_certificate(small):
    """for_peer reads v from the certificate's Subject Key Identifier."""
    cert = _certificate(small.v)
    assert cert.gq_key == cert.gq_key_correct == small.v
    client = gq.GQScheme(client=small.client_parameters(), client_filestamp=1)
    bound = client.for_peer(cert)
    assert bound.peer_key == small.v and client.peer_key is None
    challenge = bound.make_challenge()
    assert bound.verify_response(challenge, pair(small).respond(challenge))
    assert verifyObject(IIdentityScheme, bound)


def test_long_v_read_correctly_unlike_reference(default):
    """For a 2048-bit n the reference's reading (skip 2 octets) gets v wrong; for_peer uses
    the DER reading, so our client verifies where the reference's would not."""
    cert = _certificate(default.v)
    assert cert.gq_key_correct == default.v
    assert cert.gq_key != default.v
    client = gq.GQScheme(client=default.client_parameters())
    challenge = client.make_challenge()
    response = pair(default).respond(challenge)
    assert client.for_peer(cert).verify_response(challenge, response)
    assert not client.with_peer_key(cert.gq_key).verify_response(challenge, response)


@pytest.mark.parametrize("which", ["small", "default"])
def test_files_round_trip_and_exchange(request, tmp_path, which):
    """Written server key and client parameters load back and complete the exchange."""
    params = request.getfixturevalue(which)
    server_path = gq.write_server_key(tmp_path, params, "grp", 4000000001, "pw", host="h")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client_path = gq.write_client_parameters(client_dir, params, "grp", 4000000001)
    assert server_path.name == "ntpkey_GQkey_grp.4000000001"
    assert client_path.name == "ntpkey_gqpar_grp.4000000001"
    assert stat.S_IMODE(os.stat(server_path).st_mode) == 0o600
    assert os.readlink(tmp_path / "ntpkey_gqkey_h") == server_path.name
    assert "ENCRYPTED PRIVATE KEY" in server_path.read_text()
    assert gq.load_server_key(server_path, "pw") == (params, 4000000001)
    assert gq.load_client_parameters(client_path) == (params.client_parameters(), 4000000001)

    server = gq.GQSchemeFactory().from_keysdir(tmp_path, "grp", "pw")
    client = gq.GQSchemeFactory().from_argstring(f"{client_dir}:grp").with_peer_key(params.v)
    challenge = client.make_challenge()
    assert client.verify_response(challenge, server.respond(challenge))
    assert client.accepts_filestamp(server.server_filestamp)


def test_inconsistent_server_key_rejected(tmp_path, small):
    """A GQ key whose v is not (u^-1)^b mod n is refused on load."""
    pem = keyfiles.rsa_cuckoo_pem(small.n, small.b, 1, small.u, small.v + 1, 1, 1, 1)
    path = keyfiles.write_key_file(tmp_path, "GQkey", "grp", 3, pem, "gqkey", "grp")
    with pytest.raises(KeyFileError, match="not a GQ server key"):
        gq.load_server_key(path, None)


def test_keygen_step(tmp_path):
    """keygen(ctx) writes the encrypted GQ key and the ntpkey_gqkey_<host> link the
    certificate step reads v from."""
    ctx = types.SimpleNamespace(keysdir=tmp_path, host="alice", group="alice",
                                filestamp=4004436524, password=b"alicepw", modulus=256,
                                stderr=io.StringIO())
    path = gq.keygen(ctx)
    assert path.name == "ntpkey_GQkey_alice.4004436524"
    key_file = keyfiles.read_key_file(tmp_path / "ntpkey_gqkey_alice", "alicepw")
    params, stamp = gq.load_server_key(tmp_path / "ntpkey_gqkey_alice", "alicepw")
    assert key_file.private_key.private_numbers().q == params.v
    assert params.n.bit_length() == 256 and stamp == 4004436524
