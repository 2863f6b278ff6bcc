"""The reference's key files and captures against ntpauto.pki: every key file loads and
inspects, every certificate parses with the right flags, every captured signature verifies,
SIGN responses are reproduced, and ntp-keygen's certificates are rebuilt byte for byte
(vectors/keys/README.md, interop.md 5.3, 5.7, 5.9, 6.4, 7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.cli.inspect import describe
from ntpauto.pki.certificates import (
    CertInfo,
    build_self_signed,
    check_cert_response,
    parse_certificate,
    sign_request,
    verify_issued_by,
    verify_self_signed,
)
from ntpauto.pki.dsa_structure import DSAStructure
from ntpauto.pki.keyfiles import KeyFile, read_key_file
from ntpauto.pki.profiles import DSA_SHA1, profile_for_certificate

KEY_SCENARIOS = ["gq", "iff", "iff-trad", "mv", "mv-trad", "pc", "sym", "tc-dsa-sha1",
                 "tc-rsa-md5", "tc-rsa-sha1"]
CAPTURES = ["bcast-gq", "bcast-tc", "gq", "iff", "iff-trad", "mv", "mv-trad", "pc", "sym",
            "tc-dsa-sha1", "tc-rsa-md5", "tc-rsa-sha1"]
PASSWORDS = {"alice": "alicepw", "brenda": "brendapw", "carol": "carolpw"}
"""vectors/keys/README.md: each file's password is its owner's (pc/brenda holds alice's)."""

SIZES = {
    # type in the file name -> (kind, check of the loaded keys)
    "RSAhost": ("host", lambda keys: _rsa_bits(keys) == [512]),
    "RSAsign": ("sign", lambda keys: _rsa_bits(keys) == [512]),
    "DSAsign": ("sign", lambda keys: _dsa_pq(keys) == [(512, 160)]),
    "IFFkey": ("iffkey", lambda keys: _dsa_pq(keys) == [(512, 160)]),
    "iffpar": ("iffpar", lambda keys: _dsa_pq(keys) == [(512, 160)]),
    "GQkey": ("gqkey", lambda keys: _rsa_bits(keys) == [256]),
    "gqpar": ("gqpar", lambda keys: _rsa_bits(keys) == [256]),
    "MVta": ("mvta", lambda keys: [p for p, _q in _dsa_pq(keys)] == [256] * 5),
    "mvkey": ("mvkey", lambda keys: _dsa_pq(keys) == [(256, 255)]),
    "mvpar": ("mvpar", lambda keys: _dsa_pq(keys) == [(256, 1)]),
}


def _rsa_bits(keys) -> list[int]:
    return [k.key_size for k in keys if isinstance(k, rsa.RSAPrivateKey)]


def _dsa_pq(keys) -> list[tuple[int, int]]:
    """(p, q) sizes of DSA sign keys (cryptography's) and IFF/MV structures (ours)."""
    result = []
    for key in keys:
        if isinstance(key, dsa.DSAPrivateKey):
            key = key.private_numbers().public_numbers.parameter_numbers
        assert isinstance(key, DSAStructure | dsa.DSAParameterNumbers)
        result.append((key.p.bit_length(), key.q.bit_length()))
    return result


def _values(key) -> object:
    """Comparable values of a loaded key: the DSA structure itself or cryptography's numbers."""
    return key if isinstance(key, DSAStructure) else key.private_numbers()


def _files(folder: Path) -> list[Path]:
    """The ntp-keygen files of a host directory (links excluded: named without filestamp)."""
    return sorted(p for p in folder.glob("ntpkey_*") if re.search(r"\.\d+$", p.name))


def _read(path: Path) -> KeyFile:
    owner = re.match(r"ntpkey_[^_]+_([^.]+)\.", path.name).group(1)
    return read_key_file(path, PASSWORDS[owner])


def _der(kf: KeyFile) -> bytes:
    return kf.certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("scenario", KEY_SCENARIOS)
def test_every_key_file_loads_with_the_readme_passwords(vectors, scenario):
    """Each file loads with its owner's password; kind, owner and filestamp (the number in
    the first line) are right; key sizes are ntp-keygen's defaults."""
    checked = 0
    for host_dir in sorted((vectors / "keys" / scenario).iterdir()):
        for path in _files(host_dir):
            kf = _read(path)
            first_line = path.read_text().split("\n")[0]
            assert kf.filestamp == int(first_line.rsplit(".", 1)[1]), path
            assert kf.name == first_line[2:] == path.name, path
            assert kf.owner in PASSWORDS, path
            if kf.kind == "cert":
                assert kf.type_name.endswith("cert") and len(kf.certificates) == 1, path
            else:
                kind, check = SIZES[kf.type_name]
                assert kf.kind == kind, path
                assert check(kf.private_keys), path
            assert kf.encrypted == ("ENCRYPTED" in path.read_text()), path
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("scenario", KEY_SCENARIOS)
def test_every_key_file_inspects(vectors, scenario):
    """``ntpauto inspect`` describes each file: owner, filestamp date, sizes."""
    for host_dir in sorted((vectors / "keys" / scenario).iterdir()):
        for path in _files(host_dir):
            kf = _read(path)
            lines = describe(str(path), PASSWORDS[kf.owner])
            text = "\n".join(lines)
            assert f"owner:     {kf.owner}" in text
            assert f"filestamp: {kf.filestamp} (2026-11-23 " in text
            if kf.type_name in ("RSAhost", "RSAsign"):
                assert "RSA 512 bits" in text
            if kf.type_name == "DSAsign":
                assert "DSA 512 bits (q 160 bits)" in text
            if kf.kind == "cert":
                assert "subject:   " in text and "valid:     2026-11-23" in text


def test_links_resolve_to_the_files_they_name(vectors):
    """Every link (stored as a stub file in the vectors) reads as the file it names."""
    count = 0
    for link in sorted((vectors / "keys").glob("*/*/ntpkey_*")):
        if re.search(r"\.\d+$", link.name):
            continue
        target = link.read_text().strip()
        owner = re.match(r"ntpkey_[^_]+_([^.]+)\.", target).group(1)
        kf = read_key_file(link, PASSWORDS[owner])
        assert kf.path.name == target
        count += 1
    assert count > 40


def test_unencrypted_copies_hold_the_same_keys(vectors):
    """The decrypted copies under unencrypted/ load without password to the same keys."""
    count = 0
    for copy in sorted((vectors / "keys/unencrypted").glob("*/*/*.unencrypted.pem")):
        scenario, host = copy.parts[-3], copy.parts[-2]
        original = vectors / "keys" / scenario / host / copy.name.replace(".unencrypted.pem", "")
        plain = read_key_file(copy)
        assert not plain.encrypted
        assert [_values(k) for k in plain.private_keys] == \
            [_values(k) for k in _read(original).private_keys]
        count += 1
    assert count >= 20


def _certificates(vectors) -> list[tuple[str, str, Path]]:
    result = []
    for scenario in KEY_SCENARIOS:
        for host_dir in sorted((vectors / "keys" / scenario).iterdir()):
            for path in _files(host_dir):
                if "cert_" in path.name:
                    result.append((scenario, host_dir.name, path))
    return result


def test_every_certificate_parses_with_the_right_flags(vectors):
    """Subjects, flags (-T trusted, -P private), serial = notBefore = filestamp, 365 days,
    signature NID, self-signature."""
    nids = {"tc-rsa-sha1": 65, "tc-dsa-sha1": 113}
    certs = _certificates(vectors)
    assert len(certs) == 20
    for scenario, _host, path in certs:
        kf = _read(path)
        info = parse_certificate(_der(kf))
        owner = kf.owner
        assert info.subject == info.issuer == f"{owner}@alice", path
        assert info.private == (scenario == "pc"), path
        assert info.trusted == (owner in ("alice", "carol") and scenario != "pc"), path
        assert info.serial == info.not_before_ntp == kf.filestamp, path
        assert info.not_after_ntp - info.not_before_ntp == 365 * 86400, path
        assert info.signature_nid == nids.get(scenario, 8), path
        assert verify_self_signed(info), path
        has_gq = scenario == "gq" and owner == "alice"
        assert (info.gq_key is not None) == has_gq, path
        assert [e.oid for e in info.extensions][:2] == ["2.5.29.19", "2.5.29.15"]


def test_gq_certificate_key_equals_the_gq_key_file_q_field(vectors):
    """The SKI of the GQ certificate is the GQ key file's q field (v), read either way."""
    info = parse_certificate(_der(read_key_file(vectors / "keys/gq/alice/ntpkey_cert_alice")))
    gq = _read(vectors / "keys/gq/alice/ntpkey_GQkey_alice.4004436524").private_key
    assert info.gq_key == info.gq_key_correct == gq.private_numbers().q
    client = read_key_file(vectors / "keys/gq/brenda/ntpkey_gqpar_alice").private_key
    assert client.private_numbers().public_numbers.n == gq.private_numbers().public_numbers.n


def test_certificates_we_build_equal_ntp_keygens(vectors):
    """From the same key, name, filestamp and flags our certificate is byte-identical to
    ntp-keygen's (RSA; PKCS#1 v1.5 is deterministic) or has the identical TBSCertificate
    (DSA), so the extension layout (OIDs, criticality, order) matches too."""
    for scenario, _host, path in _certificates(vectors):
        kf = _read(path)
        ref = parse_certificate(_der(kf))
        folder = path.parent
        sign_link = folder / f"ntpkey_sign_{kf.owner}"
        key_path = sign_link if sign_link.exists() else folder / f"ntpkey_host_{kf.owner}"
        sign_key = read_key_file(key_path, PASSWORDS[kf.owner]).private_key
        profile = profile_for_certificate(ref)
        der = build_self_signed(ref.subject, sign_key, profile, kf.filestamp,
                                trusted=ref.trusted, private=ref.private, gq_key=ref.gq_key)
        mine = parse_certificate(der)
        assert [(e.oid, e.critical, e.value) for e in mine.extensions] == \
            [(e.oid, e.critical, e.value) for e in ref.extensions], path
        assert mine.tbs == ref.tbs, path
        if profile.key_type == "RSA":
            assert der == ref.der, f"{scenario}: {path.name}"


# --- captures ------------------------------------------------------------------------------


def _capture(vectors, scenario: str):
    """(packets, {address: certificate of the host there}, {address: its sign key})."""
    folder = vectors / "pcap" / scenario
    certs: dict[str, CertInfo] = {}
    keys = {}
    for conf in folder.glob("*.ntp.conf"):
        address = re.search(r"interface listen (\S+)", conf.read_text()).group(1)
        keydir = folder / "keys" / conf.name.split(".")[0]
        cert_link = next(keydir.glob("ntpkey_cert_*"))
        owner = cert_link.name.split("_", 2)[2]
        certs[address] = parse_certificate(_der(read_key_file(cert_link)))
        sign = keydir / f"ntpkey_sign_{owner}"
        key_file = sign if sign.exists() else keydir / f"ntpkey_host_{owner}"
        keys[address] = read_key_file(key_file, PASSWORDS[owner]).private_key
    packets = json.loads((folder / "packets.json").read_text())
    return packets, certs, keys


def _signed_octets(field: dict) -> bytes:
    """Timestamp || filestamp || value length (big-endian) || value, unpadded (5.9)."""
    return (field["tstamp"].to_bytes(4, "big") + field["fstamp"].to_bytes(4, "big")
            + field["vallen"].to_bytes(4, "big") + bytes.fromhex(field["value"]))


@pytest.mark.parametrize("scenario", CAPTURES)
def test_every_captured_signature_verifies(vectors, scenario):
    """Every field with a signature verifies with the sender's certificate key and digest;
    a flipped bit does not."""
    packets, certs, _keys = _capture(vectors, scenario)
    verified = 0
    for packet in packets:
        for field in packet["exts"]:
            if not field.get("siglen"):
                continue
            cert = certs[packet["src"]]
            profile = profile_for_certificate(cert)
            signature = bytes.fromhex(field["sig"])
            assert len(signature) == field["siglen"]
            data = _signed_octets(field)
            assert profile.verify(cert.public_key, signature, data), (scenario, packet["i"])
            flipped = bytes([data[0] ^ 1]) + data[1:]
            assert not profile.verify(cert.public_key, signature, flipped)
            if profile.key_type == "DSA":
                assert 46 <= len(signature) <= profile.max_signature_size(cert.public_key) == 48
            else:
                assert len(signature) == profile.max_signature_size(cert.public_key) == 64
            verified += 1
    assert verified >= 2


@pytest.mark.parametrize("scenario", CAPTURES)
def test_cert_responses_carry_the_certificate_file(vectors, scenario):
    """A CERT response's value is the responder's certificate DER and passes the receiver's
    checks with the response's filestamp."""
    packets, certs, _keys = _capture(vectors, scenario)
    seen = 0
    for packet in packets:
        for field in packet["exts"]:
            if field.get("name") != "CERT" or not field["R"] or not field.get("vallen"):
                continue
            value = bytes.fromhex(field["value"])
            assert value == certs[packet["src"]].der
            own_name = certs[packet["dst"]].subject
            info = check_cert_response(value, field["fstamp"], own_name)
            assert info.trusted
            seen += 1
    assert seen >= (0 if scenario == "pc" else 1)


@pytest.mark.parametrize("scenario", [c for c in CAPTURES if c not in ("iff", "mv", "pc")])
def test_sign_responses_are_issued_by_the_server_and_reproducible(vectors, scenario):
    """Each SIGN response's certificate verifies with the responder's key, passes the
    receive checks, and (RSA) is exactly what sign_request makes from the request."""
    packets, certs, keys = _capture(vectors, scenario)
    seen = 0
    for packet in packets:
        for field in packet["exts"]:
            if field.get("name") != "SIGN" or not field["R"]:
                continue
            issuer, requester = certs[packet["src"]], certs[packet["dst"]]
            value = bytes.fromhex(field["value"])
            signed = check_cert_response(value, field["fstamp"], requester.subject)
            assert verify_issued_by(signed, issuer)
            assert (signed.subject, signed.issuer) == (requester.subject, issuer.subject)
            assert signed.extensions == requester.extensions
            profile = profile_for_certificate(issuer)
            mine = sign_request(requester.der, issuer.subject, keys[packet["src"]], profile,
                                signed.serial, allow_trust_root=requester.trusted)
            if profile is DSA_SHA1:
                assert parse_certificate(mine).tbs == signed.tbs
            else:
                assert mine == value
            seen += 1
    assert seen >= 1
