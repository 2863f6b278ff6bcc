"""From what the audit saw to findings: each a topic, a severity and the reason (pure).

docs/audit.md explains every topic and what to do about it; the thresholds are here, once.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterator

from attrs import frozen
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.audit.probe import Observations
from ntpauto.autokey.status import Flag, word_nid
from ntpauto.client import errors
from ntpauto.identity.registry import all_factories
from ntpauto.pki.certificates import CertInfo
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_certificate
from ntpauto.wire.packet import LEAP_UNSYNC
from ntpauto.wire.timestamps import ntp_seconds_to_unix, ntp_to_unix

__all__ = ["EXIT_STATUS", "Finding", "Severity", "assess", "exit_status"]

STRONG_BITS = 2048
"""RSA and DSA keys, and identity moduli, at least this long are not flagged."""
WEAK_BITS = 1024
"""Below this a key or modulus is breakable by a well-funded attacker: high."""
EXPIRY_WARNING = 30 * 86400
"""Seconds before a certificate's or leap table's end that it is flagged."""
LONG_LIFETIME = 5 * 365 * 86400
"""A certificate valid longer than this is flagged (ntp-keygen's default is one year)."""


class Severity(enum.IntEnum):
    """How bad a finding is; the audit's exit status follows the worst (:data:`EXIT_STATUS`)."""

    OK = 0
    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def label(self) -> str:
        return self.name.lower()


EXIT_STATUS = {Severity.OK: 0, Severity.INFO: 0, Severity.LOW: 2, Severity.MEDIUM: 3,
               Severity.HIGH: 4, Severity.CRITICAL: 5}
"""Exit status by worst severity (1: the audit itself failed)."""


@frozen
class Finding:
    """One finding: ``topic`` names it in docs/audit.md (stable), ``reason`` says why."""

    topic: str
    severity: Severity
    summary: str
    reason: str = ""


def exit_status(findings: list[Finding]) -> int:
    """The audit's exit status: that of the worst severity."""
    return EXIT_STATUS[max((f.severity for f in findings), default=Severity.OK)]


def assess(obs: Observations) -> list[Finding]:
    """Every finding for ``obs``, in the order docs/audit.md lists them."""
    now = _server_time(obs)
    found = list(_time(obs))
    if obs.name is None:
        found.append(Finding("autokey", Severity.INFO, "no Autokey answer",
                             "the server answered no ASSOC request (under MD5 or SHA1): it "
                             "does not run Autokey, or its group gate refused our name "
                             "(give --group, or the group's keys)"))
    else:
        for check in (_dance, _digest, _signature, _keys, _certificates, _identity, _cookie,
                      _dsa, _leap):
            found.extend(check(obs, now))
    found.extend(_amplification(obs))
    return found


def _server_time(obs: Observations) -> float:
    """The server's time (Unix seconds) when known, else ours."""
    if obs.header is not None and obs.header.transmit:
        return ntp_to_unix(obs.header.transmit)
    return datetime.datetime.now(datetime.UTC).timestamp()


def _time(obs: Observations) -> Iterator[Finding]:
    header = obs.header
    if header is None:
        yield Finding("time", Severity.INFO, "no answer to a plain time request",
                      "the server answers Autokey requests only, or restricts this address")
        return
    if header.leap == LEAP_UNSYNC or header.stratum in (0, 16):
        yield Finding("time", Severity.HIGH, "the server is not synchronised",
                      f"leap indicator {header.leap}, stratum {header.stratum}: it has no "
                      "time to give, and an Autokey server signs nothing until it has")
    else:
        yield Finding("time", Severity.OK, f"NTPv{header.version}, stratum {header.stratum}",
                      f"leap indicator {header.leap}")
    if header.version < 4:
        yield Finding("version", Severity.LOW, f"NTP version {header.version}",
                      "the server answers in an older NTP version; Autokey is NTPv4's")


def _dance(obs: Observations, now: float) -> Iterator[Finding]:
    outcome = obs.outcome
    if outcome is not None:
        yield Finding("dance", Severity.OK, "the client dance completed",
                      f"{outcome.requests} requests in {outcome.seconds:.3f} s; the time "
                      "reply was keyed with the server's cookie")
        if outcome.paced:
            yield Finding("rate-limit", Severity.INFO, "the server rate-limits requests",
                          f"{outcome.paced}: a client that sends its dance back to back is "
                          "slowed down (which protects the server from floods)")
        return
    failure = obs.failure
    severity = Severity.MEDIUM
    if isinstance(failure, (errors.CertificateExpired, errors.CertificateUntrusted,
                            errors.ServerUnsynchronised)):
        severity = Severity.HIGH
    elif isinstance(failure, errors.IdentityFailed) and obs.own_keys:
        severity = Severity.HIGH
    elif isinstance(failure, errors.IdentityFailed):
        severity = Severity.INFO
    yield Finding("dance", severity, "the client dance did not complete",
                  failure.message if failure is not None else "no outcome")


def _digest(obs: Observations, now: float) -> Iterator[Finding]:
    if obs.digest == "md5":
        yield Finding("digest", Severity.MEDIUM, "session keys and MACs use MD5",
                      "'crypto digest md5' (the reference's default); SHA1 is the stronger "
                      "of the two digests Autokey MACs can carry")
    else:
        yield Finding("digest", Severity.LOW, "session keys and MACs use SHA1",
                      "the stronger of the two digests an Autokey MAC can carry")


def _strength(name: str) -> tuple[Severity, str]:
    """The severity of a signature scheme by its digest."""
    upper = name.upper()
    if "MD5" in upper:
        return Severity.HIGH, "MD5 collisions are practical: a signature proves little"
    if upper.endswith(("SHA1", "-SHA")):
        return Severity.MEDIUM, "SHA-1 collisions have been shown: prefer a SHA-2 scheme"
    return Severity.OK, "a SHA-2 digest"


def _signature(obs: Observations, now: float) -> Iterator[Finding]:
    if obs.status is None:
        return
    nid = word_nid(obs.status)
    try:
        name = str(get_profile(nid).name)
    except UnsupportedProfile:
        yield Finding("signature", Severity.MEDIUM, f"unknown signature scheme (NID {nid})",
                      "no client can verify its signatures")
        return
    severity, why = _strength(name)
    yield Finding("signature", severity, f"signatures: {name}", why)


def _key_bits(info: CertInfo) -> tuple[str, int]:
    key = info.public_key
    kind = "RSA" if isinstance(key, rsa.RSAPublicKey) else "DSA"
    return kind, int(key.key_size)


def _size(bits: int) -> Severity:
    if bits < WEAK_BITS:
        return Severity.HIGH
    if bits < STRONG_BITS:
        return Severity.MEDIUM
    return Severity.OK


def _keys(obs: Observations, now: float) -> Iterator[Finding]:
    own = [info for info, _ in obs.certificates if info.subject == obs.name]
    if own:
        kind, bits = _key_bits(own[0])
        yield Finding("sign-key", _size(bits), f"sign key: {kind} {bits} bits",
                      f"the key of {own[0].subject}'s certificate, which signs every value "
                      f"(below {WEAK_BITS} bits: breakable; below {STRONG_BITS}: weak)")
    yield Finding("host-key", Severity.INFO, "host key: not visible to a client",
                  "a client/server exchange never shows the host key (it decrypts cookies "
                  "of symmetric peers); without a separate sign key it is the sign key")


def _certificates(obs: Observations, now: float) -> Iterator[Finding]:
    if not obs.certificates:
        yield Finding("trail", Severity.HIGH, "no certificate",
                      "the server sent no certificate for its name: no client can verify "
                      "it")
        return
    verified = obs.outcome is not None and obs.outcome.sample.autokey is not None
    for info, _ in obs.certificates:
        yield _validity(info, now)
    last = obs.certificates[-1][0]
    hops = " -> ".join(info.subject for info, _ in obs.certificates)
    if last.self_signed and last.trusted:
        how = "verified by the dance" if verified else "as received, not verified"
        yield Finding("trail", Severity.OK, f"trail of {len(obs.certificates)} to trusted "
                      f"host {last.subject}", f"{hops} ({how})")
    else:
        end = "self-signed without trustRoot" if last.self_signed else \
            f"and the server has no certificate of its issuer {last.issuer}"
        yield Finding("trail", Severity.HIGH, "the trail does not reach a trusted host",
                      f"{hops}: it ends at {last.subject}, {end}")


def _validity(info: CertInfo, now: float) -> Finding:
    start, end = info.not_before.timestamp(), info.not_after.timestamp()
    window = f"valid {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
    try:
        name = str(profile_for_certificate(info).name)
    except UnsupportedProfile:
        name = info.signature_oid
    flags = "trusted (trustRoot)" if info.trusted else "not trusted"
    where = f"{info.subject} (issuer {info.issuer}, {flags}, {name}): {window}"
    topic = "certificate"
    if end < now:
        return Finding(topic, Severity.HIGH, f"{info.subject}: expired", where)
    if start > now:
        return Finding(topic, Severity.HIGH, f"{info.subject}: not valid yet", where)
    if end - now < EXPIRY_WARNING:
        return Finding(topic, Severity.MEDIUM, f"{info.subject}: expires within 30 days",
                       where)
    severity, why = _strength(name)
    if severity is not Severity.OK:
        return Finding(topic, severity, f"{info.subject}: signed with {name}", why + "; "
                       + where)
    if end - start > LONG_LIFETIME:
        return Finding(topic, Severity.LOW, f"{info.subject}: valid over five years",
                       "a stolen key stays useful as long; " + where)
    return Finding(topic, Severity.OK, f"{info.subject}: valid", where)


def _offered(status: int) -> list[str]:
    """The identity schemes the status word offers (IFF, GQ, MV, plugins)."""
    return [str(f.scheme_name) for f in all_factories()
            if int(f.message_code) and status & int(f.status_bit)]


def _identity(obs: Observations, now: float) -> Iterator[Finding]:
    status = obs.status or 0
    offered = _offered(status)
    if status & Flag.PRIV:
        yield Finding("identity", Severity.MEDIUM, "identity: PC (private certificate)",
                      "every member of the group holds the group's private key: any of them "
                      "can be the server")
        return
    if not offered:
        yield Finding("identity", Severity.HIGH, "identity: TC only",
                      "no identity scheme: the trail proves only that a certificate ends at "
                      "a self-signed trusted one, which anyone can make for the group name")
        return
    names = ", ".join(name.upper() for name in offered)
    if obs.identity is None:
        yield Finding("identity", Severity.INFO, f"identity: {names} offered, not checked",
                      "we hold no client parameters for it: give --keysdir with the group's "
                      "parameters and --ident GROUP")
        return
    bits = obs.identity_bits
    modulus = max(bits.values(), default=0)
    sizes = ", ".join(f"{name} {value} bits" for name, value in sorted(bits.items()))
    scheme = obs.outcome.sample.autokey.scheme.upper() if obs.outcome else names
    yield Finding("identity", _size(modulus), f"identity: {scheme} proven", f"parameters "
                  f"{sizes} (below {WEAK_BITS} bits: breakable; ntp-keygen's defaults are "
                  "512)")


def _cookie(obs: Observations, now: float) -> Iterator[Finding]:
    if obs.cookie is None:
        yield Finding("cookie", Severity.INFO, "cookie: not checked",
                      "no COOK response came (the server was not synchronised, refused, or "
                      "rate-limited our request)")
    elif obs.cookie == obs.seed_zero_cookie:
        yield Finding("cookie", Severity.CRITICAL, "cookie: predictable (server seed 0)",
                      f"our cookie is {obs.cookie:#010x} = H(client, server, 0, 0): anyone who "
                      "knows the two addresses computes it, hence the session keys of every "
                      "time reply, which an on-path attacker can then forge (the "
                      "reference never draws its seed)")
    else:
        yield Finding("cookie", Severity.OK, "cookie: not the seed-0 value",
                      "the server draws its seed: H(client, server, 0, 0) is not our cookie")


def _dsa(obs: Observations, now: float) -> Iterator[Finding]:
    if obs.status is None or not obs.certificates:
        return
    try:
        profile = get_profile(word_nid(obs.status))
    except UnsupportedProfile:
        return
    if profile.key_type != "DSA":
        return
    key = obs.certificates[0][0].public_key
    try:
        size = int(profile.max_signature_size(key))
    except TypeError:
        return
    short = [length for _, length in obs.signatures if length < size]
    if short:
        yield Finding("dsa-signatures", Severity.MEDIUM, f"{len(short)} of "
                      f"{len(obs.signatures)} DSA signatures shorter than {size} octets",
                      "the reference's clients refuse any DSA signature but the longest "
                      "(interop.md 5.9): their dance fails at random")
    else:
        yield Finding("dsa-signatures", Severity.OK, f"all {len(obs.signatures)} DSA "
                      f"signatures of {size} octets", "the length reference clients want")


def _leap(obs: Observations, now: float) -> Iterator[Finding]:
    leap = obs.leap
    if leap is None:
        yield Finding("leap", Severity.LOW, "no LEAP values",
                      "the server sent no LEAP response: clients cannot learn TAI-UTC")
        return
    if not leap.expire:
        yield Finding("leap", Severity.LOW, "no leap-second table",
                      "the LEAP values are zero: give the server a leapfile")
        return
    expire = float(ntp_seconds_to_unix(leap.expire, now))
    when = datetime.datetime.fromtimestamp(expire, datetime.UTC)
    values = f"TAI-UTC {leap.tai_offset} s, table expires {when:%Y-%m-%d}"
    if expire < now:
        yield Finding("leap", Severity.MEDIUM, "the leap-second table expired", values)
    elif expire - now < EXPIRY_WARNING:
        yield Finding("leap", Severity.LOW, "the leap-second table expires within 30 days",
                      values)
    else:
        yield Finding("leap", Severity.OK, "leap-second table current", values)


def _amplification(obs: Observations) -> Iterator[Finding]:
    for sample in obs.amplification:
        factor = sample.factor
        detail = (f"{sample.sent} octets in, {sample.received} out, as from a source that "
                  "never completed an exchange (a spoofed one)")
        if not sample.received:
            severity, summary = Severity.OK, f"{sample.request}: not answered"
        else:
            severity = Severity.OK if factor <= 1 else Severity.LOW if factor <= 2 \
                else Severity.MEDIUM if factor <= 10 else Severity.HIGH
            summary = f"{sample.request}: amplification {factor:.1f}"
        yield Finding("amplification", severity, summary, detail)

