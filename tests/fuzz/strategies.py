"""Hypothesis strategies: structurally valid inputs (packets with extension fields and
MACs, Autokey fields, DER certificates, key files, ntp.conf text), then corrupted (lengths,
counts, codes, DER, truncation).  Seeds come from the reference vectors
(:mod:`tests.fuzz.targets`)."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from tests.fuzz.targets import (
    captured_packets,
    certificate_ders,
    config_texts,
    key_file_texts,
    private_key_der,
    rewrap,
)

WORD = struct.Struct("!I")
INTERESTING = st.sampled_from([0, 1, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x1FF, 0x200, 0x201,
                               0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF])


@st.composite
def autokey_fields(draw) -> bytes:
    """One well-formed Autokey field (any code, R/E bits, value and signature), encoded."""
    from ntpauto.autokey.fields import Field

    short = draw(st.booleans())
    code = draw(st.integers(0, 12) | st.just(0xFF))
    response, error = draw(st.booleans()), draw(st.booleans())
    associd = draw(st.integers(0, 0xFFFFFFFF))
    if short:
        return Field.short_form(code, associd, response=response, error=error).encode()
    return Field(code=code, response=response, error=error, associd=associd,
                 timestamp=draw(st.integers(0, 0xFFFFFFFF)),
                 filestamp=draw(st.integers(0, 0xFFFFFFFF)),
                 value=draw(st.binary(min_size=1, max_size=80)),
                 signature=draw(st.binary(max_size=80))).encode()


@st.composite
def ntp_headers(draw) -> bytes:
    first = draw(st.integers(0, 255))
    return bytes([first]) + draw(st.binary(min_size=47, max_size=47))


@st.composite
def valid_packets(draw) -> bytes:
    """A header, 0-3 fields and a MAC of a valid length (or none), or a captured packet."""
    if draw(st.booleans()):
        return draw(st.sampled_from([raw for raw, _, _ in captured_packets()]))
    fields = draw(st.lists(autokey_fields(), max_size=3))
    mac = draw(st.sampled_from([b"", WORD.pack(0), WORD.pack(1) + bytes(16),
                                WORD.pack(70000) + bytes(16), WORD.pack(2) + bytes(20)]))
    return draw(ntp_headers()) + b"".join(fields) + mac


@st.composite
def corrupt(draw, base: bytes, packet: bool = False) -> bytes:
    """``base`` with 1-3 corruptions: a 16/32-bit word overwritten with an interesting
    value, a field's Length or value length changed, bits flipped, octets inserted or
    deleted, the tail cut."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 5))
        size = len(data)
        if kind == 0 and size >= 4:
            at = draw(st.integers(0, size - 4))
            data[at:at + 4] = WORD.pack(draw(INTERESTING))
        elif kind == 1 and packet and size >= 52:
            at = 48 + 4 * draw(st.integers(0, (size - 52) // 4))
            target = draw(st.sampled_from([2, 16]))  # Length word / value length word
            if at + target + 4 <= size:
                value = draw(INTERESTING)
                if target == 2:
                    data[at + 2:at + 4] = (value & 0xFFFF).to_bytes(2, "big")
                else:
                    data[at + 16:at + 20] = WORD.pack(value)
        elif kind == 2 and size:
            at = draw(st.integers(0, size - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == 3:
            at = draw(st.integers(0, size))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == 4 and size:
            at = draw(st.integers(0, size - 1))
            del data[at:at + draw(st.integers(1, 8))]
        elif size:
            del data[draw(st.integers(0, size)):]
    return bytes(data)


def packets() -> st.SearchStrategy[bytes]:
    """Valid packets, sometimes corrupted."""
    return valid_packets().flatmap(
        lambda base: st.one_of(st.just(base), corrupt(base, packet=True)))


def certificates() -> st.SearchStrategy[bytes]:
    """The vectors' certificates with corrupted DER (tags, lengths, truncation)."""
    return st.sampled_from(certificate_ders()).flatmap(lambda der: corrupt(der))


@st.composite
def key_files(draw) -> bytes:
    """ntp-keygen files whose PEM blocks hold corrupted DER, or whose text is corrupted."""
    text = draw(st.sampled_from(key_file_texts()))
    ders = private_key_der(text)
    if ders and draw(st.booleans()):
        return rewrap(text, [draw(corrupt(d)) for d in ders])
    return draw(corrupt(text))


@st.composite
def configs(draw) -> bytes:
    """ntpd configurations with lines dropped, duplicated and tokens replaced."""
    lines = draw(st.sampled_from(config_texts())).split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        tokens = lines[i].split()
        kind = draw(st.integers(0, 2))
        if kind == 0 and tokens:
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.sampled_from(
                [b"-1", b"0", b"99999999999999999999", b"255", b"::", b"#", b"\"", b"\xff",
                 b"mask", b"key", b"autokey", b"minpoll", b"4294967296", b""]))
            lines[i] = b" ".join(tokens)
        elif kind == 1:
            lines.insert(i, draw(st.binary(max_size=30)))
        else:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
    return b"\n".join(lines)


@st.composite
def nts_packets(draw) -> bytes:
    """NTS requests and replies (from the NTS seeds), or a header with NTS-typed fields of
    random bodies and an authenticator of random lengths; sometimes corrupted."""
    from ntpauto.nts import fields as nf
    from tests.fuzz.targets import nts_seeds

    if draw(st.booleans()):
        base = draw(st.sampled_from(nts_seeds()))
    else:
        kinds = st.sampled_from([nf.UNIQUE_IDENTIFIER, nf.COOKIE, nf.COOKIE_PLACEHOLDER,
                                 0x7777])
        parts = [nf.field(draw(kinds), draw(st.binary(max_size=120)))
                 for _ in range(draw(st.integers(0, 9)))]
        auth = nf.authenticator(draw(st.binary(min_size=1, max_size=24)),
                                draw(st.binary(min_size=16, max_size=60)))
        base = draw(ntp_headers()) + b"".join(parts) + auth
    return draw(st.one_of(st.just(base), corrupt(base, packet=True)))


@st.composite
def ke_messages(draw) -> bytes:
    """NTS-KE messages: the seeds, or records of any type, critical bit and body, with or
    without End of Message; sometimes corrupted."""
    from ntpauto.nts import records
    from tests.fuzz.targets import nts_ke_seeds

    if draw(st.booleans()):
        base = draw(st.sampled_from(nts_ke_seeds()))
    else:
        items = [records.Record(draw(st.integers(0, 9) | st.integers(0, 0x7FFF)),
                                draw(st.binary(max_size=40)), draw(st.booleans()))
                 for _ in range(draw(st.integers(0, 12)))]
        base = records.encode_message(items) if draw(st.booleans()) \
            else b"".join(r.encode() for r in items)
    return draw(st.one_of(st.just(base), corrupt(base)))
