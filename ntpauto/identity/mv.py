"""MV, the Mu-Varadharajan identity scheme (RFC 5906 appendix G; message code 9, status bit
0x80).

reference: interop.md 6.3 (exchange and the key generation steps 1-12), 6.4 (storage
caveat), 7.1 (files); ntpd docs ident.md.

Values live in DSA "cuckoo" structures:

* trusted-authority (TA) key {p, q, g, private = A, public = b};
* server key (``ntpkey_mvkey_<group>``, the first key of the file) {p, q, g = E,
  private = gbar, public = ghat};
* client key j (``ntpkey_mvpar_<group>``) {p, q = 1, g = 1, private = xbar_j, public = xhat_j}.

The TA bundle ``ntpkey_MVta_<group>.<fs>`` holds 2 + n keys: the TA key, the server key and
the client keys 1..n; the reference's ``-q`` export is the server key, its ``-e`` export
client key 1.

Exchange (challenge r of L = octets of p, reduced mod p):

* server: k = random of exactly |q| bits (top bit set) mod q, drawn again until
  gcd(k, q) = 1; y = E^k * r mod p, A = gbar^k mod p, B = ghat^k mod p; response = DER
  SEQUENCE { INTEGER y, INTEGER A, INTEGER B } (an OpenSSL DSAparams encoding);
* client j: z = A^xhat * B^xbar * y mod p; accepted iff z == r (exact equality, no hash).

Checks (ours; the reference has none).  The reference's client accepts the response
{y = r, A = 1, B = 1}, which anybody can send.  We require 0 < y < p and A, B in the
subgroup of order q other than 1, i.e. quadratic residues (honest A and B are powers of g,
whose order is q; p - 1 = 2q), checked before any power, so such responses (and A or B of
0, 1, p - 1 or >= p) are refused; honest responses are unaffected.  The server answers only
an L-octet challenge with 0 < r < p.

Key generation (:func:`generate_mv`, ntp-keygen -V n; interop.md 6.3 steps 1-11):
n distinct primes s_j of floor(M/n) bits with p = 2q + 1 prime, q = prod s_j; g of order q
with gcd(g, p - 1) = 1; roots x_j; polynomial coefficients a_i of prod (x - x_j) mod q by the
reference's in-place expansion; A = prod_j prod_{i<n} g_i^(x_j^i) with g_i = g^a_i; group key
b; client keys xbar_j = b^-1 sum_{i != j} x_i^n, xhat_j = x_j^n (q + s_j)/s_j; activation key
s = q / (product of the revoked s_j) -- the reference always revokes client n --; E = A^s,
gbar = g^s, ghat = g^(s b mod q).  Differences that do not change the structure or sizes:

* the prime search keeps s_1..s_{n-1} and sieves for an s_n that makes p prime (the
  reference replaces one s_j at random after every composite p: the same kind of result, but
  too slow in Python at 2048 bits);
* the products of powers of g are computed as one power of g with the exponent summed mod q
  (the same values, since g^q = 1), and the self-test P(x_j) = 0 is checked mod q;
* g must have order exactly q (not only g^q = 1), so that revoking any s_j works.

Revocation: client j works with the server key iff s_j divides the activation key s.
:meth:`MVParameters.with_revoked` makes a new server key for another set of revoked clients
(the client keys do not change); write it (and the bundle) with the *old* filestamp, because
requesters require the response Filestamp to equal their client file's.  The reference's
bundle does not store the primes s_j: :func:`load_bundle` recovers them from b and the client
keys when n >= 3 (gcd(xhat_j + b xbar_j - xhat_k - b xbar_k, q) is the product of the other
primes), so :func:`reissue` works from a bundle file; not for n = 2, nor for the reference's
PKCS#8 bundles, whose public values (b, ghat, xhat_j) are lost (interop.md 6.4).

Files: we write traditional ``DSA PRIVATE KEY`` PEM, which keeps the public values (vectors
mv-trad; the reference reads it); encrypted keys use OpenSSL's legacy PEM encryption
(``DEK-Info: AES-256-CBC``); :mod:`ntpauto.pki.dsa_structure` reads and writes them.

Sizes: the reference's default is 256 bits (p 256, q 255 bits, three 85-bit primes).  Our
default is :data:`DEFAULT_BITS` = 2048, chosen by measurement (``benchmarks/identity.py``, one
run on one core of the development machine, pure Python ``pow``, 3 client keys):

====== ========= ========== =========
bits   keygen s  respond/s  verify/s
====== ========= ========== =========
256    0.03      3250       4040
1024   0.34      100        142
1536   1.15      35         50
2048   1.55      15         22
====== ========= ========== =========

(The server's responses now go through fixed-base tables, :mod:`ntpauto.identity.fixedbase`:
about five times the respond/s above.)  An identity exchange happens once per association,
so 70 ms for the response and 45 ms for
the check at 2048 bits are affordable, and keygen stays within seconds (the sieve keeps the
prime search short); 2048 bits puts the discrete logarithm modulus at the size of our IFF and
GQ defaults (about 112-bit strength), where 1024 bits would be about 80.  The secret primes
s_j have floor(2048/n) bits and the subgroups they span are what a discrete logarithm attack
would work in (Pohlig-Hellman), so keep n small: n <= 12 keeps each s_j above 160 bits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import (
    SMALL_PRIMES,
    ChallengeResponseScheme,
    KeysdirSchemeFactory,
    RandBits,
    check_range,
    check_subgroup,
    dsa_fields,
    is_probable_prime,
    jacobi,
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
    "MVClientKey",
    "MVParameters",
    "MVScheme",
    "MVSchemeFactory",
    "MVServerKey",
    "bundle_pem",
    "client_key_pem",
    "generate_mv",
    "keygen",
    "load_bundle",
    "load_client_key",
    "load_server_key",
    "recover_primes",
    "reissue",
    "server_key_pem",
    "write_bundle",
    "write_client_key",
    "write_server_key",
]

DEFAULT_BITS = 2048
"""Our default modulus p (see the module docstring for the measurement)."""
REFERENCE_BITS = 256
"""The reference's default modulus p."""
DEFAULT_CLIENTS = 3
MIN_BITS = 256
MAX_BITS = 4096
MIN_PRIME_BITS = 16
"""Smallest size of the primes s_j (floor(bits / n))."""


@attrs.frozen
class MVServerKey:
    """A server's MV values: p, q, encryption key E and decryption keys gbar, ghat."""

    p: int
    q: int
    e: int = attrs.field(repr=False)
    gbar: int = attrs.field(repr=False)
    ghat: int = attrs.field(repr=False)
    public_value_recomputed: bool = attrs.field(default=False, eq=False)
    """True when read from PKCS#8, where ghat became E^gbar mod p (interop.md 6.4)."""


@attrs.frozen
class MVClientKey:
    """A client's MV values: p and the decryption keys xbar, xhat."""

    p: int
    xbar: int = attrs.field(repr=False)
    xhat: int = attrs.field(repr=False)
    public_value_recomputed: bool = attrs.field(default=False, eq=False)
    """True when read from PKCS#8, where xhat became 1 (interop.md 6.4)."""


@attrs.frozen
class MVParameters:
    """The trusted authority's MV system: p, q, g, master key A, group key b, the client
    keys 1..n, the current server key and the 1-based indices of the revoked clients.
    ``primes`` (s_1..s_n) is None when unknown (then no new server key can be made)."""

    p: int
    q: int
    g: int
    a: int = attrs.field(repr=False)
    b: int = attrs.field(repr=False)
    clients: tuple[MVClientKey, ...] = attrs.field(repr=False)
    server: MVServerKey = attrs.field(repr=False)
    revoked: frozenset[int]
    primes: tuple[int, ...] | None = attrs.field(default=None, repr=False)

    def client(self, index: int) -> MVClientKey:
        """Client key ``index`` (1-based, as ntp-keygen numbers them)."""
        if not 1 <= index <= len(self.clients):
            raise IndexError(f"no MV client key {index} (1 to {len(self.clients)})")
        return self.clients[index - 1]

    @property
    def active(self) -> frozenset[int]:
        """Indices of the clients the current server key serves."""
        return frozenset(range(1, len(self.clients) + 1)) - self.revoked

    def server_key(self, revoked: Iterable[int]) -> MVServerKey:
        """A server key serving every client except ``revoked`` (1-based, at least one: with
        none, s = q and E = gbar = ghat = 1).  ValueError when the primes are unknown."""
        revoked = frozenset(revoked)
        if self.primes is None:
            raise ValueError("the primes s_j are unknown: cannot make a new MV server key")
        if not revoked or not revoked <= frozenset(range(1, len(self.primes) + 1)):
            raise ValueError("revoke at least one client, by its index 1..n")
        s = self.q // math.prod(self.primes[j - 1] for j in revoked)
        return MVServerKey(p=self.p, q=self.q, e=pow(self.a, s, self.p),
                           gbar=pow(self.g, s, self.p), ghat=pow(self.g, s * self.b % self.q,
                                                                 self.p))

    def with_revoked(self, revoked: Iterable[int]) -> MVParameters:
        """The system with a new server key revoking exactly ``revoked`` (activating all
        other clients); client keys are unchanged."""
        revoked = frozenset(revoked)
        return attrs.evolve(self, server=self.server_key(revoked), revoked=revoked)


# --- generation ---------------------------------------------------------------------------

_SIEVE_WINDOW = 1 << 15


def _search_last_prime(others: list[int], bits: int, randbits: RandBits) -> int | None:
    """A prime s of ``bits`` bits, not in ``others``, with 2*prod(others)*s + 1 prime; None
    when a small range has none."""
    c = 2 * math.prod(others)
    low, high = 1 << (bits - 1), 1 << bits
    span = (high - low) // 2
    sieve_primes = [(ell, (ell + 1) // 2, pow(c % ell, -1, ell) if c % ell else None)
                    for ell in SMALL_PRIMES[1:]]
    small_range = span <= 4 * _SIEVE_WINDOW
    start = low + 1
    while True:
        if small_range:
            if start >= high:
                return None
            s0 = start
            start += 2 * _SIEVE_WINDOW
        else:
            s0 = low + 1 + 2 * (randbits(bits) % (span - _SIEVE_WINDOW))
        window = min(_SIEVE_WINDOW, (high - s0 + 1) // 2)
        marks = bytearray([1]) * window
        for ell, half, c_inverse in sieve_primes:
            if ell < low:  # s itself divisible by ell (s > ell, so s is composite)
                first = (-s0 * half) % ell
                marks[first::ell] = bytes(len(range(first, window, ell)))
            if c_inverse is not None:  # c*s + 1 divisible by ell
                first = ((-c_inverse - s0) * half) % ell
                marks[first::ell] = bytes(len(range(first, window, ell)))
        index = marks.find(1)
        while index != -1:
            s = s0 + 2 * index
            if s not in others and is_probable_prime(s, rng=randbits):
                p = c * s + 1
                if pow(2, p - 1, p) == 1 and is_probable_prime(p, rng=randbits):
                    return s
            index = marks.find(1, index + 1)


def _distinct_prime(bits: int, exclude: list[int], randbits: RandBits) -> int:
    for _ in range(1000):
        s = random_prime(bits, randbits)
        if s not in exclude:
            return s
    raise ValueError(f"cannot find enough distinct {bits}-bit primes")


def _mv_primes(bits: int, count: int, randbits: RandBits) -> list[int]:
    """Steps 1-2: ``count`` distinct primes of ``bits`` bits whose product q gives a prime
    p = 2q + 1."""
    others: list[int] = []
    for _ in range(count - 1):
        others.append(_distinct_prime(bits, others, randbits))
    retry = 0
    while True:
        last = _search_last_prime(others, bits, randbits)
        if last is not None:
            return [*others, last]
        retry += 1
        index = retry % len(others)
        others[index] = _distinct_prime(bits, others[:index] + others[index + 1:], randbits)


def _generator(p: int, q: int, primes: list[int], randbits: RandBits) -> int:
    """Step 3: g of exactly |p| - 1 bits mod p with gcd(g, p - 1) = 1 and g^q = 1, and (ours)
    of order exactly q."""
    bits = p.bit_length() - 1
    while True:
        g = random_top_bits(bits, randbits) % p
        if g < 2 or math.gcd(g, p - 1) != 1 or jacobi(g, p) != 1 or pow(g, q, p) != 1:
            continue
        if all(pow(g, q // s, p) != 1 for s in primes):
            return g


def _coefficients(roots: list[int], q: int) -> list[int]:
    """Step 5: coefficients a_0..a_n of prod (x - x_j) mod q, by the reference's in-place
    expansion."""
    n = len(roots)
    a = [1] * (n + 1)
    for j in range(1, n + 1):
        carry = 0
        for i in range(j):
            old = a[i]
            a[i] = (q - a[i] * roots[j - 1] % q + carry) % q
            carry = old
    return a


def generate_mv(bits: int = DEFAULT_BITS, n_clients: int = DEFAULT_CLIENTS,
                rng: RandBits | None = None, *,
                revoked: Iterable[int] | None = None) -> MVParameters:
    """A new MV system (ntp-keygen -V ``n_clients``; interop.md 6.3 steps 1-11, see the
    module docstring) with a modulus of about ``bits`` bits and ``n_clients`` client keys;
    the server key revokes ``revoked`` (default: client n, as the reference).  One exchange
    per active client is run as a self-test."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"MV modulus of {bits} bits is out of range ({MIN_BITS} to "
                         f"{MAX_BITS})")
    if n_clients < 2:
        raise ValueError("MV needs at least 2 client keys (client n is revoked)")
    prime_bits = bits // n_clients
    if prime_bits < MIN_PRIME_BITS:
        raise ValueError(f"{n_clients} MV clients leave {prime_bits}-bit primes at {bits} "
                         f"bits (at least {MIN_PRIME_BITS})")
    randbits = rng if rng is not None else system_randbits
    n = n_clients
    primes = _mv_primes(prime_bits, n, randbits)
    q = math.prod(primes)
    p = 2 * q + 1
    g = _generator(p, q, primes, randbits)
    q_bits = q.bit_length()
    roots: list[int] = []
    while len(roots) < n:
        x = random_top_bits(q_bits, randbits) % q
        if x > 1 and math.gcd(x, q) == 1 and x not in roots:
            roots.append(x)
    a = _coefficients(roots, q)
    for x in roots:
        if sum(a[i] * pow(x, i, q) for i in range(n + 1)) % q:
            raise RuntimeError("MV polynomial self-test failed")
    exponent = sum(a[i] * pow(x, i, q) for x in roots for i in range(n)) % q
    master = pow(g, exponent, p)
    while True:
        b = random_top_bits(q_bits, randbits) % q
        if b > 1 and math.gcd(b, q) == 1:
            break
    b_inverse = pow(b, -1, q)
    powers = [pow(x, n, q) for x in roots]
    total = sum(powers)
    clients = tuple(
        MVClientKey(p=p, xbar=b_inverse * (total - powers[j]) % q,
                    xhat=powers[j] * ((q + primes[j]) // primes[j]) % q)
        for j in range(n))
    revoked_set = frozenset(revoked) if revoked is not None else frozenset({n})
    system = MVParameters(p=p, q=q, g=g, a=master, b=b, clients=clients,
                          server=MVServerKey(p=p, q=q, e=1, gbar=1, ghat=1),
                          revoked=revoked_set, primes=tuple(primes))
    system = system.with_revoked(revoked_set)
    for index in system.active:
        scheme = MVScheme(server=system.server, client=system.client(index), rng=randbits)
        challenge = scheme.make_challenge()
        if not scheme.verify_response(challenge, scheme.respond(challenge)):
            raise RuntimeError(f"MV self-test failed for client {index}")
    return system


def recover_primes(q: int, b: int, clients: Iterable[MVClientKey]) -> tuple[int, ...] | None:
    """The primes s_1..s_n from the group key b and the client keys (n >= 3), or None.

    T_j = xhat_j + b xbar_j = sum_i x_i^n + x_j^n q/s_j (mod q), so T_j - T_k is divisible by
    every s_i except s_j and s_k: gcd(T_j - T_k, q) = q/(s_j s_k), and
    s_j = gcd(s_j s_k, s_j s_l)."""
    keys = list(clients)
    n = len(keys)
    if n < 3 or q < 2:
        return None
    totals = [(key.xhat + b * key.xbar) % q for key in keys]

    def pair(j: int, k: int) -> int:
        common = math.gcd((totals[j] - totals[k]) % q, q)
        return q // common if common else 0

    primes = []
    for j in range(n):
        k, m = [i for i in range(n) if i != j][:2]
        primes.append(math.gcd(pair(j, k), pair(j, m)))
    if any(s < 2 for s in primes) or len(set(primes)) != n or math.prod(primes) != q:
        return None
    return tuple(primes)


def _serves(server: MVServerKey, client: MVClientKey) -> bool:
    """True when the server key serves this client: gbar^xhat ghat^xbar E = 1 (mod p)."""
    p = server.p
    return pow(server.gbar, client.xhat, p) * pow(server.ghat, client.xbar, p) * server.e \
        % p == 1


# --- files --------------------------------------------------------------------------------


def _server_pem(server: MVServerKey, password: str | bytes | None) -> bytes:
    return keyfiles.dsa_traditional_pem(server.p, server.q, server.e, server.ghat,
                                        server.gbar, password=password)


def server_key_pem(server: MVServerKey | MVParameters,
                   password: str | bytes | None = None) -> bytes:
    """Traditional PEM {p, q, g = E, pub = ghat, priv = gbar}, encrypted when ``password``."""
    if isinstance(server, MVParameters):
        server = server.server
    return _server_pem(server, password)


def client_key_pem(client: MVClientKey) -> bytes:
    """Unencrypted traditional PEM {p, q = 1, g = 1, pub = xhat, priv = xbar}."""
    return keyfiles.dsa_traditional_pem(client.p, 1, 1, client.xhat, client.xbar)


def bundle_pem(system: MVParameters, password: str | bytes | None = None) -> bytes:
    """The TA bundle: 2 + n traditional PEM keys (TA {p, q, g, pub = b, priv = A}, server,
    clients 1..n), each encrypted with ``password`` when given (interop.md 6.3 step 12)."""
    blocks = [keyfiles.dsa_traditional_pem(system.p, system.q, system.g, system.b, system.a,
                                           password=password),
              _server_pem(system.server, password)]
    blocks.extend(keyfiles.dsa_traditional_pem(system.p, 1, 1, client.xhat, client.xbar,
                                               password=password)
                  for client in system.clients)
    return b"".join(blocks)


def write_bundle(directory: str | os.PathLike[str], system: MVParameters, group: str,
                 filestamp: int, password: str | bytes, *, host: str | None = None,
                 when: float | None = None) -> Path:
    """Write ``ntpkey_MVta_<group>.<filestamp>`` (mode 0600, encrypted) linked as
    ``ntpkey_mvta_<host>`` (and ``ntpkey_mvta_<group>`` when the group differs)."""
    pem = bundle_pem(system, password)
    path = keyfiles.write_key_file(directory, "MVta", group, filestamp, pem, "mvta",
                                   host or group, when=when)
    if host is not None and host != group:
        keyfiles.write_key_file(directory, "MVta", group, filestamp, pem, "mvta", group,
                                when=when)
    return path


def write_server_key(directory: str | os.PathLike[str], server: MVServerKey | MVParameters,
                     group: str, filestamp: int, password: str | bytes, *,
                     when: float | None = None) -> Path:
    """Write ``ntpkey_mvkey_<group>.<filestamp>`` (encrypted) linked as
    ``ntpkey_mvkey_<group>``; use the bundle's filestamp (clients require equality)."""
    return keyfiles.write_key_file(directory, "mvkey", group, filestamp,
                                   server_key_pem(server, password), "mvkey", group, when=when)


def write_client_key(directory: str | os.PathLike[str], client: MVClientKey, group: str,
                     filestamp: int, *, when: float | None = None) -> Path:
    """Write ``ntpkey_mvpar_<group>.<filestamp>`` linked as ``ntpkey_mvpar_<group>``."""
    return keyfiles.write_key_file(directory, "mvpar", group, filestamp,
                                   client_key_pem(client), "mvpar", group, when=when)


def _traditional(key_file: keyfiles.KeyFile) -> bool:
    return all(label == "DSA PRIVATE KEY" for label in key_file.pem_labels)


def load_bundle(path: str | os.PathLike[str],
                password: str | bytes | None) -> tuple[MVParameters, int | None]:
    """(system, filestamp) of a TA bundle (2 + n keys).  The revoked clients are those the
    bundle's server key does not serve; the primes are recovered when possible
    (:func:`recover_primes`)."""
    key_file = read_identity_file(path, password, ("mvta",))
    keys = key_file.private_keys
    if len(keys) < 4:
        raise KeyFileError(key_file.path, f"an MV bundle has 2 + n keys (n >= 2), not "
                                          f"{len(keys)}")
    p, q, g, master, b = dsa_fields(keys[0], key_file.path)
    sp, sq, e, gbar, ghat = dsa_fields(keys[1], key_file.path)
    if p < 5 or not p & 1 or q < 2 or (sp, sq) != (p, q):
        raise KeyFileError(key_file.path, "not an MV bundle (TA and server keys differ)")
    recomputed = not _traditional(key_file)
    server = MVServerKey(p=p, q=q, e=e, gbar=gbar, ghat=ghat,
                         public_value_recomputed=recomputed)
    clients = []
    for key in keys[2:]:
        cp, _, _, xbar, xhat = dsa_fields(key, key_file.path)
        if cp != p:
            raise KeyFileError(key_file.path, "not an MV bundle (client key modulus differs)")
        clients.append(MVClientKey(p=p, xbar=xbar, xhat=xhat,
                                   public_value_recomputed=recomputed))
    revoked = frozenset(j for j, client in enumerate(clients, 1) if not _serves(server, client))
    return MVParameters(p=p, q=q, g=g, a=master, b=b, clients=tuple(clients), server=server,
                        revoked=revoked, primes=recover_primes(q, b, clients)), \
        key_file.filestamp


def reissue(bundle: str | os.PathLike[str], password: str | bytes | None,
            revoked: Iterable[int]) -> tuple[MVParameters, int | None]:
    """Load a bundle and make a new server key revoking exactly ``revoked``: returns the new
    system and the bundle's filestamp, to write the bundle and the server key with (the
    client files keep working).  ValueError when the bundle's primes cannot be recovered."""
    system, filestamp = load_bundle(bundle, password)
    return system.with_revoked(revoked), filestamp


def load_server_key(path: str | os.PathLike[str],
                    password: str | bytes | None) -> tuple[MVServerKey, int | None]:
    """(server key, filestamp) from the first key of an ``mvkey`` file (as ntpd)."""
    key_file = read_identity_file(path, password, ("mvkey",))
    p, q, e, gbar, ghat = dsa_fields(key_file.private_key, key_file.path)
    if p < 5 or not p & 1 or q < 2 or not 0 < e < p:
        raise KeyFileError(key_file.path, "not an MV server key (bad p, q or E)")
    return MVServerKey(p=p, q=q, e=e, gbar=gbar, ghat=ghat,
                       public_value_recomputed="DSA PRIVATE KEY" != key_file.pem_labels[0]), \
        key_file.filestamp


def load_client_key(path: str | os.PathLike[str]) -> tuple[MVClientKey, int | None]:
    """(client key, filestamp) of an ``mvpar`` file (unencrypted)."""
    key_file = read_identity_file(path, None, ("mvpar",))
    p, _, _, xbar, xhat = dsa_fields(key_file.private_key, key_file.path)
    if p < 5 or not p & 1:
        raise KeyFileError(key_file.path, "not an MV client key (bad p)")
    return MVClientKey(p=p, xbar=xbar, xhat=xhat,
                       public_value_recomputed="DSA PRIVATE KEY" != key_file.pem_labels[0]), \
        key_file.filestamp


def keygen(context: Any, value: Any) -> Path:
    """The ``ntpauto keygen -V N`` step: generate an MV system with ``value`` = N client keys
    of ``context.modulus`` bits (our default when falsy) and write the encrypted bundle for
    ``context.group`` (link ``ntpkey_mvta_<context.host>``).  The server key and client keys
    are exported with ``keygen -q`` / ``-e`` (the 2nd and 3rd keys of the bundle)."""
    bits = getattr(context, "modulus", None) or DEFAULT_BITS
    count = int(value) if value else DEFAULT_CLIENTS
    _say(context, f"Generating MV keys ({bits} bits, {count} client keys)...")
    system = generate_mv(bits, count)
    path = write_bundle(context.keysdir, system, context.group, context.filestamp,
                        context.password, host=context.host)
    _say(context, f"ntpkey_mvta_{context.host}->{path.name}")
    return path


def _say(context: Any, text: str) -> None:
    stream = getattr(context, "stderr", None)
    if stream is not None:
        stream.write(text + "\n")


# --- scheme -------------------------------------------------------------------------------


class MVScheme(ChallengeResponseScheme):
    """MV bound to a server key (``server``: :class:`MVServerKey`) and/or a client key
    (``client``: :class:`MVClientKey`)."""

    name: ClassVar[str] = "mv"
    status_bit: ClassVar[int] = 0x80
    message_code: ClassVar[int] = 9
    response_integers: ClassVar[int] = 3
    server_kind: ClassVar[str] = "mvkey"
    client_kind: ClassVar[str] = "mvpar"

    # The module's file readers, as the base class expects them.
    load_server_key = staticmethod(load_server_key)
    load_client_parameters = staticmethod(load_client_key)

    def _server_modulus(self) -> int:
        return self.server.p

    def _client_modulus(self) -> int:
        return self.client.p

    def _respond(self, r: int) -> tuple[int, ...]:
        key = self.server
        q_bits = key.q.bit_length()
        while True:
            k = random_top_bits(q_bits, self.rng) % key.q
            if math.gcd(k, key.q) == 1:
                break
        e_table, gbar_table, ghat_table = self._tables()
        y = e_table.power(k) * r % key.p
        return y, gbar_table.power(k), ghat_table.power(k)

    def _tables(self) -> tuple[FixedBase, ...]:
        key = self.server
        bits = key.q.bit_length()
        return tuple(fixed_base(base, key.p, bits) for base in (key.e, key.gbar, key.ghat))

    def _check_response(self, integers: tuple[int, ...]) -> None:
        y, big_a, big_b = integers
        p = self.client.p
        check_range("MV y", y, 1, p)
        check_subgroup("MV A", big_a, p, (p - 1) // 2)
        check_subgroup("MV B", big_b, p, (p - 1) // 2)

    def _verify(self, r: int, integers: tuple[int, ...]) -> bool:
        y, big_a, big_b = integers
        key = self.client
        p = key.p
        z = pow(big_a, key.xhat, p) * pow(big_b, key.xbar, p) * y % p
        return z == r


@implementer(IPlugin, IIdentitySchemeFactory)
class MVSchemeFactory(KeysdirSchemeFactory):
    """Builds :class:`MVScheme` from ``ntpkey_mvkey_<group>`` / ``ntpkey_mvpar_<group>``."""

    scheme_name: ClassVar[str] = "mv"
    help_text: ClassVar[str] = (
        "MV (Mu-Varadharajan) identity: a trusted authority gives servers an encryption key "
        "(ntpkey_mvkey_GROUP, encrypted with PASSWORD) and each client its own key "
        "(ntpkey_mvpar_GROUP); client keys can be revoked by a new server key. Default "
        "2048 bits; the reference makes 256.")
    status_bit: ClassVar[int] = MVScheme.status_bit
    message_code: ClassVar[int] = MVScheme.message_code
    scheme_class: ClassVar[Any] = MVScheme
