"""Certificates: parsing, the CERT-response checks, ntp-keygen's certificate and the SIGN
exchange (interop.md 5.3, 5.7, 6.4, 7.3)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.x509.oid import NameOID

from ntpauto.events import Event
from ntpauto.pki import der as der_codec
from ntpauto.pki.certificates import (
    EKU_PRIVATE,
    EKU_TRUST_ROOT,
    SIGN_LIFETIME,
    CertificateError,
    build_self_signed,
    check_cert_response,
    datetime_from_ntp,
    gq_key_correct,
    gq_key_reference,
    ntp_from_datetime,
    parse_certificate,
    sign_request,
    verify_issued_by,
    verify_self_signed,
)
from ntpauto.pki.legacy_x509 import sign_tbs
from ntpauto.pki.profiles import DSA_SHA, DSA_SHA1, RSA_MD5, RSA_SHA1, RSA_SHA256

FS = 4004436515  # 2026-11-23 15:28:35 UTC
DAY = 86400


@pytest.fixture(scope="module")
def alice_key() -> rsa.RSAPrivateKey:
    """The trusted host's key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def brenda_key() -> rsa.RSAPrivateKey:
    """A client's key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def dsa_key() -> dsa.DSAPrivateKey:
    """A DSA sign key."""
    return dsa.generate_private_key(key_size=1024)


def _resign_with_tbs_change(der: bytes, key, change) -> bytes:
    """Re-sign ``der`` after ``change(fields)`` edited its TBSCertificate fields (DER)."""
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    fields = der_codec.children(der_codec.content(tbs, der_codec.TAG_SEQUENCE))
    change(fields)
    return sign_tbs(der_codec.sequence(*fields), key, RSA_SHA256)


def test_ntp_datetime_conversions():
    """NTP seconds <-> UTC datetimes, era-aware around the pivot."""
    when = datetime_from_ntp(FS)
    assert when == datetime.datetime(2026, 11, 23, 15, 28, 35, tzinfo=datetime.UTC)
    assert ntp_from_datetime(when) == FS
    after_2036 = datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC)
    seconds = ntp_from_datetime(after_2036)
    assert seconds < FS  # era 1 wraps
    assert datetime_from_ntp(seconds, after_2036.timestamp()) == after_2036


def test_self_signed_certificate_has_the_reference_layout(alice_key):
    """v3, serial = filestamp, CN as UTF8String, 365 days, extensions in the reference's order
    with the reference's criticality (interop.md 7.3)."""
    der = build_self_signed("alice@alice", alice_key, RSA_MD5, FS, trusted=True)
    cert = x509.load_der_x509_certificate(der)
    assert cert.version is x509.Version.v3
    assert cert.serial_number == FS
    attribute = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
    assert attribute._type is x509.name._ASN1Type.UTF8String
    assert cert.subject == cert.issuer
    info = parse_certificate(der)
    assert [(e.oid, e.critical) for e in info.extensions] == [
        ("2.5.29.19", True), ("2.5.29.15", False), ("2.5.29.37", False)]
    assert info.extensions[1].value == bytes.fromhex("03020284")
    assert info.extensions[2].value == EKU_TRUST_ROOT
    assert info.not_before_ntp == FS
    assert info.not_after_ntp == FS + 365 * DAY
    assert (info.subject, info.issuer, info.group, info.host) == (
        "alice@alice", "alice@alice", "alice", "alice")
    assert info.signature_nid == 8 and info.trusted and not info.private
    assert info.gq_key is None and info.self_signed
    assert verify_self_signed(info)


def test_untrusted_and_private_certificates(alice_key):
    """Without -T there is no EKU; -P gives EKU Private; both together are refused."""
    plain = parse_certificate(build_self_signed("brenda", alice_key, RSA_SHA1, FS, days=30))
    assert [e.oid for e in plain.extensions] == ["2.5.29.19", "2.5.29.15"]
    assert not plain.trusted and not plain.private and plain.group is None
    assert plain.not_after_ntp - plain.not_before_ntp == 30 * DAY
    private = parse_certificate(build_self_signed("alice", alice_key, RSA_MD5, FS, private=True))
    assert private.private and not private.trusted
    assert private.extensions[-1].value == EKU_PRIVATE
    with pytest.raises(ValueError):
        build_self_signed("alice", alice_key, RSA_MD5, FS, trusted=True, private=True)
    with pytest.raises(ValueError):
        build_self_signed("alice", alice_key, RSA_MD5, FS, days=0)


def test_gq_key_goes_in_the_subject_key_identifier(alice_key):
    """The GQ key is a non-critical SKI between keyUsage and extendedKeyUsage."""
    v = int.from_bytes(bytes(range(1, 33)), "big")
    info = parse_certificate(build_self_signed("alice", alice_key, RSA_MD5, FS, trusted=True,
                                               gq_key=v))
    assert [e.oid for e in info.extensions] == ["2.5.29.19", "2.5.29.15", "2.5.29.14",
                                                "2.5.29.37"]
    assert info.extensions[2].value == b"\x04\x20" + bytes(range(1, 33))
    assert info.gq_key == info.gq_key_correct == v


@pytest.mark.parametrize("octets", [127, 128, 200, 300])
def test_gq_key_reference_misreading_of_long_keys(octets, alice_key):
    """The reference skips 2 octets of the SKI: right up to 127-octet keys, wrong above
    (the long-form length octet is read as part of v); gq_key_correct reads the DER."""
    v_bytes = b"\xa5" * octets
    v = int.from_bytes(v_bytes, "big")
    info = parse_certificate(build_self_signed("alice", alice_key, RSA_MD5, FS, gq_key=v))
    assert info.gq_key_correct == v
    ski = next(e.value for e in info.extensions if e.oid == "2.5.29.14")
    if octets <= 127:
        assert info.gq_key == v
    else:
        assert info.gq_key != v
        assert info.gq_key == int.from_bytes(ski[2:], "big")
        assert info.gq_key.to_bytes(len(ski) - 2, "big").endswith(v_bytes)


def test_gq_key_readers_on_odd_input():
    """Short or non-OCTET-STRING SKI values: the reference reading gives what it can."""
    assert gq_key_reference(b"\x04") is None
    assert gq_key_reference(b"\x04\x00") == 0
    assert gq_key_correct(b"\x05\x00") is None
    assert gq_key_correct(b"\x04\x05ab") is None


@pytest.mark.parametrize("profile", [DSA_SHA1, DSA_SHA], ids=lambda p: p.name)
def test_dsa_certificates(profile, dsa_key):
    """DSA-SHA1 and DSA-SHA certificates carry NID 113 / 66 and verify with their own key."""
    info = parse_certificate(build_self_signed("alice", dsa_key, profile, FS, trusted=True))
    assert info.signature_nid == profile.nid
    assert info.signature_oid == profile.oid
    assert verify_self_signed(info)


def test_scheme_and_key_type_must_match(alice_key, dsa_key):
    """An RSA scheme with a DSA key is refused."""
    with pytest.raises(TypeError):
        build_self_signed("alice", dsa_key, RSA_MD5, FS)
    with pytest.raises(TypeError):
        build_self_signed("alice", alice_key, DSA_SHA1, FS)


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x00", b"not a certificate"])
def test_parse_rejects_invalid_der(der):
    """Invalid DER is XEVNT_CRT (security CASES 33)."""
    with pytest.raises(CertificateError) as caught:
        parse_certificate(der)
    assert caught.value.event is Event.CRT


def test_parse_rejects_trailing_octets(alice_key):
    """Octets after the certificate are refused (XEVNT_CRT)."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS)
    with pytest.raises(CertificateError) as caught:
        parse_certificate(der + b"\x00")
    assert caught.value.event is Event.CRT


def test_parse_rejects_a_certificate_without_cn(alice_key):
    """A subject without CN is XEVNT_CRT."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no cn")])
    start = datetime_from_ntp(FS)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(alice_key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1)).sign(alice_key, hashes.SHA256()))
    with pytest.raises(CertificateError, match="no CN") as caught:
        parse_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert caught.value.event is Event.CRT


def test_name_is_everything_after_the_first_cn(alice_key):
    """With several RDNs the name is what follows 'CN=' in OpenSSL's one-line form."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "unit")])
    start = datetime_from_ntp(FS)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(alice_key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1)).sign(alice_key, hashes.SHA256()))
    info = parse_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert info.subject == "alice/OU=unit"


def test_verify_self_signed_and_issued_by(alice_key, brenda_key):
    """A flipped signature bit fails; issued-by checks the issuer's key only."""
    der = build_self_signed("brenda", brenda_key, RSA_MD5, FS)
    info = parse_certificate(der)
    assert verify_self_signed(info)
    tampered = bytearray(der)
    tampered[-1] ^= 0x01
    assert not verify_self_signed(parse_certificate(bytes(tampered)))
    signed = parse_certificate(sign_request(der, "alice", alice_key, RSA_MD5, FS + 60))
    alice = parse_certificate(build_self_signed("alice", alice_key, RSA_MD5, FS, trusted=True))
    assert verify_issued_by(signed, alice)
    assert not verify_issued_by(signed, info)


def test_check_cert_response_accepts_a_good_certificate(alice_key):
    """A trusted self-signed certificate with notBefore = filestamp passes."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS, trusted=True)
    info = check_cert_response(der, FS, "brenda", now=FS + 100)
    assert info.subject == "alice"
    assert check_cert_response(info, FS - 10, "brenda") is info


def test_check_cert_response_rejects_a_bad_self_signature(alice_key, brenda_key):
    """A self-signed certificate that does not verify with its own key: XEVNT_CRT."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS)
    forged = _resign_with_tbs_change(der, brenda_key, lambda fields: None)
    with pytest.raises(CertificateError, match="own key") as caught:
        check_cert_response(forged, FS, "brenda")
    assert caught.value.event is Event.CRT


def test_check_cert_response_rejects_a_trail_loop(alice_key, brenda_key):
    """A certificate issued by the receiver itself is a trail loop (CASES 36)."""
    request = build_self_signed("alice", alice_key, RSA_MD5, FS)
    issued = sign_request(request, "brenda", brenda_key, RSA_MD5, FS + 10)
    with pytest.raises(CertificateError, match="loop"):
        check_cert_response(issued, FS, "brenda")
    assert check_cert_response(issued, FS, "carol").issuer == "brenda"


def test_check_cert_response_rejects_notbefore_before_filestamp(alice_key):
    """notBefore earlier than the message filestamp: XEVNT_CRT (CASES 35)."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS)
    with pytest.raises(CertificateError, match="precedes the filestamp"):
        check_cert_response(der, FS + 1, "brenda")


def test_check_cert_response_rejects_notbefore_after_notafter(alice_key):
    """notBefore > notAfter: XEVNT_CRT (CASES 35)."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS)

    def swap(fields):
        index = 4 if fields[0][0] == 0xA0 else 3
        validity = der_codec.children(der_codec.content(fields[index]))
        fields[index] = der_codec.sequence(validity[1], validity[0])

    swapped = _resign_with_tbs_change(der, alice_key, swap)
    with pytest.raises(CertificateError, match="notBefore is after notAfter"):
        check_cert_response(swapped, 0, "brenda")


def test_check_cert_response_rejects_expired_certificates(alice_key):
    """notAfter in the past is XEVNT_PER when the time is known; unsynchronized (0) skips."""
    der = build_self_signed("alice", alice_key, RSA_MD5, FS, days=1)
    with pytest.raises(CertificateError) as caught:
        check_cert_response(der, FS, "brenda", now=FS + 2 * DAY)
    assert caught.value.event is Event.PER
    assert check_cert_response(der, FS, "brenda", now=0).subject == "alice"
    assert check_cert_response(der, FS, "brenda", now=FS + DAY).subject == "alice"


def test_sign_request_follows_the_reference(alice_key, brenda_key):
    """SIGN: serial = now, validity now .. now + 365 days, issuer CN = ours (UTF8String),
    subject, key and extensions copied byte for byte and in order (interop.md 5.7)."""
    v = 0x1234567890ABCDEF
    request = build_self_signed("brenda@alice", brenda_key, RSA_MD5, FS, gq_key=v)
    now = FS + 3600
    der = sign_request(request, "alice@alice", alice_key, RSA_MD5, now)
    signed, original = parse_certificate(der), parse_certificate(request)
    assert signed.serial == now
    assert signed.not_before_ntp == now
    assert signed.not_after_ntp - signed.not_before_ntp == SIGN_LIFETIME
    assert (signed.subject, signed.issuer) == ("brenda@alice", "alice@alice")
    assert signed.extensions == original.extensions
    assert signed.gq_key == v
    assert signed.signature_nid == 8
    assert RSA_MD5.verify(alice_key.public_key(), signed.signature, signed.tbs)
    cert = x509.load_der_x509_certificate(der)
    issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
    assert issuer_cn._type is x509.name._ASN1Type.UTF8String
    assert cert.public_key() == brenda_key.public_key()


def test_sign_request_with_a_dsa_sign_key(brenda_key, dsa_key):
    """The responder's DSA sign key and DSA-SHA1 sign the new certificate."""
    request = build_self_signed("brenda", brenda_key, RSA_MD5, FS)
    signed = parse_certificate(sign_request(request, "alice", dsa_key, DSA_SHA1, FS + 5))
    assert signed.signature_nid == 113
    assert DSA_SHA1.verify(dsa_key.public_key(), signed.signature, signed.tbs)


def test_sign_request_refusals(alice_key, brenda_key):
    """Unsynchronized (TSP), malformed (CRT), trustRoot requests (CRT, CASES 38) and our own
    certificate not valid now (PER) are refused."""
    request = build_self_signed("brenda", brenda_key, RSA_MD5, FS)
    with pytest.raises(CertificateError) as caught:
        sign_request(request, "alice", alice_key, RSA_MD5, 0)
    assert caught.value.event is Event.TSP
    with pytest.raises(CertificateError) as caught:
        sign_request(b"\x30\x00", "alice", alice_key, RSA_MD5, FS)
    assert caught.value.event is Event.CRT
    trusted = build_self_signed("brenda", brenda_key, RSA_MD5, FS, trusted=True)
    with pytest.raises(CertificateError, match="trustRoot") as caught:
        sign_request(trusted, "alice", alice_key, RSA_MD5, FS)
    assert caught.value.event is Event.CRT
    ours = parse_certificate(build_self_signed("alice", alice_key, RSA_MD5, FS, days=1))
    with pytest.raises(CertificateError) as caught:
        sign_request(request, "alice", alice_key, RSA_MD5, FS + 2 * DAY, ours)
    assert caught.value.event is Event.PER
    assert sign_request(request, "alice", alice_key, RSA_MD5, FS + 10, ours)


def test_sign_request_can_sign_a_trusted_certificate_like_the_reference(alice_key, brenda_key):
    """allow_trust_root=True does what the reference does between two trusted hosts."""
    trusted = build_self_signed("carol", brenda_key, RSA_MD5, FS, trusted=True)
    signed = parse_certificate(sign_request(trusted, "alice", alice_key, RSA_MD5, FS + 1,
                                            allow_trust_root=True))
    assert signed.trusted and not signed.self_signed


def test_sign_request_with_sha256(alice_key, brenda_key):
    """Our default RSA-SHA256 signs through cryptography's builder directly."""
    request = build_self_signed("brenda", brenda_key, RSA_SHA256, FS)
    signed = parse_certificate(sign_request(request, "alice", alice_key, RSA_SHA256, FS + 1))
    assert signed.signature_nid == 668
    assert verify_issued_by(signed, parse_certificate(
        build_self_signed("alice", alice_key, RSA_SHA256, FS)))
