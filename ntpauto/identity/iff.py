"""IFF, the Schnorr identity scheme (RFC 5906 appendix E; message code 7, status bit 0x20).

reference: interop.md 6.1 (exchange and key generation), 6.4 (storage caveat), 7.1
(files).  Parameters live in a DSA "cuckoo" structure: p, q, g as DSA domain parameters, the
group key b as the DSA private value, the client key v = g^(q-b) mod p as the public value.

Exchange (challenge r of V octets, L = octets of q):

* server (Bob): k = random; y = (b*r mod q + k) mod q; x = g^k mod p; response = DER
  SEQUENCE { INTEGER y, INTEGER h(x) } (h = MD5 of the minimal octets,
  :func:`~ntpauto.identity.common.bignum_digest`);
* client (Alice): z = v^r * g^y mod p; accepted iff h(z) equals the second INTEGER
  (v^r g^y = g^(-br + br + k) = g^k).

Checks (ours; the reference has none): the server answers only an L-octet challenge with
0 < r < q; the client accepts only 0 < y < q and 0 <= h < 2^128, before any power.  The
reference's k is 8*V random bits with the lowest bit set, *not* reduced mod q: V comes from
the requester, so a 1-octet challenge leaves 128 possible k and one response gives b away
(b = (y - k)/r); and even at V = L, k mod q is odd whenever k < q (at least half the
time), a nonce bias of the kind that lattice attacks on Schnorr-type schemes use.  Ours is
uniform in 0 < k < q (:func:`~ntpauto.identity.common.random_below`), drawn again in the
rare case y = 0; any k makes a valid response (g^k depends only on k mod q), so the
reference's clients verify ours as before.

Files (interop.md 7.1): the server key ``ntpkey_IFFkey_<group>.<fs>`` (linked
``ntpkey_iffkey_<host>``; encrypted) and the client parameters ``ntpkey_iffpar_<group>.<fs>``
(unencrypted, private value 1).  The reference writes both as PKCS#8, which has no field for
the DSA public value: on load it becomes g^x mod p, so the reference's client loads v = g from
its own ``-e`` export and IFF never verifies (vectors ``iff``; RESULTS.md).  We load files the
same way (:mod:`ntpauto.pki.dsa_structure` recomputes the public value for PKCS#8 just as
OpenSSL does, and :attr:`IFFClientParameters.public_value_recomputed` says so) and take the true
public value from traditional ``DSA PRIVATE KEY`` files (vectors ``iff-trad``).  We *write* IFF
files in that traditional layout, so the reference reads the true v from our files.  Encrypted
files use OpenSSL's legacy PEM encryption (``DEK-Info: AES-256-CBC``), which the reference's
OpenSSL reads; the reference itself writes des-ede3-cbc PKCS#8.

Sizes: the reference asks for 256 bits and OpenSSL raises DSA parameters to 512 bits (q 160
bits), so :func:`generate_iff` does the same below 512.  Our default is 2048 bits (q 256 bits).
``cryptography`` generates DSA parameters only for 1024, 2048, 3072 and 4096 bits; other
sizes (the reference's 512) are generated here: q a random 160-bit prime (256 bits from 2048
up), p = k*q + 1 prime of exactly the size, g = h^((p-1)/q) mod p.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography.hazmat.primitives.asymmetric import dsa
from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import (
    DIGEST_BOUND,
    ChallengeResponseScheme,
    KeysdirSchemeFactory,
    RandBits,
    bignum_digest,
    check_range,
    dsa_fields,
    is_probable_prime,
    octet_length,
    random_below,
    random_prime,
    random_top_bits,
    read_identity_file,
    system_randbits,
)
from ntpauto.identity.fixedbase import FixedBase, fixed_base
from ntpauto.interfaces import IIdentitySchemeFactory
from ntpauto.pki import keyfiles
from ntpauto.pki.keyfiles import KeyFileError

__all__ = [
    "DEFAULT_BITS",
    "REFERENCE_BITS",
    "IFFClientParameters",
    "IFFParameters",
    "IFFScheme",
    "IFFSchemeFactory",
    "client_parameters_pem",
    "dsa_domain_parameters",
    "generate_iff",
    "keygen",
    "load_client_parameters",
    "load_server_key",
    "server_key_pem",
    "write_client_parameters",
    "write_server_key",
]

DEFAULT_BITS = 2048
"""Our default modulus p (q is 256 bits)."""
REFERENCE_BITS = 512
"""What the reference's defaults give (p 512 bits, q 160 bits)."""
MIN_BITS = 512
MAX_BITS = 4096
_CRYPTOGRAPHY_SIZES = frozenset({1024, 2048, 3072, 4096})


@attrs.frozen
class IFFParameters:
    """The trusted authority's and the servers' IFF values: p, q, g, group key b and the
    client key v = g^(q-b) mod p."""

    p: int
    q: int
    g: int
    b: int = attrs.field(repr=False)
    v: int

    @classmethod
    def from_group_key(cls, p: int, q: int, g: int, b: int) -> IFFParameters:
        """The parameters with v computed from b (what a server key file determines)."""
        return cls(p=p, q=q, g=g, b=b, v=pow(g, q - b, p))

    def client_parameters(self) -> IFFClientParameters:
        """What the clients get (ntp-keygen -e): p, q, g, v."""
        return IFFClientParameters(p=self.p, q=self.q, g=self.g, v=self.v)


@attrs.frozen
class IFFClientParameters:
    """The clients' IFF values p, q, g, v.  ``public_value_recomputed`` is True when v came
    from a PKCS#8 file, where it is g^x mod p rather than the true v (interop.md 6.4)."""

    p: int
    q: int
    g: int
    v: int
    public_value_recomputed: bool = attrs.field(default=False, eq=False)


def _own_domain_parameters(bits: int, rng: RandBits | None) -> tuple[int, int, int]:
    q_bits = 160 if bits < 2048 else 256
    q = random_prime(q_bits, rng)
    step = 2 * q
    while True:
        candidate = random_top_bits(bits, rng)
        p = candidate - candidate % step + 1
        if p.bit_length() == bits and is_probable_prime(p, rng=rng):
            break
    cofactor = (p - 1) // q
    h = 2
    while (g := pow(h, cofactor, p)) == 1:
        h += 1
    return p, q, g


def dsa_domain_parameters(bits: int, rng: RandBits | None = None) -> tuple[int, int, int]:
    """DSA (p, q, g) with p of ``bits`` bits: by ``cryptography`` for 1024, 2048, 3072 and
    4096 bits, by our own prime search otherwise (q of 160 bits, 256 from 2048 bits up)."""
    if bits in _CRYPTOGRAPHY_SIZES:
        numbers = dsa.generate_parameters(key_size=bits).parameter_numbers()
        return numbers.p, numbers.q, numbers.g
    return _own_domain_parameters(bits, rng)


def generate_iff(bits: int = DEFAULT_BITS, rng: RandBits | None = None) -> IFFParameters:
    """New IFF parameters (ntp-keygen -I; interop.md 6.1): DSA parameters of ``bits``
    bits (raised to 512 below that, as the reference's OpenSSL does), b = random of |q| bits
    mod q, v = g^(q-b) mod p, then one protocol round as a self-test.  ``rng`` draws b (and p,
    q, g for the sizes ``cryptography`` does not make)."""
    bits = max(bits, MIN_BITS)
    if bits > MAX_BITS:
        raise ValueError(f"IFF modulus of {bits} bits is out of range (512 to {MAX_BITS})")
    randbits = rng if rng is not None else system_randbits
    p, q, g = dsa_domain_parameters(bits, randbits)
    while True:
        b = randbits(q.bit_length()) % q
        if b > 0:
            break
    params = IFFParameters.from_group_key(p, q, g, b)
    scheme = IFFScheme(server=params, client=params.client_parameters(), rng=randbits)
    challenge = scheme.make_challenge()
    if not scheme.verify_response(challenge, scheme.respond(challenge)):
        raise RuntimeError("IFF self-test failed")
    return params


# --- files --------------------------------------------------------------------------------


def server_key_pem(params: IFFParameters, password: str | bytes | None = None) -> bytes:
    """The server key as traditional ``DSA PRIVATE KEY`` PEM {p, q, g, pub = v, priv = b},
    encrypted with ``password`` when given."""
    return keyfiles.dsa_traditional_pem(params.p, params.q, params.g, params.v, params.b,
                                        password=password)


def client_parameters_pem(params: IFFParameters | IFFClientParameters) -> bytes:
    """The client parameters as unencrypted traditional PEM {p, q, g, pub = v, priv = 1}: the
    layout that keeps v (interop.md 6.4, vectors iff-trad)."""
    return keyfiles.dsa_traditional_pem(params.p, params.q, params.g, params.v, 1)


def write_server_key(directory: str | os.PathLike[str], params: IFFParameters, group: str,
                     filestamp: int, password: str | bytes, *, host: str | None = None,
                     when: float | None = None) -> Path:
    """Write ``ntpkey_IFFkey_<group>.<filestamp>`` (mode 0600, encrypted) linked as
    ``ntpkey_iffkey_<host>`` (ntp-keygen's link) and, when the group differs, also
    ``ntpkey_iffkey_<group>`` (what ntpd opens).  Returns the file's path."""
    pem = server_key_pem(params, password)
    return _write(directory, "IFFkey", "iffkey", group, filestamp, pem, host, when)


def write_client_parameters(directory: str | os.PathLike[str],
                            params: IFFParameters | IFFClientParameters, group: str,
                            filestamp: int, *, when: float | None = None) -> Path:
    """Write ``ntpkey_iffpar_<group>.<filestamp>`` linked as ``ntpkey_iffpar_<group>``; the
    filestamp must be the server key's (the requester checks equality)."""
    return _write(directory, "iffpar", "iffpar", group, filestamp,
                  client_parameters_pem(params), None, when)


def _write(directory: str | os.PathLike[str], type_name: str, link: str, group: str,
           filestamp: int, pem: bytes, host: str | None, when: float | None) -> Path:
    path = keyfiles.write_key_file(directory, type_name, group, filestamp, pem, link,
                                   host or group, when=when)
    if host is not None and host != group:
        keyfiles.write_key_file(directory, type_name, group, filestamp, pem, link, group,
                                when=when)
    return path


def load_server_key(path: str | os.PathLike[str],
                    password: str | bytes | None) -> tuple[IFFParameters, int | None]:
    """(parameters, filestamp) of an IFF server key file; v is recomputed as g^(q-b), so it
    is right whatever the file's layout."""
    key_file = read_identity_file(path, password, ("iffkey",))
    p, q, g, b, _ = dsa_fields(key_file.private_key, key_file.path)
    if q < 2 or p <= q or not 0 < b < q or not 1 < g < p or pow(g, q, p) != 1:
        raise KeyFileError(key_file.path, "not an IFF server key (bad p, q, g or b)")
    return IFFParameters.from_group_key(p, q, g, b), key_file.filestamp


def load_client_parameters(path: str | os.PathLike[str]
                           ) -> tuple[IFFClientParameters, int | None]:
    """(parameters, filestamp) of an IFF client parameter file (unencrypted).  v is the
    file's public value: the true one in traditional PEM, g^x mod p (= g in the reference's
    exports) in PKCS#8, as in the reference (interop.md 6.4)."""
    key_file = read_identity_file(path, None, ("iffpar",))
    p, q, g, _, v = dsa_fields(key_file.private_key, key_file.path)
    if q < 2 or p <= q or not 1 < g < p or not 0 < v < p or pow(g, q, p) != 1:
        raise KeyFileError(key_file.path, "not IFF client parameters (bad p, q, g or v)")
    recomputed = "DSA PRIVATE KEY" not in key_file.pem_labels
    return IFFClientParameters(p=p, q=q, g=g, v=v, public_value_recomputed=recomputed), \
        key_file.filestamp


def keygen(context: Any, value: Any = None) -> Path:
    """The ``ntpauto keygen -I`` step: generate IFF parameters of ``context.modulus`` bits
    (our default when it is falsy) and write the encrypted server key for ``context.group``
    (link ``ntpkey_iffkey_<context.host>``) with ``context.filestamp`` and
    ``context.password``.  Export the client parameters with ``keygen -e``."""
    bits = getattr(context, "modulus", None) or DEFAULT_BITS
    _say(context, f"Generating IFF keys ({max(bits, MIN_BITS)} bits)...")
    params = generate_iff(bits)
    path = write_server_key(context.keysdir, params, context.group, context.filestamp,
                            context.password, host=context.host)
    _say(context, f"ntpkey_iffkey_{context.host}->{path.name}")
    return path


def _say(context: Any, text: str) -> None:
    stream = getattr(context, "stderr", None)
    if stream is not None:
        stream.write(text + "\n")


# --- scheme -------------------------------------------------------------------------------


class IFFScheme(ChallengeResponseScheme):
    """IFF bound to a server key (``server``: :class:`IFFParameters`) and/or client
    parameters (``client``: :class:`IFFClientParameters`)."""

    name: ClassVar[str] = "iff"
    status_bit: ClassVar[int] = 0x20
    message_code: ClassVar[int] = 7
    response_integers: ClassVar[int] = 2
    server_kind: ClassVar[str] = "iffkey"
    client_kind: ClassVar[str] = "iffpar"

    # The module's file readers, as the base class expects them.
    load_server_key = staticmethod(load_server_key)
    load_client_parameters = staticmethod(load_client_parameters)

    def _server_modulus(self) -> int:
        return self.server.q

    def _client_modulus(self) -> int:
        return self.client.q

    def _respond(self, r: int) -> tuple[int, ...]:
        key = self.server
        (g_table,) = self._tables()
        while True:
            k = random_below(key.q, self.rng)
            y = (key.b * r % key.q + k) % key.q
            if y:  # every client refuses y = 0 (it proves nothing: z = v^r)
                return y, bignum_digest(g_table.power(k))

    def _tables(self) -> tuple[FixedBase, ...]:
        key = self.server
        return (fixed_base(key.g, key.p, 8 * octet_length(key.q)),)

    def _check_response(self, integers: tuple[int, ...]) -> None:
        y, digest = integers
        check_range("IFF y", y, 1, self.client.q)
        check_range("IFF h(x)", digest, 0, DIGEST_BOUND)

    def _verify(self, r: int, integers: tuple[int, ...]) -> bool:
        y, digest = integers
        params = self.client
        z = pow(params.v, r, params.p) * pow(params.g, y, params.p) % params.p
        return bignum_digest(z) == digest


@implementer(IPlugin, IIdentitySchemeFactory)
class IFFSchemeFactory(KeysdirSchemeFactory):
    """Builds :class:`IFFScheme` from ``ntpkey_iffkey_<group>`` / ``ntpkey_iffpar_<group>``."""

    scheme_name: ClassVar[str] = "iff"
    help_text: ClassVar[str] = (
        "IFF (Schnorr) identity: servers hold the group key b (ntpkey_iffkey_GROUP, "
        "encrypted with PASSWORD), clients the public parameters (ntpkey_iffpar_GROUP). "
        "Certificates need no extension. Default 2048 bits; the reference makes 512.")
    status_bit: ClassVar[int] = IFFScheme.status_bit
    message_code: ClassVar[int] = IFFScheme.message_code
    scheme_class: ClassVar[Any] = IFFScheme
