"""GQ, the Guillou-Quisquater identity scheme (RFC 5906 appendix F; message code 8, status
bit 0x40).

reference: interop.md 6.2 (exchange, key generation, file layout), 6.4 (certificate
extension), 7.1 (files).  Values live in an RSA "cuckoo" structure: n = an RSA modulus,
**e field = group key b**, **p field = server private key u**, **q field = public key
v = (u^-1)^b mod n**, d = dmp1 = dmq1 = iqmp = 1.  The client parameter file has the same
layout with p = q = 1: clients get n and b from it and v from the server's certificate
(X.509v3 Subject Key Identifier), so each server of a group may have its own u and v.

Exchange (challenge r of V octets, L = octets of n):

* server: k = random mod n; y = k*u^r mod n; x = k^b mod n; response = DER SEQUENCE
  { INTEGER y, INTEGER h(x) };
* client: z = v^r * y^b mod n; accepted iff h(z) equals the second INTEGER
  (v^r (k u^r)^b = u^(-rb) k^b u^(rb) = k^b).  Without v ("bad or missing group key") no
  response verifies.

Checks (ours; the reference has none).  The client accepts only a y that is a unit other
than +-1 (1 < y < n - 1, gcd(y, n) = 1), a digest below 2^128, and a v (from the
certificate) of the same kind, before any power: the reference accepts {y = 0, h(0)} for
every challenge from anybody (z = 0), {n, h(0)} likewise, {1, h(v^r)} and {n - 1, h(+-v^r)}
from anybody who knows n and v but neither b nor u, a multiple of a factor of n, and y + n
for y.  The server answers only an L-octet challenge with 0 < r < n: the reference draws k
from 8*V bits, so two 1-octet challenges {1} give u away (y1/y2 = k1/k2 picks the pair out
of 128^2), and with u anybody answers {u^r, h(1)} (k = 1).  Our k is uniform mod n
(:func:`~ntpauto.identity.common.random_below`), drawn again in the rare case y would fail
the client's check.

The client takes v from the peer's trusted certificate with :meth:`GQScheme.for_peer`.  The
reference reads the Subject Key Identifier by skipping the first 2 octets of its extnValue,
which is right only for v of at most 127 octets (n up to about 1016 bits); we read the DER
correctly (``CertInfo.gq_key_correct``) and fall back to the reference's reading.  So a
reference *client* cannot verify a GQ server whose n is longer than 1016 bits: use ``-b 1016``
or less for GQ groups with reference clients.  GQ is unaffected by the PKCS#8 caveat (the RSA
structure keeps every field); our files are PKCS#8 (``keyfiles.rsa_cuckoo_pem``), encrypted
server keys with ``cryptography``'s BestAvailableEncryption.

Sizes: the reference's default is 256 bits; ours 2048 (``cryptography`` makes the modulus for
1024 bits and up; smaller moduli are the product of two primes found here).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import (
    DIGEST_BOUND,
    ChallengeResponseScheme,
    IdentityValueError,
    KeysdirSchemeFactory,
    RandBits,
    bignum_digest,
    check_range,
    check_unit,
    random_below,
    random_prime,
    read_identity_file,
    rsa_fields,
    system_randbits,
)
from ntpauto.identity.fixedbase import FixedBase, fixed_base
from ntpauto.interfaces import IIdentitySchemeFactory
from ntpauto.pki import keyfiles
from ntpauto.pki.keyfiles import KeyFileError

__all__ = [
    "DEFAULT_BITS",
    "REFERENCE_BITS",
    "GQClientParameters",
    "GQParameters",
    "GQScheme",
    "GQSchemeFactory",
    "client_parameters_pem",
    "generate_gq",
    "keygen",
    "load_client_parameters",
    "load_server_key",
    "peer_key_from_certificate",
    "server_key_pem",
    "write_client_parameters",
    "write_server_key",
]

DEFAULT_BITS = 2048
"""Our default modulus n."""
REFERENCE_BITS = 256
"""The reference's default modulus n."""
MIN_BITS = 256
MAX_BITS = 8192
REFERENCE_SKI_MAX_BITS = 1016
"""Largest n whose v the reference reads correctly from the Subject Key Identifier."""


@attrs.frozen
class GQParameters:
    """A GQ server's values: modulus n, group key b, private key u, public key v."""

    n: int
    b: int = attrs.field(repr=False)
    u: int = attrs.field(repr=False)
    v: int

    def client_parameters(self) -> GQClientParameters:
        """What the clients get (ntp-keygen -e): n and b."""
        return GQClientParameters(n=self.n, b=self.b)


@attrs.frozen
class GQClientParameters:
    """The clients' GQ values: modulus n and group key b (v comes from the certificate)."""

    n: int
    b: int = attrs.field(repr=False)


def _modulus(bits: int, rng: RandBits) -> int:
    if bits >= 1024:
        return rsa.generate_private_key(65537, bits).private_numbers().public_numbers.n
    while True:
        p = random_prime(bits - bits // 2, rng, top_two=True)
        q = random_prime(bits // 2, rng, top_two=True)
        if p != q and (p * q).bit_length() == bits:
            return p * q


def generate_gq(bits: int = DEFAULT_BITS, rng: RandBits | None = None) -> GQParameters:
    """New GQ values (ntp-keygen -G; interop.md 6.2): n an RSA modulus of ``bits``
    bits, b and u random of |n| bits mod n (u invertible), v = (u^-1)^b mod n, then one
    protocol round as a self-test.  ``rng`` draws b and u (and the primes below 1024 bits)."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"GQ modulus of {bits} bits is out of range ({MIN_BITS} to "
                         f"{MAX_BITS})")
    randbits = rng if rng is not None else system_randbits
    n = _modulus(bits, randbits)
    while (b := randbits(bits) % n) < 2:
        pass
    while (u := randbits(bits) % n) < 2 or math.gcd(u, n) != 1:
        pass
    params = GQParameters(n=n, b=b, u=u, v=pow(pow(u, -1, n), b, n))
    scheme = GQScheme(server=params, client=params.client_parameters(), peer_key=params.v,
                      rng=randbits)
    challenge = scheme.make_challenge()
    if not scheme.verify_response(challenge, scheme.respond(challenge)):
        raise RuntimeError("GQ self-test failed")
    return params


def peer_key_from_certificate(certificate: Any) -> int | None:
    """v from a ``CertInfo``'s Subject Key Identifier: the correct DER reading, else the
    reference's (skip 2 octets); None when the certificate has no GQ key."""
    if certificate is None:
        return None
    correct = getattr(certificate, "gq_key_correct", None)
    if correct:
        return correct
    return getattr(certificate, "gq_key", None) or None


# --- files --------------------------------------------------------------------------------


def server_key_pem(params: GQParameters, password: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM of the RSA cuckoo {n, e = b, d = 1, p = u, q = v, 1, 1, 1}, encrypted with
    ``password`` when given."""
    return keyfiles.rsa_cuckoo_pem(params.n, params.b, 1, params.u, params.v, 1, 1, 1,
                                   password=password)


def client_parameters_pem(params: GQParameters | GQClientParameters) -> bytes:
    """Unencrypted PKCS#8 PEM of {n, e = b, d = p = q = dmp1 = dmq1 = iqmp = 1}, as the
    reference's -e export."""
    return keyfiles.rsa_cuckoo_pem(params.n, params.b, 1, 1, 1, 1, 1, 1)


def write_server_key(directory: str | os.PathLike[str], params: GQParameters, group: str,
                     filestamp: int, password: str | bytes, *, host: str | None = None,
                     when: float | None = None) -> Path:
    """Write ``ntpkey_GQkey_<group>.<filestamp>`` (mode 0600, encrypted) linked as
    ``ntpkey_gqkey_<host>`` and, when the group differs, ``ntpkey_gqkey_<group>``."""
    pem = server_key_pem(params, password)
    path = keyfiles.write_key_file(directory, "GQkey", group, filestamp, pem, "gqkey",
                                   host or group, when=when)
    if host is not None and host != group:
        keyfiles.write_key_file(directory, "GQkey", group, filestamp, pem, "gqkey", group,
                                when=when)
    return path


def write_client_parameters(directory: str | os.PathLike[str],
                            params: GQParameters | GQClientParameters, group: str,
                            filestamp: int, *, when: float | None = None) -> Path:
    """Write ``ntpkey_gqpar_<group>.<filestamp>`` linked as ``ntpkey_gqpar_<group>``."""
    return keyfiles.write_key_file(directory, "gqpar", group, filestamp,
                                   client_parameters_pem(params), "gqpar", group, when=when)


def load_server_key(path: str | os.PathLike[str],
                    password: str | bytes | None) -> tuple[GQParameters, int | None]:
    """(values, filestamp) of a GQ server key file; KeyFileError when its fields do not make
    a GQ key (v must be (u^-1)^b mod n)."""
    key_file = read_identity_file(path, password, ("gqkey",))
    n, b, _, u, v = rsa_fields(key_file.private_key, key_file.path)
    if n < 3 or b < 1 or not 1 < u < n or not 0 < v < n or math.gcd(u, n) != 1 \
            or pow(pow(u, -1, n), b, n) != v:
        raise KeyFileError(key_file.path, "not a GQ server key (v is not (u^-1)^b mod n)")
    return GQParameters(n=n, b=b, u=u, v=v), key_file.filestamp


def load_client_parameters(path: str | os.PathLike[str]
                           ) -> tuple[GQClientParameters, int | None]:
    """(values, filestamp) of a GQ client parameter file (unencrypted)."""
    key_file = read_identity_file(path, None, ("gqpar",))
    n, b, _, _, _ = rsa_fields(key_file.private_key, key_file.path)
    if n < 3 or b < 1:
        raise KeyFileError(key_file.path, "not GQ client parameters (bad n or b)")
    return GQClientParameters(n=n, b=b), key_file.filestamp


def keygen(context: Any, value: Any = None) -> Path:
    """The ``ntpauto keygen -G`` step: generate GQ values of ``context.modulus`` bits (our
    default when falsy) and write the encrypted server key for ``context.group`` (link
    ``ntpkey_gqkey_<context.host>``).  Run it before the certificate step, which puts v in
    the Subject Key Identifier."""
    bits = getattr(context, "modulus", None) or DEFAULT_BITS
    _say(context, f"Generating GQ keys ({bits} bits)...")
    params = generate_gq(bits)
    path = write_server_key(context.keysdir, params, context.group, context.filestamp,
                            context.password, host=context.host)
    _say(context, f"ntpkey_gqkey_{context.host}->{path.name}")
    return path


def _say(context: Any, text: str) -> None:
    stream = getattr(context, "stderr", None)
    if stream is not None:
        stream.write(text + "\n")


# --- scheme -------------------------------------------------------------------------------


class GQScheme(ChallengeResponseScheme):
    """GQ bound to a server key (``server``: :class:`GQParameters`) and/or client parameters
    (``client``: :class:`GQClientParameters`); ``peer_key`` is the v used to verify, set
    from the peer's certificate by :meth:`for_peer`."""

    name: ClassVar[str] = "gq"
    status_bit: ClassVar[int] = 0x40
    message_code: ClassVar[int] = 8
    response_integers: ClassVar[int] = 2
    filestamp_at_least: ClassVar[bool] = True
    server_kind: ClassVar[str] = "gqkey"
    client_kind: ClassVar[str] = "gqpar"

    def __init__(self, *, peer_key: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.peer_key = peer_key

    # The module's file readers, as the base class expects them.
    load_server_key = staticmethod(load_server_key)
    load_client_parameters = staticmethod(load_client_parameters)

    def with_peer_key(self, v: int | None) -> GQScheme:
        """A copy verifying with the public key ``v``."""
        return GQScheme(server=self.server, client=self.client,
                        server_filestamp=self.server_filestamp,
                        client_filestamp=self.client_filestamp, files=self.files,
                        rng=self.rng, peer_key=v)

    def for_peer(self, certificate: Any) -> GQScheme:
        """A copy verifying with v from ``certificate``'s Subject Key Identifier (see
        :func:`peer_key_from_certificate`)."""
        return self.with_peer_key(peer_key_from_certificate(certificate))

    def _server_modulus(self) -> int:
        return self.server.n

    def _client_modulus(self) -> int:
        return self.client.n

    def _respond(self, r: int) -> tuple[int, ...]:
        key = self.server
        (u_table,) = self._tables()
        u_r = u_table.power(r)
        while True:
            k = random_below(key.n, self.rng)
            y = k * u_r % key.n
            try:
                check_unit("GQ y", y, key.n)  # what every client requires
            except IdentityValueError:
                continue
            return y, bignum_digest(pow(k, key.b, key.n))

    def _tables(self) -> tuple[FixedBase, ...]:
        key = self.server
        return (fixed_base(key.u, key.n, key.n.bit_length()),)

    def _check_response(self, integers: tuple[int, ...]) -> None:
        y, digest = integers
        n = self.client.n
        if not self.peer_key:
            raise IdentityValueError("no GQ key v from the peer's certificate")
        check_unit("GQ v", self.peer_key, n)
        check_unit("GQ y", y, n)
        check_range("GQ h(x)", digest, 0, DIGEST_BOUND)

    def _verify(self, r: int, integers: tuple[int, ...]) -> bool:
        y, digest = integers
        n, b = self.client.n, self.client.b
        z = pow(self.peer_key, r, n) * pow(y, b, n) % n
        return bignum_digest(z) == digest


@implementer(IPlugin, IIdentitySchemeFactory)
class GQSchemeFactory(KeysdirSchemeFactory):
    """Builds :class:`GQScheme` from ``ntpkey_gqkey_<group>`` / ``ntpkey_gqpar_<group>``."""

    scheme_name: ClassVar[str] = "gq"
    help_text: ClassVar[str] = (
        "GQ (Guillou-Quisquater) identity: servers hold n, the group key b and their private "
        "key u (ntpkey_gqkey_GROUP, encrypted with PASSWORD) and carry v in their "
        "certificate; clients hold n and b (ntpkey_gqpar_GROUP). Default 2048 bits; the "
        "reference makes 256 and misreads v above 1016 bits.")
    status_bit: ClassVar[int] = GQScheme.status_bit
    message_code: ClassVar[int] = GQScheme.message_code
    scheme_class: ClassVar[Any] = GQScheme
