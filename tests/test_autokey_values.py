"""Value codecs: ASSOC name, AUTO and LEAP values, COOK request key, COOK response cookie."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.autokey.fields import FieldError
from ntpauto.autokey.values import (
    OAEP,
    AutoValue,
    LeapValue,
    decode_assoc_name,
    decode_public_key,
    decrypt_cookie,
    encode_assoc_name,
    encode_public_key,
    encrypt_cookie,
    modulus_octets,
)
from ntpauto.events import Event


def load_keygen_key(path: Path, password: bytes) -> rsa.RSAPrivateKey:
    """An ntp-keygen key file: two '#' header lines, then encrypted PKCS#8 PEM."""
    pem = path.read_bytes().split(b"\n", 2)[2]
    key = serialization.load_pem_private_key(pem, password)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def host_key(vectors: Path) -> rsa.RSAPrivateKey:
    """carol's 512-bit RSA host key from the sym scenario (as the reference uses)."""
    (path,) = (vectors / "pcap" / "sym" / "keys" / "carol").glob("ntpkey_RSAhost_carol.*")
    return load_keygen_key(path, b"carolpw")


@pytest.fixture(scope="module")
def big_key() -> rsa.RSAPrivateKey:
    """A 2048-bit key: large enough for OAEP-SHA-1 to carry a 100-octet plaintext."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# ASSOC ---------------------------------------------------------------------------------------

def test_assoc_name_round_trip() -> None:
    """The host name is sent as ASCII without a NUL."""
    assert encode_assoc_name("brenda@alice") == b"brenda@alice"
    assert decode_assoc_name(b"alice@alice") == "alice@alice"


@pytest.mark.parametrize("value", [b"", b"x" * 513])
def test_assoc_name_length_bounds(value: bytes) -> None:
    """1 <= V <= 512, else bad length."""
    with pytest.raises(FieldError) as info:
        decode_assoc_name(value)
    assert info.value.event is Event.LEN
    assert decode_assoc_name(b"x" * 512) == "x" * 512


def test_assoc_name_must_be_ascii() -> None:
    """Non-ASCII octets are refused on receive and on send."""
    with pytest.raises(FieldError):
        decode_assoc_name("bob\u00e9".encode())
    with pytest.raises(ValueError):
        encode_assoc_name("")
    with pytest.raises(UnicodeEncodeError):
        encode_assoc_name("b\u00f6b")


# AUTO / LEAP -------------------------------------------------------------------------------

def test_auto_value_key_first_then_sequence() -> None:
    """The final key ID comes first, then N (captured: key 0x96A2DB91, N 99)."""
    value = AutoValue(0x96A2DB91, 99).encode()
    assert value.hex() == "96a2db9100000063"
    assert AutoValue.decode(value) == AutoValue(0x96A2DB91, 99)


@pytest.mark.parametrize("size", [0, 4, 7, 9, 12])
def test_auto_value_must_be_8_octets(size: int) -> None:
    """Anything but 8 octets is a bad length."""
    with pytest.raises(FieldError) as info:
        AutoValue.decode(bytes(size))
    assert info.value.event is Event.LEN


def test_auto_value_sequence_is_signed() -> None:
    """The reference keeps N in an int32: 0xFFFFFFFF is -1, not 4 billion hashes."""
    assert AutoValue.decode(b"\x00\x01\x00\x00\xff\xff\xff\xff").seq == -1


def test_leap_value_round_trip_captured() -> None:
    """Captured LEAP value: TAI 37, era 2017-01-01, expiry era + 25 days."""
    leap = LeapValue(37, 3692217600, 3694377600)
    assert leap.encode().hex() == "00000025dc12c500dc33ba80"
    assert LeapValue.decode(leap.encode()) == leap
    assert leap.expire - leap.era_start == 25 * 86400


@pytest.mark.parametrize("size", [0, 8, 11, 13, 16])
def test_leap_value_must_be_12_octets(size: int) -> None:
    """Only exactly three words are leap values."""
    with pytest.raises(FieldError) as info:
        LeapValue.decode(bytes(size))
    assert info.value.event is Event.LEN


# COOK request --------------------------------------------------------------------------------

def test_public_key_is_pkcs1_der(host_key: rsa.RSAPrivateKey) -> None:
    """A 512-bit host key encodes to the 74-octet PKCS#1 RSAPublicKey and back."""
    value = encode_public_key(host_key.public_key())
    assert len(value) == 74 and value[:2] == b"\x30\x48"
    key = decode_public_key(value)
    assert key.public_numbers() == host_key.public_key().public_numbers()


def test_public_key_refuses_spki(host_key: rsa.RSAPrivateKey) -> None:
    """SubjectPublicKeyInfo is not what the reference's d2i_PublicKey reads."""
    spki = host_key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(FieldError) as info:
        decode_public_key(spki)
    assert info.value.event is Event.PUB


def test_public_key_refuses_garbage_and_dsa() -> None:
    """Unparsable values and non-RSA keys fail with bad public key."""
    with pytest.raises(FieldError) as info:
        decode_public_key(b"\x30\x03\x02\x01\x05")
    assert info.value.event is Event.PUB
    dsa_key = dsa.generate_private_key(1024).public_key()
    spki = dsa_key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(FieldError) as info:
        decode_public_key(spki)
    assert info.value.event is Event.PUB
    with pytest.raises(TypeError):
        encode_public_key(dsa_key)  # type: ignore[arg-type]


# COOK response ------------------------------------------------------------------------------

def test_cookie_encrypt_decrypt_round_trip(host_key: rsa.RSAPrivateKey) -> None:
    """OAEP ciphertext is modulus-sized (64 octets) and decrypts to the 32-bit cookie."""
    ciphertext = encrypt_cookie(0x2C4E0DC5, host_key.public_key())
    assert len(ciphertext) == modulus_octets(host_key) == 64
    assert decrypt_cookie(ciphertext, host_key) == 0x2C4E0DC5
    assert encrypt_cookie(0x2C4E0DC5, host_key.public_key()) != ciphertext  # randomised


@pytest.mark.parametrize("size", [63, 65, 0])
def test_cookie_ciphertext_must_be_modulus_size(host_key: rsa.RSAPrivateKey, size: int) -> None:
    """V must equal our modulus size."""
    with pytest.raises(FieldError) as info:
        decrypt_cookie(bytes(size), host_key)
    assert info.value.event is Event.CKY


def test_cookie_corrupt_ciphertext(host_key: rsa.RSAPrivateKey) -> None:
    """A tampered ciphertext fails OAEP decoding: bad cookie."""
    ciphertext = bytearray(encrypt_cookie(1, host_key.public_key()))
    ciphertext[10] ^= 1
    with pytest.raises(FieldError) as info:
        decrypt_cookie(bytes(ciphertext), host_key)
    assert info.value.event is Event.CKY


@pytest.mark.parametrize("size", [0, 3, 5, 100])
def test_cookie_plaintext_must_be_4_octets(big_key: rsa.RSAPrivateKey, size: int) -> None:
    """A well-formed ciphertext of anything but 4 octets is a bad cookie."""
    ciphertext = big_key.public_key().encrypt(bytes(range(size)), OAEP)
    with pytest.raises(FieldError) as info:
        decrypt_cookie(ciphertext, big_key)
    assert info.value.event is Event.CKY
    assert decrypt_cookie(big_key.public_key().encrypt(b"\x00\x00\x01\x00", OAEP),
                          big_key) == 256
