"""Tests for the worked third-party identity scheme ``docs/examples/ntpauto-ed25519id``.

The example is a separate distribution that ships only ``ntpauto/plugins/ed25519id.py``.
Here it is put on its own sys.path entry (a copy in a temporary directory, so
``twisted.plugin`` writes its ``dropin.cache`` there) and ``ntpauto.plugins.__path__`` is
extended exactly as ``pluginPackagePaths`` does at import time, then restored.  With it:
interface and plugin tests (DESIGN example 9), the scheme's files and exchange, dances
between engines on the simulated network, the containment of a plugin that raises, and the
wheel's contents.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin, getPlugins, pluginPackagePaths
from zope.interface.verify import verifyObject

import ntpauto.plugins
from ntpauto.autokey.fields import decode as decode_field
from ntpauto.autokey.host import HostCredentials, generate_host, load_host
from ntpauto.autokey.status import Flag
from ntpauto.identity import iff, registry
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki.keyfiles import KeyFileError, read_key_file
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import parse
from ntpauto.wire.timestamps import ntp_seconds

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "ntpauto-ed25519id"
MODULE = "ntpauto.plugins.ed25519id"
IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "dropin.cache")

EPOCH = 1_795_000_000.0
STAMP = ntp_seconds(EPOCH - 86_400)
"""Filestamp and notBefore of the generated files: a day before the simulation starts."""
GROUP = "grp"
PASSWORD = "alicepw"
ALICE, BRENDA, CAROL = "10.0.0.1", "10.0.0.2", "10.0.0.3"


# --- putting plugins on the path ----------------------------------------------------------


def add_plugin_root(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Make ``root`` a sys.path entry and extend ``ntpauto.plugins.__path__`` with what
    ``pluginPackagePaths`` finds for it (``root/ntpauto/plugins``), as it would have at
    import time; ``monkeypatch`` restores both."""
    monkeypatch.syspath_prepend(str(root))
    added = [path for path in pluginPackagePaths(ntpauto.plugins.__name__)
             if Path(path).parent.parent == root]
    assert added == [str(root / "ntpauto" / "plugins")]
    monkeypatch.setattr(ntpauto.plugins, "__path__", [*ntpauto.plugins.__path__, *added])


def forget_plugin(module: str) -> None:
    """Unload a plugin module so later tests do not see it."""
    sys.modules.pop(module, None)
    vars(ntpauto.plugins).pop(module.rsplit(".", 1)[1], None)


@pytest.fixture(scope="module")
def example_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example distribution's directory: a separate sys.path entry."""
    root = tmp_path_factory.mktemp("ed25519id") / "site"
    shutil.copytree(EXAMPLE, root, ignore=IGNORE)
    return root


@pytest.fixture
def example(example_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example plugin module, importable as ``ntpauto.plugins.ed25519id`` for one
    test."""
    forget_plugin(MODULE)
    add_plugin_root(monkeypatch, example_root)
    yield importlib.import_module(MODULE)
    forget_plugin(MODULE)


# --- the two plugin tests, and the interfaces ---------------------------------------------


def test_discoverable(example: ModuleType) -> None:
    """getPlugins(IIdentitySchemeFactory, ntpauto.plugins) finds the example's factory next
    to the built-ins, and the registry knows it by name."""
    found = list(getPlugins(IIdentitySchemeFactory, ntpauto.plugins))
    assert example.ed25519id in found
    assert {"tc", "pc", "iff", "gq", "mv", "ed25519id"} <= {f.scheme_name for f in found}
    assert registry.find_factory("ed25519id") is example.ed25519id


def test_provides_interface(example: ModuleType) -> None:
    """The example's plugin object provides IIdentitySchemeFactory and IPlugin."""
    assert verifyObject(IIdentitySchemeFactory, example.ed25519id)
    assert IPlugin.providedBy(example.ed25519id)


def test_discoverable_from_pythonpath(example_root: Path, tmp_path: Path) -> None:
    """In a fresh interpreter with the example's directory on PYTHONPATH (a separate sys.path
    entry), ntpauto.plugins' own pluginPackagePaths extension makes the plugin visible."""
    program = textwrap.dedent("""
        from twisted.plugin import getPlugins
        import ntpauto.plugins
        from ntpauto.interfaces import IIdentitySchemeFactory
        for factory in getPlugins(IIdentitySchemeFactory, ntpauto.plugins):
            print(factory.scheme_name, type(factory).__module__)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(example_root), str(REPO)]))
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "ed25519id ntpauto.plugins.ed25519id" in result.stdout.splitlines()


def test_scheme_provides_interface(example: ModuleType, tmp_path: Path) -> None:
    """A scheme built from both files provides IIdentityScheme, with the allocated status
    bit and message code and the files it read."""
    example.make_group_files(tmp_path, GROUP, PASSWORD, filestamp=STAMP)
    scheme = example.ed25519id.from_keysdir(tmp_path, GROUP, PASSWORD)
    assert verifyObject(IIdentityScheme, scheme)
    assert (scheme.name, scheme.status_bit, scheme.message_code) == ("ed25519id", 0x0004, 64)
    assert scheme.can_respond and scheme.can_challenge
    assert scheme.files == ("ntpkey_ed25519idkey_grp", "ntpkey_ed25519idpar_grp")
    assert scheme.server_filestamp == scheme.client_filestamp == STAMP
    assert scheme.for_peer(None) is scheme


# --- files and the exchange ---------------------------------------------------------------


def test_files(example: ModuleType, tmp_path: Path) -> None:
    """make_group_files writes the encrypted PKCS#8 server key (mode 0600) and the public
    key, both with ntp-keygen's header lines and links, in separate directories."""
    server, client = example.make_group_files(tmp_path / "s", GROUP, PASSWORD,
                                              client_dir=tmp_path / "c", filestamp=STAMP)
    assert server == tmp_path / "s" / f"ntpkey_ed25519idkey_{GROUP}.{STAMP}"
    assert client == tmp_path / "c" / f"ntpkey_ed25519idpar_{GROUP}.{STAMP}"
    assert os.readlink(tmp_path / "s" / "ntpkey_ed25519idkey_grp") == server.name
    assert os.readlink(tmp_path / "c" / "ntpkey_ed25519idpar_grp") == client.name
    assert server.stat().st_mode & 0o777 == 0o600
    lines = server.read_text().splitlines()
    assert lines[0] == f"# {server.name}" and lines[1].startswith("# ")
    assert "-----BEGIN ENCRYPTED PRIVATE KEY-----" in lines
    key_file = read_key_file(server, PASSWORD)
    assert key_file.encrypted and key_file.filestamp == STAMP
    lines = client.read_text().splitlines()
    assert lines[0] == f"# {client.name}" and "-----BEGIN PUBLIC KEY-----" in lines
    assert not (tmp_path / "s" / "ntpkey_ed25519idpar_grp").exists()


def test_file_errors(example: ModuleType, tmp_path: Path) -> None:
    """A wrong password, an unencrypted key request, a header without filestamp and a file
    of another kind are refused with errors naming the file."""
    server, client = example.make_group_files(tmp_path, GROUP, PASSWORD, filestamp=STAMP)
    with pytest.raises(KeyFileError, match="wrong password"):
        example.load_server_key(server, "nope")
    with pytest.raises(ValueError, match="encrypted"):
        example.make_group_files(tmp_path / "x", GROUP, "")
    body = client.read_text().split("\n", 1)[1]
    (tmp_path / "nostamp").write_text("# ntpkey_ed25519idpar_grp\n" + body)
    with pytest.raises(KeyFileError, match="no filestamp"):
        example.load_client_parameters(tmp_path / "nostamp")
    (tmp_path / "other").write_text(f"# ntpkey_iffpar_grp.{STAMP}\n" + body)
    with pytest.raises(KeyFileError, match="expected ed25519idpar"):
        example.load_client_parameters(tmp_path / "other")
    with pytest.raises(KeyFileError, match="no such file"):
        example.load_client_parameters(tmp_path / "missing")


def test_exchange(example: ModuleType, tmp_path: Path) -> None:
    """Challenge, response, verification: 32 fresh octets, a 64-octet signature over the
    context and the challenge; anything else is refused or not verified."""
    example.make_group_files(tmp_path, GROUP, PASSWORD, filestamp=STAMP)
    scheme = example.ed25519id.from_keysdir(tmp_path, GROUP, PASSWORD)
    challenge = scheme.make_challenge()
    assert len(challenge) == 32 and scheme.make_challenge() != challenge
    response = scheme.respond(challenge)
    assert len(response) == 64
    assert scheme.verify_response(challenge, response) is True
    other = bytes([challenge[0] ^ 1]) + challenge[1:]
    assert not scheme.verify_response(other, response)
    assert not scheme.verify_response(challenge, response[:-1] + bytes([response[-1] ^ 1]))
    assert not scheme.verify_response(challenge, response[:63])
    assert not scheme.verify_response(challenge[:31], response)
    # The signature covers the context: a plain signature of the challenge is no answer.
    assert not scheme.verify_response(challenge, scheme.server.sign(challenge))
    for bad in (b"", challenge[:31], challenge + b"\0"):
        with pytest.raises(ValueError):
            scheme.respond(bad)
    assert scheme.accepts_filestamp(STAMP) and not scheme.accepts_filestamp(STAMP + 1)


ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
"""L, the order of the Ed25519 base point (RFC 8032)."""


def test_degenerate_signatures_not_verified(example: ModuleType, tmp_path: Path) -> None:
    """What the example relies on instead of its own range checks: ``cryptography``'s
    Ed25519 verification refuses S + L (the same signature's other encoding), S = 0 with
    the identity point, and all-zero or all-ones octets."""
    example.make_group_files(tmp_path, GROUP, PASSWORD, filestamp=STAMP)
    scheme = example.ed25519id.from_keysdir(tmp_path, GROUP, PASSWORD)
    challenge = scheme.make_challenge()
    response = scheme.respond(challenge)
    s_value = int.from_bytes(response[32:], "little")
    malleated = response[:32] + (s_value + ED25519_ORDER).to_bytes(32, "little")
    identity = (1).to_bytes(32, "little") + bytes(32)
    for bad in (malleated, identity, bytes(64), b"\xff" * 64):
        assert scheme.verify_response(challenge, bad) is False


def test_wrong_key_and_missing_halves(example: ModuleType, tmp_path: Path) -> None:
    """Another group key's response is not verified; a client-only scheme cannot respond
    and a server-only scheme cannot challenge (MissingKeyError, a ValueError)."""
    example.make_group_files(tmp_path / "a", GROUP, PASSWORD, filestamp=STAMP)
    example.make_group_files(tmp_path / "b", GROUP, PASSWORD, filestamp=STAMP)
    a = example.Ed25519IdScheme.from_files(tmp_path / "a" / "ntpkey_ed25519idkey_grp",
                                           password=PASSWORD)
    b = example.Ed25519IdScheme.from_files(
        client_parameters=tmp_path / "b" / "ntpkey_ed25519idpar_grp")
    challenge = b.make_challenge()
    assert not b.verify_response(challenge, a.respond(challenge))
    with pytest.raises(ValueError):
        a.make_challenge()
    with pytest.raises(ValueError):
        b.respond(challenge)
    assert not a.verify_response(challenge, a.respond(challenge))


def test_make_scheme_from_argstring(example: ModuleType, tmp_path: Path) -> None:
    """``--ident ed25519id:KEYSDIR:GROUP:PASSWORD`` builds the scheme via the registry."""
    example.make_group_files(tmp_path, GROUP, PASSWORD, filestamp=STAMP)
    scheme = registry.make_scheme(f"ed25519id:{tmp_path}:{GROUP}:{PASSWORD}")
    assert isinstance(scheme, example.Ed25519IdScheme) and scheme.can_respond


# --- dances between engines ---------------------------------------------------------------


def make_alice(keysdir: Path, example: ModuleType | None = None, *,
               identity: str | None = None) -> HostCredentials:
    """Alice: a trusted host of the group holding the example's server key (when
    ``example``) and, with ``identity="iff"``, an IFF server key too."""
    generate_host(keysdir, "alice", GROUP, trusted=True, bits=1024, now=STAMP,
                  password=PASSWORD, identity=identity, identity_bits=512)
    if example is not None:
        example.make_group_files(keysdir, GROUP, PASSWORD, client_dir=keysdir / "export",
                                 filestamp=STAMP)
    return load_host(keysdir, host="alice", password=PASSWORD, ident=GROUP)


def make_brenda(keysdir: Path) -> HostCredentials:
    """Brenda: an untrusted member of the group (client parameters are added by tests)."""
    return generate_host(keysdir, "brenda", GROUP, trusted=False, bits=1024, now=STAMP)


def give_parameters(alice_dir: Path, brenda_dir: Path) -> None:
    """Copy alice's exported ed25519id client parameters into brenda's keys directory."""
    source = alice_dir / "export" / f"ntpkey_ed25519idpar_{GROUP}.{STAMP}"
    shutil.copy(source, brenda_dir / source.name)
    os.symlink(source.name, brenda_dir / f"ntpkey_ed25519idpar_{GROUP}")


def dance(alice: HostCredentials, brenda: HostCredentials, seconds: float = 300.0, *,
          carol: bool = False):
    """Alice serves brenda (``server ALICE autokey ident grp``) and, with ``carol``, a plain
    NTP client; returns the network, the hosts and brenda's Autokey state."""
    net = SimulatedNetwork(seed=11, latency=0.01, jitter=0.002, epoch=EPOCH)
    server = net.add_host(ALICE, "localclock stratum 1\n", autokey=alice)
    client = net.add_host(BRENDA, f"server {ALICE} autokey ident {GROUP} iburst minpoll 4\n",
                          autokey=brenda, offset=0.05)
    plain = net.add_host(CAROL, f"server {ALICE} iburst minpoll 4\n", offset=-0.03) \
        if carol else None
    net.run(seconds)
    [assoc] = client.engine.associations.values()
    return net, server, client, plain, assoc


def identity_fields(net: SimulatedNetwork, code: int) -> list[tuple[str, bool, bool]]:
    """(sender, response, error) of every captured Autokey field with ``code``."""
    out = []
    for delivery in net.capture:
        for f in parse(delivery.data).fields:
            field = decode_field(f.data)
            if field.code == code:
                out.append((delivery.source[0], field.response, field.error))
    return out


def test_dance_with_the_example(example: ModuleType, tmp_path: Path) -> None:
    """Alice advertises bit 0x0004; brenda challenges her with message code 64, the
    association lights VRFY and PROV with scheme ``ed25519id`` and brenda synchronises."""
    alice = make_alice(tmp_path / "alice", example)
    assert alice.status & 0xFFFF == Flag.ENAB | 0x0004
    brenda = make_brenda(tmp_path / "brenda")
    give_parameters(tmp_path / "alice", tmp_path / "brenda")
    net, server, client, _, assoc = dance(alice, brenda)
    state = assoc.autokey.state
    assert state.scheme_name == "ed25519id"
    assert state.status & (Flag.CERT | Flag.VRFY | Flag.PROV) == \
        Flag.CERT | Flag.VRFY | Flag.PROV
    assert state.status & 0x0004
    assert client.engine.sys.peer == assoc.associd
    assert client.engine.sys.offset == pytest.approx(-0.05, abs=0.002)
    exchanged = identity_fields(net, 64)
    assert (BRENDA, False, False) in exchanged and (ALICE, True, False) in exchanged


@pytest.mark.parametrize("mismatch, counter", [("key", "autokey_id"),
                                               ("filestamp", "autokey_fsp")])
def test_wrong_group_key_never_verifies(example: ModuleType, tmp_path: Path, mismatch: str,
                                        counter: str) -> None:
    """Client parameters of another key (same filestamp: the signature fails) or of an older
    key file (the filestamp differs) never light VRFY; brenda never uses alice for time."""
    alice = make_alice(tmp_path / "alice", example)
    brenda = make_brenda(tmp_path / "brenda")
    stamp = STAMP if mismatch == "key" else STAMP - 3600
    key = None if mismatch == "key" else alice.server_schemes[64].server
    example.make_group_files(tmp_path / "other", GROUP, PASSWORD, client_dir=tmp_path / "brenda",
                             filestamp=stamp, key=key)
    net, _, client, _, assoc = dance(alice, brenda, 200)
    state = assoc.autokey.state
    assert state.scheme_name == "ed25519id"
    assert not state.status & Flag.VRFY and not state.proventic
    assert client.engine.counters[counter] > 0
    assert client.engine.sys.peer is None
    assert (ALICE, True, False) in identity_fields(net, 64)


@pytest.mark.parametrize("parameters", ["iff", "ed25519id"])
def test_server_with_iff_and_plugin(example: ModuleType, tmp_path: Path,
                                    parameters: str) -> None:
    """A server answering IFF and ed25519id (bits 0x0020 | 0x0004) serves clients holding
    either scheme's parameters: each uses the one it has."""
    alice = make_alice(tmp_path / "alice", example, identity="iff")
    assert alice.status & 0xFFFF == Flag.ENAB | Flag.IFF | 0x0004
    brenda = make_brenda(tmp_path / "brenda")
    if parameters == "iff":
        params, stamp = iff.load_server_key(tmp_path / "alice" / f"ntpkey_iffkey_{GROUP}",
                                            PASSWORD)
        iff.write_client_parameters(tmp_path / "brenda", params, GROUP, stamp)
    else:
        give_parameters(tmp_path / "alice", tmp_path / "brenda")
    _, _, client, _, assoc = dance(alice, brenda)
    state = assoc.autokey.state
    assert state.scheme_name == parameters
    assert state.proventic and client.engine.sys.peer == assoc.associd


def test_client_without_the_plugin_sees_tc(example_root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A client without the plugin installed ignores bit 0x0004, as a reference host does:
    alice (who has it) is a TC server to brenda."""
    with monkeypatch.context() as patch:
        forget_plugin(MODULE)
        add_plugin_root(patch, example_root)
        alice = make_alice(tmp_path / "alice", importlib.import_module(MODULE))
    forget_plugin(MODULE)
    assert "ed25519id" not in {f.scheme_name for f in registry.all_factories()}
    brenda = make_brenda(tmp_path / "brenda")
    _, _, client, _, assoc = dance(alice, brenda)
    state = assoc.autokey.state
    assert state.status & 0x0004 and state.scheme_name == "tc"
    assert state.proventic and client.engine.sys.peer == assoc.associd


# --- a plugin that raises -----------------------------------------------------------------

BROKEN = '''
"""A test-only identity scheme plugin whose {method} raises."""

from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory

FAIL = {method!r}


@implementer(IIdentityScheme)
class BrokenScheme:
    name = "brokenid"
    status_bit = 0x0008
    message_code = 65
    files = ()
    can_respond = True
    can_challenge = True
    server_filestamp = 1
    client_filestamp = 1

    def make_challenge(self):
        if FAIL == "make_challenge":
            raise RuntimeError("broken plugin: make_challenge")
        return bytes(range(16))

    def respond(self, challenge):
        if FAIL == "respond":
            raise RuntimeError("broken plugin: respond")
        return bytes(reversed(challenge))

    def verify_response(self, challenge, response):
        if FAIL == "verify_response":
            raise RuntimeError("broken plugin: verify_response")
        return True  # would light VRFY if the failure were not contained

    def accepts_filestamp(self, filestamp):
        return True

    def for_peer(self, certificate):
        return self


@implementer(IPlugin, IIdentitySchemeFactory)
class BrokenFactory:
    scheme_name = "brokenid"
    help_text = "Test only."
    argstring_format = "KEYSDIR:GROUP"
    status_bit = BrokenScheme.status_bit
    message_code = BrokenScheme.message_code

    def from_argstring(self, argstring):
        return BrokenScheme()

    def from_keysdir(self, keysdir, group, password=None):
        return BrokenScheme()


brokenid = BrokenFactory()
'''


@pytest.fixture(params=["respond", "make_challenge", "verify_response"])
def broken(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broken scheme plugin ``brokenid`` (bit 0x0008, code 65) on its own plugin path;
    yields the name of the method that raises."""
    root = tmp_path / "broken-site"
    plugins = root / "ntpauto" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "brokenid.py").write_text(BROKEN.format(method=request.param))
    forget_plugin("ntpauto.plugins.brokenid")
    add_plugin_root(monkeypatch, root)
    yield request.param
    forget_plugin("ntpauto.plugins.brokenid")


def test_failing_plugin_is_contained(broken: str, tmp_path: Path) -> None:
    """Whichever of respond, make_challenge and verify_response raises (a RuntimeError, not a
    ValueError), the failure is logged with its traceback, brenda's association never
    lights VRFY nor uses alice for time, and both engines keep working: alice still serves
    a plain NTP client, brenda keeps polling."""
    for name, kind in (("alice", "brokenidkey"), ("brenda", "brokenidpar")):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"ntpkey_{kind}_{GROUP}").write_text("test marker\n")
    alice = make_alice(tmp_path / "alice")
    assert alice.status & 0x0008
    brenda = make_brenda(tmp_path / "brenda")
    with capturedLogs() as events:
        _, server, client, plain, assoc = dance(alice, brenda, 300, carol=True)
    state = assoc.autokey.state
    # A failed respond or make_challenge ends in alice's error response (to the challenge or
    # to the NULL request sent instead), which resets the association: the dance restarts.
    assert state.scheme_name in (("brokenid",) if broken == "verify_response"
                                 else ("brokenid", None))
    assert not state.status & Flag.VRFY and not state.proventic
    assert client.engine.sys.peer is None
    assert assoc.reach
    assert plain is not None and plain.engine.sys.peer is not None
    assert plain.engine.sys.offset == pytest.approx(0.03, abs=0.002)
    failures = [event for event in events if "log_failure" in event]
    assert failures
    for event in failures:
        assert event["log_failure"].check(RuntimeError)
        assert str(event["log_failure"].value) == f"broken plugin: {broken}"
    namespace = "ntpauto.autokey.responder" if broken == "respond" \
        else "ntpauto.autokey.association"
    assert {event["log_namespace"] for event in failures} == {namespace}
    if broken == "respond":
        assert server.engine.counters["autokey_error_response"] > 0


# --- packaging ----------------------------------------------------------------------------


@pytest.mark.slow
def test_wheel_holds_only_the_plugin_module(tmp_path: Path) -> None:
    """``pip wheel --no-deps`` of the example gives a wheel with ntpauto/plugins/ed25519id.py
    and its dist-info only: no ntpauto/__init__.py nor ntpauto/plugins/__init__.py."""
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=IGNORE)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "w"),
         str(source)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "w").glob("ntpauto_ed25519id-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    payload = [name for name in names if not name.split("/")[0].endswith(".dist-info")]
    assert payload == ["ntpauto/plugins/ed25519id.py"]
    assert {name.split("/")[0] for name in names if name not in payload} == \
        {"ntpauto_ed25519id-0.1.0.dist-info"}
