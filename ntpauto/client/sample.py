"""What a query returns: one time sample and what proved it.

:func:`sample_of` reads them from the one-shot engine's association once the engine took the
sample: the offset, delay and dispersion the receive path put into the clock filter, the
server's header variables, and for Autokey the state the dance verified (the trail's
certificates from the host's cache, where they enter only once the trail ends at a trusted
certificate).
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
from attrs import frozen

from ntpauto.autokey.status import Flag, flag_names, word_nid
from ntpauto.ntp.peer import Association, refid_text
from ntpauto.nts.aead import AEAD_NAMES
from ntpauto.pki.certificates import CertInfo
from ntpauto.pki.profiles import UnsupportedProfile, get_profile, profile_for_certificate
from ntpauto.wire.packet import Header
from ntpauto.wire.timestamps import from_short, ntp_to_unix

__all__ = ["AutokeyProof", "CertificateLink", "NtsProof", "Sample", "sample_of"]

LEAP_NAMES = {0: "none", 1: "add second", 2: "delete second", 3: "unsynchronised"}


@frozen
class CertificateLink:
    """One certificate of the server's trail, as verified."""

    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    signature: str
    """Its signature scheme as ntp-keygen names it (``RSA-SHA256``, ``DSA-SHA1``, ...)."""
    key_bits: int
    """Size of the subject's public key."""
    trusted: bool
    """EKU trustRoot: a trusted host's self-signed certificate (the trail's end)."""

    @classmethod
    def of(cls, info: CertInfo) -> CertificateLink:
        """The link for a parsed certificate."""
        try:
            signature = profile_for_certificate(info).name
        except UnsupportedProfile:
            signature = info.signature_oid
        return cls(info.subject, info.issuer, info.not_before, info.not_after, str(signature),
                   int(info.public_key.key_size), info.trusted)


@frozen
class AutokeyProof:
    """What the Autokey dance proved about the server (RFC 5906)."""

    server: str
    """The server's Autokey name (``host@group``), from its ASSOC response."""
    trail: tuple[CertificateLink, ...]
    """The server's certificate first, each signed by the next, a trusted one last (empty
    with PC, where both hosts hold the group's private certificate)."""
    scheme: str
    """The identity scheme that proved it: ``tc``, ``pc``, ``iff``, ``gq``, ``mv`` or a
    plugin's."""
    signature: str
    """The server's signature scheme (from its status word), e.g. ``RSA-SHA256``."""
    digest: str
    """The session-key digest (``md5`` or ``sha1``)."""
    cookie: bool
    """The server's cookie was received (COOK): the time reply is keyed with it."""
    flags: tuple[str, ...]
    """The association's status word flags (``CERT``, ``VRFY``, ``PROV``, ``COOK``, ...)."""

    @property
    def trusted_host(self) -> str | None:
        """The subject of the trusted certificate that ends the trail."""
        return self.trail[-1].subject if self.trail else None


@frozen
class NtsProof:
    """What NTS proved about the server (RFC 8915): its certificate named ``host`` and
    chained to a trusted CA in the NTS-KE exchange, and the reply was sealed with that
    exchange's server-to-client key under ``aead``."""

    host: str
    """The NTS-KE server's name, as its certificate carries it."""
    ke_port: int
    aead: str
    """The AEAD algorithm (``AEAD_AES_SIV_CMAC_256``)."""
    cookies: int
    """Cookies held after the reply (each request spends one, each reply refills)."""


@frozen
class Sample:
    """One time sample from a server, and how it was authenticated."""

    address: str
    port: int
    offset: float
    """Seconds to add to our clock to get the server's (RFC 5905 theta)."""
    delay: float
    """Round-trip delay, seconds."""
    dispersion: float
    """The sample's dispersion (precisions and the time in flight), seconds."""
    stratum: int
    refid: str
    leap: int
    version: int
    poll: int
    precision: int
    root_delay: float
    root_dispersion: float
    server_time: float
    """The server's transmit timestamp, as Unix seconds."""
    authentication: str
    """``"none"``, ``"key"`` (symmetric key :attr:`keyid`), ``"autokey"`` (:attr:`autokey`)
    or ``"nts"`` (:attr:`nts`)."""
    keyid: int | None = None
    autokey: AutokeyProof | None = None
    nts: NtsProof | None = None

    @property
    def leap_text(self) -> str:
        """The leap indicator in words."""
        return LEAP_NAMES[self.leap]


def proof_of(assoc: Association) -> AutokeyProof:
    """What ``assoc``'s Autokey state holds as proven (see :class:`AutokeyProof`)."""
    session = assoc.autokey
    state = session.state
    host = session.node.host
    links = []
    for subject, issuer in state.trail:
        entry = host.cache.find(subject, issuer)
        if entry is not None:
            links.append(CertificateLink.of(entry.cert))
    try:
        signature = str(get_profile(word_nid(state.status)).name)
    except UnsupportedProfile:
        signature = f"NID {word_nid(state.status)}"
    return AutokeyProof(
        server=state.peer_name or "", trail=tuple(links), scheme=state.scheme_name or "",
        signature=signature, digest=session.digest, cookie=bool(state.status & Flag.COOK),
        flags=tuple(flag_names(state.status)))


def sample_of(assoc: Association, header: Header) -> Sample:
    """The sample the engine just took for ``assoc`` from the reply with ``header``: the
    newest stage of its clock filter and the reply's header variables."""
    stage = assoc.filter.stages()[0]
    nts = None
    if assoc.autokey is not None:
        kind, proof = "autokey", proof_of(assoc)
    elif assoc.nts is not None:
        kind, proof = "nts", None
        session = assoc.nts
        nts = NtsProof(session.host, session.port, AEAD_NAMES.get(session.keys.aead, str(
            session.keys.aead)), len(session.cookies))
    else:
        kind, proof = ("key" if assoc.keyid is not None else "none"), None
    return Sample(
        address=assoc.address[0], port=assoc.address[1], offset=stage.offset,
        delay=stage.delay, dispersion=stage.dispersion, stratum=header.stratum,
        refid=refid_text(header.refid, header.stratum), leap=header.leap,
        version=header.version, poll=header.poll, precision=header.precision,
        root_delay=from_short(header.root_delay),
        root_dispersion=from_short(header.root_dispersion),
        server_time=ntp_to_unix(header.transmit), authentication=kind, keyid=assoc.keyid,
        autokey=proof, nts=nts)


def as_dict(value: Sample | AutokeyProof | NtsProof) -> dict[str, Any]:
    """A sample or a proof as JSON-ready values (times as ISO 8601)."""

    def serialise(_inst: Any, _field: Any, v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime.datetime) else v

    return attrs.asdict(value, value_serializer=serialise)
