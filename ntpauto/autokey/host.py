"""The Autokey host: everything a host holds for itself (keys, certificate, status word,
signed values, identity schemes) and how it is loaded from, or generated into, a keys
directory.

RFC 5906 sections 6 (identity schemes), 10.1 (status word) and 11 (host state), and
interop.md sections 2 (status word), 4.2 (COOK request value), 5 (what is signed with
which stamps), 5.9 ("what is signed when") and 7.4 (how files are found).

What :class:`HostCredentials` holds:

* ``name``: the subject CN of the host certificate (``alice@alice``), sent in ASSOC; ``group``
  the part after ``@`` (the ASSOC group gate, interop.md 5.1);
* the RSA **host key** (COOK requests carry its PKCS#1 public key; COOK responses are
  decrypted with it) and its filestamp; the **sign key** (``ntpkey_sign_H`` or the host key)
  and the **signature profile** of the host certificate's signature algorithm, whose NID is
  the high half of the status word;
* the host certificate and its filestamp, and a :class:`~ntpauto.pki.cache.CertificateCache`
  holding it, the certificates received in CERT responses and the one a SIGN exchange
  returned;
* the identity schemes the host can *answer* (server keys ``ntpkey_<iff|gq|mv>key_G``; each
  one sets its status bit) and, loaded lazily by group, those it can *challenge with*
  (client parameters ``ntpkey_<iff|gq|mv>par_<group>``);
* H_cfg (``crypto digest``: session keys, cookies and MACs only; never signalled);
* the signed values and ``update``, the time of the last signature update (0 before the
  first): the COOK request value, one signature per cached certificate (CERT responses and
  the SIGN request) and the leap values (LEAP responses).

Signature update (:meth:`HostCredentials.signature_update`, reference crypto_update()): at
the first synchronisation, after a certificate is installed and after LEAP values are
accepted, every value above is re-signed with Timestamp = that moment; nothing is signed
while unsynchronised (``now`` = 0).  The TAI status bit is set by the first update.  An
update a peer's value causes (:meth:`HostCredentials.refresh`) is private-key work a packet
asked for, so it passes the private-key budget like a COOK or SIGN response.

Loading (:func:`load_host`) follows interop.md 7.4: H = ``crypto host`` or the host
name, G = ``crypto ident`` or H, password = ``crypto pw`` or H; ``ntpkey_host_H`` (must be
RSA) and ``ntpkey_cert_H`` (must be self-signed and hold the sign key) are required,
``ntpkey_sign_H`` and the identity server keys optional.  A keys directory made by the
reference's ntp-keygen loads unchanged.  :func:`generate_host` writes a fresh host key and
self-signed certificate (the newcomer default) and loads them.

Sans-I/O apart from the loaders: every time is passed in as NTP seconds (``int``; 0 means
"unsynchronised", as the reference's crypto time).  Private keys and passwords never appear
in ``repr``.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from twisted.logger import Logger

from ntpauto.auth.autokey import AUTOKEY_DIGESTS, KeyList, RandomSource
from ntpauto.autokey.budget import PrivateKeyBudget
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, LEAP, SIGN, Field, signed_octets
from ntpauto.autokey.status import IDENTITY_SCHEME_MASK, Flag, host_word
from ntpauto.autokey.values import AutoValue, LeapValue, encode_assoc_name, encode_public_key
from ntpauto.leapfile import LeapTable
from ntpauto.pki import keyfiles
from ntpauto.pki.cache import CacheEntry, CertificateCache
from ntpauto.pki.certificates import (
    CertificateError,
    CertInfo,
    build_self_signed,
    datetime_from_ntp,
    parse_certificate,
    verify_self_signed,
)
from ntpauto.pki.keyfiles import KeyFileError, KeygenContext
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_certificate
from ntpauto.wire.timestamps import ntp_seconds, ntp_seconds_to_unix

__all__ = [
    "DEFAULT_GENERATED_BITS",
    "SIGNATURE_GRID",
    "DEFAULT_GENERATED_SCHEME",
    "HostCredentials",
    "ensure_host",
    "generate_host",
    "generate_missing_host",
    "load_host",
]

DEFAULT_GENERATED_BITS = 2048
"""Modulus of the RSA host key :func:`generate_host` makes."""
DEFAULT_GENERATED_SCHEME = "RSA-SHA256"
"""Signature scheme of the certificate :func:`generate_host` makes (the reference verifies
sha256WithRSAEncryption, NID 668)."""

SIGNATURE_GRID = 86400
"""A farm's signatures are dated to the last UTC midnight (NTP seconds count whole days from
1900-01-01 00:00 UTC) and made again at the next."""

_SYSTEM_RANDOM: RandomSource = secrets.SystemRandom()
_PEER_VALUES = "signature update"
"""The budget's source name for updates a peer's values cause (one source among many: the
reserve for fresh sources admits it only a few times a window)."""
log = Logger()


def _newer(a: LeapValue, b: LeapValue | None) -> bool:
    """True when leap values ``a`` are newer than ``b`` (later expiration, then era)."""
    if b is None:
        return True
    return (a.expire, a.era_start, a.tai_offset) > (b.expire, b.era_start, b.tai_offset)


@attrs.frozen
class _Signed:
    """A value signed at a signature update (Timestamp, Filestamp and signature)."""

    timestamp: int
    filestamp: int
    signature: bytes = attrs.field(repr=False)


class HostCredentials:
    """Everything an Autokey host holds for itself (see the module docstring).

    Build it with :func:`load_host` or :func:`generate_host`; the constructor takes the
    already loaded pieces (tests build hosts from keys in memory this way).
    """

    def __init__(
        self,
        *,
        host_key: rsa.RSAPrivateKey,
        certificate: CertInfo,
        cert_filestamp: int,
        host_filestamp: int,
        sign_key: Any = None,
        hostname: str | None = None,
        digest: str = "md5",
        server_schemes: Iterable[Any] = (),
        keysdir: str | os.PathLike[str] | None = None,
        ident: str | None = None,
        leap: LeapTable | LeapValue | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        if not isinstance(host_key, rsa.RSAPrivateKey):
            raise TypeError("the Autokey host key must be RSA (interop.md 7.3)")
        if digest not in AUTOKEY_DIGESTS:
            raise ValueError(f"unsupported crypto digest {digest!r} (use one of "
                             f"{', '.join(AUTOKEY_DIGESTS)})")
        self.host_key = host_key
        self.sign_key = sign_key if sign_key is not None else host_key
        self.certificate = certificate
        self.cert_filestamp = int(cert_filestamp)
        self.host_filestamp = int(host_filestamp)
        self.profile = profile_for_certificate(certificate)
        if self.profile.key_type == "RSA" and not isinstance(self.sign_key, rsa.RSAPrivateKey) \
                or self.profile.key_type == "DSA" \
                and not isinstance(self.sign_key, dsa.DSAPrivateKey):
            raise ValueError(f"the certificate's scheme {self.profile.name} does not match "
                             "the sign key type")
        self.signature_size = self.profile.max_signature_size(self.sign_key)
        """Octets of our signatures (RSA: the modulus; DSA: the largest DER)."""
        self.name = certificate.subject
        self.hostname = hostname if hostname is not None else certificate.host
        self.digest = digest
        self.keysdir = Path(keysdir) if keysdir is not None else None
        self.ident = ident
        self.rng = rng if rng is not None else _SYSTEM_RANDOM
        """Random source of the associations' cookies (``getrandbits``)."""
        self.server_schemes: dict[int, Any] = {}
        for scheme in server_schemes:
            self.server_schemes[int(scheme.message_code)] = scheme
        self._client_schemes: dict[tuple[str, str], Any | None] = {}
        self.leap_table = leap if isinstance(leap, LeapTable) else None
        self._peer_leap: LeapValue | None = leap if isinstance(leap, LeapValue) else None
        self.cache = CertificateCache()
        self.cache.install(certificate, self.cert_filestamp, own=True)
        self.public_value = encode_public_key(host_key.public_key())
        """The COOK request value: PKCS#1 RSAPublicKey of the host key."""
        self.update = 0
        """NTP seconds of the last signature update (0 before the first)."""
        self._tai = False
        self._cook: _Signed | None = None
        self._certs: dict[tuple[bytes, int], _Signed] = {}
        self._leap: LeapValue = LeapValue(0, 0, 0)
        self._leap_signed: _Signed | None = None
        self.budget: PrivateKeyBudget | None = None
        """The private-key budget that re-signing for a peer's values draws on (the
        responder's, set by :class:`~ntpauto.autokey.responder.Responder`); None: none."""
        self.signature_grid: int | None = None
        """Seconds; set for an instance of a farm (docs/scaling.md): signatures are then
        dated to the last multiple of it (or to the newest filestamp of our key files, when
        later) instead of to the moment they are made, made again when the next multiple
        comes (:meth:`keep_dated`), and a peer's leap values never replace the leap file's,
        so that instances holding the same files sign the same values with the same stamps
        (RSA signatures are deterministic: the same octets too)."""

    def __repr__(self) -> str:
        return (f"<HostCredentials {self.name!r} status={self.status:#x} "
                f"profile={self.profile.name} digest={self.digest} update={self.update}>")

    # -- identity and status --------------------------------------------------------------

    @property
    def group(self) -> str | None:
        """The group: the part of :attr:`name` after '@', or ``None``."""
        return self.certificate.group

    @property
    def nid(self) -> int:
        """OpenSSL NID of the host certificate's signature algorithm."""
        return self.certificate.signature_nid or self.profile.nid

    @property
    def private(self) -> bool:
        """True for a PC-scheme host (certificate with EKU "Private")."""
        return self.certificate.private

    @property
    def scheme_bits(self) -> int:
        """Status bits of the identity schemes this host answers (IFF, GQ, MV, and plugins'
        bits 0x0004/0x0008; any other bit a plugin claims is never sent)."""
        bits = 0
        for scheme in self.server_schemes.values():
            bits |= int(scheme.status_bit)
        return bits & IDENTITY_SCHEME_MASK

    @property
    def flags(self) -> int:
        """Low half of the status word: ENAB, TAI once signed, PRIV, scheme bits."""
        flags = int(Flag.ENAB) | self.scheme_bits
        if self._tai:
            flags |= Flag.TAI
        if self.private:
            flags |= Flag.PRIV
        return flags

    @property
    def status(self) -> int:
        """The host status word sent in ASSOC messages: ``NID << 16 | flags``."""
        return host_word(self.nid, self.flags)

    def server_scheme(self, code: int) -> Any | None:
        """The identity scheme answering requests with message ``code`` (7 IFF, 8 GQ, 9 MV),
        or ``None``."""
        return self.server_schemes.get(code)

    def client_scheme(self, name: str, group: str) -> Any | None:
        """The ``name`` scheme (``"iff"``, ``"gq"``, ``"mv"``) with the client parameters of
        ``group`` (``ntpkey_<name>par_<group>`` in the keys directory), loaded on first use;
        ``None`` when the file is missing or unusable (the requester then sends a NULL
        request, interop.md 5.8)."""
        key = (name.lower(), group)
        if key not in self._client_schemes:
            self._client_schemes[key] = self._load_client_scheme(name.lower(), group)
        return self._client_schemes[key]

    def add_client_scheme(self, scheme: Any, group: str) -> None:
        """Use ``scheme`` (an IIdentityScheme with client parameters) for ``group``."""
        self._client_schemes[(str(scheme.name).lower(), group)] = scheme

    def _load_client_scheme(self, name: str, group: str) -> Any | None:
        if self.keysdir is None:
            return None
        from ntpauto.identity.common import UnknownIdentityScheme
        from ntpauto.identity.registry import find_factory

        try:
            factory = find_factory(name)
        except UnknownIdentityScheme:
            return None
        scheme_class = getattr(factory, "scheme_class", None)
        kind = getattr(scheme_class, "client_kind", None) or f"{name}par"
        path = self.keysdir / f"ntpkey_{kind}_{group}"
        try:
            keyfiles.resolve_link(path)
        except FileNotFoundError:
            return None
        try:
            if scheme_class is not None and hasattr(scheme_class, "from_files"):
                scheme = scheme_class.from_files(client_parameters=path)
            else:
                scheme = factory.from_keysdir(self.keysdir, group)
        except (KeyFileError, ValueError) as exc:
            error = str(exc) if isinstance(exc, KeyFileError) else f"{path}: {exc}"
            log.warn("identity group {group}: {error}", group=group, error=error)
            return None
        if getattr(getattr(scheme, "client", None), "public_value_recomputed", False):
            log.warn("{path}: {problem}", path=path,
                     problem=keyfiles.lost_public_value(kind))
        return scheme if getattr(scheme, "can_challenge", False) else None

    # -- signing ---------------------------------------------------------------------------

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the sign key and the certificate's profile."""
        return self.profile.sign(self.sign_key, data)

    def sign_field(self, f: Field) -> Field:
        """``f`` with its signature over :func:`~ntpauto.autokey.fields.signed_octets`."""
        return attrs.evolve(f, signature=self.sign(signed_octets(f)))

    def signature_update(self, now: int) -> bool:
        """Re-sign the COOK request value, every cached certificate and the leap values with
        Timestamp ``now`` (reference crypto_update(); interop.md 5.9).  Does nothing and
        returns False when ``now`` is 0 (unsynchronised)."""
        if not now:
            return False
        self.update = self._dated(int(now))
        value = Field(code=COOK, timestamp=self.update, filestamp=self.host_filestamp,
                      value=self.public_value)
        self._cook = _Signed(self.update, self.host_filestamp,
                             self.sign(signed_octets(value)))
        self._certs = {}
        for entry in self.cache:
            self._sign_certificate(entry)
        table = (LeapValue(*self.leap_table.autokey_values(self.update))
                 if self.leap_table is not None else None)
        chosen = LeapValue(0, 0, 0)
        for candidate in (table, self._peer_leap):
            if candidate is not None and _newer(candidate, chosen):
                chosen = candidate
        self._leap = chosen
        leap = Field(code=LEAP, timestamp=self.update, filestamp=self.host_filestamp,
                     value=chosen.encode())
        self._leap_signed = _Signed(self.update, self.host_filestamp,
                                    self.sign(signed_octets(leap)))
        self._tai = True
        return True

    def _dated(self, now: int) -> int:
        """The Timestamp of a signature update at ``now`` (see :attr:`signature_grid`)."""
        grid = self.signature_grid
        if not grid:
            return now
        return max(now - now % grid, self.cert_filestamp, self.host_filestamp)

    def keep_dated(self, now: int) -> None:
        """With a :attr:`signature_grid`: sign everything again once ``now`` (NTP seconds,
        0: unsynchronised) has passed the next multiple of it: every instance of a farm
        re-signs at the same moment, with the same stamps (RFC 5906's periodic re-signing).
        Nothing before the first update."""
        if self.signature_grid and self.update and now and self._dated(now) > self.update:
            self.signature_update(now)

    def refresh(self, now: int) -> bool:
        """:meth:`signature_update` because a peer gave us a value (a new certificate,
        leap values): admitted by the private-key budget, as any private-key work a packet
        causes (one update re-signs every cached certificate: up to 66 signatures).  A
        refused update waits for the next one; meanwhile a new certificate is signed when
        first served (under the budget too) and new leap values wait.  Returns True when
        the update was made."""
        budget = self.budget
        if budget is None or not now:
            return self.signature_update(now)
        if not budget.allow(_PEER_VALUES):
            return False
        with budget.measure():
            return self.signature_update(now)

    def has_signature(self, entry: CacheEntry) -> bool:
        """True when ``entry``'s CERT response is signed already (signing it is no work)."""
        return (entry.cert.der, entry.filestamp) in self._certs

    def _sign_certificate(self, entry: CacheEntry) -> _Signed:
        key = (entry.cert.der, entry.filestamp)
        signed = self._certs.get(key)
        if signed is None:
            f = Field(code=CERT, timestamp=self.update, filestamp=entry.filestamp,
                      value=entry.cert.der)
            signed = _Signed(self.update, entry.filestamp, self.sign(signed_octets(f)))
            self._certs[key] = signed
        return signed

    # -- message values ------------------------------------------------------------------

    def assoc_field(self, associd: int, *, response: bool) -> Field:
        """An ASSOC request or response: our name, Timestamp = update, the status word in
        the Filestamp slot, unsigned (interop.md 5.1)."""
        return Field(code=ASSOC, response=response, associd=associd, timestamp=self.update,
                     filestamp=self.status, value=encode_assoc_name(self.name))

    def cook_request(self, associd: int) -> Field:
        """The COOK request: our PKCS#1 host public key, Timestamp = update, Filestamp = the
        host-key filestamp, signed when updated (interop.md 4.2)."""
        if self._cook is None:
            return Field(code=COOK, associd=associd, filestamp=self.host_filestamp,
                         value=self.public_value)
        return Field(code=COOK, associd=associd, timestamp=self._cook.timestamp,
                     filestamp=self._cook.filestamp, value=self.public_value,
                     signature=self._cook.signature)

    def certificate_field(self, entry: CacheEntry, associd: int, *,
                          response: bool = True) -> Field:
        """A CERT response (or, with ``response=False``, a SIGN request) carrying
        ``entry``'s certificate: Timestamp = update, Filestamp = the certificate's, signed
        at the last signature update (interop.md 5.3, 5.6).  Needs ``update`` != 0."""
        if not self.update:
            raise ValueError("nothing is signed before the first signature update")
        signed = self._sign_certificate(entry)
        return Field(code=CERT if response else SIGN, response=response, associd=associd,
                     timestamp=signed.timestamp, filestamp=signed.filestamp,
                     value=entry.cert.der, signature=signed.signature)

    def own_entry(self) -> CacheEntry:
        """The cache entry of our own self-signed host certificate."""
        entry = self.cache.find(self.name, self.name)
        if entry is None or entry.cert.der != self.certificate.der:
            entry = self.cache.install(self.certificate, self.cert_filestamp, own=True)
        return entry

    def sign_request(self, associd: int) -> Field:
        """The SIGN request: our self-signed host certificate, Timestamp = update, Filestamp
        = the certificate file's, signed (interop.md 5.6)."""
        return self.certificate_field(self.own_entry(), associd, response=False)

    def certificate_valid(self, now: int) -> bool:
        """True when our host certificate is valid at ``now`` (NTP seconds, non-zero)."""
        return bool(now) and self.certificate.valid_at(datetime_from_ntp(now))

    @property
    def leap_values(self) -> LeapValue:
        """The leap values signed at the last update (all zero before)."""
        return self._leap

    def leap_field(self, associd: int) -> Field:
        """The LEAP response: 12-octet value, Timestamp = update, Filestamp = the host-key
        filestamp, signed (unsigned with Timestamp 0 before the first update)."""
        if self._leap_signed is None:
            return Field(code=LEAP, response=True, associd=associd,
                         filestamp=self.host_filestamp, value=self._leap.encode())
        return Field(code=LEAP, response=True, associd=associd,
                     timestamp=self._leap_signed.timestamp,
                     filestamp=self._leap_signed.filestamp, value=self._leap.encode(),
                     signature=self._leap_signed.signature)

    def install_leap(self, value: LeapValue, now: int) -> bool:
        """Accept a verified LEAP response: its values replace ours when newer (later
        expiration; the newest wins), then everything is re-signed at ``now``, as the
        reference does on every accepted LEAP response (interop.md 5.5).  Returns True
        when the values were taken."""
        if self.signature_grid and self.leap_table is not None:
            return False  # a farm signs the leap file's values only: the same everywhere
        taken = _newer(value, self._leap) and _newer(value, self._peer_leap)
        if taken:
            self._peer_leap = value
        if not self.refresh(now) and taken and self._leap_signed is None:
            self._leap = value  # nothing signed yet: no signature to keep in step
        return taken

    def install_certificate(self, cert: CertInfo, filestamp: int, now: int, *,
                            own: bool = False) -> CacheEntry:
        """Install a received certificate (``own`` for the one a SIGN response returned) in
        the cache; when it is new, re-sign everything (interop.md 5.3, 5.7)."""
        before = self.cache.find(cert.subject, cert.issuer)
        entry = self.cache.install(cert, filestamp, own=own)
        if entry is not before:
            self.refresh(now)
        return entry

    def install_certificates(self, trail: Iterable[tuple[CertInfo, int]], now: int) -> None:
        """Install a verified certificate trail ((certificate, filestamp) pairs) and re-sign
        once if any of them is new: one signature update per trail, and none for
        certificates no trusted one vouches for (the reference installs and re-signs at
        every CERT response)."""
        changed = False
        for cert, filestamp in trail:
            before = self.cache.find(cert.subject, cert.issuer)
            changed = self.cache.install(cert, filestamp) is not before or changed
        if changed:
            self.refresh(now)

    def autokey_field(self, value: AutoValue | KeyList, timestamp: int | None = None,
                      associd: int = 0) -> Field:
        """The AUTO response announcing a key list: value = final key ID and N, Timestamp =
        when the list was generated, Filestamp = update, signed when the Timestamp is not 0
        (interop.md 3.3, 5.4).  ``value`` is a :class:`~ntpauto.auth.autokey.KeyList`
        (its ``timestamp`` is used) or an AutoValue with an explicit ``timestamp``."""
        if isinstance(value, KeyList):
            auto, stamp = AutoValue(value.final, value.index), value.timestamp
        else:
            auto, stamp = value, timestamp
        if stamp is None:
            raise ValueError("an AutoValue needs the key list's timestamp")
        f = Field(code=AUTO, response=True, associd=associd, timestamp=stamp,
                  filestamp=self.update, value=auto.encode())
        return self.sign_field(f) if stamp else f


# --- loading --------------------------------------------------------------------------------


def _certificate_der(key_file: keyfiles.KeyFile) -> bytes:
    cert = key_file.certificate
    if cert is None:
        raise KeyFileError(key_file.path, "holds no CERTIFICATE")
    return cert.public_bytes(serialization.Encoding.DER)


def _public_numbers(key: Any) -> Any:
    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_numbers()


def _server_schemes(keysdir: Path, group: str, password: str | bytes) -> list[Any]:
    """The identity schemes whose server key ``ntpkey_<kind>_<group>`` is present, in status
    bit order (IFF, GQ, MV, then plugins)."""
    from ntpauto.identity.registry import all_factories

    found = []
    factories = sorted((f for f in all_factories() if int(f.message_code)),
                       key=lambda f: int(f.status_bit))
    for factory in factories:
        scheme_class = getattr(factory, "scheme_class", None)
        kind = getattr(scheme_class, "server_kind", None) or f"{factory.scheme_name}key"
        path = keysdir / f"ntpkey_{kind}_{group}"
        try:
            keyfiles.resolve_link(path)
        except FileNotFoundError:
            continue
        scheme = factory.from_keysdir(keysdir, group, password)
        if not scheme.can_respond:
            raise KeyFileError(path, f"the {factory.scheme_name.upper()} server key did not "
                                     "load")
        found.append(scheme)
    return found


def load_host(
    keysdir: str | os.PathLike[str],
    *,
    host: str | None = None,
    password: str | bytes | None = None,
    ident: str | None = None,
    digest: str = "md5",
    leap: LeapTable | LeapValue | None = None,
    cert: str | None = None,
    rng: RandomSource | None = None,
) -> HostCredentials:
    """Load the host's Autokey credentials from ``keysdir`` (interop.md 7.4).

    ``host`` is ``crypto host`` (default: the system host name), ``password`` ``crypto pw``
    (default: the host name), ``ident`` ``crypto ident`` (the group of the identity server
    keys, default the host name; also the default group for client parameters), ``digest``
    ``crypto digest`` (md5 or sha1), ``cert`` ``crypto cert`` (a file name in ``keysdir``,
    or absolute), ``leap`` the leap table.  Raises :class:`KeyFileError` naming the file and
    the problem: missing host key or certificate, wrong password, host key not RSA,
    certificate not self-signed, or certificate not holding the sign key; ValueError for an
    unsupported digest or signature scheme."""
    folder = Path(keysdir)
    name = host or socket.gethostname()
    secret = password if password is not None else name
    if digest not in AUTOKEY_DIGESTS:
        raise ValueError(f"crypto digest {digest!r} is not supported for Autokey "
                         f"(use {' or '.join(AUTOKEY_DIGESTS)})")
    group = ident or name
    files = keyfiles.find_host_files(folder, name, group) if cert is None else None
    host_path = files.host_key if files else folder / f"ntpkey_host_{name}"
    host_file = keyfiles.read_key_file(host_path, secret)
    host_key = host_file.private_key
    if not isinstance(host_key, rsa.RSAPrivateKey):
        raise KeyFileError(host_file.path, "the host key must be RSA (it encrypts cookies)")
    sign_path = files.sign_key if files else folder / f"ntpkey_sign_{name}"
    sign_key = host_key
    if sign_path is not None:
        try:
            keyfiles.resolve_link(sign_path)
        except FileNotFoundError:
            sign_path = None
    if sign_path is not None:
        sign_file = keyfiles.read_key_file(sign_path, secret)
        sign_key = sign_file.private_key
        # RSA first: naming cryptography's DSA classes warns (DSA is deprecated there).
        if not (isinstance(sign_key, rsa.RSAPrivateKey)
                or isinstance(sign_key, dsa.DSAPrivateKey)):
            raise KeyFileError(sign_file.path, "the sign key must be RSA or DSA")
    if cert is not None:
        cert_path = Path(cert) if os.path.isabs(cert) else folder / cert
    else:
        assert files is not None
        cert_path = files.certificate
    cert_file = keyfiles.read_key_file(cert_path)
    try:
        info = parse_certificate(_certificate_der(cert_file))
    except CertificateError as exc:
        raise KeyFileError(cert_file.path, f"unusable certificate: {exc}") from None
    if not info.self_signed or not verify_self_signed(info):
        raise KeyFileError(cert_file.path, f"the host certificate must be self-signed (subject "
                                           f"{info.subject}, issuer {info.issuer})")
    if _public_numbers(info.public_key) != _public_numbers(sign_key):
        which = "sign key" if sign_path is not None else "host key"
        raise KeyFileError(cert_file.path, f"the certificate does not hold the {which} "
                                           f"({sign_path or host_file.path})")
    try:
        profile_for_certificate(info)
    except UnsupportedProfile as exc:
        raise KeyFileError(cert_file.path, str(exc)) from None
    schemes = _server_schemes(folder, group, secret)
    assert cert_file.filestamp is not None and host_file.filestamp is not None
    return HostCredentials(
        host_key=host_key, sign_key=sign_key, certificate=info,
        cert_filestamp=cert_file.filestamp, host_filestamp=host_file.filestamp,
        hostname=name, digest=digest, server_schemes=schemes, keysdir=folder, ident=ident,
        leap=leap, rng=rng,
    )


def generate_host(
    keysdir: str | os.PathLike[str],
    host: str,
    group: str | None = None,
    *,
    trusted: bool = True,
    scheme: str | None = None,
    password: str | bytes | None = None,
    bits: int = DEFAULT_GENERATED_BITS,
    now: int | None = None,
    days: int = 365,
    digest: str = "md5",
    leap: LeapTable | LeapValue | None = None,
    identity: str | None = None,
    identity_bits: int | None = None,
) -> HostCredentials:
    """Generate a new RSA host key and a self-signed certificate for ``host`` (subject
    ``host@group`` when ``group`` is given; EKU trustRoot when ``trusted``) into
    ``keysdir`` with ntp-keygen's names and links (mode 0600, the key encrypted with
    ``password``, default the host name), then load them with :func:`load_host`.

    ``scheme`` is the certificate's signature scheme (``RSA-SHA256`` by default; RSA
    schemes only, the host key signs); ``now`` (NTP seconds) the filestamp and notBefore,
    default the current time.  ``identity`` = ``"iff"`` or ``"gq"`` also generates that
    scheme's server key for the group (``identity_bits``: its modulus; GQ puts its public
    key in the certificate); export the client parameters with ``ntpauto keygen -e``.  MV
    needs its trusted-authority exports: use ``ntpauto keygen -V``."""
    folder = Path(keysdir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    profile = get_profile(scheme or DEFAULT_GENERATED_SCHEME)
    if profile.key_type != "RSA":
        raise ValueError(f"generate_host signs with the RSA host key; {profile.name} needs "
                         f"a {profile.key_type} key")
    if identity not in (None, "iff", "gq"):
        raise ValueError(f"generate_host makes IFF or GQ keys, not {identity!r} (use "
                         "'ntpauto keygen' for MV)")
    secret = password if password is not None else host
    secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
    stamp = int(now) if now is not None else ntp_seconds(time.time())
    key = rsa.generate_private_key(65537, bits)
    keyfiles.write_key_file(folder, "RSAhost", host, stamp,
                            keyfiles.private_key_pem(key, secret), "host", host)
    gq_key = None
    if identity is not None:
        gq_key = _generate_identity(folder, identity, host, group or host, stamp,
                                    secret_bytes, identity_bits)
    subject = f"{host}@{group}" if group else host
    der = build_self_signed(subject, key, profile, stamp, days, trusted=trusted,
                            gq_key=gq_key)
    cert_pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    keyfiles.write_key_file(folder, f"{profile.name}cert", host, stamp, cert_pem, "cert", host)
    return load_host(folder, host=host, password=secret, digest=digest, leap=leap,
                     ident=group if identity is not None else None)


def _generate_identity(folder: Path, identity: str, host: str, group: str, stamp: int,
                       password: bytes, bits: int | None) -> int | None:
    """Write the ``identity`` server key for ``group`` with the scheme's keygen step;
    returns the GQ public key for the certificate (None for IFF)."""
    import io

    from ntpauto.identity import gq, iff

    context = KeygenContext(keysdir=folder, host=host, group=group, filestamp=stamp,
                            password=password, modulus=bits or 0,
                            now=float(ntp_seconds_to_unix(stamp)), stderr=io.StringIO())
    if identity == "iff":
        iff.keygen(context)
        return None
    path = gq.keygen(context)
    params, _ = gq.load_server_key(path, password)
    return params.v


def generate_missing_host(keysdir: str | os.PathLike[str], host: str,
                          group: str | None = None, **kwargs: Any) -> HostCredentials | None:
    """:func:`generate_host` (``kwargs`` go to it) unless ``ntpkey_host_<host>`` exists in
    ``keysdir``: the new credentials (the first run, logged), or None: existing files are
    left alone and not read."""
    try:
        keyfiles.resolve_link(Path(keysdir) / f"ntpkey_host_{host}")
    except FileNotFoundError:
        made = generate_host(keysdir, host, group, **kwargs)
        log.info("generated the Autokey host key and certificate of {host} in {keysdir}",
                 host=host, keysdir=str(keysdir))
        return made
    return None


def ensure_host(keysdir: str | os.PathLike[str], host: str, group: str | None = None,
                **kwargs: Any) -> HostCredentials:
    """:func:`load_host` when ``ntpkey_host_<host>`` exists in ``keysdir``, else
    :func:`generate_host` (``kwargs`` go to the generator; ``password`` to both)."""
    made = generate_missing_host(keysdir, host, group, **kwargs)
    if made is not None:
        return made
    return load_host(keysdir, host=host, password=kwargs.get("password"),
                     digest=kwargs.get("digest", "md5"), leap=kwargs.get("leap"))
