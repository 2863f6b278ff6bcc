"""Access restrictions (``restrict``) and the per-source rate limiter (``limited``, ``discard``).

reference: ntpd's restrict list (the most specific matching address/mask wins over
``default``) and its MRU list, which scores each source's packet rate.  The MRU table here
has a hard cap with least-recently-seen eviction, so a flood of distinct sources cannot
grow memory without bound.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable

from attrs import frozen

from ntpauto.auth.autokey import address_octets

try:
    from ntpauto import _batch
except ImportError:  # not built: the Python table serves
    _batch = None  # type: ignore[assignment]

RESTRICT_FLAGS = frozenset({
    "ignore", "noquery", "nomodify", "nopeer", "noserve", "limited", "kod", "notrust",
    "notrap", "lowpriotrap", "nomrulist", "ntpport", "version",
})


@frozen
class RestrictRule:
    """One ``restrict`` line as a network and its flags."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None: default
    flags: frozenset[str]
    ipv6: bool = False


SERVING_FLAGS = frozenset({"ignore", "noserve", "notrust", "limited"})
"""The restrict flags that bear on answering a client request (the others do not)."""


class RestrictList:
    """Looks up the flags that apply to a source address (longest prefix wins)."""

    def __init__(self, rules: Iterable[RestrictRule] = ()) -> None:
        self._default4: frozenset[str] = frozenset()
        self._default6: frozenset[str] = frozenset()
        self._networks: list[RestrictRule] = []
        for rule in rules:
            if rule.network is None:
                # ntpd: `restrict default` covers both families, `restrict -6 default` IPv6.
                self._default6 = rule.flags
                if not rule.ipv6:
                    self._default4 = rule.flags
            else:
                self._networks.append(rule)
        self._networks.sort(key=lambda r: r.network.prefixlen, reverse=True)
        self._cache: dict[str, frozenset[str]] = {}
        self.cached = self._cache.get
        """The flags of a source address looked up before (None: :meth:`flags_for`)."""

    @classmethod
    def from_config(cls, restrictions: Iterable) -> RestrictList:
        """Build from ``config.RestrictConfig`` objects (address None means default)."""
        rules = []
        for r in restrictions:
            if r.address is None:
                rules.append(RestrictRule(None, frozenset(r.flags), r.ipv6))
                continue
            address = ipaddress.ip_address(r.address)
            prefix = address.max_prefixlen
            if r.mask:
                prefix = bin(int(ipaddress.ip_address(r.mask))).count("1")
            network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
            rules.append(RestrictRule(network, frozenset(r.flags), network.version == 6))
        return cls(rules)

    def rules(self) -> tuple[frozenset[str], frozenset[str],
                             list[tuple[bytes, int, frozenset[str]]]]:
        """The list as :meth:`flags_for` applies it: the IPv4 and IPv6 defaults' flags and
        the rules with an address, (network octets, prefix length, flags), in the order
        they are tried (longest prefix first): what the batched server path
        (:mod:`ntpauto.batch`) looks sources up in."""
        return self._default4, self._default6, [
            (rule.network.network_address.packed, rule.network.prefixlen, rule.flags)
            for rule in self._networks]

    def flags_for(self, host: str) -> frozenset[str]:
        """The restriction flags for a source address string."""
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return frozenset({"ignore"})
        flags = self._default6 if address.version == 6 else self._default4
        for rule in self._networks:
            if address.version == rule.network.version and address in rule.network:
                flags = rule.flags
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[host] = flags
        return flags


def address_key(host: str) -> bytes:
    """The rate limiter's key of a source address: its 4 or 16 network-order octets
    (:func:`~ntpauto.auth.autokey.address_octets`), as the batched path reads them from the
    socket (any other name: 16 octets of its digest)."""
    try:
        return address_octets(host)
    except ValueError:
        return hashlib.md5(host.encode("utf-8", "replace"), usedforsecurity=False).digest()


PASS = 0
"""A :meth:`RateLimiter.check` verdict: within the rate."""
LIMITED = 1
"""Over the rate; a kiss was already allowed within the average interval: drop silently."""
KOD = 2
"""Over the rate, and the source may get a RATE kiss (with ``restrict ... kod``)."""


class RateLimiter:
    """ntpd's ``discard average A minimum M`` rule: a leaky bucket per source, in a bounded
    MRU table.

    Each packet adds ``2**average`` seconds (the headway) to the source's bucket, which
    drains at one second per second; a packet is limited when it follows the previous one by
    less than ``minimum`` seconds or when the bucket would exceed eight packets' worth (so an
    ``iburst`` of eight packets two seconds apart passes, a steady flood does not).

    KoDs are rate-limited as ntpd 4.2.8 does (ntp_monitor.c, ntp_monitor()): a limited packet
    finding the bucket below its limit may be kissed and fills the bucket to the limit plus
    one headway; limited packets finding it at or above the limit are dropped without a
    kiss and leave it alone.  So a source gets at most one kiss per ``2**average`` seconds
    however fast it sends, and must then keep quiet for two headways to be served again.
    """

    def __init__(self, average: int = 3, minimum: int = 1, capacity: int = 10000, *,
                 native: bool | None = None) -> None:
        self.head = float(2**average)
        self.limit = 8 * self.head
        self.minimum = float(minimum)
        self.capacity = capacity
        self._table: OrderedDict[str, list[float]] = OrderedDict()
        if native is None:
            native = _batch is not None
        self.native = _batch.Limiter(self.head, self.limit, self.minimum, capacity) \
            if native and _batch is not None else None
        """The table in C (:mod:`ntpauto._batch`, where it is built; ``native=False``: the
        Python one), which the batched server path (:mod:`ntpauto.batch`) checks the
        requests it answers against, so that a source has one bucket whichever path answers
        it."""

    def __len__(self) -> int:
        return len(self.native) if self.native is not None else len(self._table)

    def check(self, host: str, now: float) -> int:
        """Record a packet from ``host``: :data:`PASS` (0) within the rate, else
        :data:`KOD` (a kiss may be sent) or :data:`LIMITED` (one was, within the average
        interval)."""
        if self.native is not None:
            return self.native.check(address_key(host), now)
        entry = self._table.get(host)
        if entry is None:
            if len(self._table) >= self.capacity:
                self._table.popitem(last=False)
            self._table[host] = [now, self.head]  # [last seen, bucket level]
            return PASS
        self._table.move_to_end(host)
        interval = now - entry[0]
        entry[0] = now
        level = max(0.0, entry[1] - interval)
        if interval >= self.minimum and level + self.head <= self.limit:
            entry[1] = level + self.head
            return PASS
        if level < self.limit:
            entry[1] = self.limit + self.head
            return KOD
        entry[1] = level
        return LIMITED
