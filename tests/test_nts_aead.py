"""AEAD_AES_SIV_CMAC_256 and the exporter's contexts (ntpauto.nts.aead): the known answers of
RFC 5297 appendix A, through the same function NTS packets are sealed with."""

from __future__ import annotations

import pytest

from ntpauto.nts.aead import (
    AEAD_AES_SIV_CMAC_256,
    EXPORTER_LABEL,
    AeadError,
    decrypt,
    encrypt,
    export_keys,
    exporter_context,
)

# RFC 5297 appendix A.1, deterministic authenticated encryption: one associated-data
# component and no nonce.  The nonce is only the last component, so A.1 is encrypt() with
# the header as the "nonce" and no other component.
A1_KEY = bytes.fromhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
A1_AD = bytes.fromhex("101112131415161718191a1b1c1d1e1f2021222324252627")
A1_PLAINTEXT = bytes.fromhex("112233445566778899aabbccddee")
A1_OUTPUT = bytes.fromhex("85632d07c6e8f37f950acd320a2ecc93" "40c02b9690c4dc04daef7f6afe5c")

# RFC 5297 appendix A.2, nonce-based: two associated-data components, then the nonce.
A2_KEY = bytes.fromhex("7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f")
A2_AD1 = bytes.fromhex("00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa9988"
                       "7766554433221100")
A2_AD2 = bytes.fromhex("102030405060708090a0")
A2_NONCE = bytes.fromhex("09f911029d74e35bd84156c5635688c0")
A2_PLAINTEXT = bytes.fromhex("7468697320697320736f6d6520706c61696e7465787420746f20656e63727970"
                             "74207573696e67205349562d414553")
A2_OUTPUT = bytes.fromhex("7bdb6e3b432667eb06f4d14bff2fbd0f"
                          "cb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829"
                          "ea64ad544a272e9c485b62a3fd5c0d")


def test_rfc5297_a1_deterministic() -> None:
    assert encrypt(A1_KEY, A1_AD, A1_PLAINTEXT) == A1_OUTPUT
    assert decrypt(A1_KEY, A1_AD, A1_OUTPUT) == A1_PLAINTEXT


def test_rfc5297_a2_nonce_based() -> None:
    """The nonce goes last, after the associated data (RFC 5297 section 3): the order NTS
    seals packets with (the packet, then the nonce)."""
    assert encrypt(A2_KEY, A2_NONCE, A2_PLAINTEXT, A2_AD1, A2_AD2) == A2_OUTPUT
    assert decrypt(A2_KEY, A2_NONCE, A2_OUTPUT, A2_AD1, A2_AD2) == A2_PLAINTEXT


@pytest.mark.parametrize("where", ["nonce", "ad", "ciphertext", "tag", "key"])
def test_any_change_fails_authentication(where: str) -> None:
    key, nonce, ad, out = bytearray(A2_KEY), bytearray(A2_NONCE), bytearray(A2_AD1), \
        bytearray(A2_OUTPUT)
    {"nonce": nonce, "ad": ad, "ciphertext": out, "key": key}.get(where, out)[
        -1 if where != "tag" else 0] ^= 1
    with pytest.raises(AeadError):
        decrypt(bytes(key), bytes(nonce), bytes(out), bytes(ad), A2_AD2)


def test_empty_plaintext_is_the_tag_alone() -> None:
    """A client's request encrypts nothing: the authenticator is the 16-octet tag."""
    sealed = encrypt(A2_KEY, A2_NONCE, b"", b"header")
    assert len(sealed) == 16
    assert decrypt(A2_KEY, A2_NONCE, sealed, b"header") == b""
    with pytest.raises(AeadError, match="shorter than the tag"):
        decrypt(A2_KEY, A2_NONCE, sealed[:15], b"header")


def test_exporter_contexts() -> None:
    """RFC 8915 section 5.1: protocol 0 (NTPv4), the AEAD identifier, 0 for C2S, 1 for S2C."""
    assert EXPORTER_LABEL == b"EXPORTER-network-time-security"
    assert exporter_context(AEAD_AES_SIV_CMAC_256, 0) == bytes([0, 0, 0, 15, 0])
    assert exporter_context(AEAD_AES_SIV_CMAC_256, 1) == bytes([0, 0, 0, 15, 1])
    calls = []

    def export(label: bytes, length: int, context: bytes) -> bytes:
        calls.append((label, length, context))
        return bytes([context[-1]]) * length

    keys = export_keys(export, AEAD_AES_SIV_CMAC_256)
    assert calls == [(EXPORTER_LABEL, 32, bytes([0, 0, 0, 15, 0])),
                     (EXPORTER_LABEL, 32, bytes([0, 0, 0, 15, 1]))]
    assert keys.c2s == bytes(32) and keys.s2c == b"\x01" * 32
    assert "00" not in repr(keys) and "c2s=<32 octets>" in repr(keys)
