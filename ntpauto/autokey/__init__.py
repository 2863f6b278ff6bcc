"""Autokey (RFC 5906) protocol pieces: status word, extension fields and their values,
cookies and the XEVNT error events.  Session keys and key lists live in
:mod:`ntpauto.auth.autokey`.  See interop.md sections 1-5, 8 and 10."""
