"""What the Autokey identity schemes share: digest of a bignum, the challenge codec, primality
testing, file helpers and the common scheme/factory machinery.

reference: interop.md 6 (common part):

* h(X) ("digest-of-bignum") = MD5 of the minimal big-endian octets of X (0 is the empty
  string), the 16-octet digest read as an unsigned big-endian integer -- always MD5,
  whatever ``crypto digest`` says;
* challenge: r = 8*L random bits with the least significant bit forced to 1, reduced mod M
  (M = q for IFF, n for GQ, p for MV; L = octets of M).  The reference writes r left-aligned
  in its L-octet buffer (a bug when r is shorter); we write it as a fixed L-octet big-endian
  integer, which the reference reads correctly.  The responder reads the challenge as an
  unsigned integer over all of its V octets;
* responses are DER ``SEQUENCE { INTEGER ... }`` (2 INTEGERs for IFF and GQ, 3 for MV),
  written and read strictly by :mod:`ntpauto.pki.der` (``encode_der_integers`` and
  ``decode_der_integers`` here are its functions).

Every value received for identity arithmetic is checked before any of it is used (the checks
go before any ``pow`` and before the fixed-base tables), with the helpers :func:`check_range`,
:func:`check_unit` and :func:`check_subgroup`, which raise :class:`IdentityValueError`:

* server side, the challenge must be exactly L octets and 0 < r < M (:func:`decode_challenge`);
  anything else raises the ValueError that the responder turns into an error response.  (The
  reference's server draws its secret nonce k from 8*V bits: a 1-octet challenge gives the
  IFF group key b away in one response, and two give the GQ server key u.)
* client side, a response that is not exactly the expected SEQUENCE, or one of whose
  INTEGERs is outside its range or group (:meth:`ChallengeResponseScheme._check_response`),
  is not verified (False).

Randomness is injectable everywhere as a ``randbits``-like callable (:func:`system_randbits` by
default), so tests can be deterministic.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from zope.interface import implementer

from ntpauto.interfaces import IIdentityScheme
from ntpauto.pki import keyfiles
from ntpauto.pki.der import decode_integers as decode_der_integers
from ntpauto.pki.der import encode_integers as encode_der_integers
from ntpauto.pki.dsa_structure import DSAStructure
from ntpauto.pki.keyfiles import KeyFileError

__all__ = [
    "DIGEST_BOUND",
    "SMALL_PRIMES",
    "ChallengeResponseScheme",
    "IdentitySchemeError",
    "IdentityValueError",
    "InvalidIdentityArguments",
    "KeysdirSchemeFactory",
    "MissingKeyError",
    "NoExchangeScheme",
    "RandBits",
    "UnknownIdentityScheme",
    "bignum_bytes",
    "bignum_digest",
    "challenge_value",
    "check_range",
    "check_subgroup",
    "check_unit",
    "decode_challenge",
    "decode_der_integers",
    "dsa_fields",
    "encode_challenge",
    "encode_der_integers",
    "file_present",
    "is_probable_prime",
    "jacobi",
    "link_path",
    "make_challenge",
    "octet_length",
    "prepare_scheme",
    "parse_keysdir_argstring",
    "random_below",
    "random_prime",
    "random_top_bits",
    "read_identity_file",
    "rsa_fields",
]

RandBits = Callable[[int], int]
"""A ``random.getrandbits``-like source: ``rng(k)`` returns k random bits as an int."""


class MissingKeyError(ValueError):
    """The scheme lacks the key or parameters this operation needs (e.g. ``respond`` without
    the server key); a ValueError, so the responder answers with an error response."""


class IdentityValueError(ValueError):
    """A value received for identity arithmetic is outside its range or group (raised by
    :func:`check_range`, :func:`check_unit`, :func:`check_subgroup` and
    :func:`decode_challenge`).  A ValueError, so ``respond`` refuses with it as the interface
    requires; ``verify_response`` turns it into False.  The message names the value, never
    its digits (a modulus may be a group secret)."""


class IdentitySchemeError(Exception):
    """Base of the registry's errors (unknown scheme, bad argument string)."""


class UnknownIdentityScheme(IdentitySchemeError, LookupError):
    """No identity scheme plugin has this name."""


class InvalidIdentityArguments(IdentitySchemeError, ValueError):
    """The argument string of ``--ident SCHEME:ARGS`` is not what the scheme takes."""


def system_randbits(k: int) -> int:
    """``secrets.randbits`` as a module-level function, the default randomness: a scheme
    holding it pickles (the identity worker process receives the server schemes so), which
    a bound method of ``secrets``' SystemRandom does not."""
    return secrets.randbits(k)


def _rng(rng: RandBits | None) -> RandBits:
    return rng if rng is not None else system_randbits


# --- integers and digests ---------------------------------------------------------------


def prepare_scheme(scheme: Any) -> None:
    """Build ``scheme``'s response tables now (:meth:`ChallengeResponseScheme.prepare`);
    nothing for a scheme without ``prepare`` (a plugin's)."""
    prepare = getattr(scheme, "prepare", None)
    if prepare is not None:
        prepare()


def octet_length(value: int) -> int:
    """Octets of the minimal big-endian encoding of ``value`` (0 for 0)."""
    return (value.bit_length() + 7) // 8


def bignum_bytes(value: int) -> bytes:
    """The minimal unsigned big-endian octets of ``value`` (OpenSSL BN_bn2bin; 0 -> b'')."""
    if value < 0:
        raise ValueError("negative bignum")
    return value.to_bytes(octet_length(value), "big")


DIGEST_BOUND = 1 << 128
"""Every h(X) is below this: an MD5 digest read as an integer."""


def bignum_digest(value: int) -> int:
    """h(X): MD5 of ``bignum_bytes(X)`` as an unsigned big-endian integer (interop.md 6;
    always MD5)."""
    return int.from_bytes(hashlib.md5(bignum_bytes(value)).digest(), "big")


def random_top_bits(bits: int, rng: RandBits | None = None) -> int:
    """A random integer of exactly ``bits`` bits (most significant bit forced to 1)."""
    if bits < 1:
        raise ValueError("bits must be at least 1")
    return _rng(rng)(bits) | (1 << (bits - 1))


def random_below(modulus: int, rng: RandBits | None = None) -> int:
    """A uniform random integer 0 < k < ``modulus`` (64 extra bits reduced, bias below
    2^-64; 0 drawn again): a nonce with no bit fixed or skewed."""
    if modulus < 2:
        raise ValueError("modulus must be at least 2")
    randbits = _rng(rng)
    while True:
        value = randbits(modulus.bit_length() + 64) % modulus
        if value:
            return value


# --- challenges ---------------------------------------------------------------------------


def challenge_value(modulus: int, rng: RandBits | None = None) -> int:
    """r = (8*L random bits, least significant bit forced to 1) mod ``modulus``, L = octets of
    the modulus (interop.md 6); drawn again in the (rare) case r = 0, which servers
    refuse."""
    if modulus < 2:
        raise ValueError("challenge modulus must be at least 2")
    randbits = _rng(rng)
    while True:
        value = (randbits(8 * octet_length(modulus)) | 1) % modulus
        if value:
            return value


def encode_challenge(value: int, modulus: int) -> bytes:
    """``value`` as a fixed L-octet big-endian integer, L = octets of ``modulus``."""
    if not 0 <= value < modulus:
        raise ValueError("challenge out of range")
    return value.to_bytes(octet_length(modulus), "big")


def make_challenge(modulus: int, rng: RandBits | None = None) -> bytes:
    """A fresh challenge value field for ``modulus``: L octets."""
    return encode_challenge(challenge_value(modulus, rng), modulus)


def decode_challenge(data: bytes, modulus: int) -> int:
    """A challenge read back: exactly L octets (L = octets of ``modulus``), unsigned
    big-endian, 0 < r < ``modulus``; IdentityValueError (a ValueError) for anything else.

    The reference and ntpauto always send L octets.  A shorter challenge is refused because
    the reference's server draws its nonce from 8*V bits (ours no longer does): answering a
    1-octet challenge that way gives the IFF group key away."""
    if not data:
        raise IdentityValueError("empty identity challenge")
    length = octet_length(modulus)
    if len(data) != length:
        longer = "longer" if len(data) > length else "shorter"
        raise IdentityValueError(f"identity challenge of {len(data)} octets is {longer} than "
                                 f"the modulus ({length} octets)")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise IdentityValueError("identity challenge is not below the modulus")
    if value == 0:
        raise IdentityValueError("identity challenge is zero")
    return value


# --- primes -------------------------------------------------------------------------------


def _small_primes(limit: int) -> tuple[int, ...]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return tuple(n for n in range(limit) if sieve[n])


SMALL_PRIMES = _small_primes(1 << 16)
"""The primes below 65536 (trial division and sieving)."""

_TRIAL = SMALL_PRIMES[:300]
_TRIAL_PRODUCT = math.prod(_TRIAL)


def _rounds(bits: int) -> int:
    """Miller-Rabin rounds for a random candidate (OpenSSL 1.1 BN_prime_checks_for_size:
    error below 2^-80 for random inputs)."""
    for limit, rounds in ((3747, 3), (1345, 4), (476, 5), (400, 6), (347, 7), (308, 8),
                          (55, 27)):
        if bits >= limit:
            return rounds
    return 34


def is_probable_prime(n: int, rounds: int | None = None, rng: RandBits | None = None) -> bool:
    """Miller-Rabin with random bases after trial division by small primes; ``rounds``
    defaults to the count OpenSSL uses for random candidates of this size."""
    if n < 2:
        return False
    if n < _TRIAL[-1] ** 2:
        return all(n % p for p in _TRIAL if p * p <= n) or n in _TRIAL
    if math.gcd(n, _TRIAL_PRODUCT) != 1:
        return False
    return _miller_rabin(n, rounds if rounds is not None else _rounds(n.bit_length()), rng)


def _miller_rabin(n: int, rounds: int, rng: RandBits | None = None) -> bool:
    randbits = _rng(rng)
    d, s = n - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    bits = n.bit_length()
    for _ in range(rounds):
        a = 2 + randbits(bits) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int, rng: RandBits | None = None, *, top_two: bool = False) -> int:
    """A random prime of exactly ``bits`` bits (``top_two``: the two top bits set, so a
    product of two such primes has exactly the sum of their sizes)."""
    if bits < 2:
        raise ValueError("a prime needs at least 2 bits")
    randbits = _rng(rng)
    while True:
        candidate = random_top_bits(bits, randbits) | 1
        if top_two and bits >= 2:
            candidate |= 1 << (bits - 2)
        if candidate.bit_length() == bits and is_probable_prime(candidate, rng=randbits):
            return candidate


def jacobi(a: int, n: int) -> int:
    """The Jacobi symbol (a/n) for odd n > 0: 1, -1, or 0 when gcd(a, n) > 1."""
    if n <= 0 or not n & 1:
        raise ValueError("the Jacobi symbol needs an odd positive modulus")
    a %= n
    result = 1
    while a:
        while not a & 1:
            a >>= 1
            if n & 7 in (3, 5):
                result = -result
        a, n = n, a
        if a & 3 == 3 and n & 3 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


# --- checks of received values -----------------------------------------------------------
#
# For the schemes and for plugin authors: call these on every integer received from the
# peer (and on the challenge a server receives) before it meets a key or a pow().


def check_range(name: str, value: int, low: int, high: int) -> None:
    """IdentityValueError unless ``low <= value < high`` (Python's ``range``: the upper bound
    is excluded).  E.g. 0 < y < q is ``check_range("y", y, 1, q)``."""
    if not low <= value < high:
        raise IdentityValueError(f"{name} is out of range")


def check_unit(name: str, value: int, modulus: int) -> None:
    """IdentityValueError unless ``value`` is a unit modulo ``modulus`` other than 1 and
    -1: 1 < value < modulus - 1 and gcd(value, modulus) = 1.  Those excluded are exactly the
    values whose powers are trivial (0, 1, +-1) or that share a factor with the modulus."""
    check_range(name, value, 2, modulus - 1)
    if math.gcd(value, modulus) != 1:
        raise IdentityValueError(f"{name} shares a factor with the modulus")


def check_subgroup(name: str, value: int, p: int, q: int) -> None:
    """IdentityValueError unless ``value`` is an element other than 1 of the subgroup of
    order ``q`` of Z_p* (p prime, q dividing p - 1): 1 < value < p and value^q = 1 (mod p).
    When p = 2q + 1 (a safe prime, as MV's) the subgroup is that of the quadratic residues
    and the Legendre symbol decides, much cheaper than the power."""
    check_range(name, value, 2, p)
    member = jacobi(value, p) == 1 if p == 2 * q + 1 else pow(value, q, p) == 1
    if not member:
        raise IdentityValueError(f"{name} is not in the subgroup of order q")


# --- files --------------------------------------------------------------------------------


def file_present(path: str | os.PathLike[str]) -> bool:
    """True when the ``ntpkey_*`` file or link exists (following links and link stubs)."""
    try:
        keyfiles.resolve_link(path)
    except FileNotFoundError:
        return False
    return True


def read_identity_file(path: str | os.PathLike[str], password: str | bytes | None,
                       kinds: Sequence[str]) -> keyfiles.KeyFile:
    """Read an identity file with :func:`ntpauto.pki.keyfiles.read_key_file` and check that it
    holds private keys and, when its name says, is one of ``kinds`` (e.g. ``("iffkey",)``).
    Raises :class:`~ntpauto.pki.keyfiles.KeyFileError`."""
    key_file = keyfiles.read_key_file(path, password, kind_hint=kinds[0] if kinds else None)
    if key_file.kind is not None and key_file.kind not in kinds:
        raise KeyFileError(key_file.path, f"is a {key_file.type_name} file, expected "
                                          f"{' or '.join(kinds)}")
    if not key_file.private_keys:
        raise KeyFileError(key_file.path, "holds no key")
    return key_file


def dsa_fields(key: Any, path: str | os.PathLike[str]) -> tuple[int, int, int, int, int]:
    """(p, q, g, private x, public y) of a DSA "cuckoo" key as loaded
    (:class:`~ntpauto.pki.dsa_structure.DSAStructure`; for PKCS#8 files the public value is
    g^x mod p, recomputed on load: interop.md 6.4)."""
    if not isinstance(key, DSAStructure):
        raise KeyFileError(path, "not a DSA-structured key")
    return key.p, key.q, key.g, key.priv, key.pub


def rsa_fields(key: Any, path: str | os.PathLike[str]) -> tuple[int, int, int, int, int]:
    """(n, e, d, p, q) of an RSA "cuckoo" key (GQ, interop.md 6.2)."""
    try:
        numbers = key.private_numbers()
        return numbers.public_numbers.n, numbers.public_numbers.e, numbers.d, numbers.p, \
            numbers.q
    except AttributeError:
        raise KeyFileError(path, "not an RSA-structured key") from None


def parse_keysdir_argstring(argstring: str, scheme: str) -> tuple[str, str, str | None]:
    """Split ``KEYSDIR:GROUP[:PASSWORD]`` (the password may contain ':')."""
    parts = argstring.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InvalidIdentityArguments(
            f"{scheme} takes KEYSDIR:GROUP[:PASSWORD], not {argstring!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


# --- schemes ------------------------------------------------------------------------------


@implementer(IIdentityScheme)
class NoExchangeScheme:
    """Base of the schemes without a challenge-response exchange (TC, PC): ``make_challenge``
    and ``respond`` raise ValueError, ``verify_response`` and ``accepts_filestamp`` are
    False, ``for_peer`` returns the scheme itself."""

    name: ClassVar[str] = ""
    status_bit: ClassVar[int] = 0
    message_code: ClassVar[int] = 0
    files: tuple[str, ...] = ()
    can_respond = False
    can_challenge = False
    server_filestamp: int | None = None
    client_filestamp: int | None = None

    def make_challenge(self) -> bytes:
        """No challenge exists: ValueError."""
        raise ValueError(f"the {self.name.upper()} scheme has no identity exchange")

    def verify_response(self, challenge: bytes, response: bytes) -> bool:
        """Always False: no response proves a TC/PC identity."""
        return False

    def respond(self, challenge: bytes) -> bytes:
        """No exchange to answer: ValueError (the responder sends an error response)."""
        raise ValueError(f"the {self.name.upper()} scheme has no identity exchange")

    def accepts_filestamp(self, filestamp: int) -> bool:
        """Always False: there is no identity response."""
        return False

    def for_peer(self, certificate: Any) -> NoExchangeScheme:
        """The scheme itself."""
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@implementer(IIdentityScheme)
class ChallengeResponseScheme:
    """Common part of IFF, GQ and MV: challenge codec, input checks, DER, filestamps.

    Subclasses set the class attributes and implement ``_server_modulus``,
    ``_client_modulus``, ``_respond(r)``, ``_check_response(integers)`` and
    ``_verify(r, integers)``.  ``respond`` hands ``_respond`` only a challenge already
    checked (L octets, 0 < r < M); ``verify_response`` hands ``_verify`` only integers that
    ``_check_response`` passed.  ``server`` and ``client`` are the scheme's parameter
    objects (``None`` when not loaded)."""

    name: ClassVar[str] = ""
    status_bit: ClassVar[int] = 0
    message_code: ClassVar[int] = 0
    response_integers: ClassVar[int] = 2
    filestamp_at_least: ClassVar[bool] = False
    """GQ: the response Filestamp may be newer than the client's (reference: >=)."""

    def __init__(self, *, server: Any = None, client: Any = None,
                 server_filestamp: int | None = None, client_filestamp: int | None = None,
                 files: Sequence[str] = (), rng: RandBits | None = None) -> None:
        self.server = server
        self.client = client
        self.server_filestamp = server_filestamp if server is not None else None
        self.client_filestamp = client_filestamp if client is not None else None
        self.files = tuple(files)
        self.rng = _rng(rng)

    @property
    def can_respond(self) -> bool:
        """True when the server key is loaded."""
        return self.server is not None

    @property
    def can_challenge(self) -> bool:
        """True when the client parameters are loaded."""
        return self.client is not None

    server_kind: ClassVar[str] = ""
    """Link kind of the server key, e.g. 'iffkey' (``ntpkey_iffkey_<group>``)."""
    client_kind: ClassVar[str] = ""
    """Link kind of the client parameters, e.g. 'iffpar'."""

    @classmethod
    def load_server_key(cls, path: str | os.PathLike[str],
                        password: str | bytes | None) -> tuple[Any, int | None]:
        """(server parameters, filestamp) read from ``path``."""
        raise NotImplementedError

    @classmethod
    def load_client_parameters(cls, path: str | os.PathLike[str]) -> tuple[Any, int | None]:
        """(client parameters, filestamp) read from ``path`` (never encrypted)."""
        raise NotImplementedError

    @classmethod
    def from_files(cls, server_key: str | os.PathLike[str] | None = None,
                   client_parameters: str | os.PathLike[str] | None = None,
                   password: str | bytes | None = None,
                   rng: RandBits | None = None) -> Any:
        """The scheme with the server key and/or client parameters read from these files;
        KeyFileError when one is unusable."""
        server = client = None
        server_filestamp = client_filestamp = None
        files = []
        if server_key is not None:
            server, server_filestamp = cls.load_server_key(server_key, password)
            files.append(Path(server_key).name)
        if client_parameters is not None:
            client, client_filestamp = cls.load_client_parameters(client_parameters)
            files.append(Path(client_parameters).name)
        return cls(server=server, client=client, server_filestamp=server_filestamp,
                   client_filestamp=client_filestamp, files=files, rng=rng)

    @classmethod
    def from_keysdir(cls, keysdir: str | os.PathLike[str], group: str,
                     password: str | bytes | None = None, rng: RandBits | None = None) -> Any:
        """The scheme from ``ntpkey_<server_kind>_<group>`` and ``ntpkey_<client_kind>_<group>``
        in ``keysdir``, whichever exist (interop.md 7.4); KeyFileError when neither
        does."""
        server_path = link_path(keysdir, cls.server_kind, group)
        client_path = link_path(keysdir, cls.client_kind, group)
        server = server_path if file_present(server_path) else None
        client = client_path if file_present(client_path) else None
        if server is None and client is None:
            raise KeyFileError(keysdir, f"no {cls.name.upper()} files for group {group!r} "
                                        f"(neither {server_path.name} nor {client_path.name})")
        return cls.from_files(server, client, password, rng)

    def _server_modulus(self) -> int:
        raise NotImplementedError

    def _client_modulus(self) -> int:
        raise NotImplementedError

    def _respond(self, r: int) -> tuple[int, ...]:
        """The response INTEGERs to the checked challenge 0 < r < M."""
        raise NotImplementedError

    def _check_response(self, integers: tuple[int, ...]) -> None:
        """IdentityValueError unless every received INTEGER is in its range and group (the
        helpers :func:`check_range`, :func:`check_unit`, :func:`check_subgroup`)."""
        raise NotImplementedError

    def _verify(self, r: int, integers: tuple[int, ...]) -> bool:
        """The scheme's equation, on integers :meth:`_check_response` passed."""
        raise NotImplementedError

    def _tables(self) -> tuple[Any, ...]:
        """The fixed-base tables (:mod:`ntpauto.identity.fixedbase`) of the server key's
        values that :meth:`_respond` raises to fresh exponents."""
        return ()

    def prepare(self) -> None:
        """Build the response tables now (a fraction of a second at 2048 bits) rather than
        in the first response: the identity worker does at start-up."""
        if self.server is not None:
            self._tables()

    def make_challenge(self) -> bytes:
        """A fresh L-octet challenge (interop.md 6); MissingKeyError without the client
        parameters."""
        if self.client is None:
            raise MissingKeyError(f"{self.name.upper()} client parameters are not loaded")
        return make_challenge(self._client_modulus(), self.rng)

    def respond(self, challenge: bytes) -> bytes:
        """The DER response to ``challenge``; IdentityValueError (a ValueError) unless the
        challenge is L octets with 0 < r < M (checked before the server key touches it),
        MissingKeyError without the server key."""
        if self.server is None:
            raise MissingKeyError(f"{self.name.upper()} server key is not loaded")
        r = decode_challenge(bytes(challenge), self._server_modulus())
        return encode_der_integers(*self._respond(r))

    def verify_response(self, challenge: bytes, response: bytes) -> bool:
        """True when ``response`` answers ``challenge`` (which we sent); False without the
        client parameters, for a challenge ``make_challenge`` does not produce (r = 0 could
        be answered by anybody), for any malformed response, and for one with an INTEGER
        outside its range or group (checked before any arithmetic)."""
        if self.client is None:
            return False
        try:
            r = decode_challenge(bytes(challenge), self._client_modulus())
            integers = decode_der_integers(bytes(response), self.response_integers)
            self._check_response(integers)
        except ValueError:
            return False
        return self._verify(r, integers)

    def accepts_filestamp(self, filestamp: int) -> bool:
        """The response Filestamp must equal ours (IFF, MV) or be at least ours (GQ)."""
        if self.client_filestamp is None:
            return False
        if self.filestamp_at_least:
            return filestamp >= self.client_filestamp
        return filestamp == self.client_filestamp

    def for_peer(self, certificate: Any) -> ChallengeResponseScheme:
        """The scheme itself (GQ overrides this)."""
        return self

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} respond={self.can_respond} "
                f"challenge={self.can_challenge} files={self.files!r}>")


def link_path(keysdir: str | os.PathLike[str], kind: str, group: str) -> Path:
    """``KEYSDIR/ntpkey_<kind>_<group>``, the name ntpd opens (interop.md 7.4)."""
    return Path(keysdir) / f"ntpkey_{kind}_{group}"


class KeysdirSchemeFactory:
    """Common part of the IFF, GQ and MV factories: ``KEYSDIR:GROUP[:PASSWORD]`` argument
    strings and ``from_keysdir`` delegating to the scheme class's ``from_keysdir``."""

    scheme_name: ClassVar[str] = ""
    help_text: ClassVar[str] = ""
    argstring_format: ClassVar[str] = "KEYSDIR:GROUP[:PASSWORD]"
    status_bit: ClassVar[int] = 0
    message_code: ClassVar[int] = 0
    scheme_class: ClassVar[Any] = None

    def from_argstring(self, argstring: str) -> Any:
        """Build the scheme from ``KEYSDIR:GROUP[:PASSWORD]``; InvalidIdentityArguments for
        another shape, KeyFileError for unusable files."""
        keysdir, group, password = parse_keysdir_argstring(argstring, self.scheme_name)
        return self.from_keysdir(keysdir, group, password)

    def from_keysdir(self, keysdir: str | os.PathLike[str], group: str,
                     password: str | bytes | None = None) -> Any:
        """Build the scheme from ``ntpkey_<scheme>key_<group>`` (server key, decrypted with
        ``password``) and ``ntpkey_<scheme>par_<group>`` (client parameters), whichever
        exist; KeyFileError when neither does or one is unusable."""
        return self.scheme_class.from_keysdir(keysdir, group, password)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme_name!r}>"


class NoExchangeSchemeFactory:
    """Base of the factories of schemes without an exchange (TC, PC): no arguments, no
    files; ``scheme_class`` is the scheme built."""

    scheme_class: ClassVar[type[NoExchangeScheme]]
    scheme_name: ClassVar[str] = ""
    argstring_format: ClassVar[str] = "(no arguments)"

    def from_argstring(self, argstring: str) -> Any:
        """The scheme; InvalidIdentityArguments for any argument."""
        if argstring:
            raise InvalidIdentityArguments(
                f"{self.scheme_name} takes no arguments, not {argstring!r}")
        return self.scheme_class()

    def from_keysdir(self, keysdir: str | os.PathLike[str], group: str,
                     password: str | bytes | None = None) -> Any:
        """The scheme (it reads no files)."""
        return self.scheme_class()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme_name!r}>"
