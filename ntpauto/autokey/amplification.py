"""The amplification limit: a reply to a source that has not completed a normal exchange is
never larger than its request (but with odds of 1 in 4096 a guess).

*Completed a normal exchange* means the request proves its source received one of our
replies: its origin timestamp echoes that reply's transmit timestamp.  Every client does
this: RFC 5905 peer_xmit() copies the last reply's transmit timestamp into the next
request's origin, and the reference captures (``vectors/pcap/*``) show ntpd's Autokey client
doing so from its second request on; ours (``Engine._transmit``) does the same.  A source
that spoofs its address never sees our replies, so it cannot echo them: until it does, a
response larger than the request (a CERT, COOK, SIGN, AUTO, LEAP or identity response
answering a short request) is replaced by the empty response to the same request (8
octets, R set, no value), which is never larger than the request and still carries a MAC the
client verifies (cookie 0), so the client takes its timestamps and echoes them in its next
request, which then gets the full response.

The proof is stateless: the low :data:`ECHO_BITS` bits of the transmit timestamp of every
Autokey reply (below a microsecond) are a tag, a keyed function of the rest of the
timestamp under an *echo key* that only the server knows, one per (client, server) address
pair (:func:`echo_key`: a hash of the server seed and the two addresses, so it changes with
the seed).  An origin timestamp echoes one of our replies to that source when its tag is the
one the echo key gives and it is recent: no older than two of the request's poll intervals
(:func:`echoes`, :func:`echo_window`), which every client's next request meets and which
bounds what replaying an old request can do.  No table of what was sent is kept, so nothing is
evicted by a flood, and every process and host that shares the server seed (the worker
processes of one server, the instances of a farm: docs/scaling.md) accepts each other's
echoes: a client moved between them mid-dance loses nothing.  A spoofer that guesses
an origin succeeds once in 2**12 requests on average (the expected amplification of a
flood is then under 1 %: the tag is a bound on odds, not a secret).  The transmit
timestamp loses nothing it had: the tag replaces bits below the clock's precision.

ASSOC is the exception: its response names the server, which is longer than the client's
name whenever the operator chose so, and the ASSOC group gate of a ``host@group`` client
(interop.md 5.1, ours and the reference's alike) drops an ASSOC response without a name
before it looks at the timestamps, so an empty ASSOC response would leave the client asking
forever.  An ASSOC request is sent only before the cookie (COOK) is known, when the client
verifies replies without fields under cookie 0 (interop.md 3.2): the cut ASSOC answer
is the bare header under that key, which any client accepts for its timestamps.

Sans-I/O: addresses, integers and octets in, octets out.
"""

from __future__ import annotations

from ntpauto.auth.autokey import address_octets, mac, server_reply_key
from ntpauto.auth.digest import HASHES
from ntpauto.autokey.fields import ASSOC, Field

__all__ = ["ECHO_BITS", "ECHO_MULTIPLIER", "MAX_ECHO_POLL", "MIN_ECHO_POLL", "cut_reply",
           "echo_key", "echo_window", "echoes", "empty_reply", "tagged"]

ECHO_BITS = 12
"""Low bits of a reply's transmit timestamp that carry the echo tag (2**-20 s: under a
microsecond, below what a Python server can stamp)."""
_ECHO_MASK = (1 << ECHO_BITS) - 1
_ECHO_SHIFT = 32 - ECHO_BITS
ECHO_MULTIPLIER = 0x9E3779B1
"""The tag is the top bits of (timestamp above the tag XOR echo key) times this, mod 2**32."""
_LABEL = b"ntpauto echo"
MIN_ECHO_POLL = 4
"""The shortest echo window is 2 * 2**4 s (a poll of 16 s)."""
MAX_ECHO_POLL = 17
"""The longest is 2 * 2**17 s, the longest poll interval."""


def echo_key(seed: int, client: str, server: str, digest: str = "md5") -> int:
    """The 32-bit echo key of replies to ``client`` from ``server`` under server seed
    ``seed``: the first four octets of H(label || seed || client || server)."""
    octets = _LABEL + seed.to_bytes(4, "big") + address_octets(client) + address_octets(server)
    return int.from_bytes(HASHES[digest](octets).digest()[:4], "big")


def _tag(high: int, key: int) -> int:
    return (((high ^ key) & 0xFFFFFFFF) * ECHO_MULTIPLIER & 0xFFFFFFFF) >> _ECHO_SHIFT


def tagged(transmit: int, key: int) -> int:
    """The 64-bit NTP ``transmit`` timestamp with its low :data:`ECHO_BITS` bits replaced by
    the tag of the rest under echo ``key``."""
    high = transmit >> ECHO_BITS
    return high << ECHO_BITS | _tag(high, key)


def echo_window(poll: int) -> int:
    """Seconds an echo proves a source for, from the poll exponent of its request: two of
    its poll intervals (a client echoes the last reply it had, one poll ago, or the one
    before when a reply was lost), :data:`MIN_ECHO_POLL` to :data:`MAX_ECHO_POLL`."""
    return 2 << min(max(poll, MIN_ECHO_POLL), MAX_ECHO_POLL)


def echoes(origin: bytes, key: int, now: int, poll: int) -> bool:
    """True when the 8-octet ``origin`` timestamp of a request received at ``now`` (NTP
    timestamp) with poll exponent ``poll`` carries the tag of echo ``key`` and is no older
    than :func:`echo_window` (nor more than a second ahead: a farm's clocks differ a
    little): it echoes a recent reply sent under that key (0 never does)."""
    value = int.from_bytes(origin, "big")
    if not value or value & _ECHO_MASK != _tag(value >> ECHO_BITS, key):
        return False
    age = ((now - value + (1 << 63)) % (1 << 64) - (1 << 63)) >> 32  # era-safe difference
    return -1 <= age < echo_window(poll)


def empty_reply(reply: bytes, request: Field, keyid: int, client: str, server: str,
                digest: str) -> bytes:
    """The server reply ``reply`` (the 48-octet header) carrying the empty response to
    ``request`` (8 octets, R set, no value, no signature) under the Autokey MAC of a reply
    with fields (cookie 0): at most the size of any request carrying a field and a MAC of
    the same digest."""
    data = reply[:48] + Field.short_form(request.code, request.associd, response=True).encode()
    key = server_reply_key(server, client, keyid, 0, has_fields=True, digest=digest)
    return data + mac(key, keyid, data, digest)


def cut_reply(reply: bytes, request: Field, keyid: int, client: str, server: str,
              digest: str) -> bytes:
    """What replaces a response larger than its request to a source that has not completed a
    normal exchange: :func:`empty_reply`, except for ASSOC, where it is the header alone
    MACed under cookie 0 (a client before COOK verifies field-less replies so; the group
    gate would drop an ASSOC response without a name: module docstring)."""
    if request.code != ASSOC:
        return empty_reply(reply, request, keyid, client, server, digest)
    data = reply[:48]
    key = server_reply_key(server, client, keyid, 0, has_fields=False, digest=digest)
    return data + mac(key, keyid, data, digest)
