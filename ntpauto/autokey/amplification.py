"""The amplification limit: a reply to a source that has not completed a normal exchange is
never larger than its request.

*Completed a normal exchange* means the request proves its source received our previous
reply: its origin timestamp echoes the transmit timestamp of one of the last few replies we
sent to that address.  Every client does this: RFC 5905 peer_xmit() copies the last reply's
transmit timestamp into the next request's origin, and the reference captures
(``vectors/pcap/*``) show ntpd's Autokey client doing so from its second request on; ours
(``Engine._transmit``) does the same.  A source that spoofs its address never sees our
replies, so it cannot echo them: until it does, a response larger than the request (a CERT,
COOK, SIGN, AUTO, LEAP or identity response answering a short request) is replaced by the
empty response to the same request (8 octets, R set, no value), which is never larger than
the request and still carries a MAC the client verifies (cookie 0), so the client takes its
timestamps and echoes them in its next request, which then gets the full response.

ASSOC is the exception: its response names the server, which is longer than the client's
name whenever the operator chose so, and the ASSOC group gate of a ``host@group`` client
(interop.md 5.1, ours and the reference's alike) drops an ASSOC response without a name
before it looks at the timestamps, so an empty ASSOC response would leave the client asking
forever.  An ASSOC request is sent only before the cookie (COOK) is known, when the client
verifies replies without fields under cookie 0 (interop.md 3.2): the cut ASSOC answer
is the bare header under that key, which any client accepts for its timestamps.

The table of what we sent is capped, like the restrict MRU: sources that have echoed at
least once (``_known``) and sources that never have (``_fresh``, where a spoofed flood lands)
are separate least-recently-used tables, so a flood of one-shot sources evicts only other
one-shot sources.  An evicted source costs its client one empty response, never the dance.
The server's first stage, which answers requests without fields bytes to bytes, stores the
header of its reply in :attr:`ExchangeTable.recent` instead (one dict store, cleared when
it holds :data:`RECENT_CAPACITY` sources), so that a field request following time requests
is answered in full.

Sans-I/O: addresses and octets in, octets out.
"""

from __future__ import annotations

from collections import OrderedDict

from ntpauto.auth.autokey import mac, server_reply_key
from ntpauto.autokey.fields import ASSOC, Field

__all__ = ["DEFAULT_CAPACITY", "RECENT_CAPACITY", "WINDOW", "ExchangeTable", "cut_reply",
           "empty_reply"]

DEFAULT_CAPACITY = 8192
"""Sources per table (two tables: known and fresh)."""
RECENT_CAPACITY = 8192
"""Sources in :attr:`ExchangeTable.recent`; its writer clears it when full."""
WINDOW = 4
"""Transmit timestamps remembered per source (a lost reply or two still leaves a match)."""
_STAMP = 8


class ExchangeTable:
    """Per source address, the transmit timestamps of our last :data:`WINDOW` replies."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the exchange table must hold at least one source")
        self.capacity = capacity
        self._known: OrderedDict[str, bytes] = OrderedDict()
        self._fresh: OrderedDict[str, bytes] = OrderedDict()
        self.recent: dict[str, bytes] = {}
        """Per source, the header of the last reply the server's first stage sent it (its
        transmit timestamp is what the source echoes): written there directly, cleared by
        the writer when it holds :data:`RECENT_CAPACITY` sources."""

    def __len__(self) -> int:
        return len(self._known) + len(self._fresh)

    def sent(self, host: str, transmit: bytes) -> None:
        """Remember that a reply with the 8-octet ``transmit`` timestamp went to ``host``."""
        table = self._known if host in self._known else self._fresh
        old = table.pop(host, b"")
        if len(table) >= self.capacity:
            table.popitem(last=False)
        table[host] = (old + transmit)[-WINDOW * _STAMP:]

    def echoed(self, host: str, origin: bytes) -> bool:
        """True when ``origin`` (a request's 8-octet origin timestamp) is the transmit
        timestamp of a recent reply to ``host``: the source completed a normal exchange."""
        if origin == bytes(_STAMP):
            return False
        last = self.recent.get(host)
        if last is not None and last[40:48] == origin:
            stamps = self._fresh.pop(host, None)
            if stamps is None:
                stamps = self._known.pop(host, b"")
            if len(self._known) >= self.capacity:
                self._known.popitem(last=False)
            self._known[host] = stamps
            return True
        for table in (self._known, self._fresh):
            stamps = table.get(host)
            if stamps is None:
                continue
            if not any(stamps[i:i + _STAMP] == origin for i in range(0, len(stamps), _STAMP)):
                return False
            if table is self._fresh:
                del self._fresh[host]
                if len(self._known) >= self.capacity:
                    self._known.popitem(last=False)
                self._known[host] = stamps
            else:
                self._known.move_to_end(host)
            return True
        return False


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
