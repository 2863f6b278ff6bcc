"""ntpkey_* files: reading every layout, errors naming the file, writing with mode 0600 and
links, traditional/cuckoo PEM writers, keys-directory lookup (interop.md 6.4, 7)."""

from __future__ import annotations

import os
import re
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.pki.dsa_structure import DSAStructure
from ntpauto.pki.keyfiles import (
    KeyFileError,
    dsa_traditional_pem,
    file_header,
    find_client_params,
    find_host_files,
    private_key_pem,
    read_key_file,
    resolve_link,
    rsa_cuckoo_pem,
    write_key_file,
)

FS = 4004436515


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """An RSA key to write."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _body(text: str) -> str:
    """The PEM part of a key file (after the header lines)."""
    return text[text.index("-----BEGIN"):]


def test_write_key_file_mode_header_and_link(tmp_path, key):
    """The file is mode 0600 with the two header lines and an empty line; the link names it."""
    path = write_key_file(tmp_path, "RSAhost", "alice", FS, private_key_pem(key, "pw"), "host",
                          "alice", when=0)
    assert path.name == f"ntpkey_RSAhost_alice.{FS}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().split("\n")
    assert lines[0] == f"# ntpkey_RSAhost_alice.{FS}"
    assert re.fullmatch(r"# \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", lines[1])
    assert lines[2] == "" and lines[3] == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
    link = tmp_path / "ntpkey_host_alice"
    assert link.is_symlink() and os.readlink(link) == path.name
    loaded = read_key_file(link, "pw")
    assert loaded.path == path
    assert (loaded.kind, loaded.type_name, loaded.owner, loaded.filestamp) == (
        "host", "RSAhost", "alice", FS)
    assert loaded.encrypted and not loaded.traditional
    assert loaded.private_key.public_key() == key.public_key()


def test_write_replaces_link_and_tightens_an_existing_file(tmp_path, key):
    """A second write moves the link; an existing 0644 file of that name becomes 0600."""
    first = write_key_file(tmp_path, "RSAhost", "alice", FS, private_key_pem(key), "host",
                           "alice")
    second_path = tmp_path / f"ntpkey_RSAhost_alice.{FS + 1}"
    second_path.write_text("old")
    second_path.chmod(0o644)
    second = write_key_file(tmp_path, "RSAhost", "alice", FS + 1, private_key_pem(key), "host",
                            "alice")
    assert second == second_path
    assert stat.S_IMODE(second.stat().st_mode) == 0o600
    assert os.readlink(tmp_path / "ntpkey_host_alice") == second.name
    assert first.exists()
    assert read_key_file(tmp_path / "ntpkey_host_alice").filestamp == FS + 1


def test_write_ntp_keys_link_and_bad_names(tmp_path):
    """link_name 'ntp.keys' is literal; names with slashes or dots first are refused."""
    path = write_key_file(tmp_path, "MD5key", "alice", FS, b"1 MD5 secret\n", "ntp.keys")
    assert os.readlink(tmp_path / "ntp.keys") == path.name
    kf = read_key_file(tmp_path / "ntp.keys")
    assert kf.kind == "symkeys" and kf.symmetric_keys == ((1, "md5"),)
    for owner in ("../x", ".hidden", "a b", ""):
        with pytest.raises(ValueError):
            write_key_file(tmp_path, "RSAhost", owner, FS, b"", "host", "alice")
    with pytest.raises(ValueError):
        write_key_file(tmp_path, "RSA/host", "alice", FS, b"")
    with pytest.raises(ValueError):
        write_key_file(tmp_path, "RSAhost", "alice", FS, b"", "host")


def test_file_header_format():
    """'# name', '# ctime', empty line, as ntp-keygen writes them."""
    header = file_header("ntpkey_x_y.1", 0).decode()
    assert header.startswith("# ntpkey_x_y.1\n# ") and header.endswith("\n\n")


def _copy(vectors, relative, tmp_path):
    target = tmp_path / os.path.basename(relative)
    target.write_bytes((vectors / "keys" / relative).read_bytes())
    return target


def test_wrong_password_and_missing_password(vectors, tmp_path):
    """Errors name the file: wrong password, password needed; allow_locked reads the rest."""
    path = vectors / "keys/tc-rsa-md5/alice/ntpkey_RSAhost_alice.4004436515"
    with pytest.raises(KeyFileError, match="wrong password") as caught:
        read_key_file(path, "nope")
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    with pytest.raises(KeyFileError, match="a password is needed"):
        read_key_file(path)
    locked = read_key_file(path, allow_locked=True)
    assert locked.locked and locked.encrypted and locked.private_keys == ()
    assert locked.filestamp == 4004436515 and locked.owner == "alice"


def test_truncated_not_pem_tampered_and_no_filestamp(vectors, tmp_path):
    """Truncated PEM, non-PEM text, altered key data and a missing filestamp line are each
    reported with the file name."""
    source = "unencrypted/tc-rsa-md5/alice/ntpkey_RSAhost_alice.4004436515.unencrypted.pem"
    good = _copy(vectors, source, tmp_path)
    text = good.read_text()

    truncated = tmp_path / "truncated"
    truncated.write_text(text[: text.index("-----END")])
    with pytest.raises(KeyFileError, match="truncated") as caught:
        read_key_file(truncated)
    assert str(truncated) in str(caught.value)

    not_pem = tmp_path / "notpem"
    not_pem.write_text("# ntpkey_RSAhost_alice.1\n# x\n\nhello\n")
    with pytest.raises(KeyFileError, match="not a PEM file"):
        read_key_file(not_pem)

    lines = text.split("\n")
    index = lines.index("-----BEGIN PRIVATE KEY-----") + 3
    lines[index] = lines[index][:10] + ("A" if lines[index][10] != "A" else "B") + \
        lines[index][11:]
    tampered = tmp_path / "tampered"
    tampered.write_text("\n".join(lines))
    with pytest.raises(KeyFileError, match="tampered"):
        read_key_file(tampered)

    bad_base64 = tmp_path / "badb64"
    bad_base64.write_text(text.replace("-----BEGIN PRIVATE KEY-----\n",
                                       "-----BEGIN PRIVATE KEY-----\n!!!!\n"))
    with pytest.raises(KeyFileError, match="tampered"):
        read_key_file(bad_base64)

    headless = tmp_path / "headless"
    headless.write_text(_body(text))
    with pytest.raises(KeyFileError, match="no filestamp"):
        read_key_file(headless)
    kf = read_key_file(headless, require_filestamp=False)
    assert kf.filestamp is None and kf.owner is None and len(kf.private_keys) == 1

    with pytest.raises(KeyFileError, match="no such file"):
        read_key_file(tmp_path / "absent")


def test_unencrypted_key_ignores_a_password(vectors):
    """A password given for an unencrypted file is not an error (ntpd reads par files so)."""
    path = vectors / "keys/gq/brenda/ntpkey_gqpar_alice"
    kf = read_key_file(path, "whatever")
    assert kf.kind == "gqpar" and not kf.encrypted and len(kf.private_keys) == 1


def test_stub_links_are_followed(vectors):
    """Links stored as small files naming their target (the vectors) resolve like symlinks."""
    link = vectors / "keys/tc-rsa-sha1/alice/ntpkey_sign_alice"
    assert resolve_link(link).name == "ntpkey_RSAsign_alice.4004436517"
    assert read_key_file(link, "alicepw").type_name == "RSAsign"


def test_repr_never_shows_key_material(vectors):
    """Private keys are kept out of repr."""
    kf = read_key_file(vectors / "keys/gq/brenda/ntpkey_gqpar_alice")
    numbers = kf.private_key.private_numbers()
    text = repr(kf)
    assert "private_keys" not in text
    assert str(numbers.public_numbers.e) not in text


def test_dsa_traditional_pem_keeps_the_public_value(vectors, tmp_path):
    """The IFF client parameters keep v = g^(q-b) (not g^x) in traditional PEM, plain or
    encrypted; the result equals the iff-trad workaround file's key."""
    ref = read_key_file(vectors / "keys/iff-trad/brenda/ntpkey_iffpar_alice")
    key = ref.private_key
    assert isinstance(key, DSAStructure) and key.pub != pow(key.g, key.priv, key.p)
    pem = dsa_traditional_pem(key.p, key.q, key.g, key.pub, 1)
    assert pem.startswith(b"-----BEGIN DSA PRIVATE KEY-----")
    assert _body(pem.decode()) == _body(ref.path.read_text())
    encrypted = dsa_traditional_pem(key.p, key.q, key.g, key.pub, 1, password="pw")
    assert b"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC," in encrypted
    path = write_key_file(tmp_path, "iffkey", "alice", FS, encrypted)
    assert read_key_file(path, "pw").private_key == key
    assert dsa_traditional_pem(key.p, key.q, key.g, key.pub, 1, password="") == pem


def test_rsa_cuckoo_pem_reproduces_the_reference_gqpar(vectors):
    """The GQ client file layout (d = p = q = dmp1 = dmq1 = iqmp = 1) in PKCS#8 is
    byte-identical to ntp-keygen's -e export."""
    ref = read_key_file(vectors / "keys/gq/brenda/ntpkey_gqpar_alice")
    public = ref.private_key.private_numbers().public_numbers
    pem = rsa_cuckoo_pem(public.n, public.e, 1, 1, 1, 1, 1, 1)
    assert _body(pem.decode()) == _body(ref.path.read_text())


def test_multi_key_file(vectors):
    """The MVta file holds five keys, all loaded."""
    kf = read_key_file(vectors / "keys/mv/alice/ntpkey_mvta_alice", "alicepw")
    assert kf.kind == "mvta" and len(kf.private_keys) == 5
    assert kf.pem_labels == ("ENCRYPTED PRIVATE KEY",) * 5


def test_find_host_files(vectors):
    """Host key and certificate required, sign key and identity keys optional."""
    files = find_host_files(vectors / "keys/tc-rsa-sha1/alice", "alice")
    assert files.host_key.name == "ntpkey_host_alice"
    assert files.certificate.name == "ntpkey_cert_alice"
    assert files.sign_key is not None and files.sign_key.name == "ntpkey_sign_alice"
    assert files.iff_key is files.gq_key is files.mv_key is None
    plain = find_host_files(vectors / "keys/tc-rsa-md5/alice", "alice")
    assert plain.sign_key is None
    gq = find_host_files(vectors / "keys/gq/alice", "alice", group="alice")
    assert gq.gq_key is not None and gq.gq_key.name == "ntpkey_gqkey_alice"
    mv = find_host_files(vectors / "keys/mv/alice", "alice")
    assert mv.mv_key is not None


def test_find_host_files_names_what_is_missing(vectors, tmp_path):
    """A missing host key or certificate is an error naming the file."""
    with pytest.raises(KeyFileError, match="host key not found") as caught:
        find_host_files(tmp_path, "zoe")
    assert caught.value.path.endswith("ntpkey_host_zoe")
    (tmp_path / "ntpkey_host_zoe").write_bytes(
        (vectors / "keys/tc-rsa-md5/alice/ntpkey_RSAhost_alice.4004436515").read_bytes())
    with pytest.raises(KeyFileError, match="certificate not found") as caught:
        find_host_files(tmp_path, "zoe")
    assert caught.value.path.endswith("ntpkey_cert_zoe")
    (tmp_path / "ntpkey_cert_zoe").symlink_to("nowhere")
    with pytest.raises(KeyFileError, match="certificate not found"):
        find_host_files(tmp_path, "zoe")


def test_find_client_params(vectors):
    """Client parameter files are found by the ident group."""
    params = find_client_params(vectors / "keys/gq/brenda", "alice")
    assert params.gq_params is not None and params.iff_params is None
    assert find_client_params(vectors / "keys/iff/brenda", "alice").iff_params is not None
    assert find_client_params(vectors / "keys/iff/brenda", "other").iff_params is None
