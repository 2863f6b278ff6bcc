"""``ntpauto keygen``: files, names, links, modes, inheritance, exports (interop.md 7)."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import stat
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from ntpauto.auth.keys import parse_keys
from ntpauto.cli import keygen
from ntpauto.pki.certificates import parse_certificate
from ntpauto.pki.keyfiles import KeyFileError, private_key_pem, read_key_file, write_key_file
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


def test_rsa_keys_raise_no_dsa_deprecation_warning(tmp_path):
    """Making and reusing RSA keys names none of cryptography's DSA classes, which warn from
    cryptography 51 on (the warning would be printed on every run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        assert run(tmp_path, "-H", "-m", "1024", "-s", "alice", "-p", "pw")[0] == 0
        assert run(tmp_path, "-s", "alice", "-p", "pw")[0] == 0


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
    """Moduli outside what we make are refused with a clear message."""
    status, _out, err = run(tmp_path, "-H", "-m", "256", "-s", "alice", "-p", "pw")
    assert status == 1 and "out of range" in err
    status, _out, err = run(tmp_path, "-H", "-S", "DSA", "-m", "1536", "-s", "alice", "-p", "p")
    assert status == 1 and "DSA modulus" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["-H", "-m", "256"], "-m 256: RSA modulus out of range"),
    (["-S", "DSA", "-m", "1536"], "-m 1536: DSA modulus must be one of"),
    (["-c", "RSA-NOPE"], "RSA-NOPE"),
    (["-S", "DSA", "-m", "1024", "-c", "RSA-SHA1"], "needs a RSA sign key"),
    (["-c", "DSA-SHA1"], "needs a DSA sign key"),
    (["-G", "-b", "100"], "-b 100: GQ modulus out of range"),
    (["-I", "-b", "9000"], "-b 9000: IFF modulus out of range"),
    (["-V", "1", "-b", "256"], "-V 1: MV needs at least 2 client keys"),
    (["-V", "40", "-b", "256"], "-V 40: too many MV clients"),
    (["-T", "-P"], "exclude each other"),
    (["-l", "0"], "-l must be at least 1 day"),
    (["-I", "-G"], "exclude each other"),
])
def test_options_are_checked_before_any_progress(tmp_path, argv, message):
    """A bad option stops the run with its one line before anything is shown or written
    (no host key made first, no keys directory created)."""
    keysdir = tmp_path / "keys"
    status, out, err = run(keysdir, "-s", "alice", "-p", "pw", "-m", "1024", *argv)
    assert status == 1 and out == ""
    assert err.startswith("ntpauto keygen: ") and err.count("\n") == 1, err
    assert message in err
    assert not keysdir.exists()


def test_gq_keys_above_the_reference_limit_say_so(tmp_path):
    """-G at more than 1016 bits (the default is 2048) says, in one line, that reference
    clients reject such keys and which option makes keys they accept; -b 1016 does not."""
    status, _out, err = run(tmp_path / "big", "-T", "-G", "-b", "1024", "-m", "1024",
                            "-s", "alice", "-p", "pw")
    assert status == 0
    notes = [line for line in err.splitlines() if "1016" in line]
    assert notes == ["note: reference (ntpd 4.2.8) clients misread GQ keys above 1016 bits "
                     "and reject this host's identity; for groups with such clients make the "
                     "keys with -G -b 1016"]
    status, _out, err = run(tmp_path / "small", "-T", "-G", "-b", "1016", "-m", "1024",
                            "-s", "alice", "-p", "pw")
    assert status == 0 and "note:" not in err


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


def _export(tmp_path, out: str, password: str | None = None):
    """The key file an export wrote to stdout, read back (its header names the kind)."""
    path = tmp_path / out.split("\n", 1)[0][2:]
    path.write_text(out)
    return read_key_file(path, password)


def test_export_iff_client_parameters(vectors, tmp_path):
    """-e on the reference IFF server key writes ntpkey_iffpar_<group>.<fs> as traditional
    DSA PEM with v = g^(q-b): the same key as the iff-trad workaround file."""
    keysdir = _scenario(vectors, tmp_path, "iff/alice")
    status, out, err = run(keysdir, "-e", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    assert out.startswith("# ntpkey_iffpar_alice.4004436521\n# ")
    exported = _export(tmp_path, out).private_key
    ref = read_key_file(vectors / "keys/iff-trad/brenda/ntpkey_iffpar_alice").private_key
    assert exported == ref
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
    server = _export(tmp_path, out, "secret").private_key
    ref = read_key_file(vectors / "keys/mv-trad/alice/ntpkey_mvkey_alice", "alicepw")
    assert server == ref.private_key
    status, out, err = run(keysdir, "-e", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    client = _export(tmp_path, out).private_key
    ref = read_key_file(vectors / "keys/mv-trad/brenda/ntpkey_mvpar_alice")
    assert client == ref.private_key


def test_export_iff_server_key_reencrypted(vectors, tmp_path):
    """-q PW writes the reference's PKCS#8 IFF server key as traditional DSA encrypted with PW
    (AES-256-CBC), with the public value v = g^(q-b) that PKCS#8 had lost: the same group
    key, and the file now exports client parameters that verify."""
    keysdir = _scenario(vectors, tmp_path, "iff/alice")
    status, out, err = run(keysdir, "-q", "other", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    assert out.startswith("# ntpkey_iffkey_alice.4004436521\n")
    assert "-----BEGIN DSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC," in out
    exported = _export(tmp_path, out, "other").private_key
    ref = read_key_file(keysdir / "ntpkey_iffkey_alice", "alicepw").private_key
    assert (exported.p, exported.q, exported.g, exported.priv) == (ref.p, ref.q, ref.g, ref.priv)
    assert exported.pub == pow(ref.g, ref.q - ref.priv, ref.p) != ref.pub
    with pytest.raises(KeyFileError, match="wrong password"):
        _export(tmp_path, out, "alicepw")


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


def _save_export(directory, exported: str):
    """Save an export under the name in its first line, linked without the filestamp (as
    docs/keygen.md says); returns the file's path."""
    directory.mkdir(exist_ok=True)
    name = exported.split("\n", 1)[0].removeprefix("# ")
    path = directory / name
    path.write_text(exported)
    link = directory / name.rsplit(".", 1)[0]
    if not link.is_symlink():
        link.symlink_to(name)
    return path


def _mv_verifies(server_dir, client_dir) -> bool:
    """One MV exchange between the server key in ``server_dir`` (password "srvpw") and the
    client key in ``client_dir``; True when the client accepts the response."""
    from ntpauto.identity.mv import MVSchemeFactory

    server = MVSchemeFactory().from_keysdir(server_dir, "alice", password="srvpw")
    client = MVSchemeFactory().from_keysdir(client_dir, "alice")
    assert client.accepts_filestamp(server.server_filestamp)
    challenge = client.make_challenge()
    return client.verify_response(challenge, server.respond(challenge))


def test_mv_client_keys_and_revocation_by_a_new_server_key(tmp_path):
    """-V 4: clients 1-3 are served and client 4 is revoked (the reference's behaviour);
    --mv-revoke 2 rewrites the bundle (same name, filestamp and link) with a server key that
    serves 1, 3 and 4 but not 2; the client keys, exported with -e --mv-client J, stay."""
    ta, server_dir = tmp_path / "ta", tmp_path / "server"
    status, _out, err = run(ta, "-V", "4", "-b", "256", "-m", "1024", "-s", "alice", "-p", "pw")
    assert status == 0, err
    bundle = ta / f"ntpkey_MVta_alice.{FS}"
    assert os.readlink(ta / "ntpkey_mvta_alice") == bundle.name
    status, exported, err = run(ta, "-q", "srvpw", "-s", "alice", "-p", "pw", now=NOW + 10)
    assert status == 0, err
    _save_export(server_dir, exported)
    clients = {}
    for j in range(1, 5):
        status, exported, err = run(ta, "-e", "--mv-client", str(j), "-s", "alice", "-p", "pw",
                                    now=NOW + 10)
        assert status == 0, err
        assert exported.startswith(f"# ntpkey_mvpar_alice.{FS}\n")
        assert f"(client key {j})" in err and ("revoked" in err) == (j == 4)
        clients[j] = _save_export(tmp_path / f"client{j}", exported)
    status, default_export, err = run(ta, "-e", "-s", "alice", "-p", "pw", now=NOW + 10)
    assert status == 0, err
    assert default_export == clients[1].read_text()  # without --mv-client: client 1
    before = {j: path.read_bytes() for j, path in clients.items()}
    for j in range(1, 5):
        assert _mv_verifies(server_dir, clients[j].parent) is (j != 4)

    status, out, err = run(ta, "--mv-revoke", "2", "-s", "alice", "-p", "pw", now=NOW + 20)
    assert status == 0, err
    assert out == "" and "serves clients 1, 3, 4, revoked 2" in err
    assert sorted(p.name for p in ta.iterdir() if "MVta" in p.name) == [bundle.name]
    assert os.readlink(ta / "ntpkey_mvta_alice") == bundle.name
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert read_key_file(bundle, "pw").filestamp == FS
    assert not [p.name for p in ta.iterdir() if p.name.endswith(".tmp")]
    status, exported, err = run(ta, "-q", "srvpw", "-s", "alice", "-p", "pw", now=NOW + 30)
    assert status == 0, err
    assert exported.startswith(f"# ntpkey_mvkey_alice.{FS}\n")
    _save_export(server_dir, exported)
    for j in range(1, 5):
        assert _mv_verifies(server_dir, clients[j].parent) is (j != 2)
        status, again, err = run(ta, "-e", "--mv-client", str(j), "-s", "alice", "-p", "pw",
                                 now=NOW + 10)
        assert status == 0, err
        assert again.encode() == before[j] == clients[j].read_bytes()


def test_mv_revoke_with_export_in_one_run_on_a_reference_bundle(vectors, tmp_path):
    """ntp-keygen's traditional-PEM bundle (mv-trad, 3 clients, client 3 revoked): the
    reference's client 1 file passes with the exported server key; --mv-revoke 1 with -q
    exports a new one in the same run, which that file no longer passes while client 3
    does."""
    keysdir = _scenario(vectors, tmp_path, "mv-trad/alice")
    reference_client = tmp_path / "brenda"
    reference_client.mkdir()
    for name in ("ntpkey_mvpar_alice", "ntpkey_mvpar_alice.4004437967"):  # stub link, file
        shutil.copy(vectors / "keys/mv-trad/brenda" / name, reference_client)
    server_dir = tmp_path / "server"
    status, exported, err = run(keysdir, "-q", "srvpw", "-s", "alice", "-p", "alicepw")
    assert status == 0, err
    _save_export(server_dir, exported)
    assert _mv_verifies(server_dir, reference_client)
    status, exported, err = run(keysdir, "--mv-revoke", "1", "-q", "srvpw", "-s", "alice",
                                "-p", "alicepw")
    assert status == 0, err
    assert exported.startswith("# ntpkey_mvkey_alice.4004437967\n")
    assert (keysdir / "ntpkey_MVta_alice.4004437967").exists()
    _save_export(server_dir, exported)
    assert not _mv_verifies(server_dir, reference_client)
    status, exported, err = run(keysdir, "-e", "--mv-client", "3", "-s", "alice",
                                "-p", "alicepw")
    assert status == 0, err
    assert _mv_verifies(server_dir, _save_export(tmp_path / "carol", exported).parent)


@pytest.mark.parametrize(("argv", "message"), [
    (("-e", "--mv-client", "5"), "no MV client key 5 in ntpkey_MVta_alice"),
    (("-e", "--mv-client", "0"), "numbered from 1"),
    (("-e", "--mv-client", "x"), "'x' is not a client number"),
    (("-q", "pw", "--mv-client", "2"), "--mv-client goes with -e"),
    (("--mv-revoke", "4"), "no MV client key 4 (the bundle has 1 to 3)"),
    (("--mv-revoke", "1,two"), "'two' is not a client number"),
    (("--mv-revoke", ""), "cannot revoke no client"),
    (("--mv-revoke", "1", "-V", "3"), "run -V separately"),
    (("--mv-revoke", "1", "-H", "-T"), "run -H, -T separately"),
    (("--mv-revoke", "1", "-e", "-q", "x"), "separate runs"),
])
def test_mv_option_errors(tmp_path, argv, message):
    """Wrong client numbers and option combinations are one-line errors with status 1; the
    bundle is left as it was."""
    assert run(tmp_path, "-V", "3", "-b", "256", "-m", "1024", "-s", "alice", "-p", "pw")[0] == 0
    bundle = tmp_path / f"ntpkey_MVta_alice.{FS}"
    content = bundle.read_bytes()
    status, out, err = run(tmp_path, *argv, "-s", "alice", "-p", "pw", now=NOW + 5)
    assert (status, out) == (1, "")
    assert err.startswith("ntpauto keygen: ") and err.count("\n") == 1 and message in err
    assert bundle.read_bytes() == content


def test_mv_revoke_needs_recoverable_primes(vectors, tmp_path):
    """--mv-revoke on a bundle whose primes cannot be recovered (a 2-client bundle; the
    reference's PKCS#8 bundle) or on no bundle at all is a one-line error."""
    two = tmp_path / "two"
    assert run(two, "-V", "2", "-b", "256", "-m", "1024", "-s", "alice", "-p", "pw")[0] == 0
    reference = _scenario(vectors, tmp_path, "mv/alice")
    for keysdir, password in ((two, "pw"), (reference, "alicepw")):
        status, out, err = run(keysdir, "--mv-revoke", "1", "-q", "x", "-s", "alice",
                               "-p", password)
        assert (status, out) == (1, "") and err.count("\n") == 1
        assert "primes s_j cannot be recovered" in err
    status, _out, err = run(tmp_path / "none", "--mv-revoke", "1", "-s", "alice", "-p", "pw")
    assert status == 1 and "no MV bundle ntpkey_mvta_alice" in err
    status, _out, err = run(reference.parent / "none", "-e", "--mv-client", "1", "-s", "alice")
    assert status == 1 and "no identity key files" in err


def test_reference_sizes_with_rsa_md5(tmp_path):
    """-m 512 -c RSA-MD5 makes what ntp-keygen makes by default: a 512-bit host key and an
    md5WithRSAEncryption certificate, which load back and verify."""
    status, _out, err = run(tmp_path, "-T", "-H", "-m", "512", "-c", "RSA-MD5", "-s", "alice",
                            "-p", "pw")
    assert status == 0, err
    key = read_key_file(tmp_path / "ntpkey_host_alice", password="pw").private_key
    assert key.key_size == 512
    _kf, cert = cert_of(tmp_path, "alice")
    assert cert.signature_nid == 8 and cert.trusted
    assert cert.public_key.public_numbers() == key.public_key().public_numbers()
