"""The IFF and MV DSA structures read and written without ``cryptography``'s DSA loader
(pki.dsa_structure, pki.pem_encryption; interop.md 6.4): the vectors load to the values
``cryptography`` < 51 gave, every layout and cipher the vectors and OpenSSL use is read, what we
write is what OpenSSL writes and reads, and bad input is one KeyFileError, in the words it was
before."""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from pathlib import Path

import cryptography
import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntpauto.identity import iff, mv
from ntpauto.pki import der, pem_encryption
from ntpauto.pki.dsa_structure import DSAStructure, NotDSAStructure, dump_pem, load_pem
from ntpauto.pki.keyfiles import KeyFileError, read_key_file, write_key_file

GOLDEN = {
    # SHA-256 of "p,q,g,pub,priv;..." (decimal, one group per key) of each vector file, as
    # cryptography 50.0.2's load_pem_private_key loaded them (private_numbers(), password
    # alicepw) before ntpauto read these files itself.
    "iff/alice/ntpkey_IFFkey_alice.4004436521":
        "702649200217d332bc9b430073132aec745b4b978ca8a1fde45dbafc8ef70cf5",
    "iff/brenda/ntpkey_iffpar_alice.4004436521":
        "3099e43262d598d2345a929183c3d4e7fceb84bdddb3c9e80a1acce430b0b648",
    "iff-trad/alice/ntpkey_IFFkey_alice.4004436521":
        "702649200217d332bc9b430073132aec745b4b978ca8a1fde45dbafc8ef70cf5",
    "iff-trad/brenda/ntpkey_iffpar_alice.4004436521":
        "21beb64446b87c3cd5fb4c958ac473c35d55f1ae15060941a5b1124317308534",
    "mv/alice/ntpkey_MVta_alice.4004436526":
        "18c943cf7ce0946dfcae4478a2040f5ff284a9d989856b829e1ba2af5dc33799",
    "mv/alice/ntpkey_mvkey_alice.4004436526":
        "9ee0d32801c2289f4774236f6fcbe67fd51daa0921258f8fe1bde8ee7afb6f24",
    "mv/brenda/ntpkey_mvpar_alice.4004436526":
        "728d5572ad9610f12b6b8386a637e0b5bf11fc14b55fef8c8c2ed9e625953e66",
    "mv-trad/alice/ntpkey_MVta_alice.4004437967":
        "d3a2b52b9637117aa335415d4388dfbaf1c66c13f1f017bcbb477ebd152c629b",
    "mv-trad/alice/ntpkey_mvkey_alice.4004437967":
        "20050b35b800de4a9f538cda42359d4510ca8332e7881975b08e9dc0a03644d5",
    "mv-trad/brenda/ntpkey_mvpar_alice.4004437967":
        "d62a2fb4249573cd2a96a6ece32142ebe5d13a609a1f5d076072e1256e53cd39",
    "unencrypted/iff/alice/ntpkey_IFFkey_alice.4004436521.unencrypted.pem":
        "702649200217d332bc9b430073132aec745b4b978ca8a1fde45dbafc8ef70cf5",
    "unencrypted/mv/alice/ntpkey_mvkey_alice.4004436526.unencrypted.pem":
        "9ee0d32801c2289f4774236f6fcbe67fd51daa0921258f8fe1bde8ee7afb6f24",
}

MVPAR = "keys/mv-trad/brenda/ntpkey_mvpar_alice.4004437967"
"""Unencrypted traditional MV client key (p 256 bits, q = g = 1) the OpenSSL fixtures hold."""

OPENSSL_FIXTURES = {
    # MVPAR's key re-encrypted by OpenSSL 3.0.19 with password "fixturepw": `openssl dsa
    # -aes128|-aes192` and `openssl pkcs8 -topk8 -v2 aes-128-cbc -v2prf hmacWithSHA256` /
    # `-v2 aes-192-cbc -v2prf hmacWithSHA1`: the ciphers and PRFs the vectors do not use.
    "legacy AES-128-CBC": """-----BEGIN DSA PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,1253D217D9F710690BAEF1D3B2761D1C

U7QdyQDU5mDvnItiXQzBwtunE07NVzfiRHYjGIKU81K2H2nrRmne/6Wwro1H6maf
7dJLpaoB3FY/uVgVFc4xnWqwRn9mP9X/3HE6K+hIOsj1WVSiEp6KvEfdpx7SFPBF
GNi7tV8eUb3UIfnG6Mechr+LmvCXdlekCrHofNRUjcg=
-----END DSA PRIVATE KEY-----
""",
    "legacy AES-192-CBC": """-----BEGIN DSA PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-192-CBC,CC528668B2227F4411631512F27C9AB2

oUcz9DRvNP8L5gfSKL/VeyfSf+8BVO/21BfwZnn6aU9Ki2AHS2IlcSMTNkqgFfiZ
KsqWB2O/7lSH6AcCuZJfdxUmRaTqF5JQ3FWmDsAM2UIg8yqrJHioKWXsfutG5bZa
ztJQXtwI5NqO72ae2ZlkAqs4oL1JZjj6yhz2d42pNZw=
-----END DSA PRIVATE KEY-----
""",
    "PBES2 HMAC-SHA256 AES-128-CBC": """-----BEGIN ENCRYPTED PRIVATE KEY-----
MIG7MFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAipDfltWfd/ZwICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEKsbElFx3pRN+u4PxdBjrmcEYJrY
yMTrztmSiEQsI3Ao7ss7wLZQ/W+qbkzS3uMXywvTybpTIZ0ki/dCn+ZGx7T4V2C4
34Ie0q3VhckAG7oavyUIRl8awSbVejgMHB2+n/IU/AupjTu952ZE5RibEtTT0g==
-----END ENCRYPTED PRIVATE KEY-----
""",
    "PBES2 HMAC-SHA1 AES-192-CBC": """-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGtMEkGCSqGSIb3DQEFDTA8MBsGCSqGSIb3DQEFDDAOBAjxSxrYZqc7RwICCAAw
HQYJYIZIAWUDBAEWBBBzW1u56k3NPuiWWRNVRq4XBGBtPtafvzIyCOE7rlFx+mcM
A3snQdg0/ns8qZGOkdSAE4a4Aha5jxnIAWZGDXKKqKRManwBXb9JCMdSsDqlEm11
jOjeSNj1rdq5DNn4l7VzDDHIz312+sKuDkuCGJzcAck=
-----END ENCRYPTED PRIVATE KEY-----
""",
}

_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\n(.*?)-----END \1-----\n", re.DOTALL)


def _digest(keys) -> str:
    text = ";".join(",".join(str(v) for v in (k.p, k.q, k.g, k.pub, k.priv)) for k in keys)
    return hashlib.sha256(text.encode()).hexdigest()


def _load(pem: str | bytes, password: bytes | None = None) -> DSAStructure:
    """The one DSA structure of a PEM text, by dsa_structure.load_pem."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    (match,) = _BLOCK.finditer(text)
    return load_pem(match.group(1), match.group(2), password)


def _sign_key(vectors):
    """A real DSA key (the tc-dsa-sha1 sign key), which cryptography loads in every version."""
    kf = read_key_file(vectors / "keys/tc-dsa-sha1/alice/ntpkey_sign_alice", "alicepw")
    return kf.private_key


def _structure_of(key) -> DSAStructure:
    numbers = key.private_numbers()
    params = numbers.public_numbers.parameter_numbers
    return DSAStructure(params.p, params.q, params.g, numbers.public_numbers.y, numbers.x)


# --- the vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("relative", sorted(GOLDEN))
def test_vectors_load_to_the_values_cryptography_50_gave(vectors, relative):
    """Every IFF and MV vector file (traditional and PKCS#8, plain and encrypted, DES-EDE3 and
    PBES2) loads to exactly the values cryptography 50.0.2 gave."""
    kf = read_key_file(vectors / "keys" / relative, "alicepw")
    assert kf.private_keys and all(isinstance(k, DSAStructure) for k in kf.private_keys)
    assert _digest(kf.private_keys) == GOLDEN[relative]


def test_where_cryptography_loads_a_structure_it_agrees(vectors):
    """cryptography loads each PEM block of the vectors, before 51, to the values we read; 51
    refuses some (the reason for pki.dsa_structure) and agrees on those it still loads."""
    loaded = refused = 0
    for relative in GOLDEN:
        path = vectors / "keys" / relative
        blocks = [m.group(0).encode() for m in _BLOCK.finditer(path.read_text())]
        ours = read_key_file(path, "alicepw").private_keys
        for block, key in zip(blocks, ours, strict=True):
            password = b"alicepw" if b"ENCRYPTED" in block else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # 51 deprecates DSA
                try:
                    theirs = serialization.load_pem_private_key(block, password)
                except (ValueError, UnsupportedAlgorithm):
                    refused += 1
                    continue
                assert _structure_of(theirs) == key, relative
            loaded += 1
    assert loaded + refused == 20
    if int(cryptography.__version__.split(".")[0]) < 51:
        assert refused == 0


@pytest.mark.parametrize("name", sorted(OPENSSL_FIXTURES))
def test_openssl_ciphers_and_prfs_the_vectors_do_not_use(vectors, name):
    """Legacy AES-128/192-CBC and PBES2 with HMAC-SHA256 or AES-192 (OpenSSL's output) load;
    PKCS#8 loses the public value (g^x mod p = 1 here, g being 1)."""
    reference = read_key_file(vectors / MVPAR).private_key
    key = _load(OPENSSL_FIXTURES[name], b"fixturepw")
    if name.startswith("PBES2"):
        assert key == DSAStructure(reference.p, reference.q, reference.g, 1, reference.priv)
    else:
        assert key == reference
    with pytest.raises(pem_encryption.WrongPassword):
        _load(OPENSSL_FIXTURES[name], b"fixturepv")


def test_evp_bytes_to_key_matches_openssl():
    """EVP_BytesToKey(MD5, 1 iteration) for a 32-octet key, as `openssl enc -aes-256-cbc -P
    -md md5 -pass pass:alicepw -S 0011223344556677` prints it."""
    key = pem_encryption.evp_bytes_to_key(b"alicepw", bytes.fromhex("0011223344556677"), 32)
    first = hashlib.md5(b"alicepw" + bytes.fromhex("0011223344556677")).digest()
    second = hashlib.md5(first + b"alicepw" + bytes.fromhex("0011223344556677")).digest()
    assert key == first + second


# --- writing ---------------------------------------------------------------------------------


def test_what_we_write_is_what_openssl_writes(vectors):
    """For a real DSA key (which cryptography, i.e. OpenSSL, serializes in every version) our
    traditional PEM is byte-identical to OpenSSL's, our encrypted PEM is OpenSSL's byte for
    byte given the same IV, and each side reads the other's, PKCS#8 included."""
    key = _sign_key(vectors)
    structure = _structure_of(key)
    plain = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    assert dump_pem(structure) == plain
    encryption = serialization.BestAvailableEncryption(b"pw")
    theirs = key.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL, encryption)
    assert b"DEK-Info: AES-256-CBC," in theirs
    assert _load(theirs, b"pw") == structure
    iv = bytes.fromhex(re.search(rb"AES-256-CBC,([0-9A-F]{32})", theirs).group(1).decode())
    assert pem_encryption.encode_pem("DSA PRIVATE KEY", structure.to_der(), b"pw", iv) == theirs
    ours = dump_pem(structure, b"pw")
    assert ours != dump_pem(structure, b"pw")  # a fresh IV each time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _structure_of(serialization.load_pem_private_key(ours, b"pw")) == structure
    for pkcs8_encryption in (serialization.NoEncryption(), encryption):
        pkcs8 = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8, pkcs8_encryption)
        assert _load(pkcs8, b"pw") == structure  # a valid key: g^x is its public value


def test_written_identity_files_round_trip(tmp_path):
    """IFF and MV files we write (encrypted server keys and bundles, plain client files) read
    back to the same parameters, in traditional PEM with AES-256-CBC."""
    params = iff.generate_iff(512)
    path = iff.write_server_key(tmp_path, params, "grp", 7, "pw")
    assert b"DEK-Info: AES-256-CBC," in path.read_bytes()
    assert iff.load_server_key(path, "pw") == (params, 7)
    client = iff.write_client_parameters(tmp_path, params, "grp", 7)
    assert iff.load_client_parameters(client)[0] == params.client_parameters()
    system = mv.generate_mv(256, 3)
    bundle = mv.write_bundle(tmp_path, system, "grp", 8, "pw")
    loaded, filestamp = mv.load_bundle(bundle, "pw")
    assert filestamp == 8 and loaded.server == system.server
    assert loaded.clients == system.clients and (loaded.a, loaded.b) == (system.a, system.b)


_VALUES = st.integers(min_value=0, max_value=(1 << 700) - 1)


@settings(max_examples=40, deadline=None)
@given(values=st.tuples(_VALUES, _VALUES, _VALUES, _VALUES, _VALUES),
       password=st.one_of(st.none(), st.binary(min_size=1, max_size=24)))
def test_any_structure_round_trips(values, password):
    """Whatever five values (0 and 1 included), plain or encrypted with any password."""
    structure = DSAStructure(*values)
    assert _load(dump_pem(structure, password), password) == structure


# --- bad input ---------------------------------------------------------------------------------

_SOURCES = {
    "trad": ("mv-trad/brenda/ntpkey_mvpar_alice.4004437967", "DSA PRIVATE KEY"),
    "trad, encrypted": ("mv-trad/alice/ntpkey_mvkey_alice.4004437967", "DSA PRIVATE KEY"),
    "PKCS#8": ("iff/brenda/ntpkey_iffpar_alice.4004436521", "PRIVATE KEY"),
    "PKCS#8, encrypted": ("iff/alice/ntpkey_IFFkey_alice.4004436521", "ENCRYPTED PRIVATE KEY"),
}
_CORRUPT = "{} is corrupt (tampered or truncated): Could not deserialize key data"
_WRONG = "wrong password (or the encrypted key was altered)"
_BASE64 = "{} is not valid base64 PEM (tampered?)"


def _first_char(lines, body):
    lines[body[0]] = ("B" if lines[body[0]][0] != "B" else "C") + lines[body[0]][1:]


def _drop_last_line(lines, body):
    del lines[body[-1]]


def _drop_second_line(lines, body):
    del lines[body[1]]


def _cut_four(lines, body):
    lines[body[-1]] = lines[body[-1]][:-4]


def _not_base64(lines, body):
    lines[body[0]] = "!!" + lines[body[0]][2:]


# What cryptography 50.0.2 said for each (recorded before these files were read here): the
# same words now, in every cryptography version.
_DAMAGE = [
    ("trad", _first_char, _CORRUPT), ("trad", _drop_last_line, _CORRUPT),
    ("trad", _drop_second_line, _CORRUPT), ("trad", _cut_four, _CORRUPT),
    ("trad", _not_base64, _BASE64),
    ("trad, encrypted", _first_char, _CORRUPT), ("trad, encrypted", _drop_last_line, _WRONG),
    ("trad, encrypted", _drop_second_line, _CORRUPT), ("trad, encrypted", _cut_four, _WRONG),
    ("trad, encrypted", _not_base64, _BASE64),
    ("PKCS#8", _first_char, _CORRUPT), ("PKCS#8", _drop_last_line, _CORRUPT),
    ("PKCS#8", _drop_second_line, _CORRUPT), ("PKCS#8", _cut_four, _CORRUPT),
    ("PKCS#8", _not_base64, _BASE64),
    ("PKCS#8, encrypted", _first_char, _CORRUPT), ("PKCS#8, encrypted", _drop_last_line, _CORRUPT),
    ("PKCS#8, encrypted", _drop_second_line, _CORRUPT), ("PKCS#8, encrypted", _cut_four, _CORRUPT),
    ("PKCS#8, encrypted", _not_base64, _BASE64),
]


@pytest.mark.parametrize(("source", "damage", "message"), _DAMAGE,
                         ids=[f"{s}-{d.__name__[1:]}" for s, d, _ in _DAMAGE])
def test_tampered_and_truncated_files_say_what_they_said(vectors, tmp_path, source, damage,
                                                         message):
    """Altered, shortened and non-base64 key data: one KeyFileError naming the file, with the
    message cryptography gave for it."""
    relative, label = _SOURCES[source]
    text = (vectors / "keys" / relative).read_text()
    lines = text.split("\n")
    body = [i for i, line in enumerate(lines)
            if line and not line.startswith(("-----", "#")) and ":" not in line]
    damage(lines, body)
    path = tmp_path / Path(relative).name
    path.write_text("\n".join(lines))
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path, "alicepw")
    assert caught.value.message == message.format(label)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("source", ["trad, encrypted", "PKCS#8, encrypted"])
def test_wrong_and_missing_password(vectors, source):
    """A wrong password and no password: the messages of every other key file."""
    relative, label = _SOURCES[source]
    path = vectors / "keys" / relative
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path, "bobpw")
    assert caught.value.message == _WRONG
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path)
    assert caught.value.message == f"{label} is encrypted: a password is needed"
    assert read_key_file(path, allow_locked=True).locked


def test_unsupported_cipher_is_named(vectors, tmp_path):
    """A DEK-Info cipher we do not implement is named in the error."""
    text = (vectors / "keys" / _SOURCES["trad, encrypted"][0]).read_text()
    path = tmp_path / "ntpkey_mvkey_alice.4004437967"
    path.write_text(text.replace("DES-EDE3-CBC", "CAMELLIA-256-CBC"))
    with pytest.raises(KeyFileError, match="unsupported encryption in DSA PRIVATE KEY: cipher "
                                           "'CAMELLIA-256-CBC' is not supported"):
        read_key_file(path, "alicepw")


def test_another_algorithm_goes_to_cryptography(vectors, tmp_path):
    """A PKCS#8 RSA key in an IFF-named file is cryptography's to load (an RSA key), and the
    IFF reader refuses it as before; load_pem itself says it is no DSA structure."""
    rsa_text = (vectors / "keys/unencrypted/tc-rsa-md5/alice/"
                "ntpkey_RSAhost_alice.4004436515.unencrypted.pem").read_text()
    body = rsa_text[rsa_text.index("-----BEGIN"):]
    path = write_key_file(tmp_path, "IFFkey", "alice", 1, body)
    assert read_key_file(path).private_key.key_size == 512
    with pytest.raises(KeyFileError, match="not a DSA-structured key"):
        iff.load_server_key(path, None)
    with pytest.raises(NotDSAStructure):
        _load(body)
    with pytest.raises(NotDSAStructure):
        load_pem("RSA PRIVATE KEY", "", None)


def test_a_file_whose_name_says_no_kind_is_read_as_the_reader_expects(vectors, tmp_path):
    """The identity readers load a DSA structure from a file whose first line names no kind
    (read_key_file's kind_hint)."""
    text = (vectors / "keys/iff-trad/brenda/ntpkey_iffpar_alice.4004436521").read_text()
    path = tmp_path / "params"
    path.write_text(text.replace("ntpkey_iffpar_alice.", "iff-parameters."))
    assert read_key_file(path, kind_hint="iffpar").kind is None
    params, filestamp = iff.load_client_parameters(path)
    assert filestamp == 4004436521 and not params.public_value_recomputed


_SMALL = st.integers(min_value=0, max_value=1 << 300)
_TRADITIONAL = st.lists(_SMALL, min_size=5, max_size=5).map(
    lambda values: der.encode_integers(0, *values))
_PKCS8 = st.tuples(_SMALL, _SMALL, _SMALL, _SMALL).map(
    lambda v: der.sequence(der.integer(0), der.sequence(der.oid("1.2.840.10040.4.1"),
                                                        der.encode_integers(*v[:3])),
                           der.octet_string(der.integer(v[3]))))
_INTEGERS = st.lists(_SMALL, max_size=8).map(lambda values: der.encode_integers(*values))


@st.composite
def _random_pem_files(draw) -> bytes:
    """An IFF/MV-named key file whose PEM block holds random octets, a random SEQUENCE of
    INTEGERs, or either layout with random values (for the IFF and MV readers' checks): as
    they are, behind legacy encryption headers with a random DEK-Info, or properly encrypted
    with the password the readers are given."""
    kind = draw(st.sampled_from(["IFFkey", "iffpar", "MVta", "mvkey", "mvpar"]))
    label = draw(st.sampled_from(["DSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]))
    data = draw(st.one_of(st.binary(max_size=400), _INTEGERS, _TRADITIONAL, _PKCS8))
    how = draw(st.sampled_from(["plain", "random headers", "encrypted"]))
    if label == "DSA PRIVATE KEY" and how == "encrypted":
        block = pem_encryption.encode_pem(label, data, b"alicepw").decode()
    else:
        headers = ""
        if how == "random headers":
            cipher = draw(st.sampled_from(["DES-EDE3-CBC", "AES-128-CBC", "AES-256-CBC", "X"]))
            iv = draw(st.binary(max_size=20)).hex().upper()
            headers = f"Proc-Type: 4,ENCRYPTED\nDEK-Info: {cipher},{iv}\n\n"
        text = base64.b64encode(data).decode()
        body = "".join(text[i:i + 64] + "\n" for i in range(0, len(text), 64))
        block = f"-----BEGIN {label}-----\n{headers}{body}-----END {label}-----\n"
    return f"# ntpkey_{kind}_alice.4004436521\n# now\n\n{block}".encode()


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_random_pem_files())
def test_random_octets_in_a_pem_block_are_only_a_key_file_error(tmp_path, data):
    """Whatever the octets (and headers), reading the file, with or without a password, and
    the IFF and MV readers raise nothing but KeyFileError."""
    path = tmp_path / data.split(b"\n", 1)[0][2:].decode()
    path.write_bytes(data)
    for load in (lambda: read_key_file(path, "alicepw"), lambda: read_key_file(path),
                 lambda: iff.load_server_key(path, "alicepw"),
                 lambda: iff.load_client_parameters(path),
                 lambda: mv.load_server_key(path, "alicepw"), lambda: mv.load_client_key(path),
                 lambda: mv.load_bundle(path, "alicepw")):
        try:
            load()
        except KeyFileError:
            pass
