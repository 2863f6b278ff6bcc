"""The sans-I/O analysis behind ``ntpauto trace``: datagrams in, verdicts out.

:class:`Tracer` is fed the NTP datagrams of one capture in order and checks what a third
party can check offline (docs/interop.md 3, 4 and 5; ``tests/vectors``' verify.txt):

* every extension field decodes; signed fields verify with the public key of the sender's
  certificate as seen in the capture (CERT responses, SIGN requests and responses carry
  them; the sender's name comes from its ASSOC messages).  A signature whose certificate
  only appears later is checked when it does; SIGN responses must be issued by the
  responder and self-signed certificates must verify with their own key;
* every Autokey MAC whose cookie is computable: cookie 0 for packets with extension fields
  and for broadcasts, 0 before the COOK exchange, otherwise the server cookie (from the
  server seed, or decrypted from the COOK response with the client's host key) or the
  symmetric cookie (both hosts' keys needed);
* the key-ID chains: each key ID hashes forward to the previous one of the same sender, or
  to the final key of its signed AUTO values; server replies must echo the request's key ID.

Identity exchanges (IFF, GQ, MV) are decoded and their signatures checked, but the
identity proofs themselves are reported "not checked".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from attrs import define
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from ntpauto.autokey import fields as F
from ntpauto.autokey.status import flag_names, word_nid
from ntpauto.autokey.values import AutoValue, LeapValue, decode_assoc_name, decode_public_key
from ntpauto.events import AutokeyError
from ntpauto.pki.certificates import (
    CertInfo,
    parse_certificate,
    verify_issued_by,
    verify_self_signed,
)
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_certificate
from ntpauto.trace.capture import Datagram
from ntpauto.trace.report import Check, FieldReport, PacketReport, Status, Summary
from ntpauto.trace.sessions import SessionKeys
from ntpauto.wire.packet import MODE_CONTROL, MODE_PRIVATE, MalformedPacket, parse

__all__ = ["MODE_NAMES", "Tracer", "analyse"]

MODE_NAMES = {0: "reserved", 1: "sym_act", 2: "sym_pas", 3: "client", 4: "server",
              5: "bcast", 6: "control", 7: "private"}
_IDENTITY = (F.IFF, F.GQ, F.MV)


@define
class _Deferred:
    """A check waiting for a certificate: ``attempt`` returns True once it has decided,
    ``give_up`` settles it at the end of the capture."""

    attempt: Callable[[], bool]
    give_up: Callable[[], None]


class Tracer:
    """Checks one capture.  Feed datagrams with :meth:`feed` in capture order, then call
    :meth:`finish`; the reports are complete only after it (a signature can wait for a
    certificate that comes later).

    ``seed``: the server seed that makes server cookies computable (the reference build of
    the vectors uses 0).  ``host_keys``: RSA host private keys; a COOK response to one of
    them is decrypted, which makes that cookie (and, with both peers' keys, the symmetric
    cookie) known.  ``certificates``: certificates known beforehand (e.g. from key files,
    for captures that never carry them, such as the PC scheme's).
    """

    def __init__(self, *, seed: int | None = None, host_keys: Iterable[Any] = (),
                 certificates: Iterable[CertInfo] = ()) -> None:
        self.reports: list[PacketReport] = []
        self._names: dict[str, str] = {}
        self._keys: dict[str, CertInfo] = {}
        self._certificates: dict[bytes, CertInfo] = {}
        self._nids: dict[str, int] = {}
        self._deferred: list[_Deferred] = []
        self.sessions = SessionKeys(seed, host_keys)
        self._retrying = self._again = self._finished = False
        for cert in certificates:
            self._install(cert)

    # Feeding ---------------------------------------------------------------------------

    def feed(self, datagram: Datagram) -> PacketReport:
        """Analyse one datagram; the report may still change until :meth:`finish`."""
        data = datagram.payload
        report = PacketReport(len(self.reports), datagram.frame, datagram.time, datagram.src,
                              datagram.sport, datagram.dst, datagram.dport, len(data))
        self.reports.append(report)
        if data:
            report.mode = data[0] & 7
            report.version = (data[0] >> 3) & 7
        if report.mode in (MODE_CONTROL, MODE_PRIVATE):
            report.mac = Check(Status.NOT_CHECKED, "control message, not analysed")
            return report
        try:
            packet = parse(data)
        except MalformedPacket as exc:
            report.malformed = str(exc)
            report.mac = Check(Status.NOT_CHECKED, "malformed packet")
            return report
        report.stratum = packet.header.stratum
        report.keyid = packet.keyid
        report.mac_length = 4 + len(packet.digest) if packet.has_mac else 0
        for position, (offset, raw) in enumerate(packet.fields):
            report.fields.append(self._field(report, position, offset, raw))
        report.mac = self.sessions.check_mac(report, packet)
        self.sessions.check_keyid(report, packet)
        return report

    def finish(self, frames: int | None = None) -> Summary:
        """Settle checks still waiting for a certificate and return the summary
        (``frames``: frames in the capture, if known; else the datagrams fed)."""
        if not self._finished:
            while self._deferred:  # settling one may settle others (via _install)
                self._deferred.pop(0).give_up()
            self._finished = True
        return Summary.of(self.reports, len(self.reports) if frames is None else frames,
                          len(self._certificates))

    # Certificates and signatures -------------------------------------------------------

    def _install(self, cert: CertInfo) -> None:
        """Remember a certificate whose origin checked out; the first one for a subject
        supplies that host's key (the reference: first certificate on the association)."""
        self._certificates.setdefault(cert.der, cert)
        if cert.subject in self._keys:
            return
        self._keys[cert.subject] = cert
        self._retry()

    def _retry(self) -> None:
        """Attempt the deferred checks again (a key or a name was learnt); re-entrant, as a
        settled check may install a certificate in turn."""
        if self._retrying:
            self._again = True
            return
        self._retrying = True
        try:
            self._again = True
            while self._again:
                self._again = False
                waiting, self._deferred = self._deferred, []
                for deferred in waiting:
                    if not deferred.attempt():
                        self._deferred.append(deferred)
        finally:
            self._retrying = False

    def _signer(self, src: str) -> tuple[str | None, CertInfo | None]:
        name = self._names.get(src)
        return name, (self._keys.get(name) if name is not None else None)

    def _profile(self, src: str, cert: CertInfo) -> Any:
        """The signature profile for ``src``'s signatures: the NID of its ASSOC status word
        (what the reference's receiver uses), else its certificate's signature algorithm;
        either only if it fits the key type."""
        key = cert.public_key
        key_type = ("RSA" if isinstance(key, rsa.RSAPublicKey) else
                    "DSA" if isinstance(key, dsa.DSAPublicKey) else type(key).__name__)
        candidates: list[Any] = []
        for find in (lambda: get_profile(self._nids[src]), lambda: profile_for_certificate(cert)):
            try:
                candidates.append(find())
            except (KeyError, UnsupportedProfile):
                continue
        for profile in candidates:
            if getattr(profile, "key_type", key_type) == key_type:
                return profile
        raise UnsupportedProfile(f"no signature profile for {cert.subject}'s {key_type} key")

    def _verify_with(self, src: str, cert: CertInfo, field: F.Field,
                     fr: FieldReport) -> Check:
        try:
            profile = self._profile(src, cert)
        except UnsupportedProfile as exc:
            return Check(Status.NOT_CHECKED, str(exc))
        ok = profile.verify(cert.public_key, field.signature, F.signed_octets(field))
        what = f"{profile.name} by {cert.subject}"
        if not ok:
            return Check(Status.FAILED, f"does not verify ({what})")
        size = profile.max_signature_size(cert.public_key)
        if len(field.signature) != size:
            fr.notes.append(f"signature of {len(field.signature)} octets, not {size}: the "
                            "reference receiver refuses it (bad signature length)")
        return Check(Status.OK, what)

    def _signature(self, report: PacketReport, fr: FieldReport, field: F.Field,
                   carried: CertInfo | None, then: Callable[[bool], None]) -> None:
        """Check ``field``'s signature and call ``then(ok)`` once decided (at once, later
        when the certificate arrives, or never if it does not).  ``carried``: a certificate
        in the field itself, which may be the sender's own."""
        if not field.signature:
            fr.signature = Check(Status.ABSENT, "unsigned")
            then(False)
            return

        def attempt(final: bool = False) -> bool:
            name, cert = self._signer(report.src)
            if cert is None and carried is not None and carried.self_signed and (
                    name is None or carried.subject == name):
                cert = carried
            if cert is not None:
                fr.signature = self._verify_with(report.src, cert, field, fr)
                if name is None and fr.signature.status is Status.OK:
                    fr.signature.reason += f" (sender {report.src} named by its certificate)"
                if name is None and fr.signature.failed and not final:
                    return False  # the sender's own certificate may still come
                then(fr.signature.status is Status.OK)
                return True
            if name is None and not final:
                # Sender unnamed (no ASSOC yet): any certificate seen may be its own.
                for candidate in self._keys.values():
                    check = self._verify_with(report.src, candidate, field, fr)
                    if check.status is Status.OK:
                        check.reason += f" (sender {report.src} not named by an ASSOC)"
                        fr.signature = check
                        then(True)
                        return True
            if final:
                who = name or report.src
                fr.signature = Check(Status.NOT_CHECKED, f"no certificate of {who} in the "
                                                         "capture")
                return True
            fr.signature = Check(Status.PENDING, "waiting for the sender's certificate")
            return False

        if not attempt():
            self._deferred.append(_Deferred(attempt, lambda: attempt(final=True)))

    # Extension fields ------------------------------------------------------------------

    def _field(self, report: PacketReport, position: int, offset: int,
               raw: bytes) -> FieldReport:
        word = int.from_bytes(raw[:4], "big")
        fr = FieldReport(position, offset, F.CODE_NAMES.get((word >> 16) & 0xFF,
                                                            f"code{(word >> 16) & 0xFF}"),
                         bool(word & F.CRYPTO_RESP), bool(word & F.CRYPTO_ERROR),
                         int.from_bytes(raw[4:8], "big") if len(raw) >= 8 else 0, len(raw))
        try:
            field = F.decode(raw, offset)
        except AutokeyError as exc:
            fr.decode_error = str(exc)
            fr.description = "undecodable"
            return fr
        if not field.short:
            fr.timestamp, fr.filestamp = field.timestamp, field.filestamp
            fr.value_length, fr.signature_length = len(field.value), len(field.signature)
        try:
            self._describe(report, fr, field)
        except (AutokeyError, ValueError) as exc:
            fr.decode_error = f"value: {exc}"
            if fr.signature.status is Status.ABSENT and field.signature:
                self._signature(report, fr, field, None, lambda ok: None)
        return fr

    def _describe(self, report: PacketReport, fr: FieldReport, field: F.Field) -> None:
        """Describe the value, check the signature and learn names, keys, AUTO values and
        cookies from it."""
        code, value = field.code, field.value
        if field.error:
            fr.description = "error"
            self._signature(report, fr, field, None, lambda ok: None)
            return
        if field.short:
            fr.description = "" if not field.response else "nothing to send"
            fr.signature = Check(Status.ABSENT, "short form")
            return
        carried: CertInfo | None = None
        then: Callable[[bool], None] = lambda ok: None  # noqa: E731
        if code == F.ASSOC:
            name = decode_assoc_name(value)
            self._nids[report.src] = word_nid(field.filestamp)
            if self._names.setdefault(report.src, name) == name:
                self._retry()
            else:
                fr.notes.append(f"{report.src} was named {self._names[report.src]} before")
            fr.description = f"name={name}"
            fr.notes.append(f"status word {field.filestamp:#010x}: NID {word_nid(field.filestamp)}"
                            f", {' '.join(flag_names(field.filestamp)) or 'no flags'}")
        elif code in (F.CERT, F.SIGN) and (field.response or code == F.SIGN):
            carried = parse_certificate(value)
            fr.description = f"subject={carried.subject} issuer={carried.issuer}"
            fr.notes.append(f"certificate serial {carried.serial}, {carried.signature_oid}, "
                            f"valid {carried.not_before:%Y-%m-%d %H:%M:%S} to "
                            f"{carried.not_after:%Y-%m-%d %H:%M:%S} UTC"
                            + (", trusted" if carried.trusted else "")
                            + (", private" if carried.private else ""))
            then = self._certificate_checks(report, fr, field, carried)
        elif code == F.CERT:
            fr.description = f"name={value.decode('ascii', 'replace')}"
        elif code == F.COOK and not field.response:
            key = decode_public_key(value)
            fr.description = f"RSA-{key.key_size} host key"
        elif code == F.COOK:
            fr.description = f"encrypted cookie ({len(value)} octets)"
            cookie = self.sessions.cook_response(report, value)
            if cookie is not None:
                fr.description += f" = {cookie:08x}"
        elif code == F.AUTO:
            auto = AutoValue.decode(value)
            fr.description = f"key={auto.keyid:08x} seq={auto.seq}"
            then = self.sessions.auto_values(report, auto)
        elif code == F.LEAP:
            leap = LeapValue.decode(value)
            fr.description = f"tai={leap.tai_offset} leap={leap.era_start} expire={leap.expire}"
        elif code in _IDENTITY:
            fr.description = f"{'response' if field.response else 'challenge'} ({len(value)} "
            fr.description += "octets)"
            fr.extra["identity"] = Check(Status.NOT_CHECKED, "identity proof not checked")
        else:
            fr.description = f"value ({len(value)} octets)"
        self._signature(report, fr, field, carried, then)

    def _certificate_checks(self, report: PacketReport, fr: FieldReport, field: F.Field,
                            cert: CertInfo) -> Callable[[bool], None]:
        """Checks of a certificate carried in CERT/SIGN; returns what to do once the field
        signature is decided (install the certificate when it verified)."""
        if cert.self_signed:
            ok = verify_self_signed(cert)
            fr.extra["certificate"] = Check(
                Status.OK if ok else Status.FAILED,
                "self-signature verifies" if ok else "self-signature does not verify")
        elif field.code == F.SIGN and field.response:
            fr.extra["certificate"] = Check(Status.PENDING, "waiting for the issuer")

            def issued(final: bool = False) -> bool:
                name, issuer = self._signer(report.src)
                if issuer is None:
                    if final:
                        fr.extra["certificate"] = Check(
                            Status.NOT_CHECKED, f"no certificate of the responder "
                                                f"{name or report.src}")
                    return final
                ok = verify_issued_by(cert, issuer) and cert.issuer == issuer.subject
                fr.extra["certificate"] = Check(
                    Status.OK if ok else Status.FAILED,
                    f"issued by {issuer.subject}" if ok else
                    f"not issued by the responder {issuer.subject}")
                return True

            if not issued():
                self._deferred.append(_Deferred(issued, lambda: issued(final=True)))
        else:
            issuer = self._keys.get(cert.issuer)
            if issuer is not None:
                ok = verify_issued_by(cert, issuer)
                fr.extra["certificate"] = Check(
                    Status.OK if ok else Status.FAILED,
                    f"issued by {issuer.subject}" if ok else
                    f"does not verify with {issuer.subject}'s key")

        def install(ok: bool) -> None:
            if ok and not any(fr.extra[k].failed for k in fr.extra):
                self._install(cert)

        return install


def analyse(datagrams: Iterable[Datagram], *, frames: int | None = None,
            seed: int | None = None, host_keys: Iterable[Any] = (),
            certificates: Iterable[CertInfo] = ()) -> tuple[list[PacketReport], Summary]:
    """Feed every datagram to a :class:`Tracer` and finish it."""
    tracer = Tracer(seed=seed, host_keys=host_keys, certificates=certificates)
    for datagram in datagrams:
        tracer.feed(datagram)
    return tracer.reports, tracer.finish(frames)
