"""Status word flags, names and the ASSOC receive rules (ntpauto.autokey.status, errors)."""

from __future__ import annotations

import pytest

from ntpauto.autokey.status import (
    NID_DIGESTS,
    SUPPORTED_NID_DIGESTS,
    Flag,
    apply_peer_status,
    flag_names,
    host_word,
    peer_digest,
    word_flags,
    word_nid,
)
from ntpauto.events import AutokeyError, Event, FieldError
from ntpauto.wire.packet import (
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_PASSIVE,
    MODE_SERVER,
)

MD5_RSA, SHA1_RSA, DSA_SHA1 = 8, 65, 113


def test_flag_values_match_reference() -> None:
    """CRYPTO_FLAG_* values of include/ntp_crypto.h, with the RFC names as aliases."""
    assert (Flag.ENAB, Flag.TAI, Flag.PRIV, Flag.IFF, Flag.GQ, Flag.MV) == (
        0x1, 0x2, 0x10, 0x20, 0x40, 0x80)
    assert (Flag.CERT, Flag.VRFY, Flag.PROV, Flag.COOK, Flag.AUTO, Flag.SIGN, Flag.LEAP) == (
        0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000)
    assert Flag.LVAL is Flag.TAI and Flag.PC is Flag.PRIV
    assert Flag.SCHEME_MASK == Flag.PRIV | Flag.IFF | Flag.GQ | Flag.MV
    assert Flag.ALL == 0x7F00


def test_host_word_layout() -> None:
    """Word = NID << 16 | flags; e.g. a synchronized default server is 0x00080003."""
    word = host_word(MD5_RSA, Flag.ENAB | Flag.TAI)
    assert word == 0x00080003
    assert word_nid(word) == MD5_RSA
    assert word_flags(word) == Flag.ENAB | Flag.TAI
    assert host_word(DSA_SHA1, 0x1_0001) == 0x00710001  # only the low 16 bits of flags
    with pytest.raises(ValueError):
        host_word(0x10000, 0)


def test_flag_names() -> None:
    """Names lowest bit first; unknown bits as hex; the NID half is ignored."""
    assert " ".join(flag_names(0x0F00)) == "CERT VRFY PROV COOK"
    assert flag_names(0x00087F43) == [
        "ENAB", "TAI", "GQ", "CERT", "VRFY", "PROV", "COOK", "AUTO", "SIGN", "LEAP"]
    assert flag_names(0x8004) == ["0x0004", "0x8000"]
    assert flag_names(0) == []


def test_server_mode_prelights_auto() -> None:
    """A server-mode ASSOC response lights AUTO (never requested in client/server)."""
    word, error = apply_peer_status(0x00080001, 0x00080003, MODE_SERVER)
    assert error is Event.OK and not error
    assert word == 0x00080003 | Flag.AUTO


def test_missing_tai_prelights_leap() -> None:
    """A peer without TAI has no leap values: LEAP is lit so it is never requested."""
    word, error = apply_peer_status(0x00080001, 0x00080001, MODE_SERVER)
    assert error is Event.OK
    assert word == 0x00080001 | Flag.AUTO | Flag.LEAP
    word, _ = apply_peer_status(0x00080001, 0x00080001, MODE_BROADCAST)
    assert word == 0x00080001 | Flag.LEAP


def test_pc_requires_peer_pc_and_skips_cert_vrfy_sign() -> None:
    """Own PRIV: the peer must be PRIV too; CERT, VRFY and SIGN are then lit."""
    word, error = apply_peer_status(0x00080011, 0x00080013, MODE_SERVER)
    assert error is Event.OK
    assert word == 0x00080013 | Flag.CERT | Flag.VRFY | Flag.SIGN | Flag.AUTO
    word, error = apply_peer_status(0x00080011, 0x00080003, MODE_SERVER)
    assert (word, error) == (0, Event.KEY)


@pytest.mark.parametrize("mode", [MODE_ACTIVE, MODE_PASSIVE])
def test_symmetric_scheme_mismatch_is_an_error(mode: int) -> None:
    """In symmetric modes exactly one side having identity-scheme bits is refused."""
    assert apply_peer_status(0x00080023, 0x00080003, mode) == (0, Event.KEY)
    assert apply_peer_status(0x00080003, 0x00080043, mode) == (0, Event.KEY)
    word, error = apply_peer_status(0x00080023, 0x00080043, mode)
    assert error is Event.OK and word == 0x00080043


def test_scheme_mismatch_allowed_outside_symmetric_modes() -> None:
    """A client without identity keys may talk to an IFF server (it sends a NULL request)."""
    word, error = apply_peer_status(0x00080001, 0x00080023, MODE_SERVER)
    assert error is Event.OK and word & Flag.IFF


def test_unknown_nid_is_unsupported_digest() -> None:
    """A NID with no digest mapping fails with XEVNT_MD."""
    assert apply_peer_status(0x00080001, 0x04D20003, MODE_SERVER) == (0, Event.MD)
    word, error = apply_peer_status(0x00080001, 0x002A0003, MODE_SERVER,
                                    SUPPORTED_NID_DIGESTS)
    assert (word, error) == (0, Event.MD)  # shaWithRSAEncryption (SHA-0) is not verifiable


def test_peer_digest_mapping() -> None:
    """The NID table of interop.md section 2."""
    assert peer_digest(0x00080003) == "md5"
    assert peer_digest(0x00410003) == "sha1"
    assert peer_digest(0x00710003) == "sha1"
    assert peer_digest(0x029C0003) == "sha256"
    assert peer_digest(0x12340003) is None
    assert set(NID_DIGESTS) == {7, 8, 42, 65, 66, 96, 113, 119, 668}
    assert set(SUPPORTED_NID_DIGESTS) == {8, 65, 66, 113, 668}
    assert peer_digest(0x00420003) == "sha1"  # dsaWithSHA: OpenSSL 1.0 hashes with SHA-1


def test_client_mode_packet_has_no_special_rule() -> None:
    """A client-mode ASSOC (as seen by a server) lights neither AUTO nor scheme checks."""
    word, error = apply_peer_status(0x00080003, 0x00080023, MODE_CLIENT)
    assert error is Event.OK and word == 0x00080023


def test_event_codes_and_texts() -> None:
    """Event values are the XEVNT_CMD arguments; code adds CRPT_EVENT; text is logged."""
    assert [e.name for e in Event] == [
        "OK", "LEN", "TSP", "FSP", "PUB", "MD", "KEY", "SGL", "SIG", "VFY", "PER", "CKY",
        "DAT", "CRT", "ID", "ERR", "SRV"]
    assert Event.SGL.code == 0x107 and Event.SGL.text == "bad_signature_length"
    assert Event.ERR.code == 0x10F and Event.ERR.text == "protocol_error"
    assert Event.ERR.resets and not Event.LEN.resets
    assert not Event.OK and Event.LEN


def test_errors_carry_their_event() -> None:
    """FieldError is an AutokeyError (a ValueError) with event, message and offset."""
    err = FieldError(Event.CKY, "short", offset=48)
    assert isinstance(err, AutokeyError) and isinstance(err, ValueError)
    assert (err.event, err.message, err.offset) == (Event.CKY, "short", 48)
    assert "bad_or_missing_cookie" in str(err)
