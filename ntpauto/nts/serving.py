"""The server side of NTS for NTPv4 (RFC 8915 section 5.7), stateless and sans-I/O.

A request is answered when its fields are well formed (:func:`~ntpauto.nts.fields.request_fields`),
its cookie opens under one of our master keys and its authenticator verifies under the
cookie's client-to-server key.  The reply echoes the unique identifier in the clear and
carries, encrypted under the server-to-client key, one new cookie for the one spent plus one
per cookie placeholder (as long as the cookie) in the request, eight at most; it is padded to
the request's length and never longer: should new cookies not fit, fewer are sent
(section 8.4, amplification).

A cookie that does not open, or an authenticator that does not verify, is answered with an
NTS NAK (section 5.7): a kiss-o'-death ``NTSN`` that echoes the unique identifier and
carries nothing else, no time, and is no longer than the request.  Malformed NTS fields get
no reply at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ntpauto.nts import fields as f
from ntpauto.nts.aead import TAG_LENGTH, AeadError
from ntpauto.nts.cookies import CookieError, CookieKeys, cookie_length
from ntpauto.nts.records import MAX_COOKIES
from ntpauto.wire.packet import Packet

__all__ = ["NtsServer", "nts_server_for"]


class NtsServer:
    """Answers NTS-protected client requests with cookies of ``cookie_keys``; ``wall`` is
    the clock that numbers the master keys (Unix seconds, the same on every host that
    shares the secret)."""

    def __init__(self, cookie_keys: CookieKeys, wall: Callable[[], float]) -> None:
        self.cookie_keys = cookie_keys
        self._wall = wall

    def answer(self, pkt: Packet, reply: bytes, nak: Callable[[], bytes]
               ) -> tuple[bytes | None, str]:
        """The reply to ``pkt`` built on the 48-octet ``reply`` header (``nak()`` gives the
        header of an NTS NAK) and the name of the counter of what happened: ``nts_served``,
        ``nts_nak_sent`` (the reply is a NAK) or ``nts_badfield`` (no reply)."""
        try:
            request = f.request_fields(pkt)
        except f.NtsFieldError:
            return None, "nts_badfield"
        echo = f.field(f.UNIQUE_IDENTIFIER, request.unique_id)
        now = self._wall()
        try:
            keys = self.cookie_keys.open(request.cookie, now)
            plaintext = request.auth.open(keys.c2s, pkt.data)
            inner = f.inner_fields(plaintext)
        except (CookieError, AeadError, f.NtsFieldError):
            return nak() + echo, "nts_nak_sent"
        wanted = 1 + request.placeholders + sum(
            1 for kind, body in inner
            if kind == f.COOKIE_PLACEHOLDER and len(body) == len(request.cookie))
        head = reply + echo
        room = len(pkt.data) - len(head) - 8 - f.NONCE_LENGTH - TAG_LENGTH
        count = max(0, min(wanted, MAX_COOKIES, room // (4 + cookie_length(keys.aead))))
        plaintext = b"".join(f.field(f.COOKIE, self.cookie_keys.seal(keys, now))
                             for _ in range(count))
        data = f.seal(head, keys.s2c, os.urandom(f.NONCE_LENGTH), plaintext,
                      len(pkt.data) - len(head))
        return data, "nts_served" if count == min(wanted, MAX_COOKIES) else "nts_cookies_cut"



def nts_server_for(config: Any, wall: Callable[[], float]) -> NtsServer | None:
    """The NTS server of a configuration with ``ntsservercert`` (None without): cookies
    under the secret of ``ntsdumpdir`` (created there on first use), or under one drawn now
    when there is no such directory; master keys of ``ntsrotate`` seconds.  The TLS side
    (certificate and key) is the NTS-KE server's (:mod:`ntpauto.nts.ke_server`).
    :class:`~ntpauto.nts.cookies.CookieKeyFileError` names a secret file that is wrong."""
    if config.nts_server_cert is None:
        return None
    from ntpauto.nts.cookies import load_or_create_secret

    secret = load_or_create_secret(config.nts_dump_dir) if config.nts_dump_dir \
        else os.urandom(32)
    return NtsServer(CookieKeys(secret, config.nts_rotate), wall)
