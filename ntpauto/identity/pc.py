"""PC, the private-certificate identity scheme (RFC 5906 section 6.2 and appendix C): the
group shares one private key and one certificate marked EKU "Private"; the certificate acts
as a symmetric group key and is never sent.

reference: interop.md 2 (PRIV status bit 0x10 and its gate), 5.9 (signatures verified
with the receiver's own key), 6.4 (PC bullet).  PC has no identity exchange (message code 0):
the ASSOC exchange lights CERT, VRFY and SIGN at once when both ends carry the PRIV bit.  The
shared host key and private certificate are read by :mod:`ntpauto.pki` (ntpauto keygen -P),
so the scheme reads no files of its own.  Its exchange methods refuse (``make_challenge`` and
``respond`` raise ValueError, ``verify_response`` is False); ``status_bit`` is 0x10.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.plugin import IPlugin
from zope.interface import implementer

from ntpauto.identity.common import NoExchangeScheme, NoExchangeSchemeFactory
from ntpauto.interfaces import IIdentitySchemeFactory

__all__ = ["PCScheme", "PCSchemeFactory"]


class PCScheme(NoExchangeScheme):
    """Private certificate: no challenge, no response; advertised by status bit 0x10."""

    name: ClassVar[str] = "pc"
    status_bit: ClassVar[int] = 0x10
    message_code: ClassVar[int] = 0


@implementer(IPlugin, IIdentitySchemeFactory)
class PCSchemeFactory(NoExchangeSchemeFactory):
    """Builds :class:`PCScheme`; it takes no arguments (``--ident pc``)."""

    scheme_name: ClassVar[str] = "pc"
    help_text: ClassVar[str] = (
        "PC (private certificate) identity: every group member holds the same host key and "
        "a private certificate (ntpauto keygen -P) that is never sent; status bit 0x10, no "
        "exchange. For broadcast groups whose members can be given the keys securely.")
    scheme_class = PCScheme
    status_bit: ClassVar[int] = PCScheme.status_bit
    message_code: ClassVar[int] = PCScheme.message_code
