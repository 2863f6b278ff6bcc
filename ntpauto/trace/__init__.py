"""``ntpauto trace``: check the Autokey traffic of a pcap/pcapng capture offline.

* :mod:`ntpauto.trace.capture` -- read the NTP datagrams out of a pcap or pcapng file;
* :mod:`ntpauto.trace.analysis` -- the sans-I/O checks (:class:`Tracer`);
* :mod:`ntpauto.trace.report` -- the per-packet, per-field and summary verdicts.
"""

from ntpauto.trace.analysis import MODE_NAMES, Tracer, analyse
from ntpauto.trace.capture import CaptureError, Datagram, TruncatedCapture, read_capture
from ntpauto.trace.report import Check, FieldReport, PacketReport, Status, Summary

__all__ = [
    "MODE_NAMES", "CaptureError", "Check", "Datagram", "FieldReport", "PacketReport",
    "Status", "Summary", "Tracer", "TruncatedCapture", "analyse", "read_capture",
]
