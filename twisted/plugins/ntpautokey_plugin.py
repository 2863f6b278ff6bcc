"""twistd drop-in: ``twistd ntpautokey`` runs the ntpauto daemon (see ``ntpauto.tap``)."""

from twisted.application.service import ServiceMaker

ntpautokey = ServiceMaker("ntpauto Autokey NTP daemon", "ntpauto.tap",
                          "An NTPv4 server and client with Autokey (RFC 5906) authentication.",
                          "ntpautokey")
