"""The one small DER reader/writer of ntpauto (ITU-T X.690, distinguished encoding rules).

``cryptography`` parses and writes whole certificates and keys; what it does not expose is
written and read here, and only here:

* the re-signed certificates of :mod:`ntpauto.pki.legacy_x509` (AlgorithmIdentifier,
  Certificate ``SEQUENCE``, ``BIT STRING``) and the raw extensions it reads from a
  TBSCertificate;
* the traditional DSA and PKCS#1 structures of identity keys (:mod:`ntpauto.pki.keyfiles`,
  interop.md 6.4) and the EKU and Subject Key Identifier values of certificates
  (:mod:`ntpauto.pki.certificates`);
* the identity responses ``SEQUENCE { INTEGER ... }`` (:func:`encode_integers`,
  :func:`decode_integers`; 2 INTEGERs for IFF and GQ, 3 for MV), which come from peers;
* the PKCS#8 wrappers and PBES2 parameters of the DSA-structured identity keys that
  ``cryptography`` no longer loads (:mod:`ntpauto.pki.dsa_structure`,
  :mod:`ntpauto.pki.pem_encryption`: :func:`decode_algorithm`, :func:`decode_integer`).

The reader is strict: single-octet tags, definite and minimal lengths; anything else raises
:class:`DerError` (a ``ValueError``), so a peer's malformed value is refused, never guessed at.
"""

from __future__ import annotations

__all__ = [
    "TAG_BIT_STRING",
    "TAG_BOOLEAN",
    "TAG_INTEGER",
    "TAG_NULL",
    "TAG_OCTET_STRING",
    "TAG_OID",
    "TAG_SEQUENCE",
    "DerError",
    "bit_string",
    "children",
    "content",
    "decode_algorithm",
    "decode_integer",
    "decode_integers",
    "decode_oid",
    "encode_integers",
    "integer",
    "null",
    "octet_string",
    "oid",
    "read_tlv",
    "sequence",
    "tlv",
]

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30


class DerError(ValueError):
    """Malformed or non-DER input (truncated, bad or non-minimal length, unexpected tag)."""


# --- writer ---------------------------------------------------------------------------------


def _length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(tag: int, value: bytes) -> bytes:
    """One TLV with a single-octet ``tag`` and the contents ``value``."""
    return bytes([tag]) + _length(len(value)) + value


def integer(value: int) -> bytes:
    """INTEGER of a non-negative ``value`` (minimal, a leading zero when the top bit is set,
    as OpenSSL writes bignums)."""
    if value < 0:
        raise ValueError("only non-negative INTEGERs are written")
    return tlv(TAG_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def sequence(*items: bytes) -> bytes:
    """SEQUENCE of already encoded ``items``."""
    return tlv(TAG_SEQUENCE, b"".join(items))


def null() -> bytes:
    """NULL."""
    return b"\x05\x00"


def octet_string(data: bytes) -> bytes:
    """OCTET STRING."""
    return tlv(TAG_OCTET_STRING, data)


def bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    """BIT STRING of whole octets (``unused_bits`` in the last one)."""
    return tlv(TAG_BIT_STRING, bytes([unused_bits]) + data)


def oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from dotted notation."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"bad OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(TAG_OID, bytes(body))


def encode_integers(*values: int) -> bytes:
    """``SEQUENCE { INTEGER v1, INTEGER v2, ... }`` of non-negative integers (what OpenSSL's
    i2d_DSA_SIG and i2d_DSAparams write, and the identity responses)."""
    return sequence(*(integer(value) for value in values))


# --- reader ---------------------------------------------------------------------------------


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """The TLV at ``offset``: ``(tag, contents_start, end)``; :class:`DerError` unless its
    tag is one octet and its length definite, minimal and within ``data``."""
    if offset + 2 > len(data):
        raise DerError("truncated DER")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-octet DER tags are not supported")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise DerError("indefinite or oversized DER length")
        if position + count > len(data):
            raise DerError("truncated DER length")
        raw = data[position:position + count]
        length = int.from_bytes(raw, "big")
        if raw[0] == 0 or length < 0x80:
            raise DerError("non-minimal DER length")
        position += count
    end = position + length
    if end > len(data):
        raise DerError("truncated DER contents")
    return tag, position, end


def content(data: bytes, tag: int | None = None) -> bytes:
    """The contents of the single TLV that is all of ``data`` (with ``tag``, when given)."""
    found, start, end = read_tlv(data)
    if end != len(data):
        raise DerError("octets after the DER value")
    if tag is not None and found != tag:
        raise DerError(f"DER tag {found:#04x}, expected {tag:#04x}")
    return data[start:end]


def children(data: bytes) -> list[bytes]:
    """The complete TLVs that make up ``data`` (the contents of a constructed value)."""
    items = []
    offset = 0
    while offset < len(data):
        _tag, _start, end = read_tlv(data, offset)
        items.append(data[offset:end])
        offset = end
    return items


def decode_oid(contents: bytes) -> str:
    """Dotted notation of OBJECT IDENTIFIER contents octets."""
    if not contents or contents[-1] & 0x80:
        raise DerError("bad OID encoding")
    arcs = []
    value = 0
    for octet in contents:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def decode_integer(data: bytes) -> int:
    """The non-negative INTEGER that is all of ``data``; :class:`DerError` for another tag,
    trailing octets, an empty, negative or non-minimal encoding."""
    octets = content(bytes(data), TAG_INTEGER)
    if not octets:
        raise DerError("empty DER INTEGER")
    if octets[0] & 0x80:
        raise DerError("negative DER INTEGER")
    if len(octets) > 1 and octets[0] == 0 and not octets[1] & 0x80:
        raise DerError("non-minimal DER INTEGER")
    return int.from_bytes(octets, "big")


def decode_integers(data: bytes, count: int | None = None) -> tuple[int, ...]:
    """The non-negative INTEGERs of a ``SEQUENCE { INTEGER ... }`` occupying all of
    ``data``; :class:`DerError` for anything else (other tags, trailing octets, non-minimal
    or negative integers, or not ``count`` of them when given)."""
    values = tuple(decode_integer(item) for item in children(content(bytes(data),
                                                                     TAG_SEQUENCE)))
    if count is not None and len(values) != count:
        raise DerError(f"{len(values)} INTEGERs, expected {count}")
    return values


def decode_algorithm(data: bytes) -> tuple[str, bytes | None]:
    """(OID in dotted notation, parameters TLV or ``None`` when absent) of the
    AlgorithmIdentifier ``SEQUENCE { OBJECT IDENTIFIER, parameters OPTIONAL }`` that is all
    of ``data``."""
    items = children(content(bytes(data), TAG_SEQUENCE))
    if not 1 <= len(items) <= 2:
        raise DerError("an AlgorithmIdentifier holds an OID and at most one parameter")
    return decode_oid(content(items[0], TAG_OID)), items[1] if len(items) == 2 else None
