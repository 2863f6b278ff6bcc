"""``ntpauto audit``: the security posture of a remote Autokey server.

:func:`ntpauto.audit.probe.observe` asks the server (:class:`~ntpauto.audit.probe.Observations`);
:func:`ntpauto.audit.findings.assess` turns what it saw into findings, each with a severity
and the reason.  docs/audit.md explains every finding and what to do about it.
"""
