"""TC, the trusted-certificate identity scheme (RFC 5906 section 6.1 and appendix D):
identity by a certificate trail up to a self-signed certificate with EKU "Trust Root".

reference: interop.md 6.4 (TC bullet), 5.2-5.3 (the CERT exchange that builds the trail).
TC has no identity exchange of its own, no status bit (0) and no message code (0): the
certificate trail is handled by :mod:`ntpauto.pki.certificates` and the Autokey state machine.
The scheme object exists so that all five schemes are found and configured the same way;
its exchange methods refuse (``make_challenge``/``respond`` raise ValueError,
``verify_response`` is False).  It reads no files.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import NoExchangeScheme, NoExchangeSchemeFactory
from ntpauto.interfaces import IIdentitySchemeFactory

__all__ = ["TCScheme", "TCSchemeFactory"]


class TCScheme(NoExchangeScheme):
    """Trust by certificate trail: no challenge, no response."""

    name: ClassVar[str] = "tc"
    status_bit: ClassVar[int] = 0
    message_code: ClassVar[int] = 0


@implementer(IPlugin, IIdentitySchemeFactory)
class TCSchemeFactory(NoExchangeSchemeFactory):
    """Builds :class:`TCScheme`; it takes no arguments (``--ident tc``)."""

    scheme_name: ClassVar[str] = "tc"
    help_text: ClassVar[str] = (
        "TC (trusted certificate) identity: trust follows the certificate trail to a "
        "self-signed certificate marked trustRoot (ntpauto keygen -T). No identity files, "
        "no exchange; the default when no other scheme is configured.")
    scheme_class = TCScheme
    status_bit: ClassVar[int] = TCScheme.status_bit
    message_code: ClassVar[int] = TCScheme.message_code
