"""Tests for ntpauto.auth.keys: the ntp.keys format, SymmetricKey and KeyStore MACs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ntpauto.auth.digest import mac_digest
from ntpauto.auth.keys import (
    KeyFileError,
    KeyStore,
    SymmetricKey,
    format_keys,
    load_keys,
    parse_keys,
)
from ntpauto.wire import packet

SHA1_HEX = "0123456789abcdef0123456789ABCDEF01234567"
CMAC_HEX = "2b7e151628aed2a6abf7158809cf4f3c"

SAMPLE = f"""\
# ntpkey_MD5key_alice.3663573984
# Sun Jan 24 12:06:24 2016

1 MD5 abcdef          # MD5 key
2 M   ]L!6:q<&P]nO4L+e
3 sha1 {SHA1_HEX}  # 40 hex digits
4 SHA  plain
5 AES128CMAC {CMAC_HEX}
6 cmac short
7 aes-128-cmac {CMAC_HEX.upper()}
   # indented comment
8\tMD5\t01234567890123456789
"""


def _store(*keys: SymmetricKey, trusted: tuple[int, ...] | None = None) -> KeyStore:
    ids = tuple(k.keyid for k in keys) if trusted is None else trusted
    return KeyStore({k.keyid: k for k in keys}, trusted=ids)


def _header() -> packet.Header:
    return packet.Header(0, 4, packet.MODE_CLIENT, 0, 6, -20, 0, 0, b"\x00" * 4,
                         0, 0, 0, 0xE0F1E2D3C4B5A697)


# --- parsing -------------------------------------------------------------------------------


def test_parse_all_forms() -> None:
    """Every accepted key type spelling and key form decodes to the right algorithm/secret."""
    keys = parse_keys(SAMPLE, "ntp.keys")
    assert sorted(keys) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert keys[1] == SymmetricKey(1, "md5", b"abcdef")
    assert keys[2] == SymmetricKey(2, "md5", b"]L!6:q<&P]nO4L+e")
    assert keys[3] == SymmetricKey(3, "sha1", bytes.fromhex(SHA1_HEX))
    assert len(keys[3].secret) == 20
    assert keys[4] == SymmetricKey(4, "sha1", b"plain")
    assert keys[5] == SymmetricKey(5, "aes128cmac", bytes.fromhex(CMAC_HEX))
    assert keys[7].secret == keys[5].secret
    assert keys[8].secret == b"01234567890123456789"


def test_twenty_hex_digits_are_ascii() -> None:
    """A key of exactly 20 characters is literal even if it looks like hex (ntpd's rule)."""
    keys = parse_keys("9 SHA1 0123456789abcdef0123\n")
    assert keys[9].secret == b"0123456789abcdef0123"


def test_cmac_short_key_is_zero_padded() -> None:
    """An ASCII (or short hex) AES128CMAC key is zero-padded to 16 octets."""
    keys = parse_keys(f"6 cmac short\n7 CMAC {'ab' * 11}\n")
    assert keys[6].secret == b"short" + bytes(11)
    assert keys[7].secret == bytes.fromhex("ab" * 11) + bytes(5)
    assert keys[6].digest_size == 16


def test_comment_directly_after_key() -> None:
    """'#' ends the key field even without a space before it."""
    assert parse_keys("1 MD5 secret#comment\n")[1].secret == b"secret"


def test_blank_and_comment_only_text() -> None:
    """Blank lines, comments and CRLF line ends give no keys and no error."""
    assert parse_keys("\r\n# one\r\n   \r\n\t# two\r\n") == {}
    assert parse_keys("1 MD5 abc\r\n")[1].secret == b"abc"


def test_keyid_bounds() -> None:
    """Key IDs 1 and 65535 are the accepted extremes."""
    assert set(parse_keys("1 MD5 a\n65535 MD5 b\n")) == {1, 65535}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("0 MD5 abc", 1, "bad key ID '0'"),
        ("65536 MD5 abc", 1, "bad key ID '65536'"),
        ("-1 MD5 abc", 1, "bad key ID '-1'"),
        ("x1 MD5 abc", 1, "bad key ID 'x1'"),
        ("# c\n\n12", 3, "missing key type and key"),
        ("1 MD5", 1, "missing key"),
        ("1 MD5 # only a comment", 1, "missing key"),
        ("1 SHA256 abc", 1, "unknown key type 'SHA256'"),
        ("1 X abc", 1, "unknown key type 'X'"),
        ("1 MD5 " + "g" * 40, 1, "'g' is not a hex digit"),
        ("1 SHA1 " + "a" * 41, 1, "too long: 41 characters"),
        ("1 SHA1 " + "a" * 21, 1, "odd number of hex digits"),
        ("1 MD5 abc 10.0.0.1", 1, "unexpected field '10.0.0.1'"),
        ("1 MD5 caf\u00e9", 1, "key contains"),
        ("1 CMAC " + "ab" * 17, 1, "AES128CMAC key is 17 octets"),
        ("1 CMAC " + "ab" * 20, 1, "AES128CMAC key is 20 octets"),
        ("1 MD5 a\n2 MD5 b\n1 SHA1 c", 3, "duplicate key ID 1 (first defined on line 1)"),
    ],
)
def test_malformed_line_names_file_and_line(text: str, line: int, fragment: str) -> None:
    """Each malformed line raises KeyFileError with 'path:line: message'."""
    with pytest.raises(KeyFileError) as info:
        parse_keys(text, "/etc/ntp.keys")
    err = info.value
    assert (err.path, err.line) == ("/etc/ntp.keys", line)
    assert str(err) == f"/etc/ntp.keys:{line}: {err.message}"
    assert fragment in err.message


def test_load_keys_from_file(tmp_path: Path) -> None:
    """load_keys reads a file (str or PathLike) and reports errors with its path."""
    path = tmp_path / "ntp.keys"
    path.write_text(SAMPLE)
    assert load_keys(path) == parse_keys(SAMPLE)
    assert load_keys(str(path))[3].algorithm == "sha1"
    path.write_text("1 MD5 ok\n2 BOGUS x\n")
    with pytest.raises(KeyFileError, match=rf"^{path}:2: key 2: unknown key type"):
        load_keys(path)


def test_load_keys_non_utf8_key(tmp_path: Path) -> None:
    """Non-UTF-8 octets in a comment are ignored, in a key field they are a line error."""
    path = tmp_path / "ntp.keys"
    path.write_bytes(b"# caf\xe9\n1 MD5 ok\n2 MD5 x\xff\n")
    with pytest.raises(KeyFileError) as info:
        load_keys(path)
    assert info.value.line == 3


def test_missing_file_names_path(tmp_path: Path) -> None:
    """A missing keys file raises KeyFileError naming the path, line 0."""
    path = tmp_path / "absent.keys"
    with pytest.raises(KeyFileError) as info:
        load_keys(path)
    assert info.value.line == 0
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: cannot read keys file: ")


# --- SymmetricKey and format_keys ----------------------------------------------------------


def test_repr_hides_secret() -> None:
    """The secret never appears in repr (it would end up in logs)."""
    key = SymmetricKey(1, "md5", b"topsecretvalue")
    assert "topsecret" not in repr(key)
    assert "keyid=1" in repr(key)


def test_digest_sizes() -> None:
    """digest_size is 16 for MD5 and CMAC, 20 for SHA-1."""
    assert SymmetricKey(1, "md5", b"a").digest_size == 16
    assert SymmetricKey(1, "sha1", b"a").digest_size == 20
    assert SymmetricKey(1, "aes128cmac", bytes(16)).digest_size == 16


@pytest.mark.parametrize(
    ("keyid", "algorithm", "secret"),
    [
        (0, "md5", b"a"),
        (65536, "md5", b"a"),
        (1, "sha256", b"a"),
        (1, "MD5", b"a"),
        (1, "md5", b""),
        (1, "md5", bytes(21)),
        (1, "aes128cmac", bytes(15)),
    ],
)
def test_symmetric_key_rejects_bad_values(keyid: int, algorithm: str, secret: bytes) -> None:
    """A SymmetricKey cannot be built with an out-of-range ID, unknown algorithm or bad size."""
    with pytest.raises(ValueError):
        SymmetricKey(keyid, algorithm, secret)


def test_format_round_trip() -> None:
    """format_keys writes text that parses back to the same keys, hex for binary secrets."""
    keys = parse_keys(SAMPLE)
    text = format_keys(reversed(list(keys.values())))
    assert parse_keys(text) == keys
    lines = text.splitlines()
    assert lines[0] == "1 MD5 abcdef"
    assert lines[2] == f"3 SHA1 {SHA1_HEX.lower()}"
    assert lines[5] == "6 AES128CMAC " + (b"short" + bytes(11)).hex()


def test_format_rejects_unwritable() -> None:
    """Duplicate IDs and short binary secrets (hex would read back as ASCII) are refused."""
    key = SymmetricKey(1, "md5", b"a")
    with pytest.raises(ValueError, match="duplicate key ID 1"):
        format_keys([key, key])
    with pytest.raises(ValueError, match="cannot be written"):
        format_keys([SymmetricKey(2, "md5", b"\x00\x01")])


# --- KeyStore ------------------------------------------------------------------------------


def test_md5_known_answer() -> None:
    """MD5 MAC for '1 MD5 abcdef' over 48 zero octets is MD5(key || message)."""
    store = KeyStore(parse_keys("1 MD5 abcdef\n"), trusted=[1])
    mac = store.sign(1, bytes(48))
    assert mac == b"\x00\x00\x00\x01" + hashlib.md5(b"abcdef" + bytes(48)).digest()


def test_cmac_known_answer_rfc4493() -> None:
    """AES-CMAC of the RFC 4493 example 2 message with its key, via a parsed SymmetricKey."""
    key = parse_keys(f"5 AES128CMAC {CMAC_HEX}\n")[5]
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    expected = bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")
    assert mac_digest(key.algorithm, key.secret, message) == expected
    assert _store(key).sign(5, message) == b"\x00\x00\x00\x05" + expected


@pytest.mark.parametrize(
    ("line", "mac_length"),
    [("1 MD5 abcdef", 20), (f"1 SHA1 {SHA1_HEX}", 24), (f"1 AES128CMAC {CMAC_HEX}", 20)],
)
def test_sign_verify_round_trip(line: str, mac_length: int) -> None:
    """sign gives key ID + digest of the right length and verify accepts it."""
    store = KeyStore(parse_keys(line), trusted=[1])
    message = bytes(range(48)) + b"\x00\x02\x00\x08\x00\x00\x00\x00"
    mac = store.sign(1, message)
    assert len(mac) == mac_length
    assert mac[:4] == b"\x00\x00\x00\x01"
    assert store.verify(1, message, mac[4:])


def test_verify_rejections() -> None:
    """verify is False for an unknown/untrusted key ID, tampering, or a wrong-length digest."""
    md5 = SymmetricKey(1, "md5", b"abcdef")
    other = SymmetricKey(2, "md5", b"abcdef")
    store = _store(md5, other, SymmetricKey(3, "md5", b"abcdef"), trusted=(1, 2, 99))
    message = bytes(48)
    digest = store.sign(1, message)[4:]
    assert store.verify(1, message, digest)
    assert store.verify(2, message, digest)  # same secret under another trusted ID is fine
    assert not store.verify(3, message, digest)  # present but not trusted
    assert not store.verify(99, message, digest)  # trusted but not in the keys file
    assert not store.verify(4, message, digest)  # unknown
    assert not store.verify(1, b"\x01" + message[1:], digest)
    assert not store.verify(1, message, bytes([digest[0] ^ 1]) + digest[1:])
    assert not store.verify(1, message, digest + b"\x00\x00\x00\x00")
    assert not store.verify(1, message, digest[:-1])
    assert not store.verify(1, message, b"")


def test_verify_sha1_rejects_md5_length() -> None:
    """A 16-octet digest never verifies under a SHA-1 key, even if it is a prefix."""
    store = KeyStore(parse_keys(f"1 SHA1 {SHA1_HEX}\n"), trusted=[1])
    digest = store.sign(1, bytes(48))[4:]
    assert store.verify(1, bytes(48), digest)
    assert not store.verify(1, bytes(48), digest[:16])


def test_store_lookup_and_trust() -> None:
    """get/is_trusted/len/in reflect the keys and the trustedkey list."""
    store = KeyStore(parse_keys(SAMPLE), trusted=[1, 3, 42])
    assert len(store) == 8 and 3 in store and 42 not in store
    assert store.get(3) is not None and store.get(3).algorithm == "sha1"
    assert store.get(42) is None
    assert store.is_trusted(1) and store.is_trusted(3)
    assert not store.is_trusted(2)
    assert not store.is_trusted(42)
    assert store.trusted == frozenset({1, 3, 42})
    assert len(KeyStore()) == 0 and not KeyStore().verify(1, b"", bytes(16))


def test_sign_unknown_key() -> None:
    """sign raises KeyError for a key ID that is not loaded."""
    with pytest.raises(KeyError):
        KeyStore().sign(7, bytes(48))


def test_store_rejects_mismatched_mapping() -> None:
    """A mapping whose key does not match the SymmetricKey's ID is an error."""
    with pytest.raises(ValueError, match="entry 2 holds key 1"):
        KeyStore({2: SymmetricKey(1, "md5", b"a")})


@pytest.mark.parametrize("algorithm_line", ["MD5 abcdef", f"SHA1 {SHA1_HEX}", f"CMAC {CMAC_HEX}"])
def test_packet_round_trip(algorithm_line: str) -> None:
    """A header signed with the store, parsed by the wire parser, verifies; a flipped bit
    in the transmit timestamp does not."""
    store = KeyStore(parse_keys(f"17 {algorithm_line}\n"), trusted=[17])
    body = _header().encode()
    data = body + store.sign(17, body)
    parsed = packet.parse(data)
    assert parsed.keyid == 17
    assert parsed.authenticated_part == body
    assert store.verify(parsed.keyid, parsed.authenticated_part, parsed.digest)
    tampered = packet.parse(data[:47] + bytes([data[47] ^ 1]) + data[48:])
    assert not store.verify(tampered.keyid, tampered.authenticated_part, tampered.digest)


def test_packet_with_extension_field() -> None:
    """The MAC covers extension fields too: header + field is what sign/verify see."""
    store = KeyStore(parse_keys("3 SHA1 abcdef\n"), trusted=[3])
    field = b"\x02\x02\x00\x1c" + bytes(24)  # 28-octet field, longer than any MAC
    body = packet.build(_header(), [field])
    parsed = packet.parse(body + store.sign(3, body))
    assert len(parsed.fields) == 1
    assert store.verify(parsed.keyid, parsed.authenticated_part, parsed.digest)


def test_verified_gives_the_trusted_key_that_signs_as_the_store_does():
    """verified() (the server's one symmetric-key check) takes the MAC's key ID word and
    returns the MAC function of a trusted key whose digest matches, the one sign() uses;
    untrusted keys, wrong digests and wrong lengths give None."""
    store = KeyStore(parse_keys("3 SHA1 0123456789abcdef0123456789abcdef01234567\n"
                                "4 MD5 untrusted\n5 MD5 alsotrusted\n"), trusted=[3, 5])
    request = bytes(range(48))
    for keyid, size in ((3, 20), (5, 16)):
        word = keyid.to_bytes(4, "big")
        digest = store.sign(keyid, request)[4:]
        mac_of = store.verified(word, request, digest)
        assert len(digest) == size and mac_of is store.trusted_mac(keyid)
        assert word + mac_of(request) == store.sign(keyid, request)
        assert store.verified(word, request, bytes(size)) is None
        assert store.verified(word, request, digest[:-1]) is None
    untrusted = store.sign(4, request)[4:]
    assert store.verified((4).to_bytes(4, "big"), request, untrusted) is None
    assert store.trusted_mac(4) is None and store.trusted_mac(70000) is None
    assert not store.verify(4, request, untrusted) and not store.verify(0, request, untrusted)


def test_md5_without_the_builtin_module_falls_back_to_hashlib(monkeypatch) -> None:
    """Where CPython's private ``_md5`` is missing, the MAC hash is hashlib's MD5, with the
    same digests as the built-in one."""
    import sys

    from ntpauto.auth import digest

    monkeypatch.setitem(sys.modules, "_md5", None)  # import _md5 raises ImportError
    fallback = digest._builtin_md5()
    assert fallback is hashlib.md5
    message = b"abcdef" + bytes(48)
    assert fallback(message).digest() == digest.md5(message).digest() \
        == hashlib.md5(message).digest()
