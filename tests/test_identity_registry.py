"""Tests for ntpauto.identity.registry and the plugin module: discovery through
twisted.plugin, SCHEME:ARGS descriptions and the --ident options (DESIGN examples 3, 4, 9)."""

from __future__ import annotations

import io
import textwrap

import pytest
from twisted.plugin import IPlugin, getPlugins
from twisted.python import usage
from zope.interface.verify import verifyObject

import ntpauto.plugins
from ntpauto.identity import registry
from ntpauto.identity.gq import GQScheme
from ntpauto.identity.iff import IFFScheme
from ntpauto.identity.mv import MVScheme
from ntpauto.identity.pc import PCScheme
from ntpauto.identity.tc import TCScheme
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory
from ntpauto.pki.keyfiles import KeyFileError
from ntpauto.plugins import ntpauto_identity

BUILT_INS = [ntpauto_identity.tc, ntpauto_identity.pc, ntpauto_identity.iff,
             ntpauto_identity.gq, ntpauto_identity.mv]


@pytest.mark.parametrize("plugin", BUILT_INS, ids=lambda plugin: plugin.scheme_name)
def test_discoverable(plugin):
    """The built-in is found by getPlugins in ntpauto.plugins."""
    assert plugin in list(getPlugins(IIdentitySchemeFactory, ntpauto.plugins))


@pytest.mark.parametrize("plugin", BUILT_INS, ids=lambda plugin: plugin.scheme_name)
def test_provides_interface(plugin):
    """The built-in provides IIdentitySchemeFactory and IPlugin."""
    assert verifyObject(IIdentitySchemeFactory, plugin)
    assert IPlugin.providedBy(plugin)


def test_all_factories_names():
    """The five schemes are found, each once."""
    names = [factory.scheme_name for factory in registry.all_factories()]
    assert sorted(names) == ["gq", "iff", "mv", "pc", "tc"]


def test_find_factory():
    """Lookup by name, case-insensitive; an unknown name is UnknownIdentityScheme."""
    assert registry.find_factory("IFF") is ntpauto_identity.iff
    with pytest.raises(registry.UnknownIdentityScheme, match="known: gq, iff, mv, pc, tc"):
        registry.find_factory("nope")
    with pytest.raises(LookupError):
        registry.find_factory("")


def test_make_scheme(vectors):
    """SCHEME[:ARGS] builds the scheme from the keys directory."""
    keys = vectors / "keys"
    assert isinstance(registry.make_scheme("tc"), TCScheme)
    assert isinstance(registry.make_scheme("pc"), PCScheme)
    server = registry.make_scheme(f"iff:{keys / 'iff/alice'}:alice:alicepw")
    assert isinstance(server, IFFScheme) and server.can_respond
    assert server.server_filestamp == 4004436521
    client = registry.make_scheme(f"gq:{keys / 'gq/brenda'}:alice")
    assert isinstance(client, GQScheme) and client.can_challenge and not client.can_respond
    mv_server = registry.make_scheme(f"mv:{keys / 'mv/alice'}:alice:alicepw")
    assert isinstance(mv_server, MVScheme) and mv_server.can_respond


def test_make_scheme_errors(tmp_path):
    """Bad arguments and missing files raise the documented errors."""
    with pytest.raises(registry.InvalidIdentityArguments):
        registry.make_scheme("iff")
    with pytest.raises(registry.InvalidIdentityArguments):
        registry.make_scheme("tc:extra")
    with pytest.raises(KeyFileError):
        registry.make_scheme(f"gq:{tmp_path}:grp")


class Options(registry.IdentityOptionsMixin, usage.Options):
    """Options using the mixin, as a twistd plugin would."""


def test_ident_option_repeatable(vectors):
    """--ident can be given several times; the schemes are collected in order."""
    options = Options()
    options.parseOptions(["--ident", "tc", "--ident",
                          f"iff:{vectors / 'keys/iff-trad/brenda'}:alice"])
    kinds = [type(scheme) for scheme in options["identity_schemes"]]
    assert kinds == [TCScheme, IFFScheme]
    assert all(IIdentityScheme.providedBy(scheme) for scheme in options["identity_schemes"])


@pytest.mark.parametrize("argument", ["nope", "iff", "iff:/nonexistent:grp"])
def test_ident_option_errors(argument):
    """Unknown schemes, bad arguments and missing files are usage errors."""
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--ident", argument])


def test_help_ident_lists_schemes():
    """--help-ident lists every scheme with its argument format and exits 0."""
    options = Options()
    options.identOutput = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        options.parseOptions(["--help-ident"])
    assert exited.value.code == 0
    text = options.identOutput.getvalue()
    assert "Usage: --ident SCHEME[:ARGS]" in text
    for name in ("tc", "pc", "iff", "gq", "mv"):
        assert f"  {name} " in text
    assert "KEYSDIR:GROUP[:PASSWORD]" in text


def test_help_ident_scheme():
    """--help-ident-scheme shows one scheme's help; an unknown one is a usage error."""
    options = Options()
    options.identOutput = io.StringIO()
    with pytest.raises(SystemExit):
        options.parseOptions(["--help-ident-scheme", "mv"])
    assert "Usage: --ident mv:KEYSDIR:GROUP[:PASSWORD]" in options.identOutput.getvalue()
    assert "0x0080" in options.identOutput.getvalue()
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--help-ident-scheme", "nope"])


def test_options_help_mentions_ident():
    """The generated --help text documents --ident."""
    assert "--ident" in str(Options())


THIRD_PARTY = textwrap.dedent('''
    """An example third-party identity scheme plugin."""
    from twisted.plugin import IPlugin
    from zope.interface import implementer

    from ntpauto.identity.tc import TCScheme
    from ntpauto.interfaces import IIdentitySchemeFactory


    @implementer(IPlugin, IIdentitySchemeFactory)
    class EchoFactory:
        scheme_name = "echo"
        help_text = "An example."
        argstring_format = "(no arguments)"
        status_bit = 0
        message_code = 0

        def from_argstring(self, argstring):
            return TCScheme()

        def from_keysdir(self, keysdir, group, password=None):
            return TCScheme()


    echo = EchoFactory()
''')


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A third party's ntpauto/plugins directory (no __init__.py) on the plugin path, as
    pluginPackagePaths adds it for another sys.path entry."""
    plugins = tmp_path / "ntpauto" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "theirs_identity.py").write_text(THIRD_PARTY)
    monkeypatch.setattr(ntpauto.plugins, "__path__", [*ntpauto.plugins.__path__, str(plugins)])
    yield
    import sys

    sys.modules.pop("ntpauto.plugins.theirs_identity", None)


def test_third_party_discoverable(third_party):
    """A third party's scheme is found next to the built-ins and provides the interface."""
    factory = registry.find_factory("echo")
    assert verifyObject(IIdentitySchemeFactory, factory)
    assert factory in list(getPlugins(IIdentitySchemeFactory, ntpauto.plugins))
    assert isinstance(registry.make_scheme("echo"), TCScheme)
    assert len(registry.all_factories()) == 6
