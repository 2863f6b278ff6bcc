"""A plain mutational generator (no Hypothesis): fast enough for a million inputs.

Mutations are byte-level (flip, set, insert, delete, duplicate, truncate, splice) and
structure-aware for the formats under test: NTP packets (extension-field Length words, value
and signature length words, codes, the E/R bits, the MAC tail), DER (tags and lengths) and
text (line-level insertions of tokens from the corpus).  Everything is driven by one
``random.Random`` so a campaign is reproducible from its seed.
"""

from __future__ import annotations

import random
import struct

INTERESTING32 = (0, 1, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x1FF, 0x200, 0x201, 0x7FFF,
                 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF, 0x30, 0x02, 0x81, 0x82, 0x84, 0x85)
_WORD = struct.Struct("!I")


def _bytes_level(rng: random.Random, data: bytearray, corpus: list[bytes]) -> None:
    size = len(data)
    choice = rng.randrange(10)
    if choice == 0 and size:
        i = rng.randrange(size)
        data[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and size:
        data[rng.randrange(size)] = rng.choice(INTERESTING8)
    elif choice == 2 and size:
        data[rng.randrange(size)] = rng.randrange(256)
    elif choice == 3:
        at = rng.randrange(size + 1)
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8, 16))))
    elif choice == 4 and size:
        at = rng.randrange(size)
        del data[at:at + rng.choice((1, 2, 3, 4, 8, 32))]
    elif choice == 5 and size:
        del data[rng.randrange(size + 1):]
    elif choice == 6 and size:
        at = rng.randrange(size)
        chunk = data[at:at + rng.choice((4, 8, 16, 64))]
        where = rng.randrange(size + 1)
        data[where:where] = chunk
    elif choice == 7 and corpus:
        other = rng.choice(corpus)
        if other:
            at = rng.randrange(len(other))
            cut = rng.randrange(size + 1)
            data[cut:] = other[at:at + rng.randrange(1, 200)]
    elif choice == 8 and size >= 4:
        at = rng.randrange(size - 3)
        data[at:at + 4] = _WORD.pack(rng.choice(INTERESTING32))
    elif size >= 2:
        at = rng.randrange(size - 1)
        data[at:at + 2] = rng.choice(INTERESTING32).to_bytes(4, "big")[2:]


def _field_offsets(data: bytes) -> list[int]:
    """Offsets of extension-field header words, walking the Length words as the parser
    would (without its checks)."""
    out = []
    offset = 48
    while offset + 28 <= len(data) and len(out) < 8:
        length = _WORD.unpack_from(data, offset)[0] & 0xFFFF
        out.append(offset)
        if length < 4 or length % 4:
            break
        offset += length
    return out


def _packet_level(rng: random.Random, data: bytearray) -> None:
    """Corrupt a field's Length, code, R/E/version bits, value or signature length, or the
    header's first octet, or cut the packet at a field boundary."""
    offsets = _field_offsets(bytes(data))
    if not offsets or rng.random() < 0.2:
        if data:
            data[0] = rng.randrange(256)  # LI/VN/mode
        return
    at = rng.choice(offsets)
    which = rng.randrange(7)
    if which == 0:  # Length
        length = rng.choice(INTERESTING32 + (2, 6, 22, 23, 24, 25, 28)) & 0xFFFF
        data[at + 2:at + 4] = length.to_bytes(2, "big")
    elif which == 1:  # code
        data[at + 1] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x0A, 0xFF))
    elif which == 2:  # R/E/version
        data[at] = rng.choice((0x02, 0x82, 0xC2, 0x42, 0x01, 0x03, 0x81, 0x83, 0x00, 0xFF))
    elif which == 3 and at + 20 <= len(data):  # value length
        data[at + 16:at + 20] = _WORD.pack(rng.choice(INTERESTING32))
    elif which == 4 and at + 24 <= len(data):  # signature length (assumes a short value)
        vlen = _WORD.unpack_from(data, at + 16)[0]
        sig_at = at + 20 + ((vlen + 3) & ~3)
        if sig_at + 4 <= len(data):
            data[sig_at:sig_at + 4] = _WORD.pack(rng.choice(INTERESTING32))
    elif which == 5:  # association ID / timestamp / filestamp
        slot = at + rng.choice((4, 8, 12))
        if slot + 4 <= len(data):
            data[slot:slot + 4] = _WORD.pack(rng.choice(INTERESTING32))
    else:  # truncate at or just after a field boundary
        del data[at + rng.choice((0, 4, 8, 12, 24)):]


def _der_level(rng: random.Random, data: bytearray) -> None:
    """Corrupt a DER tag or length octet (find a plausible TLV header near a random spot)."""
    if len(data) < 4:
        return
    at = rng.randrange(len(data) - 2)
    for i in range(at, min(at + 64, len(data) - 1)):
        if data[i] in (0x30, 0x02, 0x03, 0x04, 0x05, 0x06, 0x13, 0x0C, 0x17, 0x18, 0xA0, 0xA3):
            j = i + 1
            choice = rng.randrange(4)
            if choice == 0:
                data[i] = rng.choice((0x30, 0x31, 0x02, 0x04, 0x05, 0x1F, 0x00, 0xFF))
            elif choice == 1:
                data[j] = rng.choice((0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x88, 0xFF))
            elif choice == 2 and data[j] & 0x80 and j + 1 < len(data):
                data[j + 1] = rng.choice((0x00, 0x01, 0x7F, 0xFF))
            else:
                data[j] = (data[j] + rng.choice((-2, -1, 1, 2))) & 0xFF
            return


def _text_level(rng: random.Random, data: bytearray, corpus: list[bytes]) -> None:
    """Line-level mutation: duplicate, drop, swap or graft lines and tokens."""
    lines = bytes(data).split(b"\n")
    choice = rng.randrange(5)
    if choice == 0 and corpus:
        other = rng.choice(corpus).split(b"\n")
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(other))
    elif choice == 1 and len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    elif choice == 2:
        i = rng.randrange(len(lines))
        tokens = lines[i].split()
        if tokens:
            tokens[rng.randrange(len(tokens))] = rng.choice(
                (b"-1", b"0", b"99999999999999999999", b"17", b"255", b"::", b"0.0.0.0",
                 b"#", b"\"", b"\\", b"mask", b"key", b"autokey", b"ident", b"\xff",
                 b"127.127.1.0", b"minpoll", b"maxpoll", b"4294967296", b"1e9", b""))
            lines[i] = b" ".join(tokens)
    elif choice == 3:
        i = rng.randrange(len(lines))
        lines[i] = lines[i] + b" " + lines[rng.randrange(len(lines))]
    else:
        i = rng.randrange(len(lines))
        cut = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:cut]
    data[:] = b"\n".join(lines)


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes], kind: str) -> bytes:
    """One mutant of ``seed`` (1 to 4 stacked mutations of the kind's levels)."""
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        r = rng.random()
        if kind == "packet" and r < 0.5:
            _packet_level(rng, data)
        elif kind == "der" and r < 0.5:
            _der_level(rng, data)
        elif kind == "text" and r < 0.5:
            _text_level(rng, data, corpus)
        else:
            _bytes_level(rng, data, corpus)
    return bytes(data)
