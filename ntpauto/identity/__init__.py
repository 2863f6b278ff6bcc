"""Autokey identity schemes (RFC 5906 section 6 and appendices B-G): one module per scheme.

* :mod:`~ntpauto.identity.tc` -- TC, trust by a certificate trail (no exchange);
* :mod:`~ntpauto.identity.pc` -- PC, a private certificate shared by the group (no exchange);
* :mod:`~ntpauto.identity.iff` -- IFF (Schnorr), message code 7;
* :mod:`~ntpauto.identity.gq` -- GQ (Guillou-Quisquater), message code 8;
* :mod:`~ntpauto.identity.mv` -- MV (Mu-Varadharajan), message code 9.

Each provides an :class:`~ntpauto.interfaces.IIdentityScheme` and its
:class:`~ntpauto.interfaces.IIdentitySchemeFactory`; the factories are registered as
``twisted.plugin`` plugins in ``ntpauto/plugins/ntpauto_identity.py`` and found, like a third
party's, through :mod:`ntpauto.identity.registry`.  :mod:`~ntpauto.identity.common` holds
what the challenge-response schemes share (digest of a bignum, challenge codec, the DER
SEQUENCE of INTEGERs, primality).  The modules are sans-I/O apart from reading and writing
their ``ntpkey_*`` files; no Twisted reactor is involved.

reference: interop.md 5.8 (message formats), 6 (formulas, nonces, DER), 7 (files);
``docs/identity.md`` says how to choose a scheme.
"""
