"""Tests for ntpauto.identity.tc and ntpauto.identity.pc: the schemes without an exchange
(RFC 5906 appendices C and D; interop.md 2, 6.4)."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from ntpauto.identity.common import InvalidIdentityArguments
from ntpauto.identity.pc import PCScheme, PCSchemeFactory
from ntpauto.identity.tc import TCScheme, TCSchemeFactory
from ntpauto.interfaces import IIdentityScheme, IIdentitySchemeFactory

CASES = [(TCScheme, TCSchemeFactory, "tc", 0), (PCScheme, PCSchemeFactory, "pc", 0x10)]


@pytest.mark.parametrize(("scheme_class", "factory_class", "name", "bit"), CASES)
def test_provides_interfaces(scheme_class, factory_class, name, bit):
    """Scheme and factory provide IIdentityScheme / IIdentitySchemeFactory."""
    assert verifyObject(IIdentityScheme, scheme_class())
    assert verifyObject(IIdentitySchemeFactory, factory_class())


@pytest.mark.parametrize(("scheme_class", "factory_class", "name", "bit"), CASES)
def test_constants(scheme_class, factory_class, name, bit):
    """Name, status bit (TC 0, PC 0x10) and message code 0; nothing loaded, no files."""
    scheme = scheme_class()
    factory = factory_class()
    assert (scheme.name, scheme.status_bit, scheme.message_code) == (name, bit, 0)
    assert (factory.scheme_name, factory.status_bit, factory.message_code) == (name, bit, 0)
    assert scheme.files == ()
    assert not scheme.can_respond and not scheme.can_challenge
    assert scheme.server_filestamp is None and scheme.client_filestamp is None


@pytest.mark.parametrize(("scheme_class", "factory_class", "name", "bit"), CASES)
def test_no_exchange(scheme_class, factory_class, name, bit):
    """No challenge is made or answered, no response verifies, no filestamp is accepted."""
    scheme = scheme_class()
    with pytest.raises(ValueError, match="no identity exchange"):
        scheme.make_challenge()
    with pytest.raises(ValueError, match="no identity exchange"):
        scheme.respond(b"\x01\x02")
    assert scheme.verify_response(b"\x01", b"\x30\x00") is False
    assert scheme.accepts_filestamp(0) is False
    assert scheme.for_peer(object()) is scheme


@pytest.mark.parametrize(("scheme_class", "factory_class", "name", "bit"), CASES)
def test_factory_arguments(tmp_path, scheme_class, factory_class, name, bit):
    """The factories take no arguments and read no files."""
    factory = factory_class()
    assert isinstance(factory.from_argstring(""), scheme_class)
    assert isinstance(factory.from_keysdir(tmp_path, "grp"), scheme_class)
    with pytest.raises(InvalidIdentityArguments):
        factory.from_argstring("/etc/ntp:grp")
    assert factory.help_text and factory.argstring_format
