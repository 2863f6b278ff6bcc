"""A private CA and an NTS-KE server certificate, for tests and closed networks.

``ntpauto keygen --nts-cert NAME,...`` writes them (:func:`write_test_pki`); a public NTS
server wants a certificate from a CA its clients already trust instead (docs/migrating.md).
Keys are ECDSA P-256; the server certificate names each NAME as a DNS name or, for an
address, an IP address (what clients check, RFC 8915 section 8.5 and RFC 6125), and is for
TLS server authentication only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_FILE", "CERT_FILE", "KEY_FILE", "TestPki", "make_ca", "make_server_certificate",
           "write_test_pki"]

CA_FILE = "ntpkey_ntsca.pem"
"""The CA certificate: the clients' ``ntstrustedcerts``."""
CERT_FILE = "ntpkey_ntscert.pem"
"""The server certificate, then the CA's (the chain): ``ntsservercert``."""
KEY_FILE = "ntpkey_ntskey.pem"
"""The server's private key (0600): ``ntsserverkey``."""


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _window(days: float, start: datetime.datetime | None) -> tuple[datetime.datetime, ...]:
    begin = start or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    return begin, begin + datetime.timedelta(days=days)


def make_ca(common: str = "ntpauto NTS test CA", days: float = 3650,
            start: datetime.datetime | None = None
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    begin, end = _window(days, start)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(begin).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_certificate(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                            names: Sequence[str], days: float = 365,
                            start: datetime.datetime | None = None
                            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server key and its certificate from ``ca`` for ``names`` (DNS names or IP
    addresses; the first is also the common name)."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    begin, end = _window(days, start)
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(begin).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


@frozen
class TestPki:
    """The three files :func:`write_test_pki` wrote."""

    __test__ = False  # not a pytest test class

    ca: str
    cert: str
    key: str


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_test_pki(directory: str | os.PathLike[str], names: Sequence[str], days: float = 365,
                   start: datetime.datetime | None = None) -> TestPki:
    """A new CA and a server certificate for ``names`` in ``directory``:
    :data:`CA_FILE`, :data:`CERT_FILE` (the chain) and :data:`KEY_FILE` (mode 0600)."""
    ca_key, ca = make_ca(start=start)
    key, cert = make_server_certificate(ca_key, ca, names, days, start)
    base = os.fspath(directory)
    paths = TestPki(*(os.path.join(base, n) for n in (CA_FILE, CERT_FILE, KEY_FILE)))
    with open(paths.ca, "wb") as handle:
        handle.write(_pem(ca))
    with open(paths.cert, "wb") as handle:
        handle.write(_pem(cert) + _pem(ca))
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return paths
