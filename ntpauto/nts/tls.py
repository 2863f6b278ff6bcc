"""TLS for NTS-KE (RFC 8915 section 3): TLS 1.3 only, ALPN ``ntske/1``, with Twisted's TLS.

The server presents ``ntsservercert`` (a PEM certificate chain, the server's first) and
``ntsserverkey``; the client checks the server's chain against ``ntstrustedcerts`` (PEM CA
certificates) or the system's trust store, and the server's name or address against the
certificate (``service_identity``, as Twisted's :func:`~twisted.internet.ssl.optionsForClientTLS`
does).  A connection that did not settle on ``ntske/1`` is closed by the NTS-KE protocols
(:func:`negotiated_ntske`).
"""

from __future__ import annotations

import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import ssl

from ntpauto.errors import FileLineError

__all__ = ["ALPN", "TlsFileError", "client_options", "negotiated_ntske", "server_options"]

ALPN = b"ntske/1"
"""The ALPN protocol of NTS-KE (RFC 8915 section 4)."""


class TlsFileError(FileLineError):
    """A certificate or key file that cannot be used; ``str()`` names the file."""


def _read(path: str | os.PathLike[str]) -> bytes:
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            return handle.read()
    except OSError as e:
        raise TlsFileError(name, 0, f"cannot read: {e.strerror or e}") from None


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (at least one)."""
    try:
        certificates = x509.load_pem_x509_certificates(_read(path))
    except ValueError as e:
        raise TlsFileError(os.fspath(path), 0, f"not PEM certificates: {e}") from None
    return certificates


def server_options(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> Any:
    """Twisted's ``CertificateOptions`` for the NTS-KE server: the chain of ``cert`` and its
    private ``key`` (unencrypted PEM), TLS 1.3 at least, ALPN ``ntske/1``."""
    chain = load_certificates(cert)
    try:
        private = serialization.load_pem_private_key(_read(key), password=None)
    except (ValueError, TypeError) as e:
        raise TlsFileError(os.fspath(key), 0, f"not an unencrypted PEM private key: {e}") \
            from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise TlsFileError(os.fspath(key), 0, f"not the private key of {os.fspath(cert)}")
    return ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(private),
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        acceptableProtocols=[ALPN], raiseMinimumTo=ssl.TLSVersion.TLSv1_3)


def client_options(hostname: str, trusted: str | os.PathLike[str] | None = None) -> Any:
    """Twisted's client connection creator for an NTS-KE server named ``hostname`` (a DNS
    name or an IP address, which its certificate must carry): trusting the CA
    certificates of ``trusted``, or the system's; TLS 1.3 at least, ALPN ``ntske/1``."""
    if trusted is not None:
        root = ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(c))
             for c in load_certificates(trusted)])
    else:
        root = ssl.platformTrust()
    return ssl.optionsForClientTLS(
        hostname, trustRoot=root, acceptableProtocols=[ALPN],
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_3})


def negotiated_ntske(transport: Any) -> bool:
    """The TLS connection settled on ``ntske/1`` over TLS 1.3."""
    handle = transport.getHandle()
    return transport.negotiatedProtocol == ALPN \
        and handle.get_protocol_version_name() == "TLSv1.3"
