"""Tests for ntpauto.identity.common: digest of a bignum, challenges, the strict DER codec,
primality and the Jacobi symbol (interop.md 6)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntpauto.identity import common
from ntpauto.identity.common import (
    IdentityValueError,
    InvalidIdentityArguments,
    bignum_bytes,
    bignum_digest,
    challenge_value,
    check_range,
    check_subgroup,
    check_unit,
    decode_challenge,
    decode_der_integers,
    encode_challenge,
    encode_der_integers,
    is_probable_prime,
    jacobi,
    make_challenge,
    octet_length,
    parse_keysdir_argstring,
    random_below,
    random_prime,
    random_top_bits,
)


def constant_rng(value: int):
    """A randbits stand-in that returns ``value`` cut to the requested width."""
    return lambda bits: value & ((1 << bits) - 1)


def test_bignum_bytes_minimal():
    """Bignums are written as minimal big-endian octets; zero is the empty string."""
    assert bignum_bytes(0) == b""
    assert bignum_bytes(1) == b"\x01"
    assert bignum_bytes(255) == b"\xff"
    assert bignum_bytes(256) == b"\x01\x00"
    with pytest.raises(ValueError):
        bignum_bytes(-1)


def test_bignum_digest_is_md5_of_minimal_octets():
    """h(X) is MD5 over the minimal octets read as a big-endian integer."""
    assert bignum_digest(0) == int.from_bytes(hashlib.md5(b"").digest(), "big")
    assert bignum_digest(0x0102) == int.from_bytes(hashlib.md5(b"\x01\x02").digest(), "big")
    assert bignum_digest(0x0102) != bignum_digest(0x010200)


def test_octet_length():
    """Octet lengths of moduli, e.g. 20 for a 160-bit q."""
    assert octet_length(0) == 0
    assert octet_length(255) == 1
    assert octet_length(256) == 2
    assert octet_length((1 << 160) - 1) == 20


def test_challenge_lowest_bit_forced_then_reduced():
    """r = (8L random bits | 1) mod M: the low bit is set before the reduction."""
    modulus = 1000003  # 3 octets
    assert challenge_value(modulus, constant_rng(0)) == 1
    assert challenge_value(modulus, constant_rng(0xFFFFFE)) == 0xFFFFFF % modulus
    assert challenge_value(modulus, constant_rng(modulus - 3)) == modulus - 2


def test_challenge_draws_eight_l_bits():
    """The random source is asked for exactly 8*L bits."""
    asked = []

    def rng(bits):
        asked.append(bits)
        return 12345

    challenge_value((1 << 159) + 7, rng)
    assert asked == [160]


def test_challenge_encoded_fixed_length_left_padded():
    """Short challenges are left-padded to L octets (not left-aligned as the reference)."""
    modulus = (1 << 255) + 95
    encoded = make_challenge(modulus, constant_rng(4))
    assert len(encoded) == 32
    assert encoded == (5).to_bytes(32, "big")
    assert encode_challenge(0, modulus) == bytes(32)
    with pytest.raises(ValueError):
        encode_challenge(modulus, modulus)


@given(st.integers(min_value=0, max_value=(1 << 256) - 1))
def test_challenge_always_l_octets_and_below_modulus(bits):
    """Every generated challenge is L octets and reads back below the modulus."""
    modulus = (1 << 255) + 95
    encoded = make_challenge(modulus, constant_rng(bits))
    assert len(encoded) == 32
    assert decode_challenge(encoded, modulus) < modulus


def test_decode_challenge_server_checks():
    """Exactly L octets with 0 < r < modulus, else IdentityValueError (a ValueError)."""
    modulus = 0x1_0000_0001
    for data, reason in ((b"", "empty"), (bytes(6), "longer"), (b"\x07", "shorter"),
                         (bytes(4), "shorter"), (modulus.to_bytes(5, "big"), "below"),
                         (b"\xff" * 5, "below"), (bytes(5), "zero")):
        with pytest.raises(IdentityValueError, match=reason):
            decode_challenge(data, modulus)
    assert decode_challenge(b"\x01\x00\x00\x00\x00", modulus) == 1 << 32
    assert decode_challenge(b"\x00\x00\x00\x00\x07", modulus) == 7
    assert issubclass(IdentityValueError, ValueError)


def test_challenge_value_never_zero():
    """r = 0 (which servers refuse) is drawn again."""
    modulus = 0xFFFF_FFFF_FFFF_FFFF_FFFF_FFFF_FFFF_FFC5  # odd: (modulus - 1) | 1 == modulus
    draws = iter([modulus - 1, 6])
    assert challenge_value(modulus, lambda bits: next(draws)) == 7


def test_check_range_half_open():
    """check_range(name, v, low, high) passes exactly low <= v < high; the message names
    the value but never shows it."""
    check_range("y", 1, 1, 10)
    check_range("y", 9, 1, 10)
    for value in (0, 10, -1, 10**40):
        with pytest.raises(IdentityValueError, match="^y is out of range$"):
            check_range("y", value, 1, 10)


def test_check_unit():
    """Units other than +-1 pass; 0, 1, n - 1, n, above n and multiples of a factor fail."""
    n = 101 * 103
    check_unit("y", 2, n)
    check_unit("y", n - 2, n)
    for value in (0, 1, n - 1, n, n + 2, 101, 3 * 103, -2):
        with pytest.raises(IdentityValueError):
            check_unit("y", value, n)
    with pytest.raises(IdentityValueError, match="factor"):
        check_unit("y", 5 * 101, n)


@pytest.mark.parametrize("p, q", [(23, 11), (2 * 1019 + 1, 1019), (29, 7)])
def test_check_subgroup(p, q):
    """Exactly the elements of order q other than 1 pass (Legendre symbol for p = 2q + 1,
    the power otherwise): checked against pow for every residue."""
    assert (p - 1) % q == 0
    for value in range(-1, p + 2):
        member = 1 < value < p and pow(value, q, p) == 1
        if member:
            check_subgroup("A", value, p, q)
        else:
            with pytest.raises(IdentityValueError):
                check_subgroup("A", value, p, q)


def test_random_below():
    """0 < k < modulus from bits(modulus) + 64 random bits; 0 is drawn again."""
    asked = []
    draws = iter([0, 1000 * 97 + 5])

    def rng(bits):
        asked.append(bits)
        return next(draws)

    assert random_below(97, rng) == 5
    assert asked == [7 + 64, 7 + 64]
    assert all(0 < random_below(5) < 5 for _ in range(200))


def test_der_known_encodings():
    """DER of SEQUENCE { INTEGER ... } as OpenSSL writes it."""
    assert encode_der_integers(0) == bytes.fromhex("3003020100")
    assert encode_der_integers(127, 128) == bytes.fromhex("3007" "02017f" "02020080")
    big = encode_der_integers(1 << 2047)
    assert big[:8] == bytes.fromhex("30820105" "02820101")
    assert big[8] == 0 and len(big) == 4 + 261
    with pytest.raises(ValueError):
        encode_der_integers(-1)


@given(st.lists(st.integers(min_value=0, max_value=1 << 2100), max_size=6))
def test_der_round_trip(values):
    """Encoding then decoding gives the integers back."""
    assert decode_der_integers(encode_der_integers(*values)) == tuple(values)
    assert decode_der_integers(encode_der_integers(*values), len(values)) == tuple(values)


@pytest.mark.parametrize("hex_der", [
    "",                    # nothing
    "30",                  # no length
    "3103020101",          # SET, not SEQUENCE
    "300302010100",        # trailing octet
    "3004020101",          # truncated content
    "30800201010000",      # indefinite length
    "308103020101",        # non-minimal long-form length
    "3004020200" "01",     # non-minimal INTEGER (leading zero)
    "30030201ff",          # negative INTEGER
    "30020200",            # empty INTEGER
    "3003040101",          # OCTET STRING inside
    "3005" "3003020101",   # nested SEQUENCE
    "30050201010201",      # inner INTEGER runs past the SEQUENCE
    "3083000003020101",    # long-form length with a leading zero octet
])
def test_der_rejects_non_strict(hex_der):
    """Anything but a strict SEQUENCE of non-negative INTEGERs is a ValueError."""
    with pytest.raises(ValueError):
        decode_der_integers(bytes.fromhex(hex_der))


def test_der_count_checked():
    """A wrong number of INTEGERs is a ValueError when a count is given."""
    data = encode_der_integers(1, 2, 3)
    assert decode_der_integers(data, 3) == (1, 2, 3)
    with pytest.raises(ValueError, match="expected 2"):
        decode_der_integers(data, 2)


def test_der_decodes_captured_iff_response(vectors):
    """A reference IFF response (iff capture, packet 5) decodes to 2 INTEGERs and
    re-encodes to the same octets."""
    import json

    packets = json.loads((vectors / "pcap/iff/packets.json").read_text())
    field = next(f for f in packets[5]["exts"] if f["code"] == 7)
    raw = bytes.fromhex(field["value"])
    integers = decode_der_integers(raw, 2)
    assert integers[0].bit_length() <= 160
    assert encode_der_integers(*integers) == raw


@pytest.mark.parametrize("prime", [2, 3, 5, 65537, 1000003, (1 << 127) - 1, (1 << 521) - 1,
                                   2**255 - 19])
def test_known_primes(prime):
    """Known primes pass."""
    assert is_probable_prime(prime)


@pytest.mark.parametrize("composite", [0, 1, 4, 561, 41041, 825265, 3215031751,
                                       (1 << 128) + 1, ((1 << 61) - 1) * ((1 << 89) - 1),
                                       65537 * 65539])
def test_known_composites(composite):
    """Composites (Carmichael numbers and products of large primes) fail."""
    assert not is_probable_prime(composite)


def test_small_primes_table():
    """The small-prime table agrees with trial division."""
    assert common.SMALL_PRIMES[:6] == (2, 3, 5, 7, 11, 13)
    assert common.SMALL_PRIMES[-1] == 65521
    assert all(is_probable_prime(p) for p in common.SMALL_PRIMES[-50:])


@pytest.mark.parametrize("bits", [16, 85, 160, 512])
def test_random_prime_size(bits):
    """Random primes have exactly the requested size; top_two sets the second bit too."""
    rng = random.Random(bits).getrandbits
    prime = random_prime(bits, rng)
    assert prime.bit_length() == bits and is_probable_prime(prime)
    both = random_prime(bits, rng, top_two=True)
    assert both >> (bits - 2) == 3


def test_random_top_bits():
    """The top bit is forced."""
    assert random_top_bits(8, constant_rng(0)) == 0x80
    with pytest.raises(ValueError):
        random_top_bits(0)


@given(st.integers(min_value=-10**6, max_value=10**6),
       st.sampled_from([3, 5, 7, 11, 101, 65537, 1000003]))
def test_jacobi_is_euler_criterion_for_primes(a, p):
    """For a prime modulus the Jacobi symbol is Euler's criterion."""
    euler = pow(a, (p - 1) // 2, p)
    expected = 0 if a % p == 0 else (1 if euler == 1 else -1)
    assert jacobi(a, p) == expected


def test_jacobi_rejects_even_modulus():
    """The Jacobi symbol needs an odd positive modulus."""
    with pytest.raises(ValueError):
        jacobi(3, 8)


def test_parse_keysdir_argstring():
    """KEYSDIR:GROUP[:PASSWORD]; the password may contain ':'."""
    assert parse_keysdir_argstring("/etc/ntp:grp", "iff") == ("/etc/ntp", "grp", None)
    assert parse_keysdir_argstring("/k:g:pa:ss", "iff") == ("/k", "g", "pa:ss")
    for bad in ("", "/etc/ntp", ":grp", "/etc/ntp:"):
        with pytest.raises(InvalidIdentityArguments):
            parse_keysdir_argstring(bad, "iff")
