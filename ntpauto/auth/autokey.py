"""Autokey session keys, key lists, the autokey (hash-chain) test and session-key MACs.

RFC 5906 sections 4 (Autokey cryptography), 5 (key lists) and 7 (the autokey test), and
interop.md section 3.

* Session key = H(src || dst || key ID || cookie), all in network order: 4-octet addresses
  for IPv4, 16-octet for IPv6 (no scope, no port); H is the configured digest (``crypto
  digest``, MD5 by default).  The whole digest is the MAC secret; its first 4 octets, read
  big-endian, are the *next* key ID in the chain.
* A packet carrying extension fields is MACed with cookie 0 (same key ID); broadcast is
  always cookie 0; otherwise the association cookie (server cookie in client/server mode,
  the combined cookie in symmetric modes, 0 before COOK).  The chain itself uses the cookie
  the key list was generated with.
* MAC = key ID (4) || H(session key || packet octets up to the MAC).

reference: ntpd/ntp_crypto.c session_key(), make_keylist(); ntpd/ntp_proto.c receive()
(autokey test), peer_xmit() (list use, cookie 0 for extension fields), fast_xmit() (server
replies); libntp/a_md5encrypt.c (MAC: key first).
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
import struct
from collections.abc import Container
from typing import Protocol

from attrs import define, field, frozen

from ntpauto.auth.digest import DIGEST_SIZES, digests_equal, mac_digest
from ntpauto.wire.packet import HEADER_LEN, Packet

NTP_MAXKEY = 65535
"""Key IDs 1..65535 are symmetric keys; Autokey session key IDs are above."""
NTP_MAXSESSION = 100
"""Maximum key list entries (indices 0..99)."""
NTP_AUTOMAX = 12
"""Default ``automax``: key list lifetime limit 2**12 s."""
AUTOKEY_DIGESTS = ("md5", "sha1")
"""Digests usable for session keys and their MACs (the MAC must fit 4 + 20 octets)."""

_KEYID = struct.Struct("!I")
_KEY_COOKIE = struct.Struct("!II")


class RandomSource(Protocol):
    """Anything with ``getrandbits`` (``random.Random``, ``secrets.SystemRandom``)."""

    def getrandbits(self, k: int, /) -> int: ...


_SYSTEM_RANDOM: RandomSource = secrets.SystemRandom()


@functools.lru_cache(maxsize=4096)
def address_octets(address: str) -> bytes:
    """The network-order octets of an IPv4 or IPv6 address given as a string (cached: the
    same few addresses are converted for every packet)."""
    return ipaddress.ip_address(address).packed


def _block(src: str, dst: str, keyid: int, cookie: int) -> bytes:
    s, d = address_octets(src), address_octets(dst)
    if len(s) != len(d):
        raise ValueError(f"address families differ: {src} and {dst}")
    return s + d + _KEY_COOKIE.pack(keyid, cookie)


def session_key(src: str, dst: str, keyid: int, cookie: int, digest: str = "md5") -> bytes:
    """The session key (full digest) for packets from ``src`` to ``dst`` with ``keyid``."""
    if digest not in AUTOKEY_DIGESTS:
        raise ValueError(f"unsupported Autokey digest {digest!r}")
    return mac_digest(digest, b"", _block(src, dst, keyid, cookie))


def next_keyid(src: str, dst: str, keyid: int, cookie: int, digest: str = "md5") -> int:
    """The key ID that follows ``keyid`` in a hash chain: the session key's first 4 octets."""
    return _KEYID.unpack_from(session_key(src, dst, keyid, cookie, digest))[0]


def packet_cookie(has_fields: bool, cookie: int) -> int:
    """The cookie a packet's MAC key uses: 0 when it carries extension fields."""
    return 0 if has_fields else cookie


# Key lists ---------------------------------------------------------------------------------

@define
class KeyList:
    """A sender's list of session key IDs, generated forward and used in reverse.

    ``keys[i+1]`` is the next key ID of ``keys[i]`` and :attr:`final` that of ``keys[-1]``.
    :meth:`pop` hands out ``keys[N]``, ``keys[N-1]``, ..., ``keys[0]`` (the receiver hashes a
    key ID forward to one it already trusts).  :attr:`final` and :attr:`index` are what the
    AUTO response carries; :attr:`timestamp` is its timestamp (0 when generated
    unsynchronized, in which case the values are not signed and the list has a single key).
    """

    src: str
    dst: str
    cookie: int
    keys: tuple[int, ...]
    final: int
    timestamp: int
    lifetime: int
    digest: str = "md5"
    _next: int = field(init=False, default=-1)

    def __attrs_post_init__(self) -> None:
        self._next = len(self.keys) - 1

    @classmethod
    def generate(
        cls,
        src: str,
        dst: str,
        cookie: int,
        *,
        now: int,
        poll: int,
        automax: int = NTP_AUTOMAX,
        in_use: Container[int] = frozenset(),
        digest: str = "md5",
        rng: RandomSource | None = None,
    ) -> KeyList:
        """Generate a key list as the reference's make_keylist() does.

        ``src`` is our address, ``dst`` the peer's (the broadcast address in broadcast
        mode); ``cookie`` is 0 in broadcast mode, else the association cookie.  ``now`` is
        the crypto time (NTP seconds, 0 when unsynchronized), ``poll`` the log2 poll
        interval (min of host and peer poll), ``in_use`` the key IDs in the local key cache.

        k0 is random, re-drawn until > 65535 and not in use.  With mpoll = 2**poll and
        lifetime = min(2**automax, 100 * mpoll), entry i is added, then lifetime -= mpoll,
        and generation stops after it when the next key ID is <= 65535 or already used
        (in the cache or earlier in this list), lifetime < 0, ``now`` is 0, or 100 entries
        are listed.
        """
        rand = rng if rng is not None else _SYSTEM_RANDOM
        while True:
            keyid = rand.getrandbits(32)
            if keyid > NTP_MAXKEY and keyid not in in_use:
                break
        mpoll = 1 << poll
        lifetime = initial = min(1 << automax, NTP_MAXSESSION * mpoll)
        keys: list[int] = []
        seen: set[int] = set()
        for _ in range(NTP_MAXSESSION):
            keys.append(keyid)
            seen.add(keyid)
            keyid = next_keyid(src, dst, keyid, cookie, digest)
            lifetime -= mpoll
            if (keyid in seen or keyid in in_use or keyid <= NTP_MAXKEY or lifetime < 0
                    or now == 0):
                break
        return cls(src, dst, cookie, tuple(keys), keyid, now, initial, digest)

    @property
    def index(self) -> int:
        """N: the index of the last entry (the AUTO value's sequence number)."""
        return len(self.keys) - 1

    @property
    def remaining(self) -> int:
        """Keys not yet handed out by :meth:`pop`."""
        return self._next + 1

    @property
    def exhausted(self) -> bool:
        """True once every key has been popped (time to generate a new list)."""
        return self._next < 0

    def pop(self) -> int:
        """The next key ID to send with, in reverse list order (IndexError when exhausted)."""
        if self._next < 0:
            raise IndexError("key list exhausted")
        keyid = self.keys[self._next]
        self._next -= 1
        return keyid

    def mac_key(self, keyid: int, *, has_fields: bool) -> bytes:
        """The session key for sending a packet with ``keyid`` from this list (cookie 0 when
        the packet carries extension fields)."""
        return session_key(self.src, self.dst, keyid, packet_cookie(has_fields, self.cookie),
                           self.digest)


# Receive side ------------------------------------------------------------------------------

@frozen
class AutokeyResult:
    """Outcome of :func:`autokey_test`.

    ``pkeyid`` and ``seq`` are the receiver's new values (unchanged on failure); ``hashes``
    counts session-key computations; ``clear_auto`` asks the caller to clear the AUTO bit
    (the walk exhausted the sequence, so the values must be fetched again).
    """

    ok: bool
    pkeyid: int
    seq: int
    hashes: int
    clear_auto: bool = False


def decrement_seq(seq: int) -> int:
    """The per-packet decrement of the received sequence number (not below 0); the
    reference applies it to every received Autokey packet before any test."""
    return seq - 1 if seq > 0 else seq


def autokey_test(
    src: str,
    dst: str,
    keyid: int,
    cookie: int,
    *,
    pkeyid: int,
    final: int | None,
    seq: int,
    signed: bool = False,
    digest: str = "md5",
) -> AutokeyResult:
    """The autokey test for a packet in symmetric or broadcast-client mode (RFC 5906 sec. 7).

    ``src``/``dst``: the packet's sender and our address (for broadcast, the broadcast
    address); ``cookie``: the chain cookie (0 for broadcast, the agreed cookie in symmetric
    modes); ``pkeyid``: the key ID of the last accepted packet; ``final``/``seq``: the
    autokey values (``None`` when none have been received: the test fails); ``seq`` must
    already have been decremented with :func:`decrement_seq`.

    ``signed``: the packet carried an extension field whose signature verified; the chain
    is then not walked and the key ID is accepted.  Otherwise t = next(keyid) is compared
    with ``pkeyid`` and ``final`` for i = 0, 1, ...: a match succeeds with
    ``seq - i``; i > seq fails and clears AUTO; else t = next(t).  The walk is also bounded
    by the list size (100 entries), which the reference never exceeds, so a forged packet
    costs at most 101 hashes whatever sequence number was announced.
    """
    if signed:
        return AutokeyResult(True, keyid, seq, 0)
    if final is None:
        return AutokeyResult(False, pkeyid, seq, 0)
    limit = min(seq, NTP_MAXSESSION - 1)
    tkeyid = next_keyid(src, dst, keyid, cookie, digest)
    hashes = 1
    i = 0
    while True:
        if tkeyid == pkeyid or tkeyid == final:
            return AutokeyResult(True, keyid, seq - i, hashes)
        if i > limit:
            return AutokeyResult(False, pkeyid, seq, hashes, clear_auto=True)
        tkeyid = next_keyid(src, dst, tkeyid, cookie, digest)
        hashes += 1
        i += 1


def reply_keyid_matches(reply_keyid: int | None, sent_keyid: int) -> bool:
    """Client mode's only key check on a server reply: it echoes our request's key ID."""
    return reply_keyid == sent_keyid


def server_reply_key(
    server: str,
    client: str,
    keyid: int,
    cookie: int,
    *,
    has_fields: bool,
    digest: str = "md5",
) -> bytes:
    """The session key of a server's reply to a client request with Autokey ``keyid``:
    session(server, client, keyid, 0 if the reply carries a field else the server cookie).
    The reply uses the request's key ID; the request itself verifies with
    ``session_key(client, server, keyid, packet_cookie(request_has_fields, cookie))``."""
    return session_key(server, client, keyid, packet_cookie(has_fields, cookie), digest)


# MACs --------------------------------------------------------------------------------------

def mac(key: bytes, keyid: int, message: bytes, digest: str = "md5") -> bytes:
    """The MAC to append: key ID (4 octets) || H(session key || message)."""
    return _KEYID.pack(keyid) + mac_digest(digest, key, message)


def verify_mac(key: bytes, message: bytes, received: bytes, digest: str = "md5") -> bool:
    """Check the digest part of a MAC (``Packet.digest``) against ``message`` (constant
    time); its length must be that of ``digest``."""
    if len(received) != DIGEST_SIZES[digest]:
        return False
    return digests_equal(mac_digest(digest, key, message), received)


def sign_packet(data: bytes, src: str, dst: str, keyid: int, cookie: int,
                digest: str = "md5") -> bytes:
    """``data`` (header and extension fields) with its Autokey MAC appended; the session key
    uses cookie 0 when ``data`` carries extension fields."""
    has_fields = len(data) > HEADER_LEN
    key = session_key(src, dst, keyid, packet_cookie(has_fields, cookie), digest)
    return data + mac(key, keyid, data, digest)


def verify_packet(packet: Packet, src: str, dst: str, cookie: int,
                  digest: str = "md5") -> bool:
    """Check a parsed packet's Autokey MAC: key ID > 65535, session key from (src, dst, key
    ID, cookie 0 if the packet carries fields else ``cookie``)."""
    if packet.keyid is None or packet.keyid <= NTP_MAXKEY:
        return False
    key = session_key(src, dst, packet.keyid, packet_cookie(bool(packet.fields), cookie),
                      digest)
    return verify_mac(key, packet.authenticated_part, packet.digest, digest)
