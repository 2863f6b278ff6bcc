"""The Autokey status word: host flags, association progress bits and the ASSOC receive rules.

RFC 5906 section 11.1 (Status Word) and interop.md section 2.

The 32-bit word is ``nid << 16 | flags``: the high half is the OpenSSL NID of the signature
algorithm of the host's own certificate, the low half the flags of :class:`Flag`.  A host
sends its word in the filestamp slot of ASSOC messages; the receiver turns the peer's word
into the association word with :func:`apply_peer_status`.

reference: include/ntp_crypto.h (CRYPTO_FLAG_* values), ntpd/ntp_crypto.c crypto_setup() (NID
and PRIV placement) and crypto_recv() ``CRYPTO_ASSOC | CRYPTO_RESP`` (receive rules).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ntpauto.events import Event
from ntpauto.wire.packet import MODE_ACTIVE, MODE_PASSIVE, MODE_SERVER


class Flag(enum.IntFlag):
    """Status word flag bits (low 16 bits).  RFC names are aliases: LVAL = TAI, PC = PRIV."""

    ENAB = 0x0001
    """Autokey enabled (host keys and certificate loaded)."""
    TAI = 0x0002
    """Leapsecond values available (set at the host's first signature update)."""
    LVAL = 0x0002
    PRIV = 0x0010
    """Private certificate (PC) scheme: the host certificate carries EKU "Private"."""
    PC = 0x0010
    IFF = 0x0020
    GQ = 0x0040
    MV = 0x0080
    CERT = 0x0100
    """Association: trusted certificate / public key verified."""
    VRFY = 0x0200
    """Association: identity verified."""
    PROV = 0x0400
    """Association: a signature verified after VRFY (proventic)."""
    COOK = 0x0800
    """Association: cookie received."""
    AUTO = 0x1000
    """Association: autokey values received."""
    SIGN = 0x2000
    """Association: our certificate signed by the peer."""
    LEAP = 0x4000
    """Association: leapsecond values received."""
    SCHEME_MASK = 0x00F0
    """reference: CRYPTO_FLAG_MASK, the identity-scheme bits (PRIV, IFF, GQ, MV)."""
    ALL = 0x7F00
    """reference: CRYPTO_FLAG_ALL, every progress bit CERT..LEAP."""


FLAGS_MASK = 0xFFFF
PLUGIN_SCHEME_MASK = 0x000C
"""The status bits left for third-party identity schemes (0x0004, 0x0008): the reference
defines no flag there and ignores them (docs/howto/identity-plugins.md).  Unlike
:attr:`Flag.SCHEME_MASK` they play no part in the symmetric-mode rule of
:func:`apply_peer_status`, exactly as for a reference peer."""
IDENTITY_SCHEME_MASK = int(Flag.SCHEME_MASK) | PLUGIN_SCHEME_MASK
"""Every status bit a host may set for an identity scheme it answers (0x00FC)."""
_BIT_NAMES = {f.value: str(f.name) for f in Flag}
"""Canonical (first-defined) name of every single-bit flag; iteration skips aliases/masks."""

NID_DIGESTS: Mapping[int, str] = {
    7: "md2",  # md2WithRSAEncryption
    8: "md5",  # md5WithRSAEncryption (ntp-keygen default RSA-MD5)
    42: "sha",  # shaWithRSAEncryption (SHA-0)
    65: "sha1",  # sha1WithRSAEncryption
    66: "sha1",  # dsaWithSHA: OpenSSL 1.0 EVP_dss hashes with SHA-1
    96: "mdc2",  # mdc2WithRSA
    113: "sha1",  # dsaWithSHA1 (OpenSSL 1.0 "DSS1" = SHA-1)
    119: "ripemd160",  # ripemd160WithRSA
    668: "sha256",  # sha256WithRSAEncryption
}
"""Signature-algorithm NID -> digest name (OpenSSL short name, lower case), as the reference's
``EVP_get_digestbynid`` resolves the NIDs listed in interop.md section 2."""

SUPPORTED_NID_DIGESTS: Mapping[int, str] = {
    nid: name for nid, name in NID_DIGESTS.items() if name in ("md5", "sha1", "sha256")
}
"""The subset of :data:`NID_DIGESTS` whose digests ``cryptography`` can verify signatures
with; pass it to :func:`apply_peer_status` to refuse the others at ASSOC time."""

NID_LONG_NAMES: Mapping[int, str] = {
    7: "md2WithRSAEncryption",
    8: "md5WithRSAEncryption",
    42: "shaWithRSAEncryption",
    65: "sha1WithRSAEncryption",
    66: "dsaWithSHA",
    96: "mdc2WithRSA",
    113: "dsaWithSHA1",
    119: "ripemd160WithRSA",
    668: "sha256WithRSAEncryption",
}
"""OpenSSL long names of those NIDs (ntpq ``signature`` variable, cryptostats lines)."""


def host_word(nid: int, flags: int) -> int:
    """The status word a host sends: its certificate's signature NID and its flags."""
    if not 0 <= nid <= 0xFFFF:
        raise ValueError(f"NID {nid} does not fit in 16 bits")
    return (nid << 16) | (int(flags) & FLAGS_MASK)


def word_nid(word: int) -> int:
    """The signature-algorithm NID in the high half of a status word."""
    return (word >> 16) & 0xFFFF


def word_flags(word: int) -> Flag:
    """The flag bits in the low half of a status word."""
    return Flag(word & FLAGS_MASK)


def flag_names(word: int) -> list[str]:
    """Names of the flag bits set in ``word``, lowest bit first, e.g.
    ``["CERT", "VRFY", "PROV", "COOK"]``; undefined bits appear as hex (``"0x8000"``)."""
    return [_BIT_NAMES.get(1 << bit, f"0x{1 << bit:04x}")
            for bit in range(16) if word & (1 << bit)]


def peer_digest(word: int, nid_to_digest: Mapping[int, str] = NID_DIGESTS) -> str | None:
    """The verification digest a peer's status word selects, or ``None`` if unsupported."""
    return nid_to_digest.get(word_nid(word))


def apply_peer_status(
    own_word: int,
    peer_word: int,
    packet_mode: int,
    nid_to_digest: Mapping[int, str] = NID_DIGESTS,
) -> tuple[int, Event]:
    """Turn a peer's status word, received in an ASSOC message, into the association word.

    Returns ``(assoc_word, Event.OK)``, or ``(0, error)`` when the association must not take
    the word (nothing is stored; the packet is discarded):

    * own PRIV (PC) set: the peer must have PRIV too (else ``Event.KEY``); CERT, VRFY and
      SIGN are then lit, since PC skips those exchanges;
    * otherwise, only when ``packet_mode`` is symmetric active/passive: ``Event.KEY`` if
      exactly one of the two words has an identity-scheme bit (0x00F0);
    * the NID in the high half must map to a digest in ``nid_to_digest`` (else ``Event.MD``,
      "unsupported digest"); :func:`peer_digest` gives that digest;
    * server-mode packets pre-light AUTO (AUTO is never requested in client/server);
    * a peer word without TAI pre-lights LEAP (LEAP is never requested from it).

    reference: crypto_recv() ``CRYPTO_ASSOC | CRYPTO_RESP``.
    """
    peer = peer_word & 0xFFFFFFFF
    if own_word & Flag.PRIV:
        if not peer & Flag.PRIV:
            return 0, Event.KEY
        peer |= Flag.CERT | Flag.VRFY | Flag.SIGN
    elif packet_mode in (MODE_ACTIVE, MODE_PASSIVE):
        if bool(own_word & Flag.SCHEME_MASK) != bool(peer & Flag.SCHEME_MASK):
            return 0, Event.KEY
    if word_nid(peer) not in nid_to_digest:
        return 0, Event.MD
    if packet_mode == MODE_SERVER:
        peer |= Flag.AUTO
    if not peer & Flag.TAI:
        peer |= Flag.LEAP
    return int(peer), Event.OK
