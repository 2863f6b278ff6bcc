"""Session keys seen from the wire: which cookie each packet's MAC uses, whether it verifies,
and whether key IDs follow their hash chains (docs/interop.md 3 and 4).  Sans-I/O;
:class:`ntpauto.trace.analysis.Tracer` drives it.

* A packet with extension fields, and every broadcast, uses cookie 0.
* Client/server without fields: 0 before the client received a COOK response, afterwards the
  server cookie, known from the server seed (``--seed``) or decrypted from the COOK
  response with the client's host key.
* Symmetric without fields: 0 before COOK, afterwards the XOR of both peers' cookies (both
  COOK responses decrypted with the peers' host keys).
* Chains: each key ID of a sender (client, symmetric peer, broadcaster) hashes forward, with
  the cookie its list was made with, to the previous one or to the final key of its signed
  AUTO values; symmetric and broadcast packets run the receiver's autokey test
  (:func:`ntpauto.auth.autokey.autokey_test`).  A server reply must echo the request's key ID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from attrs import define

from ntpauto.auth.autokey import (
    AUTOKEY_DIGESTS,
    NTP_MAXKEY,
    NTP_MAXSESSION,
    autokey_test,
    decrement_seq,
    next_keyid,
    verify_packet,
)
from ntpauto.auth.digest import DIGEST_SIZES
from ntpauto.autokey.cookie import server_cookie
from ntpauto.autokey.values import AutoValue, decrypt_cookie, modulus_octets
from ntpauto.events import AutokeyError
from ntpauto.trace.report import Check, PacketReport, Status
from ntpauto.wire.packet import (
    MODE_ACTIVE,
    MODE_BROADCAST,
    MODE_CLIENT,
    MODE_PASSIVE,
    MODE_SERVER,
    Packet,
)

__all__ = ["MAC_DIGESTS", "MAX_WALK", "SessionKeys"]

MAC_DIGESTS = {DIGEST_SIZES[name]: name for name in AUTOKEY_DIGESTS}
"""Session-key digest by MAC digest length."""
MAX_WALK = NTP_MAXSESSION
"""Hashes tried when following a key ID back along its list (the longest key list)."""
_SYMMETRIC = (MODE_ACTIVE, MODE_PASSIVE)


@define
class _Seen:
    keyid: int
    index: int


@define
class _Auto:
    final: int
    seq: int
    index: int


class SessionKeys:
    """Cookies, MACs and key-ID chains of one capture.

    ``seed``: the server seed (server cookies); ``host_keys``: RSA host private keys (COOK
    responses to them are decrypted)."""

    def __init__(self, seed: int | None = None, host_keys: Iterable[Any] = ()) -> None:
        self.seed = seed
        self.host_keys = tuple(host_keys)
        self._last: dict[tuple[str, str], _Seen] = {}
        self._auto: dict[tuple[str, str | None], _Auto] = {}
        self._requests: dict[tuple[str, str], _Seen] = {}
        self._cooked: set[tuple[str, str]] = set()
        self._cookies: dict[tuple[str, str], int] = {}

    # What the extension fields teach ---------------------------------------------------

    def cook_response(self, report: PacketReport, value: bytes) -> int | None:
        """A COOK response from ``report.src`` to ``report.dst``: the receiver's lists now
        use the new cookie.  Returns the cookie when a host key decrypts it."""
        self._cooked.add((report.dst, report.src))
        for key in self.host_keys:
            if modulus_octets(key) != len(value):
                continue
            try:
                cookie = decrypt_cookie(value, key)
            except AutokeyError:
                continue
            self._cookies[(report.dst, report.src)] = cookie
            return cookie
        return None

    def auto_values(self, report: PacketReport, auto: AutoValue) -> Callable[[bool], None]:
        """AUTO values from ``report.src``: for its list towards this peer (symmetric) or its
        broadcast list (broadcast and server packets).  Used at once, while the signature
        may still be pending; the returned callback drops them if it fails."""
        key = (report.src, report.dst if report.mode in _SYMMETRIC else None)
        entry = _Auto(auto.keyid, auto.seq, report.index)
        self._auto[key] = entry

        def settle(ok: bool) -> None:
            if not ok and self._auto.get(key) is entry:
                del self._auto[key]

        return settle

    # Cookies ---------------------------------------------------------------------------

    def _server_cookie(self, client: str, server: str) -> tuple[int | None, str]:
        learned = self._cookies.get((client, server))
        if learned is not None:
            return learned, "server cookie from the COOK response"
        if self.seed is not None:
            return server_cookie(client, server, self.seed), f"server cookie, seed {self.seed}"
        return None, "server cookie unknown (give --seed, or the client's host key)"

    def cookie(self, src: str, dst: str, mode: int | None) -> tuple[int | None, str]:
        """The cookie of ``src``'s session keys towards ``dst`` for packets without fields
        (``None`` when not computable) and how it was found."""
        if mode == MODE_BROADCAST:
            return 0, "broadcast"
        if mode == MODE_SERVER:
            return self._server_cookie(dst, src)
        if mode not in (MODE_CLIENT, *_SYMMETRIC):
            return None, f"mode {mode}"
        if (src, dst) not in self._cooked:
            return 0, "before COOK"
        if mode == MODE_CLIENT:
            return self._server_cookie(src, dst)
        mine, theirs = self._cookies.get((dst, src)), self._cookies.get((src, dst))
        if mine is None or theirs is None:
            return None, "symmetric cookie unknown (give both peers' host keys)"
        return mine ^ theirs, "symmetric cookie"

    # Checks ----------------------------------------------------------------------------

    def check_mac(self, report: PacketReport, packet: Packet) -> Check:
        """The Autokey MAC of ``packet``."""
        if packet.keyid is None:
            return Check(Status.ABSENT, "no MAC")
        if packet.is_crypto_nak:
            return Check(Status.NOT_CHECKED, "crypto-NAK")
        if packet.keyid <= NTP_MAXKEY:
            return Check(Status.NOT_COMPUTABLE, f"symmetric key {packet.keyid}")
        digest = MAC_DIGESTS.get(len(packet.digest))
        if digest is None:
            return Check(Status.FAILED, f"digest of {len(packet.digest)} octets")
        cookie: int | None
        if packet.fields:
            cookie, why = 0, "extension fields"
        else:
            cookie, why = self.cookie(report.src, report.dst, report.mode)
        if cookie is None:
            return Check(Status.NOT_COMPUTABLE, why)
        ok = verify_packet(packet, report.src, report.dst, cookie, digest)
        text = f"{digest.upper()}, cookie {cookie:08x} ({why})"
        return Check(Status.OK if ok else Status.FAILED, text if ok else f"wrong: {text}")

    def check_keyid(self, report: PacketReport, packet: Packet) -> None:
        """Set ``report.chain``: the server echo, or the key-ID chain of the sender."""
        keyid, mode = packet.keyid, report.mode
        if keyid is None or keyid <= NTP_MAXKEY or packet.is_crypto_nak:
            return
        if mode == MODE_SERVER:
            report.chain_kind = "echo"
            request = self._requests.get((report.dst, report.src))
            if request is not None and request.keyid == keyid:
                report.chain = Check(Status.OK,
                                     f"echoes the key ID of request packet {request.index}")
            else:
                report.chain = Check(Status.NOT_CHECKED, "no request with this key ID")
            return
        if mode not in (MODE_CLIENT, MODE_BROADCAST, *_SYMMETRIC):
            return
        direction = (report.src, report.dst)
        previous = self._last.get(direction)
        self._last[direction] = _Seen(keyid, report.index)
        if mode == MODE_CLIENT:
            self._requests[direction] = _Seen(keyid, report.index)
        auto = None if mode == MODE_CLIENT else self._auto.get(
            (report.src, report.dst if mode in _SYMMETRIC else None))
        if auto is not None:
            auto.seq = decrement_seq(auto.seq)
        cookie, why = self.cookie(report.src, report.dst, mode)
        if cookie is None:
            report.chain = Check(Status.NOT_COMPUTABLE, why)
            return
        digest = MAC_DIGESTS.get(len(packet.digest), "md5")
        report.chain = self._chain(report, keyid, cookie, digest, previous, auto)

    def _chain(self, report: PacketReport, keyid: int, cookie: int, digest: str,
               previous: _Seen | None, auto: _Auto | None) -> Check:
        src, dst = report.src, report.dst
        suffix = f"(cookie {cookie:08x})"
        if auto is not None:
            # The receiver's autokey test: back to the last key ID or the AUTO key, at most
            # seq steps.
            result = autokey_test(src, dst, keyid, cookie,
                                  pkeyid=previous.keyid if previous else auto.final,
                                  final=auto.final, seq=auto.seq, digest=digest)
            if result.ok:
                auto.seq = result.seq
                anchor = self._anchor(src, dst, keyid, cookie, digest, result.hashes,
                                      previous, auto)
                return Check(Status.OK, f"H^{result.hashes} = {anchor} {suffix}")
        else:
            t = keyid
            for i in range(1, MAX_WALK + 1):
                t = next_keyid(src, dst, t, cookie, digest)
                if previous is not None and t == previous.keyid:
                    return Check(Status.OK, f"H^{i} = key ID of packet {previous.index} "
                                            f"{suffix}")
        if report.mode == MODE_CLIENT:
            return Check(Status.NOT_CHECKED, "new key list")
        if any(f.signature.status in (Status.OK, Status.PENDING) for f in report.fields):
            return Check(Status.NOT_CHECKED, "new key list, accepted on its signed field")
        if auto is None:
            return Check(Status.NOT_CHECKED, "no link and no AUTO values yet")
        last = f"the key ID of packet {previous.index}" if previous else "a previous key ID"
        return Check(Status.FAILED, f"does not hash to {last} or the AUTO key "
                                    f"{auto.final:08x} of packet {auto.index} within "
                                    f"{auto.seq} steps {suffix}")

    @staticmethod
    def _anchor(src: str, dst: str, keyid: int, cookie: int, digest: str, hashes: int,
                previous: _Seen | None, auto: _Auto) -> str:
        t = keyid
        for _ in range(hashes):
            t = next_keyid(src, dst, t, cookie, digest)
        if previous is not None and t == previous.keyid:
            return f"key ID of packet {previous.index}"
        return f"signed AUTO key of packet {auto.index}"
