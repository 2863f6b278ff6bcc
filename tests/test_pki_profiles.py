"""Signature profiles: interface, plugin discovery, signing rules (interop.md 2, 5.9)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyObject

import ntpauto.plugins
from ntpauto.interfaces import ISignatureProfile
from ntpauto.pki import profiles
from ntpauto.pki.profiles import (
    BUILTIN_PROFILES,
    DSA_SHA,
    DSA_SHA1,
    RSA_MD5,
    RSA_SHA1,
    RSA_SHA256,
    UnsupportedProfile,
    digest_for_nid,
    dsa_max_signature_size,
    dsa_signing_odds,
    get_profile,
    profile_for_oid,
)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key (the smallest cryptography makes)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    """A 1024-bit DSA key with a 160-bit q in its upper quarter, as our keygen makes them."""
    while True:
        key = dsa.generate_private_key(key_size=1024)
        if dsa_signing_odds(key.parameters().parameter_numbers().q) > 0.1:
            return key


def test_dsa_signing_odds():
    """Full-length signatures are likely for a q near 2**160 and rare just above 2**159."""
    assert dsa_signing_odds((1 << 160) - 1) > 0.24
    assert dsa_signing_odds((1 << 159) + 1) < 1e-9


def test_dsa_sign_falls_back_to_longest_valid_signature():
    """With a key whose q makes full length nearly impossible, sign() still returns a valid
    (shorter) signature instead of failing."""
    while True:
        key = dsa.generate_private_key(key_size=1024)
        if dsa_signing_odds(key.parameters().parameter_numbers().q) < 0.02:
            break
    signature = DSA_SHA1.sign(key, b"data")
    assert DSA_SHA1.verify(key.public_key(), signature, b"data")


@pytest.mark.parametrize("profile", BUILTIN_PROFILES, ids=lambda p: p.name)
def test_builtin_profiles_verify_against_the_interface(profile):
    """Every built-in profile fully implements ISignatureProfile and is a plugin."""
    assert verifyObject(ISignatureProfile, profile)
    assert ISignatureProfile.providedBy(profile)
    assert IPlugin.providedBy(profile)


def test_builtin_profiles_are_discovered_with_getplugins():
    """getPlugins(ISignatureProfile, ntpauto.plugins) finds every built-in profile."""
    found = {p.name for p in getPlugins(ISignatureProfile, ntpauto.plugins)}
    assert {p.name for p in BUILTIN_PROFILES} <= found
    assert {p.name for p in profiles.all_profiles(refresh=True)} >= found


def test_profile_table_matches_the_reference_nids():
    """Names, NIDs and long names are OpenSSL's (interop.md 2)."""
    table = {p.name: (p.nid, p.digest_name, p.signature_name, p.key_type)
             for p in BUILTIN_PROFILES}
    assert table["RSA-MD5"] == (8, "md5", "md5WithRSAEncryption", "RSA")
    assert table["RSA-SHA1"] == (65, "sha1", "sha1WithRSAEncryption", "RSA")
    assert table["RSA-SHA224"][0] == 671
    assert table["RSA-SHA256"][0] == 668
    assert table["RSA-SHA384"][0] == 669
    assert table["RSA-SHA512"][0] == 670
    assert table["DSA-SHA1"] == (113, "sha1", "dsaWithSHA1", "DSA")
    assert table["DSA-SHA"] == (66, "sha1", "dsaWithSHA", "DSA")


@pytest.mark.parametrize("key", ["RSA-MD5", "rsa-md5", 8, "8", "md5WithRSAEncryption",
                                 "1.2.840.113549.1.1.4"])
def test_get_profile_by_name_nid_long_name_or_oid(key):
    """get_profile accepts the -c name in any case, the NID, the long name and the OID."""
    assert get_profile(key) is RSA_MD5


@pytest.mark.parametrize("key", ["RSA-SHA", 42, "RSA-MD2", "RSA-RIPEMD160", 119, "nonsense", 0])
def test_get_profile_refuses_what_this_build_cannot_do(key):
    """SHA-0, MD2, RIPEMD-160 and unknown names are unsupported, with a helpful message."""
    with pytest.raises(UnsupportedProfile, match="unsupported signature scheme"):
        get_profile(key)


def test_profile_for_oid():
    """The signature OID of a certificate selects its profile; unknown ones are refused."""
    assert profile_for_oid("1.2.840.10040.4.3") is DSA_SHA1
    assert profile_for_oid("1.3.14.3.2.13") is DSA_SHA
    with pytest.raises(UnsupportedProfile, match="shaWithRSAEncryption"):
        profile_for_oid("1.3.14.3.2.15")


@pytest.mark.parametrize(("nid", "digest"), [
    (8, "md5"), (65, "sha1"), (113, "sha1"), (66, "sha1"), (668, "sha256"), (671, "sha224"),
    (4, "md5"), (64, "sha1"), (42, None), (7, None), (96, None), (119, None), (0xFFFF, None),
])
def test_digest_for_nid(nid, digest):
    """Status-word NIDs map to the digest that verifies them, None when unsupported."""
    assert digest_for_nid(nid) == digest


def test_hash_algorithm_is_fresh_each_time():
    """hash_algorithm() returns a new instance of the right hash."""
    first, second = RSA_SHA1.hash_algorithm(), RSA_SHA1.hash_algorithm()
    assert isinstance(first, hashes.SHA1)
    assert first is not second


@pytest.mark.parametrize("profile", [p for p in BUILTIN_PROFILES if p.key_type == "RSA"],
                         ids=lambda p: p.name)
def test_rsa_sign_is_pkcs1v15_with_the_digest(profile, rsa_key):
    """RSA signatures are PKCS#1 v1.5 over the profile digest, as long as the modulus."""
    signature = profile.sign(rsa_key, b"timestamp|filestamp|value")
    assert len(signature) == profile.max_signature_size(rsa_key.public_key()) == 128
    rsa_key.public_key().verify(signature, b"timestamp|filestamp|value", padding.PKCS1v15(),
                                profile.hash_algorithm())
    assert profile.verify(rsa_key.public_key(), signature, b"timestamp|filestamp|value")
    assert not profile.verify(rsa_key.public_key(), signature, b"timestamp|filestamp|valuE")


def test_rsa_verify_is_false_for_wrong_key_or_garbage(rsa_key, dsa_key):
    """verify() never raises: wrong key, wrong key type or garbage give False."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    signature = RSA_MD5.sign(rsa_key, b"data")
    assert not RSA_MD5.verify(other.public_key(), signature, b"data")
    assert not RSA_MD5.verify(dsa_key.public_key(), signature, b"data")
    assert not RSA_MD5.verify(rsa_key.public_key(), b"\x00" * 128, b"data")
    assert not RSA_SHA256.verify(rsa_key.public_key(), signature, b"data")


def test_sign_with_the_wrong_key_type_raises(rsa_key, dsa_key):
    """An RSA profile refuses a DSA key and vice versa."""
    with pytest.raises(TypeError):
        RSA_MD5.sign(dsa_key, b"data")
    with pytest.raises(TypeError):
        DSA_SHA1.sign(rsa_key, b"data")
    with pytest.raises(TypeError):
        DSA_SHA1.max_signature_size(rsa_key.public_key())


@pytest.mark.parametrize(("q_bits", "size"), [(160, 48), (224, 64), (256, 72), (8, 10)])
def test_dsa_max_signature_size_matches_openssl(q_bits, size):
    """DSA_size: SEQUENCE of two INTEGERs of |q| octets plus a sign octet."""
    assert dsa_max_signature_size(q_bits) == size


def test_dsa_signatures_always_have_the_maximum_length(dsa_key):
    """Signatures are re-drawn until the DER is 48 octets (160-bit q): the reference refuses
    shorter ones as 'bad signature length' (interop.md 5.9)."""
    assert DSA_SHA1.max_signature_size(dsa_key.public_key()) == 48
    for index in range(24):
        data = b"value %d" % index
        signature = DSA_SHA1.sign(dsa_key, data)
        assert len(signature) == 48
        assert DSA_SHA1.verify(dsa_key.public_key(), signature, data)


def test_dsa_verify_accepts_shorter_valid_signatures(dsa_key):
    """verify() accepts any valid DER length; the length rule belongs to the receiver."""
    short = None
    for _ in range(200):
        signature = dsa_key.sign(b"data", hashes.SHA1())
        if len(signature) < 48:
            short = signature
            break
    assert short is not None
    assert DSA_SHA1.verify(dsa_key.public_key(), short, b"data")
    assert not DSA_SHA1.verify(dsa_key.public_key(), short, b"datA")


def test_dsa_sha_hashes_with_sha1(dsa_key):
    """DSA-SHA (NID 66) is OpenSSL 1.0's EVP_dss: SHA-1 digest, so signatures interchange."""
    signature = DSA_SHA.sign(dsa_key, b"data")
    assert DSA_SHA1.verify(dsa_key.public_key(), signature, b"data")
