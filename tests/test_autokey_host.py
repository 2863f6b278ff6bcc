"""Tests for ntpauto.autokey.host: loading reference keys directories, the status word,
signature updates, leap values, identity schemes and generating a new host
(interop.md 2, 5.9 and 7.4)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ntpauto.auth.autokey import KeyList
from ntpauto.autokey.fields import COOK, LEAP, Field, decode, signed_octets
from ntpauto.autokey.host import HostCredentials, ensure_host, generate_host, load_host
from ntpauto.autokey.status import Flag
from ntpauto.autokey.values import AutoValue, LeapValue
from ntpauto.leapfile import LeapTable
from ntpauto.pki import keyfiles
from ntpauto.pki.certificates import parse_certificate, sign_request
from ntpauto.pki.keyfiles import KeyFileError

DAY = 86400
LEAP_VALUES = LeapValue(37, 3692217600, 3694377600)


def keys(vectors: Path, scenario: str, who: str) -> Path:
    """A scenario's keys directory."""
    return vectors / "pcap" / scenario / "keys" / who


@pytest.mark.parametrize(("scenario", "who", "password", "name", "word", "profile"), [
    ("tc-rsa-md5", "alice", "alicepw", "alice@alice", 0x80001, "RSA-MD5"),
    ("tc-rsa-md5", "brenda", "brendapw", "brenda@alice", 0x80001, "RSA-MD5"),
    ("tc-rsa-sha1", "alice", "alicepw", "alice@alice", 0x410001, "RSA-SHA1"),
    ("tc-dsa-sha1", "brenda", "brendapw", "brenda@alice", 0x710001, "DSA-SHA1"),
    ("iff-trad", "alice", "alicepw", "alice@alice", 0x80021, "RSA-MD5"),
    ("iff", "alice", "alicepw", "alice@alice", 0x80021, "RSA-MD5"),
    ("gq", "alice", "alicepw", "alice@alice", 0x80041, "RSA-MD5"),
    ("mv", "alice", "alicepw", "alice@alice", 0x80081, "RSA-MD5"),
    ("mv-trad", "alice", "alicepw", "alice@alice", 0x80081, "RSA-MD5"),
    ("sym", "carol", "carolpw", "carol@alice", 0x80001, "RSA-MD5"),
])
def test_reference_keysdirs_load(vectors: Path, scenario: str, who: str, password: str,
                                 name: str, word: int, profile: str) -> None:
    """Every ntp-keygen keys directory of the vectors loads unchanged, with the status
    word the reference sent before synchronising."""
    host = load_host(keys(vectors, scenario, who), host=who, password=password)
    assert (host.name, host.group, host.status, host.profile.name) == \
        (name, "alice", word, profile)


def test_pc_host_has_priv(vectors: Path) -> None:
    """The PC files (crypto host alice in brenda's directory) give the PRIV bit."""
    host = load_host(keys(vectors, "pc", "brenda"), host="alice", password="alicepw")
    assert host.private and host.status == 0x80011


def test_separate_sign_key(vectors: Path) -> None:
    """With ntpkey_sign_H the certificate holds, and messages are signed with, the sign
    key; the host key stays the RSA key of the COOK exchange."""
    host = load_host(keys(vectors, "tc-dsa-sha1", "alice"), host="alice", password="alicepw")
    assert host.sign_key is not host.host_key
    assert host.certificate.public_key.public_numbers() == \
        host.sign_key.public_key().public_numbers()


def test_server_schemes_by_code(vectors: Path) -> None:
    """A present identity server key gives a scheme that answers its message code."""
    host = load_host(keys(vectors, "gq", "alice"), host="alice", password="alicepw")
    assert host.server_scheme(8) is not None and host.server_scheme(7) is None
    assert host.scheme_bits == Flag.GQ


# --- load errors --------------------------------------------------------------------------


def copy_keys(source: Path, target: Path) -> Path:
    """A writable copy of a keys directory (links as files naming their target)."""
    target.mkdir()
    for path in source.iterdir():
        if path.is_symlink():
            (target / path.name).symlink_to(path.readlink())
        else:
            shutil.copy(path, target / path.name)
    return target


def test_missing_host_key(tmp_path: Path) -> None:
    """An empty directory: the error names ntpkey_host_H."""
    with pytest.raises(KeyFileError, match="ntpkey_host_nobody"):
        load_host(tmp_path, host="nobody")


def test_wrong_password(vectors: Path) -> None:
    """A wrong password is reported as such, naming the file."""
    with pytest.raises(KeyFileError, match="(?i)RSAhost_alice.*wrong password"):
        load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice", password="nope")


def test_default_password_is_host_name(vectors: Path) -> None:
    """Without a password the host name is tried (and is wrong for the vectors)."""
    with pytest.raises(KeyFileError, match="wrong password"):
        load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice")


def test_certificate_not_matching_the_key(vectors: Path, tmp_path: Path) -> None:
    """A certificate that does not hold the host key is refused."""
    folder = copy_keys(keys(vectors, "tc-rsa-md5", "brenda"), tmp_path / "k")
    alice_cert = next(keys(vectors, "tc-rsa-md5", "alice").glob("ntpkey_RSA-MD5cert_*.*"))
    shutil.copy(alice_cert, folder / alice_cert.name)
    (folder / "ntpkey_cert_brenda").unlink()
    (folder / "ntpkey_cert_brenda").symlink_to(alice_cert.name)
    with pytest.raises(KeyFileError, match="does not hold the host key"):
        load_host(folder, host="brenda", password="brendapw")


def test_certificate_not_self_signed(vectors: Path, tmp_path: Path) -> None:
    """A certificate issued by someone else is refused as the host certificate."""
    folder = copy_keys(keys(vectors, "tc-rsa-md5", "brenda"), tmp_path / "k")
    alice = load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice", password="alicepw")
    brenda = load_host(folder, host="brenda", password="brendapw")
    der = sign_request(brenda.certificate.der, "alice@alice", alice.sign_key, alice.profile,
                       4004438858)
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    keyfiles.write_key_file(folder, "RSA-MD5cert", "brenda", 4004438858, pem, "cert",
                            "brenda")
    with pytest.raises(KeyFileError, match="self-signed"):
        load_host(folder, host="brenda", password="brendapw")


def test_host_key_must_be_rsa(vectors: Path, tmp_path: Path) -> None:
    """A DSA host key is refused (cookies are RSA-encrypted)."""
    folder = copy_keys(keys(vectors, "tc-dsa-sha1", "brenda"), tmp_path / "k")
    (folder / "ntpkey_host_brenda").unlink()
    (folder / "ntpkey_host_brenda").symlink_to(
        keyfiles.resolve_link(folder / "ntpkey_sign_brenda").name)
    with pytest.raises(KeyFileError, match="must be RSA"):
        load_host(folder, host="brenda", password="brendapw")


def test_unsupported_digest(vectors: Path) -> None:
    """crypto digest other than md5/sha1 is refused."""
    with pytest.raises(ValueError, match="sha256"):
        load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice", password="alicepw",
                  digest="sha256")


def test_crypto_cert_option(vectors: Path) -> None:
    """``cert`` names the certificate file instead of ntpkey_cert_H."""
    folder = keys(vectors, "tc-rsa-md5", "alice")
    name = next(folder.glob("ntpkey_RSA-MD5cert_*.*")).name
    host = load_host(folder, host="alice", password="alicepw", cert=name)
    assert host.cert_filestamp == int(name.rsplit(".", 1)[1])


# --- signature updates ----------------------------------------------------------------------


@pytest.fixture
def alice(vectors: Path) -> HostCredentials:
    """alice of tc-rsa-md5 with the captured leap values."""
    return load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice", password="alicepw",
                     leap=LEAP_VALUES)


def test_no_update_while_unsynchronised(alice: HostCredentials) -> None:
    """now = 0 signs nothing: update stays 0, TAI stays dark, COOK value unsigned."""
    assert not alice.signature_update(0)
    assert alice.update == 0 and not alice.status & Flag.TAI
    assert alice.cook_request(1).signature == b""
    with pytest.raises(ValueError):
        alice.sign_request(1)


def test_update_signs_and_sets_tai(alice: HostCredentials) -> None:
    """An update sets TAI (0x80003), stamps ASSOC, and signs the COOK value and leap
    values so that they verify with the certificate key."""
    assert alice.signature_update(4004438821)
    assert alice.status == 0x80003
    assoc = alice.assoc_field(5, response=True)
    assert (assoc.timestamp, assoc.filestamp) == (4004438821, 0x80003)
    for field in (alice.cook_request(5), alice.leap_field(5)):
        assert field.timestamp == 4004438821 and field.filestamp == alice.host_filestamp
        assert alice.profile.verify(alice.certificate.public_key, field.signature,
                                    signed_octets(field))
    assert alice.leap_values == LEAP_VALUES


def test_cook_request_is_the_captured_one(vectors: Path) -> None:
    """alice's signed COOK request of the sym capture, byte for byte."""
    host = load_host(keys(vectors, "sym", "alice"), host="alice", password="alicepw")
    host.signature_update(4004439669)
    packet = json.loads((vectors / "pcap" / "sym" / "packets.json").read_text())[3]
    meta = packet["exts"][1]
    raw = bytes.fromhex(packet["raw"])[meta["offset"]:meta["offset"] + meta["len"]]
    assert host.cook_request(6156) == decode(raw)
    assert decode(raw).code == COOK


def test_leap_table_values(vectors: Path) -> None:
    """Leap values come from the leap table at the update (era start + 25 days)."""
    table = LeapTable(entries=((3692217600, 37),), updated=3692217600,
                      expires=3692217600 + 400 * DAY)
    host = load_host(keys(vectors, "tc-rsa-md5", "alice"), host="alice", password="alicepw",
                     leap=table)
    host.signature_update(4004438821)
    assert host.leap_values == LEAP_VALUES


def test_install_leap_newest_wins(alice: HostCredentials) -> None:
    """Peer leap values replace ours only when newer; either way everything is re-signed."""
    alice.signature_update(4004438821)
    newer = LeapValue(38, 4004000000, 4005000000)
    older = LeapValue(36, 3600000000, 3600100000)
    assert not alice.install_leap(older, 4004438830)
    assert alice.leap_values == LEAP_VALUES and alice.update == 4004438830
    assert alice.install_leap(newer, 4004438840)
    assert alice.leap_values == newer and alice.leap_field(1).timestamp == 4004438840


def test_install_certificate_updates_only_when_new(alice: HostCredentials,
                                                   vectors: Path) -> None:
    """Installing a new certificate re-signs; installing it again does not."""
    alice.signature_update(4004438821)
    carol = load_host(keys(vectors, "sym", "carol"), host="carol", password="carolpw")
    alice.install_certificate(carol.certificate, carol.cert_filestamp, 4004438900)
    assert alice.update == 4004438900
    alice.install_certificate(carol.certificate, carol.cert_filestamp, 4004438950)
    assert alice.update == 4004438900
    assert alice.cache.lookup("carol@alice") is not None


def test_autokey_field_from_keylist(alice: HostCredentials) -> None:
    """The AUTO response of a key list: final key ID and N, list time, update, signed."""
    alice.signature_update(4004438821)
    keylist = KeyList.generate("127.0.0.1", "127.0.0.3", 0, now=4004438830, poll=3)
    field = alice.autokey_field(keylist, associd=9)
    assert AutoValue.decode(field.value) == AutoValue(keylist.final, keylist.index)
    assert (field.associd, field.timestamp, field.filestamp) == (9, 4004438830, 4004438821)
    assert alice.profile.verify(alice.certificate.public_key, field.signature,
                                signed_octets(field))


def test_autokey_field_unsigned_when_unsynchronised(alice: HostCredentials) -> None:
    """A list made unsynchronised (Timestamp 0) is announced unsigned."""
    assert alice.autokey_field(AutoValue(0x10000, 0), timestamp=0).signature == b""
    with pytest.raises(ValueError):
        alice.autokey_field(AutoValue(0x10000, 0))


def test_leap_field_before_update_is_unsigned(alice: HostCredentials) -> None:
    """Before any update the LEAP response has Timestamp 0 and no signature."""
    field = alice.leap_field(3)
    assert (field.code, field.timestamp, field.signature) == (LEAP, 0, b"")


def test_repr_hides_private_material(alice: HostCredentials) -> None:
    """repr names the host, not its keys."""
    text = repr(alice)
    numbers = alice.host_key.private_numbers()
    assert "alice@alice" in text
    assert str(numbers.d)[:20] not in text and "alicepw" not in text


def test_sign_field_verifies(alice: HostCredentials) -> None:
    """sign_field signs the stamps and value with the certificate's key and profile."""
    field = alice.sign_field(Field(code=COOK, response=True, timestamp=5, value=b"abcd"))
    assert alice.profile.verify(alice.certificate.public_key, field.signature,
                                signed_octets(field))


# --- client schemes -------------------------------------------------------------------------


def test_client_scheme_is_loaded_lazily(vectors: Path) -> None:
    """The IFF client parameters of a group load on first use and are remembered."""
    host = load_host(keys(vectors, "iff-trad", "brenda"), host="brenda",
                     password="brendapw")
    scheme = host.client_scheme("iff", "alice")
    assert scheme is not None and scheme.can_challenge
    assert host.client_scheme("IFF", "alice") is scheme
    assert host.client_scheme("iff", "othergroup") is None
    assert host.client_scheme("gq", "alice") is None
    assert host.client_scheme("nosuchscheme", "alice") is None


# --- generating a host ----------------------------------------------------------------------


def test_generate_host(tmp_path: Path) -> None:
    """A generated host has ntp-keygen's files (mode 0600), a trusted self-signed
    RSA-SHA256 certificate for host@group, and loads again."""
    folder = tmp_path / "keys"
    host = generate_host(folder, "newbie", "grp", now=4004438000, bits=1024)
    assert host.name == "newbie@grp" and host.certificate.trusted
    assert host.status == (668 << 16) | Flag.ENAB
    for path in folder.glob("ntpkey_*.*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_host(folder, host="newbie")
    assert again.certificate.der == host.certificate.der
    assert parse_certificate(again.certificate.der).serial == 4004438000


def test_ensure_host_generates_once(tmp_path: Path) -> None:
    """ensure_host generates on first run and loads the same keys afterwards."""
    first = ensure_host(tmp_path / "k", "solo", now=4004438000, bits=1024)
    second = ensure_host(tmp_path / "k", "solo")
    assert first.certificate.der == second.certificate.der
    assert first.host_filestamp == second.host_filestamp


def test_generate_host_refuses_dsa_scheme(tmp_path: Path) -> None:
    """The generated certificate is signed by the RSA host key: DSA schemes are refused."""
    with pytest.raises(ValueError, match="DSA"):
        generate_host(tmp_path, "x", scheme="DSA-SHA1")


def test_generate_host_with_gq(tmp_path: Path) -> None:
    """identity="gq" writes the GQ server key (status bit 0x40) and puts its public key
    in the certificate, where a client's GQ scheme finds it."""
    host = generate_host(tmp_path, "gqhost", "grp", now=4004438000, bits=1024,
                         identity="gq", identity_bits=256)
    assert host.status & Flag.GQ
    scheme = host.server_scheme(8)
    assert scheme is not None and host.certificate.gq_key_correct == scheme.server.v


def test_generate_host_refuses_mv(tmp_path: Path) -> None:
    """MV keys need their exports: generate_host refuses them."""
    with pytest.raises(ValueError, match="MV"):
        generate_host(tmp_path, "x", identity="mv")
