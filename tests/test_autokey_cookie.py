"""Server cookie, server seed and symmetric cookie combination (ntpauto.autokey.cookie)."""

from __future__ import annotations

import hashlib
import random

import pytest

from ntpauto.auth.autokey import next_keyid
from ntpauto.autokey.cookie import (
    KEY_REVOKE,
    ServerSeed,
    combine_cookie,
    random_cookie,
    server_cookie,
)
from ntpauto.wire.packet import MODE_ACTIVE, MODE_BROADCAST, MODE_PASSIVE, MODE_SERVER

CLIENT, SERVER = "192.0.2.10", "192.0.2.1"


class ZeroFirst:
    """Returns 0 first (which ServerSeed must refuse), then a seeded sequence."""

    def __init__(self) -> None:
        self.calls = 0
        self.rng = random.Random(7)

    def getrandbits(self, k: int) -> int:
        self.calls += 1
        return 0 if self.calls == 1 else self.rng.getrandbits(k)


def test_server_cookie_is_client_first_key_zero() -> None:
    """cookie = first 4 octets of MD5(client || server || 0 || seed)."""
    seed = 0x5EED5EED
    block = bytes([192, 0, 2, 10, 192, 0, 2, 1]) + bytes(4) + seed.to_bytes(4, "big")
    expected = int.from_bytes(hashlib.md5(block).digest()[:4], "big")
    assert server_cookie(CLIENT, SERVER, seed) == expected
    assert server_cookie(CLIENT, SERVER, seed) == next_keyid(CLIENT, SERVER, 0, seed)
    assert server_cookie(SERVER, CLIENT, seed) != expected


def test_server_cookie_depends_on_seed_and_digest() -> None:
    """A different seed or digest gives a different cookie."""
    assert server_cookie(CLIENT, SERVER, 1) != server_cookie(CLIENT, SERVER, 2)
    assert server_cookie(CLIENT, SERVER, 1, "sha1") != server_cookie(CLIENT, SERVER, 1)


def test_server_seed_refreshes_after_revoke_interval() -> None:
    """Stable within the interval, new at the deadline, never zero."""
    seed = ServerSeed(revoke=100, rng=ZeroFirst())
    first = seed.current(1000)
    assert first != 0
    assert seed.deadline == 1100
    assert seed.current(1099) == first
    second = seed.current(1100)
    assert second != first and second != 0
    assert seed.deadline == 1200
    assert seed.cookie(CLIENT, SERVER, 1150) == server_cookie(CLIENT, SERVER, second)


def test_server_seed_validity_window() -> None:
    """valid_from/valid_until bound the times at which current() changes nothing, and the
    generation counts redraws: what the hot path needs to reuse a cached cookie."""
    seed = ServerSeed(revoke=100, rng=random.Random(5))
    assert not seed.valid_from <= 1000 < seed.valid_until  # empty before the first call
    value = seed.current(1000)
    assert (seed.valid_from, seed.valid_until, seed.generation) == (1000, 1100, 0)
    assert seed.current(1050) == value and seed.generation == 0
    seed.current(1100)
    assert (seed.valid_from, seed.valid_until, seed.generation) == (1100, 1200, 1)
    seed.current(10)  # backwards step: re-anchored, not redrawn
    assert (seed.valid_from, seed.valid_until, seed.generation) == (10, 110, 1)


def test_server_seed_backwards_step_reanchors() -> None:
    """A clock stepping back does not keep the seed forever nor redraw it at once."""
    seed = ServerSeed(revoke=100, rng=random.Random(3))
    value = seed.current(5000)
    assert seed.current(10) == value
    assert seed.deadline == 110
    assert seed.current(110) != value


def test_server_seed_default_is_random_and_long_lived() -> None:
    """Default: CSPRNG seed (not the reference's 0), refreshed every 2**17 s."""
    a, b = ServerSeed(), ServerSeed()
    assert a.current(1) != 0
    assert a.current(1) != b.current(1)
    assert a.revoke == 1 << KEY_REVOKE
    with pytest.raises(ValueError):
        ServerSeed(revoke=0)


@pytest.mark.parametrize("mode", [MODE_ACTIVE, MODE_PASSIVE])
def test_symmetric_cookie_is_xor(mode: int) -> None:
    """Captured sym dance: 0xC14B05A3 XOR 0x8A5041AD = 0x4B1B440E, from either side."""
    assert combine_cookie(0xC14B05A3, 0x8A5041AD, mode) == 0x4B1B440E
    assert combine_cookie(0x8A5041AD, 0xC14B05A3, mode) == 0x4B1B440E


@pytest.mark.parametrize("mode", [MODE_SERVER, MODE_BROADCAST])
def test_non_symmetric_cookie_is_received_value(mode: int) -> None:
    """From a server (or broadcaster) the received cookie is used as is."""
    assert combine_cookie(0xC14B05A3, 0x2C4E0DC5, mode) == 0x2C4E0DC5


def test_random_cookie_uses_injected_source() -> None:
    """hcookie draws are 32-bit and reproducible with a seeded source."""
    assert random_cookie(random.Random(1)) == random.Random(1).getrandbits(32)
    assert 0 <= random_cookie() < 1 << 32
