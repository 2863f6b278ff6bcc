"""``ntpauto keygen``: files, names, links, modes, inheritance, exports (REFERENCE-NOTES 7)."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ntpauto.auth.keys import parse_keys
from ntpauto.cli import keygen
from ntpauto.pki.certificates import parse_certificate
from ntpauto.pki.keyfiles import private_key_pem, read_key_file, write_key_file
from ntpauto.wire.timestamps import ntp_seconds

NOW = 1_795_450_000.0  # 2026-11-23
FS = ntp_seconds(NOW)


def run(tmp_path, *argv: str, now: float = NOW) -> tuple[int, str, str]:
    """Run keygen in ``tmp_path``; returns (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="ntpauto")
    keygen.register(parser.add_subparsers())
    args = parser.parse_args(["keygen", "--keysdir", str(tmp_path), *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, clock=lambda: now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def cert_of(tmp_path, host: str):
    """The parsed certificate the cert link points to."""
    kf = read_key_file(tmp_path / f"ntpkey_cert_{host}")
    return kf, parse_certificate(kf.certificate.public_bytes(serialization.Encoding.DER))


def test_trusted_host_defaults(tmp_path):
    """-T -H: RSA host key and a trusted RSA-SHA256 certificate, named and linked like
    ntp-keygen's, mode 0600, filestamp = now, subject host@group."""
    status, out, err = run(tmp_path, "-T", "-H", "-m", "1024", "-s", "alice@grp", "-p", "pw")
    assert status == 0, err
    assert out == ""
    host = tmp_path / f"ntpkey_RSAhost_alice.{FS}"
    cert = tmp_path / f"ntpkey_RSA-SHA256cert_alice.{FS}"
    for path in (host, cert):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.readlink(tmp_path / "ntpkey_host_alice") == host.name
    assert os.readlink(tmp_path / "ntpkey_cert_alice") == cert.name
    assert f"ntpkey_host_alice->{host.name}" in err
    host_file = read_key_file(tmp_path / "ntpkey_host_alice", "pw")
    assert host_file.encrypted and host_file.private_key.key_size == 1024
    kf, info = cert_of(tmp_path, "alice")
    assert kf.filestamp == FS and info.serial == FS and info.not_before_ntp == FS
    assert info.subject == info.issuer == "alice@grp"
    assert info.trusted and not info.private and info.signature_nid == 668
    assert kf.certificate.public_key() == host_file.private_key.public_key()


def test_reference_scheme_and_separate_sign_key(tmp_path):
    """-S RSA -c RSA-SHA1: a sign key file and a certificate holding the sign key."""
    status, _out, err = run(tmp_path, "-H", "-S", "RSA", "-c", "RSA-SHA1", "-m", "1024",
                            "-s", "brenda", "-p", "pw")
    assert status == 0, err
    sign = read_key_file(tmp_path / "ntpkey_sign_brenda", "pw")
    host = read_key_file(tmp_path / "ntpkey_host_brenda", "pw")
    assert sign.path.name == f"ntpkey_RSAsign_brenda.{FS}"
    kf, info = cert_of(tmp_path, "brenda")
    assert kf.path.name == f"ntpkey_RSA-SHA1cert_brenda.{FS}"
    assert info.signature_nid == 65 and not info.trusted and info.subject == "brenda"
    assert kf.certificate.public_key() == sign.private_key.public_key()
    assert kf.certificate.public_key() != host.private_key.public_key()


def test_dsa_sign_key_defaults_to_dsa_sha1(tmp_path):
    """-S DSA without -c uses DSA-SHA1; an RSA scheme with the DSA sign key is refused."""
    status, _out, err = run(tmp_path, "-H", "-S", "DSA", "-m", "1024", "-s", "alice", "-p", "p")
    assert status == 0, err
    kf, info = cert_of(tmp_path, "alice")
    assert kf.path.name.startswith("ntpkey_DSA-SHA1cert_alice.")
    assert info.signature_nid == 113
    status, _out, err = run(tmp_path, "-c", "RSA-MD5", "-s", "alice", "-p", "p", now=NOW + 5)
    assert status == 1
    assert "needs a RSA sign key" in err


def test_rerun_reuses_keys_and_inherits_trust(tmp_path):
    """Without -H the host key is reused; the new certificate keeps the scheme and the trust
    of the existing one; the cert link moves to the new file."""
    assert run(tmp_path, "-T", "-H", "-c", "RSA-MD5", "-m", "1024", "-s", "alice",
               "-p", "pw")[0] == 0
    first_key = read_key_file(tmp_path / "ntpkey_host_alice", "pw").private_key
    status, _out, err = run(tmp_path, "-s", "alice", "-p", "pw", now=NOW + 60)
    assert status == 0, err
    assert read_key_file(tmp_path / "ntpkey_host_alice", "pw").private_key.public_key() == \
        first_key.public_key()
    kf, info = cert_of(tmp_path, "alice")
    assert kf.filestamp == FS + 60
    assert info.trusted and info.signature_nid == 8
    assert (tmp_path / f"ntpkey_RSA-MD5cert_alice.{FS}").exists()


def test_private_certificate_and_conflicts(tmp_path):
    """-P makes a private certificate; -T with -P is refused; bad -l is refused."""
    assert run(tmp_path, "-P", "-H", "-m", "1024", "-s", "alice", "-p", "pw")[0] == 0
    assert cert_of(tmp_path, "alice")[1].private
    status, _out, err = run(tmp_path, "-T", "-P", "-s", "alice", "-p", "pw")
    assert status == 1 and "exclude each other" in err
    status, _out, err = run(tmp_path, "-l", "0", "-s", "alice", "-p", "pw")
    assert status == 1 and "-l" in err


def test_wrong_password_on_an_existing_host_key(tmp_path):
    """A host key that does not decrypt stops the run with the file named; nothing new."""
    assert run(tmp_path, "-H", "-m", "1024", "-s", "alice", "-p", "right")[0] == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    status, _out, err = run(tmp_path, "-s", "alice", "-p", "wrong", now=NOW + 9)
    assert status == 1
    assert "ntpkey_RSAhost_alice" in err and "wrong password" in err
    assert "right" not in err and "wrong\n" not in err.replace("wrong password", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_default_password_is_the_host_name(tmp_path):
    """Without -p the files are encrypted with the -s host name."""
    assert run(tmp_path, "-H", "-m", "1024", "-s", "bob@grp")[0] == 0
    assert read_key_file(tmp_path / "ntpkey_host_bob", "bob").private_key is not None


def test_at_group_keeps_the_system_host_name(tmp_path, monkeypatch):
    """-s @group keeps gethostname() as the host and adds the group to the subject."""
    monkeypatch.setattr(keygen.socket, "gethostname", lambda: "zed")
    assert run(tmp_path, "-H", "-m", "1024", "-s", "@blue", "-p", "pw")[0] == 0
    assert cert_of(tmp_path, "zed")[1].subject == "zed@blue"
    assert run(tmp_path, "-m", "1024", "-i", "red", "-p", "pw", now=NOW + 1)[0] == 0
    assert cert_of(tmp_path, "zed")[1].subject == "zed@red"


def test_modulus_limits(tmp_path):
    """Moduli cryptography cannot make are refused with a clear message."""
    status, _out, err = run(tmp_path, "-H", "-m", "512", "-s", "alice", "-p", "pw")
    assert status == 1 and "out of range" in err
    status, _out, err = run(tmp_path, "-H", "-S", "DSA", "-m", "1536", "-s", "alice", "-p", "p")
    assert status == 1 and "DSA modulus" in err


def test_symmetric_keys_file(tmp_path):
    """-M writes ntpkey_MD5key_<group>.<fs> (0600) linked as ntp.keys: 10 MD5 keys of 20
    printable characters and 10 SHA1 keys of 40 hex digits, readable by ntpauto.auth.keys."""
    status, _out, err = run(tmp_path, "-M", "-s", "alice@grp")
    assert status == 0, err
    path = tmp_path / f"ntpkey_MD5key_grp.{FS}"
    assert os.readlink(tmp_path / "ntp.keys") == path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = parse_keys(path.read_text())
    assert sorted(keys) == list(range(1, 21))
    assert {keys[i].algorithm for i in range(1, 11)} == {"md5"}
    assert {keys[i].algorithm for i in range(11, 21)} == {"sha1"}
    assert all(len(keys[i].secret) == 20 for i in keys)
    assert read_key_file(tmp_path / "ntp.keys").symmetric_keys[0] == (1, "md5")
    assert len(set(keygen.make_symmetric_keys().splitlines())) == 20


@pytest.mark.parametrize(("option", "link", "scheme"), [
    ("-I", "iffkey", "iff"), ("-G", "gqkey", "gq"), (("-V", "3"), "mvta", "mv")])
def test_identity_generation_at_reference_sizes(tmp_path, option, link, scheme):
    """-I/-G/-V with -b 256 write the trusted-authority file and its link; for IFF and GQ the
    client parameters exported with -e complete an exchange with the server key."""
    from ntpauto.identity.registry import find_factory

    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    server_dir.mkdir()
    client_dir.mkdir()
    argv = list(option) if isinstance(option, tuple) else [option]
    status, _out, err = run(server_dir, "-T", *argv, "-b", "256", "-s", "alice", "-p", "pw")
    assert status == 0, err
    assert (server_dir / f"ntpkey_{link}_alice").exists()
    if scheme == "mv":
        return  # the MV bundle's exports and exchange: tests/test_identity_mv.py
    status, exported, err = run(server_dir, "-e", "-s", "alice", "-p", "pw")
    assert status == 0, err
    (client_dir / f"ntpkey_{scheme}par_alice").write_text(exported)
    factory = find_factory(scheme)
    server = factory.from_keysdir(str(server_dir), "alice", password="pw")
    client = factory.from_keysdir(str(client_dir), "alice")
    if scheme == "gq":
        certificate = cert_of(server_dir, "alice")[1]
        assert certificate.gq_key is not None  # the GQ key went into the certificate
        client = client.for_peer(certificate)
    challenge = client.make_challenge()
    assert client.verify_response(challenge, server.respond(challenge))
    assert not client.verify_response(client.make_challenge(), server.respond(challenge))


def _scenario(vectors, tmp_path, scenario: str):
    """A writable copy of a vectors key directory (links are stub files there)."""
    target = tmp_path / scenario.replace("/", "-")
    shutil.copytree(vectors / "keys" / scenario, target)
    target.chmod(0o755)  # the vectors are read-only; tests may run as a normal user
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def test_export_iff_client_parameters(vectors, tmp_path):
    """-e on the reference IFF server key writes ntpkey_iffpar_<group>.<fs> as traditional
    DSA PEM with v = g^(q-b): the same key as the iff-trad workaround file."""
    keysdir = _scenario(vectors, tmp_path, "iff/alice")
    status, out, err = run(keysdir, "-e", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    assert out.startswith("# ntpkey_iffpar_alice.4004436521\n# ")
    exported = serialization.load_pem_private_key(
        out[out.index("-----BEGIN"):].encode(), None).private_numbers()
    ref = read_key_file(vectors / "keys/iff-trad/brenda/ntpkey_iffpar_alice").private_key
    assert exported == ref.private_numbers()
    assert "BEGIN DSA PRIVATE KEY" in out


def test_export_gq_client_parameters_matches_ntp_keygen(vectors, tmp_path):
    """-e on the GQ server key gives ntp-keygen's gqpar PEM byte for byte."""
    keysdir = _scenario(vectors, tmp_path, "gq/alice")
    status, out, err = run(keysdir, "-e", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    ref = (vectors / "keys/gq/brenda/ntpkey_gqpar_alice.4004436524").read_text()
    assert out.split("\n")[0] == ref.split("\n")[0]
    assert out[out.index("-----BEGIN"):] == ref[ref.index("-----BEGIN"):]


def test_export_mv_server_key_and_client_key(vectors, tmp_path):
    """-q PW exports the MV server key (2nd key of MVta) encrypted with PW, -e the client key
    (3rd), both keeping their public values like the mv-trad files."""
    keysdir = _scenario(vectors, tmp_path, "mv-trad/alice")
    status, out, err = run(keysdir, "-q", "secret", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    assert out.startswith("# ntpkey_mvkey_alice.4004437967\n")
    assert "alicepw" not in out and "secret" not in out
    server = serialization.load_pem_private_key(out[out.index("-----BEGIN"):].encode(),
                                                b"secret")
    ref = read_key_file(vectors / "keys/mv-trad/alice/ntpkey_mvkey_alice", "alicepw")
    assert server.private_numbers() == ref.private_key.private_numbers()
    status, out, err = run(keysdir, "-e", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    client = serialization.load_pem_private_key(out[out.index("-----BEGIN"):].encode(), None)
    ref = read_key_file(vectors / "keys/mv-trad/brenda/ntpkey_mvpar_alice")
    assert client.private_numbers() == ref.private_key.private_numbers()


def test_export_gq_server_key_reencrypted(vectors, tmp_path):
    """-q PW re-encrypts the GQ server key with PW (same numbers)."""
    keysdir = _scenario(vectors, tmp_path, "gq/alice")
    status, out, err = run(keysdir, "-q", "other", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    assert out.startswith("# ntpkey_gqkey_alice.4004436524\n")
    exported = serialization.load_pem_private_key(
        out[out.index("-----BEGIN"):].encode(), b"other", unsafe_skip_rsa_key_validation=True)
    ref = read_key_file(keysdir / "ntpkey_gqkey_alice", "alicepw").private_key
    assert exported.private_numbers() == ref.private_numbers()


def test_export_without_identity_files(tmp_path):
    """-e with no identity key files fails naming what it looked for; -e with -q is refused."""
    status, out, err = run(tmp_path, "-e", "-s", "alice", "-p", "pw")
    assert status == 1 and out == "" and "ntpkey_iffkey_alice" in err
    status, _out, err = run(tmp_path, "-e", "-q", "x", "-s", "alice", "-p", "pw")
    assert status == 1 and "separate runs" in err


def test_certificate_carries_the_gq_key(vectors, tmp_path):
    """With a GQ key linked as ntpkey_gqkey_<host>, the new certificate carries its public
    key v (the q field) in the Subject Key Identifier."""
    keysdir = _scenario(vectors, tmp_path, "gq/alice")
    status, _out, err = run(keysdir, "-T", "-c", "RSA-MD5", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    gq = read_key_file(keysdir / "ntpkey_gqkey_alice", "alicepw").private_key
    kf, info = cert_of(keysdir, "alice")
    assert kf.filestamp == FS
    assert info.gq_key == info.gq_key_correct == gq.private_numbers().q
    assert [e.oid for e in info.extensions] == ["2.5.29.19", "2.5.29.15", "2.5.29.14",
                                                "2.5.29.37"]
    assert isinstance(kf.certificate, x509.Certificate)


def test_identity_generator_hook_runs_before_the_certificate(vectors, tmp_path, monkeypatch):
    """A registered -G generator gets the context and runs before the certificate is made,
    so the GQ key it links lands in the certificate."""
    source = read_key_file(vectors / "keys/gq/alice/ntpkey_gqkey_alice", "alicepw")
    calls = []

    def fake_gq(context, value):
        calls.append((context.host, context.group, context.filestamp, value))
        pem = private_key_pem(source.private_key, context.password)
        return write_key_file(context.keysdir, "GQkey", context.group, context.filestamp, pem,
                              "gqkey", context.host)

    monkeypatch.setitem(keygen.IDENTITY_GENERATORS, "G", fake_gq)
    status, _out, err = run(tmp_path, "-T", "-H", "-G", "-m", "1024", "-s", "carol@grp",
                            "-p", "pw")
    assert status == 0, err
    assert calls == [("carol", "grp", FS, True)]
    assert (tmp_path / f"ntpkey_GQkey_grp.{FS}").exists()
    info = cert_of(tmp_path, "carol")[1]
    assert info.gq_key == source.private_key.private_numbers().q
    status, _out, err = run(tmp_path, "-G", "-I", "-s", "carol", "-p", "pw")
    assert status == 1 and "exclude each other" in err
