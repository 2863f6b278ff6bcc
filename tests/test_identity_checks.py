"""Every value received for identity arithmetic is range and group checked before use
(issue 14): one test per degenerate class per scheme, each response built so that the
scheme's equation *holds* (using whatever knowledge that takes), so only the check refuses
it; and the server's checks of the challenge.  The helpers themselves are tested in
test_identity_common.py."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntpauto.identity import gq, iff, mv
from ntpauto.identity.common import (
    bignum_digest,
    decode_der_integers,
    encode_der_integers,
    random_prime,
)

h = bignum_digest
der = encode_der_integers
MD5_EMPTY = h(0)  # h(0) = MD5 of the empty string


def der_signed(*values: int) -> bytes:
    """DER SEQUENCE of INTEGERs, negative ones in two's complement (encode_der_integers
    refuses them)."""
    body = b""
    for value in values:
        size = (value.bit_length() + 8) // 8
        content = value.to_bytes(size, "big", signed=True)
        body += bytes([0x02, len(content)]) + content
    return bytes([0x30, len(body)]) + body


def honest_exchange(client, server) -> tuple[bytes, int, tuple[int, ...]]:
    """(challenge, r, the INTEGERs of the server's honest response), which verifies."""
    challenge = client.make_challenge()
    integers = decode_der_integers(server.respond(challenge), client.response_integers)
    assert client.verify_response(challenge, der(*integers))
    return challenge, int.from_bytes(challenge, "big"), integers


# --- IFF -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iff_params() -> iff.IFFParameters:
    """IFF at the reference's size (p 512, q 160 bits)."""
    return iff.generate_iff(iff.REFERENCE_BITS, random.Random(21).getrandbits)


@pytest.fixture
def iff_exchange(iff_params):
    """(client scheme, challenge, r, honest y, honest digest)."""
    client = iff.IFFScheme(client=iff_params.client_parameters(),
                           rng=random.Random(1).getrandbits)
    server = iff.IFFScheme(server=iff_params, rng=random.Random(2).getrandbits)
    challenge, r, (y, digest) = honest_exchange(client, server)
    return client, challenge, r, y, digest


def iff_z(params, r: int, y: int) -> int:
    """The client's z = v^r g^y mod p (y used as sent, as the reference does)."""
    return pow(params.v, r, params.p) * pow(params.g, y, params.p) % params.p


@pytest.mark.parametrize("which", ["zero", "q", "2q"])
def test_iff_y_congruent_zero_refused(iff_params, iff_exchange, which):
    """y = 0 (or q, 2q: 0 mod q) makes z = v^r, which needs no group key: refused though
    h(v^r) matches."""
    client, challenge, r, _, _ = iff_exchange
    y = {"zero": 0, "q": iff_params.q, "2q": 2 * iff_params.q}[which]
    digest = h(iff_z(iff_params, r, y))
    assert digest == h(pow(iff_params.v, r, iff_params.p))
    assert client.verify_response(challenge, der(y, digest)) is False


@pytest.mark.parametrize("shift", [0, 1, 60000])
def test_iff_y_at_or_above_q_refused(iff_params, iff_exchange, shift):
    """y + q (and y + q*2^60000): the same g^y, a second encoding of the honest response."""
    client, challenge, r, y, digest = iff_exchange
    big = y + (iff_params.q << shift)
    assert h(iff_z(iff_params, r, big % iff_params.q)) == digest
    assert client.verify_response(challenge, der(big, digest)) is False


def test_iff_negative_y_refused(iff_params, iff_exchange):
    """y - q (negative, the same residue): refused (the strict DER decoder already did)."""
    client, challenge, _, y, digest = iff_exchange
    assert client.verify_response(challenge, der_signed(y - iff_params.q, digest)) is False


def test_iff_digest_out_of_range_refused(iff_exchange):
    """A second INTEGER of 2^128 or more is no MD5 digest (never matched before either)."""
    client, challenge, _, y, digest = iff_exchange
    assert client.verify_response(challenge, der(y, digest + (1 << 128))) is False


def test_iff_server_refuses_zero_challenge(iff_params):
    """r = 0 is outside 0 < r < q."""
    with pytest.raises(ValueError, match="zero"):
        iff.IFFScheme(server=iff_params).respond(bytes(20))


@pytest.mark.parametrize("length", [1, 2, 19])
def test_iff_server_refuses_short_challenge(iff_params, length):
    """A challenge shorter than L = 20 octets is refused.  The reference (and ntpauto before
    this check) drew k from 8*V bits: for V = 1 there are 128 possible k, and one response
    gives b = (y - k)/r away."""
    with pytest.raises(ValueError, match="shorter"):
        iff.IFFScheme(server=iff_params).respond(b"\x01".rjust(length, b"\x00"))


# --- GQ ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gq_factors() -> tuple[gq.GQParameters, int, int]:
    """GQ values (512-bit n) whose primes we know, for the factor classes."""
    rng = random.Random(22).getrandbits
    p1 = random_prime(256, rng, top_two=True)
    p2 = random_prime(256, rng, top_two=True)
    n = p1 * p2
    b = rng(512) % n
    while True:
        u = rng(512) % n
        if u > 1 and math.gcd(u, n) == 1:
            break
    return gq.GQParameters(n=n, b=b, u=u, v=pow(pow(u, -1, n), b, n)), p1, p2


@pytest.fixture
def gq_exchange(gq_factors):
    """(client scheme bound to v, challenge, r, honest y, honest digest)."""
    params = gq_factors[0]
    client = gq.GQScheme(client=params.client_parameters(), peer_key=params.v,
                         rng=random.Random(3).getrandbits)
    server = gq.GQScheme(server=params, rng=random.Random(4).getrandbits)
    challenge, r, (y, digest) = honest_exchange(client, server)
    return client, challenge, r, y, digest


def gq_z(params, r: int, y: int, v: int | None = None) -> int:
    """The client's z = v^r y^b mod n."""
    v = params.v if v is None else v
    return pow(v, r, params.n) * pow(y, params.b, params.n) % params.n


@pytest.mark.parametrize("which", ["zero", "n", "3n"])
def test_gq_y_congruent_zero_refused(gq_factors, gq_exchange, which):
    """y = 0 gives z = 0 for every challenge: SEQUENCE {0, h(0)} is a response anybody can
    send, knowing nothing (the attack of issue 14); y = n or 3n the same for who knows n."""
    params = gq_factors[0]
    client, challenge, r, _, _ = gq_exchange
    y = {"zero": 0, "n": params.n, "3n": 3 * params.n}[which]
    assert gq_z(params, r, y) == 0
    assert client.verify_response(challenge, der(y, MD5_EMPTY)) is False


def test_gq_y_one_refused(gq_factors, gq_exchange):
    """y = 1 (or n + 1) gives z = v^r: anybody who knows n and v, but neither b nor u."""
    params = gq_factors[0]
    client, challenge, r, _, _ = gq_exchange
    for y in (1, params.n + 1):
        digest = h(pow(params.v, r, params.n))
        assert h(gq_z(params, r, y)) == digest
        assert client.verify_response(challenge, der(y, digest)) is False


def test_gq_y_minus_one_refused(gq_factors, gq_exchange):
    """y = n - 1 gives z = +-v^r (the sign is b's parity): a forger without b or u has one
    chance in two."""
    params = gq_factors[0]
    client, challenge, r, _, _ = gq_exchange
    y = params.n - 1
    digest = h(gq_z(params, r, y))
    assert digest in (h(pow(params.v, r, params.n)), h(params.n - pow(params.v, r, params.n)))
    assert client.verify_response(challenge, der(y, digest)) is False


@pytest.mark.parametrize("which", ["p1", "p2", "3*p1"])
def test_gq_y_sharing_a_factor_with_n_refused(gq_factors, gq_exchange, which):
    """A multiple of a prime factor of n (not a unit): refused."""
    params, p1, p2 = gq_factors
    client, challenge, r, _, _ = gq_exchange
    y = {"p1": p1, "p2": p2, "3*p1": 3 * p1}[which]
    digest = h(gq_z(params, r, y))
    assert client.verify_response(challenge, der(y, digest)) is False


@pytest.mark.parametrize("shift", [0, 1, 6000])
def test_gq_y_at_or_above_n_refused(gq_factors, gq_exchange, shift):
    """y + n (y + n*2^6000): the same residue, a second encoding of the honest response."""
    params = gq_factors[0]
    client, challenge, r, y, digest = gq_exchange
    big = y + (params.n << shift)
    assert h(gq_z(params, r, big)) == digest
    assert client.verify_response(challenge, der(big, digest)) is False


def test_gq_negative_y_refused(gq_factors, gq_exchange):
    """y - n (negative): refused (the strict DER decoder already did)."""
    client, challenge, _, y, digest = gq_exchange
    assert client.verify_response(challenge, der_signed(y - gq_factors[0].n, digest)) is False


def test_gq_digest_out_of_range_refused(gq_exchange):
    """A second INTEGER of 2^128 or more is no MD5 digest (never matched before either)."""
    client, challenge, _, y, digest = gq_exchange
    assert client.verify_response(challenge, der(y, digest + (1 << 128))) is False


@pytest.mark.parametrize("which", ["n", "2n", "1", "n-1", "p1"])
def test_gq_degenerate_certificate_key_refused(gq_factors, gq_exchange, which):
    """v (from the peer's certificate) must be a unit other than +-1 too: with v = n,
    z = 0 and {any y, h(0)} verifies; v = 1 or n - 1 drops u from the equation."""
    params, p1, _ = gq_factors
    client, challenge, r, _, _ = gq_exchange
    v = {"n": params.n, "2n": 2 * params.n, "1": 1, "n-1": params.n - 1, "p1": p1}[which]
    bound = client.with_peer_key(v)
    y = 0x1234567
    digest = h(gq_z(params, r, y, v))
    assert bound.verify_response(challenge, der(y, digest)) is False


def test_gq_server_refuses_zero_challenge(gq_factors):
    """r = 0 is outside 0 < r < n."""
    with pytest.raises(ValueError, match="zero"):
        gq.GQScheme(server=gq_factors[0]).respond(bytes(64))


@pytest.mark.parametrize("length", [1, 32, 63])
def test_gq_server_refuses_short_challenge(gq_factors, length):
    """A challenge shorter than L = 64 octets is refused.  With k of 8*V bits (the
    reference, and ntpauto before this check), two answers to {0x01} give y1/y2 = k1/k2,
    which picks (k1, k2) out of 128^2 and so u = y1/k1; then {u^r, h(1)} answers any
    challenge."""
    with pytest.raises(ValueError, match="shorter"):
        gq.GQScheme(server=gq_factors[0]).respond(b"\x01".rjust(length, b"\x00"))


# --- MV ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mv_system() -> mv.MVParameters:
    """MV at the reference's size (256 bits, 3 client keys)."""
    return mv.generate_mv(mv.REFERENCE_BITS, 3, random.Random(23).getrandbits)


@pytest.fixture
def mv_exchange(mv_system):
    """(client scheme, challenge, r, honest (y, A, B))."""
    client = mv.MVScheme(client=mv_system.client(1), rng=random.Random(5).getrandbits)
    server = mv.MVScheme(server=mv_system.server, rng=random.Random(6).getrandbits)
    return client, *honest_exchange(client, server)


def mv_y_for(system, r: int, big_a: int, big_b: int) -> int:
    """The y that makes A^xhat B^xbar y = r (mod p) for these A, B."""
    key, p = system.client(1), system.p
    return r * pow(pow(big_a, key.xhat, p) * pow(big_b, key.xbar, p), -1, p) % p


@pytest.mark.parametrize("which", ["1", "p-1", "non-residue"])
@pytest.mark.parametrize("position", ["A", "B", "both"])
def test_mv_a_b_outside_subgroup_refused(mv_system, mv_exchange, which, position):
    """A, B must be in the order-q subgroup and not 1: {r, 1, 1} satisfies the reference's
    equation for any client key; p - 1 (order 2) and p - A (a non-residue) give a response
    whose y is easily adjusted."""
    client, challenge, r, (_, honest_a, honest_b) = mv_exchange
    p = mv_system.p
    bad = {"1": 1, "p-1": p - 1}
    big_a = bad.get(which, p - honest_a) if position in ("A", "both") else honest_a
    big_b = bad.get(which, p - honest_b) if position in ("B", "both") else honest_b
    y = mv_y_for(mv_system, r, big_a, big_b)
    if (which, position) == ("1", "both"):
        assert y == r
    assert client.verify_response(challenge, der(y, big_a, big_b)) is False


@pytest.mark.parametrize("which", ["0", "p", "+p"])
@pytest.mark.parametrize("position", ["y", "A", "B"])
def test_mv_value_out_of_range_refused(mv_system, mv_exchange, which, position):
    """y, A and B must be in 0 < . < p: 0 and p (never a unit), and the honest value + p
    (a second encoding of the honest response)."""
    client, challenge, _, honest = mv_exchange
    index = "yAB".index(position)
    values = list(honest)
    values[index] = {"0": 0, "p": mv_system.p, "+p": honest[index] + mv_system.p}[which]
    assert client.verify_response(challenge, der(*values)) is False


def test_mv_server_refuses_zero_and_short_challenges(mv_system):
    """0 < r < p and exactly L = 32 octets."""
    server = mv.MVScheme(server=mv_system.server)
    with pytest.raises(ValueError, match="zero"):
        server.respond(bytes(32))
    with pytest.raises(ValueError, match="shorter"):
        server.respond(b"\x05")


# --- properties ----------------------------------------------------------------------------

_PROPERTY = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@pytest.mark.parametrize("exchange", ["iff_exchange", "gq_exchange"])
@given(y=st.integers(min_value=0, max_value=1 << 1100),
       digest=st.integers(min_value=0, max_value=1 << 130))
def test_random_values_never_verify(request, exchange, y, digest):
    """Random (y, h) do not verify (IFF, GQ)."""
    client, challenge, _, honest_y, honest_digest = request.getfixturevalue(exchange)
    if (y, digest) != (honest_y, honest_digest):
        assert client.verify_response(challenge, der(y, digest)) is False


@_PROPERTY
@given(t=st.integers(min_value=1, max_value=1 << 300))
def test_iff_other_encodings_never_verify(iff_params, iff_exchange, t):
    """y + t*q has the honest g^y but never verifies."""
    client, challenge, _, y, digest = iff_exchange
    assert client.verify_response(challenge, der(y + t * iff_params.q, digest)) is False


@_PROPERTY
@given(t=st.integers(min_value=0, max_value=1 << 300), factor=st.sampled_from([0, 1, 2]))
def test_gq_non_units_never_verify(gq_factors, gq_exchange, t, factor):
    """Any y sharing a factor with n (a multiple of p1, p2 or n), with the digest that makes
    the equation hold, never verifies."""
    params, p1, p2 = gq_factors
    client, challenge, r, _, _ = gq_exchange
    y = t * (p1, p2, params.n)[factor]
    assert client.verify_response(challenge, der(y, h(gq_z(params, r, y)))) is False


@_PROPERTY
@given(values=st.tuples(*[st.integers(min_value=0, max_value=1 << 300)] * 3))
def test_mv_random_values_never_verify(mv_exchange, values):
    """Random (y, A, B) do not verify."""
    client, challenge, _, honest = mv_exchange
    if values != honest:
        assert client.verify_response(challenge, der(*values)) is False


@_PROPERTY
@given(big_a=st.integers(min_value=2), big_b=st.integers(min_value=2))
def test_mv_non_residues_never_verify(mv_system, mv_exchange, big_a, big_b):
    """A or B outside the subgroup, with the y that makes the equation hold, never
    verifies."""
    client, challenge, r, _ = mv_exchange
    p = mv_system.p
    big_a, big_b = big_a % (p - 2) + 2, big_b % (p - 2) + 2
    if pow(big_a, (p - 1) // 2, p) == 1 and pow(big_b, (p - 1) // 2, p) == 1:
        big_a = p - big_a  # -1 is a non-residue (p = 3 mod 4)
    y = mv_y_for(mv_system, r, big_a, big_b)
    assert client.verify_response(challenge, der(y, big_a, big_b)) is False
