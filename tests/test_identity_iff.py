"""Tests for ntpauto.identity.iff: the IFF (Schnorr) exchange, parameter generation and
files (interop.md 6.1, 6.4, 7.1)."""

from __future__ import annotations

import os
import random
import stat
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from ntpauto.identity import iff
from ntpauto.identity.common import (
    MissingKeyError,
    bignum_digest,
    decode_der_integers,
    encode_der_integers,
    is_probable_prime,
)
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki.keyfiles import KeyFileError, read_key_file


@pytest.fixture(scope="module")
def small() -> iff.IFFParameters:
    """IFF parameters at the reference's size (p 512, q 160 bits), deterministic."""
    return iff.generate_iff(iff.REFERENCE_BITS, random.Random(7).getrandbits)


@pytest.fixture(scope="module")
def default() -> iff.IFFParameters:
    """IFF parameters at our default size."""
    return iff.generate_iff()


def pair(params: iff.IFFParameters, seed: int = 0) -> iff.IFFScheme:
    """A scheme holding both the server key and the client parameters."""
    return iff.IFFScheme(server=params, client=params.client_parameters(), server_filestamp=9,
                         client_filestamp=9, rng=random.Random(seed).getrandbits)


def test_provides_interfaces(small):
    """Schemes (server, client, both) and the factory provide their interfaces."""
    for scheme in (pair(small), iff.IFFScheme(server=small),
                   iff.IFFScheme(client=small.client_parameters())):
        assert verifyObject(IIdentityScheme, scheme)
    assert verifyObject(IIdentitySchemeFactory, iff.IFFSchemeFactory())


def test_scheme_constants(small):
    """IFF is message code 7 and status bit 0x20."""
    scheme = pair(small)
    assert (scheme.name, scheme.message_code, scheme.status_bit) == ("iff", 7, 0x20)
    assert scheme.can_respond and scheme.can_challenge


def test_reference_size_parameters(small):
    """512-bit p with a 160-bit q dividing p - 1, g of order q, v = g^(q-b)."""
    assert small.p.bit_length() == 512 and small.q.bit_length() == 160
    assert is_probable_prime(small.p) and is_probable_prime(small.q)
    assert (small.p - 1) % small.q == 0
    assert small.g > 1 and pow(small.g, small.q, small.p) == 1
    assert 0 < small.b < small.q
    assert small.v == pow(small.g, small.q - small.b, small.p)
    assert small.v * pow(small.g, small.b, small.p) % small.p == 1


def test_small_sizes_raised_to_512():
    """As the reference's OpenSSL: asking for 256 bits gives 512."""
    params = iff.generate_iff(256, random.Random(3).getrandbits)
    assert params.p.bit_length() == 512
    with pytest.raises(ValueError):
        iff.generate_iff(8192)


def test_default_size(default):
    """Our default: 2048-bit p with a 256-bit q."""
    assert default.p.bit_length() == iff.DEFAULT_BITS == 2048
    assert default.q.bit_length() == 256
    assert (default.p - 1) % default.q == 0


def test_challenge_is_q_octets(small):
    """The challenge is L = octets of q = 20 octets."""
    assert len(pair(small).make_challenge()) == 20


def test_response_formula(small):
    """y = (b r mod q + k) mod q and h(g^k), with k uniform in 0 < k < q (|q| + 64 random
    bits reduced; no bit forced, unlike the reference's odd, unreduced k)."""
    drawn = []

    def rng(bits):
        drawn.append(bits)
        return (1 << bits) - 2  # even: the reference would have set the low bit

    scheme = iff.IFFScheme(server=small, rng=rng)
    r = 12345
    challenge = r.to_bytes(20, "big")
    y, digest = decode_der_integers(scheme.respond(challenge), 2)
    k = ((1 << 224) - 2) % small.q
    assert drawn == [160 + 64]
    assert y == (small.b * r % small.q + k) % small.q
    assert digest == bignum_digest(pow(small.g, k, small.p))


def test_nonce_drawn_again_when_y_would_be_zero(small):
    """The k that makes y = 0 (refused by every client) is replaced by the next draw."""
    r = 777
    bad_k = -small.b * r % small.q
    draws = iter([bad_k, 5])
    scheme = iff.IFFScheme(server=small, rng=lambda bits: next(draws))
    y, digest = decode_der_integers(scheme.respond(r.to_bytes(20, "big")), 2)
    assert y == (small.b * r + 5) % small.q
    assert digest == bignum_digest(pow(small.g, 5, small.p))


@settings(max_examples=60, deadline=None)
@given(r=st.integers(min_value=1), seed=st.integers(min_value=0, max_value=2**32))
def test_honest_responses_verify(small, r, seed):
    """Any challenge 1 <= r < q answered with the group key verifies."""
    r %= small.q
    r = r or 1
    scheme = pair(small, seed)
    challenge = r.to_bytes(20, "big")
    assert scheme.verify_response(challenge, scheme.respond(challenge))


@settings(max_examples=60, deadline=None)
@given(r=st.integers(min_value=1), wrong=st.integers(min_value=1))
def test_wrong_group_key_does_not_verify(small, r, wrong):
    """A response made with another group key b' != b does not verify (r != 0)."""
    r = r % (small.q - 1) + 1
    b_wrong = wrong % (small.q - 1) + 1
    if b_wrong == small.b:
        b_wrong = b_wrong % (small.q - 1) + 1
    forger = iff.IFFScheme(server=iff.IFFParameters.from_group_key(small.p, small.q, small.g,
                                                                   b_wrong))
    challenge = r.to_bytes(20, "big")
    assert not pair(small).verify_response(challenge, forger.respond(challenge))


def test_server_input_checks(small):
    """Empty, not 20 octets, zero, or >= q challenges are ValueErrors on the server."""
    scheme = iff.IFFScheme(server=small)
    with pytest.raises(ValueError):
        scheme.respond(b"")
    with pytest.raises(ValueError):
        scheme.respond(bytes(21))
    with pytest.raises(ValueError):
        scheme.respond(b"\x05\x06")
    with pytest.raises(ValueError):
        scheme.respond(bytes(20))
    with pytest.raises(ValueError):
        scheme.respond(small.q.to_bytes(20, "big"))
    with pytest.raises(ValueError):
        scheme.respond(b"\xff" * 20)


def test_missing_keys(small):
    """Without the server key respond is refused; without client parameters no challenge
    is made and nothing verifies."""
    client_only = iff.IFFScheme(client=small.client_parameters())
    with pytest.raises(MissingKeyError):
        client_only.respond(b"\x01")
    server_only = iff.IFFScheme(server=small)
    with pytest.raises(ValueError):
        server_only.make_challenge()
    challenge = b"\x01" * 20
    assert not server_only.verify_response(challenge, server_only.respond(challenge))
    assert not server_only.can_challenge and not client_only.can_respond


@pytest.mark.parametrize("response", [
    b"",
    b"\x00" * 40,
    encode_der_integers(1),
    encode_der_integers(1, 2, 3),
    bytes.fromhex("3006040101040101"),
    encode_der_integers(1, 2) + b"\x00",
    bytes.fromhex("30060201ff020101"),
])
def test_client_rejects_bad_der(small, response):
    """Malformed responses are not verified and raise nothing."""
    assert pair(small).verify_response(b"\x01" * 20, response) is False


def test_y_must_be_below_q(small):
    """y is checked 0 < y < q before any power: y + q (the same g^y) is refused, so is a huge
    y, at no cost."""
    scheme = pair(small)
    challenge = scheme.make_challenge()
    y, digest = decode_der_integers(scheme.respond(challenge), 2)
    assert scheme.verify_response(challenge, encode_der_integers(y, digest))
    assert not scheme.verify_response(challenge, encode_der_integers(y + small.q, digest))
    assert not scheme.verify_response(challenge, encode_der_integers(y + (small.q << 60000),
                                                                     digest))
    assert not scheme.verify_response(challenge, encode_der_integers(y + 1, digest))


def test_parameters_with_bad_generator_refused(tmp_path, small):
    """A file whose g is not of order q is not IFF."""
    from ntpauto.pki import keyfiles

    pem = keyfiles.dsa_traditional_pem(small.p, small.q, 2, small.v, 1)
    path = keyfiles.write_key_file(tmp_path, "iffpar", "grp", 1, pem, "iffpar", "grp")
    assert pow(2, small.q, small.p) != 1
    with pytest.raises(KeyFileError):
        iff.load_client_parameters(path)


def test_empty_or_zero_challenge_not_verified(small):
    """A response to no challenge or to r = 0 (answerable without any key: z = g^y) is never
    accepted, and the server refuses r = 0 (the reference answers it)."""
    scheme = pair(small)
    assert not scheme.verify_response(b"", encode_der_integers(0, bignum_digest(1)))
    zero = bytes(20)
    with pytest.raises(ValueError):
        scheme.respond(zero)
    assert not scheme.verify_response(zero, encode_der_integers(5, bignum_digest(
        pow(small.g, 5, small.p))))


def test_filestamp_rule(small):
    """IFF responses must carry exactly the client parameter file's filestamp."""
    scheme = pair(small)
    assert scheme.accepts_filestamp(9)
    assert not scheme.accepts_filestamp(10) and not scheme.accepts_filestamp(8)
    assert not iff.IFFScheme(server=small, server_filestamp=9).accepts_filestamp(9)


def test_for_peer_is_self(small):
    """IFF needs nothing from the peer's certificate."""
    scheme = pair(small)
    assert scheme.for_peer(object()) is scheme


@pytest.mark.parametrize("which", ["small", "default"])
def test_files_round_trip_and_exchange(request, tmp_path, which):
    """Written server key and client parameters load back (traditional PEM keeps v) and a
    server/client pair built from the directory completes the exchange."""
    params = request.getfixturevalue(which)
    server_path = iff.write_server_key(tmp_path, params, "grp", 4000000000, "pw", host="h")
    client_path = iff.write_client_parameters(tmp_path, params, "grp", 4000000000)
    assert server_path.name == "ntpkey_IFFkey_grp.4000000000"
    assert client_path.name == "ntpkey_iffpar_grp.4000000000"
    for path in (server_path, client_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_text().startswith(f"# {path.name}\n# ")
    assert os.readlink(tmp_path / "ntpkey_iffkey_h") == server_path.name
    assert os.readlink(tmp_path / "ntpkey_iffkey_grp") == server_path.name
    assert os.readlink(tmp_path / "ntpkey_iffpar_grp") == client_path.name
    assert "BEGIN DSA PRIVATE KEY" in client_path.read_text()
    assert "Proc-Type: 4,ENCRYPTED" in server_path.read_text()

    loaded, stamp = iff.load_server_key(tmp_path / "ntpkey_iffkey_grp", "pw")
    assert loaded == params and stamp == 4000000000
    client, stamp = iff.load_client_parameters(tmp_path / "ntpkey_iffpar_grp")
    assert client == params.client_parameters() and not client.public_value_recomputed

    server = iff.IFFSchemeFactory().from_argstring(f"{tmp_path}:grp:pw")
    assert server.files == ("ntpkey_iffkey_grp", "ntpkey_iffpar_grp")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    iff.write_client_parameters(client_dir, params, "grp", 4000000000)
    client_scheme = iff.IFFSchemeFactory().from_keysdir(client_dir, "grp")
    assert client_scheme.files == ("ntpkey_iffpar_grp",) and not client_scheme.can_respond
    with pytest.raises(KeyFileError, match="password"):
        iff.IFFSchemeFactory().from_keysdir(tmp_path, "grp")
    assert server.server_filestamp == client_scheme.client_filestamp == 4000000000
    challenge = client_scheme.make_challenge()
    assert client_scheme.verify_response(challenge, server.respond(challenge))
    assert client_scheme.accepts_filestamp(server.server_filestamp)


def test_encrypted_server_key_needs_right_password(tmp_path, small):
    """The server key is encrypted: no or a wrong password is a KeyFileError."""
    iff.write_server_key(tmp_path, small, "grp", 1, "secret")
    with pytest.raises(KeyFileError):
        iff.load_server_key(tmp_path / "ntpkey_iffkey_grp", None)
    with pytest.raises(KeyFileError):
        iff.load_server_key(tmp_path / "ntpkey_iffkey_grp", "wrong")
    assert iff.load_server_key(tmp_path / "ntpkey_iffkey_grp", b"secret")[0] == small


def test_from_keysdir_without_files(tmp_path):
    """A directory without IFF files for the group is a KeyFileError."""
    with pytest.raises(KeyFileError, match="no IFF files"):
        iff.IFFScheme.from_keysdir(tmp_path, "grp")


def test_wrong_file_kind_rejected(tmp_path, small):
    """A client parameter file offered as a server key is refused."""
    path = iff.write_client_parameters(tmp_path, small, "grp", 5)
    with pytest.raises(KeyFileError):
        iff.load_server_key(path, None)


def test_keygen_step(tmp_path):
    """keygen(ctx) writes the encrypted IFF server key and the host link."""
    import io

    ctx = types.SimpleNamespace(keysdir=tmp_path, host="alice", group="alice",
                                filestamp=4004436521, password=b"alicepw", modulus=256,
                                stderr=io.StringIO())
    path = iff.keygen(ctx)
    assert path == tmp_path / "ntpkey_IFFkey_alice.4004436521"
    key_file = read_key_file(tmp_path / "ntpkey_iffkey_alice", "alicepw")
    assert key_file.kind == "iffkey" and key_file.filestamp == 4004436521
    params, _ = iff.load_server_key(path, "alicepw")
    assert params.p.bit_length() == 512
    assert "ntpkey_iffkey_alice->" in ctx.stderr.getvalue()
