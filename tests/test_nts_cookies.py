"""Server cookies (ntpauto.nts.cookies): what they hold, how long they open, that a farm
sharing one secret opens each other's, and the secret file."""

from __future__ import annotations

import os
import stat

import pytest

from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
from ntpauto.nts.cookies import (
    KEEP,
    SECRET_FILE,
    CookieError,
    CookieKeyFileError,
    CookieKeys,
    cookie_length,
    load_or_create_secret,
)

KEYS = SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(range(32)), bytes(range(32, 64)))
SECRET = bytes(range(100, 132))
DAY = 86400
NOW = 1_800_000_000.0


def test_round_trip_and_layout() -> None:
    jar = CookieKeys(SECRET)
    cookie = jar.seal(KEYS, NOW)
    assert len(cookie) == cookie_length(AEAD_AES_SIV_CMAC_256) == 104
    assert int.from_bytes(cookie[:4], "big") == int(NOW // DAY)
    assert KEYS.c2s not in cookie and KEYS.s2c not in cookie
    assert jar.open(cookie, NOW) == KEYS


def test_cookies_are_unlinkable() -> None:
    """RFC 8915 section 9.1: two cookies of the same keys share nothing but the key ID."""
    jar = CookieKeys(SECRET)
    one, two = jar.seal(KEYS, NOW), jar.seal(KEYS, NOW)
    assert one[:4] == two[:4]
    assert not set(one[4 + i:8 + i] for i in range(0, 96, 4)) & set(
        two[4 + i:8 + i] for i in range(0, 96, 4))


def test_accepted_window() -> None:
    """Cookies of the last KEEP keys and of the next one open; older or newer do not."""
    jar = CookieKeys(SECRET)
    cookie = jar.seal(KEYS, NOW)
    for days in range(KEEP + 1):
        assert jar.open(cookie, NOW + days * DAY) == KEYS
    with pytest.raises(CookieError, match="not accepted"):
        jar.open(cookie, NOW + (KEEP + 1) * DAY)
    assert jar.open(cookie, NOW - DAY) == KEYS  # a host one period behind
    with pytest.raises(CookieError, match="not accepted"):
        jar.open(cookie, NOW - 2 * DAY)


def test_hosts_sharing_a_secret_open_each_others_cookies() -> None:
    one, two = CookieKeys(SECRET), CookieKeys(SECRET)
    assert two.open(one.seal(KEYS, NOW), NOW + 1) == KEYS
    with pytest.raises(CookieError, match="does not authenticate"):
        CookieKeys(bytes(32)).open(one.seal(KEYS, NOW), NOW)


def test_each_period_has_its_own_master_key() -> None:
    """A forged key ID (a cookie moved to another period) does not open."""
    jar = CookieKeys(SECRET)
    cookie = bytearray(jar.seal(KEYS, NOW))
    cookie[3] ^= 1
    with pytest.raises(CookieError, match="does not authenticate"):
        jar.open(bytes(cookie), NOW + DAY)


@pytest.mark.parametrize("position", [4, 20, 40, 103])
def test_tampered_cookies_do_not_open(position: int) -> None:
    jar = CookieKeys(SECRET)
    cookie = bytearray(jar.seal(KEYS, NOW))
    cookie[position] ^= 0x80
    with pytest.raises(CookieError):
        jar.open(bytes(cookie), NOW)


def test_short_cookie() -> None:
    with pytest.raises(CookieError, match="too short"):
        CookieKeys(SECRET).open(bytes(39), NOW)


def test_no_rotation() -> None:
    jar = CookieKeys(SECRET, rotate=0)
    cookie = jar.seal(KEYS, NOW)
    assert cookie[:4] == bytes(4)
    assert jar.open(cookie, NOW + 1000 * DAY) == KEYS
    with pytest.raises(CookieError, match="only key 0"):
        jar.open(CookieKeys(SECRET).seal(KEYS, NOW), NOW)


def test_secret_file_created_0600_then_read(tmp_path) -> None:
    secret = load_or_create_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret.hex() in path.read_text()
    assert load_or_create_secret(tmp_path) == secret


def test_secret_file_errors(tmp_path) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text("ntpauto NTS cookie secret 1\nzz\n")
    os.chmod(path, 0o600)
    with pytest.raises(CookieKeyFileError, match="not an NTS cookie secret file"):
        load_or_create_secret(tmp_path)
    path.write_text("ntpauto NTS cookie secret 1\n" + "00" * 32 + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(CookieKeyFileError, match="chmod 600") as info:
        load_or_create_secret(tmp_path)
    assert str(path) in str(info.value)
    with pytest.raises(CookieKeyFileError, match="cannot create"):
        load_or_create_secret(tmp_path / "missing")
