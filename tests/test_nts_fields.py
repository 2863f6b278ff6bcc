"""NTS extension fields, the server's answer and the client session's check, without an
engine: RFC 8915 sections 5.3-5.7 and 9.1 (ntpauto.nts.fields, .serving, .session)."""

from __future__ import annotations

import struct

import pytest

from ntpauto.nts import fields as f
from ntpauto.nts.aead import AEAD_AES_SIV_CMAC_256, SessionKeys
from ntpauto.verdict import Check
from ntpauto.wire.packet import MAX_FIELDS, NTS_MAX_FIELDS, MalformedPacket, parse
from tests.nts_helpers import (
    KEYS,
    keyed_session,
    nak_header,
    reply_header,
    request_header,
    server,
)


def types(data: bytes) -> list[tuple[int, int]]:
    return [(fld.word >> 16, len(fld.data)) for fld in parse(data).fields]


def answer(nts, data: bytes):
    return nts.answer(parse(data), reply_header(), nak_header)


def test_field_framing() -> None:
    """RFC 7822: length counts the header, a multiple of 4, at least 16 octets."""
    assert f.field(f.UNIQUE_IDENTIFIER, b"ab") == bytes.fromhex("0104 0010") + b"ab" + bytes(10)
    assert len(f.field(f.COOKIE, bytes(104))) == 108
    auth = f.authenticator(bytes(16), bytes(16))
    assert auth[:8] == bytes.fromhex("0404 0028 0010 0010") and len(auth) == 40
    short = f.authenticator(b"\x01\x02", bytes(17))
    assert struct.unpack_from("!HHHH", short) == (0x0404, 44, 2, 17)  # padded nonce to 16


def test_first_request_after_key_exchange() -> None:
    """A full jar: the unique identifier, one cookie, no placeholder, the authenticator."""
    session = keyed_session(server())
    data = session.request(request_header())
    assert types(data) == [(f.UNIQUE_IDENTIFIER, 36), (f.COOKIE, 108), (f.AUTHENTICATOR, 40)]
    assert parse(data).nts and len(session.cookies) == 7


def test_requests_ask_for_what_the_jar_lacks() -> None:
    session = keyed_session(server(), count=3)
    data = session.request(request_header())
    assert types(data).count((f.COOKIE_PLACEHOLDER, 108)) == 5
    assert len(data) == 48 + 36 + 108 * 6 + 40 and len(parse(data).fields) == 8


def test_served_reply_is_as_long_as_the_request_with_the_cookies_asked_for() -> None:
    nts = server()
    session = keyed_session(nts, count=3)
    request = session.request(request_header())
    reply, outcome = answer(nts, request)
    assert outcome == "nts_served" and len(reply) == len(request)
    assert types(reply) == [(f.UNIQUE_IDENTIFIER, 36), (f.AUTHENTICATOR, len(request) - 84)]
    verdict = session.check(parse(reply))
    assert verdict.verified and verdict.check is Check.NTS
    assert len(session.cookies) == 8


def test_reply_is_used_once() -> None:
    """A second copy of the authentic reply (a replay) fails: the identifier is used up."""
    nts = server()
    session = keyed_session(nts)
    reply, _ = answer(nts, session.request(request_header()))
    assert session.check(parse(reply)).verified
    assert session.check(parse(reply)).failed


def test_reply_to_another_request_fails() -> None:
    nts = server()
    session = keyed_session(nts)
    old, _ = answer(nts, session.request(request_header(1)))
    session.request(request_header(2))
    verdict = session.check(parse(old))
    assert verdict.failed and "unique identifier" in verdict.reason


@pytest.mark.parametrize("position", [1, 47, 60, 100, -1])
def test_tampered_reply_fails(position: int) -> None:
    """The header and every field are covered (position 60 is inside the echoed unique
    identifier, -1 the authenticator's last octet)."""
    nts = server()
    session = keyed_session(nts)
    reply = bytearray(answer(nts, session.request(request_header()))[0])
    reply[position] ^= 0x01
    try:
        pkt = parse(bytes(reply))
    except MalformedPacket:
        return
    assert session.check(pkt).failed


def test_reply_under_other_keys_fails() -> None:
    nts = server()
    session = keyed_session(nts)
    other = keyed_session(nts, keys=SessionKeys(AEAD_AES_SIV_CMAC_256, bytes(32), bytes(32)))
    request = session.request(request_header())
    reply, _ = answer(nts, other.request(request_header()))
    # the reply echoes other's identifier: make it ours to reach the authenticator
    reply = reply[:52] + request[52:84] + reply[84:]
    verdict = session.check(parse(reply))
    assert verdict.failed and "authenticator" in verdict.reason


def test_plain_reply_fails_nts_stripping() -> None:
    """RFC 8915 section 8.7: a reply without NTS fields is never taken."""
    session = keyed_session(server())
    session.request(request_header())
    verdict = session.check(parse(reply_header()))
    assert verdict.failed and "no NTS fields" in verdict.reason


def test_nak_for_an_unknown_cookie() -> None:
    """Cookies of another server's secret: NTS NAK, echoing the identifier, no longer than
    the request; the session sees it as a NAK, not as a failure."""
    session = keyed_session(server(secret=bytes(32)))
    request = session.request(request_header())
    reply, outcome = answer(server(), request)
    assert outcome == "nts_nak_sent" and len(reply) == 48 + 36 < len(request)
    pkt = parse(reply)
    assert pkt.header.stratum == 0 and pkt.header.refid == b"NTSN"
    verdict = session.check(pkt)
    assert not verdict.verified and not verdict.failed and verdict.reason == "NTS NAK"
    session.nak()
    assert session.rekey_due(0.0).reason.startswith("NTS NAK")


def test_nak_for_a_bad_authenticator() -> None:
    nts = server()
    session = keyed_session(nts)
    request = bytearray(session.request(request_header()))
    request[-1] ^= 1
    assert answer(nts, bytes(request))[1] == "nts_nak_sent"


def test_nak_for_an_expired_cookie() -> None:
    nts = server()
    session = keyed_session(nts, now=1_000_000_000.0)
    assert answer(nts, session.request(request_header()))[1] == "nts_nak_sent"


def fields_of(*parts: bytes) -> bytes:
    return request_header() + b"".join(parts)


UID = f.field(f.UNIQUE_IDENTIFIER, bytes(32))
COOKIE = f.field(f.COOKIE, bytes(104))
AUTH = f.authenticator(bytes(16), bytes(16))


@pytest.mark.parametrize("data", [
    fields_of(UID, AUTH),
    fields_of(UID, UID, COOKIE, AUTH),
    fields_of(UID, COOKIE, COOKIE, AUTH),
    fields_of(f.field(f.UNIQUE_IDENTIFIER, bytes(28)), COOKIE, AUTH),
    fields_of(UID, COOKIE),
    fields_of(UID, AUTH, COOKIE),
    fields_of(UID, COOKIE, bytes.fromhex("0404 0028 0000 0010") + bytes(32)),
    fields_of(UID, COOKIE, bytes.fromhex("0404 0028 0010 000f") + bytes(32)),
    fields_of(UID, COOKIE, bytes.fromhex("0404 0028 0010 0020") + bytes(32)),
    fields_of(UID, COOKIE, bytes.fromhex("0404 001c 0004 0010") + bytes(20)),
    fields_of(UID, COOKIE, f.field(0x7777, bytes(12)), f.field(0x0404, bytes(28))),
], ids=["no-cookie", "two-uids", "two-cookies", "short-uid", "no-auth", "auth-not-last",
        "empty-nonce", "short-tag", "ciphertext-past-end", "unpadded-nonce", "short-last"])
def test_malformed_requests_get_no_reply(data: bytes) -> None:
    assert answer(server(), data) == (None, "nts_badfield")


def test_a_last_field_under_28_octets_is_not_a_field() -> None:
    """RFC 7822: 24 octets or fewer at the end are a MAC, which NTS packets do not have: the
    packet is not NTS-framed (and with more than two fields before it, not framed at all)."""
    pkt = parse(fields_of(UID, COOKIE, bytes.fromhex("0404 0018") + bytes(20)))
    assert not pkt.nts and pkt.keyid == 0x04040018
    with pytest.raises(MalformedPacket) as info:
        parse(fields_of(UID, COOKIE, AUTH, bytes.fromhex("0404 0018") + bytes(20)))
    assert info.value.reason == "toomanyfields"


def test_unrelated_placeholders_do_not_count() -> None:
    """Placeholders of another length than the cookie ask for nothing (section 5.5)."""
    nts = server()
    session = keyed_session(nts)
    request = session.request(request_header())
    odd = request[:-40] + f.field(f.COOKIE_PLACEHOLDER, bytes(64)) * 3
    sealed = f.seal(odd, KEYS.c2s, bytes(16))
    reply, outcome = answer(nts, sealed)
    assert outcome == "nts_served"
    plaintext = f.response_fields(parse(reply)).auth.open(KEYS.s2c, reply)
    assert len(f.inner_fields(plaintext)) == 1


def test_replies_never_exceed_requests() -> None:
    """Section 8.4: a request that asks for more cookies than fit (placeholders shorter
    than our cookies) gets fewer, never a longer reply."""
    nts = server()
    small = SessionKeys(AEAD_AES_SIV_CMAC_256, KEYS.c2s, KEYS.s2c)
    cookie = nts.cookie_keys.seal(small, 1_800_000_000.0)
    data = fields_of(UID, f.field(f.COOKIE, cookie),
                     f.field(f.COOKIE_PLACEHOLDER, bytes(8)) * 7)
    # the placeholders above are 12 octets: they do not count; a shorter cookie field does
    data = f.seal(data, KEYS.c2s, bytes(16))
    reply, outcome = answer(nts, data)
    assert len(reply) <= len(data) and outcome == "nts_served"
    tight = fields_of(UID, f.field(f.COOKIE, cookie))
    tight = f.seal(tight, KEYS.c2s, bytes(1), min_length=28)
    reply, outcome = answer(nts, tight)
    assert len(reply) == len(tight)


def test_unlinkable_requests() -> None:
    """Section 9.1: over many requests no cookie and no unique identifier is sent twice,
    and no nonce repeats."""
    nts = server()
    session = keyed_session(nts)
    seen_cookies, seen_ids, seen_nonces = [], [], []
    for i in range(40):
        request = session.request(request_header(i + 1))
        pkt = parse(request)
        body = {fld.word >> 16: fld.data[4:] for fld in pkt.fields}
        seen_cookies.append(body[f.COOKIE])
        seen_ids.append(body[f.UNIQUE_IDENTIFIER])
        seen_nonces.append(body[f.AUTHENTICATOR][4:20])
        reply, _ = answer(nts, request)
        assert session.check(parse(reply)).verified
    for seen in (seen_cookies, seen_ids, seen_nonces):
        assert len(set(seen)) == len(seen) == 40
    assert len(session.cookies) == 8


def test_empty_jar_and_refresh_are_due() -> None:
    session = keyed_session(server(), count=1)
    assert session.rekey_due(0.0) is None
    session.request(request_header())
    assert session.rekey_due(0.0).reason == "no cookie left"
    fresh = keyed_session(server())
    assert fresh.rekey_due(14 * 86400.0).reason == "the keys are due for refresh"


def test_parser_frames_nts_packets_with_their_own_cap() -> None:
    """Ten NTS fields parse (Autokey's cap is two); an eleventh, or a MAC, does not."""
    assert MAX_FIELDS == 2 and NTS_MAX_FIELDS == 10
    placeholder = f.field(f.COOKIE_PLACEHOLDER, bytes(104))
    ten = fields_of(UID, COOKIE, placeholder * 7, AUTH)
    assert len(parse(ten).fields) == 10 and parse(ten).nts
    with pytest.raises(MalformedPacket) as info:
        parse(fields_of(UID, COOKIE, placeholder * 8, AUTH))
    assert info.value.reason == "toomanyfields"
    with pytest.raises(MalformedPacket, match="before a MAC"):
        parse(fields_of(UID, COOKIE, AUTH) + bytes(20))
    # a cookie first (0x0204 is also Autokey's AUTO request) is NTS once the next field says
    assert parse(fields_of(COOKIE, UID, AUTH)).nts
    assert not parse(fields_of(COOKIE) + bytes(20)).nts
