"""Session keys, key lists, the autokey test and session-key MACs (ntpauto.auth.autokey)."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct

import pytest

import ntpauto.auth.autokey as ak
from ntpauto.auth.autokey import (
    NTP_MAXKEY,
    AutokeyResult,
    KeyList,
    autokey_test,
    decrement_seq,
    mac,
    next_keyid,
    packet_cookie,
    reply_keyid_matches,
    server_reply_key,
    session_key,
    sign_packet,
    verify_mac,
    verify_packet,
)
from ntpauto.wire.packet import Header, build, parse

A, B = "198.51.100.1", "198.51.100.2"


class SequenceRandom:
    """A RandomSource that returns preset values (then falls back to a seeded generator)."""

    def __init__(self, *values: int, seed: int = 1) -> None:
        self.values = list(values)
        self.fallback = random.Random(seed)

    def getrandbits(self, k: int) -> int:
        if self.values:
            return self.values.pop(0)
        return self.fallback.getrandbits(k)


def manual_key(src: str, dst: str, keyid: int, cookie: int, algo: str = "md5") -> bytes:
    block = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
             + struct.pack("!II", keyid, cookie))
    return hashlib.new(algo, block).digest()


def header(mode: int = 1) -> Header:
    return Header(0, 4, mode, 2, 3, -20, 0, 0, b"LOCL", 0, 0, 0, 0x1234_5678_9ABC_DEF0)


# Session keys ------------------------------------------------------------------------------

def test_session_key_ipv4_is_md5_of_16_octet_block() -> None:
    """IPv4: MD5(src(4) || dst(4) || keyid(4) || cookie(4)), all big-endian, full digest."""
    key = session_key(A, B, 0x12345678, 0x9ABCDEF0)
    assert len(key) == 16
    assert key == manual_key(A, B, 0x12345678, 0x9ABCDEF0)
    assert key != session_key(B, A, 0x12345678, 0x9ABCDEF0)


def test_session_key_ipv6_uses_16_octet_addresses() -> None:
    """IPv6: the input block is 40 octets (16 + 16 + 4 + 4)."""
    src, dst = "2001:db8::1", "2001:db8::2"
    assert session_key(src, dst, 70000, 5) == manual_key(src, dst, 70000, 5)


def test_session_key_sha1_digest() -> None:
    """The configured digest is used: SHA-1 gives a 20-octet key."""
    key = session_key(A, B, 70000, 1, "sha1")
    assert key == manual_key(A, B, 70000, 1, "sha1")
    assert len(key) == 20
    assert next_keyid(A, B, 70000, 1, "sha1") == int.from_bytes(key[:4], "big")


def test_next_keyid_known_answers_from_captures() -> None:
    """Chain links the reference produced (sym capture): cookie 0, then cookie 0x4B1B440E."""
    assert next_keyid("127.0.0.3", "127.0.0.1", 0xE217BFB3, 0) == 0x148F2ABA
    assert next_keyid("127.0.0.3", "127.0.0.1", 0x93C6C95D, 0x4B1B440E) == 0x96A2DB91


def test_session_key_rejects_mixed_families_and_unknown_digest() -> None:
    """An IPv4/IPv6 mix has no defined block; only MD5 and SHA-1 fit the MAC."""
    with pytest.raises(ValueError):
        session_key(A, "2001:db8::1", 70000, 0)
    with pytest.raises(ValueError):
        session_key(A, B, 70000, 0, "sha256")


def test_packet_cookie_is_zero_with_fields() -> None:
    """Packets carrying extension fields use cookie 0; others the association cookie."""
    assert packet_cookie(True, 0xDEADBEEF) == 0
    assert packet_cookie(False, 0xDEADBEEF) == 0xDEADBEEF


# Key lists ---------------------------------------------------------------------------------

def test_keylist_synchronized_has_100_chained_keys() -> None:
    """poll 8 s, automax 12: lifetime min(4096, 800) allows 100 entries; keys chain."""
    kl = KeyList.generate(A, B, 0x1111, now=4_000_000_000, poll=3, rng=SequenceRandom(0x70000))
    assert kl.keys[0] == 0x70000
    assert len(kl.keys) == 100 and kl.index == 99
    for a, b in zip(kl.keys, kl.keys[1:]):
        assert next_keyid(A, B, a, 0x1111) == b
    assert kl.final == next_keyid(A, B, kl.keys[-1], 0x1111)
    assert kl.index == 99
    assert kl.timestamp == 4_000_000_000


def test_keylist_unsynchronized_has_one_key() -> None:
    """now = 0 (unsynchronized): a single key per list, final = its successor."""
    kl = KeyList.generate(A, B, 0, now=0, poll=3, rng=SequenceRandom(0x80000))
    assert kl.keys == (0x80000,)
    assert kl.index == 0
    assert kl.final == next_keyid(A, B, 0x80000, 0)


@pytest.mark.parametrize(("poll", "automax", "entries"), [
    (6, 12, 65),   # lifetime 4096, 64 s per key: stops when lifetime goes negative
    (10, 12, 5),   # 4096 / 1024: 4096, 3072, 2048, 1024, 0 -> fifth entry drives it < 0
    (3, 8, 33),    # lifetime min(256, 800) = 256
    (4, 12, 100),  # min(4096, 1600) = 1600 = 100 * 16: exactly 100
])
def test_keylist_length_follows_lifetime(poll: int, automax: int, entries: int) -> None:
    """Entries are added until lifetime - (i+1)*mpoll < 0, at most 100."""
    kl = KeyList.generate(A, B, 7, now=1, poll=poll, automax=automax, rng=SequenceRandom(1 << 20))
    assert len(kl.keys) == entries
    assert kl.lifetime == min(1 << automax, 100 << poll)


def test_keylist_first_key_redrawn_until_above_65535_and_unused() -> None:
    """k0 must be > NTP_MAXKEY and not in the local key cache."""
    used = {0x123456}
    kl = KeyList.generate(A, B, 0, now=0, poll=3, in_use=used,
                          rng=SequenceRandom(5, NTP_MAXKEY, 0x123456, 0x654321))
    assert kl.keys == (0x654321,)


@pytest.mark.parametrize(("successors", "in_use", "keys", "final"), [
    # next <= 65535 ends the list
    ({0x20000: 0x30000, 0x30000: 100}, set(), (0x20000, 0x30000), 100),
    # next is already in the local key cache
    ({0x20000: 0x30000, 0x30000: 0x40000}, {0x40000}, (0x20000, 0x30000), 0x40000),
    # next repeats an entry of this very list (a cycle)
    ({0x20000: 0x30000, 0x30000: 0x40000, 0x40000: 0x30000}, set(),
     (0x20000, 0x30000, 0x40000), 0x30000),
])
def test_keylist_termination_rules(monkeypatch: pytest.MonkeyPatch, successors: dict[int, int],
                                   in_use: set[int], keys: tuple[int, ...], final: int) -> None:
    """Generation stops after the entry whose successor is small, cached or in the list."""
    monkeypatch.setattr(ak, "next_keyid", lambda s, d, k, c, g="md5": successors[k])
    kl = KeyList.generate(A, B, 0, now=1, poll=3, in_use=in_use, rng=SequenceRandom(0x20000))
    assert kl.keys == keys
    assert kl.final == final


def test_keylist_pop_gives_reverse_order_then_exhausts() -> None:
    """Keys are sent from the end of the list back to its start."""
    kl = KeyList.generate(A, B, 0, now=1, poll=3, automax=5, rng=SequenceRandom(0x90000))
    n = len(kl.keys)
    popped = [kl.pop() for _ in range(n)]
    assert popped == list(reversed(kl.keys))
    assert kl.exhausted and kl.remaining == 0
    with pytest.raises(IndexError):
        kl.pop()


def test_keylist_default_random_source_draws_large_ids() -> None:
    """Without an injected generator k0 comes from the system CSPRNG (> 65535)."""
    kl = KeyList.generate(A, B, 0, now=0, poll=3)
    assert kl.keys[0] > NTP_MAXKEY


def test_keylist_mac_key_uses_cookie_zero_with_fields() -> None:
    """The chain uses the list cookie, but a packet with fields is MACed with cookie 0."""
    kl = KeyList.generate(A, B, 0xABCDEF, now=1, poll=3, rng=SequenceRandom(0xA0000))
    k = kl.pop()
    assert kl.mac_key(k, has_fields=True) == session_key(A, B, k, 0)
    assert kl.mac_key(k, has_fields=False) == session_key(A, B, k, 0xABCDEF)


# Autokey test ------------------------------------------------------------------------------

def receiver_state(kl: KeyList) -> dict[str, int | None]:
    return {"pkeyid": kl.final, "final": kl.final, "seq": kl.index}


def test_autokey_test_accepts_each_key_in_turn_with_one_hash() -> None:
    """A receiver holding (final, N) accepts every key of the list in order, one hash each."""
    kl = KeyList.generate(A, B, 42, now=1, poll=3, rng=SequenceRandom(0xB0000))
    state = receiver_state(kl)
    for _ in range(5):
        keyid = kl.pop()
        state["seq"] = decrement_seq(state["seq"])  # type: ignore[arg-type]
        result = autokey_test(A, B, keyid, 42, **state)  # type: ignore[arg-type]
        assert result.ok and result.hashes == 1 and result.pkeyid == keyid
        state["pkeyid"], state["seq"] = result.pkeyid, result.seq


def test_autokey_test_walks_over_lost_packets() -> None:
    """Skipping two keys costs three hashes and reduces the sequence by two."""
    kl = KeyList.generate(A, B, 0, now=1, poll=3, rng=SequenceRandom(0xC0000))
    first = kl.pop()
    r1 = autokey_test(A, B, first, 0, pkeyid=kl.final, final=kl.final, seq=98)
    kl.pop()
    kl.pop()
    r2 = autokey_test(A, B, kl.pop(), 0, pkeyid=r1.pkeyid, final=kl.final, seq=r1.seq)
    assert r2 == AutokeyResult(True, kl.keys[kl.remaining], r1.seq - 2, 3)


def test_autokey_test_fails_when_sequence_exhausted() -> None:
    """A key further back than seq allows fails and asks to clear the AUTO bit."""
    kl = KeyList.generate(A, B, 0, now=1, poll=3, rng=SequenceRandom(0xD0000))
    far = kl.keys[90]  # H^9 = keys[99], H^10 = final
    result = autokey_test(A, B, far, 0, pkeyid=kl.final, final=kl.final, seq=3)
    assert not result.ok and result.clear_auto
    assert result.hashes == 5  # compared H^1..H^5 (i = 0..seq+1)
    assert result.pkeyid == kl.final and result.seq == 3
    ok = autokey_test(A, B, far, 0, pkeyid=kl.final, final=kl.final, seq=9)
    assert ok.ok and ok.hashes == 10 and ok.seq == 0
    # The reference also compares at i = seq + 1 and then stores seq - i = -1 (int32).
    edge = autokey_test(A, B, far, 0, pkeyid=kl.final, final=kl.final, seq=8)
    assert edge.ok and edge.hashes == 10 and edge.seq == -1


def test_autokey_test_without_auto_values_fails() -> None:
    """No AUTO values received yet: the packet fails without hashing."""
    result = autokey_test(A, B, 0x123456, 0, pkeyid=0, final=None, seq=0)
    assert result == AutokeyResult(False, 0, 0, 0)


def test_autokey_test_signed_field_skips_walk() -> None:
    """A packet whose extension field signature verified is accepted as the new pkeyid."""
    result = autokey_test(A, B, 0x777777, 0, pkeyid=1, final=2, seq=10, signed=True)
    assert result == AutokeyResult(True, 0x777777, 10, 0)


def test_autokey_test_bounds_hashes_for_forged_packets() -> None:
    """A random key ID against a huge announced sequence costs at most 101 hashes."""
    result = autokey_test(A, B, 0x31337, 0, pkeyid=0x1234567, final=0x7654321, seq=2**31 - 1)
    assert not result.ok and result.clear_auto
    assert result.hashes <= 101


def test_decrement_seq_stops_at_zero() -> None:
    """The per-packet decrement never goes below 0."""
    assert decrement_seq(5) == 4
    assert decrement_seq(0) == 0


def test_reply_keyid_matches() -> None:
    """Client mode only checks that the reply echoes the request's key ID."""
    assert reply_keyid_matches(0x123456, 0x123456)
    assert not reply_keyid_matches(0x123457, 0x123456)
    assert not reply_keyid_matches(None, 0x123456)


def test_server_reply_key_cookie_choice() -> None:
    """Reply key = session(server, client, K, 0 with a field else the server cookie)."""
    assert server_reply_key(A, B, 0x222222, 99, has_fields=True) == session_key(A, B, 0x222222, 0)
    assert server_reply_key(A, B, 0x222222, 99, has_fields=False) == session_key(
        A, B, 0x222222, 99)


# MACs --------------------------------------------------------------------------------------

def test_mac_is_keyid_then_digest_of_key_and_message() -> None:
    """MAC = key ID (4 octets) || MD5(session key || packet octets)."""
    key = session_key(A, B, 0x100000, 5)
    message = bytes(range(48))
    out = mac(key, 0x100000, message)
    assert out[:4] == b"\x00\x10\x00\x00"
    assert out[4:] == hashlib.md5(key + message).digest()
    assert verify_mac(key, message, out[4:])
    assert not verify_mac(key, message[:-1] + b"\x00", out[4:])
    assert not verify_mac(key, message, out[4:19])


def test_sign_and_verify_packet_without_fields_uses_cookie() -> None:
    """A 48-octet packet is MACed with the association cookie; a wrong cookie fails."""
    wire = sign_packet(header().encode(), A, B, 0x345678, 0xCAFE)
    assert len(wire) == 48 + 20
    packet = parse(wire)
    assert verify_packet(packet, A, B, 0xCAFE)
    assert not verify_packet(packet, A, B, 0xCAFF)
    assert not verify_packet(packet, B, A, 0xCAFE)


def test_sign_and_verify_packet_with_fields_uses_cookie_zero() -> None:
    """With an extension field the MAC key uses cookie 0 whatever the association cookie."""
    field = struct.pack("!II", 0x02040008, 1234)
    wire = sign_packet(build(header(), [field]), A, B, 0x345678, 0xCAFE)
    packet = parse(wire)
    assert packet.fields
    assert verify_packet(packet, A, B, 0xCAFE)
    assert verify_packet(packet, A, B, 0)
    key = session_key(A, B, 0x345678, 0)
    assert wire[-16:] == hashlib.md5(key + wire[:-20]).digest()


def test_verify_packet_refuses_symmetric_key_ids_and_missing_mac() -> None:
    """Key IDs <= 65535 are symmetric keys, never Autokey; no MAC means no verification."""
    wire = sign_packet(header().encode(), A, B, 100, 0)
    assert not verify_packet(parse(wire), A, B, 0)
    assert not verify_packet(parse(header().encode()), A, B, 0)
