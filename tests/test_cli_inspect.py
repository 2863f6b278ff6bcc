"""``ntpauto inspect``: what each key file holds, for the reference's files and ours, never a
secret; one-line errors naming the file."""

from __future__ import annotations

import argparse
import io

from ntpauto.cli import inspect as inspect_cli
from ntpauto.cli import keygen
from ntpauto.pki.keyfiles import read_key_file

NOW = 1_795_447_715.0  # 2026-11-23 15:28:35 UTC = filestamp 4004436515 (tc-rsa-md5 alice)
LATER = NOW + 400 * 86400


def run(*argv: str, now: float = NOW) -> tuple[int, str, str]:
    """Run ``ntpauto inspect``; returns (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="ntpauto")
    inspect_cli.register(parser.add_subparsers())
    args = parser.parse_args(["inspect", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, clock=lambda: now, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_reference_trusted_certificate(vectors):
    """Subject, group, scheme, NID, flags, validity and filestamp date of alice's cert."""
    path = vectors / "keys/tc-rsa-md5/alice/ntpkey_cert_alice"
    status, out, err = run(str(path))
    assert status == 0 and err == ""
    assert "file:      ntpkey_RSA-MD5cert_alice.4004436515" in out
    assert "type:      certificate (RSA-MD5cert)" in out
    assert "owner:     alice" in out
    assert "filestamp: 4004436515 (2026-11-23 15:28:35 UTC)" in out
    assert "subject:   alice@alice (host alice, group alice)" in out
    assert "issuer:    alice@alice (self-signed)" in out
    assert "scheme:    RSA-MD5 (md5WithRSAEncryption, NID 8)" in out
    assert "key:       RSA 512 bits" in out
    assert "flags:     trusted" in out
    assert "(365 days; 365 days left)" in out
    assert "GQ key" not in out  # only certificates that carry one say so


def test_flags_gq_key_and_expiry(vectors):
    """Private and untrusted flags, a GQ key present, and an expired certificate."""
    _s, out, _e = run(str(vectors / "keys/pc/alice/ntpkey_cert_alice"))
    assert "flags:     private" in out
    _s, out, _e = run(str(vectors / "keys/tc-rsa-md5/brenda/ntpkey_cert_brenda"))
    assert "flags:     none" in out and "issuer:    brenda@alice (self-signed)" in out
    _s, out, _e = run(str(vectors / "keys/gq/alice/ntpkey_cert_alice"))
    assert "GQ key:    255 bits" in out
    _s, out, _e = run(str(vectors / "keys/tc-dsa-sha1/alice/ntpkey_cert_alice"), now=LATER)
    assert "scheme:    DSA-SHA1 (dsaWithSHA1, NID 113)" in out
    assert "key:       DSA 512 bits (q 160 bits)" in out
    assert "(365 days; EXPIRED 34 days ago)" in out


def test_lifetime_in_whole_days_as_keygen_counts_them(tmp_path):
    """``keygen -l 30``, inspected a second and then 29.5 days later: a 30-day lifetime with
    30 and then 1 day left (a day begun counts), and "EXPIRED today" just after the end."""
    parser = argparse.ArgumentParser()
    keygen.register(parser.add_subparsers())
    args = parser.parse_args(["keygen", "--keysdir", str(tmp_path), "-s", "ann", "-p", "pw",
                              "-T", "-m", "1024", "-l", "30"])
    assert args.func(args, clock=lambda: NOW, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    cert = str(tmp_path / "ntpkey_cert_ann")
    assert "(30 days; 30 days left)" in run(cert, now=NOW + 1)[1]
    assert "(30 days; 1 day left)" in run(cert, now=NOW + 29.5 * 86400)[1]
    assert "(30 days; EXPIRED today)" in run(cert, now=NOW + 30 * 86400 + 60)[1]


def test_reference_iff_and_mv_client_files_are_flagged_unusable(vectors):
    """IFF and MV client files in the reference's PKCS#8 lost their public value: inspect
    says they cannot work and what makes one that does; traditional files are not flagged."""
    status, out, _err = run(str(vectors / "keys/iff/brenda/ntpkey_iffpar_alice"))
    assert status == 0
    unusable = [line for line in out.splitlines() if line.startswith("  UNUSABLE: ")]
    assert len(unusable) == 1
    assert "lost the public value" in unusable[0]
    assert "'ntpauto keygen -e' on the trusted host" in unusable[0]
    assert "works with both ntpd and ntpauto" in unusable[0]
    _status, out, _err = run(str(vectors / "keys/mv/brenda/ntpkey_mvpar_alice"))
    assert "UNUSABLE:" in out and "'ntpauto keygen -V N'" in out
    for good in ("iff-trad/brenda/ntpkey_iffpar_alice", "mv-trad/brenda/ntpkey_mvpar_alice",
                 "gq/brenda/ntpkey_gqpar_alice", "iff/alice/ntpkey_cert_alice"):
        assert "UNUSABLE" not in run(str(vectors / "keys" / good))[1], good


def test_encrypted_key_with_and_without_password(vectors):
    """Without a password the header facts are shown; with it the key size too."""
    path = str(vectors / "keys/tc-rsa-sha1/alice/ntpkey_RSAsign_alice.4004436517")
    status, out, _err = run(path)
    assert status == 0
    assert "type:      sign key (RSAsign)" in out
    assert "format:    encrypted PKCS#8" in out
    assert "encrypted; give --password" in out
    status, out, _err = run("-p", "alicepw", path)
    assert status == 0 and "key:       RSA 512 bits" in out


def test_wrong_password_is_a_one_line_error(vectors):
    """A wrong password: one line on stderr naming the file, exit status 1."""
    path = str(vectors / "keys/tc-rsa-md5/alice/ntpkey_host_alice")
    status, out, err = run("--password", "nope", path)
    assert status == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(path) and "wrong password" in err
    assert "nope" not in err


def test_bad_file_among_good_ones(vectors, tmp_path):
    """A bad file gives its one-line error; the good ones are still described; exit 1."""
    bad = tmp_path / "ntpkey_junk"
    bad.write_text("garbage\n")
    good = str(vectors / "keys/sym/carol/ntpkey_cert_carol")
    status, out, err = run(str(bad), good)
    assert status == 1
    assert err == f"{bad}: not a PEM file (no -----BEGIN line)\n"
    assert "subject:   carol@alice" in out


def test_identity_files_show_sizes_never_values(vectors):
    """Identity files show parameter sizes; no secret number appears in the output."""
    path = vectors / "keys/unencrypted/gq/alice/ntpkey_GQkey_alice.4004436524.unencrypted.pem"
    status, out, _err = run(str(path))
    assert status == 0
    assert "GQ server key" in out
    assert "n 256 bits, group key b 255 bits, public key v 255 bits" in out
    numbers = read_key_file(path).private_key.private_numbers()
    for secret in (numbers.p, numbers.q, numbers.public_numbers.e, numbers.public_numbers.n):
        assert str(secret) not in out and f"{secret:x}" not in out.lower()
    status, out, _err = run("-p", "alicepw", str(vectors / "keys/mv/alice/ntpkey_mvta_alice"))
    assert "key 5:" in out and "p 256 bits, q 1 bits" in out
    status, out, _err = run(str(vectors / "keys/iff-trad/brenda/ntpkey_iffpar_alice"))
    assert "IFF client parameters" in out and "traditional DSA" in out


def test_files_written_by_our_keygen(tmp_path):
    """Our own files: RSA-SHA256 certificate, host key, symmetric keys summary."""
    parser = argparse.ArgumentParser()
    keygen.register(parser.add_subparsers())
    for argv in (["-T", "-H", "-m", "1024"], ["-M"]):
        args = parser.parse_args(["keygen", "--keysdir", str(tmp_path), "-s", "ann@grp",
                                  "-p", "pw", *argv])
        assert args.func(args, clock=lambda: NOW, stdout=io.StringIO(),
                         stderr=io.StringIO()) == 0
    status, out, err = run("-p", "pw", str(tmp_path / "ntpkey_cert_ann"),
                           str(tmp_path / "ntpkey_host_ann"), str(tmp_path / "ntp.keys"))
    assert status == 0, err
    assert "scheme:    RSA-SHA256 (sha256WithRSAEncryption, NID 668)" in out
    assert "subject:   ann@grp (host ann, group grp)" in out
    assert "key:       RSA 1024 bits" in out
    assert "keys:      20 (10 MD5, 10 SHA1)" in out
    secret_line = (tmp_path / "ntp.keys").read_text().split("\n")[3]
    assert secret_line.split()[2] not in out
