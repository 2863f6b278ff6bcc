"""Shared NTS test material: session keys, a server with its cookie keys, a keyed client
session, and request/reply headers."""

from __future__ import annotations

from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
from ntpauto.nts.cookies import CookieKeys
from ntpauto.nts.records import KeResponse
from ntpauto.nts.serving import NtsServer
from ntpauto.nts.session import NtsSession
from ntpauto.wire.packet import KISS_NTSN, MODE_CLIENT, MODE_SERVER, Header

NOW = 1_800_000_000.0
KEYS = SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(range(32)), bytes(range(32, 64)))
SECRET = bytes(range(200, 232))


def server(secret: bytes = SECRET, now: float = NOW) -> NtsServer:
    return NtsServer(CookieKeys(secret), lambda: now)


def keyed_session(nts: NtsServer, keys: SessionKeys = KEYS, count: int = 8,
                  now: float = NOW) -> NtsSession:
    """A client session as a successful NTS-KE exchange with ``nts``'s server leaves it."""
    session = NtsSession("ntp.example.org", 4460)
    cookies = tuple(nts.cookie_keys.seal(keys, now) for _ in range(count))
    session.keyed(KeResponse(keys.aead, cookies), keys, 0.0)
    return session


def request_header(transmit: int = 0x1234_5678_9ABC_DEF0) -> bytes:
    return Header(0, 4, MODE_CLIENT, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0, transmit).encode()


def reply_header(origin: int = 0x1234_5678_9ABC_DEF0, stratum: int = 2,
                 refid: bytes = b"\x7f\0\0\1") -> bytes:
    return Header(0, 4, MODE_SERVER, stratum, 6, -20, 0, 0, refid, 1 << 32, origin,
                  2 << 32, 3 << 32).encode()


def nak_header(origin: int = 0x1234_5678_9ABC_DEF0) -> bytes:
    return Header(3, 4, MODE_SERVER, 0, 6, -20, 0, 0, KISS_NTSN, 0, origin, 2 << 32,
                  2 << 32).encode()
