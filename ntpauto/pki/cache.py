"""The certificate cache: own certificates, certificates received in CERT responses and the
one the SIGN exchange installed; what a CERT response serves; certificate trails.

reference: interop.md 5.3 and 9 (cert flags); ntpd/ntp_crypto.c cert_install(),
cert_hike(), crypto_xmit() CRYPTO_CERT|CRYPTO_RESP.

* Order: most recently installed first (the reference links new entries at the head).
* Install: an entry with the same subject and issuer is replaced only by a strictly newer
  filestamp; otherwise the cached one is kept and returned.
* Lookup for a CERT response (:meth:`CertificateCache.lookup`): skip private and erroneous
  entries; a trusted self-signed certificate wins at once; otherwise the *last found* (oldest
  installed) certificate issued by someone else; an untrusted self-signed one is never served.
* Size cap: at most ``max_entries``; the oldest entries that are not our own are evicted
  first, so a flood of distinct certificates cannot grow memory without bound and never
  evicts our own certificates.  (Per-association trail state lives in the association, so
  evicting a peer's certificate only means it is no longer relayed to others.)
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import attrs

from ntpauto.events import Event
from ntpauto.pki.certificates import CertificateError, CertInfo, verify_issued_by

__all__ = [
    "CERT_ERROR",
    "CERT_PRIV",
    "CERT_SIGN",
    "CERT_TRUST",
    "CERT_VALID",
    "DEFAULT_MAX_ENTRIES",
    "CacheEntry",
    "CertificateCache",
    "check_trail_link",
]

CERT_TRUST = 0x01
"""Trusted (EKU trustRoot)."""
CERT_SIGN = 0x02
"""Signature verified by the next certificate of a trail."""
CERT_VALID = 0x04
"""Installed and usable."""
CERT_PRIV = 0x08
"""Private (PC) certificate: never served."""
CERT_ERROR = 0x80
"""Failed a check: never served."""

DEFAULT_MAX_ENTRIES = 64


@attrs.define
class CacheEntry:
    """A cached certificate with its filestamp and reference flags (ntpq ``cert`` 0x..)."""

    cert: CertInfo
    filestamp: int
    own: bool = False
    flags: int = 0

    @property
    def subject(self) -> str:
        """The certificate's subject name."""
        return self.cert.subject

    @property
    def issuer(self) -> str:
        """The certificate's issuer name."""
        return self.cert.issuer


def check_trail_link(child: CertInfo, parent: CertInfo) -> Event:
    """One step of the reference's cert_hike(): ``child`` must verify with ``parent``'s key
    (else ``Event.VFY``) and begin within ``parent``'s validity (else ``Event.PER``)."""
    if not verify_issued_by(child, parent):
        return Event.VFY
    if child.not_before < parent.not_before or child.not_before > parent.not_after:
        return Event.PER
    return Event.OK


class CertificateCache:
    """Certificates by subject and issuer, most recent first, with a size cap."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("the cache must hold at least one certificate")
        self.max_entries = max_entries
        self._entries: list[CacheEntry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CacheEntry]:
        """Entries, most recently installed first."""
        return iter(list(self._entries))

    def install(self, cert: CertInfo, filestamp: int, *, own: bool = False) -> CacheEntry:
        """Install ``cert`` received with ``filestamp`` (``own`` for our own certificates,
        including the one the SIGN exchange returned).  Returns the entry now cached for that
        subject and issuer: the new one, or the cached one when its filestamp is not older."""
        for index, entry in enumerate(self._entries):
            if entry.subject == cert.subject and entry.issuer == cert.issuer:
                if filestamp <= entry.filestamp:
                    entry.own = entry.own or own
                    return entry
                del self._entries[index]
                own = own or entry.own
                break
        flags = CERT_VALID
        if cert.trusted:
            flags |= CERT_TRUST
        if cert.private:
            flags |= CERT_PRIV
        new = CacheEntry(cert, filestamp, own, flags)
        self._entries.insert(0, new)
        self._evict()
        return new

    def _evict(self) -> None:
        index = len(self._entries) - 1
        while len(self._entries) > self.max_entries and index >= 0:
            if not self._entries[index].own:
                del self._entries[index]
            index -= 1

    def remove(self, entry: CacheEntry) -> None:
        """Drop ``entry`` (no error if it is already gone)."""
        self._entries = [e for e in self._entries if e is not entry]

    def find(self, subject: str, issuer: str | None = None) -> CacheEntry | None:
        """The most recent entry with this subject (and issuer, when given)."""
        for entry in self._entries:
            if entry.subject == subject and (issuer is None or entry.issuer == issuer):
                return entry
        return None

    def lookup(self, name: str) -> CacheEntry | None:
        """The certificate a CERT response for ``name`` carries, or ``None`` (then the
        responder sends the 8-octet empty response)."""
        chosen = None
        for entry in self._entries:
            if entry.flags & (CERT_PRIV | CERT_ERROR) or entry.subject != name:
                continue
            if entry.subject == entry.issuer:
                if entry.flags & CERT_TRUST:
                    return entry
            else:
                chosen = entry
        return chosen

    def mark_expired(self, now: datetime.datetime) -> list[CacheEntry]:
        """Flag entries whose notAfter has passed with ``CERT_ERROR``; returns them."""
        expired = [e for e in self._entries if e.cert.not_after < now]
        for entry in expired:
            entry.flags |= CERT_ERROR
        return expired

    def trail(self, subject: str) -> list[CacheEntry]:
        """Hike from the certificate of ``subject`` along issuers to a trusted self-signed
        certificate; returns the entries in order (``subject`` first, the root last).

        Each link is checked like cert_hike() (:func:`check_trail_link`) and flagged
        ``CERT_SIGN``.  ``CertificateError``: no certificate for a name on the way (``CRT``),
        a loop (``CRT``), a root that is not trusted (``VFY``) or a failed link (``VFY`` /
        ``PER``, the entry is flagged ``CERT_ERROR``)."""
        trail: list[CacheEntry] = []
        seen: set[str] = set()
        name = subject
        while True:
            if name in seen:
                raise CertificateError(Event.CRT, f"certificate trail loop at {name}")
            seen.add(name)
            entry = self._trail_entry(name)
            if entry is None:
                raise CertificateError(Event.CRT, f"no certificate for {name} in the cache")
            if trail:
                event = check_trail_link(trail[-1].cert, entry.cert)
                if event is not Event.OK:
                    trail[-1].flags |= CERT_ERROR
                    raise CertificateError(event, f"certificate of {trail[-1].subject} does "
                                                  f"not chain to {entry.subject}")
                trail[-1].flags |= CERT_SIGN
            trail.append(entry)
            if entry.subject == entry.issuer:
                if not entry.flags & CERT_TRUST:
                    raise CertificateError(Event.VFY, f"trail ends at {entry.subject}, "
                                                      "which is not trusted")
                return trail
            name = entry.issuer

    def _trail_entry(self, name: str) -> CacheEntry | None:
        """For trail hiking: a trusted self-signed certificate first, else the most recent
        certificate of ``name`` issued by someone else, else any."""
        candidates = [e for e in self._entries
                      if e.subject == name and not e.flags & (CERT_ERROR | CERT_PRIV)]
        for entry in candidates:
            if entry.subject == entry.issuer and entry.flags & CERT_TRUST:
                return entry
        for entry in candidates:
            if entry.subject != entry.issuer:
                return entry
        return candidates[0] if candidates else None
