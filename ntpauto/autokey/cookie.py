"""Cookies: the stateless server cookie, the server seed, and the symmetric-mode cookie.

RFC 5906 section 6.2 (cookie) and interop.md section 4.

* Server cookie (client/server mode): the first 4 octets, big-endian, of
  H(client address || server address || 0x00000000 || seed) — the session-key function with
  key ID 0 and the server seed as the "cookie", but with the **client first** (the reply MAC
  key is server || client).  The server keeps no per-client state: it recomputes the cookie
  for every request.
* Symmetric modes: each peer draws a random 32-bit ``hcookie`` when it accepts the other's
  ASSOC message and returns it, encrypted, in its COOK responses; the working cookie is the
  XOR of the two values when the COOK response arrived in a symmetric-mode packet, else the
  received value (:func:`combine_cookie`).
* The COOK response value itself is encrypted/decrypted by
  :func:`~ntpauto.autokey.values.encrypt_cookie` / :func:`~ntpauto.autokey.values.decrypt_cookie`.

reference: ntpd/ntp_proto.c fast_xmit() and receive() (``session_key(client, server, 0,
sys_private)``), ntpd/ntp_timer.c (revoke timer), ntpd/ntp_crypto.c crypto_recv() (hcookie
draw on ASSOC, XOR on COOK response).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import struct

from ntpauto.auth.autokey import RandomSource, next_keyid
from ntpauto.autokey.values import decrypt_cookie, encrypt_cookie
from ntpauto.wire.packet import MODE_ACTIVE, MODE_PASSIVE

__all__ = [
    "KEY_REVOKE", "SEED_SECRET_SIZE", "ServerSeed", "SharedSeed", "combine_cookie",
    "decrypt_cookie", "encrypt_cookie", "random_cookie", "server_cookie",
]

KEY_REVOKE = 17
"""Default ``crypto revoke`` (log2 seconds): the server seed is refreshed every 2**17 s."""

SEED_SECRET_SIZE = 32
"""Octets of the secret a :class:`SharedSeed` derives its seeds from."""

_SYSTEM_RANDOM: RandomSource = secrets.SystemRandom()


@functools.lru_cache(maxsize=4096)
def server_cookie(client: str, server: str, seed: int, digest: str = "md5") -> int:
    """The cookie a server uses with ``client``: next key ID of (client, server, 0, seed).

    Note the argument order: client first, then the server address the request arrived on.
    A pure function, cached (bounded) because a busy server computes it for every packet.
    """
    return next_keyid(client, server, 0, seed, digest)


def random_cookie(rng: RandomSource | None = None) -> int:
    """A fresh random 32-bit value (a symmetric peer's ``hcookie``)."""
    return (rng if rng is not None else _SYSTEM_RANDOM).getrandbits(32)


def combine_cookie(own: int, received: int, packet_mode: int) -> int:
    """The working cookie after a COOK response: ``own ^ received`` when the response came
    in a symmetric active/passive packet (``own`` = our hcookie), else ``received``."""
    if packet_mode in (MODE_ACTIVE, MODE_PASSIVE):
        return (own ^ received) & 0xFFFFFFFF
    return received


class ServerSeed:
    """The server's private value for :func:`server_cookie`, refreshed every ``revoke``
    seconds.

    Deviation from the reference, on purpose: ntpd 4.3.91 zero-initialises its seed
    (``sys_private``) and never re-randomises it (the revoke timer never fires), so its
    cookies are a public function of the two addresses.  Ours is a random non-zero 32-bit
    value drawn at construction and redrawn on the first :meth:`current` call at or after
    its deadline, as RFC 5906 intends.  Cookies only have to be consistent within one
    server, so this is invisible to reference clients, except that a refresh invalidates
    their cookie (their next MAC fails and they restart with a new COOK exchange).

    ``now`` is the local clock in seconds (e.g. NTP seconds); a backwards step re-anchors
    the deadline without redrawing.
    """

    def __init__(self, revoke: int = 1 << KEY_REVOKE, rng: RandomSource | None = None) -> None:
        if revoke <= 0:
            raise ValueError("revoke interval must be positive")
        self.revoke = revoke
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._pinned: int | None = None
        self._seed = self._draw()
        self.generation = 0
        """Incremented at every redraw: a cookie cached with an older generation is stale."""
        self.time = 0
        """The latest time :meth:`cookie` was asked for (NTP seconds)."""
        self.valid_from = self.valid_until = 0
        """The seed's interval: anchored at ``valid_from``, refreshed at ``valid_until``
        (``valid_from + revoke``); empty until the first :meth:`current`.  Inside it
        :meth:`current` changes nothing, so the server's hot path reuses its cookies without
        calling in."""

    def pin(self, value: int) -> None:
        """Test-only: use ``value`` from now on, never drawing again.  ``pin(0)`` makes the
        reference's server, whose cookies anyone can compute (what ``ntpauto audit`` must
        find); nothing in ntpauto calls it, and no configuration can."""
        self._pinned = self._seed = value & 0xFFFFFFFF
        self.generation += 1

    def _draw(self) -> int:
        if self._pinned is not None:
            return self._pinned
        while True:
            seed = self._rng.getrandbits(32)
            if seed:
                return seed

    @property
    def deadline(self) -> int | None:
        """When the seed is next refreshed (``None`` until :meth:`current` was called)."""
        return self.valid_until or None

    def current(self, now: int) -> int:
        """The seed to use at ``now``, refreshing it if its interval has elapsed."""
        if not self.valid_until or now < self.valid_from:
            self.valid_from = now  # first call, or the clock stepped back: re-anchor
        elif now >= self.valid_until:
            self._seed = self._draw()
            self.valid_from = now
            self.generation += 1
        self.valid_until = self.valid_from + self.revoke
        return self._seed

    def cookie(self, client: str, server: str, now: int, digest: str = "md5") -> int:
        """The server cookie for ``client`` (the request's source) and ``server`` (the
        address it arrived on) at ``now`` (see :func:`server_cookie`).  ``now`` = 0
        (unsynchronised) and earlier times use the latest time seen, so that losing
        synchronisation never refreshes the seed."""
        return server_cookie(client, server, self.at(now), digest)

    def at(self, now: int) -> int:
        """The seed in use at ``now``: :meth:`current` at the latest time seen (``now`` = 0,
        unsynchronised, and earlier times never refresh it)."""
        self.time = max(self.time, int(now))
        return self.current(self.time)

    @property
    def value(self) -> int:
        """The seed in use (a private value: for the processes and instances that must share
        it, :class:`SharedSeed`)."""
        return self._seed


class SharedSeed(ServerSeed):
    """A server seed several processes or hosts compute alike: the first four octets (not
    zero) of SHA-256(``secret`` || interval number), where the interval number counts
    ``revoke``-second intervals since the NTP era began.  Instances that hold the same
    32-octet ``secret`` (a farm: :func:`load_seed_secret`; a server's worker processes: a
    secret its first process draws) issue the same cookies, and refresh them at the same
    moments, with no word between them.  Refreshes fall on the interval boundaries rather
    than ``revoke`` seconds after the first request; a clock stepped back takes the earlier
    interval's seed again."""

    def __init__(self, secret: bytes, revoke: int = 1 << KEY_REVOKE) -> None:
        if len(secret) < SEED_SECRET_SIZE:
            raise ValueError(f"a shared seed needs a secret of {SEED_SECRET_SIZE} octets")
        self.secret = bytes(secret)
        self._interval: int | None = None
        super().__init__(revoke)

    def _draw(self) -> int:
        interval = self._interval or 0
        digest = hashlib.sha256(self.secret + interval.to_bytes(8, "big")).digest()
        return next((word for word in struct.unpack("!8I", digest) if word), 1)

    def current(self, now: int) -> int:
        """The seed of the interval holding ``now``."""
        interval = max(int(now), 0) // self.revoke
        if interval != self._interval:
            if self._interval is not None:
                self.generation += 1
            self._interval = interval
            self._seed = self._draw()
            self.valid_from = interval * self.revoke
            self.valid_until = self.valid_from + self.revoke
        return self._seed
