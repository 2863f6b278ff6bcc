"""Fixed-base exponentiation (ntpauto.identity.fixedbase): exactly ``pow``'s results for
every exponent class, the bounded table cache, and the schemes' responses through it."""

from __future__ import annotations

import random

import pytest

from ntpauto.identity import fixedbase
from ntpauto.identity.fixedbase import WINDOW, FixedBase, fixed_base, fixed_power
from ntpauto.identity.gq import GQScheme, generate_gq
from ntpauto.identity.iff import IFFScheme, generate_iff
from ntpauto.identity.mv import MVScheme, generate_mv

RNG = random.Random(20261202)


@pytest.mark.parametrize("bits", [1, WINDOW - 1, WINDOW, WINDOW + 1, 61, 256, 1024])
def test_power_is_pow_for_every_exponent_up_to_the_table(bits):
    modulus = RNG.getrandbits(bits + 64) | 1 | (1 << (bits + 63))
    base = RNG.randrange(2, modulus)
    table = FixedBase(base, modulus, bits)
    exponents = {0, 1, 2, (1 << bits) - 1, 1 << (bits - 1)}
    exponents |= {RNG.getrandbits(bits) for _ in range(20)}
    for exponent in exponents:
        assert table.power(exponent) == pow(base, exponent, modulus), exponent


def test_exponents_outside_the_table_fall_back_to_pow():
    modulus = 2**127 - 1  # prime, so negative exponents (inverses) exist
    table = FixedBase(3, modulus, 16)
    for exponent in (1 << 16, (1 << 40) + 5, RNG.getrandbits(300), -1, -12345):
        assert table.power(exponent) == pow(3, exponent, modulus)


def test_base_is_reduced_and_small_moduli_work():
    assert FixedBase(10, 7, 8).power(5) == pow(10, 5, 7)
    assert FixedBase(5, 2, 8).power(0) == 1
    assert FixedBase(4, 2, 8).power(3) == 0


@pytest.mark.parametrize("modulus,bits", [(1, 8), (0, 8), (-5, 8), (7, 0)])
def test_bad_tables_are_refused(modulus, bits):
    with pytest.raises(ValueError):
        FixedBase(3, modulus, bits)


def test_tables_are_cached_and_bounded():
    fixed_base.cache_clear()
    first = fixed_base(3, 1009, 16)
    assert fixed_base(3, 1009, 16) is first
    assert fixed_power(3, 77, 1009, 16) == pow(3, 77, 1009)
    for base in range(4, 40):
        fixed_base(base, 1009, 16)
    info = fixed_base.cache_info()
    assert info.currsize <= info.maxsize == 8
    assert fixed_base(3, 1009, 16) is not first  # evicted, built again


def _schemes():
    gq_params = generate_gq(512)
    iff_params = generate_iff(512)
    mv_system = generate_mv(512, 3)
    return [
        GQScheme(server=gq_params, client=gq_params.client_parameters(),
                 peer_key=gq_params.v),
        IFFScheme(server=iff_params, client=iff_params.client_parameters()),
        MVScheme(server=mv_system.server, client=mv_system.client(1)),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["gq", "iff", "mv"])
def test_scheme_responses_through_tables_verify_and_match_pow(index, monkeypatch):
    """prepare() builds the scheme's tables; the responses verify; and with the same
    random draws, a response through the tables equals the one ``pow`` computes."""
    scheme = _schemes()[index]
    fixedbase.fixed_base.cache_clear()
    scheme.prepare()
    assert fixedbase.fixed_base.cache_info().currsize == len(scheme._tables()) >= 1
    challenge = scheme.make_challenge()
    for _ in range(5):
        assert scheme.verify_response(challenge, scheme.respond(challenge))

    draws = random.Random(7)
    scheme.rng = lambda bits: draws.getrandbits(bits)
    with_tables = scheme.respond(challenge)

    class PowOnly:
        def __init__(self, table):
            self.base, self.modulus = table.base, table.modulus

        def power(self, exponent):
            return pow(self.base, exponent, self.modulus)

    plain = tuple(PowOnly(t) for t in scheme._tables())
    monkeypatch.setattr(scheme, "_tables", lambda: plain)
    draws.seed(7)
    assert scheme.respond(challenge) == with_tables


def test_a_client_only_scheme_prepares_nothing():
    params = generate_gq(512)
    fixedbase.fixed_base.cache_clear()
    GQScheme(client=params.client_parameters()).prepare()
    assert fixedbase.fixed_base.cache_info().currsize == 0
