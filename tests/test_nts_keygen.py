"""``ntpauto keygen --nts-cert``: a private CA and an NTS-KE server certificate that the
NTS-KE server loads and a client trusts."""

from __future__ import annotations

import ipaddress
import stat

from cryptography import x509
from twisted.internet import reactor

from ntpauto.cli import main
from ntpauto.nts.ke_client import exchange
from ntpauto.nts.tls import load_certificates, server_options
from tests.test_nts_ke import Server, wait


def test_keygen_nts_cert(tmp_path, capsys) -> None:
    status = main(["keygen", "--nts-cert", "127.0.0.1,ntp.example.org", "-l", "30",
                   "--keysdir", str(tmp_path)])
    assert status == 0
    assert "ntsservercert" in capsys.readouterr().err
    cert, ca = load_certificates(tmp_path / "ntpkey_ntscert.pem")
    [ca_alone] = load_certificates(tmp_path / "ntpkey_ntsca.pem")
    assert ca == ca_alone and cert.issuer == ca.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["ntp.example.org"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert stat.S_IMODE((tmp_path / "ntpkey_ntskey.pem").stat().st_mode) == 0o600
    server_options(tmp_path / "ntpkey_ntscert.pem", tmp_path / "ntpkey_ntskey.pem")

    class Paths:
        cert = tmp_path / "ntpkey_ntscert.pem"
        key = tmp_path / "ntpkey_ntskey.pem"

    running = Server(Paths)
    try:
        result = wait(exchange(reactor, "127.0.0.1", running.number,
                               trusted=tmp_path / "ntpkey_ntsca.pem"))
    finally:
        running.stop()
    assert len(result.response.cookies) == 8


def test_keygen_nts_cert_needs_a_name(tmp_path, capsys) -> None:
    assert main(["keygen", "--nts-cert", ",", "--keysdir", str(tmp_path)]) == 1
    assert "needs at least one" in capsys.readouterr().err
