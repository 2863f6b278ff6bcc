"""X.509 certificates as Autokey uses them: parse (the RFC 5906 "CIS" is just the DER),
check a CERT response, build ntp-keygen's self-signed certificate and sign a SIGN request.

reference: interop.md 5.3 (CERT response, receive checks), 5.6/5.7 (SIGN), 6.4 (GQ key
in the Subject Key Identifier, trust/private EKU), 7.3 (ntp-keygen's certificate);
ntpd/ntp_crypto.c cert_parse(), cert_sign(), util/ntp-keygen.c x509().

Names: the subject and issuer "names" are what follows the first ``CN=`` in OpenSSL's one-line
form of the DN (``/CN=alice@group``), i.e. the CN when it is the only or last RDN.

Times: ``not_before``/``not_after`` are timezone-aware UTC datetimes; ``*_ntp`` properties give
NTP seconds (32-bit, as filestamps are), converted era-aware by
:mod:`ntpauto.wire.timestamps`.

Errors carry the reference's event codes (:class:`ntpauto.events.Event`): ``CRT``
(bad or missing certificate) for anything cert_parse() refuses, ``PER`` for expired
certificates, ``VFY`` for signatures that do not verify, ``TSP`` for a SIGN request while
unsynchronized, ``PUB`` for a missing or unusable public key.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.x509.oid import NameOID

from ntpauto.events import AutokeyError, Event
from ntpauto.pki import der as der_codec
from ntpauto.pki import legacy_x509
from ntpauto.pki.profiles import SIGNATURE_ALGORITHMS, UnsupportedProfile, profile_for_oid
from ntpauto.wire.timestamps import ntp_seconds, ntp_to_unix

__all__ = [
    "EKU_PRIVATE",
    "EKU_TRUST_ROOT",
    "PRIVATE_OID",
    "SIGN_LIFETIME",
    "TRUST_ROOT_OID",
    "CertInfo",
    "CertificateError",
    "Extension",
    "build_self_signed",
    "check_cert_response",
    "datetime_from_ntp",
    "gq_key_correct",
    "gq_key_reference",
    "ntp_from_datetime",
    "parse_certificate",
    "sign_request",
    "verify_issued_by",
    "verify_self_signed",
]

TRUST_ROOT_OID = "1.3.6.1.5.5.7.48.1.11"
"""EKU "Trust Root": the certificate of a trusted host (ntp-keygen -T)."""

PRIVATE_OID = "1.3.6.1.4"
"""EKU "Private": the private certificate of the PC scheme (ntp-keygen -P)."""

EKU_TRUST_ROOT = der_codec.sequence(der_codec.oid(TRUST_ROOT_OID))
EKU_PRIVATE = der_codec.sequence(der_codec.oid(PRIVATE_OID))
"""extnValue octets of an EKU holding exactly that one OID (what the reference recognises)."""

OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
OID_SUBJECT_KEY_IDENTIFIER = "2.5.29.14"
OID_EXTENDED_KEY_USAGE = "2.5.29.37"

SIGN_LIFETIME = 31_536_000
"""Validity of a certificate made in the SIGN exchange: 365 days (interop.md 5.7)."""

_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}


class CertificateError(AutokeyError):
    """A certificate was refused; ``event`` is the reference's event (usually ``Event.CRT``)."""


def datetime_from_ntp(seconds: int, pivot: float | None = None) -> datetime.datetime:
    """UTC datetime of 32-bit NTP seconds, in the era nearest ``pivot`` (Unix seconds)."""
    unix = ntp_to_unix((int(seconds) & 0xFFFFFFFF) << 32, pivot)
    return datetime.datetime.fromtimestamp(unix, datetime.UTC)


def ntp_from_datetime(when: datetime.datetime) -> int:
    """32-bit NTP seconds of an aware datetime (whole seconds)."""
    return ntp_seconds(when.timestamp())


@attrs.frozen
class Extension:
    """One X.509v3 extension as encoded: ``value`` is the raw extnValue content octets."""

    oid: str
    critical: bool
    value: bytes


def gq_key_reference(ski_value: bytes) -> int | None:
    """The GQ public key as the reference reads it from a Subject Key Identifier extnValue:
    skip the first 2 octets (OCTET STRING tag and a one-octet length), the rest is v.

    This misreads keys longer than 127 octets, whose DER length takes two or more octets:
    the long-form length octet is taken as the first octet of v (interop.md 6.4).
    ``None`` when the extnValue is shorter than 2 octets."""
    if len(ski_value) < 2:
        return None
    return int.from_bytes(ski_value[2:], "big")


def gq_key_correct(ski_value: bytes) -> int | None:
    """The GQ public key as the DER actually encodes it (the inner OCTET STRING), or
    ``None`` when the extnValue is not a DER OCTET STRING."""
    try:
        return int.from_bytes(der_codec.content(ski_value, der_codec.TAG_OCTET_STRING), "big")
    except der_codec.DerError:
        return None


@attrs.frozen
class CertInfo:
    """What Autokey uses of a certificate (RFC 5906 "CIS"; reference ``struct cert_info``)."""

    subject: str
    issuer: str
    serial: int
    not_before: datetime.datetime
    not_after: datetime.datetime
    signature_nid: int
    """OpenSSL NID of the signature algorithm (0 when unknown): the status word's high half."""
    signature_oid: str
    trusted: bool
    """EKU is exactly trustRoot (1.3.6.1.5.5.7.48.1.11)."""
    private: bool
    """EKU is exactly Private (1.3.6.1.4): a PC-scheme certificate."""
    gq_key: int | None
    """GQ public key from the Subject Key Identifier, read as the reference reads it."""
    gq_key_correct: int | None
    """GQ public key from the Subject Key Identifier, read as correct DER."""
    extensions: tuple[Extension, ...]
    der: bytes = attrs.field(repr=False)
    tbs: bytes = attrs.field(repr=False, eq=False)
    signature: bytes = attrs.field(repr=False, eq=False)
    public_key: Any = attrs.field(repr=False, eq=False)

    @property
    def self_signed(self) -> bool:
        """Subject name equals issuer name (the reference's test; the signature is separate)."""
        return self.subject == self.issuer

    @property
    def not_before_ntp(self) -> int:
        """notBefore in NTP seconds."""
        return ntp_from_datetime(self.not_before)

    @property
    def not_after_ntp(self) -> int:
        """notAfter in NTP seconds."""
        return ntp_from_datetime(self.not_after)

    @property
    def group(self) -> str | None:
        """The group: the part of the subject name after '@', if any."""
        return self.subject.split("@", 1)[1] if "@" in self.subject else None

    @property
    def host(self) -> str:
        """The host part of the subject name (before '@')."""
        return self.subject.split("@", 1)[0]

    def valid_at(self, when: datetime.datetime) -> bool:
        """``not_before <= when <= not_after``."""
        return self.not_before <= when <= self.not_after


def _escape(value: str) -> str:
    out = []
    for char in value:
        if 0x20 <= ord(char) <= 0x7E:
            out.append(char)
        else:
            out.extend(f"\\x{octet:02X}" for octet in char.encode("utf-8"))
    return "".join(out)


def _oneline(name: x509.Name) -> str:
    parts = []
    for attribute in name:
        short = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append(f"/{short}={_escape(value)}")
    return "".join(parts)


def _cn(name: x509.Name, what: str) -> str:
    oneline = _oneline(name)
    if "CN=" not in oneline:
        raise CertificateError(Event.CRT, f"certificate {what} has no CN ({oneline or 'empty'})")
    return oneline.split("CN=", 1)[1]


def parse_certificate(der: bytes) -> CertInfo:
    """Parse a DER certificate; ``CertificateError(Event.CRT)`` when it is not one Autokey can
    use (bad DER, no CN in subject or issuer, malformed extensions), ``Event.PUB`` when its
    public key is missing or unusable."""
    der = bytes(der)
    try:
        cert = x509.load_der_x509_certificate(der)
        tbs = cert.tbs_certificate_bytes
        raw_extensions = legacy_x509.tbs_extensions(tbs)
        subject_name = cert.subject
        issuer_name = cert.issuer
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        serial = cert.serial_number
        signature_oid = cert.signature_algorithm_oid.dotted_string
        signature = cert.signature
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        # cryptography reports a version other than v1/v3 with InvalidVersion and some
        # malformed names (a BitString attribute of another type) with TypeError.
        raise CertificateError(Event.CRT, f"invalid certificate DER: {exc}") from None
    try:
        public_key = cert.public_key()
    except (ValueError, TypeError) as exc:
        raise CertificateError(Event.PUB, f"unusable public key: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise CertificateError(Event.PUB, f"unsupported public key: {exc}") from None
    subject = _cn(subject_name, "subject")
    issuer = _cn(issuer_name, "issuer")
    extensions = tuple(Extension(oid, critical, value) for oid, critical, value in raw_extensions)
    eku = next((e.value for e in extensions if e.oid == OID_EXTENDED_KEY_USAGE), None)
    ski = next((e.value for e in extensions if e.oid == OID_SUBJECT_KEY_IDENTIFIER), None)
    return CertInfo(
        subject=subject,
        issuer=issuer,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        signature_nid=SIGNATURE_ALGORITHMS.get(signature_oid, (0, "", ""))[0],
        signature_oid=signature_oid,
        trusted=eku == EKU_TRUST_ROOT,
        private=eku == EKU_PRIVATE,
        gq_key=gq_key_reference(ski) if ski is not None else None,
        gq_key_correct=gq_key_correct(ski) if ski is not None else None,
        extensions=extensions,
        der=der,
        tbs=tbs,
        signature=signature,
        public_key=public_key,
    )


def _verify_with(cert: CertInfo, public_key: Any) -> bool:
    try:
        profile = profile_for_oid(cert.signature_oid)
    except UnsupportedProfile:
        return False
    return profile.verify(public_key, cert.signature, cert.tbs)


def verify_self_signed(cert: CertInfo) -> bool:
    """True when ``cert``'s signature verifies with its own public key."""
    return _verify_with(cert, cert.public_key)


def verify_issued_by(cert: CertInfo, issuer: CertInfo) -> bool:
    """True when ``cert``'s signature verifies with ``issuer``'s public key (the reference's
    X509_verify; names are not compared here)."""
    return _verify_with(cert, issuer.public_key)


def check_cert_response(
    cert: CertInfo | bytes,
    filestamp: int,
    own_name: str,
    now: int | None = None,
) -> CertInfo:
    """The receive-side checks of a CERT (or SIGN) response value (interop.md 5.3).

    In the reference's order: DER parse and CN (``CRT``); a self-signed certificate must verify
    with its own key, any other must not be issued by ``own_name`` (trail loop) (``CRT``);
    notBefore <= notAfter and notBefore >= the message ``filestamp`` (``CRT``).  Then, when
    ``now`` (NTP seconds) is given and non-zero, a certificate whose notAfter is in the past is
    refused with ``PER``.  Returns the parsed certificate."""
    info = cert if isinstance(cert, CertInfo) else parse_certificate(cert)
    if info.self_signed:
        if not verify_self_signed(info):
            raise CertificateError(Event.CRT, f"self-signed certificate {info.subject} "
                                              "does not verify with its own key")
    elif info.issuer == own_name:
        raise CertificateError(Event.CRT, f"certificate trail loop: {info.subject} is "
                                          f"issued by this host ({own_name})")
    if info.not_before > info.not_after:
        raise CertificateError(Event.CRT, f"certificate {info.subject}: notBefore is after "
                                          "notAfter")
    stamp = datetime_from_ntp(filestamp, info.not_before.timestamp())
    if info.not_before < stamp:
        raise CertificateError(Event.CRT, f"certificate {info.subject}: notBefore "
                                          f"{info.not_before:%Y-%m-%d %H:%M:%S} precedes the "
                                          f"filestamp {stamp:%Y-%m-%d %H:%M:%S}")
    if now:
        current = datetime_from_ntp(now, info.not_after.timestamp())
        if info.not_after < current:
            raise CertificateError(Event.PER, f"certificate {info.subject} expired "
                                              f"{info.not_after:%Y-%m-%d %H:%M:%S}")
    return info


def _utf8_name(name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, name, _type=x509.name._ASN1Type.UTF8String)
    ])


def _sign(builder: x509.CertificateBuilder, sign_key: Any, profile: Any) -> bytes:
    """Sign ``builder`` with ``profile``: by ``cryptography`` for SHA-2, via legacy_x509 for
    the algorithms it refuses (MD5, SHA-1) or names otherwise (dsaWithSHA)."""
    expected = rsa.RSAPrivateKey if profile.key_type == "RSA" else dsa.DSAPrivateKey
    if not isinstance(sign_key, expected):
        raise TypeError(f"{profile.name} needs a {profile.key_type} sign key")
    algorithm = profile.hash_algorithm()
    if isinstance(algorithm, hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        cert = builder.sign(sign_key, algorithm)
        if cert.signature_algorithm_oid.dotted_string == profile.oid:
            return cert.public_bytes(serialization.Encoding.DER)
    return legacy_x509.sign_certificate(builder, sign_key, profile)


def build_self_signed(
    name: str,
    sign_key: Any,
    profile: Any,
    not_before: int,
    days: int = 365,
    trusted: bool = False,
    private: bool = False,
    gq_key: int | None = None,
) -> bytes:
    """DER of ntp-keygen's self-signed certificate (interop.md 7.3).

    ``not_before`` is the generation time in NTP seconds (the filestamp), also the serial;
    notAfter is ``days`` later.  v3; subject = issuer = one RDN CN=``name`` as UTF8String;
    public key = ``sign_key``'s, signed by it with ``profile``.  Extensions in the reference's
    order: basicConstraints (critical, CA:TRUE), keyUsage (digitalSignature, keyCertSign),
    subjectKeyIdentifier = the GQ key ``gq_key`` (only when given) and extendedKeyUsage
    trustRoot (``trusted``) or Private (``private``)."""
    if trusted and private:
        raise ValueError("a certificate is either trusted (-T) or private (-P), not both")
    if days <= 0:
        raise ValueError("the lifetime must be at least one day")
    start = datetime_from_ntp(not_before)
    subject = _utf8_name(name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(sign_key.public_key())
        .serial_number(int(not_before))
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=False,
        )
    )
    if gq_key is not None:
        if gq_key <= 0:
            raise ValueError("the GQ key must be positive")
        octets = gq_key.to_bytes((gq_key.bit_length() + 7) // 8, "big")
        builder = builder.add_extension(x509.SubjectKeyIdentifier(octets), critical=False)
    if trusted or private:
        usage = x509.ObjectIdentifier(TRUST_ROOT_OID if trusted else PRIVATE_OID)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return _sign(builder, sign_key, profile)


def sign_request(
    request_der: bytes,
    issuer_name: str,
    sign_key: Any,
    profile: Any,
    now: int,
    issuer_cert: CertInfo | None = None,
    *,
    allow_trust_root: bool = False,
) -> bytes:
    """DER of the certificate a SIGN response carries (interop.md 5.7).

    Serial = ``now`` (NTP seconds); validity now .. now + 365 days; issuer = CN=``issuer_name``
    (UTF8String); subject, public key and every extension copied from the request in order,
    byte for byte; signed with ``sign_key``/``profile`` and checked.  Refused with
    ``CertificateError``: ``now`` = 0 (``TSP``), malformed DER or no CN (``CRT``), no usable
    public key (``PUB``), a request carrying EKU trustRoot (``CRT``, security CASES 38; the
    reference does sign it -- the sym capture has alice signing carol's trusted certificate --
    so ``allow_trust_root=True`` gives the reference's behaviour, e.g. between two trusted
    hosts in symmetric mode), our own ``issuer_cert`` not valid now (``PER``)."""
    if not now:
        raise CertificateError(Event.TSP, "cannot sign a certificate while unsynchronized")
    request = parse_certificate(request_der)
    current = datetime_from_ntp(now)
    if issuer_cert is not None and not issuer_cert.valid_at(current):
        raise CertificateError(Event.PER, f"our certificate {issuer_cert.subject} is not valid "
                                          f"at {current:%Y-%m-%d %H:%M:%S}")
    trust_root = any(e.oid == OID_EXTENDED_KEY_USAGE and TRUST_ROOT_OID in _eku_oids(e.value)
                     for e in request.extensions)
    if trust_root and not allow_trust_root:
        raise CertificateError(Event.CRT, f"refusing to sign {request.subject}: the request "
                                          "carries EKU trustRoot")
    source = x509.load_der_x509_certificate(request.der)
    builder = (
        x509.CertificateBuilder()
        .subject_name(source.subject)
        .issuer_name(_utf8_name(issuer_name))
        .public_key(request.public_key)
        .serial_number(int(now))
        .not_valid_before(current)
        .not_valid_after(current + datetime.timedelta(seconds=SIGN_LIFETIME))
    )
    for extension in request.extensions:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(extension.oid), extension.value),
            critical=extension.critical,
        )
    try:
        der = _sign(builder, sign_key, profile)
    except (TypeError, ValueError) as exc:
        raise CertificateError(Event.CRT, f"cannot sign {request.subject}: {exc}") from None
    signed = parse_certificate(der)
    if not profile.verify(sign_key.public_key(), signed.signature, signed.tbs):
        raise CertificateError(Event.VFY, "the signed certificate does not verify")
    return der


def _eku_oids(value: bytes) -> tuple[str, ...]:
    """OIDs in an EKU extnValue (empty when malformed)."""
    try:
        items = der_codec.children(der_codec.content(value, der_codec.TAG_SEQUENCE))
        return tuple(der_codec.decode_oid(der_codec.content(item)) for item in items
                     if item[0] == der_codec.TAG_OID)
    except der_codec.DerError:
        return ()
