"""The public values the forger uses, and the field values it writes itself.

The hosts' names, status words, certificates and public keys, the identity schemes' public
moduli and the association IDs are public (they travel on the wire or are handed to every
member of a group); they are read here from the hosts' credentials
(:class:`~ntpauto.autokey.host.HostCredentials`) and associations.  Nothing secret is read:
no private key, no cookie, no key list.  The forger's own values (its RSA key, its
certificates, cookies, autokey and leap values, challenges and identity responses) are
made here too.
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.adversary.cases import UNKNOWN, Case
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, GQ, IFF, LEAP, MV, NULL, SIGN, Field
from ntpauto.autokey.values import (
    AutoValue,
    LeapValue,
    decode_public_key,
    encode_public_key,
    encrypt_cookie,
)
from ntpauto.identity.common import encode_der_integers, octet_length
from ntpauto.pki.certificates import build_self_signed
from ntpauto.pki.profiles import get_profile

if TYPE_CHECKING:
    from ntpauto.testing import SimulatedNetwork

__all__ = ["IDENTITY_CODES", "PublicValues"]

IDENTITY_CODES = (IFF, GQ, MV)
_SCHEME_NAMES = {IFF: "iff", GQ: "gq", MV: "mv"}
_MODULUS_ATTRIBUTE = {IFF: "q", GQ: "n", MV: "p"}
"""Which public parameter is the challenge modulus M of each identity scheme."""
_RESPONSE_INTEGERS = {IFF: 2, GQ: 2, MV: 3}
_FORGER_BITS = 1024
_DEGENERATE = ("zero", "one", "modulus", "modulus-multiple")


@functools.cache
def _forger_key() -> rsa.RSAPrivateKey:
    """The forger's own RSA key (its COOK requests and certificates)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=_FORGER_BITS)


@functools.cache
def _forger_certificate(subject: str, not_before: int, trusted: bool) -> bytes:
    """A self-signed certificate of the forger's key claiming ``subject``."""
    return build_self_signed(subject, _forger_key(), get_profile("RSA-SHA256"), not_before,
                             trusted=trusted)


class PublicValues:
    """What the forger knows of ``victim`` and ``peer`` on ``net`` beyond the traffic."""

    def __init__(self, net: SimulatedNetwork, victim: str, peer: str,
                 rng: random.Random) -> None:
        self.net = net
        self.victim = victim
        self.peer = peer
        self.rng = rng

    def credentials(self, address: str) -> Any:
        """The Autokey credentials of the host at ``address`` (None: not on the network or
        without Autokey)."""
        host = self.net.hosts.get(address)
        node = host.engine.autokey if host is not None else None
        return node.host if node is not None else None

    def port(self, address: str) -> int:
        """The UDP port of the host at ``address`` (123 for a stranger)."""
        host = self.net.hosts.get(address)
        return host.port if host is not None else 123

    def associds(self, broadcast_address: str) -> tuple[int, int]:
        """(the victim's association ID for the peer, the peer's for the victim), as they
        appear on the wire; 0 where there is none."""
        victim = self.net.hosts.get(self.victim)
        for a in victim.engine.associations.values() if victim else ():
            if a.address[0] == self.peer and a.autokey is not None:
                return a.associd, a.autokey.state.peer_associd
        peer = self.net.hosts.get(self.peer)
        for a in peer.engine.associations.values() if peer else ():
            if a.address[0] in (self.victim, broadcast_address) and a.autokey is not None:
                return a.autokey.state.peer_associd, a.associd
        return 0, 0

    def digest(self) -> str:
        """The victim's session-key digest."""
        credentials = self.credentials(self.victim)
        return credentials.digest if credentials is not None else "md5"

    def _peer(self) -> Any:
        return self.credentials(self.peer) or self.credentials(self.victim)

    def signature_size(self) -> int:
        """The length of the peer's signatures."""
        credentials = self._peer()
        return credentials.profile.max_signature_size(credentials.certificate.public_key)

    def rsa_modulus(self) -> int:
        """The peer's public RSA modulus."""
        key = self._peer().certificate.public_key
        return int(key.public_numbers().n) if isinstance(key, rsa.RSAPublicKey) \
            else (1 << 511) + 1

    def identity_modulus(self, code: int) -> int:
        """The challenge modulus M of identity scheme ``code`` from any host's public
        parameters; the peer's RSA modulus when no host has the scheme."""
        attribute = _MODULUS_ATTRIBUTE.get(code)
        for host in self.net.hosts.values():
            credentials = host.engine.autokey.host if host.engine.autokey else None
            if credentials is None or attribute is None:
                continue
            scheme = credentials.server_scheme(code)
            if scheme is None and credentials.group:
                scheme = credentials.client_scheme(_SCHEME_NAMES[code], credentials.group)
            for params in (getattr(scheme, "client", None), getattr(scheme, "server", None)):
                if params is not None and getattr(params, attribute, None):
                    return int(getattr(params, attribute))
        return self.rsa_modulus()

    def degenerate(self, case: Case, variant: str) -> bytes:
        """0, 1, M or 2M (``variant``), encoded as the case's field holds a number: the
        response integers of an identity response, else a big-endian value at least as long
        as M (M: the identity modulus, or the peer's RSA modulus for other fields)."""
        code = case.code
        modulus = self.identity_modulus(code) if code in IDENTITY_CODES else self.rsa_modulus()
        number = (0, 1, modulus, 2 * modulus)[_DEGENERATE.index(variant)]
        if code in IDENTITY_CODES and case.response:
            return encode_der_integers(*[number] * _RESPONSE_INTEGERS[code])
        return number.to_bytes(max(octet_length(modulus), octet_length(number)), "big")

    def own_field(self, case: Case, associd: int, stamp: int) -> Field:
        """The forger's own, well-formed field of the case's code and direction, unsigned,
        with Timestamp ``stamp``: the peer's name and status word (ASSOC), the victim's name
        (CERT request), the forger's key and certificates (COOK and SIGN requests, CERT
        response), a cookie encrypted to the victim's key, random autokey values, leap
        values, the victim's own certificate (SIGN response), a valid challenge or random
        identity integers."""
        code = case.code
        assert code is not None
        peer = self._peer()
        victim = self.credentials(self.victim) or peer
        not_before = stamp - 3600
        filestamp = peer.update or not_before
        if not case.response:
            if code in (NULL, AUTO, LEAP):
                return Field.short_form(code, associd)
            if code == ASSOC:
                return peer.assoc_field(associd, response=False)
            value = {
                CERT: lambda: victim.name.encode("ascii"),
                COOK: lambda: encode_public_key(_forger_key().public_key()),
                SIGN: lambda: _forger_certificate(f"mallory@{peer.group or 'group'}",
                                                  not_before, False),
                UNKNOWN: lambda: b"bait",
            }.get(code, lambda: self._challenge(code))()
            return Field(code=code, associd=associd, timestamp=stamp, filestamp=filestamp,
                         value=value)
        if code == ASSOC:
            return peer.assoc_field(associd, response=True)
        value = {
            NULL: lambda: bytes(4),
            CERT: lambda: _forger_certificate(peer.name, not_before, True),
            COOK: lambda: encrypt_cookie(0x0BADC0DE, decode_public_key(victim.public_value)),
            AUTO: lambda: AutoValue(self.rng.randrange(65536, 1 << 32), 42).encode(),
            LEAP: lambda: LeapValue(37, stamp - 10**6, stamp + 10**7).encode(),
            SIGN: lambda: victim.certificate.der,
            UNKNOWN: lambda: b"xxxx",
        }.get(code, lambda: self._identity_response(code))()
        return Field(code=code, response=True, associd=associd, timestamp=stamp,
                     filestamp=filestamp, value=value)

    def _challenge(self, code: int) -> bytes:
        modulus = self.identity_modulus(code)
        return self.rng.randrange(1, modulus).to_bytes(octet_length(modulus), "big")

    def _identity_response(self, code: int) -> bytes:
        modulus = self.identity_modulus(code)
        return encode_der_integers(*(self.rng.randrange(2, modulus)
                                     for _ in range(_RESPONSE_INTEGERS[code])))
