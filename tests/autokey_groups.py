"""NTP secure groups (RFC 5906 section 6, figure 5) built with ntpauto's own keys, for the
engine tests on the simulated network.

:func:`make_group` writes one keys directory per host, the way ntpauto's keygen lays them
out: an RSA host key and a self-signed certificate ``<host>@<group>`` (EKU trustRoot for the
trusted hosts, EKU Private for the one key and certificate a PC group shares), and for IFF,
GQ and MV the trusted authority's identity values: the server key in the directory of every
host that answers identity challenges (the trusted hosts and the dependent servers), the
client parameters (MV: one client key each) in the directory of every host that challenges.
GQ certificates carry the group's public key v (Subject Key Identifier), which clients take
from the trusted certificate that ends a trail.

Small sizes keep the tests fast: RSA 1024 bits, identity values at the reference's sizes
(IFF 512, GQ 256, MV 256 bits).  :func:`figure5` wires the five hosts of figure 5 on a
:class:`~ntpauto.testing.SimulatedNetwork`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.autokey.host import HostCredentials, generate_host, load_host
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.identity import gq, iff, mv
from ntpauto.pki import keyfiles
from ntpauto.pki.certificates import build_self_signed
from ntpauto.pki.profiles import get_profile
from ntpauto.testing import SimulatedHost, SimulatedNetwork

EPOCH = 1_795_460_000.0
"""Unix seconds at which the simulated clocks start (2026-11-23)."""
NTP_UNIX = 2_208_988_800
FILESTAMP = int(EPOCH) + NTP_UNIX - 3600
"""NTP seconds of every key file and certificate: an hour before the simulation starts."""
GROUP = "alice"
RSA_BITS = 1024
SIGNATURE = "RSA-SHA256"
"""The certificates' signature scheme (generate_host's default)."""
IDENTITY_BITS = {"iff": iff.REFERENCE_BITS, "gq": gq.REFERENCE_BITS, "mv": mv.REFERENCE_BITS}
SCHEMES = ("tc", "pc", "iff", "gq", "mv")
IDENTITY_SCHEMES = ("iff", "gq", "mv")

HOSTS = ("alice", "brenda", "carol", "denise", "eileen")
TRUSTED = ("alice", "carol")
"""The trusted hosts (THs) of figure 5; Alice is also the trusted authority."""
SERVERS = ("alice", "brenda", "carol", "denise")
"""Hosts holding the identity server key (figure 5: THs and dependent servers)."""
ADDRESS = {"alice": "10.0.0.1", "brenda": "10.0.0.2", "carol": "10.0.0.3",
           "denise": "10.0.0.4", "eileen": "10.0.0.5"}
MV_CLIENT = {"alice": 1, "brenda": 1, "carol": 2, "denise": 2, "eileen": 3}
"""Which MV client key each host holds (of 4; the reference's keygen revokes the last)."""


def password(name: str) -> str:
    """The password of a host's private key files."""
    return f"{name}pw"


def identity_parameters(scheme: str) -> Any:
    """New trusted-authority values for ``scheme`` at the reference's small sizes (IFF and
    GQ parameters, an MV system with 4 client keys), or None for TC and PC."""
    if scheme == "iff":
        return iff.generate_iff(IDENTITY_BITS["iff"])
    if scheme == "gq":
        return gq.generate_gq(IDENTITY_BITS["gq"])
    if scheme == "mv":
        return mv.generate_mv(IDENTITY_BITS["mv"], 4)
    return None


def write_server_key(folder: Path, scheme: str, params: Any, host: str,
                     group: str = GROUP, filestamp: int = FILESTAMP) -> Path:
    """Install the ``scheme`` server key of ``params`` in ``folder`` (encrypted with the
    host's password)."""
    secret = password(host)
    if scheme == "iff":
        return iff.write_server_key(folder, params, group, filestamp, secret, host=host)
    if scheme == "gq":
        return gq.write_server_key(folder, params, group, filestamp, secret, host=host)
    if scheme == "mv":
        return mv.write_server_key(folder, params, group, filestamp, secret)
    raise ValueError(f"no server key for {scheme}")


def write_client_parameters(folder: Path, scheme: str, params: Any, host: str,
                            group: str = GROUP, filestamp: int = FILESTAMP) -> Path:
    """Install the ``scheme`` client parameters of ``params`` in ``folder`` (MV: the client
    key :data:`MV_CLIENT` names for ``host``)."""
    if scheme == "iff":
        return iff.write_client_parameters(folder, params, group, filestamp)
    if scheme == "gq":
        return gq.write_client_parameters(folder, params, group, filestamp)
    if scheme == "mv":
        return mv.write_client_key(folder, params.client(MV_CLIENT.get(host, 1)), group,
                                   filestamp)
    raise ValueError(f"no client parameters for {scheme}")


def write_host(folder: Path, name: str, group: str = GROUP, *, trusted: bool,
               private: bool = False, gq_key: int | None = None, bits: int = RSA_BITS,
               filestamp: int = FILESTAMP) -> None:
    """An RSA host key and a self-signed certificate ``<name>@<group>`` in ``folder`` with
    ntp-keygen's names and links.  Plain hosts go through :func:`generate_host`; a private
    (PC) certificate or one carrying a GQ key is built here the same way."""
    if not private and gq_key is None:
        generate_host(folder, name, group, trusted=trusted, password=password(name),
                      bits=bits, now=filestamp, scheme=SIGNATURE)
        return
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(65537, bits)
    keyfiles.write_key_file(folder, "RSAhost", name, filestamp,
                            keyfiles.private_key_pem(key, password(name)), "host", name)
    profile = get_profile(SIGNATURE)
    der = build_self_signed(f"{name}@{group}", key, profile, filestamp, trusted=trusted,
                            private=private, gq_key=gq_key)
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    keyfiles.write_key_file(folder, f"{profile.name}cert", name, filestamp, pem, "cert", name)


@dataclass
class GroupKeys:
    """The keys directories of one secure group (``root/<host>``)."""

    scheme: str
    root: Path
    group: str = GROUP
    params: Any = None
    """The trusted authority's identity values (None for TC and PC)."""

    @property
    def identity(self) -> bool:
        """True for the challenge-response schemes (IFF, GQ, MV)."""
        return self.scheme in IDENTITY_SCHEMES

    def owner(self, name: str) -> str:
        """Whose files ``name`` loads: in PC every host holds Alice's key and certificate."""
        return "alice" if self.scheme == "pc" else name

    def keysdir(self, name: str) -> Path:
        """The keys directory ``name`` loads from."""
        return self.root / self.owner(name)

    def credentials(self, name: str) -> HostCredentials:
        """Load ``name``'s Autokey credentials (as ``crypto pw ... ident <group>`` would)."""
        owner = self.owner(name)
        return load_host(self.root / owner, host=owner, password=password(owner),
                         ident=self.group if self.identity else None)

    def server_line(self, address: str, extra: str = "iburst minpoll 4 maxpoll 4") -> str:
        """An ntp.conf ``server`` line for an Autokey association with ``address``, naming
        the group for the identity schemes."""
        ident = f" ident {self.group}" if self.identity else ""
        return f"server {address} autokey{ident} {extra}\n"


def make_group(root: Path, scheme: str, hosts: tuple[str, ...] = HOSTS, *,
               group: str = GROUP, trusted: tuple[str, ...] = TRUSTED,
               servers: tuple[str, ...] = SERVERS, params: Any = None,
               bits: int = RSA_BITS) -> GroupKeys:
    """Write the keys directories of a ``scheme`` secure group under ``root`` (one per
    host; PC: only Alice's, which every host shares).  ``params`` reuses trusted-authority
    values (default: new ones); ``bits``: the hosts' RSA keys."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}")
    if params is None:
        params = identity_parameters(scheme)
    keys = GroupKeys(scheme=scheme, root=root, group=group, params=params)
    if scheme == "pc":
        write_host(root / "alice", "alice", group, trusted=False, private=True)
        return keys
    for name in hosts:
        folder = root / name
        is_server = scheme in IDENTITY_SCHEMES and name in servers
        gq_key = params.v if scheme == "gq" and is_server else None
        write_host(folder, name, group, trusted=name in trusted, gq_key=gq_key, bits=bits)
        if scheme in IDENTITY_SCHEMES:
            if is_server:
                write_server_key(folder, scheme, params, name, group)
            write_client_parameters(folder, scheme, params, name, group)
    return keys


@dataclass
class Figure5:
    """The five hosts of RFC 5906 figure 5 on one simulated network."""

    keys: GroupKeys
    net: SimulatedNetwork
    hosts: dict[str, SimulatedHost] = field(default_factory=dict)

    def __getitem__(self, name: str) -> SimulatedHost:
        return self.hosts[name]

    def association(self, client: str, server: str) -> Any:
        """``client``'s association with ``server``."""
        address = (ADDRESS[server], 123)
        [assoc] = [a for a in self.hosts[client].engine.associations.values()
                   if a.address == address]
        return assoc

    def autokey_associations(self) -> list[tuple[str, str, Any]]:
        """(client, server, association) of every configured Autokey association."""
        return [(client, server, self.association(client, server))
                for client, servers in UPSTREAM.items() for server in servers]


UPSTREAM = {"brenda": ("alice",), "denise": ("carol",), "eileen": ("brenda", "denise")}
"""Figure 5: Brenda is a client of Alice, Denise of Carol, Eileen of both Brenda and Denise."""


def figure5(keys: GroupKeys, *, seed: int = 1, offsets: dict[str, float] | None = None,
            nodes: dict[str, AutokeyNode] | None = None,
            net: SimulatedNetwork | None = None) -> Figure5:
    """Figure 5 on a new simulated network: Alice and Carol are trusted hosts with their own
    local clocks (stratum 1 references), Brenda and Denise their clients, Eileen a client of
    both.  ``offsets`` gives clock offsets by host, ``nodes`` Autokey nodes to use instead of
    plain credentials (e.g. with a responder of their own)."""
    offsets = offsets or {}
    nodes = nodes or {}
    if net is None:
        net = SimulatedNetwork(seed=seed, latency=0.01, jitter=0.002, epoch=EPOCH)
    figure = Figure5(keys, net)
    for name in HOSTS:
        config = "".join(keys.server_line(ADDRESS[server]) for server in
                         UPSTREAM.get(name, ())) or "localclock stratum 1\n"
        autokey = nodes.get(name) or keys.credentials(name)
        figure.hosts[name] = net.add_host(ADDRESS[name], config, autokey=autokey,
                                          offset=offsets.get(name, 0.0))
    return figure
