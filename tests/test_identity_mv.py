"""Tests for ntpauto.identity.mv: the MV (Mu-Varadharajan) exchange, the trusted
authority's generation and revocation, and files (interop.md 6.3, 6.4, 7.1)."""

from __future__ import annotations

import io
import math
import os
import random
import stat
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from ntpauto.identity import mv
from ntpauto.identity.common import (
    MissingKeyError,
    decode_der_integers,
    encode_der_integers,
    is_probable_prime,
    jacobi,
)
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki.keyfiles import KeyFileError, read_key_file


@pytest.fixture(scope="module")
def small() -> mv.MVParameters:
    """An MV system at the reference's size (256 bits, 3 client keys), deterministic."""
    return mv.generate_mv(mv.REFERENCE_BITS, 3, random.Random(5).getrandbits)


@pytest.fixture(scope="module")
def default() -> mv.MVParameters:
    """An MV system at our default size (2048 bits, 3 client keys)."""
    return mv.generate_mv()


def scheme(system: mv.MVParameters, client: int = 1, seed: int = 0) -> mv.MVScheme:
    """Server key plus client key ``client`` of ``system``."""
    return mv.MVScheme(server=system.server, client=system.client(client), server_filestamp=3,
                       client_filestamp=3, rng=random.Random(seed).getrandbits)


def test_provides_interfaces(small):
    """Schemes and the factory provide their interfaces."""
    for candidate in (scheme(small), mv.MVScheme(server=small.server),
                      mv.MVScheme(client=small.client(1))):
        assert verifyObject(IIdentityScheme, candidate)
    assert verifyObject(IIdentitySchemeFactory, mv.MVSchemeFactory())


def test_scheme_constants(small):
    """MV is message code 9 and status bit 0x80; responses have 3 INTEGERs."""
    candidate = scheme(small)
    assert (candidate.name, candidate.message_code, candidate.status_bit) == ("mv", 9, 0x80)
    challenge = candidate.make_challenge()
    assert len(challenge) == 32
    assert len(decode_der_integers(candidate.respond(challenge))) == 3


def test_generated_structure(small):
    """Steps 1-4: distinct primes of floor(M/n) bits, q their product, p = 2q + 1 prime, g
    of order q with gcd(g, p - 1) = 1."""
    assert len(small.primes) == 3 and len(set(small.primes)) == 3
    assert all(s.bit_length() == 85 and is_probable_prime(s) for s in small.primes)
    assert small.q == math.prod(small.primes)
    assert small.p == 2 * small.q + 1 and is_probable_prime(small.p)
    assert 250 <= small.p.bit_length() <= 256
    assert math.gcd(small.g, small.p - 1) == 1 and pow(small.g, small.q, small.p) == 1
    assert all(pow(small.g, small.q // s, small.p) != 1 for s in small.primes)


def test_keys_satisfy_the_scheme_equations(small):
    """A = g^(-sum x_j^n) in effect: every client key satisfies
    gbar^xhat ghat^xbar E = 1 exactly when its prime divides the activation key."""
    p = small.p
    server = small.server
    s = small.q // small.primes[2]
    assert server.e == pow(small.a, s, p)
    assert server.gbar == pow(small.g, s, p)
    assert server.ghat == pow(small.g, s * small.b % small.q, p)
    for index in (1, 2, 3):
        client = small.client(index)
        product = pow(server.gbar, client.xhat, p) * pow(server.ghat, client.xbar, p) \
            * server.e % p
        assert (product == 1) == (index != 3)


def test_client_n_is_revoked_by_default(small):
    """As the reference: client n is revoked, the others are served."""
    assert small.revoked == frozenset({3}) and small.active == frozenset({1, 2})
    for index, expected in ((1, True), (2, True), (3, False)):
        candidate = scheme(small, index)
        challenge = candidate.make_challenge()
        assert candidate.verify_response(challenge, candidate.respond(challenge)) is expected


def test_coefficients_match_polynomial_product():
    """Step 5: the reference's in-place expansion gives the coefficients of prod (x - x_j)."""
    q = 1000003
    roots = [17, 424242, 99999, 5]
    poly = [1]
    for root in roots:  # multiply by (x - root); coefficients from x^0 up
        shifted = [0] + poly
        scaled = [(-root * c) % q for c in poly] + [0]
        poly = [(a + b) % q for a, b in zip(shifted, scaled)]
    assert mv._coefficients(roots, q) == poly
    for root in roots:
        assert sum(a * pow(root, i, q) for i, a in enumerate(poly)) % q == 0


def test_revocation_by_new_server_key(small):
    """with_revoked makes a server key for another set: client keys stay, service moves."""
    moved = small.with_revoked({1})
    assert moved.clients == small.clients and moved.revoked == frozenset({1})
    for index, expected in ((1, False), (2, True), (3, True)):
        candidate = scheme(moved, index)
        challenge = candidate.make_challenge()
        assert candidate.verify_response(challenge, candidate.respond(challenge)) is expected
    with pytest.raises(ValueError):
        small.server_key(set())
    with pytest.raises(ValueError):
        small.server_key({4})
    with pytest.raises(ValueError):
        mv.MVParameters(p=small.p, q=small.q, g=small.g, a=small.a, b=small.b,
                        clients=small.clients, server=small.server,
                        revoked=small.revoked).server_key({1})


def test_recover_primes(small):
    """The primes s_j follow from b and the client keys when n >= 3."""
    assert mv.recover_primes(small.q, small.b, small.clients) == small.primes
    assert mv.recover_primes(small.q, small.b, small.clients[:2]) is None
    assert mv.recover_primes(small.q, small.b + 1, small.clients) is None


def test_generation_limits():
    """Sizes and client counts outside the supported range are refused."""
    with pytest.raises(ValueError):
        mv.generate_mv(128, 3)
    with pytest.raises(ValueError):
        mv.generate_mv(256, 1)
    with pytest.raises(ValueError):
        mv.generate_mv(256, 17)  # 15-bit primes


def test_many_small_primes():
    """Small prime sizes (16 bits, many clients) are found by scanning the whole range."""
    system = mv.generate_mv(256, 16, random.Random(2).getrandbits)
    assert len(system.clients) == 16 and all(s.bit_length() == 16 for s in system.primes)
    assert system.p == 2 * math.prod(system.primes) + 1


def test_default_size(default):
    """Our default: about 2048 bits, three 682-bit primes, and the exchange works."""
    assert 2044 <= default.p.bit_length() <= 2048
    assert all(s.bit_length() == 682 for s in default.primes)
    candidate = scheme(default)
    challenge = candidate.make_challenge()
    assert len(challenge) == 256
    assert candidate.verify_response(challenge, candidate.respond(challenge))


@settings(max_examples=40, deadline=None)
@given(r=st.integers(min_value=1), seed=st.integers(min_value=0, max_value=2**32),
       client=st.sampled_from([1, 2]))
def test_honest_responses_verify(small, r, seed, client):
    """Every challenge 0 < r < p answered by the server verifies for active clients."""
    r = r % (small.p - 1) + 1
    candidate = scheme(small, client, seed)
    challenge = r.to_bytes(32, "big")
    assert candidate.verify_response(challenge, candidate.respond(challenge))


@pytest.fixture(scope="module")
def other(small) -> mv.MVParameters:
    """A second system of the same size (a wrong group)."""
    return mv.generate_mv(mv.REFERENCE_BITS, 3, random.Random(6).getrandbits)


@settings(max_examples=30, deadline=None)
@given(r=st.integers(min_value=1))
def test_wrong_server_key_does_not_verify(small, other, r):
    """A response by another system's server does not verify."""
    r = r % (min(small.p, other.p) - 1) + 1
    challenge = r.to_bytes(32, "big")
    forger = mv.MVScheme(server=other.server)
    assert not scheme(small).verify_response(challenge, forger.respond(challenge))


def test_degenerate_forgery_refused(small):
    """{y = r, A = 1, B = 1} satisfies the reference's equation for any client but is
    refused; so are A or B of order 2 (p - 1) or outside the group."""
    candidate = scheme(small)
    challenge = candidate.make_challenge()
    r = int.from_bytes(challenge, "big")
    p = small.p
    client = small.client(1)
    assert pow(1, client.xhat, p) * pow(1, client.xbar, p) * r % p == r
    assert not candidate.verify_response(challenge, encode_der_integers(r, 1, 1))
    assert not candidate.verify_response(challenge, encode_der_integers(r, p - 1, p - 1))
    assert not candidate.verify_response(challenge, encode_der_integers(r, p + 2, 4))
    assert not candidate.verify_response(challenge, encode_der_integers(0, 4, 4))
    honest = decode_der_integers(candidate.respond(challenge), 3)
    assert jacobi(honest[1], p) == jacobi(honest[2], p) == 1


def test_response_formula(small):
    """k has |q| bits with the top bit set, reduced mod q and coprime to q; y = E^k r,
    A = gbar^k, B = ghat^k."""
    q_bits = small.q.bit_length()
    draws = iter([0, 6])  # 2^(|q|-1) mod q, then 2^(|q|-1) + 6

    def rng(bits):
        assert bits == q_bits
        return next(draws)

    server = mv.MVScheme(server=small.server, rng=rng)
    r = 424242
    y, big_a, big_b = decode_der_integers(server.respond(r.to_bytes(32, "big")), 3)
    k = (1 << (q_bits - 1)) % small.q
    if math.gcd(k, small.q) != 1:
        k = ((1 << (q_bits - 1)) + 6) % small.q
    key = small.server
    assert y == pow(key.e, k, small.p) * r % small.p
    assert big_a == pow(key.gbar, k, small.p) and big_b == pow(key.ghat, k, small.p)


def test_server_input_checks(small):
    """Empty, not 32 octets, zero, or >= p challenges are ValueErrors on the server."""
    server = mv.MVScheme(server=small.server)
    for bad in (b"", bytes(33), b"\x01", bytes(32), small.p.to_bytes(32, "big"),
                b"\xff" * 32):
        with pytest.raises(ValueError):
            server.respond(bad)
    with pytest.raises(MissingKeyError):
        mv.MVScheme(client=small.client(1)).respond(b"\x01")


@pytest.mark.parametrize("response", [
    b"", encode_der_integers(1, 2), encode_der_integers(1, 2, 3, 4),
    encode_der_integers(1, 2, 3)[:-1], b"\x31" + encode_der_integers(1, 2, 3)[1:],
])
def test_client_rejects_bad_der(small, response):
    """Malformed responses (wrong count of INTEGERs included) are not verified."""
    assert scheme(small).verify_response(b"\x05" * 32, response) is False


def test_filestamp_rule(small):
    """MV responses must carry exactly the client key file's filestamp."""
    candidate = scheme(small)
    assert candidate.accepts_filestamp(3) and not candidate.accepts_filestamp(4)


@pytest.mark.parametrize("which", ["small", "default"])
def test_files_round_trip_and_exchange(request, tmp_path, which):
    """The bundle (2 + n keys), server key and client key load back and complete the
    exchange; the bundle knows which client is revoked and recovers the primes."""
    system = request.getfixturevalue(which)
    bundle = mv.write_bundle(tmp_path, system, "grp", 4000000002, "pw", host="ta")
    server_path = mv.write_server_key(tmp_path, system, "grp", 4000000002, "pw")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client_path = mv.write_client_key(client_dir, system.client(2), "grp", 4000000002)
    assert bundle.name == "ntpkey_MVta_grp.4000000002"
    assert os.readlink(tmp_path / "ntpkey_mvta_ta") == bundle.name
    assert server_path.name == "ntpkey_mvkey_grp.4000000002"
    assert client_path.name == "ntpkey_mvpar_grp.4000000002"
    for path in (bundle, server_path, client_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(read_key_file(bundle, "pw").private_keys) == 5

    loaded, stamp = mv.load_bundle(tmp_path / "ntpkey_mvta_grp", "pw")
    assert stamp == 4000000002
    assert loaded.clients == system.clients and loaded.server == system.server
    assert (loaded.p, loaded.q, loaded.g, loaded.a, loaded.b) == \
        (system.p, system.q, system.g, system.a, system.b)
    assert loaded.revoked == frozenset({3}) and loaded.primes == system.primes
    assert mv.load_server_key(server_path, "pw") == (system.server, 4000000002)
    assert mv.load_client_key(client_path) == (system.client(2), 4000000002)

    server = mv.MVSchemeFactory().from_keysdir(tmp_path, "grp", "pw")
    client = mv.MVSchemeFactory().from_argstring(f"{client_dir}:grp")
    challenge = client.make_challenge()
    assert client.verify_response(challenge, server.respond(challenge))
    assert client.accepts_filestamp(server.server_filestamp)


def test_reissue_from_bundle(tmp_path, small):
    """reissue revokes other clients from the bundle file alone; the client files and the
    filestamp stay the same."""
    bundle = mv.write_bundle(tmp_path, small, "grp", 77, "pw")
    system, stamp = mv.reissue(bundle, "pw", {2})
    assert stamp == 77 and system.revoked == frozenset({2})
    assert system.server == small.server_key({2})
    mv.write_server_key(tmp_path, system, "grp", stamp, "pw")
    server = mv.MVScheme.from_keysdir(tmp_path, "grp", "pw")
    for index, expected in ((1, True), (2, False), (3, True)):
        client = mv.MVScheme(client=small.client(index))
        challenge = client.make_challenge()
        assert client.verify_response(challenge, server.respond(challenge)) is expected


def test_keygen_step(tmp_path):
    """keygen(ctx, n) writes the encrypted bundle of 2 + n keys and the mvta link."""
    ctx = types.SimpleNamespace(keysdir=tmp_path, host="alice", group="alice",
                                filestamp=4004436526, password=b"alicepw", modulus=256,
                                stderr=io.StringIO())
    path = mv.keygen(ctx, 4)
    assert path.name == "ntpkey_MVta_alice.4004436526"
    key_file = read_key_file(tmp_path / "ntpkey_mvta_alice", "alicepw")
    assert len(key_file.private_keys) == 6 and key_file.kind == "mvta"
    system, _ = mv.load_bundle(path, "alicepw")
    assert system.revoked == frozenset({4}) and len(system.primes) == 4


def test_client_key_is_not_a_server_key(tmp_path, small):
    """A client key (q = 1) offered as the server key is refused."""
    path = mv.write_client_key(tmp_path, small.client(1), "grp", 1)
    with pytest.raises(KeyFileError):
        mv.load_server_key(path, None)
