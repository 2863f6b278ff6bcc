"""The built-in identity schemes as ``twisted.plugin`` plugins.

Each module-level object provides ``IIdentitySchemeFactory`` and ``IPlugin``, so
``getPlugins(IIdentitySchemeFactory, ntpauto.plugins)`` finds TC, PC, IFF, GQ and MV exactly
as it finds a third party's scheme (see :mod:`ntpauto.identity.registry`; RFC 5906 section 6).
"""

from __future__ import annotations

from ntpauto.identity.gq import GQSchemeFactory
from ntpauto.identity.iff import IFFSchemeFactory
from ntpauto.identity.mv import MVSchemeFactory
from ntpauto.identity.pc import PCSchemeFactory
from ntpauto.identity.tc import TCSchemeFactory

tc = TCSchemeFactory()
pc = PCSchemeFactory()
iff = IFFSchemeFactory()
gq = GQSchemeFactory()
mv = MVSchemeFactory()
