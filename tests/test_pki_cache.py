"""The certificate cache: install/replace by filestamp, CERT-response lookup, trails, size cap
(interop.md 5.3)."""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.events import Event
from ntpauto.pki.cache import (
    CERT_ERROR,
    CERT_PRIV,
    CERT_SIGN,
    CERT_TRUST,
    CERT_VALID,
    CertificateCache,
    check_trail_link,
)
from ntpauto.pki.certificates import (
    CertificateError,
    CertInfo,
    build_self_signed,
    datetime_from_ntp,
    parse_certificate,
    sign_request,
)
from ntpauto.pki.profiles import RSA_SHA256

FS = 4004436515
DAY = 86400


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """One RSA key per host name used below."""
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=1024)
            for name in ("alice", "brenda", "carol", "mallory")}


def own(name: str, key, stamp: int = FS, **flags) -> CertInfo:
    """A self-signed certificate of ``name``."""
    return parse_certificate(build_self_signed(name, key, RSA_SHA256, stamp, **flags))


def issued(subject: CertInfo, issuer: str, issuer_key, now: int) -> CertInfo:
    """``subject``'s certificate signed by ``issuer`` at ``now`` (the SIGN exchange)."""
    return parse_certificate(sign_request(subject.der, issuer, issuer_key, RSA_SHA256, now,
                                          allow_trust_root=True))


def test_install_orders_most_recent_first_and_sets_flags(keys):
    """New entries go to the head; trusted/private/valid flags come from the certificate."""
    cache = CertificateCache()
    alice = cache.install(own("alice", keys["alice"], trusted=True), FS)
    brenda = cache.install(own("brenda", keys["brenda"], private=True), FS)
    assert list(cache) == [brenda, alice]
    assert alice.flags == CERT_VALID | CERT_TRUST
    assert brenda.flags == CERT_VALID | CERT_PRIV
    assert len(cache) == 2


def test_same_subject_and_issuer_replaced_only_by_a_newer_filestamp(keys):
    """Equal or older filestamps keep the cached certificate; newer ones replace it."""
    cache = CertificateCache()
    first = cache.install(own("alice", keys["alice"], FS), FS)
    same = cache.install(own("alice", keys["alice"], FS + 1), FS)
    assert same is first and len(cache) == 1
    older = cache.install(own("alice", keys["alice"], FS + 2), FS - 5)
    assert older is first
    newer = cache.install(own("alice", keys["alice"], FS + 3), FS + 3)
    assert newer is not first and newer.cert.serial == FS + 3
    assert list(cache) == [newer]


def test_lookup_prefers_a_trusted_self_signed_certificate(keys):
    """A trusted self-signed certificate is served even if a signed one was found first."""
    cache = CertificateCache()
    root = own("alice", keys["alice"], trusted=True)
    cache.install(root, FS)
    cache.install(issued(root, "carol", keys["carol"], FS + 10), FS)
    assert cache.lookup("alice").cert is root


def test_lookup_never_serves_untrusted_self_signed_or_private(keys):
    """Untrusted self-signed, private and erroneous certificates are never served."""
    cache = CertificateCache()
    cache.install(own("brenda", keys["brenda"]), FS)
    cache.install(own("carol", keys["carol"], private=True), FS)
    assert cache.lookup("brenda") is None
    assert cache.lookup("carol") is None
    assert cache.lookup("nobody") is None
    trusted = cache.install(own("dave", keys["mallory"], trusted=True), FS)
    trusted.flags |= CERT_ERROR
    assert cache.lookup("dave") is None


def test_lookup_serves_the_last_found_signed_certificate(keys):
    """Without a trusted one: the last certificate issued by another host in list order,
    i.e. the oldest installed one (the reference walks from the head)."""
    cache = CertificateCache()
    brenda = own("brenda", keys["brenda"])
    cache.install(brenda, FS)
    by_alice = issued(brenda, "alice", keys["alice"], FS + 10)
    by_carol = issued(brenda, "carol", keys["carol"], FS + 20)
    cache.install(by_alice, FS)
    cache.install(by_carol, FS)
    assert cache.lookup("brenda").cert is by_alice


def test_size_cap_evicts_oldest_foreign_certificates_only(keys):
    """A flood of distinct certificates stays within the cap and never evicts our own."""
    cache = CertificateCache(max_entries=8)
    mine = cache.install(own("alice", keys["alice"], trusted=True), FS, own=True)
    template = own("x", keys["mallory"])
    for index in range(60):
        flood = issued(template, f"issuer{index}", keys["mallory"], FS + index)
        cache.install(flood, FS + index)
    entries = list(cache)
    assert len(entries) == 8
    assert mine in entries
    assert entries[0].issuer == "issuer59"
    assert {e.issuer for e in entries if not e.own} == {f"issuer{i}" for i in range(53, 60)}


def test_replacing_an_own_entry_keeps_it_own(keys):
    """A newer version of our own certificate stays protected from eviction."""
    cache = CertificateCache(max_entries=1)
    cache.install(own("alice", keys["alice"]), FS, own=True)
    newer = cache.install(own("alice", keys["alice"], FS + 1), FS + 1)
    assert newer.own
    cache.install(own("brenda", keys["brenda"]), FS)
    assert list(cache) == [newer]


def test_trail_hikes_to_the_trusted_root_and_flags_links(keys):
    """brenda (signed by carol) -> carol (signed by alice) -> alice (trusted root)."""
    cache = CertificateCache()
    alice = own("alice", keys["alice"], trusted=True)
    carol = issued(own("carol", keys["carol"]), "alice", keys["alice"], FS + 10)
    brenda = issued(own("brenda", keys["brenda"]), "carol", keys["carol"], FS + 20)
    for cert in (alice, carol, brenda):
        cache.install(cert, FS)
    trail = cache.trail("brenda")
    assert [e.subject for e in trail] == ["brenda", "carol", "alice"]
    assert trail[0].flags & CERT_SIGN and trail[1].flags & CERT_SIGN
    assert not trail[2].flags & CERT_SIGN


def test_trail_errors(keys):
    """Loops, missing issuers and untrusted roots are errors with the reference's events."""
    cache = CertificateCache()
    a_by_b = issued(own("a", keys["alice"]), "b", keys["brenda"], FS + 1)
    b_by_a = issued(own("b", keys["brenda"]), "a", keys["alice"], FS + 1)
    cache.install(a_by_b, FS)
    cache.install(b_by_a, FS)
    with pytest.raises(CertificateError, match="loop") as caught:
        cache.trail("a")
    assert caught.value.event is Event.CRT

    cache = CertificateCache()
    cache.install(issued(own("brenda", keys["brenda"]), "ghost", keys["carol"], FS + 1), FS)
    with pytest.raises(CertificateError, match="no certificate for ghost"):
        cache.trail("brenda")

    cache = CertificateCache()
    cache.install(own("alice", keys["alice"]), FS)
    cache.install(issued(own("brenda", keys["brenda"]), "alice", keys["alice"], FS + 1), FS)
    with pytest.raises(CertificateError, match="not trusted") as caught:
        cache.trail("brenda")
    assert caught.value.event is Event.VFY


def test_trail_link_with_the_wrong_key_is_flagged(keys):
    """A certificate claiming alice as issuer but signed by mallory fails with VFY."""
    cache = CertificateCache()
    cache.install(own("alice", keys["alice"], trusted=True), FS)
    forged = cache.install(issued(own("brenda", keys["brenda"]), "alice", keys["mallory"],
                                  FS + 1), FS)
    with pytest.raises(CertificateError) as caught:
        cache.trail("brenda")
    assert caught.value.event is Event.VFY
    assert forged.flags & CERT_ERROR
    assert cache.lookup("brenda") is None


def test_check_trail_link_validity_nesting(keys):
    """The child must begin within the parent's validity (else PER)."""
    parent = own("alice", keys["alice"], FS + 10 * DAY, trusted=True)
    early = issued(own("brenda", keys["brenda"]), "alice", keys["alice"], FS)
    inside = issued(own("brenda", keys["brenda"]), "alice", keys["alice"], FS + 11 * DAY)
    late = issued(own("brenda", keys["brenda"]), "alice", keys["alice"], FS + 400 * DAY)
    assert check_trail_link(early, parent) is Event.PER
    assert check_trail_link(inside, parent) is Event.OK
    assert check_trail_link(late, parent) is Event.PER
    assert check_trail_link(inside, own("alice", keys["carol"])) is Event.VFY


def test_mark_expired_and_remove(keys):
    """Expired entries get CERT_ERROR; remove() drops an entry."""
    cache = CertificateCache()
    short = cache.install(own("brenda", keys["brenda"], FS, days=1), FS)
    long = cache.install(own("alice", keys["alice"], FS, trusted=True), FS)
    expired = cache.mark_expired(datetime_from_ntp(FS) + datetime.timedelta(days=2))
    assert expired == [short]
    assert short.flags & CERT_ERROR and not long.flags & CERT_ERROR
    cache.remove(short)
    assert list(cache) == [long]
    with pytest.raises(ValueError):
        CertificateCache(max_entries=0)
